"""Write small .tflite flatbuffers: one-op models for lookup tables and kernel tests.

A one-op model carries exactly the quantisation and builtin options of the op it stands
for, so the TFLM interpreter runs the same Prepare/Eval path as in the full model.
"""
from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

TYPE_CODES = {"int8": schema.TensorType.INT8, "int16": schema.TensorType.INT16,
              "int32": schema.TensorType.INT32, "int64": schema.TensorType.INT64,
              "float32": schema.TensorType.FLOAT32, "uint8": schema.TensorType.UINT8}


@dataclass
class TensorSpec:
    shape: tuple[int, ...]
    dtype: str = "int8"
    scale: list[float] | None = None
    """one scale (per tensor) or one per channel; None: not quantised"""
    zero_point: list[int] | None = None
    data: np.ndarray | None = None
    """constant contents (weights, bias, axes); None for activations"""
    quantized_dimension: int = 0


def options_type(options) -> int:
    """The BuiltinOptions union tag for an options object such as FullyConnectedOptionsT."""
    if options is None:
        return schema.BuiltinOptions.NONE
    return getattr(schema.BuiltinOptions, type(options).__name__[:-1])


@dataclass
class OpSpec:
    name: str
    """builtin operator name, e.g. FULLY_CONNECTED"""
    inputs: list[int]
    outputs: list[int]
    options: object = None
    version: int = 1


def build_model(op_name: str, tensors: list[TensorSpec], inputs: list[int], outputs: list[int],
                options=None, version: int = 1) -> bytes:
    """A model holding one operator; graph inputs are its non-constant inputs."""
    graph_inputs = [i for i in inputs if i >= 0 and tensors[i].data is None]
    return build_graph(tensors, [OpSpec(op_name, inputs, outputs, options, version)],
                       graph_inputs, list(outputs))


def build_graph(tensors: list[TensorSpec], ops: list[OpSpec], inputs: list[int],
                outputs: list[int]) -> bytes:
    """A one-subgraph model; ops run in list order."""
    model = schema.ModelT()
    model.version = 3
    codes: dict[tuple[str, int], int] = {}
    model.operatorCodes = []
    for spec in ops:
        if (spec.name, spec.version) not in codes:
            code = schema.OperatorCodeT()
            builtin = getattr(schema.BuiltinOperator, spec.name)
            code.builtinCode = builtin
            code.deprecatedBuiltinCode = min(builtin, 127)
            code.version = spec.version
            codes[(spec.name, spec.version)] = len(model.operatorCodes)
            model.operatorCodes.append(code)
    model.buffers = [schema.BufferT()]  # buffer 0: the empty sentinel
    sub = schema.SubGraphT()
    sub.tensors = []
    for i, spec in enumerate(tensors):
        t = schema.TensorT()
        t.shape = list(spec.shape)
        t.type = TYPE_CODES[spec.dtype]
        t.name = f"t{i}"
        t.buffer = 0
        if spec.data is not None:
            buf = schema.BufferT()
            buf.data = np.ascontiguousarray(spec.data).view(np.uint8).reshape(-1).tolist()
            model.buffers.append(buf)
            t.buffer = len(model.buffers) - 1
        if spec.scale is not None:
            q = schema.QuantizationParametersT()
            q.scale = [float(s) for s in spec.scale]
            q.zeroPoint = [int(z) for z in spec.zero_point]
            q.quantizedDimension = spec.quantized_dimension
            t.quantization = q
        sub.tensors.append(t)
    sub.operators = []
    for spec in ops:
        op = schema.OperatorT()
        op.opcodeIndex = codes[(spec.name, spec.version)]
        op.inputs = list(spec.inputs)
        op.outputs = list(spec.outputs)
        op.builtinOptionsType = options_type(spec.options)
        op.builtinOptions = spec.options
        sub.operators.append(op)
    sub.inputs = list(inputs)
    sub.outputs = list(outputs)
    model.subgraphs = [sub]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def run_tflm(model: bytes, batches: list[list[np.ndarray]], arena_size: int | None = None
             ) -> list[np.ndarray]:
    """Run the real tflite-micro interpreter on each list of inputs; first output per run."""
    from tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(model, arena_size=arena_size or max(64 * 1024, 8 * len(model)))
    outs = []
    for inputs in batches:
        for i, x in enumerate(inputs):
            interp.set_input(x, i)
        interp.invoke()
        outs.append(np.array(interp.get_output(0)))
    return outs
