"""Host side of the HIL serial protocol (docs/protocol.md): framing, CRC, sequence numbers,
bounded timeouts and retries, resynchronisation after garbage.

The link talks to anything pyserial opens: ``/dev/ttyACM0`` for a real board,
``socket://127.0.0.1:PORT`` for QEMU. A reply is accepted only if its CRC holds, its type is
the request's type | 0x80, its ``seq`` is the request's and its payload has exactly the size
the type requires; everything else is discarded. Nothing unverified ever leaves ``Link``:
a request that gets no acceptable reply within its retries raises ``LinkError``.
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import numpy as np

from cpr_edge.errors import CprError

SYNC = 0xA5
MAX_PAYLOAD = 512
HEADER = 5
FRAME_STALL_S = 0.050
"""A frame whose bytes stop arriving for longer than this is abandoned (protocol rule)."""

HELLO, INFER, BENCH, STATS, RESET, ERROR = 0x01, 0x02, 0x03, 0x04, 0x05, 0x7F
REPLY = 0x80
ERROR_NAMES = {1: "BAD_CRC", 2: "BAD_LENGTH", 3: "UNKNOWN_TYPE", 4: "BAD_VALUE"}
COUNTER_UNITS = {0: "cycles", 1: "instructions"}


class LinkError(CprError):
    """The board did not give a verifiable answer (after the bounded retries)."""


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def encode_frame(ftype: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    head = struct.pack("<BBBH", SYNC, ftype, seq & 0xFF, len(payload)) + payload
    return head + struct.pack("<H", crc16(head))


@dataclass
class Frame:
    type: int
    seq: int
    payload: bytes


@dataclass
class ParserCounters:
    frames: int = 0
    crc_errors: int = 0
    bad_length: int = 0
    stalls: int = 0
    discarded_bytes: int = 0


class FrameParser:
    """Incremental receiver following the protocol's receiver rules.

    ``feed(data, now)`` returns the complete frames whose CRC holds. Bytes before a sync are
    discarded; an oversized ``len`` or a bad CRC drops the candidate and resumes the search at
    the byte after its sync; a candidate whose bytes stall for more than 50 ms is abandoned.
    """

    def __init__(self):
        self.buf = bytearray()
        self.last_byte_at = 0.0
        self.counters = ParserCounters()

    def reset(self) -> None:
        self.counters.discarded_bytes += len(self.buf)
        self.buf.clear()

    def need(self) -> int:
        """Bytes still missing to complete the candidate frame (at least 1)."""
        if len(self.buf) < HEADER:
            return max(1, HEADER - len(self.buf)) if self.buf else 1
        n = struct.unpack_from("<H", self.buf, 3)[0]
        return max(1, HEADER + n + 2 - len(self.buf))

    def _drop_sync(self) -> None:
        del self.buf[0]
        self._to_sync()

    def _to_sync(self) -> None:
        i = self.buf.find(SYNC)
        cut = len(self.buf) if i < 0 else i
        if cut:
            self.counters.discarded_bytes += cut
            del self.buf[:cut]

    def expire(self, now: float) -> None:
        """Abandon a partial frame whose bytes stopped arriving (receiver rule: 50 ms)."""
        if self.buf and now - self.last_byte_at > FRAME_STALL_S:
            self.counters.stalls += 1
            self._drop_sync()

    def feed(self, data: bytes, now: float | None = None) -> list[Frame]:
        now = time.monotonic() if now is None else now
        if data:
            self.expire(now)
            self.buf += data
            self.last_byte_at = now
        frames = []
        while True:
            self._to_sync()
            if len(self.buf) < HEADER:
                break
            n = struct.unpack_from("<H", self.buf, 3)[0]
            if n > MAX_PAYLOAD:
                self.counters.bad_length += 1
                self._drop_sync()
                continue
            total = HEADER + n + 2
            if len(self.buf) < total:
                break
            body = bytes(self.buf[:HEADER + n])
            if crc16(body) != struct.unpack_from("<H", self.buf, HEADER + n)[0]:
                self.counters.crc_errors += 1
                self._drop_sync()
                continue
            frames.append(Frame(body[1], body[2], body[HEADER:]))
            self.counters.frames += 1
            del self.buf[:total]
        return frames


@dataclass
class Hello:
    protocol: int
    counter_unit: str
    input_len: int
    output_len: int
    clock_hz: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    model_sha256: str
    board_id: str
    fw_version: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


_HELLO_FIXED = struct.Struct("<BBHHIfifi32s")


def parse_hello(p: bytes) -> Hello | None:
    """The HELLO reply, or None if its length is not self-consistent."""
    if len(p) < _HELLO_FIXED.size + 2:
        return None
    proto, unit, n_in, n_out, clock, in_s, in_zp, out_s, out_zp, sha = _HELLO_FIXED.unpack_from(p)
    i = _HELLO_FIXED.size
    bl = p[i]
    if len(p) < i + 1 + bl + 1:
        return None
    board = p[i + 1:i + 1 + bl]
    j = i + 1 + bl
    fl = p[j]
    if len(p) != j + 1 + fl or unit not in COUNTER_UNITS:
        return None
    fw = p[j + 1:j + 1 + fl]
    return Hello(proto, COUNTER_UNITS[unit], n_in, n_out, clock, in_s, in_zp, out_s, out_zp,
                 sha.hex(), board.decode("ascii", "replace"), fw.decode("ascii", "replace"))


STATS_FIELDS = ("stack_size", "stack_used", "frames_ok", "crc_errors", "framing_errors",
                "timeouts", "overflows", "infers")


@dataclass
class Pending:
    """A request in flight: what to re-send and how to recognise its reply."""

    ftype: int
    payload: bytes
    reply_ok: object
    what: str
    timeout: float
    retries: int
    seq: int = -1
    deadline: float = 0.0
    reasons: list = field(default_factory=list)


@dataclass
class LinkCounters:
    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    discarded_replies: int = 0
    board_errors: int = 0


@dataclass
class Link:
    """Request/reply over a pyserial port.

    ``timeout`` bounds the wait for one reply; a request is sent at most ``1 + retries``
    times, each with a fresh ``seq`` (so a late reply to an earlier attempt is discarded).
    """

    port: object
    timeout: float = 0.5
    retries: int = 4
    hello_info: Hello | None = None
    seq: int = 0
    parser: FrameParser = field(default_factory=FrameParser)
    counters: LinkCounters = field(default_factory=LinkCounters)

    @classmethod
    def open(cls, url: str, baud: int = 115200, **kw) -> "Link":
        import serial

        try:
            port = serial.serial_for_url(url, baudrate=baud, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"cannot open {url}: {e}")
        sock = getattr(port, "_socket", None)
        if sock is not None:  # small request/reply frames: no Nagle delay
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(port, **kw)

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:
            pass

    # --- one verified request/reply --------------------------------------------
    def _read(self, deadline: float) -> list[Frame]:
        import serial

        now = time.monotonic()
        self.parser.expire(now)
        # poll in slices of at most 50 ms (the frame stall limit); a real serial port
        # reconfigures the tty on every timeout change, so change it only when needed
        wait = round(max(0.0, min(deadline - now, FRAME_STALL_S)), 3)
        if self.port.timeout != wait:
            self.port.timeout = wait
        try:
            data = self.port.read(self.parser.need())
        except serial.SerialException as e:
            raise LinkError(f"serial link lost: {e}")
        return self.parser.feed(data) if data else []

    def start(self, ftype: int, payload: bytes, reply_ok, what: str, timeout: float | None = None,
              retries: int | None = None) -> "Pending":
        """Send a request and return at once; ``finish`` waits for its verified reply.

        One request at a time: the host may compute while the board does, never send twice."""
        p = Pending(ftype, payload, reply_ok, what, self.timeout if timeout is None else timeout,
                    self.retries if retries is None else retries)
        self.counters.requests += 1
        self._send(p)
        return p

    def _send(self, p: "Pending") -> None:
        import serial

        self.seq = (self.seq + 1) & 0xFF
        p.seq = self.seq
        try:
            self.port.write(encode_frame(p.ftype, p.seq, p.payload))
            self.port.flush()
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"{p.what}: serial link lost while sending: {e}")
        p.deadline = time.monotonic() + p.timeout

    def finish(self, p: "Pending") -> bytes:
        """The reply payload of ``p`` once CRC, type, seq and ``reply_ok`` (its size) hold;
        re-sent with a fresh seq after a timeout or a board CRC/length error, at most
        ``retries`` times; then ``LinkError``."""
        while True:
            resend = None
            while resend is None and time.monotonic() < p.deadline:
                for f in self._read(p.deadline):
                    if f.type == ERROR and len(f.payload) == 2:
                        code, rtype = f.payload
                        name = ERROR_NAMES.get(code, f"code {code}")
                        self.counters.board_errors += 1
                        if code in (1, 2):  # a corrupted request: send it again now
                            resend = f"board answered ERROR {name}"
                            break
                        if f.seq == p.seq:
                            raise LinkError(f"{p.what}: board answered ERROR {name} (request type 0x{rtype:02x})")
                        continue
                    if f.type == p.ftype | REPLY and f.seq == p.seq and p.reply_ok(f.payload):
                        return f.payload
                    self.counters.discarded_replies += 1
            if resend is None:
                self.counters.timeouts += 1
                resend = f"no valid reply within {p.timeout * 1000:.0f} ms"
            p.reasons.append(resend)
            if len(p.reasons) > p.retries:
                raise LinkError(f"{p.what}: no verified reply after {p.retries + 1} attempts "
                                f"({'; '.join(p.reasons[-3:])})")
            self.counters.retries += 1
            self._send(p)

    def request(self, ftype: int, payload: bytes, reply_ok, what: str, timeout: float | None = None,
                retries: int | None = None) -> bytes:
        """Send and return the reply payload once ``reply_ok(payload)`` accepts it."""
        return self.finish(self.start(ftype, payload, reply_ok, what, timeout, retries))

    # --- messages ---------------------------------------------------------------
    def hello(self, timeout: float | None = None, retries: int | None = None) -> Hello:
        p = self.request(HELLO, b"", lambda p: parse_hello(p) is not None, "HELLO", timeout, retries)
        h = parse_hello(p)
        if h.protocol != 1:
            raise LinkError(f"board speaks protocol version {h.protocol}; this host speaks 1")
        self.hello_info = h
        return h

    def infer(self, obs: np.ndarray) -> tuple[np.ndarray, int]:
        """Send one observation; return the board's (verified, finite) action and ticks."""
        return self.infer_finish(self.infer_start(obs))

    def infer_start(self, obs: np.ndarray) -> "Pending":
        h = self.hello_info
        if h is None:
            raise LinkError("INFER before HELLO: the reply size is unknown")
        obs = np.ascontiguousarray(obs, dtype="<f4").ravel()
        if obs.size != h.input_len:
            raise LinkError(f"observation has {obs.size} elements; the board's model takes {h.input_len}")
        size = 4 * h.output_len + 4
        return self.start(INFER, obs.tobytes(), lambda p: len(p) == size, "INFER")

    def infer_finish(self, pending: "Pending") -> tuple[np.ndarray, int]:
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
        p = self.request(STATS, b"", lambda p: len(p) == 32, "STATS")
        return dict(zip(STATS_FIELDS, struct.unpack("<8I", p)))

    def reset(self) -> None:
        self.request(RESET, b"", lambda p: len(p) == 0, "RESET")
        self.parser.reset()


def quantize_input(obs: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """The board's input quantisation (TFLM QUANTIZE reference): float32 division, round half
    away from zero, add the zero point, clamp to int8."""
    v = (np.asarray(obs, np.float32) / np.float32(scale)).astype(np.float64)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + zero_point, -128, 127).astype(np.int8)


def dequantize_output(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((np.asarray(q, np.int32) - zero_point).astype(np.float32) * np.float32(scale)).astype(np.float32)
