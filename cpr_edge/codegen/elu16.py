"""The float ELU island of a 16x8 model, DEQUANTIZE(int16) -> ELU -> QUANTIZE(int16), as one
exact kernel (runtime/reference/elu_island_s16.c).

TFLM has no int16 ELU, so the converter keeps ELU in float. The island's output is a function
of its int16 input only: the real TFLM interpreter runs the island, cut out into a 3-op model
with the same quantisation and op versions, on all 65536 inputs. The C kernel computes
x >= 0 exactly as TFLM does (float32 product, division and round-half-away) and x < 0 with
its own float32 expm1; :func:`emulate` repeats every float32 operation of the C file in numpy,
and the inputs where it differs from the interpreter become the kernel's exception list. So
the generated code equals TFLM on every input by construction.
"""
from __future__ import annotations

import numpy as np

from cpr_edge.codegen import elu16_int
from cpr_edge.codegen.builder import OpSpec, TensorSpec, build_graph, run_tflm
from cpr_edge.codegen.reader import Operator, Tensor
from cpr_edge.errors import CprError

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
MAX_EXCEPTIONS = 4096
"""An island whose exception list grows past this is refused rather than stored."""

F = np.float32
LN2_HI, LN2_LO, INV_LN2 = F(float.fromhex("0x1.62e4p-1")), F(float.fromhex("0x1.7f7d1cp-20")), \
    F(float.fromhex("0x1.715476p+0"))
HORNER = [F(float.fromhex(h)) for h in ("0x1.a01a02p-13", "0x1.6c16c2p-10", "0x1.111112p-7",
                                          "0x1.555556p-5", "0x1.555556p-3")]


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """float_round.h on float32 values (|v| < 2^31 here), as int64."""
    t = np.trunc(v).astype(np.int64)
    frac = (v - t.astype(F)).astype(F)  # exact in float32, as in C
    return t + (frac >= F(0.5)) - (frac <= F(-0.5))


def _expm1_negative(x: np.ndarray) -> np.ndarray:
    """expm1_negative() of elu_island_s16.c, operation by operation in float32."""
    k = _round_half_away((x * INV_LN2).astype(F))
    k = np.clip(k, -126, 0)  # only reached for x >= -17, where k >= -25; keeps 2^k finite
    kf = k.astype(F)
    hi = (x - (kf * LN2_HI).astype(F)).astype(F)
    r = (hi - (kf * LN2_LO).astype(F)).astype(F)
    p = HORNER[0]
    for c in HORNER[1:]:
        p = ((p * r).astype(F) + c).astype(F)
    p = ((p * r).astype(F) + F(0.5)).astype(F)
    em1 = (r + ((r * r).astype(F) * p).astype(F)).astype(F)
    two_k = np.ldexp(F(1.0), k.astype(np.int32)).astype(F)
    y = ((two_k * em1).astype(F) + (two_k - F(1.0)).astype(F)).astype(F)
    return np.where(x < F(-17.0), F(-1.0), y).astype(F)


def emulate(q: np.ndarray, in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """cpr_elu_island_s16 without exceptions, for int16 inputs ``q``."""
    x = (F(in_scale) * (q.astype(np.int32) - in_zp).astype(F)).astype(F)
    y = np.where(x < F(0.0), _expm1_negative(np.minimum(x, F(0.0))), x).astype(F)
    v = np.clip(_round_half_away((y / F(out_scale)).astype(F)), -100000, 100000) + out_zp
    return np.clip(v, -32768, 32767).astype(np.int16)


def tflm_island(src: Tensor, dst: Tensor, ops: list[Operator]) -> np.ndarray:
    """TFLM's island output for every int16 input (index q + 32768)."""
    n = ALL_INT16.size
    tensors = [TensorSpec((1, n), "int16", [float(src.scale[0])], [int(src.zero_point[0])]),
               TensorSpec((1, n), "float32"), TensorSpec((1, n), "float32"),
               TensorSpec((1, n), "int16", [float(dst.scale[0])], [int(dst.zero_point[0])])]
    deq, elu, quant = ops
    model = build_graph(tensors, [OpSpec("DEQUANTIZE", [0], [1], None, deq.version),
                                  OpSpec("ELU", [1], [2], elu.options, elu.version),
                                  OpSpec("QUANTIZE", [2], [3], None, quant.version)], [0], [3])
    try:
        out = run_tflm(model, [[ALL_INT16.reshape(1, n)]], arena_size=16 * n + (1 << 16))[0]
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CprError(f"TFLM cannot run the int16 ELU island (operator {elu.index}): {first}") from exc
    return np.asarray(out, dtype=np.int16).reshape(n)


def _check_per_tensor(src: Tensor, dst: Tensor) -> None:
    for t in (src, dst):
        if t.scale is None or t.scale.size != 1:
            raise CprError(f"ELU island tensor {t.name!r} needs per-tensor quantisation")


def island_exceptions(src: Tensor, dst: Tensor, ops: list[Operator],
                      want: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(sorted inputs, TFLM outputs) where the C formula differs, and a cost summary."""
    _check_per_tensor(src, dst)
    want = tflm_island(src, dst, ops) if want is None else want
    got = emulate(ALL_INT16, float(src.scale[0]), int(src.zero_point[0]),
                  float(dst.scale[0]), int(dst.zero_point[0]))
    bad = np.nonzero(got != want)[0]
    if bad.size > MAX_EXCEPTIONS:
        raise CprError(f"ELU island (operator {ops[1].index}): the float32 expm1 differs from TFLM "
                       f"on {bad.size} int16 inputs (more than {MAX_EXCEPTIONS}); unsupported")
    neg = ALL_INT16 < int(src.zero_point[0])
    # what a plain breakpoint table of the x < 0 side would cost: one (q, y) pair per step
    steps = int(np.count_nonzero(np.diff(want[neg]))) + 1
    summary = {"kernel": "float", "exceptions": int(bad.size), "breakpoint_table_bytes": 4 * steps}
    return ALL_INT16[bad].astype(np.int16), want[bad].astype(np.int16), summary


def integer_island(src: Tensor, dst: Tensor, ops: list[Operator], want: np.ndarray):
    """(tables with guards, exception inputs, their TFLM outputs, summary) of the integer
    kernel (elu16_int.py), or None where its fixed point does not cover the scales or it
    would need more exceptions than the float kernel may have."""
    _check_per_tensor(src, dst)
    in_zp, out_zp = int(src.zero_point[0]), int(dst.zero_point[0])
    t = elu16_int.tables(float(src.scale[0]), float(dst.scale[0]))
    if t is None:
        return None
    bad = np.nonzero(elu16_int.emulate(ALL_INT16, in_zp, out_zp, t) != want)[0]
    if bad.size > MAX_EXCEPTIONS:
        return None
    dist = elu16_int.distance_to_half(ALL_INT16, in_zp, t)
    neg = ALL_INT16 < in_zp
    for side, mask in (("neg", neg), ("pos", ~neg)):
        d = dist[bad][mask[bad]]
        t[f"{side}_guard"] = int(d.max()) if d.size else -1
    looked_up = (neg & (dist <= t["neg_guard"])) | (~neg & (dist <= t["pos_guard"]))
    summary = {"kernel": "integer", "exceptions": int(bad.size),
               "table_bytes": 4 * (len(t["hi"]) + len(t["lo"])) + 4 * int(bad.size),
               "inputs_looked_up": int(np.count_nonzero(looked_up))}
    return t, ALL_INT16[bad].astype(np.int16), want[bad].astype(np.int16), summary
