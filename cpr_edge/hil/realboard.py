"""A real board: flashed with its board file's flash tool (pyocd), reached over its serial port.

``RealBoardSession`` flashes the ELF (unless ``flash=False``: the user flashed it), opens the
port (``--port``, else the board file's ``flash_tool.serial``) and says HELLO; a board that does
not answer is refused with what to check. ``check_real_board_port`` runs before anything slow.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from pathlib import Path

from cpr_edge.errors import CprError
from cpr_edge.hil.link import Hello, Link, LinkError
from cpr_edge.hil.session import BoardSession, board_field, is_emulated


def flash_tool_path(name: str) -> str | None:
    """The flash tool on PATH, else beside this Python (pyocd installed in the same venv as
    cpr-edge, run as .venv/bin/cpr-edge without activating the venv)."""
    import sys

    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


FLASH_TIMEOUT_S = 300
"""A flash tool that has not finished by then is stuck (a probe that stopped answering)."""


class RealBoardSession(BoardSession):
    """A real board: flash the ELF with pyocd, then open its serial port."""

    kind = "real"

    def __init__(self, board, elf: str | Path, port: str | None, expected_sha256: str | None = None,
                 baud: int | None = None, flash: bool = True):
        super().__init__(board, expected_sha256)
        port = port or default_serial_port(board)  # the board file's flash_tool.serial
        if not port:
            raise CprError(f"board {self.name} is a real board: give its serial port with --port "
                           f"(its board file names none in flash_tool.serial)")
        self.elf, self.port, self.flash_first = Path(elf), port, flash
        uart = board_field(board, "uart", default={})
        self.baud = baud or int((uart.get("baud") if isinstance(uart, dict) else None) or 115200)

    def flash(self) -> None:
        if callable(getattr(self.board, "flash_command", None)):
            argv = list(self.board.flash_command(self.elf))
        else:
            tool = board_field(self.board, "flash_tool", default={}) or {}
            command = tool.get("command") or []
            argv = [str(a).format(elf=self.elf) for a in (shlex.split(command) if isinstance(command, str) else command)]
        if not argv:
            raise CprError(f"board {self.name} has no flash command (flash_tool.command)")
        exe = flash_tool_path(argv[0])
        if exe is None:
            raise CprError(f"{argv[0]} is not installed (pip install pyocd) - needed to flash {self.name}; "
                           f"or flash it yourself and pass --no-flash")
        argv[0] = exe
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=FLASH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise CprError(f"flashing {self.name} did not finish within {FLASH_TIMEOUT_S} s "
                           f"({' '.join(argv)})") from None
        if r.returncode != 0:
            said = " ".join((r.stderr + " " + r.stdout).split()[-30:])
            raise CprError(f"flashing {self.name} failed ({r.returncode}): {said}; check that its debug probe "
                           f"is connected (pyocd list) and the target is installed (pyocd pack install "
                           f"TARGET), or flash it yourself and pass --no-flash")

    def start(self) -> "RealBoardSession":
        if "://" not in self.port and not Path(self.port).exists():  # before flashing: it is quick
            raise CprError(f"serial port {self.port} does not exist: connect {self.name} (its USB serial "
                           f"device), or give --port (default: flash_tool.serial of the board file)")
        if self.flash_first:
            self.flash()
        try:
            self.link = Link.open(self.port, baud=self.baud)
        except LinkError as e:
            raise CprError(f"{e}: check the port (--port, or flash_tool.serial in the board file; "
                           f"the board's USB serial device, e.g. /dev/ttyACM0) and its permissions") from None
        time.sleep(0.1)
        try:
            self.link.port.reset_input_buffer()
            self._handshake(timeout=0.5, retries=10)
        except LinkError as e:
            self.close()
            raise LinkError(self.silent_board_hint(str(e))) from None
        return self

    def silent_board_hint(self, reason: str) -> str:
        """What to check when a real board does not answer HELLO (one line)."""
        if self.kind == "attached":
            return (f"no HELLO reply from {self.port} ({reason}): is QEMU running there with "
                    f"the firmware of this model ({self.elf})?")
        flashed = ("flashed it just now: did flashing reset it?" if self.flash_first
                   else "--no-flash: flash it yourself with this ELF, or its .bin / .hex")
        return (f"no HELLO reply from {self.name} on {self.port} at {self.baud} baud ({reason}); check: "
                f"the port (the board's USB serial device, --port or flash_tool.serial), the baud rate "
                f"(uart.baud of the board file and the serial bridge), reset (press the board's reset "
                f"button, then retry), the firmware ({self.elf}; {flashed})")

    def reset(self) -> Hello:
        self.link.reset()
        time.sleep(0.2)
        return self._handshake()

    def close(self) -> None:
        if self.link is not None:
            self.link.close()

    def __enter__(self):
        if self.link is None:
            self.start()
        return self


def default_serial_port(board) -> str | None:
    """A real board's serial device from its definition (``flash_tool.serial``), if any."""
    tool = board_field(board, "flash_tool", default={}) or {}
    return tool.get("serial") if isinstance(tool, dict) else None


def check_real_board_port(board, port) -> None:
    """Before anything slow: a real board run without ``--port`` needs its board file's
    ``flash_tool.serial``, and that device must exist. One-line errors."""
    if is_emulated(board) or (port is not None and str(port) != ""):
        return
    name = board_field(board, "name")
    device = default_serial_port(board)
    if not device:
        raise CprError(f"board {name} is a real board: give its serial port with --port "
                       f"(its board file names none in flash_tool.serial)")
    if "://" not in device and not Path(device).exists():
        raise CprError(f"serial port {device} (flash_tool.serial of the board file) does not exist: "
                       f"connect {name}, or give --port")
