"""Which int8 FULLY_CONNECTED kernel each layer runs, and the constants and weight layouts
of the fast kernels (cpr_runtime.h ``cpr_fc_fast_params``, docs/codegen.md).

The fast kernels (``blocked``, ``few_inputs`` with the DSP extension, ``mve`` on the
Cortex-M55) get everything TFLM's Prepare would compute folded in: the input offset into the
bias, the output offset into the rounding constant. They rely on bounds that hold for every
int8 input; ``fast_constants`` proves them from the weights and refuses the layer (the
generic kernel runs it) when they do not hold.

The DSP kernel is chosen per layer from instruction costs measured in QEMU by
benchmarks/fc_costs.py (``fc_costs.json`` beside this module): the cheapest predicted
variant among those the layer is eligible for.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

ACC_LIMIT = 1 << 29
"""|accumulator| bound the fast requantisation needs (2 * acc and the rounding add fit)"""
FEW_INPUTS_MAX = 8
BLOCKED_MAX_DEPTH = 1024
"""the blocked kernel widens the input on the stack: 2 bytes per input"""
COSTS_FILE = Path(__file__).with_name("fc_costs.json")


def fast_constants(w: np.ndarray, bias: np.ndarray | None, input_offset: int, output_offset: int,
                   mult: list[int], shift: list[int]) -> dict | None:
    """kbias, right shifts and rounding constants of a layer for the fast kernels, or None
    when a bound they rely on does not hold (cpr_runtime.h lists them)."""
    w64 = w.astype(np.int64)
    n = w.shape[0]
    b = np.zeros(n, np.int64) if bias is None else bias.astype(np.int64).reshape(-1)
    kbias = b + input_offset * w64.sum(axis=1)
    # |acc| = |kbias + sum x w| with x in [-128, 127]
    if int((np.abs(kbias) + 128 * np.abs(w64).sum(axis=1)).max(initial=0)) >= ACC_LIMIT:
        return None
    if any(s >= 0 for s in shift):  # a left shift or none: the generic kernel
        return None
    right = [-s for s in shift]
    if any(e > 30 for e in right):
        return None
    rounds = [(1 << (e - 1)) + (output_offset << e) for e in right]
    # v = SRDHM(acc, m) < 2^29, so v + (v >> 31) + round stays in int32 if |round| < 2^30
    if any(abs(r) >= (1 << 30) for r in rounds) or any(m < 0 for m in mult):
        return None
    return {"kbias": kbias.astype(np.int32), "shift": np.array(right, np.int32),
            "round": np.array(rounds, np.int32), "multiplier": np.array(mult, np.int32)}


def blocked_layout(w: np.ndarray) -> np.ndarray:
    """[N, K] -> blocks of 4 rows (the last 1-3 rows a block of their own); in a block of R
    rows, for each group of 4 inputs the R rows' 4 bytes in turn, then each row's K % 4 tail
    (optimized/fully_connected_s8_blocked.c)."""
    return _grouped(w, 4)


def mve_layout(w: np.ndarray) -> np.ndarray:
    """The same with 16-byte chunks: per block, for each 16 inputs the rows' 16 bytes in
    turn, then each row's K % 16 tail (optimized/fully_connected_s8_mve.c)."""
    return _grouped(w, 16)


