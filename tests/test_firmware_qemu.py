"""The firmware on emulated boards, for real: QEMU runs the ELF that ``cpr-edge build`` made,
a small independent client (its own CRC) talks the HIL protocol to it over a TCP serial port,
and the on-target unit tests run through semihosting."""
from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import struct
import subprocess
import time

import numpy as np
import pytest

from cpr_edge.boards import load_board
from cpr_edge.build import build_test_image
from cpr_edge.build.fuzz import crc16, encode

pytestmark = pytest.mark.qemu

EMULATED = ["qemu-mps2-an386", "qemu-mps2-an500", "qemu-mps2-an505", "qemu-netduinoplus2"]
HELLO, INFER, BENCH, STATS, RESET, ERROR = 1, 2, 3, 4, 5, 0x7F
BAD_CRC, BAD_LENGTH, UNKNOWN_TYPE, BAD_VALUE = 1, 2, 3, 4


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
        deadline = time.monotonic() + 10
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
            self.buf += self.sock.recv(4096)

    def request(self, ftype, payload=b"", timeout=5.0):
        """Send a request; its reply is the next frame carrying its seq (host rule: frames
        with another seq, e.g. ERRORs for earlier garbage, are discarded)."""
        self.seq = (self.seq + 1) & 0xFF
        self.send_raw(encode(ftype, self.seq, payload))
        while True:
            rtype, rseq, body = self.read_frame(timeout)
            if rseq == self.seq:
                return rtype, body

    def hello(self):
        """HELLO with retries: a board may drop bytes sent before its UART is up (host rule:
        bounded retries)."""
        for _ in range(5):
            try:
                rtype, body = self.request(HELLO, timeout=1.0)
                assert rtype == HELLO | 0x80
                return parse_hello(body)
            except TimeoutError:
                continue
        raise TimeoutError("no HELLO reply after 5 tries")

    def error_of(self, reply):
        rtype, body = reply
        assert rtype == ERROR and len(body) == 2, reply
        return body[0], body[1]


def parse_hello(p: bytes) -> dict:
    proto, unit, n_in, n_out, clock, in_s, in_zp, out_s, out_zp = struct.unpack_from("<BBHHIfifi", p)
    sha = p[26:58]
    k = p[58]
    board_id = p[59:59 + k].decode()
    m = p[59 + k]
    fw = p[60 + k:60 + k + m].decode()
    assert len(p) == 60 + k + m
    return dict(protocol=proto, counter_unit=unit, input_len=n_in, output_len=n_out, clock_hz=clock,
                input_scale=in_s, input_zero_point=in_zp, output_scale=out_s, output_zero_point=out_zp,
                sha256=sha.hex(), board_id=board_id, fw_version=fw)


def quantize(x, scale, zp):
    """TFLM QUANTIZE reference, independently: float32 division, round half away from zero."""
    r = np.float32(x) / np.float32(scale)
    r = np.sign(r) * np.floor(np.abs(r) + np.float32(0.5))
    return np.clip(r + zp, -128, 127).astype(np.int8)


def check_infer(board, h, interp, obs):
    """INFER ``obs`` on the board; the action must equal, bit for bit, the tflite-micro
    interpreter's output on the same quantised input, dequantised in float32. Returns ticks."""
    rtype, body = board.request(INFER, obs.astype("<f4").tobytes())
    assert rtype == INFER | 0x80 and len(body) == 4 * h["output_len"] + 4
    action = np.frombuffer(body[:-4], "<f4")
    q = quantize(obs, h["input_scale"], h["input_zero_point"])
    interp.set_input(q.reshape(1, -1), 0)
    interp.invoke()
    out = np.asarray(interp.get_output(0)).reshape(-1).astype(np.int32)
    want = (out - h["output_zero_point"]).astype(np.float32) * np.float32(h["output_scale"])
    assert action.tobytes() == want.astype("<f4").tobytes(), (obs, action, want)
    return struct.unpack("<I", body[-4:])[0]


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
        rtype, body = board.request(HELLO)
        assert rtype == HELLO | 0x80
        h = parse_hello(body)
        assert h["protocol"] == 1 and h["counter_unit"] == 1 and h["clock_hz"] == 25_000_000
        assert h["board_id"] == "qemu-mps2-an386" and h["fw_version"].startswith("cpr-edge ")
        assert h["sha256"] == hashlib.sha256(tflite.read_bytes()).hexdigest()
        assert (h["input_len"], h["output_len"]) == (export["obs_dim"], export["act_dim"])
        assert np.float32(h["input_scale"]) == np.float32(export["input"]["scale"])
        assert h["input_zero_point"] == export["input"]["zero_point"]
        assert np.float32(h["output_scale"]) == np.float32(export["output"]["scale"])

        rng = np.random.default_rng(0)
        obs_set = [rng.normal(0, 2, h["input_len"]).astype(np.float32) for _ in range(40)]
        obs_set.append(np.full(h["input_len"], 1e6, np.float32))   # clamps high
        obs_set.append(np.full(h["input_len"], -1e6, np.float32))  # clamps low
        # exact .5 ties of x / scale, where the rounding mode matters
        obs_set.append((np.arange(h["input_len"]) + np.float32(0.5)).astype(np.float32) * np.float32(h["input_scale"]))
        ticks = [check_infer(board, h, interp, obs) for obs in obs_set]
        # instructions of model_invoke: data-independent straight-line code, so the counts
        # agree to within a couple of SysTick ticks (40 instructions each)
        assert min(ticks) > 1000 and max(ticks) - min(ticks) <= 80

        rtype, body = board.request(BENCH, struct.pack("<I", 5), timeout=30)
        n, lo, hi, total = struct.unpack("<IIIQ", body)
        assert rtype == BENCH | 0x80 and n == 5 and lo <= hi and 5 * lo <= total <= 5 * hi
        assert abs(lo - min(ticks)) <= 80


