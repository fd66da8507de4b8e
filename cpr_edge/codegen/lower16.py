"""Lowering of the 16x8 ops (int16 activations, int8 weights) to the runtime's s16 kernels.

Constants follow TFLM's Prepare step for step, as lower.py does for int8: FULLY_CONNECTED
(int64 or no bias), TANH and LOGISTIC (zero points 0, output scale 2^-15, TFLM's sigmoid
table), QUANTIZE between int8 and int16, and the float ELU island DEQUANTIZE -> ELU ->
QUANTIZE that the converter leaves in a 16x8 model (elu16.py).
"""
from __future__ import annotations

import numpy as np

from cpr_edge.codegen import elu16, elu16_int, fc_select, quant
from cpr_edge.codegen.lower import Const, Step
from cpr_edge.codegen.reader import Graph, Operator, Tensor
from cpr_edge.codegen.sigmoid16 import SIGMOID_TABLE_U16
from cpr_edge.errors import CprError

INT16_OPS = {"FULLY_CONNECTED", "TANH", "LOGISTIC", "QUANTIZE"}
RANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}
CTYPE = {"int8": "int8_t", "int16": "int16_t"}


def uses_int16(g: Graph, op: Operator) -> bool:
    return any(g.tensors[i].dtype == "int16" for i in op.inputs + op.outputs if i >= 0)


def _q(t: Tensor, op: Operator) -> None:
    if t.scale is None:
        raise CprError(f"tensor {t.name!r} of {op.name} (operator {op.index}) is not quantised")
    if t.scale.size != 1:
        raise CprError(f"tensor {t.name!r} of {op.name} (operator {op.index}) needs per-tensor quantisation")


def _zero_zp(t: Tensor, op: Operator) -> None:
    _q(t, op)
    if int(t.zero_point[0]) != 0:
        raise CprError(f"int16 tensor {t.name!r} of {op.name} (operator {op.index}) has zero point "
                       f"{int(t.zero_point[0])}; TFLM's int16 kernels need 0")


def _src(ctype: str, i: int) -> str:
    return f"(const {ctype} *){{t{i}}}"


def _dst(ctype: str, i: int) -> str:
    return f"({ctype} *){{t{i}}}"


def lower16(g: Graph, op: Operator) -> Step:
    if op.name not in INT16_OPS:
        raise CprError(f"unsupported op {op.name} on int16 tensors (operator {op.index}); the 16x8 "
                       f"code generator supports {', '.join(sorted(INT16_OPS))} and the float ELU island")
    if op.name == "FULLY_CONNECTED":
        return _fully_connected(g, op)
    if op.name == "QUANTIZE":
        return _requantize(g, op)
    return _sigmoid(g, op)


