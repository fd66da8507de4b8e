"""Stage 5: run the model in the real TFLM interpreter (PyPI ``tflite-micro``).

The smallest working tensor arena is found by binary search, one fresh subprocess per try:
just below the minimum TFLM may fail cleanly or crash the process, so a try must never run
in the exporting process. The probe is this module run as a script (it imports only numpy
and tflite_micro, so a try costs a fraction of a second).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from cpr_edge.errors import CprError

ARENA_ALIGN = 16
"""TFLM aligns arena allocations to 16 bytes; the search works in these steps."""
MAX_ARENA = 64 << 20


INTEGER_IO = {"INT8": (np.int8, -128, 127), "INT16": (np.int16, -32768, 32767)}
"""Integer model I/O types (INT16: the 16x8 mode) with their clamp ranges."""


def quantize_input(obs: np.ndarray, q: dict) -> np.ndarray:
    if q["type"] not in INTEGER_IO:
        return obs.astype(np.float32)
    dtype, lo, hi = INTEGER_IO[q["type"]]
    # as TFLM's QUANTIZE and the board: float32 division, round half away from zero
    ratio = np.asarray(obs, np.float32) / np.float32(q["scale"])
    return np.clip(np.sign(ratio) * np.floor(np.abs(ratio) + 0.5) + q["zero_point"], lo, hi).astype(dtype)


def dequantize_output(y: np.ndarray, q: dict) -> np.ndarray:
    if q["type"] not in INTEGER_IO:
        return y.astype(np.float32)
    return (y.astype(np.float32) - q["zero_point"]) * q["scale"]


def run_tflm(model: bytes, obs: np.ndarray, input_q: dict, output_q: dict, arena_bytes: int) -> np.ndarray:
    """Actions [N, act_dim] from TFLM for raw observations [N, obs_dim], one invoke per row."""
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(model, arena_size=int(arena_bytes))
    x = quantize_input(obs, input_q)
    out = []
    for row in x:
        interp.set_input(row[None, :], 0)
        interp.invoke()
        out.append(np.array(interp.get_output(0)).reshape(-1))
    return dequantize_output(np.stack(out), output_q)


def _probe(path: Path, arena: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cpr_edge.export.tflm_run", str(path), str(arena)],
                          capture_output=True, text=True, timeout=120)


ALLOC_LINE = re.compile(r"\[RecordingMicroAllocator\] (?:'(?P<what>[^']+)' used (?P<used>\d+) bytes"
                        r"|Arena allocation (?P<part>total|head|tail) (?P<bytes>\d+) bytes)")


def parse_allocations(text: str) -> dict:
    """The recording allocator's report: total/head/tail bytes and bytes per allocation kind."""
    out: dict = {"by_kind": {}}
    for m in ALLOC_LINE.finditer(text):
        if m.group("part"):
            out[f"{m.group('part')}_bytes"] = int(m.group("bytes"))
        else:
            out["by_kind"][m.group("what")] = int(m.group("used"))
    return out


def smallest_arena(path: Path) -> tuple[int, dict, int]:
    """Binary search for the smallest arena with which TFLM allocates and invokes the model.

    Returns (arena bytes, recording-allocator report at that size, number of subprocess tries).
    """
    tries = 0
    hi = 16 << 10
    while True:
        tries += 1
        r = _probe(path, hi)
        if r.returncode == 0:
            break
        if hi >= MAX_ARENA:
            tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
            raise CprError(f"TFLM cannot run {path.name} even with a {MAX_ARENA >> 20} MiB arena "
                           f"(exit status {r.returncode}: {tail})")
        hi *= 2
    used = parse_allocations(r.stderr).get("total_bytes")
    lo = 0  # known to fail (or untested lower bound)
    if used and used < hi:  # the recorded total is a close first guess for the minimum
        tries += 1
        guess = -(-used // ARENA_ALIGN) * ARENA_ALIGN
        if _probe(path, guess).returncode == 0:
            hi = guess
        else:
            lo = guess
    while hi - lo > ARENA_ALIGN:
        mid = (lo + hi) // 2 // ARENA_ALIGN * ARENA_ALIGN
        if mid <= lo:
            break
        tries += 1
        if _probe(path, mid).returncode == 0:
            hi = mid
        else:
            lo = mid
    final = _probe(path, hi)
    if final.returncode != 0:
        raise CprError(f"TFLM arena search is not reproducible for {path.name} at {hi} bytes")
    return hi, parse_allocations(final.stderr), tries + 1


def _main(argv: list[str]) -> int:
    """Probe: allocate with the given arena, invoke once on a zero input, print allocations."""
    from tflite_micro import runtime

    path, arena = Path(argv[0]), int(argv[1])
    interp = runtime.Interpreter.from_bytes(path.read_bytes(), arena_size=arena)
    details = interp.get_input_details(0)
    interp.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
    interp.invoke()
    sys.stderr.flush()
    interp.print_allocations()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_main(sys.argv[1:]))
    except Exception as e:  # a clean TFLM failure (e.g. arena too small) is a failed try
        print(f"probe failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
