"""memory.json: where the firmware's bytes go, read back from the linked ELF.

Section sizes come from ``arm-none-eabi-size -A``, symbol sizes from ``arm-none-eabi-nm -S``
(format: docs/memory.md). Flash holds .text (code), .rodata (weights, biases, requantisation
constants, lookup tables, strings), .ARM.exidx and the load image of .data; RAM holds .data,
.bss (including the activation arena) and the stack reserved by the linker script.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from cpr_edge.boards import Board
from cpr_edge.errors import CprError

SIZE = "arm-none-eabi-size"
NM = "arm-none-eabi-nm"

ARENA_SYMBOL = "arena"
"""The static activation buffer model.c declares (cpr_edge.codegen)."""


def section_sizes(elf: Path) -> dict[str, int]:
    """``{section: bytes}`` for the allocated sections of ``elf``."""
    out = _run([SIZE, "-A", str(elf)])
    sizes = {}
    for line in out.splitlines():
        m = re.match(r"^(\.\S+)\s+(\d+)\s+(\d+)\s*$", line)
        if m:
            sizes[m.group(1)] = int(m.group(2))
    return sizes


def symbol_sizes(path: Path) -> dict[str, tuple[str, int]]:
    """``{symbol: (nm type letter, bytes)}`` of the sized symbols of an ELF or object file."""
    out = _run([NM, "-S", "--defined-only", str(path)])
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            syms[parts[3]] = (parts[2], int(parts[1], 16))
    return syms


def model_rodata_bytes(elf: Path, model_obj: Path) -> int:
    """Bytes of read-only data defined by model.c that survived --gc-sections."""
    in_elf = symbol_sizes(elf)
    total = 0
    for name, (kind, size) in symbol_sizes(model_obj).items():
        if kind in "rR" and name in in_elf and in_elf[name][0] in "rR":
            total += size
    return total


def memory_report(elf: Path, board: Board, model_obj: Path | None = None,
                  activation_bytes: int | None = None) -> dict:
    """The memory.json object for ``elf`` built for ``board``."""
    s = section_sizes(elf)
    code = s.get(".text", 0) + s.get(".ARM.exidx", 0)
    rodata = s.get(".rodata", 0)
    data, bss, stack = s.get(".data", 0), s.get(".bss", 0), s.get(".stack", 0)
    flash_total = code + rodata + data
    ram_total = data + bss + stack
    arena = symbol_sizes(elf).get(ARENA_SYMBOL, ("b", 0))[1]
    if activation_bytes is not None and arena not in (activation_bytes, max(activation_bytes, 1)):
        raise CprError(f"activation arena in the ELF is {arena} bytes, model.h says {activation_bytes}")
    flash = {
        "code": code,
        "constants": rodata,
        "model_constants": model_rodata_bytes(elf, model_obj) if model_obj else None,
        "data_init": data,
        "total": flash_total,
        "capacity": board.flash_size,
        "headroom": board.flash_size - flash_total,
    }
    ram = {
        "data": data,
        "bss": bss,
        "activations": activation_bytes if activation_bytes is not None else arena,
        "stack_reserved": stack,
        "stack_measured": None,
        "total": ram_total,
        "capacity": board.ram_size,
        "headroom": board.ram_size - ram_total,
    }
    return {"board": board.name, "core": board.core, "elf": elf.name, "flash": flash, "ram": ram,
            "fits": flash["headroom"] >= 0 and ram["headroom"] >= 0}


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise CprError(f"{cmd[0]} not found: install gcc-arm-none-eabi") from None
    except subprocess.CalledProcessError as e:
        raise CprError(f"{cmd[0]} failed on {cmd[-1]}: {e.stderr.strip()}") from None
