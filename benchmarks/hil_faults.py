"""Completion rate of HIL episodes through the fault proxy (issue 12 acceptance): cartpole-swingup
with the default model (the shipped small checkpoint, exported and built for qemu-mps2-an386),
100 episodes per condition, every applied action recomputed with the TFLM interpreter.

    .venv/bin/python benchmarks/hil_faults.py [--episodes 100] [--conditions drop-1,corrupt-1,drop-5,corrupt-5]

Prints one row per condition: completed / episodes, silent wrong actions, retries per step,
wall time. Slow (minutes per condition at 5 %): not part of the test suite.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "disable")

CONDITIONS = {
    "drop-1": dict(drop=0.01),
    "corrupt-1": dict(corrupt=0.01),
    "drop-5": dict(drop=0.05),
    "corrupt-5": dict(corrupt=0.05),
}


def main() -> int:
    import torch

    from cpr_edge.agents.checkpoint import shipped_checkpoint_path
    from cpr_edge.boards import load_board
    from cpr_edge.firmware_build import build_firmware, default_out_dir
    from cpr_edge.export.pipeline import export_checkpoint
    from cpr_edge.hil.faultrun import run_condition
    from cpr_edge.hil.faults import FaultConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--board", default="qemu-mps2-an386")
    ap.add_argument("--model", default=None, help="export folder with firmware/BOARD (default: export the shipped checkpoint)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    board = load_board(a.board)
    if a.model:
        model = Path(a.model)
    else:
        model = Path(tempfile.mkdtemp(prefix="cpr-faults-")) / "model"
        export_checkpoint(shipped_checkpoint_path("cartpole-swingup", "small"), model)
    if not (default_out_dir(model, board.name) / "firmware.elf").is_file():
        build_firmware(board, model, default_out_dir(model, board.name))
    seeds = [200_000 + i for i in range(a.episodes)]
    print(f"{'condition':10s} {'completed':>11s} {'rate':>7s} {'silent wrong':>12s} {'resumed':>7s} "
          f"{'retries/step':>12s} {'wall s':>7s}", flush=True)
    for i, name in enumerate(a.conditions.split(",")):
        t = time.perf_counter()
        r = run_condition(board, model, "cartpole-swingup", seeds, FaultConfig(seed=100 + i, **CONDITIONS[name]))
        steps = max(1, r.link["requests"])
        print(f"{name:10s} {r.completed:5d}/{r.episodes:<5d} {100 * r.completion_rate:6.1f}% {r.silent_wrong:12d} "
              f"{r.resumed:7d} {r.link['retries'] / steps:12.2f} {time.perf_counter() - t:7.0f}"
              + (f"  stopped: {r.stopped}" if r.stopped else "")
              + (f"  first failure: {r.failed_reasons[0][:120]}" if r.failed_reasons else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
