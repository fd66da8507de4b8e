"""Fuzzing the HIL firmware beyond its frame parser: the UART receive queue, the main loop and
the message handlers (firmware/app/main.c, hil.c) with the generated model, on the host under
AddressSanitizer and UBSan (issue 12, item 7).

The harness firmware/tests/fuzz_hil.c replaces only the hardware (firmware/tests/host/cortex_m.h
for WFI and interrupt masking; platform and UART functions in the harness) and checks every
reply the firmware sends. ``hil_fuzz_stream`` makes well-formed requests of every type (random
observations with NaN/inf/huge values, random INFER_Q integers, BENCH counts in and out of
range, RESETs), exact resends (replays), mutated and random frames, garbage, bursts that
arrive while the core is busy (more than the 1024-byte queue holds) and quiet lines followed
by a marker HELLO that must be answered. ``run_hil_fuzz`` checks the markers.
"""
from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from cpr_edge.firmware_build import firmware_dir
from cpr_edge.firmware_build.fuzz import SANITIZERS, _mutate, _payload, encode, feed_harness
from cpr_edge.errors import CprError

HELLO, INFER, BENCH, STATS, RESET, INFER_Q = 1, 2, 3, 4, 5, 6
MARKER_TAG = 0x4D000000


def build_hil_fuzz_harness(firmware_build: Path, out_dir) -> Path:
    """Compile the harness with the firmware app, the generated model of ``firmware_build`` (a
    ``cpr-edge build`` output folder: board_config.h, model/) and the reference kernels."""
    from cpr_edge.codegen import runtime_defines, runtime_include_dir, runtime_sources

    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise CprError("no host C compiler (gcc) to build the HIL fuzz harness")
    firmware_build = Path(firmware_build)
    if not (firmware_build / "board_config.h").is_file() or not (firmware_build / "model" / "model.c").is_file():
        raise CprError(f"{firmware_build} is not a firmware build folder (needs board_config.h and model/model.c)")
    fw = firmware_dir()
    out = Path(out_dir) / "fuzz_hil"
    out.parent.mkdir(parents=True, exist_ok=True)
    includes = [fw / "tests" / "host", firmware_build, fw / "platform", fw / "drivers", fw / "app",
                firmware_build / "model", runtime_include_dir()]
    srcs = [fw / "tests" / "fuzz_hil.c", fw / "app" / "main.c", fw / "app" / "hil.c",
            fw / "app" / "frame_parser.c", fw / "app" / "crc16.c", firmware_build / "model" / "model.c",
            *runtime_sources("reference")]
    cmd = [cc, "-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
           *SANITIZERS, "-Dmain=firmware_main", *runtime_defines("reference"),
           *(f"-I{p}" for p in includes), *map(str, srcs), "-lm", "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise CprError(f"HIL fuzz harness build failed: {res.stderr.strip()[:600]}")
    return out


def model_io(firmware_build: Path) -> tuple[int, int]:
    """(input elements, bytes per input element) of the generated model.h."""
    h = (Path(firmware_build) / "model" / "model.h").read_text()
    n_in = int(re.search(r"#define MODEL_INPUT_LEN (\d+)", h).group(1))
    elem = 2 if "typedef int16_t MODEL_INPUT_T;" in h else 1
    return n_in, elem


def _observation(rng: random.Random, n_in: int) -> bytes:
    kind = rng.random()
    if kind < 0.6:
        return np.asarray([rng.gauss(0, 3) for _ in range(n_in)], "<f4").tobytes()
    if kind < 0.8:  # any bit pattern: NaN, inf, denormals
        return rng.randbytes(4 * n_in)
    special = [np.nan, np.inf, -np.inf, 1e38, -1e38, 1e-45, 0.0, -0.0]
    return np.asarray([rng.choice(special) if rng.random() < 0.5 else rng.gauss(0, 1e6)
                       for _ in range(n_in)], "<f4").tobytes()


def _request(rng: random.Random, n_in: int, elem: int) -> bytes:
    """A well-formed request (right type and payload size; values anything)."""
    seq = rng.randrange(256)
    t = rng.choices([HELLO, INFER, INFER_Q, BENCH, STATS, RESET], [10, 30, 30, 8, 15, 1])[0]
    if t == HELLO:
        return encode(HELLO, seq, struct.pack("<I", rng.randrange(1 << 32)))
    if t == INFER:
        return encode(INFER, seq, _observation(rng, n_in))
    if t == INFER_Q:
        return encode(INFER_Q, seq, rng.randbytes(elem * n_in))
    if t == BENCH:
        n = rng.choice([1, 1, 2, 3, 0, 100_001, rng.randrange(1 << 32)])
        return encode(BENCH, seq, struct.pack("<I", n))
    return encode(t, seq, b"")


def hil_fuzz_stream(n_frames: int, n_in: int, elem: int, seed: int = 0, marker_every: int = 20):
    """Yields (records, marker_ids) chunks of the harness's stdin (record format in fuzz_hil.c)."""
    rng = random.Random(seed)
    out, markers, marker_id, last_infer = bytearray(), [], 0, None
    for i in range(n_frames):
        kind = rng.random()
        if kind < 0.45:
            data = _request(rng, n_in, elem)
            if data[1] in (INFER, INFER_Q):
                last_infer = data
        elif kind < 0.55 and last_infer:  # the same request again: a replay
            data = last_infer
        elif kind < 0.80:
            data = _mutate(rng, _request(rng, n_in, elem) if rng.random() < 0.7 else
                           encode(rng.randrange(256), rng.randrange(256), _payload(rng)))
        elif kind < 0.90:
            data = encode(rng.randrange(256), rng.randrange(256), _payload(rng))
        else:  # garbage with stray syncs
            data = bytes(0xA5 if rng.random() < 0.1 else rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        if rng.random() < 0.03:  # bytes arriving while the core handles this one (up to 3x the queue)
            burst = _mutate(rng, _request(rng, n_in, elem)) * rng.randrange(1, 6) + rng.randbytes(rng.randrange(0, 3000))
            out += struct.pack("<BH", 2, len(burst)) + burst
        out += struct.pack("<BH", 0, len(data)) + data
        if rng.random() < 0.05:  # a short pause, below the stall time
            out += struct.pack("<BH", 1, rng.randrange(0, 50))
        if (i + 1) % marker_every == 0:
            out += struct.pack("<BH", 1, 51 + rng.randrange(20))  # the line goes quiet
            m = encode(HELLO, rng.randrange(256), struct.pack("<I", MARKER_TAG | (marker_id & 0xFFFFFF)))
            out += struct.pack("<BH", 0, len(m)) + m
            markers.append(marker_id & 0xFFFFFF)
            marker_id += 1
        if len(out) > 1 << 20:
            yield bytes(out), markers
            out, markers = bytearray(), []
    yield bytes(out), markers


def run_hil_fuzz(firmware_build, n_frames: int, seed: int = 0, work_dir=None, timeout_s: float = 7200) -> dict:
    """Feed ``n_frames`` requests, mutations and garbage to the sanitized firmware built from
    ``firmware_build``; raise CprError on a crash, a sanitizer report, a wrong reply or an
    unanswered marker HELLO. Returns the counters."""
    firmware_build = Path(firmware_build)
    work = Path(work_dir or tempfile.mkdtemp(prefix="cpr-fuzz-hil-"))
    exe = build_hil_fuzz_harness(firmware_build, work)
    n_in, elem = model_io(firmware_build)
    returncode, out, err, expected = feed_harness(exe, hil_fuzz_stream(n_frames, n_in, elem, seed), timeout_s)
    if returncode != 0:
        raise CprError(f"HIL firmware fuzzing failed (exit {returncode}): {err.strip()[:800]}")
    seen = {int(ln.split()[1]) for ln in out.splitlines() if ln.startswith("marker ")}
    last = out.strip().splitlines()[-1].split()
    counters = {last[i]: int(last[i + 1]) for i in range(1, len(last) - 1, 2)}
    missing = sorted(set(expected) - seen)
    if missing:
        raise CprError(f"{len(missing)} of {len(expected)} marker HELLOs after a quiet line were not "
                       f"answered (first: {missing[:5]})")
    return {"frames": n_frames, "markers": len(expected), **counters}
