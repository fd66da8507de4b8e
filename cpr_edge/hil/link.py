"""Host side of the HIL serial protocol (docs/protocol.md): framing, CRC, sequence numbers,
retries that ride out bursts, reconnection, reboot detection.

The link talks to anything pyserial opens: ``/dev/ttyACM0`` for a real board,
``socket://127.0.0.1:PORT`` for QEMU, ``rfc2217://``, ``loop://``. A reply is accepted only if
its CRC holds, its type is the request's type | 0x80, its ``seq`` is the request's and its
payload has exactly the size the type requires; everything else is discarded. A lost reply
is asked for again with the **same** ``seq`` (the board replays an INFER reply, it does not
compute twice). Every INFER and STATS reply carries the boot id the host gave in HELLO: a
board that rebooted answers 0 and ``BoardReset`` is raised, never a silent answer. Nothing
unverified ever leaves ``Link``.
"""
from __future__ import annotations

import random
import struct
import time
from dataclasses import dataclass, field

import numpy as np

from cpr_edge.errors import CprError
from cpr_edge.hil.frames import (FRAME_STALL_S, HEADER, MAX_PAYLOAD, SYNC, Frame,  # noqa: F401
                                  FrameParser, ParserCounters, crc16, encode_frame)
from cpr_edge.hil.messages import (BENCH, COUNTER_UNITS, ERROR, ERROR_NAMES, HELLO, INFER,  # noqa: F401
                                   INFER_Q, PROTOCOL_VERSION, REPLY, RESET, STATS, STATS_FIELDS, Hello,
                                   dequantize_output, parse_hello, quantize_input)
from cpr_edge.hil.retry import BudgetExhausted, ErrorBudget, RetryPolicy, RttEstimator


class LinkError(CprError):
    """The board did not give a verifiable answer (after the bounded retries)."""


class BoardReset(LinkError):
    """A reply carried another boot id than the one this host gave in HELLO: the board
    rebooted (reset, power loss, a restarted emulator) since."""

    def __init__(self, what: str, expected: int, got: int):
        super().__init__(f"{what}: board rebooted (boot id {got:#010x}, expected {expected:#010x})")
        self.expected, self.got = expected, got


class LinkLost(LinkError):
    """The port itself failed (connection closed, device gone) and could not be reopened."""


@dataclass
class Pending:
    """A request in flight: what to re-send and how to recognise its reply."""

    ftype: int
    payload: bytes
    reply_ok: object
    what: str
    attempts: int
    budget: ErrorBudget | None = None
    boot_at: int | None = None
    """Byte offset of the boot id in the reply, checked against the link's; None: no boot id."""
    seq: int = -1
    sent_at: float = 0.0
    deadline: float = 0.0
    failures: int = 0
    silent: int = 0
    """Consecutive attempts of the current run of failures that got no byte back."""
    received_at_send: int = 0
    reasons: list = field(default_factory=list)


@dataclass
class LinkCounters:
    requests: int = 0
    attempts: int = 0
    retries: int = 0
    timeouts: int = 0
    discarded_replies: int = 0
    board_errors: int = 0
    reconnects: int = 0
    resets_detected: int = 0
    max_consecutive_failures: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    rtt_ms: float = 0.0


