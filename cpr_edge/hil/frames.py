"""Framing of the HIL protocol (docs/protocol.md): CRC-16/CCITT-FALSE, frame encoding and the
host's incremental receiver, which follows the protocol's receiver rules (resync after
garbage, oversized headers and bad CRCs; a stalled frame is abandoned after 50 ms)."""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass

SYNC = 0xA5
MAX_PAYLOAD = 512
HEADER = 5
FRAME_STALL_S = 0.050
"""A frame whose bytes stop arriving for longer than this is abandoned (protocol rule)."""


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
        self.limit = None
        """``limit(type)``: the longest payload accepted for a frame type, or None for
        ``MAX_PAYLOAD``; a longer header is dropped at once, before it can hold the candidate
        open and swallow the frames after it (a lost byte shifts payload into ``len``)."""
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
            if n > MAX_PAYLOAD or (self.limit is not None and n > self.limit(self.buf[1])):
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


