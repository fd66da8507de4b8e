"""Requantisation constants computed exactly as TFLM's Prepare functions compute them.

TFLM takes float32 scales from the flatbuffer, widens them to double, forms the ratio in
double and splits it with QuantizeMultiplier (frexp, then round half away from zero of
q * 2^31). Python floats are IEEE doubles, so the same steps give the same bits.
"""
from __future__ import annotations

import math

import numpy as np

from cpr_edge.errors import CprError


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM QuantizeMultiplier: real ~= multiplier * 2^(shift - 31), multiplier in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    if real < 0 or not math.isfinite(real):
        raise CprError(f"cannot quantise multiplier {real!r}")
    q, shift = math.frexp(real)
    q_fixed = math.floor(q * (1 << 31) + 0.5)  # TfLiteRound: half away from zero (q > 0)
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def f64(x) -> float:
    """float32 value (from the flatbuffer) widened to double, like static_cast<double>."""
    return float(np.float32(x))


def quantize_value_f32(value: float, scale: float, zero_point: int) -> int:
    """TFLM's Quantize() helper of CalculateActivationRangeQuantized: zp + round(f / scale) in float."""
    ratio = np.float32(value) / np.float32(scale)
    rounded = math.floor(abs(float(ratio)) + 0.5) * (1 if ratio >= 0 else -1)
    return int(zero_point) + int(rounded)


def activation_range(activation: int, scale: float, zero_point: int,
                     qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: fused activation folded into a clamp of the output
    type's range (int8 by default; int16 for the 16x8 kernels)."""
    from tflite_micro.tensorflow.lite.micro.python.schema_py_generated import ActivationFunctionType as A
    lo, hi = qmin, qmax
    if activation == A.NONE:
        return lo, hi
    if activation == A.RELU:
        return max(lo, quantize_value_f32(0.0, scale, zero_point)), hi
    if activation == A.RELU6:
        return (max(lo, quantize_value_f32(0.0, scale, zero_point)),
                min(hi, quantize_value_f32(6.0, scale, zero_point)))
    if activation == A.RELU_N1_TO_1:
        return (max(lo, quantize_value_f32(-1.0, scale, zero_point)),
                min(hi, quantize_value_f32(1.0, scale, zero_point)))
    raise CprError(f"unsupported fused activation {activation} (only NONE, RELU, RELU6, RELU_N1_TO_1)")


def checked_log2(x: float) -> tuple[bool, int]:
    """TFLM CheckedLog2 in float32: (x is a power of two within 1e-3 in log2, rounded log2)."""
    log2 = np.float32(np.log(np.float32(x))) * np.float32(1.0 / np.float32(np.log(np.float32(2.0))))
    rounded = np.float32(math.floor(abs(float(log2)) + 0.5) * (1 if log2 >= 0 else -1))
    return bool(abs(float(np.float32(log2 - rounded))) < 1e-3), int(rounded)
