"""Read a .tflite flatbuffer into plain dataclasses: tensors (shape, type, quantisation,
constant data) and operators in execution order.

Uses the schema module shipped inside the ``tflite-micro`` package, so the reader sees the
model exactly as the interpreter we verify against does.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from cpr_edge.errors import CprError

OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
TYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
NUMPY_TYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32,
               "int64": np.int64, "float32": np.float32, "bool": np.bool_}


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    """numpy-style type name: int8, int32, float32, ..."""
    scale: np.ndarray | None = None
    """float32 scales (one per channel, or one); None when not quantised."""
    zero_point: np.ndarray | None = None
    quantized_dimension: int = 0
    data: np.ndarray | None = None
    """constant contents (weights, biases, axes), shaped; None for activations."""

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(NUMPY_TYPES[self.dtype]).itemsize

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass
class Operator:
    index: int
    name: str
    """builtin operator name, e.g. FULLY_CONNECTED"""
    version: int
    inputs: list[int]
    """tensor indices; -1 marks an omitted optional input"""
    outputs: list[int]
    options: object = None
    """the schema's builtin options object (e.g. FullyConnectedOptionsT) or None"""


@dataclass
class Graph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    sha256: bytes
    model_bytes: int
    model: object = field(repr=False, default=None)
    """the unpacked schema ModelT, kept for building one-op models with the same options"""


def read_model(path: str | Path) -> Graph:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CprError(f"cannot read model {path}: {exc.strerror}") from exc
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise CprError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    except Exception as exc:  # a truncated or corrupt flatbuffer raises anything
        raise CprError(f"{path}: corrupt TFLite flatbuffer ({type(exc).__name__})") from exc
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise CprError(f"{path}: expected exactly one subgraph, found {len(model.subgraphs or [])}")
    sub = model.subgraphs[0]
    tensors = [_tensor(i, t, model.buffers, raw) for i, t in enumerate(sub.tensors or [])]
    operators = []
    for i, op in enumerate(sub.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = OP_NAMES.get(builtin, f"BUILTIN_{builtin}")
        if builtin == schema.BuiltinOperator.CUSTOM:
            name = f"CUSTOM({(code.customCode or b'').decode(errors='replace')})"
        operators.append(Operator(i, name, code.version, [int(x) for x in op.inputs],
                                  [int(x) for x in op.outputs], op.builtinOptions))
    return Graph(tensors, operators, [int(x) for x in sub.inputs], [int(x) for x in sub.outputs],
                 hashlib.sha256(raw).digest(), len(raw), model)


def _tensor(index: int, t, buffers, raw: bytes) -> Tensor:
    dtype = TYPE_NAMES.get(t.type, f"type{t.type}")
    name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    out = Tensor(index, name, shape, dtype)
    q = t.quantization
    if q is not None and q.scale is not None and len(q.scale) > 0:
        out.scale = np.asarray(q.scale, dtype=np.float32)
        out.zero_point = np.asarray(q.zeroPoint, dtype=np.int64)
        out.quantized_dimension = int(q.quantizedDimension)
    buf = buffers[t.buffer] if t.buffer < len(buffers) else None
    if buf is not None:
        data = None
        if buf.data is not None and len(buf.data) > 0:
            data = np.asarray(buf.data, dtype=np.uint8).tobytes()
        elif getattr(buf, "offset", 0) > 1 and getattr(buf, "size", 0) > 0:
            data = raw[buf.offset:buf.offset + buf.size]
        if data is not None:
            if dtype not in NUMPY_TYPES:
                raise CprError(f"tensor {name!r} has unsupported constant type {dtype}")
            arr = np.frombuffer(data, dtype=NUMPY_TYPES[dtype])
            out.data = arr.reshape(shape) if shape else arr.reshape(())
    return out
