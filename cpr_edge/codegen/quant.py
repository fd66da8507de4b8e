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


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8: fused activation folded into a clamp."""
    from tflite_micro.tensorflow.lite.micro.python.schema_py_generated import ActivationFunctionType as A
    lo, hi = -128, 127
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
