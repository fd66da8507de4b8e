"""Inference RAM of the generated firmware against the minimal TFLM arena.

For each model: the firmware's inference RAM is its static activation arena
(MODEL_ACTIVATION_BYTES, the codegen's liveness plan) plus the stack model_invoke uses,
measured on qemu-mps2-an386 by stack painting (firmware/tests/invoke_stack_probe.c). TFLM's
figure is the smallest arena with which the tflite-micro interpreter runs the same model
(export.json "tflm.arena_bytes", found by the exporter's search). Target: <= 10 %.

Models: the export folders given with --model, else every shipped checkpoint in
cpr_edge/data/checkpoints, exported on the fly.

  python benchmarks/memory_vs_tflm.py [--model DIR ...] [--board qemu-mps2-an386] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

TARGET = 0.10


def shipped_exports(work: Path) -> list[Path]:
    import importlib.resources

    from cpr_edge.export import export_checkpoint

    ck_dir = importlib.resources.files("cpr_edge") / "data" / "checkpoints"
    out = []
    for ck in sorted(p for p in ck_dir.iterdir() if p.name.endswith(".pt")):
        folder = work / ck.name[:-3]
        print(f"exporting {ck.name} ...", file=sys.stderr)
        export_checkpoint(Path(str(ck)), folder)
        out.append(folder)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", nargs="*", help="export folders (default: export the shipped checkpoints)")
    ap.add_argument("--board", default="qemu-mps2-an386")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    from cpr_edge.firmware_build.probe import measure_invoke_stack

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="cpr-mem-"))
    models = [Path(m) for m in args.model] if args.model else shipped_exports(work)
    rows = []
    for m in models:
        export = json.loads((m / "export.json").read_text())
        probe = measure_invoke_stack(args.board, m, work / f"probe-{m.name}")
        firmware = probe["activation_bytes"] + probe["invoke_stack_bytes"]
        arena = int(export["tflm"]["arena_bytes"])
        rows.append({"model": m.name, "checkpoint": export.get("checkpoint"), "board": args.board,
                     "activation_bytes": probe["activation_bytes"],
                     "invoke_stack_bytes": probe["invoke_stack_bytes"],
                     "firmware_inference_ram": firmware, "tflm_arena_bytes": arena,
                     "ratio": firmware / arena, "target": TARGET, "meets_target": firmware / arena <= TARGET})
    if args.json:
        print(json.dumps({"rows": rows}))
    else:
        print(f"{'model':32s} {'arena':>7s} {'stack':>6s} {'firmware':>9s} {'TFLM arena':>11s} {'ratio':>7s}")
        for r in rows:
            print(f"{r['model']:32s} {r['activation_bytes']:7d} {r['invoke_stack_bytes']:6d} "
                  f"{r['firmware_inference_ram']:9d} {r['tflm_arena_bytes']:11d} {100 * r['ratio']:6.1f}%"
                  f"  {'ok' if r['meets_target'] else 'OVER'} (target <= {100 * TARGET:.0f}%)")
    return 0 if all(r["meets_target"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
