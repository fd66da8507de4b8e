"""Fuzz the HIL firmware beyond the frame parser on the host under AddressSanitizer + UBSan.

Builds firmware/app/main.c (UART receive queue, main loop), hil.c (message handlers), the frame
parser and a generated model with the harness firmware/tests/fuzz_hil.c (only the hardware is
replaced) and feeds it requests of every type, resends, mutated frames, garbage, busy-time
bursts beyond the 1024-byte queue and quiet lines followed by marker HELLOs that must be
answered (default 1e6 frames). Fails on any crash, sanitizer report, wrong reply or unanswered
marker; prints the counters.

  python benchmarks/fuzz_hil.py [--frames 1000000] [--seed 0] [--task cartpole-swingup] [--json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--task", default="cartpole-swingup", help="shipped checkpoint whose export is built")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from cpr_edge.agents.checkpoint import shipped_checkpoint_path
    from cpr_edge.firmware_build import build_firmware
    from cpr_edge.firmware_build.fuzz_hil import run_hil_fuzz
    from cpr_edge.export.pipeline import export_checkpoint

    work = Path(tempfile.mkdtemp(prefix="cpr-fuzz-hil-bench-"))
    export_checkpoint(shipped_checkpoint_path(args.task), work / "model")
    build_firmware("qemu-mps2-an386", work / "model", work / "fw")
    t0 = time.perf_counter()
    res = run_hil_fuzz(work / "fw", args.frames, seed=args.seed, work_dir=work)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{res['frames']} frames fed to the HIL firmware in {res['wall_s']} s under ASan+UBSan: no crash, "
              f"no sanitizer report, {res['violations']} wrong replies, all {res['markers']} marker HELLOs answered")
        print(f"  replies: HELLO {res['hello']}, INFER/INFER_Q {res['infer']}, BENCH {res['bench']}, "
              f"STATS {res['stats']}, RESET {res['reset']}; ERROR BAD_CRC {res['bad_crc']}, BAD_LENGTH "
              f"{res['bad_length']}, UNKNOWN_TYPE {res['unknown_type']}, BAD_VALUE {res['bad_value']}; "
              f"queue overflows {res['overflows']}, replays {res['replays']} (last STATS of each boot)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