def _fully_connected(g: Graph, op: Operator) -> Step:
    x, w, y = (g.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    b = g.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    if x.dtype != "int16" or y.dtype != "int16" or w.dtype != "int8":
        raise CprError(f"FULLY_CONNECTED (operator {op.index}): 16x8 needs int16 input and output and "
                       f"int8 weights, not {x.dtype}/{w.dtype}/{y.dtype}")
    _zero_zp(x, op)
    _zero_zp(y, op)
    if not w.is_constant or (b is not None and not b.is_constant):
        raise CprError(f"FULLY_CONNECTED (operator {op.index}) needs constant weights and bias")
    if getattr(op.options, "weightsFormat", 0):
        raise CprError(f"FULLY_CONNECTED (operator {op.index}) uses shuffled weights; unsupported")
    if w.scale is None or int(np.abs(w.zero_point).max(initial=0)) != 0:
        raise CprError(f"FULLY_CONNECTED (operator {op.index}) needs symmetric int8 weights")
    if b is not None and b.dtype != "int64":
        raise CprError(f"FULLY_CONNECTED (operator {op.index}) has a {b.dtype} bias; the 16x8 kernel "
                       "takes int64 biases")
    n_out, depth = w.shape
    per_channel = w.scale.size > 1
    if per_channel:
        if w.scale.size != n_out or w.quantized_dimension != 0:
            raise CprError(f"FULLY_CONNECTED (operator {op.index}): per-channel scales must run "
                           "along the output dimension")
        reals = [quant.f64(x.scale[0]) * quant.f64(s) / quant.f64(y.scale[0]) for s in w.scale]
    else:
        reals = [quant.f64(np.float32(x.scale[0]) * np.float32(w.scale[0])) / quant.f64(y.scale[0])]
    mult, shift = zip(*(quant.quantize_multiplier(r) for r in reals))
    fused = int(getattr(op.options, "fusedActivationFunction", 0) or 0)
    lo, hi = quant.activation_range(fused, y.scale[0], 0, *RANGE["int16"])
    k = f"fc{op.index}"
    fast_m = fc_select.fast16_constants(w.data, b.data if b is not None else None, list(mult), list(shift))
    if fast_m is not None:
        return _fully_connected_fast(op, x, w, b, y, n_out, depth, per_channel, list(mult),
                                     list(shift), lo, hi, fast_m)
    consts = [Const(f"{k}_weights", "int8_t", w.data.reshape(-1), "weights",
                    dsp_values=pair_layout(w.data), layout_macro="CPR_FC_S16_PAIRED")]
    if b is not None:
        consts.append(Const(f"{k}_bias", "int64_t", b.data.reshape(-1), "bias"))
    consts += [Const(f"{k}_multiplier", "int32_t", np.array(mult, np.int32), "requant"),
               Const(f"{k}_shift", "int32_t", np.array(shift, np.int32), "requant")]
    params = (f"static const cpr_fc16_params {k}_params = {{{lo}, {hi}, {k}_multiplier, {k}_shift, "
              f"{int(per_channel)}}};")
    call = (f"cpr_fully_connected_s16(&{k}_params, {_src('int16_t', x.index)}, {x.size // depth}, "
            f"{depth}, {k}_weights, {f'{k}_bias' if b is not None else '0'}, {n_out}, "
            f"{_dst('int16_t', y.index)});")
    return Step(op, [x.index], [y.index], call, consts, [params], macs=(x.size // depth) * n_out * depth)


def _fully_connected_fast(op, x, w, b, y, n_out: int, depth: int, per_channel: bool,
                          mult: list[int], shift: list[int], lo: int, hi: int,
                          fast_m: np.ndarray) -> Step:
    """A 16x8 layer whose bounds hold for the fast kernels (fc_select.fast16_constants):
    cpr_fc_s16_blocked or, as fc_select.choose16 predicts cheaper, cpr_fc_s16_few_inputs,
    with its layout and multipliers under CPR_FC_S16_FAST; the generic kernel otherwise (one
    model.c for every variant)."""
    k = f"fc{op.index}"
    fast = "defined(CPR_FC_S16_FAST)"
    bias = b.data.reshape(-1).astype(np.int64) if b is not None else np.zeros(n_out, np.int64)
    kernel = fc_select.choose16(depth, n_out)
    if kernel == "few_inputs":  # the records hold weights, bias and M: 1-word placeholders
        fast_w = fc_select.few16_layout(w.data, bias, fast_m)
        fast_b, fast_mult = np.zeros(1, np.int64), np.zeros(1, np.int32)
    else:
        fast_w, fast_b, fast_mult = fc_select.blocked16_layout(w.data), None, fast_m
    consts = [Const(f"{k}_weights", "int8_t", w.data.reshape(-1), "weights",
                    dsp_values=pair_layout(w.data), layout_macro="CPR_FC_S16_PAIRED",
                    alternates=[(fast, fast_w)]),
              Const(f"{k}_bias", "int64_t", bias, "bias",
                    alternates=[(fast, fast_b)] if fast_b is not None else []),
              Const(f"{k}_multiplier", "int32_t", np.array(mult, np.int32), "requant",
                    alternates=[(fast, fast_mult)]),
              # the fast kernel has no shifts (they are in M): only the generic one's
              Const(f"{k}_shift", "int32_t", np.array(shift, np.int32), "requant", only_if=True,
                    alternates=[(f"!{fast}", np.array(shift, np.int32))])]
    m0 = 0 if per_channel else int(fast_m[0])
    params = (f"#if {fast}\n"
              f"static const cpr_fc16_fast_params {k}_fast = {{{m0}, {lo}, {hi}, "
              f"{int(per_channel)}, {k}_multiplier}};\n#else\n"
              f"static const cpr_fc16_params {k}_params = {{{lo}, {hi}, {k}_multiplier, {k}_shift, "
              f"{int(per_channel)}}};\n#endif")
    args = (f"{_src('int16_t', x.index)}, {x.size // depth}, {depth}, {k}_weights, {k}_bias, "
            f"{n_out}, {_dst('int16_t', y.index)});")
    # the entry point of the layer's case, so that the linker keeps only the cases used
    narrow = "_narrow" if lo > -32768 or hi < 32767 else ""
    entry = (f"cpr_fc_s16_few_inputs_{(depth + 1) // 2}{narrow}" if kernel == "few_inputs" else
             f"cpr_fc_s16_blocked_{'pc' if per_channel else 'pt'}{narrow}")
    call = (f"#if {fast}\n    {entry}(&{k}_fast, {args}\n#else\n"
            f"    cpr_fully_connected_s16(&{k}_params, {args}\n#endif")
    return Step(op, [x.index], [y.index], call, consts, [params],
                macs=(x.size // depth) * n_out * depth)


def pair_layout(w: np.ndarray) -> np.ndarray:
    """Row-major [N, K] int8 weights -> the 16x8 DSP kernel's layout: in each row, every group
    of 4 stored as k, k+2, k+1, k+3; the K % 4 tail unchanged."""
    n, k = w.shape
    k4 = k & ~3
    out = w.copy()
    out[:, :k4] = w[:, :k4].reshape(n, k4 // 4, 4)[:, :, [0, 2, 1, 3]].reshape(n, k4)
    return out.reshape(-1).astype(np.int8)


def _sigmoid(g: Graph, op: Operator) -> Step:
    x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    if x.dtype != "int16" or y.dtype != "int16":
        raise CprError(f"{op.name} (operator {op.index}): int16 input and output needed, "
                       f"not {x.dtype} -> {y.dtype}")
    _zero_zp(x, op)
    _zero_zp(y, op)
    pot, log2 = quant.checked_log2(float(x.scale[0]))
    left_shift = 12 + log2  # (15 - kInputIntegerBits 3) + log2(input scale)
    pot = pot and (left_shift in (0, 1) if op.name == "TANH" else left_shift == 0)
    if pot:
        multiplier = 0
    else:  # rescale the input to 1 / (3 * 4096) as TFLM's Prepare does, in double
        m, left_shift = quant.f64(x.scale[0]) * 4096.0 * 3.0, 0
        while m <= 32767.0 / 2.0 and left_shift <= 30:
            left_shift += 1
            m *= 2.0
        multiplier = int(m)
        if multiplier > 32767:
            raise CprError(f"{op.name} (operator {op.index}): int16 input scale {float(x.scale[0]):g} "
                           "is too large for TFLM's int16 kernel")
    out_pot, out_log2 = quant.checked_log2(float(y.scale[0]))
    if not out_pot or out_log2 != -15:
        raise CprError(f"{op.name} (operator {op.index}): TFLM's int16 kernel needs output scale 2^-15, "
                       f"not {float(y.scale[0]):g}")
    k = f"{op.name.lower()}{op.index}"
    table = Const("sigmoid_table_u16", "uint16_t", np.array(SIGMOID_TABLE_U16, np.uint16), "table")
    params = [f"static const cpr_sigmoid16_params {k}_params = {{{multiplier}, {left_shift}, "
              f"sigmoid_table_u16}};"]
    call = (f"cpr_{op.name.lower()}_s16(&{k}_params, {_src('int16_t', x.index)}, {x.size}, "
            f"{_dst('int16_t', y.index)});")
    return Step(op, [x.index], [y.index], call, [table], params)


def _requantize(g: Graph, op: Operator) -> Step:
    x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
    kinds = (x.dtype, y.dtype)
    if kinds not in (("int16", "int8"), ("int8", "int16"), ("int16", "int16")):
        raise CprError(f"QUANTIZE (operator {op.index}) from {x.dtype} to {y.dtype} is unsupported")
    _q(x, op)
    _q(y, op)
    m, s = quant.quantize_multiplier(quant.f64(x.scale[0]) / quant.f64(y.scale[0]))
    lo, hi = RANGE[y.dtype]
    k = f"quantize{op.index}"
    fn = f"cpr_requantize_s{x.dtype[3:]}_s{y.dtype[3:]}"
    params = [f"static const cpr_requant_params {k}_params = {{{int(x.zero_point[0])}, "
              f"{int(y.zero_point[0])}, {m}, {s}, {lo}, {hi}}};"]
    call = (f"{fn}(&{k}_params, {_src(CTYPE[x.dtype], x.index)}, {x.size}, "
            f"{_dst(CTYPE[y.dtype], y.index)});")
    return Step(op, [x.index], [y.index], call, [], params)


def find_elu_island(g: Graph, ops: list[Operator], k: int) -> list[Operator] | None:
    """ops[k:k+3] when they are DEQUANTIZE(int16) -> ELU -> QUANTIZE(int16) on private tensors."""
    if k + 2 >= len(ops):
        return None
    deq, elu, qu = ops[k:k + 3]
    if (deq.name, elu.name, qu.name) != ("DEQUANTIZE", "ELU", "QUANTIZE"):
        return None
    if (g.tensors[deq.inputs[0]].dtype != "int16" or g.tensors[qu.outputs[0]].dtype != "int16"
            or elu.inputs[0] != deq.outputs[0] or qu.inputs[0] != elu.outputs[0]):
        return None
    private = {deq.outputs[0], elu.outputs[0]}
    if any(t in private for o in ops if o not in (elu, qu) for t in o.inputs) or private & set(g.outputs):
        return None
    return [deq, elu, qu]


def lower_elu_island(g: Graph, island: list[Operator]) -> Step:
    """The integer island where its fixed point covers the scales (it is the faster one on
    every core, by far on soft-float ones), else the float one; exact either way."""
    deq, elu, qu = island
    x, y = g.tensors[deq.inputs[0]], g.tensors[qu.outputs[0]]
    want = elu16.tflm_island(x, y, island)
    fixed = elu16.integer_island(x, y, island, want)
    if fixed is not None:
        return _integer_island_step(x, y, elu, *fixed)
    exc_q, exc_y, summary = elu16.island_exceptions(x, y, island, want)
    k = f"elu{elu.index}"
    consts = []
    if exc_q.size:
        consts = [Const(f"{k}_exc_q", "int16_t", exc_q, "table"),
                  Const(f"{k}_exc_y", "int16_t", exc_y, "table")]
    from cpr_edge.codegen.emit import c_float
    params = [f"static const cpr_elu16_params {k}_params = {{{c_float(x.scale[0])}, "
              f"{int(x.zero_point[0])}, {c_float(y.scale[0])}, {int(y.zero_point[0])}, {exc_q.size}, "
              f"{f'{k}_exc_q' if exc_q.size else '0'}, {f'{k}_exc_y' if exc_q.size else '0'}}};"]
    call = (f"cpr_elu_island_s16(&{k}_params, {_src('int16_t', x.index)}, {x.size}, "
            f"{_dst('int16_t', y.index)});")
    return Step(elu, [x.index], [y.index], call, consts, params, island=summary)


def _integer_island_step(x: Tensor, y: Tensor, elu: Operator, t: dict, exc_q: np.ndarray,
                         exc_y: np.ndarray, summary: dict) -> Step:
    k = f"elu{elu.index}"
    fast = elu16_int.fast_constants(t, int(x.zero_point[0]))
    cond = "defined(CPR_ELU16_FAST)"
    hi_alt = [(cond, fast["hi2"].astype(np.uint32))] if fast else []
    consts = [Const(f"{k}_hi", "uint32_t", t["hi"].astype(np.uint32), "table", alternates=hi_alt),
              Const(f"{k}_lo", "uint32_t", t["lo"].astype(np.uint32), "table")]
    if exc_q.size:
        consts += [Const(f"{k}_exc_q", "int16_t", exc_q, "table"),
                   Const(f"{k}_exc_y", "int16_t", exc_y, "table")]
    exc = f"{k}_exc_q, {k}_exc_y" if exc_q.size else "0, 0"
    ref_params = (f"static const cpr_elu16_int_params {k}_params = {{{int(x.zero_point[0])}, "
                  f"{int(y.zero_point[0])}, {t['pos_mult']}u, {t['pos_shift']}, {t['pos_guard']}, "
                  f"{t['neg_full']}u, {t['neg_shift']}, {t['neg_guard']}, {len(t['hi'])}, {k}_hi, "
                  f"{k}_lo, {exc_q.size}, {exc}}};")
    args = f"{_src('int16_t', x.index)}, {x.size}, {_dst('int16_t', y.index)});"
    ref_call = f"cpr_elu_island_s16_int(&{k}_params, {args}"
    if fast is None:
        summary = {**summary, "fast": False}
        return Step(elu, [x.index], [y.index], ref_call, consts, [ref_params], island=summary)
    f = fast
    fast_params = (f"static const cpr_elu16_fast_params {k}_fast = {{{int(y.zero_point[0])}, "
                   f"{f['pos_identity']}, {t['pos_mult']}u, {f['pos_pre']}, {f['pos_add']}u, "
                   f"{f['pos_g']}u, {f['pos_w']}u, {f['neg_add']}u, {t['neg_shift']}, {f['neg_g']}u, "
                   f"{f['neg_w']}u, {f['check']}, {k}_hi, {k}_lo, {exc_q.size}, {exc}}};")
    params = f"#if {cond}\n{fast_params}\n#else\n{ref_params}\n#endif"
    call = (f"#if {cond}\n    cpr_elu_island_s16_int_fast(&{k}_fast, {args}\n#else\n    {ref_call}\n#endif")
    return Step(elu, [x.index], [y.index], call, consts, [params], island={**summary, "fast": True})
