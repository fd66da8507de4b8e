"""The messages of the HIL protocol (docs/protocol.md, "Messages"): type codes, the HELLO
reply's layout, the STATS fields, and the host's copy of the board's input quantisation."""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

PROTOCOL_VERSION = 2
HELLO, INFER, BENCH, STATS, RESET, INFER_Q, ERROR = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x7F
REPLY = 0x80
ERROR_NAMES = {1: "BAD_CRC", 2: "BAD_LENGTH", 3: "UNKNOWN_TYPE", 4: "BAD_VALUE"}
COUNTER_UNITS = {0: "cycles", 1: "instructions"}


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
    input_elem_bytes: int
    """Bytes per element of an INFER_Q observation: 1 (int8 model input) or 2 (int16)."""
    boot_id: int
    """The id this HELLO gave the board (echoed)."""
    previous_boot_id: int
    """The board's id before this HELLO: 0 after a boot, else the id of an earlier HELLO."""
    uptime_ms: int
    board_id: str
    fw_version: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


_HELLO_FIXED = struct.Struct("<BBHHIfifi32sBIII")


def parse_hello(p: bytes) -> Hello | None:
    """The HELLO reply, or None if its length is not self-consistent."""
    if len(p) < _HELLO_FIXED.size + 2:
        return None
    (proto, unit, n_in, n_out, clock, in_s, in_zp, out_s, out_zp, sha, elem, boot, prev,
     up) = _HELLO_FIXED.unpack_from(p)
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
                 sha.hex(), elem, boot, prev, up, board.decode("ascii", "replace"),
                 fw.decode("ascii", "replace"))


STATS_FIELDS = ("stack_size", "stack_used", "frames_ok", "crc_errors", "framing_errors",
                "timeouts", "overflows", "infers", "replays", "boot_id", "uptime_ms")



def quantize_input(obs: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """The board's input quantisation (TFLM QUANTIZE reference): float32 division, round half
    away from zero, add the zero point, clamp to int8."""
    v = (np.asarray(obs, np.float32) / np.float32(scale)).astype(np.float64)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + zero_point, -128, 127).astype(np.int8)


def dequantize_output(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((np.asarray(q, np.int32) - zero_point).astype(np.float32) * np.float32(scale)).astype(np.float32)
