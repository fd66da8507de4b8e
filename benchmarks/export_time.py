"""Time each export stage and measure the TFLM arena of the shipped checkpoints.

Each checkpoint is exported by a fresh ``cpr-edge export`` process (cold TensorFlow import,
as a user sees it), per-channel, with the per-tensor variant measured too.

    python benchmarks/export_time.py                 # every shipped checkpoint
    python benchmarks/export_time.py --checkpoint A.pt --checkpoint B.pt
    python benchmarks/export_time.py --closed-loop 5   # also episode returns: float vs TFLM int8
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

STAGES = ["tf_import", "onnx", "onnx2tf", "quantize", "verify", "compare_granularity"]


def shipped() -> list[Path]:
    folder = Path(str(resources.files("cpr_edge") / "data" / "checkpoints"))
    return sorted(folder.glob("*.pt"))


def export_one(path: Path, out: Path, prescale: str) -> tuple[dict, float]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "cpr_edge.cli", "export", "--checkpoint", str(path),
                        "--out", str(out), "--compare-granularity", "--input-prescale", prescale, "--json"],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"export of {path} failed: {r.stderr.strip().splitlines()[-1]}")
    return json.loads(r.stdout), wall


def closed_loop(path: Path, folder: Path, info: dict, episodes: int) -> dict:
    """Mean episode return of the float policy and of the exported model run by TFLM, driving
    dm_control on the same evaluation seeds (policy-only mode, what a board runs)."""
    import numpy as np
    import torch
    from tflite_micro import runtime

    from cpr_edge.agents.checkpoint import load_checkpoint
    from cpr_edge.agents.evaluate import EVAL_SEED_OFFSET, run_episode
    from cpr_edge.agents.told import DeployedPolicy
    from cpr_edge.export.tflm_run import dequantize_output, quantize_input

    torch.set_num_threads(1)
    ck = load_checkpoint(path)
    policy = DeployedPolicy(ck.agent.model.encoder, ck.agent.model.pi).eval()
    interp = runtime.Interpreter.from_bytes((folder / "model_int8.tflite").read_bytes(),
                                            arena_size=info["tflm"]["arena_bytes"])
    iq, oq = info["input"], info["output"]
    offset, gain = np.asarray(iq["offset"], np.float32), np.asarray(iq["gain"], np.float32)

    def float_act(obs, t):
        with torch.no_grad():
            return policy(torch.as_tensor(obs, dtype=torch.float32)[None]).numpy()[0]

    def tflm_act(obs, t):
        interp.set_input(quantize_input(((obs - offset) * gain)[None], iq), 0)
        interp.invoke()
        return dequantize_output(np.array(interp.get_output(0)), oq).reshape(-1)

    seeds = [EVAL_SEED_OFFSET + k for k in range(episodes)]
    repeat = ck.spec.get("action_repeat")  # the checkpoint's, as cpr-edge eval replays it
    f = [run_episode(ck.task, s, float_act, action_repeat=repeat) for s in seeds]
    q = [run_episode(ck.task, s, tflm_act, action_repeat=repeat) for s in seeds]
    return {"episodes": episodes, "float_return": float(np.mean(f)), "tflm_int8_return": float(np.mean(q))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", action="append", default=None, help="checkpoint file (repeatable)")
    ap.add_argument("--input-prescale", choices=["none", "standardize"], default="none",
                    help="passed to cpr-edge export (default none: raw observations)")
    ap.add_argument("--closed-loop", type=int, default=0, metavar="N",
                    help="also run N evaluation episodes with the float policy and the TFLM int8 model")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()
    paths = [Path(p) for p in args.checkpoint] if args.checkpoint else shipped()
    if not paths:
        print("no shipped checkpoints in cpr_edge/data/checkpoints; pass --checkpoint", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, path in enumerate(paths):
            print(f"exporting {path.name} ...", file=sys.stderr, flush=True)
            info, wall = export_one(path, Path(tmp) / f"export{k}", args.input_prescale)
            costs = info["granularity_costs"]
            rows.append({"checkpoint": path.name, "task": info["task"], "preset": info["preset"],
                         "stages_s": {s: info["timings_s"].get(s) for s in STAGES}, "wall_s": round(wall, 2),
                         "model_bytes": info["model_bytes"], "arena_bytes": info["tflm"]["arena_bytes"],
                         "arena_used_bytes": info["tflm"]["allocations"].get("total_bytes"),
                         "error_max_abs": info["error"]["max_abs"], "error_mean_abs": info["error"]["mean_abs"],
                         "output_scale": info["output"].get("scale"), "ops": info["op_resolver"],
                         "per_tensor": costs.get("per-tensor"), "all_int8": info["all_int8"]})
            if args.closed_loop > 0:
                print(f"closed loop: {args.closed_loop} episodes ...", file=sys.stderr, flush=True)
                rows[-1]["closed_loop"] = closed_loop(path, Path(tmp) / f"export{k}", info, args.closed_loop)
    if args.json:
        print(json.dumps({"exports": rows}))
        return 0
    head = f"{'checkpoint':32s} " + " ".join(f"{s[:9]:>9s}" for s in STAGES) + f" {'wall':>7s}"
    print("stage times (s)")
    print(head)
    for r in rows:
        print(f"{r['checkpoint']:32s} " + " ".join(f"{(r['stages_s'][s] or 0):9.2f}" for s in STAGES)
              + f" {r['wall_s']:7.2f}")
    print(f"\nmodel and TFLM arena (host x86-64 tflite-micro, smallest arena found by binary search; "
          f"input prescale {args.input_prescale})")
    print(f"{'checkpoint':32s} {'granularity':12s} {'model B':>8s} {'arena B':>8s} {'err max':>8s} {'err mean':>8s}  ops")
    for r in rows:
        print(f"{r['checkpoint']:32s} {'per-channel':12s} {r['model_bytes']:8d} {r['arena_bytes']:8d} "
              f"{r['error_max_abs']:8.4f} {r['error_mean_abs']:8.4f}  {' '.join(r['ops'])}")
        pt = r["per_tensor"]
        if pt:
            print(f"{'':32s} {'per-tensor':12s} {pt['model_bytes']:8d} {pt['arena_bytes']:8d} "
                  f"{pt['error_max_abs']:8.4f} {pt['error_mean_abs']:8.4f}")
    if args.closed_loop > 0:
        print(f"\nclosed loop, policy-only, {args.closed_loop} evaluation episodes (mean return)")
        for r in rows:
            c = r["closed_loop"]
            print(f"{r['checkpoint']:32s} float {c['float_return']:7.1f}   TFLM int8 {c['tflm_int8_return']:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
