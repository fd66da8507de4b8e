"""``cpr-edge validate``: any supported .tflite on a board, compared with TFLM."""
from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser("validate", help="run a .tflite on a board and compare every output with TFLM",
                       description="Build the firmware for a .tflite (or an export folder), boot it in QEMU "
                                   "or flash the board, run the inputs on it, compare every output with the "
                                   "tflite-micro interpreter (bit-exact count, max difference), measure "
                                   "latency and memory against the TFLM arena; writes validate.json and "
                                   "validate.md (docs/validate.md). Exit 0 when bit-exact, 1 when not.")
    p.add_argument("--board", default="qemu-mps2-an386",
                   help="board name (cpr-edge build --list-boards) or your own board file PATH.yaml")
    p.add_argument("--model", required=True, help=".tflite file or export folder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--inputs", metavar="X.npy",
                     help="inputs [N, input size]: integers for an int8/int16 input (real values are "
                          "quantised as the board would), float for a float input")
    src.add_argument("--random", type=int, metavar="N",
                     help="N seeded random inputs over the input's range (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    p.add_argument("--out", help="output folder (default X-validate-BOARD beside X.tflite)")
    p.add_argument("--port", default=None,
                   help="real board: serial device (default the board file's flash_tool.serial); "
                        "QEMU: TCP port of its serial, or socket://HOST:PORT of a running one")
    p.add_argument("--no-flash", action="store_true",
                   help="real board: do not flash (you flashed firmware/firmware.elf, .bin or .hex yourself)")
    p.add_argument("--fc-kernel", default=None, help="override the board's FULLY_CONNECTED kernel variant")
    p.add_argument("--json", action="store_true", help="print validate.json as one JSON object")
    p.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from cpr_edge.cli import emit
    from cpr_edge.validate.report import comparison_line
    from cpr_edge.validate.run import validate

    r = validate(args.board, args.model, args.out, inputs=args.inputs, random_n=args.random,
                 seed=args.seed, port=args.port, flash=not args.no_flash, fc_kernel=args.fc_kernel,
                 progress=lambda m: print(m, file=sys.stderr, flush=True))
    lat, mem = r["latency"], r["memory"]
    secs = lat.get("p50_s", lat.get("p50_s_estimate"))
    text = (f"{comparison_line(r['comparison'])}\n"
            f"  latency p50 {lat['p50']:.0f} {lat['unit']}"
            f" ({secs * 1e6:.1f} µs{' estimated' if 'p50_s_estimate' in lat else ''} at "
            f"{r['board']['clock_hz'] / 1e6:g} MHz)\n"
            f"  flash {mem['flash_bytes']} B, RAM {mem['ram_bytes']} B; inference RAM "
            f"{mem['inference_ram_bytes']} B vs TFLM arena {mem['tflm_arena_bytes']} B\n"
            f"report: {r['out_dir']}/validate.md")
    emit(args, r, text)
    return 0 if r["bit_exact"] else 1
