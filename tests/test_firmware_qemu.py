"""The firmware on emulated boards, for real: QEMU runs the ELF that ``cpr-edge build`` made,
a small independent client (its own CRC and frame encoding, written from docs/protocol.md,
version 2) talks the HIL protocol to it over a TCP serial port, and the on-target unit tests
run through semihosting."""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import struct
import subprocess
import time

import numpy as np
import pytest

from cpr_edge.boards import load_board
from cpr_edge.firmware_build import build_test_image, firmware_dir

pytestmark = pytest.mark.qemu

EMULATED = ["qemu-mps2-an386", "qemu-mps2-an500", "qemu-mps2-an505", "qemu-netduinoplus2", "qemu-microbit",
            "qemu-mps3-an547", "qemu-stm32vldiscovery"]
HELLO, INFER, BENCH, STATS, RESET, INFER_Q, ERROR = 1, 2, 3, 4, 5, 6, 0x7F
BAD_CRC, BAD_LENGTH, UNKNOWN_TYPE, BAD_VALUE = 1, 2, 3, 4
STATS_FIELDS = ("stack_size", "stack_used", "frames_ok", "crc_errors", "framing_errors", "timeouts",
                "overflows", "infers", "replays", "boot_id", "uptime_ms")
TYPE_RANGES = {1: (-128, 127), 2: (-32768, 32767)}  # HELLO input_elem_bytes -> integer range


def _stall_ms() -> int:
    """FRAME_STALL_MS of the firmware sources (the board abandons a candidate frame after it)."""
    header = (firmware_dir() / "app" / "frame_parser.h").read_text()
    return int(re.search(r"#define FRAME_STALL_MS (\d+)u", header).group(1))


