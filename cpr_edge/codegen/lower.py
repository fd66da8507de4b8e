"""Lower each TFLite operator to one C kernel call plus the constants it needs.

Every constant is computed here, at generation time, the way TFLM's Prepare computes it;
the C side only runs the integer Eval loops. A ``Step`` refers to tensors by index; the
emitter later turns indices into arena offsets, ``in``/``out`` or const arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cpr_edge.codegen import fc_select, quant, tables
from cpr_edge.codegen.reader import Graph, Operator, Tensor
from cpr_edge.errors import CprError

# Element-wise int8 -> int8 ops that become a 256-entry table.
LOOKUP_OPS = {"TANH", "LOGISTIC", "ELU", "RSQRT", "SQRT", "EXP", "LOG", "ABS", "NEG", "RELU",
              "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "HARD_SWISH", "GELU", "QUANTIZE",
              "SIN", "COS", "SQUARE"}
# Ops that only reinterpret the shape: the output shares the input's bytes.
RESHAPE_OPS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}
BINARY_OPS = {"ADD": "cpr_add_s8", "SUB": "cpr_sub_s8", "MUL": "cpr_mul_s8",
              "SQUARED_DIFFERENCE": "cpr_squared_difference_s8"}
SUPPORTED = {"FULLY_CONNECTED", "MEAN", *LOOKUP_OPS, *RESHAPE_OPS, *BINARY_OPS}


@dataclass
class Const:
    """A const array in flash."""
    name: str
    ctype: str
    values: np.ndarray
    kind: str
    """weights | bias | requant | table | params (what memory.json may group by)"""
    dsp_values: np.ndarray | None = None
    """the same bytes in the optimised kernels' layout, emitted instead when the macro
    ``layout_macro`` is defined (cpr_runtime.h defines it for the variants that read it)"""
    layout_macro: str = ""
    alternates: list[tuple[str, np.ndarray]] = field(default_factory=list)
    """(preprocessor condition, values) tried in order before ``layout_macro``: other
    kernels' layouts or constants (the fast FULLY_CONNECTED kernels, codegen/fc_select.py)"""
    only_if: bool = False
    """emitted only under one of ``alternates`` (no plain version: only fast kernels read it)"""

    @property
    def nbytes(self) -> int:
        return int(self.values.size * self.values.dtype.itemsize)


@dataclass
class Step:
    op: Operator
    reads: list[int]
    """activation tensors read (constants excluded)"""
    writes: list[int]
    call: str
    """C statement with {tN} placeholders for tensor pointers"""
    consts: list[Const] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    """C definitions of static const parameter structs"""
    macs: int = 0
    alias: tuple[int, int] | None = None
    """(output, input): a reshape that shares its input's bytes (no call)"""
    island: dict | None = None
    """for a 16x8 float ELU island: exceptions and what a breakpoint table would cost"""


def _t(g: Graph, i: int) -> Tensor:
    return g.tensors[i]


def _int8(t: Tensor, op: Operator) -> None:
    if t.dtype != "int8":
        raise CprError(f"unsupported op {op.name} on {t.dtype} tensor {t.name!r} (operator "
                       f"{op.index}); only int8 kernels exist")
    if t.scale is None:
        raise CprError(f"tensor {t.name!r} of {op.name} (operator {op.index}) is not quantised")


def _zp(t: Tensor) -> int:
    return int(t.zero_point[0])


def _sc(t: Tensor) -> float:
    return quant.f64(t.scale[0])


def _fused(op: Operator) -> int:
    return int(getattr(op.options, "fusedActivationFunction", 0) or 0)


def _ptr(g: Graph, i: int, consts: list[Const], prefix: str, kind: str) -> str:
    """A C expression for input i: a placeholder for activations, a const array otherwise."""
    t = _t(g, i)
    if t.is_constant:
        name = f"{prefix}_{len(consts)}"
        ctype = {"int8": "int8_t", "int32": "int32_t"}.get(t.dtype)
        if ctype is None:
            raise CprError(f"constant {t.name!r} of type {t.dtype} is not supported")
        consts.append(Const(name, ctype, t.data.reshape(-1), kind))
        return name
    return f"{{t{i}}}"


def lower(g: Graph, op: Operator) -> Step:
    from cpr_edge.codegen import lower16  # 16x8 ops: int16 activations
    if op.name not in RESHAPE_OPS and lower16.uses_int16(g, op):
        return lower16.lower16(g, op)
    if op.name not in SUPPORTED:
        raise CprError(f"unsupported op {op.name} (operator {op.index}); the code generator "
                       f"supports {', '.join(sorted(SUPPORTED))}")
    if op.name == "FULLY_CONNECTED":
        return _fully_connected(g, op)
    if op.name in RESHAPE_OPS:
        return Step(op, [op.inputs[0]], [op.outputs[0]], "", alias=(op.outputs[0], op.inputs[0]))
    if op.name in LOOKUP_OPS:
        return _lookup(g, op)
    if op.name in BINARY_OPS:
        return _binary(g, op)
    return _mean(g, op)


