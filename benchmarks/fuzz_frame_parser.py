"""Fuzz the firmware's frame parser on the host under AddressSanitizer + UBSan.

Builds firmware/app/frame_parser.c + crc16.c with the harness firmware/tests/fuzz_frame_parser.c
(-fsanitize=address,undefined, no recovery) and feeds it random, mutated and valid frames
(default 1e6), with quiet periods longer than the 50 ms stall time followed by marker frames
that must be delivered. Fails on any crash, sanitizer report, invalid frame delivered or
lost marker; prints the receiver counters.

  python benchmarks/fuzz_frame_parser.py [--frames 1000000] [--seed 0] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from cpr_edge.firmware_build.fuzz import run_fuzz

    t0 = time.perf_counter()
    res = run_fuzz(args.frames, seed=args.seed)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{res['frames']} frames fed in {res['wall_s']} s under ASan+UBSan: no crash, no sanitizer "
              f"report, {res['violations']} invariant violations")
        print(f"  delivered {res['delivered']} valid frames (all {res['markers']} markers after a quiet line), "
              f"CRC errors {res['crc']}, bad lengths {res['length']}, stall timeouts {res['timeouts']}, "
              f"bytes discarded while hunting for sync {res['discarded']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
