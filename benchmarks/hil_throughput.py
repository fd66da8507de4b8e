"""Control steps per second over the HIL link, on each emulated board.

For every emulated board: build the firmware of one exported model, boot QEMU, then measure
(1) bare INFER round trips per second (one observation after another, verified replies) and
(2) closed-loop control steps per second (dm_control step + INFER + TFLM reference check),
over whole cartpole episodes, run one after another and two interleaved (the host steps one
episode's physics while the board computes the other's action). Target: >= 300 control steps/s on qemu-mps2-an386.

    python benchmarks/hil_throughput.py                       # exports the shipped cartpole checkpoint
    python benchmarks/hil_throughput.py --model DIR [--boards qemu-mps2-an386 ...] [--episodes 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "disable")

TARGET = 300.0


def main() -> int:
    import numpy as np
    import torch

    from cpr_edge.agents.checkpoint import load_checkpoint, shipped_checkpoint_path
    from cpr_edge.boards import list_boards, load_board
    from cpr_edge.firmware_build import build_firmware, default_out_dir
    from cpr_edge.export.pipeline import export_checkpoint
    from cpr_edge.hil.closed_loop import Int8Reference, board_episodes, eval_seeds
    from cpr_edge.hil.commands import export_checkpoint_path
    from cpr_edge.hil.session import QemuSession, sha256_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="export folder (default: export the shipped cartpole-swingup small checkpoint)")
    ap.add_argument("--boards", nargs="*", help="emulated boards (default: all)")
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--infers", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(1)

    tmp = tempfile.TemporaryDirectory(prefix="hil-throughput-")
    model = Path(args.model) if args.model else Path(tmp.name) / "model"
    if not args.model:
        print("exporting the shipped cartpole-swingup small checkpoint ...", file=sys.stderr)
        export_checkpoint(shipped_checkpoint_path("cartpole-swingup", "small"), model)
    ck = load_checkpoint(export_checkpoint_path(model))
    obs_bank = ck.replay_obs()[: args.infers].astype(np.float32)
    boards = args.boards or [b for b in list_boards() if load_board(b).emulated]
    print(f"model {sha256_file(model / 'model_int8.tflite')[:12]} ({ck.task}), cores {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'board':22s} {'invoke':>14s} {'INFER/s':>9s} {'steps/s sequential':>19s} {'steps/s 2 lanes':>16s} {'retries':>8s}")
    rows = []
    for name in boards:
        board = load_board(name)
        elf = default_out_dir(model, name) / "firmware.elf"
        if not elf.is_file():
            build_firmware(board, model, default_out_dir(model, name))
        with QemuSession(board, elf, sha256_file(model / "model_int8.tflite")).start() as s:
            t = time.perf_counter()
            for o in obs_bank:
                s.link.infer(o)
            infer_rate = len(obs_bank) / (time.perf_counter() - t)
            ref = Int8Reference(model)
            rates = {}
            for lanes in (1, 2):  # sequential, then host physics overlapping board compute
                t = time.perf_counter()
                eps = board_episodes("bench", s, ck.task, eval_seeds(args.episodes), reference=ref,
                                     max_lsb=1, lanes=lanes, action_repeat=ck.spec.get("action_repeat"))
                rates[lanes] = sum(e.steps for e in eps) / (time.perf_counter() - t)
                for e in eps:
                    if e.failed:
                        print(f"{name}: episode failed: {e.failed}", file=sys.stderr)
            step_rate = rates[2]
            ticks = s.link.bench(20)["mean"]
            rows.append((name, step_rate))
            print(f"{name:22s} {ticks:10.0f} {s.hello.counter_unit[:5]:>3s} {infer_rate:9.1f} {rates[1]:19.1f} {rates[2]:16.1f} "
                  f"{s.link.counters.retries:8d}")
    an386 = dict(rows).get("qemu-mps2-an386")
    if an386 is not None:
        print(f"qemu-mps2-an386: {an386:.0f} control steps/s (target >= {TARGET:.0f}): "
              f"{'met' if an386 >= TARGET else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
