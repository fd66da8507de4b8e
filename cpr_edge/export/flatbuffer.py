"""Read, inspect and rewrite ``.tflite`` flatbuffers with the schema module TFLM ships.

The TF converter leaves ELU in float even when only int8 builtins are allowed: it emits
``DEQUANTIZE -> ELU -> QUANTIZE``. TFLM has an int8 ELU kernel (a 256-entry lookup table
built from the input and output quantisation), so :func:`fuse_float_islands` replaces such an
island by one ELU op reading the int8 input and writing the int8 output directly.
"""
from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

FILE_IDENTIFIER = b"TFL3"

OP_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
TYPE_NAMES = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}

FUSABLE_INT8 = {"ELU"}
"""Element-wise ops whose float island can become one int8 op (TFLM has an int8 LUT kernel)."""


def load_model(data: bytes) -> fb.ModelT:
    return fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(bytearray(data), 0))


def save_model(model: fb.ModelT) -> bytes:
    """Serialise; run the result through :func:`align` before handing it to a board."""
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def align(data: bytes, workdir) -> bytes:
    """Re-serialise with TFLM's C++ aligner so every buffer is 16-byte aligned (int32 biases
    are read in place on the board; the Python builder only aligns vectors to 4 bytes)."""
    from pathlib import Path

    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as aligner

    src, dst = Path(workdir) / "unaligned.tflite", Path(workdir) / "aligned.tflite"
    src.write_bytes(data)
    aligner.align_tflite_model(str(src), str(dst))
    return dst.read_bytes()


def op_name(model: fb.ModelT, op: fb.OperatorT) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == fb.BuiltinOperator.CUSTOM:
        return f"CUSTOM:{(code.customCode or b'').decode(errors='replace')}"
    return OP_NAMES.get(builtin, f"BUILTIN_{builtin}")


def op_names(model: fb.ModelT) -> list[str]:
    """Op names in execution order (first subgraph)."""
    return [op_name(model, op) for op in model.subgraphs[0].operators]


def tensor_type(model: fb.ModelT, index: int) -> str:
    return TYPE_NAMES[model.subgraphs[0].tensors[index].type]


def _io(op: fb.OperatorT) -> list[int]:
    """Tensor indices an op touches; -1 marks an omitted optional input."""
    return [int(i) for i in list(op.inputs if op.inputs is not None else []) +
            list(op.outputs if op.outputs is not None else []) if i >= 0]


def is_float_op(model: fb.ModelT, op: fb.OperatorT) -> bool:
    return any(tensor_type(model, i) in ("FLOAT32", "FLOAT16") for i in _io(op))


@dataclass
class FloatOp:
    index: int
    name: str
    boundary: bool
    """A QUANTIZE of a float model input or a DEQUANTIZE to a float model output (float I/O)."""


def float_ops(model: fb.ModelT) -> list[FloatOp]:
    sg = model.subgraphs[0]
    inputs, outputs = set(int(i) for i in sg.inputs), set(int(i) for i in sg.outputs)
    found = []
    for k, op in enumerate(sg.operators):
        if not is_float_op(model, op):
            continue
        name = op_name(model, op)
        boundary = ((name == "QUANTIZE" and int(op.inputs[0]) in inputs) or
                    (name == "DEQUANTIZE" and int(op.outputs[0]) in outputs))
        found.append(FloatOp(k, name, boundary))
    return found


def _consumers(sg: fb.SubGraphT, tensor: int) -> list[int]:
    return [k for k, op in enumerate(sg.operators) if op.inputs is not None and tensor in list(op.inputs)]