def _fully_connected(g: Graph, op: Operator) -> Step:
    x, w, y = _t(g, op.inputs[0]), _t(g, op.inputs[1]), _t(g, op.outputs[0])
    b = _t(g, op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    for t in (x, w, y):
        _int8(t, op)
    if not w.is_constant or (b is not None and not b.is_constant):
        raise CprError(f"FULLY_CONNECTED (operator {op.index}) needs constant weights and bias")
    if getattr(op.options, "weightsFormat", 0):
        raise CprError(f"FULLY_CONNECTED (operator {op.index}) uses shuffled weights; unsupported")
    if int(w.zero_point.max(initial=0)) != 0 or int(w.zero_point.min(initial=0)) != 0:
        raise CprError(f"FULLY_CONNECTED (operator {op.index}) has asymmetric int8 weights "
                       "(non-zero weight zero point); TFLM int8 weights are symmetric")
    if b is not None and b.dtype != "int32":
        raise CprError(f"FULLY_CONNECTED (operator {op.index}) has a {b.dtype} bias; need int32")
    n_out, depth = w.shape
    batches = x.size // depth
    per_channel = w.scale.size > 1
    if per_channel:
        if w.scale.size != n_out or w.quantized_dimension != 0:
            raise CprError(f"FULLY_CONNECTED (operator {op.index}): per-channel scales must run "
                           "along the output dimension")
        # PopulateConvolutionQuantizationParams: every factor widened to double first.
        reals = [_sc(x) * quant.f64(s) / _sc(y) for s in w.scale]
    else:
        # GetQuantizedConvolutionMultipler: the input*filter product is taken in float32.
        reals = [quant.f64(np.float32(x.scale[0]) * np.float32(w.scale[0])) / _sc(y)]
    mult, shift = zip(*(quant.quantize_multiplier(r) for r in reals))
    lo, hi = quant.activation_range(_fused(op), y.scale[0], _zp(y))
    fast = fc_select.fast_constants(w.data, b.data if b is not None else None, -_zp(x), _zp(y),
                                    list(mult), list(shift))
    if fast is not None:
        from cpr_edge.codegen import fc_fast  # it builds Steps of this module
        return fc_fast.lower_fast(op, x, w, b, y, batches, per_channel, list(mult), list(shift),
                                  lo, hi, fast)
    k = f"fc{op.index}"
    consts = [Const(f"{k}_weights", "int8_t", w.data.reshape(-1), "weights",
                    dsp_values=interleave4(w.data), layout_macro="CPR_FC_S8_INTERLEAVED")]
    if b is not None:
        consts.append(Const(f"{k}_bias", "int32_t", b.data.reshape(-1), "bias"))
    consts += [Const(f"{k}_multiplier", "int32_t", np.array(mult, np.int32), "requant"),
               Const(f"{k}_shift", "int32_t", np.array(shift, np.int32), "requant")]
    params = (f"static const cpr_fc_params {k}_params = {{{-_zp(x)}, {-int(w.zero_point[0])}, "
              f"{_zp(y)}, {lo}, {hi}, {k}_multiplier, {k}_shift, {int(per_channel)}}};")
    bias = f"{k}_bias" if b is not None else "0"
    call = (f"cpr_fully_connected_s8(&{k}_params, {{t{x.index}}}, {batches}, {depth}, "
            f"{k}_weights, {bias}, {n_out}, {{t{y.index}}});")
    return Step(op, [x.index], [y.index], call, consts, [params], macs=batches * n_out * depth)


def interleave4(w: np.ndarray) -> np.ndarray:
    """Row-major [N, K] weights -> the 4-row interleaved layout of the DSP and unrolled
    kernels (see optimized/fully_connected_dsp.c): per block of 4 rows, 16-byte groups of
    bytes k..k+3 of each row, then each row's K % 4 tail; leftover rows stay row-major."""
    n, k = w.shape
    k4, n4 = k & ~3, n & ~3
    parts = []
    for r in range(0, n4, 4):
        block = w[r:r + 4]
        parts.append(block[:, :k4].reshape(4, k4 // 4, 4).transpose(1, 0, 2).reshape(-1))
        parts.append(block[:, k4:].reshape(-1))
    parts.append(w[n4:].reshape(-1))
    return np.concatenate(parts).astype(np.int8)


def _lookup(g: Graph, op: Operator) -> Step:
    x, y = _t(g, op.inputs[0]), _t(g, op.outputs[0])
    _int8(x, op)
    _int8(y, op)
    table = tables.lookup_table(op, x, y)
    name = f"lut{op.index}_{op.name.lower()}"
    call = f"cpr_lookup_s8({{t{x.index}}}, {x.size}, {name}, {{t{y.index}}});"
    return Step(op, [x.index], [y.index], call, [Const(name, "int8_t", table, "table")])


def _broadcast(op: Operator, a: Tensor, b: Tensor, y: Tensor) -> str:
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError as exc:
        raise CprError(f"{op.name} (operator {op.index}): shapes {a.shape} and {b.shape} "
                       "do not broadcast") from exc
    if tuple(shape) != tuple(y.shape) and int(np.prod(shape)) != y.size:
        raise CprError(f"{op.name} (operator {op.index}): output shape {y.shape} != {shape}")
    shape = tuple(shape) or (1,)
    if len(shape) > 5:
        raise CprError(f"{op.name} (operator {op.index}): more than 5 dimensions")

    def strides(s: tuple[int, ...]) -> list[int]:
        s = (1,) * (len(shape) - len(s)) + tuple(s)
        out, step = [], 1
        for d in reversed(range(len(shape))):
            out.append(0 if s[d] == 1 and shape[d] != 1 else step)
            step *= s[d]
        return out[::-1]

    def arr(v: list[int]) -> str:
        return "{" + ", ".join(str(int(e)) for e in v) + "}"

    return f"{{{len(shape)}, {arr(shape)}, {arr(strides(a.shape))}, {arr(strides(b.shape))}}}"


def _binary(g: Graph, op: Operator) -> Step:
    a, b, y = _t(g, op.inputs[0]), _t(g, op.inputs[1]), _t(g, op.outputs[0])
    for t in (a, b, y):
        _int8(t, op)
    k = f"{op.name.lower()}{op.index}"
    consts: list[Const] = []
    pa = _ptr(g, a.index, consts, f"{k}_const", "weights")
    pb = _ptr(g, b.index, consts, f"{k}_const", "weights")
    lo, hi = quant.activation_range(_fused(op), y.scale[0], _zp(y))
    left_shift, m1, s1, m2, s2 = 0, 0, 0, 0, 0
    if op.name == "MUL":
        mo, so = quant.quantize_multiplier(_sc(a) * _sc(b) / _sc(y))
    else:
        twice_max = 2.0 * max(_sc(a), _sc(b))
        left_shift = 20 if op.name in ("ADD", "SUB") else 7
        m1, s1 = quant.quantize_multiplier(_sc(a) / twice_max)
        m2, s2 = quant.quantize_multiplier(_sc(b) / twice_max)
        if op.name == "SQUARED_DIFFERENCE":
            real_out = twice_max * twice_max / ((1 << (2 * left_shift)) * _sc(y))
        else:
            real_out = twice_max / ((1 << left_shift) * _sc(y))
        mo, so = quant.quantize_multiplier(real_out)
    params = [f"static const cpr_arith_params {k}_params = {{{-_zp(a)}, {-_zp(b)}, {_zp(y)}, "
              f"{left_shift}, {m1}, {s1}, {m2}, {s2}, {mo}, {so}, {lo}, {hi}}};",
              f"static const cpr_broadcast {k}_shape = {_broadcast(op, a, b, y)};"]
    call = f"{BINARY_OPS[op.name]}(&{k}_params, &{k}_shape, {pa}, {pb}, {{t{y.index}}});"
    reads = [t.index for t in (a, b) if not t.is_constant]
    return Step(op, reads, [y.index], call, consts, params)


def _mean(g: Graph, op: Operator) -> Step:
    x, axes_t, y = _t(g, op.inputs[0]), _t(g, op.inputs[1]), _t(g, op.outputs[0])
    _int8(x, op)
    _int8(y, op)
    if not axes_t.is_constant:
        raise CprError(f"MEAN (operator {op.index}) needs constant axes")
    rank = len(x.shape)
    axes = sorted({int(a) % rank for a in axes_t.data.reshape(-1)})
    if axes != list(range(axes[0], axes[-1] + 1)):
        raise CprError(f"MEAN (operator {op.index}) over non-adjacent axes {axes} is unsupported")
    outer = int(np.prod(x.shape[:axes[0]], dtype=np.int64))
    inner = int(np.prod(x.shape[axes[0]:axes[-1] + 1], dtype=np.int64))
    tail = int(np.prod(x.shape[axes[-1] + 1:], dtype=np.int64))
    m, s = quant.quantize_multiplier(_sc(x) / _sc(y))
    # QuantizedMeanOrSum folds 1/num_elements into the multiplier with integer arithmetic.
    pre = min(inner.bit_length() - 1, 32, 31 + s)
    m = (m << pre) // inner
    s -= pre
    k = f"mean{op.index}"
    params = [f"static const cpr_mean_params {k}_params = {{{_zp(x)}, {_zp(y)}, {m}, {s}, {inner}}};"]
    call = f"cpr_mean_s8(&{k}_params, {{t{x.index}}}, {outer}, {inner}, {tail}, {{t{y.index}}});"
    return Step(op, [x.index], [y.index], call, [], params)
