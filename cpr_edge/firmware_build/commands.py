"""``cpr-edge build``: firmware for one board from an export folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cpr_edge.boards import FC_KERNELS


def register(sub) -> None:
    p = sub.add_parser("build", help="build the board firmware for an exported model or a .tflite",
                       description="Generate C from MODEL/model_int8.tflite (an export folder) or a bare "
                                   ".tflite, compile and link it for a board; writes firmware.elf, .bin, "
                                   ".hex, firmware.map and memory.json. A model that does not fit the "
                                   "board is refused with the numbers.")
    p.add_argument("--list-boards", action="store_true",
                   help="print the boards, one per line: name, kind, core, clock, flash, RAM")
    p.add_argument("--board", default="qemu-mps2-an386",
                   help="board name (default qemu-mps2-an386) or the path of your own board file "
                        "(PATH.yaml, its linker script beside it; docs/boards.md)")
    p.add_argument("--model", help="export folder holding model_int8.tflite, or a .tflite file")
    p.add_argument("--out", help="output folder (default MODEL/firmware/BOARD; for x.tflite x-firmware/BOARD)")
    p.add_argument("--fc-kernel", choices=list(FC_KERNELS),
                   help="override the board's FULLY_CONNECTED kernel variant")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_build)


def board_row(b) -> dict:
    return {"name": b.name, "kind": b.kind, "core": b.core, "clock_hz": b.clock_hz,
            "flash_bytes": b.flash_size, "ram_bytes": b.ram_size,
            "cycles_per_instruction": b.cycles_per_instruction, "description": b.description}


def _kib(n: int) -> str:
    return f"{n // 1024} KB" if n < 1024 * 1024 else f"{n / (1024 * 1024):g} MB"


def board_table(boards) -> str:
    """One line per board, the name first (so ``cut -d' ' -f1`` lists the names)."""
    w = max(len(b.name) for b in boards)
    return "\n".join(f"{b.name:<{w}}  {b.kind:<4}  {b.core:<11} {b.clock_hz / 1e6:>5g} MHz  "
                     f"flash {_kib(b.flash_size):>7}  RAM {_kib(b.ram_size):>7}" for b in boards)


def cmd_build(args: argparse.Namespace) -> int:
    from cpr_edge.boards import list_boards, load_board
    from cpr_edge.firmware_build import build_firmware, default_out_dir
    from cpr_edge.cli import emit
    from cpr_edge.errors import CprError

    if args.list_boards:
        boards = [load_board(n) for n in list_boards()]
        emit(args, {"boards": [board_row(b) for b in boards]}, board_table(boards))
        return 0
    if not args.model:
        raise CprError("--model is required (an export folder or a .tflite file), or use --list-boards")
    board = load_board(args.board)
    out = args.out or default_out_dir(args.model, board.name)
    res = build_firmware(board, args.model, out, progress=lambda m: print(m, file=sys.stderr),
                         fc_kernel=args.fc_kernel)
    f, r = res["memory"]["flash"], res["memory"]["ram"]
    rewrite = res["model_source"].get("rewrite")
    emit(args, res,
         (f"model: {rewrite}\n" if rewrite else "") +
         f"wrote {res['elf']} (and {Path(res['bin']).name}, {Path(res['hex']).name})\n"
         f"  flash {f['total']:>8} / {f['capacity']} bytes  (code {f['code']}, constants {f['constants']})\n"
         f"  RAM   {r['total']:>8} / {r['capacity']} bytes  (data {r['data']}, bss {r['bss']} incl. "
         f"activations {r['activations']}, stack {r['stack_reserved']})")
    return 0
