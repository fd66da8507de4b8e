"""Fuzzing the firmware's frame parser on the host under AddressSanitizer and UBSan.

The parser (firmware/app/frame_parser.c + crc16.c, pure C) is compiled with the harness
firmware/tests/fuzz_frame_parser.c by the host gcc. ``fuzz_stream`` makes random, mutated and
valid frames; every so often the line goes quiet for longer than the stall time and a
*marker* frame follows, which the parser must then deliver whatever came before. The harness
checks every delivered frame independently and counts; ``run_fuzz`` checks the markers.
"""
from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path

from cpr_edge.firmware_build import firmware_dir
from cpr_edge.errors import CprError

SYNC, MAX_PAYLOAD, MARKER_TYPE = 0xA5, 512, 0x42
SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (an implementation independent of the C one under test)."""
    crc = 0xFFFF
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ b]
    return crc


def encode(ftype: int, seq: int, payload: bytes) -> bytes:
    head = struct.pack("<BBBH", SYNC, ftype, seq, len(payload)) + payload
    return head + struct.pack("<H", crc16(head))


def build_fuzz_harness(out_dir) -> Path:
    """Compile the harness with the sanitizers; returns the executable."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise CprError("no host C compiler (gcc) to build the fuzz harness")
    fw = firmware_dir()
    out = Path(out_dir) / "fuzz_frame_parser"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
           *SANITIZERS, f"-I{fw / 'app'}", str(fw / "tests" / "fuzz_frame_parser.c"),
           str(fw / "app" / "frame_parser.c"), str(fw / "app" / "crc16.c"), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise CprError(f"fuzz harness build failed: {res.stderr.strip()[:300]}")
    return out


def _payload(rng: random.Random) -> bytes:
    n = rng.choice([0, 0, 4, 8, 20, rng.randrange(0, 64), rng.randrange(0, MAX_PAYLOAD + 1)])
    return rng.randbytes(n)


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    b = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        if op == 0 and b:  # flip a bit
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # replace a byte
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:  # insert a byte (often a sync)
            b.insert(rng.randrange(len(b) + 1), SYNC if rng.random() < 0.3 else rng.randrange(256))
        elif op == 3 and b:  # delete a byte
            del b[rng.randrange(len(b))]
        elif op == 4 and len(b) > 1:  # truncate
            del b[rng.randrange(1, len(b)):]
        elif op == 5 and len(b) >= 5:  # oversized or random length field
            b[3:5] = struct.pack("<H", rng.choice([513, 0xFFFF, rng.randrange(0x10000)]))
        elif op == 6 and b:  # duplicate a slice
            i = rng.randrange(len(b))
            b[i:i] = b[i:i + rng.randrange(1, 16)]
        elif op == 7 and len(b) >= 5:  # fix the length field to something plausible but wrong
            b[3:5] = struct.pack("<H", max(0, len(b) - 7 + rng.choice([-2, -1, 1, 2])))
    return bytes(b)


def fuzz_stream(n_frames: int, seed: int = 0, marker_every: int = 20):
    """Yields (records, marker_ids) chunks: records is the harness's stdin bytes."""
    rng = random.Random(seed)
    out, markers, marker_id = bytearray(), [], 0
    for i in range(n_frames):
        kind = rng.random()
        if kind < 0.25:
            data = encode(rng.randrange(256), rng.randrange(256), _payload(rng))
        elif kind < 0.85:
            data = _mutate(rng, encode(rng.randrange(256), rng.randrange(256), _payload(rng)))
        else:  # garbage with stray syncs
            data = bytes(SYNC if rng.random() < 0.1 else rng.randrange(256)
                         for _ in range(rng.randrange(1, 80)))
        out += struct.pack("<BH", 0, len(data)) + data
        if rng.random() < 0.05:  # a short pause, below the stall time
            out += struct.pack("<BH", 1, rng.randrange(0, 50))
        if (i + 1) % marker_every == 0:
            out += struct.pack("<BH", 1, 51 + rng.randrange(20))  # the line goes quiet
            m = encode(MARKER_TYPE, marker_id & 0xFF, struct.pack("<I", marker_id))
            out += struct.pack("<BH", 0, len(m)) + m
            markers.append(marker_id)
            marker_id += 1
        if len(out) > 1 << 20:
            yield bytes(out), markers
            out, markers = bytearray(), []
    yield bytes(out), markers


def feed_harness(exe: Path, stream, timeout_s: float) -> tuple[int, str, str, list]:
    """Run a fuzz harness on the ``(chunk, markers)`` pairs of ``stream`` through its stdin,
    reading its stdout and stderr meanwhile; a harness that dies or hangs is killed. Returns
    (exit status, stdout, stderr, every marker sent)."""
    import threading

    proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    captured = {}
    reader = threading.Thread(target=lambda: captured.update(out=proc.stdout.read(), err=proc.stderr.read()))
    reader.start()
    expected = []
    try:
        for chunk, markers in stream:
            proc.stdin.write(chunk)
            expected += markers
        proc.stdin.close()
        proc.wait(timeout=timeout_s)
    except (BrokenPipeError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
    reader.join()
    return proc.returncode, captured.get("out", b"").decode(), captured.get("err", b"").decode(), expected


def run_fuzz(n_frames: int, seed: int = 0, work_dir=None, timeout_s: float = 3600) -> dict:
    """Feed ``n_frames`` random/mutated/valid frames to the sanitized parser; raise CprError on
    a crash, a sanitizer report, a violated invariant or a lost marker. Returns the counters."""
    import tempfile

    work = Path(work_dir or tempfile.mkdtemp(prefix="cpr-fuzz-"))
    exe = build_fuzz_harness(work)
    returncode, out, err, expected = feed_harness(exe, fuzz_stream(n_frames, seed), timeout_s)
    if returncode != 0:
        raise CprError(f"frame parser fuzzing failed (exit {returncode}): {err.strip()[:500]}")
    seen = [int(ln.split()[1]) for ln in out.splitlines() if ln.startswith("marker ")]
    last = out.strip().splitlines()[-1].split()
    counters = {last[i]: int(last[i + 1]) for i in range(1, len(last) - 1, 2)}
    missing = sorted(set(expected) - set(seen))
    if missing:
        raise CprError(f"{len(missing)} of {len(expected)} marker frames after a quiet line were not "
                       f"delivered (first: {missing[:5]})")
    return {"frames": n_frames, "markers": len(expected), **counters}