@pytest.mark.slow
def test_bad_frames_get_errors_and_the_board_keeps_answering(an386_elf):
    with running_board("qemu-mps2-an386", an386_elf) as board:
        rtype, body = board.request(HELLO)
        n_in = parse_hello(body)["input_len"]

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
        # valid CRC but not a request type, wrong payload size, non-finite value, bad n
        assert board.error_of(board.request(0x09)) == (UNKNOWN_TYPE, 0x09)
        assert board.error_of(board.request(0x81)) == (UNKNOWN_TYPE, 0x81)
        assert board.error_of(board.request(INFER, b"\0" * (4 * n_in - 1))) == (BAD_LENGTH, INFER)
        assert board.error_of(board.request(HELLO, b"x")) == (BAD_LENGTH, HELLO)
        nan_obs = np.zeros(n_in, "<f4")
        nan_obs[-1] = np.nan
        assert board.error_of(board.request(INFER, nan_obs.tobytes())) == (BAD_VALUE, INFER)
        assert board.error_of(board.request(INFER, np.full(n_in, np.inf, "<f4").tobytes())) == (BAD_VALUE, INFER)
        assert board.error_of(board.request(BENCH, struct.pack("<I", 0))) == (BAD_VALUE, BENCH)
        assert board.error_of(board.request(BENCH, struct.pack("<I", 100001))) == (BAD_VALUE, BENCH)
        # garbage with stray sync bytes, then a valid request: answered
        board.send_raw(bytes([0x00, 0x13, 0xA5, 0x77]))
        time.sleep(0.2)  # the stray sync's candidate frame stalls and is abandoned
        assert board.request(HELLO)[0] == HELLO | 0x80
        # a truncated frame, then silence: abandoned (timeout), the next request is answered
        board.send_raw(encode(INFER, 50, np.zeros(n_in, "<f4").tobytes())[:9])
        time.sleep(0.2)
        assert board.request(HELLO)[0] == HELLO | 0x80

        rtype, body = board.request(STATS)
        assert rtype == STATS | 0x80
        stack_size, stack_used, ok, crc_err, framing, timeouts, overflows, infers = struct.unpack("<8I", body)
        assert stack_size == 8192 and 0 < stack_used < stack_size
        assert crc_err == 1 and framing == 5 and timeouts == 2 and overflows == 0
        assert infers == 0  # none of the bad INFERs ran the model
        assert ok >= 8

        # bytes keep arriving by interrupt while the core is busy in BENCH: 3000 bytes of
        # garbage (stray syncs included, which draw ERRORs) right behind the request; the
        # reply comes, the garbage is parsed afterwards, the board keeps answering
        board.seq += 1
        board.send_raw(encode(BENCH, board.seq, struct.pack("<I", 300)) + bytes(range(1, 251)) * 12)
        rtype, seq, body = board.read_frame(timeout=60)
        assert (rtype, seq) == (BENCH | 0x80, board.seq)
        time.sleep(0.3)
        assert board.request(HELLO)[0] == HELLO | 0x80
        after = struct.unpack("<8I", board.request(STATS)[1])
        assert after[4] > framing and after[7] == 0  # garbage parsed: BAD_LENGTHs; still no INFER

        # RESET: the reply comes first, then the board restarts with fresh counters
        assert board.request(RESET) == (RESET | 0x80, b"")
        time.sleep(0.2)
        rtype, body = board.request(STATS)
        assert rtype == STATS | 0x80 and struct.unpack("<8I", body)[3] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", EMULATED[1:])
def test_other_emulated_boards_answer_hello_and_infer(name, firmware_builds, hil_model_dir):
    """The same firmware on the M7, the Secure M33 and the STM32F405 (USART driver shared
    with the Nucleo-F446RE): HELLO, and INFER bit-exact to tflite-micro."""
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_file(str(hil_model_dir / "model_int8.tflite"))
    board_def = load_board(name)
    _, out = firmware_builds[name]
    with running_board(name, out / "firmware.elf") as board:
        h = board.hello()
        assert h["board_id"] == name and h["clock_hz"] == board_def.clock_hz and h["counter_unit"] == 1
        rng = np.random.default_rng(1)
        for _ in range(5):
            assert check_infer(board, h, interp, rng.normal(0, 2, h["input_len"]).astype(np.float32)) > 1000
        stats = struct.unpack("<8I", board.request(STATS)[1])
        assert stats[7] == 5 and 0 < stats[1] < stats[0]


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