def _grouped(w: np.ndarray, g: int) -> np.ndarray:
    n, k = w.shape
    kg = k - k % g
    parts = []
    for r in range(0, n, 4):
        block = w[r:r + 4]
        rows = block.shape[0]
        parts.append(block[:, :kg].reshape(rows, kg // g, g).transpose(1, 0, 2).reshape(-1))
        parts.append(block[:, kg:].reshape(-1))
    return np.concatenate(parts).astype(np.int8) if parts else np.zeros(0, np.int8)


def few_inputs_layout(w: np.ndarray, c: dict) -> np.ndarray:
    """Per row one record of int32 words, as bytes (little-endian): 2 * kbias, multiplier,
    round, shift, then the doubled weights as int16 pairs (2 w[2i] low, 2 w[2i+1] high; an odd
    last pair padded with 0). Doubling the weights and the bias makes the accumulator 2 * acc,
    which the requantisation needs (optimized/fully_connected_s8_few_inputs.c)."""
    n, k = w.shape
    pairs = (k + 1) // 2
    w2 = np.zeros((n, 2 * pairs), np.int32)
    w2[:, :k] = 2 * w.astype(np.int32)
    lo = w2[:, 0::2] & 0xFFFF
    hi = (w2[:, 1::2] & 0xFFFF) << 16
    words = np.empty((n, 4 + pairs), np.uint32)
    words[:, 0] = (2 * c["kbias"].astype(np.int64)).astype(np.uint32)
    words[:, 1] = c["multiplier"].astype(np.uint32) if len(c["multiplier"]) == n else np.uint32(c["multiplier"][0])
    words[:, 2] = c["round"].astype(np.uint32) if len(c["round"]) == n else np.uint32(c["round"][0])
    words[:, 3] = c["shift"].astype(np.uint32) if len(c["shift"]) == n else np.uint32(c["shift"][0])
    words[:, 4:] = (lo | hi).astype(np.uint32)
    return words.astype("<u4").view(np.int8).reshape(-1)


@lru_cache(maxsize=1)
def _costs() -> dict:
    return json.loads(COSTS_FILE.read_text())


COST_TERMS = ("call", "input", "row", "block", "mac", "tail_input_row", "leftover_mac",
              "short_group_row")
COST_FEATURES = ("1", "K", "N", "ceil(N/4)", "N*K", "N*(K%4)", "(N%4)*K", "N*((K/4)%4)")


def cost_features(k: int, n: int) -> list[float]:
    """what the kernels' costs grow with: calls, inputs (the blocked kernel widens them once
    per call), rows, blocks of 4 rows, MACs, tail inputs of
    each row, MACs of the last N % 4 rows, and groups of 4 inputs outside the blocked
    kernel's 16-input assembly loop"""
    return [1.0, k, n, -(-n // 4), n * k, n * (k % 4), (n % 4) * k, n * ((k // 4) % 4)]


def predicted_instructions(variant: str, k: int, n: int) -> float:
    """Instructions per call predicted by the measured model of ``variant`` (fc_costs.json,
    benchmarks/fc_costs.py): a linear function of COST_FEATURES."""
    m = _costs()["models"][variant]
    return sum(m[t] * f for t, f in zip(COST_TERMS, cost_features(k, n)))


FORCED: list[str] = []
"""benchmarks/fc_costs.py measures each kernel on layers it would not be chosen for: the last
entry, when there is one, is used for every eligible layer instead of the prediction"""


def choose_dsp(k: int, n: int, eligible: bool) -> str:
    """The DSP kernel for a K-input, N-output layer: "blocked", "few_inputs" or "generic"
    (the cpr_fully_connected_s8 of the build), by predicted instructions."""
    if not eligible:
        return "generic"
    if FORCED:
        return FORCED[-1]
    options = ["generic"]
    if k <= BLOCKED_MAX_DEPTH:
        options.append("blocked")
    if k <= FEW_INPUTS_MAX:
        options.append("few_inputs")
    return min(options, key=lambda v: predicted_instructions(v, k, n))


def fast16_constants(w: np.ndarray, bias: np.ndarray | None, mult: list[int],
                     shift: list[int]) -> np.ndarray | None:
    """The SMMULR multipliers M of a 16x8 layer for cpr_fc_s16_blocked, or None when its
    bounds do not hold: |bias| + 32768 * sum |w| < 2^31 per row (int32 accumulation exact),
    and M = r << (17 + shift) < 2^31 with 17 + shift >= 0, r TFLM's 16-bit multiplier
    (requant64.h), so that (acc * r + 2^(t-1)) >> t with t = 15 - shift is SMMULR(acc, M)."""
    b = np.zeros(w.shape[0], np.int64) if bias is None else bias.astype(np.int64).reshape(-1)
    if int((np.abs(b) + 32768 * np.abs(w.astype(np.int64)).sum(axis=1)).max(initial=0)) >= 1 << 31:
        return None
    out = []
    for m, s in zip(mult, shift):
        reduced = (m + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF
        if 17 + s < 0 or reduced < 0 or (reduced << (17 + s)) >= 1 << 31:
            return None
        out.append(reduced << (17 + s))
    return np.array(out, np.int32)


def few16_layout(w: np.ndarray, bias: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The 16x8 few-inputs kernel's records as bytes (little-endian int32 words): per row the
    bias (int32: fast16_constants proved it fits), its SMMULR multiplier M, then the weights
    as int16 pairs (w[2i] low, w[2i+1] high; an odd last pair padded with 0)
    (optimized/fully_connected_s16_few_inputs.c)."""
    n, k = w.shape
    pairs = (k + 1) // 2
    wp = np.zeros((n, 2 * pairs), np.int32)
    wp[:, :k] = w.astype(np.int32)
    words = np.empty((n, 2 + pairs), np.uint32)
    words[:, 0] = bias.astype(np.int64).reshape(-1).astype(np.uint32)
    words[:, 1] = (m.astype(np.int64) if len(m) == n else np.full(n, int(m[0]))).astype(np.uint32)
    words[:, 2:] = ((wp[:, 0::2] & 0xFFFF) | ((wp[:, 1::2] & 0xFFFF) << 16)).astype(np.uint32)
    return words.astype("<u4").view(np.int8).reshape(-1)


FORCED16: list[str] = []
"""as FORCED, for the 16x8 kernels ("blocked", "few_inputs") of benchmarks/fc_costs.py"""


def choose16(k: int, n: int) -> str:
    """The fast 16x8 kernel for a K-input, N-output layer whose bounds hold: "blocked" or, for
    K <= 8, "few_inputs" when its measured model (fc_costs.json s16_*) predicts fewer
    instructions."""
    if FORCED16:
        return FORCED16[-1] if FORCED16[-1] == "blocked" or k <= FEW_INPUTS_MAX else "blocked"
    if k > FEW_INPUTS_MAX or "s16_few_inputs" not in _costs()["models"]:
        return "blocked"
    return min(("blocked", "few_inputs"), key=lambda v: predicted_instructions(f"s16_{v}", k, n))


def blocked16_layout(w: np.ndarray) -> np.ndarray:
    """The blocked layout of the int8 kernel with each row's 4 bytes of a group stored as
    k, k+2, k+1, k+3 (optimized/fully_connected_s16_blocked.c)."""
    n, k = w.shape
    k4 = k & ~3
    paired = w.copy()
    paired[:, :k4] = w[:, :k4].reshape(n, k4 // 4, 4)[:, :, [0, 2, 1, 3]].reshape(n, k4)
    return _grouped(paired, 4)
