"""`cpr-edge validate` on the models of tests/tflite_models.py (built directly with TensorFlow's
converter, not by cpr-edge export) on every emulated board: bit-exact count against the TFLM
interpreter, p50 instructions per inference, flash / RAM of the image, inference RAM
(activations + measured invoke stack) against the smallest TFLM arena, wall time.

  python benchmarks/validate_tf_models.py [--boards B,...] [--models NAME,...] [-n 200] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boards", default=None, help="comma-separated board names (default: every emulated board)")
    ap.add_argument("--models", default=None, help="comma-separated model names of tests/tflite_models.py")
    ap.add_argument("-n", type=int, default=200, help="random inputs per run (default 200)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from tflite_models import SPECS, convert

    from cpr_edge.boards import list_boards, load_board
    from cpr_edge.validate.run import validate

    boards = args.boards.split(",") if args.boards else [b for b in list_boards() if load_board(b).emulated]
    specs = [s for s in SPECS if not args.models or s.name in args.models.split(",")]
    work = Path(tempfile.mkdtemp(prefix="cpr-validate-"))
    models = {s.name: convert(s, work / f"{s.name}.tflite") for s in specs}
    rows = []
    for board in boards:
        for name, path in models.items():
            t0 = time.monotonic()
            r = validate(board, path, work / f"{board}-{name}", random_n=args.n)
            c, lat, mem = r["comparison"], r["latency"], r["memory"]
            rows.append({"board": board, "model": name, "bit_exact_inputs": c["bit_exact_inputs"],
                         "inputs": c["inputs"], "max_lsb_diff": c["max_lsb_diff"], "p50": lat["p50"],
                         "unit": lat["unit"], "flash": mem["flash_bytes"], "ram": mem["ram_bytes"],
                         "inference_ram": mem["inference_ram_bytes"], "tflm_arena": mem["tflm_arena_bytes"],
                         "wall_s": round(time.monotonic() - t0, 1)})
            print(f"{board} {name}: {c['bit_exact_inputs']}/{c['inputs']}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows))
        return 0
    print("| board | model | bit-exact | p50 | flash / RAM B | inference RAM / TFLM arena B | wall s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['board']} | {r['model']} | {r['bit_exact_inputs']} / {r['inputs']} | {r['p50']:.0f} {r['unit']} "
              f"| {r['flash']} / {r['ram']} | {r['inference_ram']} / {r['tflm_arena']} | {r['wall_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
