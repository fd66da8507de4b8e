"""Checks of a ``prune-and-flash`` run that must fail in one line before any slow stage:
a checkpoint of another task than ``--task``, the tools the board needs (arm-none-eabi-gcc;
qemu-system-arm for an emulated board, pyocd for a real one), a bad ``--port``, and the
default episode count from the task's spread."""
from __future__ import annotations

import shutil

from cpr_edge.errors import CprError


def required_tools(board) -> list[tuple[str, str]]:
    from cpr_edge.hil.session import board_field, is_emulated

    tools = [("arm-none-eabi-gcc", "install the GNU Arm Embedded toolchain (apt-get install gcc-arm-none-eabi)")]
    if is_emulated(board):
        tools.append(("qemu-system-arm", "install QEMU (apt-get install qemu-system-arm)"))
    else:
        tool = board_field(board, "flash_tool", default={}) or {}
        cmd = tool.get("command") if isinstance(tool, dict) else None
        exe = (cmd.split()[0] if isinstance(cmd, str) else (cmd or ["pyocd"])[0]) or "pyocd"
        tools.append((str(exe), "install pyocd (pip install pyocd) to flash the board"))
    return tools


def check_tools(board) -> None:
    from cpr_edge.hil.session import flash_tool_path  # finds pyocd beside this Python too

    missing = [(exe, how) for exe, how in required_tools(board)
               if (flash_tool_path(exe) if how.startswith("install pyocd") else shutil.which(exe)) is None]
    if missing:
        raise CprError(f"{missing[0][0]} not found: {missing[0][1]}"
                       + (f"; also missing: {', '.join(m for m, _ in missing[1:])}" if missing[1:] else ""))


def preflight(args, board, ck) -> None:
    """Everything a run can be refused for after the checkpoint is read, before pruning."""
    from cpr_edge.hil.session import is_emulated, parse_port
    from cpr_edge.hil.stats import default_episodes

    task = getattr(args, "task", None)
    if task and getattr(args, "checkpoint", None) and ck.task != task:
        raise CprError(f"--checkpoint {args.checkpoint} is a {ck.task} checkpoint, not {task}")
    parse_port(getattr(args, "port", None), is_emulated(board))
    check_tools(board)
    if getattr(args, "episodes", None) is None:
        args.episodes = default_episodes(ck.task, getattr(args, "min_return_ratio", 0.95))
