"""Board sessions: one interface, an emulated board (QEMU) and a real one (pyocd + serial,
cpr_edge.hil.realboard; its names are also importable from here).

A session boots or flashes the firmware, opens the HIL link, says HELLO and refuses to go on
unless the board runs the model that was meant to run (same SHA-256). QEMU is never left
running: ``close()`` on every normal path, ``atexit`` and a SIGTERM/SIGHUP handler for
interpreted exits, and the kernel's parent-death signal (PR_SET_PDEATHSIG) for a host crash.
"""
from __future__ import annotations

import atexit
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from cpr_edge.errors import CprError
from cpr_edge.hil.link import Hello, Link, LinkError

_LIVE: set["QemuSession"] = set()
_LOCK = threading.Lock()


def board_field(board, *names, default=None):
    """A field of a board definition (object or dict), trying several names."""
    for n in names:
        v = board.get(n) if isinstance(board, dict) else getattr(board, n, None)
        if v is not None:
            return v
    return default


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` (read from /proc, without connecting: QEMU's
    wait=on serial must see exactly one client, the link)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _close_all_live() -> None:
    """Exit path (atexit, a signal, Ctrl-C): kill at once. A polite QMP ``quit`` waits on a
    QEMU that a loaded machine may not schedule for seconds (the SIGINT test timed out so at
    load 7); an emulator holds nothing worth a clean shutdown."""
    for s in list(_LIVE):
        s.kill()


def _on_signal(signum, frame):
    _close_all_live()
    raise SystemExit(128 + signum)


def _install_exit_guards() -> None:
    atexit.register(_close_all_live)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)


_GUARDS = False
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int):
    """preexec_fn: the child gets SIGKILL when the host process dies, however it dies."""
    def fn():
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
    return fn


class Qmp:
    """Minimal QMP client: capabilities handshake, then one command at a time."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rwb")
        self._read_until("QMP")
        self.execute("qmp_capabilities")

    def _read_until(self, key: str) -> dict:
        while True:
            line = self.file.readline()
            if not line:
                raise CprError("QMP connection closed by QEMU")
            msg = json.loads(line)
            if key in msg:
                return msg
            if "error" in msg:
                raise CprError(f"QMP error: {msg['error'].get('desc', msg['error'])}")

    def execute(self, cmd: str, **arguments) -> dict:
        msg = {"execute": cmd, **({"arguments": arguments} if arguments else {})}
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        return self._read_until("return")["return"]

    def close(self) -> None:
        for f in (self.file, self.sock):
            try:
                f.close()
            except OSError:
                pass


class BoardSession:
    """A board running the HIL firmware, reachable through ``self.link``."""

    kind = "board"
    link: Link
    hello: Hello

    def __init__(self, board, expected_sha256: str | None):
        self.board = board
        self.name = board_field(board, "name")
        self.expected_sha256 = expected_sha256
        self.link = None
        self.hello = None

    def _handshake(self, timeout: float = 0.5, retries: int = 20) -> Hello:
        h = self.link.hello(timeout=timeout, retries=retries)
        if self.expected_sha256 and h.model_sha256 != self.expected_sha256:
            raise CprError(f"board {self.name} runs model {h.model_sha256[:16]}…, expected "
                           f"{self.expected_sha256[:16]}… (wrong firmware for this model)")
        if h.board_id and self.name and h.board_id != self.name:
            raise CprError(f"firmware reports board {h.board_id!r}, session is for {self.name!r}")
        self.hello = h
        return h

    def reidentify(self) -> Hello:
        """After a detected reboot: HELLO again (a new boot id) and check the model hash and
        board name, exactly as at the start of the session."""
        self.link.parser.reset()
        return self._handshake(timeout=0.1, retries=50)

    def reset(self) -> Hello:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _nodelay(arg: str) -> str:
    """A socket chardev without ``nodelay=on`` lets QEMU's socket hold back the reply's bytes
    (Nagle) until our delayed ACK, ~40 ms per request; the link needs it off."""
    if arg.startswith("socket,") and "server=on" in arg and "nodelay" not in arg:
        return arg + ",nodelay=on"
    return arg


class QemuSession(BoardSession):
    """``qemu-system-arm`` from the board definition's command template.

    The template's placeholders: ``{elf}``, ``{port}`` (serial over TCP, server, wait=on),
    ``{qmp_port}``. ``link_url(port) -> url`` lets a fault proxy sit between host and QEMU.
    """

    kind = "qemu"

    def __init__(self, board, elf: str | Path, expected_sha256: str | None = None,
                 port: int | None = None, log_path: str | Path | None = None,
                 link_url=None, link_timeout: float = 0.5, link_retries: int | None = None):
        super().__init__(board, expected_sha256)
        self.elf = Path(elf)
        if not self.elf.is_file():
            raise CprError(f"firmware not found: {self.elf}")
        self._own_serial_port = port is None
        self._exited_early = False
        self.serial_port = port or free_port()
        self.qmp_port = free_port()
        self.log_path = Path(log_path) if log_path else None
        self.link_url = link_url or (lambda p: f"socket://127.0.0.1:{p}")
        self.link_timeout, self.link_retries = link_timeout, link_retries
        self.proc = None
        self.qmp = None

    def argv(self) -> list[str]:
        return [_nodelay(a) for a in self._template_argv()]

    def _template_argv(self) -> list[str]:
        if callable(getattr(self.board, "qemu_command", None)):
            return list(self.board.qemu_command(self.elf, self.serial_port, self.qmp_port))
        template = board_field(self.board, "qemu")
        if isinstance(template, dict):
            template = template.get("command")
        if template is None:
            raise CprError(f"board {self.name} has no QEMU command (is it a real board?)")
        subst = {"elf": str(self.elf), "port": self.serial_port, "qmp_port": self.qmp_port}
        if isinstance(template, str):
            template = shlex.split(template)
        return [str(a).format(**subst) for a in template]

    START_ATTEMPTS = 3
    """QEMU starts tried when it exits while connecting: ``free_port`` returns a port that is free
    when asked, so another process (a second test worker's QEMU, say) can bind it first; QEMU then
    exits on the taken port and a new pair of ports is tried."""

    def start(self) -> "QemuSession":
        for attempt in range(self.START_ATTEMPTS):
            try:
                return self._start_once()
            except CprError:
                if not self._exited_early or attempt + 1 == self.START_ATTEMPTS:
                    raise
                self._exited_early = False
                self.qmp_port = free_port()
                if self._own_serial_port:
                    self.serial_port = free_port()
        raise AssertionError("unreachable")

    def _start_once(self) -> "QemuSession":
        global _GUARDS
        argv = self.argv()
        if shutil.which(argv[0]) is None:
            raise CprError(f"{argv[0]} not found; install qemu-system-arm")
        if not _GUARDS:
            _install_exit_guards()
            _GUARDS = True
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        with _LOCK:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True,
                                         preexec_fn=_die_with_parent(os.getpid()))
            _LIVE.add(self)
        if log is not subprocess.DEVNULL:
            log.close()
        try:
            self._connect()
        except BaseException:
            self._exited_early = self.proc.poll() is not None
            self.close()
            raise
        return self

    def _connect(self, boot_timeout: float = 10.0) -> None:
        deadline = time.monotonic() + boot_timeout
        while True:  # QEMU listens on the serial port, then waits for us (wait=on)
            if self.proc.poll() is not None:
                raise CprError(f"QEMU exited with status {self.proc.returncode} before the link "
                               f"opened: {self._log_tail()}")
            if _listening(self.serial_port):
                break
            if time.monotonic() > deadline:
                raise CprError(f"QEMU did not open its serial port {self.serial_port} within {boot_timeout:.0f} s")
            time.sleep(0.02)
        self.link = Link.open(self.link_url(self.serial_port), timeout=self.link_timeout,
                              retries=self.link_retries)
        while True:  # QMP opens once QEMU has its serial client
            try:
                self.qmp = Qmp(self.qmp_port)
                break
            except OSError as e:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise CprError(f"cannot reach QEMU's QMP port {self.qmp_port}: {e}; {self._log_tail()}")
                time.sleep(0.02)
        self._handshake(timeout=0.1, retries=50)  # the first HELLO may arrive before the UART is up

    def _log_tail(self) -> str:
        if self.log_path and self.log_path.is_file():
            return " ".join(self.log_path.read_text(errors="replace").split()[-40:])
        return "(no log)"

    def reset(self) -> Hello:
        """Reset the board through QMP (system_reset) and say HELLO again."""
        self.qmp.execute("system_reset")
        self.link.parser.reset()
        return self._handshake()

    def kill(self) -> None:
        """SIGKILL QEMU's process group now and reap it (no QMP)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        with _LOCK:
            _LIVE.discard(self)

    def restart(self) -> None:
        """Kill QEMU and boot a fresh one on the same serial port (fault tests: a power cycle).
        The link finds it again by reconnecting; its replies carry boot id 0 until HELLO."""
        self.kill()
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        with _LOCK:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent(os.getpid()))
            _LIVE.add(self)

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                if self.qmp is not None:
                    self.qmp.sock.settimeout(1.0)
                    self.qmp.execute("quit")
                proc.wait(timeout=1)
            except Exception:
                pass
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        with _LOCK:
            _LIVE.discard(self)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self


URL_SCHEMES = ("socket", "rfc2217", "loop", "spy", "alt", "hwgrep")
"""pyserial URL schemes ``--port`` accepts besides a device path."""


def parse_port(spec, emulated: bool) -> tuple[str, object]:
    """What ``--port`` names: ``("auto", None)``, ``("tcp", N)`` (the TCP port QEMU's serial
    listens on), ``("url", "socket://...")`` (a board already running behind that URL: no boot,
    no flash for an emulated board) or ``("device", "/dev/ttyACM0")``. One-line errors."""
    if spec is None or str(spec) == "":
        return "auto", None
    text = str(spec).strip()
    if text.isdigit():
        if not emulated:
            raise CprError(f"--port {text}: a real board's port is a device path (/dev/ttyACM0) or a "
                           f"pyserial URL (socket://HOST:PORT, rfc2217://HOST:PORT)")
        n = int(text)
        if not 1 <= n <= 65535:
            raise CprError(f"--port {text}: a TCP port is 1..65535")
        return "tcp", n
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in URL_SCHEMES:
            raise CprError(f"--port {text}: unknown URL scheme {scheme!r} (pyserial takes "
                           f"{', '.join(s + '://' for s in URL_SCHEMES)})")
        return "url", text
    if emulated:
        raise CprError(f"--port {text}: an emulated board takes a TCP port number or a pyserial URL "
                       f"(socket://127.0.0.1:PORT to reach a QEMU that is already running)")
    if not Path(text).exists():
        raise CprError(f"--port {text}: no such serial device")
    return "device", text


def is_emulated(board) -> bool:
    if isinstance(getattr(board, "emulated", None), bool):
        return board.emulated
    kind = board_field(board, "kind")
    if kind is not None:
        return kind == "qemu"
    return board_field(board, "qemu_command", "qemu") is not None


def open_session(board, elf, expected_sha256=None, port=None, flash: bool = True, **kw) -> BoardSession:
    """Start (QEMU) or flash (real board; ``flash=False``: already flashed by the user) and
    handshake; use as a context manager. ``port`` as ``parse_port`` reads it (a real board
    without one: its definition's ``flash_tool.serial``); a URL for an emulated board attaches
    to a running one."""
    from cpr_edge.hil.realboard import RealBoardSession

    kind, value = parse_port(port, is_emulated(board))
    if kind == "url" and is_emulated(board):
        s = RealBoardSession(board, elf, value, expected_sha256, flash=False)
        s.kind = "attached"
        return s.start()
    if is_emulated(board):
        return QemuSession(board, elf, expected_sha256, port=value, **kw).start()
    return RealBoardSession(board, elf, value, expected_sha256, flash=flash).start()


def sha256_file(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


_REAL_BOARD_NAMES = ("RealBoardSession", "flash_tool_path", "FLASH_TIMEOUT_S", "default_serial_port",
                     "check_real_board_port")


def __getattr__(name):
    """``from cpr_edge.hil.session import RealBoardSession`` (and the real-board helpers) keep
    working: they live in cpr_edge.hil.realboard, which imports this module."""
    if name in _REAL_BOARD_NAMES:
        from cpr_edge.hil import realboard

        return getattr(realboard, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
