"""Board definitions: one YAML file per board, shipped as package data.

A board definition says everything the build and the HIL host need: the core and compiler
flags, clock, flash and RAM, the UART, the invoke counter, the linker script, which
FULLY_CONNECTED kernel variant to build, and how to start it (QEMU command line) or flash it
(pyocd). ``load_board(name)`` reads one, ``list_boards()`` names them all.

A user's own board is a YAML file of the same schema (docs/boards.md) given by its path
(``load_board("./my-board.yaml")``); its linker script lies beside it. Its ``name`` need not
match the file name: the name is what the firmware reports in HELLO.
"""
from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path

from cpr_edge.errors import CprError

UART_DRIVERS = ("uart_cmsdk", "usart_stm32f4", "usart_stm32f1", "uart_nrf5x")
CLOCK_DRIVERS = ("clock_stm32f4", "clock_stm32f1")
"""Clock set-up files in firmware/platform/ (a board without ``clock`` runs at its reset clock)."""
FC_KERNELS = ("reference", "dsp", "dsp_rotate", "unrolled", "mve")  # mve: Cortex-M55 only
COUNTER_KINDS = {"systick_icount": "instructions", "dwt_cyccnt": "cycles"}
"""Invoke counter kind -> the unit it counts in."""
COUNTER_UNITS = {"cycles": 0, "instructions": 1}
"""Counter unit name -> the ``counter_unit`` byte of the HELLO reply."""


@dataclass(frozen=True)
class Board:
    name: str
    """Board id, as in HELLO and on the command line (``qemu-mps2-an386``)."""
    description: str
    """One line for humans."""
    kind: str
    """``qemu`` (emulated, can be run here) or ``real`` (flashed with pyocd)."""
    core: str
    """``cortex-m4``, ``cortex-m7``, ``cortex-m33``."""
    cpu_flags: tuple[str, ...]
    """gcc flags selecting core and FPU."""
    clock_hz: int
    """Nominal core clock; SysTick runs at it."""
    flash_origin: int
    """Start address of the region holding code and constants."""
    flash_size: int
    """Bytes of that region (the capacity memory.json compares against)."""
    ram_origin: int
    """Start address of RAM."""
    ram_size: int
    """Bytes of RAM usable by the image."""
    stack_bytes: int | None
    """Fixed stack for a real board without ``emulated_twin`` (optional elsewhere and then
    unused): the HIL image's stack is otherwise sized from measurement
    (cpr_edge.firmware_build.stack)."""
    irq_count: int
    """External interrupts in the vector table."""
    uart: dict
    """driver (uart_cmsdk | usart_stm32f4 | uart_nrf5x), base, irqs, clock_hz, baud and
    driver-specific pins/clock-enable bits."""
    timer: str
    """Time base of the firmware (``systick``: 10 ms wrap, 64-bit tick count)."""
    counter_kind: str
    """Invoke counter: ``systick_icount`` (QEMU has no DWT) or ``dwt_cyccnt``."""
    counter_unit: str
    """``instructions`` (QEMU: SysTick under -icount) or ``cycles`` (DWT CYCCNT)."""
    icount_shift: int
    """QEMU -icount shift (an instruction takes 2**shift ns); 0 on real boards."""
    linker_script: str
    """File name of the linker script: in cpr_edge/firmware/linker/ for a shipped board,
    beside the YAML file for a user board (``linker_script_path``)."""
    fc_kernel: str
    """FULLY_CONNECTED variant: reference | dsp | dsp_rotate | unrolled (no DSP extension)."""
    qemu: dict | None = None
    """machine, command and semihosting_command (lists with {elf} {port} {qmp_port})."""
    flash_tool: dict | None = None
    """target and command for pyocd (real boards)."""
    notes: dict = field(default_factory=dict)
    cycles_per_instruction: float = 1.0
    """Latency model: core cycles per instruction executed, for turning an instruction count
    (QEMU -icount) into an estimated time at ``clock_hz``; its source is ``latency_basis``."""
    latency_basis: str = "one cycle per instruction assumed"
    """Why ``cycles_per_instruction`` has its value: the core's pipeline and the flash wait
    states at this clock, with the document it comes from."""
    emulated_twin: str | None = None
    """Real boards: an emulated board with the same core and FPU, where instruction counts
    (``cpr-edge fit``) and the invoke stack are measured for this board."""
    clock: dict | None = None
    """Clock tree the firmware sets up at boot (``driver`` in CLOCK_DRIVERS, source, PLL,
    bus dividers, flash wait states; register words by cpr_edge.firmware_build.clock); None:
    the core runs at the clock it starts on (or the one QEMU gives it)."""
    source: str | None = None
    """Absolute path of the YAML file of a user board (``--board PATH.yaml``); None: shipped."""

    @property
    def linker_script_path(self) -> str:
        """What the build passes to the linker's ``-T``: the shipped script's name (found on
        the ``-L`` path, cpr_edge/firmware/linker/) or the absolute path of a user board's
        script beside its YAML file (which may ``INCLUDE sections.ld`` from the package)."""
        if self.source is None:
            return self.linker_script
        beside = Path(self.source).parent / self.linker_script
        if not beside.is_file() and (_linker_dir() / self.linker_script).is_file():
            return self.linker_script  # a copy of a shipped board that kept the shipped script
        return str(beside)

    @property
    def emulated(self) -> bool:
        return self.kind == "qemu"

    @property
    def counter_unit_code(self) -> int:
        return COUNTER_UNITS[self.counter_unit]

    def qemu_command(self, elf, port: int, qmp_port: int) -> list[str]:
        """QEMU argv running ``elf`` with the HIL UART on TCP ``port`` (QEMU is the server
        and waits for the host to connect before starting the CPU) and QMP on ``qmp_port``."""
        if not self.qemu:
            raise CprError(f"board {self.name} is not emulated; flash it with pyocd")
        return [a.format(elf=elf, port=port, qmp_port=qmp_port) for a in self.qemu["command"]]

    def semihosting_command(self, elf) -> list[str]:
        """QEMU argv for an on-target test image that reports and exits through semihosting."""
        if not self.qemu:
            raise CprError(f"board {self.name} is not emulated")
        return [a.format(elf=elf) for a in self.qemu["semihosting_command"]]

    def flash_command(self, elf) -> list[str]:
        if not self.flash_tool:
            raise CprError(f"board {self.name} is emulated; start it with QEMU")
        return [a.format(elf=elf) for a in self.flash_tool["command"]]