class Link:
    """Request/reply over a pyserial port.

    One request in flight at a time. ``timeout`` is the first attempt's wait before the round
    trip has been measured; ``retries`` bounds the consecutive resends of one request (then
    ``LinkError``), ``budget`` (``ErrorBudget``) the failed attempts of an episode.
    """

    def __init__(self, port, timeout: float = 0.5, retries: int | None = None, url: str | None = None,
                 baud: int = 115200, policy: RetryPolicy | None = None):
        self.port, self.url, self.baud = port, url, baud
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        if retries is not None:
            self.policy.attempts = retries + 1
        self.hello_info: Hello | None = None
        self.seq = 0
        self.boot_id = 0
        self.parser = FrameParser()
        self.counters = LinkCounters()
        self.rtt = RttEstimator()
        self.budget: ErrorBudget | None = None
        self._boot_ids = random.Random()

    @staticmethod
    def _open_port(url: str, baud: int):
        import serial

        try:
            port = serial.serial_for_url(url, baudrate=baud, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"cannot open {url}: {' '.join(str(e).split())}")
        sock = getattr(port, "_socket", None)
        if sock is not None:  # small request/reply frames: no Nagle delay
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return port

    @classmethod
    def open(cls, url: str, baud: int = 115200, **kw) -> "Link":
        """``url``: a device path or a pyserial URL (``socket://``, ``rfc2217://``, ``loop://``)."""
        return cls(cls._open_port(url, baud), url=url, baud=baud, **kw)

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:
            pass

    def reconnect(self) -> bool:
        """Reopen the port after it failed; False if it cannot be reopened now."""
        if self.url is None:
            return False
        self.close()
        try:
            self.port = self._open_port(self.url, self.baud)
        except LinkError:
            return False
        self.counters.reconnects += 1
        self.parser.reset()
        return True

    # --- one verified request/reply --------------------------------------------
    def _read(self, deadline: float) -> list[Frame]:
        now = time.monotonic()
        self.parser.expire(now)
        # poll in slices of at most 50 ms (the frame stall limit); a real serial port
        # reconfigures the tty on every timeout change, so change it only when needed
        wait = round(max(0.001, min(deadline - now, FRAME_STALL_S)), 3)
        if self.port.timeout != wait:
            self.port.timeout = wait
        try:
            data = self.port.read(self.parser.need())
        except Exception as e:  # pyserial raises SerialException, sockets OSError, closed ports others
            raise _PortFailed(str(e))
        self.counters.bytes_received += len(data)
        return self.parser.feed(data) if data else []

    def start(self, ftype: int, payload: bytes, reply_ok, what: str, timeout: float | None = None,
              retries: int | None = None, boot_at: int | None = None, reply_len: int | None = None) -> Pending:
        """Send a request and return at once; ``finish`` waits for its verified reply.
        ``reply_len``: the reply's fixed payload size, which the receiver then holds every
        header to (only this reply and ERROR frames can be accepted meanwhile)."""
        self.parser.limit = self._limit_for(ftype | REPLY, reply_len)
        self.seq = (self.seq + 1) & 0xFF
        p = Pending(ftype, payload, reply_ok, what, self.policy.attempts if retries is None else retries + 1,
                    self.budget, boot_at, seq=self.seq)
        self._first_wait = timeout
        self.counters.requests += 1
        self._send(p, timeout)
        return p

    def _wait(self, p: Pending, timeout: float | None) -> float:
        if timeout is not None:
            return max(timeout, self.policy.wait(0.0, p.silent)) if p.failures else timeout
        return self.policy.wait(self.rtt.rto(self.timeout), p.silent)

    def _send(self, p: Pending, timeout: float | None = None) -> None:
        frame = encode_frame(p.ftype, p.seq, p.payload)
        self.counters.attempts += 1
        try:
            self.port.write(frame)
            self.port.flush()
            self.counters.bytes_sent += len(frame)
        except Exception as e:
            raise _PortFailed(str(e))
        p.sent_at = time.monotonic()
        p.received_at_send = self.counters.bytes_received
        p.deadline = p.sent_at + self._wait(p, timeout)

    def _fail(self, p: Pending, reason: str, silent: bool = True) -> None:
        """One failed attempt: count it, charge the episode's budget, give up after the bounds
        (``silent``: not one byte came back during it, which is what backs the wait off)."""
        p.failures += 1
        p.silent = p.silent + 1 if silent else 0
        p.reasons.append(reason)
        self.counters.max_consecutive_failures = max(self.counters.max_consecutive_failures, p.failures)
        if p.budget is not None:
            p.budget.charge(p.what)
        if p.failures >= p.attempts or p.silent >= min(self.policy.silent_attempts, p.attempts):
            lost = any(r.startswith("serial link lost") for r in p.reasons)
            raise (LinkLost if lost else LinkError)(
                f"{p.what}: no verified reply after {p.failures} attempts "
                f"({'; '.join(dict.fromkeys(p.reasons[-3:]))})")
        self.counters.retries += 1

    def _resend(self, p: Pending) -> None:
        """Send ``p`` again, same seq; reopen a failed port first (each failed reopen is a
        failed attempt, with the same backoff)."""
        while True:
            try:
                if getattr(self, "_port_failed", False):
                    if not self.reconnect():
                        raise _PortFailed("cannot reopen the port")
                    self._port_failed = False
                self._send(p, self._first_wait)
                return
            except _PortFailed as e:
                self._port_failed = True
                self._fail_lost(p, str(e))
                time.sleep(self.policy.wait(self.rtt.rto(self.timeout), p.silent))

    def _fail_lost(self, p: Pending, reason: str) -> None:
        try:
            self._fail(p, f"serial link lost: {reason}")
        except LinkError:
            raise LinkLost(f"{p.what}: serial link lost ({reason}), not back after {p.failures} "
                           f"attempts") from None

    def finish(self, p: Pending) -> bytes:
        """The reply payload of ``p`` once CRC, type, seq and ``reply_ok`` (its size) hold and
        its boot id is the link's (else ``BoardReset``); re-sent with the same seq after a
        timeout or a board CRC/length error, backing off over a burst; ``LinkError`` once the
        request's attempts or the episode's budget are spent."""
        while True:
            resend = None
            try:
                while resend is None and time.monotonic() < p.deadline:
                    for f in self._read(p.deadline):
                        if f.type == ERROR and len(f.payload) == 2:
                            code, rtype = f.payload
                            name = ERROR_NAMES.get(code, f"code {code}")
                            self.counters.board_errors += 1
                            if code in (1, 2):  # a corrupted request (seq unverified): send it again
                                resend = f"board answered ERROR {name}"
                                break
                            if f.seq == p.seq and rtype == p.ftype:
                                raise LinkError(f"{p.what}: board answered ERROR {name} (request type 0x{rtype:02x})")
                            self.counters.discarded_replies += 1
                            continue
                        if f.type == p.ftype | REPLY and f.seq == p.seq and p.reply_ok(f.payload):
                            self._check_boot(p, f.payload)
                            self.rtt.update(time.monotonic() - p.sent_at)
                            self.counters.rtt_ms = round(1000 * (self.rtt.srtt or 0.0), 3)
                            return f.payload
                        self.counters.discarded_replies += 1
            except _PortFailed as e:
                self._port_failed = True
                self._fail_lost(p, str(e))
                time.sleep(self.policy.wait(self.rtt.rto(self.timeout), p.silent))
                self._resend(p)
                continue
            silent = False
            if resend is None:
                self.counters.timeouts += 1
                resend = f"no valid reply within {1000 * (p.deadline - p.sent_at):.0f} ms"
                silent = self.counters.bytes_received == p.received_at_send
            self._fail(p, resend, silent)
            self._resend(p)

    def _check_boot(self, p: Pending, payload: bytes) -> None:
        if p.boot_at is None:
            return
        got = struct.unpack_from("<I", payload, p.boot_at)[0]
        if got != self.boot_id:
            self.counters.resets_detected += 1
            raise BoardReset(p.what, self.boot_id, got)

    def request(self, ftype: int, payload: bytes, reply_ok, what: str, timeout: float | None = None,
                retries: int | None = None, boot_at: int | None = None, reply_len: int | None = None) -> bytes:
        """Send and return the reply payload once ``reply_ok(payload)`` accepts it."""
        return self.finish(self.start(ftype, payload, reply_ok, what, timeout, retries, boot_at, reply_len))

    @staticmethod
    def _limit_for(reply_type: int, reply_len: int | None):
        if reply_len is None:
            return None
        return lambda t: reply_len if t == reply_type else (2 if t == ERROR else 0)

    # --- messages ---------------------------------------------------------------
    def hello(self, timeout: float | None = None, retries: int | None = None) -> Hello:
        """Name this boot of the board with a fresh non-zero id and read what it runs."""
        new_id = self._boot_ids.randrange(1, 1 << 32)
        p = self.request(HELLO, struct.pack("<I", new_id),
                         lambda p: (h := parse_hello(p)) is not None and h.boot_id == new_id,
                         "HELLO", timeout, retries)
        h = parse_hello(p)
        if h.protocol != PROTOCOL_VERSION:
            raise LinkError(f"board speaks protocol version {h.protocol}; this host speaks {PROTOCOL_VERSION}")
        if self.boot_id and h.previous_boot_id != self.boot_id:
            self.counters.resets_detected += 1
        self.boot_id = new_id
        self.hello_info = h
        return h

    def _reply_size(self) -> int:
        return 4 * self.hello_info.output_len + 8

    def infer(self, obs: np.ndarray) -> tuple[np.ndarray, int]:
        """Send one observation; return the board's (verified, finite) action and ticks."""
        return self.infer_finish(self.infer_start(obs))

    def infer_start(self, obs: np.ndarray) -> Pending:
        """INFER with the raw float32 observation (the board prescales and quantises)."""
        h = self._need_hello()
        obs = np.ascontiguousarray(obs, dtype="<f4").ravel()
        if obs.size != h.input_len:
            raise LinkError(f"observation has {obs.size} elements; the board's model takes {h.input_len}")
        size = self._reply_size()
        return self.start(INFER, obs.tobytes(), lambda p: len(p) == size, "INFER", boot_at=size - 4,
                          reply_len=size)

    def infer_q_start(self, q: np.ndarray) -> Pending:
        """INFER_Q with the observation already prescaled and quantised (int8 or int16)."""
        h = self._need_hello()
        q = np.asarray(q).ravel()
        if q.size != h.input_len or q.dtype.itemsize != h.input_elem_bytes or q.dtype.kind != "i":
            raise LinkError(f"INFER_Q needs {h.input_len} int{8 * h.input_elem_bytes} values, "
                            f"got {q.size} of {q.dtype}")
        size = self._reply_size()
        return self.start(INFER_Q, q.astype(q.dtype.newbyteorder("<")).tobytes(),
                          lambda p: len(p) == size, "INFER_Q", boot_at=size - 4, reply_len=size)

    def _need_hello(self) -> Hello:
        if self.hello_info is None:
            raise LinkError("INFER before HELLO: the reply size is unknown")
        return self.hello_info

    def infer_finish(self, pending: Pending) -> tuple[np.ndarray, int]:
        n = self.hello_info.output_len
        p = self.finish(pending)
        action = np.frombuffer(p, dtype="<f4", count=n).astype(np.float32)
        if not np.all(np.isfinite(action)):
            raise LinkError(f"INFER: board returned a non-finite action {action.tolist()}")
        return action, struct.unpack_from("<I", p, 4 * n)[0]

    def bench(self, n: int) -> dict:
        if not 1 <= n <= 100_000:
            raise CprError(f"BENCH n must be in 1..100000, got {n}")
        # n invokes of a few thousand instructions each; allow for slow emulation
        p = self.request(BENCH, struct.pack("<I", n), lambda p: len(p) == 20, "BENCH",
                         timeout=max(self.timeout, 2.0 + n * 0.002))
        rn, lo, hi, total = struct.unpack("<IIIQ", p)
        return {"n": rn, "min": lo, "max": hi, "total": total, "mean": total / max(rn, 1)}

    def stats(self) -> dict:
        size = 4 * len(STATS_FIELDS)
        p = self.request(STATS, b"", lambda p: len(p) == size, "STATS", boot_at=4 * STATS_FIELDS.index("boot_id"),
                         reply_len=size)
        return dict(zip(STATS_FIELDS, struct.unpack(f"<{len(STATS_FIELDS)}I", p)))

    def reset(self) -> None:
        self.request(RESET, b"", lambda p: len(p) == 0, "RESET")
        self.parser.reset()


class _PortFailed(Exception):
    """The port raised (closed, unplugged): the link tries to reopen it."""
