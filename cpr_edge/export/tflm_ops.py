"""Which TFLite ops TFLM can run, in which types, and the ``op_resolver.h`` that registers them.

The table lists the builtins an MLP controller can turn into, with the
``MicroMutableOpResolver`` method that registers each and the tensor types its TFLM
reference kernel accepts (int16: measured by running one-op models in the tflite-micro
interpreter, docs/export.md "16x8 mode"). An op missing here is refused rather than guessed.
"""
from __future__ import annotations

from cpr_edge.errors import CprError
from cpr_edge.export.flatbuffer import float_ops, is_float_op, op_name, tensor_type

TFLM_KERNELS: dict[str, tuple[str, frozenset[str]]] = {
    # op: (MicroMutableOpResolver method, kernel types)
    "FULLY_CONNECTED": ("AddFullyConnected", frozenset({"int8", "int16", "float32"})),
    "ELU": ("AddElu", frozenset({"int8", "float32"})),
    "TANH": ("AddTanh", frozenset({"int8", "int16", "float32"})),
    "LOGISTIC": ("AddLogistic", frozenset({"int8", "int16", "float32"})),
    "RELU": ("AddRelu", frozenset({"int8", "int16", "float32"})),
    "RELU6": ("AddRelu6", frozenset({"int8", "int16", "float32"})),
    "LEAKY_RELU": ("AddLeakyRelu", frozenset({"int8", "int16", "float32"})),
    "HARD_SWISH": ("AddHardSwish", frozenset({"int8", "float32"})),
    "ADD": ("AddAdd", frozenset({"int8", "int16", "float32"})),
    "SUB": ("AddSub", frozenset({"int8", "int16", "float32"})),
    "MUL": ("AddMul", frozenset({"int8", "int16", "float32"})),
    "MAXIMUM": ("AddMaximum", frozenset({"int8", "int16", "float32"})),
    "MINIMUM": ("AddMinimum", frozenset({"int8", "int16", "float32"})),
    "CONCATENATION": ("AddConcatenation", frozenset({"int8", "int16", "float32"})),
    "RESHAPE": ("AddReshape", frozenset({"int8", "int16", "float32"})),
    "SQUEEZE": ("AddSqueeze", frozenset({"int8", "int16", "float32"})),
    "QUANTIZE": ("AddQuantize", frozenset({"int8", "int16", "float32"})),
    "DEQUANTIZE": ("AddDequantize", frozenset({"int8", "int16", "float32"})),
    "EXP": ("AddExp", frozenset({"float32"})),
    "LOG": ("AddLog", frozenset({"float32"})),
}

WHY_FLOAT_ONLY = {
    "EXP": "it comes from Mish or Softplus (log(1 + exp(x)))",
    "LOG": "it comes from Mish or Softplus (log(1 + exp(x)))",
}


def _kind(model, op) -> str:
    if is_float_op(model, op):
        return "float32"
    ios = [int(i) for i in list(op.inputs) + list(op.outputs) if i >= 0]
    return "int16" if any(tensor_type(model, i) == "INT16" for i in ios) else "int8"


def exact_elu_islands(model) -> set[int]:
    """Operator indices of the 16x8 float islands DEQUANTIZE(int16) -> ELU -> QUANTIZE(int16).

    TFLM has no int16 ELU; the island's output depends only on its int16 input, which the
    code generator reproduces exactly (docs/codegen.md), so a 16x8 export accepts them."""
    sg = model.subgraphs[0]
    ops, found = sg.operators, set()
    for k in range(len(ops) - 2):
        names = [op_name(model, o) for o in ops[k:k + 3]]
        deq, elu, qu = ops[k:k + 3]
        if (names == ["DEQUANTIZE", "ELU", "QUANTIZE"]
                and tensor_type(model, int(deq.inputs[0])) == "INT16"
                and tensor_type(model, int(qu.outputs[0])) == "INT16"
                and int(elu.inputs[0]) == int(deq.outputs[0]) and int(qu.inputs[0]) == int(elu.outputs[0])):
            found.update({k, k + 1, k + 2})
    return found


def check_ops(model, allow_float: bool, activations: str = "int8") -> list[str]:
    """Refuse ops TFLM cannot run as they are; returns the float ops kept (``allow_float``,
    and in the 16x8 mode the exact ELU islands).

    An int8 (int16) op needs an int8 (int16) TFLM kernel (EXP and LOG have none). A float op
    outside the I/O boundary is a float island: refused unless ``allow_float``, except the
    DEQUANTIZE -> ELU -> QUANTIZE islands of a 16x8 model.
    """
    sg = model.subgraphs[0]
    exact = exact_elu_islands(model) if activations == "int16" else set()
    for k, op in enumerate(sg.operators):
        name = op_name(model, op)
        if name not in TFLM_KERNELS:
            raise CprError(f"op {name} is not in the TFLM kernel set this exporter knows; cannot export")
        kind = _kind(model, op)
        if kind not in TFLM_KERNELS[name][1]:
            why = WHY_FLOAT_ONLY.get(name, "")
            raise CprError(f"op {name} cannot run {kind} on TFLM (its TFLM kernel is "
                           f"{'/'.join(sorted(TFLM_KERNELS[name][1]))} only){'; ' + why if why else ''}")
    islands = [f for f in float_ops(model) if not f.boundary]
    refused = [f for f in islands if f.index not in exact]
    if refused and not allow_float:
        names = ", ".join(f"{f.name} (op {f.index})" for f in refused)
        mode = "16x8 conversion (only ELU islands are exact)" if activations == "int16" else "int8 rewrite"
        raise CprError(f"float island left after the {mode}: {names}; "
                       f"TFLM would run it in float (pass --allow-float to accept)")
    return [f.name for f in islands]


def op_resolver_header(ops: list[str]) -> str:
    """C++ header: a ``MicroMutableOpResolver<N>`` with exactly the ops of the model."""
    unique = list(dict.fromkeys(ops))
    adds = "\n".join(f"  if (resolver.{TFLM_KERNELS[name][0]}() != kTfLiteOk) return kTfLiteError;"
                     for name in unique)
    return f"""// Generated by cpr-edge export: the TFLM ops this model needs, nothing more.
#ifndef CPR_EDGE_OP_RESOLVER_H_
#define CPR_EDGE_OP_RESOLVER_H_

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

// {", ".join(unique)}
constexpr unsigned int kCprEdgeOpCount = {len(unique)};
using CprEdgeOpResolver = tflite::MicroMutableOpResolver<kCprEdgeOpCount>;

inline TfLiteStatus CprEdgeRegisterOps(CprEdgeOpResolver& resolver) {{
{adds}
  return kTfLiteOk;
}}

#endif  // CPR_EDGE_OP_RESOLVER_H_
"""