def _linker_dir() -> Path:
    return Path(str(importlib.resources.files("cpr_edge") / "firmware" / "linker"))


def _board_dir():
    return importlib.resources.files("cpr_edge") / "boards"


def list_boards() -> list[str]:
    """Names of all board definitions, sorted."""
    return sorted(p.name[:-5] for p in _board_dir().iterdir() if p.name.endswith(".yaml"))


def is_board_file(spec) -> bool:
    """Whether ``--board`` names a YAML file (a user board) rather than a shipped board."""
    text = str(spec)
    return text.endswith((".yaml", ".yml")) or "/" in text


def _read_definition(name: str):
    """(YAML mapping, label for messages, absolute path of a user board file or None)."""
    import yaml

    if is_board_file(name):
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise CprError(f"board file {name} not found")
        label, source = str(name), str(path)
        text = path.read_text(errors="replace")
    else:
        res = _board_dir() / f"{name}.yaml"
        if not res.is_file():
            raise CprError(f"unknown board {name!r}; known boards: {', '.join(list_boards())} "
                           f"(or give the path of your own board file, e.g. ./my-board.yaml)")
        label, source, text = f"{name}.yaml", None, res.read_text()
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CprError(f"board definition {label} is not valid YAML: {' '.join(str(e).split())[:200]}") from None
    if not isinstance(d, dict):
        raise CprError(f"board definition {label} is not a YAML mapping of the board fields (docs/boards.md)")
    return d, label, source