def fuse_float_islands(model: fb.ModelT) -> list[str]:
    """Replace every ``DEQUANTIZE -> OP -> QUANTIZE`` with OP in ``FUSABLE_INT8`` by one int8 OP.

    The fused op reads the DEQUANTIZE input and writes the QUANTIZE output, so it inherits
    their int8 quantisation; the float tensors in between are dropped. Returns the names of
    the fused ops (in order). Ops keep their opcode (ELU stays version 1).
    """
    sg = model.subgraphs[0]
    graph_io = set(int(i) for i in list(sg.inputs) + list(sg.outputs))
    fused, drop_ops = [], set()
    for k, op in enumerate(sg.operators):
        name = op_name(model, op)
        if name not in FUSABLE_INT8 or len(op.inputs) != 1 or len(op.outputs) != 1:
            continue
        src, dst = int(op.inputs[0]), int(op.outputs[0])
        producers = [j for j, o in enumerate(sg.operators) if src in list(o.outputs)]
        consumers = _consumers(sg, dst)
        if len(producers) != 1 or len(consumers) != 1:
            continue
        deq, quant = sg.operators[producers[0]], sg.operators[consumers[0]]
        if op_name(model, deq) != "DEQUANTIZE" or op_name(model, quant) != "QUANTIZE":
            continue
        q_in, q_out = int(deq.inputs[0]), int(quant.outputs[0])
        if (tensor_type(model, q_in) != "INT8" or tensor_type(model, q_out) != "INT8"
                or len(_consumers(sg, src)) != 1 or src in graph_io or dst in graph_io):
            continue
        op.inputs = np.array([q_in], dtype=np.int32)
        op.outputs = np.array([q_out], dtype=np.int32)
        drop_ops.update({producers[0], consumers[0]})
        fused.append(name)
    sg.operators = [op for k, op in enumerate(sg.operators) if k not in drop_ops]
    compact(model)
    return fused


def compact(model: fb.ModelT) -> None:
    """Drop tensors no op or graph I/O uses and opcodes no op uses; remap every index."""
    sg = model.subgraphs[0]
    used = set(int(i) for i in list(sg.inputs) + list(sg.outputs))
    for op in sg.operators:
        used.update(_io(op))
    keep = sorted(used)
    remap = {old: new for new, old in enumerate(keep)}

    def re(arr):
        return np.array([remap[int(i)] if i >= 0 else -1 for i in arr], dtype=np.int32)

    sg.tensors = [sg.tensors[i] for i in keep]
    sg.inputs, sg.outputs = re(sg.inputs), re(sg.outputs)
    for op in sg.operators:
        op.inputs, op.outputs = re(op.inputs), re(op.outputs)
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = re(op.intermediates)
    for sig in model.signatureDefs or []:
        for t in list(sig.inputs or []) + list(sig.outputs or []):
            t.tensorIndex = remap[int(t.tensorIndex)]

    used_codes = sorted({op.opcodeIndex for op in sg.operators})
    code_map = {old: new for new, old in enumerate(used_codes)}
    model.operatorCodes = [model.operatorCodes[i] for i in used_codes]
    for op in sg.operators:
        op.opcodeIndex = code_map[op.opcodeIndex]


def _floats(values) -> list[float]:
    return [float(v) for v in (values if values is not None else [])]


def tensor_table(model: fb.ModelT) -> list[dict]:
    """Every tensor: index, name, shape, type, per-tensor or per-channel scale / zero point."""
    rows = []
    for i, t in enumerate(model.subgraphs[0].tensors):
        q = t.quantization
        scale = _floats(q.scale if q is not None else None)
        zp = [int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else [])]
        row = {"index": i, "name": (t.name or b"").decode(errors="replace"),
               "shape": [int(s) for s in (t.shape if t.shape is not None else [])],
               "type": TYPE_NAMES[t.type], "constant": _has_data(model, t)}
        if len(scale) == 1:
            row.update(scale=scale[0], zero_point=zp[0])
        elif len(scale) > 1:
            row.update(scale=scale, zero_point=zp, quantized_dimension=int(q.quantizedDimension))
        rows.append(row)
    return rows


def _has_data(model: fb.ModelT, t: fb.TensorT) -> bool:
    buf = model.buffers[t.buffer] if model.buffers and t.buffer < len(model.buffers) else None
    return bool(buf is not None and buf.data is not None and len(buf.data))


def io_quant(model: fb.ModelT, which: str) -> dict:
    """Quantisation of the (single) model input or output: dtype, shape, scale, zero point."""
    sg = model.subgraphs[0]
    index = int((sg.inputs if which == "input" else sg.outputs)[0])
    row = tensor_table(model)[index]
    out = {"tensor": index, "type": row["type"], "shape": row["shape"]}
    if "scale" in row:
        out.update(scale=row["scale"], zero_point=row["zero_point"])
    return out