# The host cannot observe the board abandoning a stalled candidate frame (a stall draws no
# reply, and any byte sent meanwhile would join the candidate), so the tests wait. The stall is
# measured in the board's time; under `-icount shift=0` an idle board's virtual clock follows
# the host's, but a loaded 2-core machine may not schedule QEMU for a while: 20 stalls of margin.
STALL_WAIT_S = 20 * _stall_ms() / 1000


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, bitwise: polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR."""
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


assert crc16(b"123456789") == 0x29B1  # the check value of docs/protocol.md


def encode(ftype: int, seq: int, payload: bytes = b"") -> bytes:
    """sync, type, seq, len (u16 LE), payload, CRC (u16 LE) over sync through payload."""
    head = bytes([0xA5, ftype, seq]) + struct.pack("<H", len(payload)) + payload
    return head + struct.pack("<H", crc16(head))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_board(board_name: str, elf):
    """QEMU running ``elf``; yields a connected socket to its HIL UART. Always killed."""
    board = load_board(board_name)
    port, qmp = free_port(), free_port()
    proc = subprocess.Popen(board.qemu_command(elf, port, qmp), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    sock = None
    try:
        deadline = time.monotonic() + 30  # QEMU's start-up on a loaded machine
        while sock is None:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"QEMU did not start: {proc.stderr.read().decode()[-300:]}")
                time.sleep(0.05)
        yield Client(sock)
    finally:
        if sock:
            sock.close()
        proc.kill()
        proc.wait()


class Client:
    """Minimal host side: send a frame, read back one CRC-checked frame."""

    def __init__(self, sock):
        self.sock, self.buf, self.seq = sock, b"", 0
        self.boot_id = 0  # the id of the last HELLO answered

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def read_frame(self, timeout=5.0):
        end = time.monotonic() + timeout
        while True:
            i = self.buf.find(b"\xa5")
            self.buf = self.buf[i:] if i >= 0 else b""
            if len(self.buf) >= 5:
                n = struct.unpack_from("<H", self.buf, 3)[0]
                if len(self.buf) >= n + 7:
                    frame, self.buf = self.buf[:n + 7], self.buf[n + 7:]
                    assert crc16(frame[:-2]) == struct.unpack("<H", frame[-2:])[0], frame.hex()
                    return frame[1], frame[2], frame[5:-2]
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from the board")
            self.sock.settimeout(left)
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("QEMU closed the serial socket")
            self.buf += data

    def request(self, ftype, payload=b"", timeout=5.0):
        """Send a request; its reply is the next frame carrying its seq (host rule: frames
        with another seq, e.g. ERRORs for earlier garbage, are discarded)."""
        self.seq = (self.seq + 1) & 0xFF
        self.send_raw(encode(ftype, self.seq, payload))
        end = time.monotonic() + timeout
        while True:
            rtype, rseq, body = self.read_frame(max(0.0, end - time.monotonic()))
            if rseq == self.seq:
                return rtype, body

    def hello_once(self, boot_id, timeout=5.0):
        """One HELLO naming boot ``boot_id``: the parsed reply."""
        rtype, body = self.request(HELLO, struct.pack("<I", boot_id), timeout)
        assert rtype == HELLO | 0x80, (rtype, body)
        h = parse_hello(body)
        assert h["boot_id"] == boot_id
        self.boot_id = boot_id
        return h

    def hello(self, boot_id, deadline_s=30.0, attempt_s=1.0):
        """HELLO until answered: a board may drop bytes sent before its UART is up, or while it
        resets (host rule: resend). Each attempt has its own seq and waits ``attempt_s`` (many
        stall times, so a lost attempt's remains are abandoned before the next); a late reply
        to an earlier attempt is accepted, so the reply is the one to the first HELLO the board
        handled. ``deadline_s`` is generous for a loaded machine and only bounds a board that
        never answers. ``hello_attempts`` counts the HELLOs sent."""
        end, sent = time.monotonic() + deadline_s, set()
        self.hello_attempts = 0
        while time.monotonic() < end:
            self.seq = (self.seq + 1) & 0xFF
            sent.add(self.seq)
            self.hello_attempts += 1
            self.send_raw(encode(HELLO, self.seq, struct.pack("<I", boot_id)))
            attempt_end = time.monotonic() + attempt_s
            try:
                while True:
                    rtype, rseq, body = self.read_frame(max(0.0, attempt_end - time.monotonic()))
                    if rtype == HELLO | 0x80 and rseq in sent:
                        h = parse_hello(body)
                        assert h["boot_id"] == boot_id
                        self.boot_id = boot_id
                        return h
            except TimeoutError:
                continue
        raise TimeoutError(f"no HELLO reply within {deadline_s} s")

    def stats(self):
        rtype, body = self.request(STATS)
        assert rtype == STATS | 0x80 and len(body) == 44, (rtype, body)
        s = dict(zip(STATS_FIELDS, struct.unpack("<11I", body)))
        assert s["boot_id"] == self.boot_id  # every STATS reply carries the boot id
        return s

    def error_of(self, reply):
        rtype, body = reply
        assert rtype == ERROR and len(body) == 2, reply
        return body[0], body[1]


def parse_hello(p: bytes) -> dict:
    """HELLO reply of docs/protocol.md (version 2)."""
    proto, unit, n_in, n_out, clock, in_s, in_zp, out_s, out_zp = struct.unpack_from("<BBHHIfifi", p)
    sha = p[26:58]
    elem_bytes, boot_id, previous, uptime = struct.unpack_from("<BIII", p, 58)
    k = p[71]
    board_id = p[72:72 + k].decode()
    m = p[72 + k]
    fw = p[73 + k:73 + k + m].decode()
    assert len(p) == 73 + k + m
    return dict(protocol=proto, counter_unit=unit, input_len=n_in, output_len=n_out, clock_hz=clock,
                input_scale=in_s, input_zero_point=in_zp, output_scale=out_s, output_zero_point=out_zp,
                sha256=sha.hex(), input_elem_bytes=elem_bytes, boot_id=boot_id,
                previous_boot_id=previous, uptime_ms=uptime, board_id=board_id, fw_version=fw)


def prescale(obs, export):
    """export.json's input prescale, x = (obs - offset) * gain in float32."""
    offset = np.asarray(export["input"]["offset"], np.float32)
    gain = np.asarray(export["input"]["gain"], np.float32)
    return ((np.asarray(obs, np.float32) - offset) * gain).astype(np.float32)


def quantize(x, scale, zp, elem_bytes):
    """TFLM QUANTIZE reference, independently: float32 division, round half away from zero,
    clamp to the model input type."""
    r = (np.asarray(x, np.float32) / np.float32(scale)).astype(np.float64)
    r = np.sign(r) * np.floor(np.abs(r) + 0.5)
    lo, hi = TYPE_RANGES[elem_bytes]
    return np.clip(r + zp, lo, hi).astype({1: np.int8, 2: np.int16}[elem_bytes])


def infer_reply(board, h, body):
    """(action, invoke count) of an INFER / INFER_Q reply, checking its size and boot id."""
    assert len(body) == 4 * h["output_len"] + 8, body
    count, boot_id = struct.unpack("<II", body[-8:])
    assert boot_id == board.boot_id
    return np.frombuffer(body[:-8], "<f4"), count


def interpreter_action(interp, h, q):
    """The tflite-micro interpreter's output on integer input ``q``, dequantised in float32."""
    interp.set_input(q.reshape(1, -1), 0)
    interp.invoke()
    out = np.asarray(interp.get_output(0)).reshape(-1).astype(np.int32)
    return (out - h["output_zero_point"]).astype(np.float32) * np.float32(h["output_scale"])


def check_infer(board, h, interp, export, obs):
    """INFER ``obs`` on the board; the action must equal, bit for bit, the tflite-micro
    interpreter's output on the same prescaled and quantised input, dequantised in float32.
    Returns the invoke count."""
    rtype, body = board.request(INFER, obs.astype("<f4").tobytes())
    assert rtype == INFER | 0x80, (rtype, body)
    action, count = infer_reply(board, h, body)
    q = quantize(prescale(obs, export), h["input_scale"], h["input_zero_point"], h["input_elem_bytes"])
    want = interpreter_action(interp, h, q)
    assert action.tobytes() == want.astype("<f4").tobytes(), (obs, action, want)
    return count


def tie_observations(export, scale):
    """An observation whose prescaled elements land exactly on .5 ties of x / scale (where
    the rounding mode matters), positive ties on even elements and negative ones on odd: for
    each element the float32 neighbours (within 300 ulps) of the ideal observations of ties
    k + 0.5, |k| < 40, are tried in turn. Returns it with the mask of elements that hit one."""
    offset = np.asarray(export["input"]["offset"], np.float32)
    gain = np.asarray(export["input"]["gain"], np.float32)
    scale = np.float32(scale)
    n = len(offset)
    obs, hit = offset.copy(), np.zeros(n, bool)
    for i in range(n):
        sign = np.float32(1 if i % 2 == 0 else -1)
        for j in range(40):
            k = sign * (np.float32(j) + np.float32(0.5))
            ideal = np.float32(offset[i] + np.float32(k * scale) / gain[i])
            cand = (ideal.view(np.int32) + np.arange(-300, 301, dtype=np.int32)).view(np.float32)
            x = ((cand - offset[i]) * gain[i]).astype(np.float32)
            ok = np.isfinite(cand) & ((x / scale).astype(np.float32) == k)
            if ok.any():
                obs[i], hit[i] = cand[ok][0], True
                break
    return obs, hit


@pytest.fixture(scope="module")
def an386_elf(hil_model_dir):
    return hil_model_dir / "firmware" / "qemu-mps2-an386" / "firmware.elf"


@pytest.mark.slow
def test_hello_and_infer_match_tflite_micro(hil_model_dir, an386_elf):
    from tflite_micro import runtime

    export = json.loads((hil_model_dir / "export.json").read_text())
    tflite = hil_model_dir / "model_int8.tflite"
    interp = runtime.Interpreter.from_file(str(tflite))
    with running_board("qemu-mps2-an386", an386_elf) as board:
        h = board.hello_once(0x1234_5678)
        assert h["protocol"] == 2 and h["counter_unit"] == 1 and h["clock_hz"] == 25_000_000
        assert h["previous_boot_id"] == 0  # no HELLO since boot
        assert h["board_id"] == "qemu-mps2-an386" and h["fw_version"].startswith("cpr-edge ")
        assert h["sha256"] == hashlib.sha256(tflite.read_bytes()).hexdigest()
        assert (h["input_len"], h["output_len"]) == (export["obs_dim"], export["act_dim"])
        assert h["input_elem_bytes"] == {"INT8": 1, "INT16": 2}[export["input"]["type"]]
        assert np.float32(h["input_scale"]) == np.float32(export["input"]["scale"])
        assert h["input_zero_point"] == export["input"]["zero_point"]
        assert np.float32(h["output_scale"]) == np.float32(export["output"]["scale"])
        # a second HELLO names a new boot id and reports the one before it
        h2 = board.hello_once(0x0BAD_CAFE)
        assert h2["previous_boot_id"] == 0x1234_5678 and h2["uptime_ms"] >= h["uptime_ms"]

        rng = np.random.default_rng(0)
        offset = np.asarray(export["input"]["offset"], np.float32)
        gain = np.asarray(export["input"]["gain"], np.float32)
        # spread over the prescaled input range (x ~ N(0, 2)), and in raw units
        obs_set = [(offset + rng.normal(0, 2, h["input_len"]) / gain).astype(np.float32) for _ in range(30)]
        obs_set += [rng.normal(0, 2, h["input_len"]).astype(np.float32) for _ in range(10)]
        obs_set.append(np.full(h["input_len"], 1e6, np.float32))   # clamps high
        obs_set.append(np.full(h["input_len"], -1e6, np.float32))  # clamps low
        ties, hit = tie_observations(export, h["input_scale"])
        assert hit.all()  # exact ties really reach the quantiser
        obs_set.append(ties)
        counts = [check_infer(board, h, interp, export, obs) for obs in obs_set]
        # instructions of model_invoke: data-independent straight-line code, so the counts
        # agree to within a couple of SysTick ticks (40 instructions each)
        assert min(counts) > 1000 and max(counts) - min(counts) <= 80

        # INFER_Q: the host's own prescale and quantisation give the same action as INFER
        for obs in obs_set[:5]:
            q = quantize(prescale(obs, export), h["input_scale"], h["input_zero_point"], h["input_elem_bytes"])
            rtype, body = board.request(INFER_Q, q.astype(q.dtype.newbyteorder("<")).tobytes())
            assert rtype == INFER_Q | 0x80, (rtype, body)
            action, _ = infer_reply(board, h, body)
            assert action.tobytes() == interpreter_action(interp, h, q).astype("<f4").tobytes()

        # a resend with the same seq and payload is replayed: the same reply, the model not run again
        before = board.stats()
        obs = obs_set[0].astype("<f4").tobytes()
        board.seq = (board.seq + 1) & 0xFF
        frame = encode(INFER, board.seq, obs)
        board.send_raw(frame)
        first = board.read_frame()
        board.send_raw(frame)
        again = board.read_frame()
        assert first == again and first[:2] == (INFER | 0x80, board.seq)
        after = board.stats()
        assert after["infers"] == before["infers"] + 1 and after["replays"] == before["replays"] + 1

        rtype, body = board.request(BENCH, struct.pack("<I", 5), timeout=30)
        n, lo, hi, total = struct.unpack("<IIIQ", body)
        assert rtype == BENCH | 0x80 and n == 5 and lo <= hi and 5 * lo <= total <= 5 * hi
        assert abs(lo - min(counts)) <= 80


@pytest.mark.slow
def test_bad_frames_get_errors_and_the_board_keeps_answering(an386_elf):
    with running_board("qemu-mps2-an386", an386_elf) as board:
        n_in = board.hello_once(0x0000_0101)["input_len"]

        # corrupted CRC: BAD_CRC with the type as received, never acted on
        frame = bytearray(encode(INFER, 9, np.zeros(n_in, "<f4").tobytes()))
        frame[-1] ^= 0xFF
        board.send_raw(bytes(frame))
        rtype, seq, body = board.read_frame()
        assert (rtype, seq, body[0], body[1]) == (ERROR, 9, BAD_CRC, INFER)
        # oversized length
        board.send_raw(bytes([0xA5, INFER, 10, 0x01, 0x02]))  # len 513
        rtype, seq, body = board.read_frame()
        assert (rtype, seq, body[0], body[1]) == (ERROR, 10, BAD_LENGTH, INFER)
        # a header longer than its type accepts (a lost byte shifts payload into len) is
        # refused at once: the HELLO right behind it is not swallowed into a 300-byte candidate
        board.send_raw(bytes([0xA5, INFER, 11]) + struct.pack("<H", 4 * n_in + 4)
                       + encode(HELLO, 12, struct.pack("<I", 0x0000_0100)))
        rtype, seq, body = board.read_frame()
        assert (rtype, seq, body[0], body[1]) == (ERROR, 11, BAD_LENGTH, INFER)
        rtype, seq, body = board.read_frame()
        assert (rtype, seq) == (HELLO | 0x80, 12)
        board.hello_once(0x0000_0101)
        # valid CRC but not a request type, wrong payload size, non-finite value, bad n
        assert board.error_of(board.request(0x09)) == (UNKNOWN_TYPE, 0x09)
        assert board.error_of(board.request(0x81)) == (UNKNOWN_TYPE, 0x81)
        assert board.error_of(board.request(INFER, b"\0" * (4 * n_in - 1))) == (BAD_LENGTH, INFER)
        assert board.error_of(board.request(HELLO, b"x")) == (BAD_LENGTH, HELLO)  # not a u32 boot id
        nan_obs = np.zeros(n_in, "<f4")
        nan_obs[-1] = np.nan
        assert board.error_of(board.request(INFER, nan_obs.tobytes())) == (BAD_VALUE, INFER)
        assert board.error_of(board.request(INFER, np.full(n_in, np.inf, "<f4").tobytes())) == (BAD_VALUE, INFER)
        assert board.error_of(board.request(BENCH, struct.pack("<I", 0))) == (BAD_VALUE, BENCH)
        assert board.error_of(board.request(BENCH, struct.pack("<I", 100001))) == (BAD_VALUE, BENCH)
        # garbage with stray sync bytes, then a valid request: answered
        board.send_raw(bytes([0x00, 0x13, 0xA5, 0x77]))
        time.sleep(STALL_WAIT_S)  # the stray sync's candidate frame stalls and is abandoned
        assert board.hello_once(0x0000_0102)["previous_boot_id"] == 0x0000_0101
        # a truncated frame, then silence: abandoned (timeout), the next request is answered
        board.send_raw(encode(INFER, 50, np.zeros(n_in, "<f4").tobytes())[:9])
        time.sleep(STALL_WAIT_S)
        board.hello_once(0x0000_0103)

        s = board.stats()
        # the stack the build reserved from measurement (memory.json), never filled
        mem = json.loads((an386_elf.parent / "memory.json").read_text())
        assert s["stack_size"] == mem["ram"]["stack_reserved"] and 0 < s["stack_used"] < s["stack_size"]
        assert s["crc_errors"] == 1 and s["framing_errors"] == 6 and s["timeouts"] == 2
        assert s["overflows"] == 0
        assert s["infers"] == 0 and s["replays"] == 0  # none of the bad INFERs ran the model
        assert s["frames_ok"] >= 8

        # bytes keep arriving by interrupt while the core is busy in BENCH: 3000 bytes of
        # garbage (stray syncs included, which draw ERRORs) right behind the request; the
        # reply comes, the garbage is parsed afterwards, the board keeps answering
        board.seq = (board.seq + 1) & 0xFF
        board.send_raw(encode(BENCH, board.seq, struct.pack("<I", 300)) + bytes(range(1, 251)) * 12)
        rtype, seq, body = board.read_frame(timeout=60)
        assert (rtype, seq) == (BENCH | 0x80, board.seq)
        # whatever the garbage left (bytes lost to a full queue can leave a candidate frame)
        # is abandoned before the next request
        time.sleep(STALL_WAIT_S)
        board.hello(0x0000_0104)
        after = board.stats()
        assert after["framing_errors"] > s["framing_errors"] and after["infers"] == 0  # garbage parsed: BAD_LENGTHs
        # interrupts landed during BENCH's invokes (the garbage): still within the reserve
        assert after["stack_used"] < after["stack_size"] == s["stack_size"]

        # RESET: the reply comes first, then the board restarts with fresh counters and no
        # boot id; HELLO is resent until the restarted board answers
        assert board.request(RESET) == (RESET | 0x80, b"")
        h = board.hello(0x0000_0105)
        assert h["previous_boot_id"] == 0  # the reset cleared the boot id
        fresh = board.stats()
        assert fresh["crc_errors"] == 0 and fresh["framing_errors"] == 0 and fresh["infers"] == 0
        assert fresh["frames_ok"] <= board.hello_attempts + 1  # the HELLOs and this STATS


@pytest.mark.slow
@pytest.mark.parametrize("name", EMULATED[1:])
def test_other_emulated_boards_answer_hello_and_infer(name, firmware_builds, hil_model_dir):
    """The same firmware on the M7, the Secure M33, the STM32F405 (USART driver shared
    with the Nucleo-F446RE), the Cortex-M0 of the micro:bit (UART driver shared with the
    nRF52840-DK, soft-float) and the Secure M55: HELLO, and INFER bit-exact to tflite-micro."""
    from tflite_micro import runtime

    export = json.loads((hil_model_dir / "export.json").read_text())
    interp = runtime.Interpreter.from_file(str(hil_model_dir / "model_int8.tflite"))
    board_def = load_board(name)
    _, out = firmware_builds[name]
    with running_board(name, out / "firmware.elf") as board:
        h = board.hello(0x00C0_FFEE)
        assert h["board_id"] == name and h["clock_hz"] == board_def.clock_hz and h["counter_unit"] == 1
        assert h["protocol"] == 2
        rng = np.random.default_rng(1)
        offset = np.asarray(export["input"]["offset"], np.float32)
        gain = np.asarray(export["input"]["gain"], np.float32)
        for _ in range(5):
            obs = (offset + rng.normal(0, 2, h["input_len"]) / gain).astype(np.float32)
            assert check_infer(board, h, interp, export, obs) > 1000
        stats = board.stats()
        assert stats["infers"] == 5 and 0 < stats["stack_used"] < stats["stack_size"]


@pytest.mark.slow
@pytest.mark.parametrize("name", EMULATED)
def test_on_target_unit_tests_pass_in_qemu(name, tmp_path):
    """Frame parser, CRC, ring buffer, stack painting and the instruction counter's
    calibration, run on the emulated core; semihosting carries the exit status."""
    board = load_board(name)
    elf = build_test_image(board, tmp_path / "unit")
    res = subprocess.run(board.semihosting_command(elf), capture_output=True, text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "failures 0" in out and "FAIL" not in out
    assert out.count("ok   ") >= 19
    # 2-instruction loop of 200000 iterations counted as instructions within 2 %
    loop = int(out.split("loop_counter ")[1].split()[0])
    assert abs(loop - 400_000) < 8_000