def load_board(name: str) -> Board:
    """The board definition ``name`` (see ``list_boards()``), or a user's board file by its
    path (anything ending in .yaml / .yml or holding a ``/``; schema in docs/boards.md)."""
    d, label, source = _read_definition(str(name))
    try:
        board = Board(
            name=d["name"], description=d["description"], kind=d["kind"], core=d["core"],
            cpu_flags=tuple(d["cpu_flags"]), clock_hz=int(d["clock_hz"]),
            flash_origin=int(d["flash"]["origin"]), flash_size=int(d["flash"]["size"]),
            ram_origin=int(d["ram"]["origin"]), ram_size=int(d["ram"]["size"]),
            stack_bytes=int(d["stack_bytes"]) if d.get("stack_bytes") is not None else None,
            irq_count=int(d["irq_count"]), uart=dict(d["uart"]),
            timer=d["timer"], counter_kind=d["counter"]["kind"], counter_unit=d["counter"]["unit"], icount_shift=int(d["counter"].get("icount_shift", 0)),
            linker_script=d["linker_script"], fc_kernel=d["fc_kernel"], qemu=d.get("qemu"),
            flash_tool=d.get("flash_tool"), notes=d.get("notes") or {},
            cycles_per_instruction=float((d.get("latency") or {}).get("cycles_per_instruction", 1.0)),
            latency_basis=str((d.get("latency") or {}).get("basis", "one cycle per instruction assumed")),
            emulated_twin=_twin_spec(d.get("emulated_twin"), source), clock=d.get("clock"),
            source=source)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CprError(f"board definition {label} is malformed: {e!r} (fields: docs/boards.md)") from None
    if source is None and board.name != name:
        raise CprError(f"board definition {label} names itself {board.name!r}")
    if source is not None:
        _check_user_board(board, label)
    if board.kind not in ("qemu", "real") or board.uart.get("driver") not in UART_DRIVERS \
            or board.fc_kernel not in FC_KERNELS or board.counter_unit not in COUNTER_UNITS \
            or board.timer != "systick" \
            or COUNTER_KINDS.get(board.counter_kind) != board.counter_unit:
        raise CprError(f"board definition {label} has an unknown kind, UART driver, "
                       f"FC kernel, timer or counter kind/unit")
    if (board.kind == "qemu") != (board.qemu is not None):
        raise CprError(f"board definition {label}: a qemu board needs a qemu section, "
                       f"a real board none")
    if board.clock is not None and board.clock.get("driver") not in CLOCK_DRIVERS:
        raise CprError(f"board definition {label}: clock.driver must be one of "
                       f"{', '.join(CLOCK_DRIVERS)}")
    from cpr_edge.firmware_build.clock import clock_tree  # here: it imports this module

    clock_tree(board)  # a clock tree that does not give clock_hz and the UART clock is refused
    if board.kind == "real" and not board.emulated_twin and board.stack_bytes is None:
        raise CprError(f"board definition {label}: a real board without emulated_twin needs "
                       f"stack_bytes (its stack cannot be measured)")
    if board.cycles_per_instruction <= 0:
        raise CprError(f"board definition {label}: latency.cycles_per_instruction must be > 0")
    return board


def _twin_spec(twin, source: str | None):
    """A user board's ``emulated_twin`` given as a relative file path is relative to its YAML."""
    if twin is None or source is None or not is_board_file(twin) or Path(str(twin)).is_absolute():
        return twin
    return str(Path(source).parent / str(twin))


def _check_user_board(board: Board, label: str) -> None:
    """A user board's name goes into C strings and file names; its linker script must exist."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", board.name):
        raise CprError(f"board definition {label}: name {board.name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    script = Path(board.linker_script_path)
    if not script.is_absolute():
        script = _linker_dir() / script
    if Path(board.linker_script).name != board.linker_script or not script.is_file():
        raise CprError(f"board definition {label}: linker script {board.linker_script!r} not found "
                       f"beside it ({script}); put it there (it may INCLUDE sections.ld)")
