"""The 16x8 ELU island in integers (runtime/reference/elu_island_s16_int.c): no float at all,
for cores without an FPU, where the float island's expm1 and division run in libgcc's soft
float (about 1 500 instructions per element on a Cortex-M0) and dominate the inference.

With n = q - zp_in, TFLM computes v = round(ELU(s_in n) / s_out) + zp_out. This kernel
computes the same in fixed point:

- n >= 0: the magnitude n * R with R = s_in / s_out held as R * 2^S in 31 bits;
- n < 0, m = -n: (1 - e^(-s_in m)) / s_out = M - M e^(-s_in m) with M = 1 / s_out, and
  M e^(-s_in m) = hi[m >> 8] * lo[m & 255] / 2^31 from two tables of 256 entries,
  hi[a] = M e^(-256 s_in a) 2^F and lo[b] = e^(-s_in b) 2^31;

rounded half away from zero as TFLM rounds. The fixed point is within about 1e-4 output steps
of the exact value; TFLM's float32 pipeline itself is within about 1e-3. Their results differ
only for inputs whose value lies that close to a rounding boundary: :func:`emulate` repeats
every integer operation of the C file, the generator compares all 65536 inputs with the TFLM
interpreter and stores the inputs that differ, and the kernel looks an input up in that list
only when its fraction is within ``guard`` of one half (the largest such distance among the
stored inputs), so the search is rare and the result is TFLM's for every input.
"""
from __future__ import annotations

import math

import numpy as np

SPLIT = 8
"""m = (a << SPLIT) | b: 256 entries per table cover every int16 difference."""
MAX_SHIFT = 62


def _shift_for(value: float) -> int | None:
    """S such that value * 2^S lies in [2^30, 2^31), or None outside the kernel's range."""
    if not (value > 0.0 and math.isfinite(value)):
        return None
    s = 30 - math.floor(math.log2(value))
    while value * 2.0 ** s >= 2.0 ** 31:
        s -= 1
    while value * 2.0 ** s < 2.0 ** 30:
        s += 1
    return s if 8 <= s <= MAX_SHIFT else None


def tables(in_scale: float, out_scale: float) -> dict | None:
    """The kernel's constants, or None when the scales fall outside its fixed-point range
    (the float island is used then)."""
    s_in, s_out = float(np.float32(in_scale)), float(np.float32(out_scale))
    pos_shift, neg_shift = _shift_for(s_in / s_out), _shift_for(1.0 / s_out)
    if pos_shift is None or neg_shift is None:
        return None
    a = np.arange(256, dtype=np.float64)
    hi = np.rint(np.exp(-s_in * (a * 256)) * (2.0 ** neg_shift / s_out)).astype(np.int64)
    lo = np.rint(np.exp(-s_in * a) * 2.0 ** 31).astype(np.int64)
    hi_len = int(np.count_nonzero(hi))  # hi decreases: the rest are zero, e is 0 there
    return {"pos_mult": int(round(s_in / s_out * 2.0 ** pos_shift)), "pos_shift": pos_shift,
            "neg_full": int(hi[0]), "neg_shift": neg_shift, "hi": hi[:hi_len], "lo": lo}


def _magnitude(q: np.ndarray, in_zp: int, t: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(negative side?, fixed-point magnitude, its fraction bits) per input."""
    n = q.astype(np.int64) - in_zp
    neg = n < 0
    m = np.where(neg, -n, 0)
    a, b = m >> SPLIT, m & ((1 << SPLIT) - 1)
    hi = np.concatenate([t["hi"], [0]])
    e = (hi[np.minimum(a, len(t["hi"]))] * t["lo"][b]) >> 31
    mag = np.where(neg, t["neg_full"] - e, np.maximum(n, 0) * t["pos_mult"])
    shift = np.where(neg, t["neg_shift"], t["pos_shift"]).astype(np.int64)
    return neg, mag, shift


def emulate(q: np.ndarray, in_zp: int, out_zp: int, t: dict) -> np.ndarray:
    """cpr_elu_island_s16_int without exceptions, for int16 inputs ``q``."""
    neg, mag, shift = _magnitude(q, in_zp, t)
    r = np.minimum((mag + (np.int64(1) << (shift - 1))) >> shift, 100000)
    v = np.where(neg, out_zp - r, out_zp + r)
    return np.clip(v, -32768, 32767).astype(np.int16)


def distance_to_half(q: np.ndarray, in_zp: int, t: dict) -> np.ndarray:
    """|fraction - 1/2| of each input's magnitude, in units of its own 2^-shift: the kernel's
    test for "close enough to a rounding boundary to look it up"."""
    _, mag, shift = _magnitude(q, in_zp, t)
    return np.abs((mag & ((np.int64(1) << shift) - 1)) - (np.int64(1) << (shift - 1)))


def fast_constants(t: dict, in_zp: int) -> dict | None:
    """The constants of runtime/optimized/elu_island_s16_int_fast.c (the same results as the
    reference kernel in 32-bit arithmetic) from the reference's tables with guards ``t``, or
    None when its preconditions fail: input zero point 0, 15 <= pos_shift <= 32 (q << (32 -
    pos_shift) fits 32 bits), neg_shift <= 31. Guards become windows on 32-bit fractions:
    (fraction + g) mod 2^32 <= w selects every input the reference looks up."""
    ps, ns = t["pos_shift"], t["neg_shift"]
    if in_zp != 0 or not (15 <= ps <= 32) or ns > 31:
        return None
    pre = 32 - ps
    identity = t["pos_mult"] == 1 << ps and t["pos_guard"] < 0  # s_in == s_out: n * 1
    check = 0
    pos_g, pos_w = 0, 0
    if t["pos_guard"] >= 0:
        check |= 1
        g = t["pos_guard"] << pre
        pos_g, pos_w = (0, 0xFFFFFFFF) if g >= 1 << 31 else (g, 2 * g)
    half = 1 << (ns - 1)
    neg_g, neg_w = 0, 0
    if t["neg_guard"] >= 0:
        check |= 2
        g = t["neg_guard"]
        neg_g, neg_w = (0, 0xFFFFFFFF) if g >= half else (g, (2 * g) << (32 - ns))
    hi2 = np.zeros(1 << SPLIT, np.int64)
    hi2[:len(t["hi"])] = 2 * np.asarray(t["hi"], np.int64)  # hi < 2^31, so 2 hi < 2^32
    return {"pos_identity": int(identity), "pos_pre": pre, "pos_add": (1 << 31) + pos_g,
            "pos_g": pos_g, "pos_w": pos_w, "neg_add": t["neg_full"] + half + neg_g,
            "neg_g": neg_g, "neg_w": neg_w, "check": check, "hi2": hi2}
