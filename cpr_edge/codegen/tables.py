"""256-entry tables for element-wise int8 ops, made by the real TFLM interpreter.

The op is cut out of its model into a one-op model with the same input/output
quantisation, builtin options and op version; running it on all 256 int8 inputs gives a
table that is exact by construction, whatever TFLM does inside (LUT, fixed-point
polynomial, float).
"""
from __future__ import annotations

import numpy as np

from cpr_edge.codegen.builder import TensorSpec, build_model, run_tflm
from cpr_edge.codegen.reader import Operator, Tensor
from cpr_edge.errors import CprError

ALL_INT8 = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)


def _spec(t: Tensor) -> TensorSpec:
    if t.scale is None or t.scale.size != 1:
        raise CprError(f"tensor {t.name!r} needs per-tensor quantisation for a lookup table")
    return TensorSpec((1, 256), "int8", [float(t.scale[0])], [int(t.zero_point[0])])


def lookup_table(op: Operator, src: Tensor, dst: Tensor) -> np.ndarray:
    """table[i + 128] = TFLM(op)(i) for every int8 i."""
    model = build_model(op.name, [_spec(src), _spec(dst)], [0], [1], op.options, op.version)
    try:
        out = run_tflm(model, [[ALL_INT8]])[0]
    except Exception as exc:  # the interpreter raises RuntimeError with its log
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CprError(f"TFLM cannot run int8 {op.name} (operator {op.index}) with this "
                       f"quantisation: {first}") from exc
    return np.asarray(out, dtype=np.int8).reshape(256)
