"""The ELU island rewrite and the op checks, on small hand-built .tflite graphs run in TFLM.

No TensorFlow here: the graphs are written with the flatbuffer schema TFLM ships, so these
tests take a second and pin the exact numerics of the rewrite.
"""
from __future__ import annotations

import numpy as np
import pytest
from tflite_micro import runtime
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

from cpr_edge.errors import CprError
from cpr_edge.export import flatbuffer
from cpr_edge.export.tflm_ops import check_ops

WIDTH = 256  # one tensor holds every int8 value once


def _tensor(name, type_, scale=None, zero_point=None):
    t = fb.TensorT()
    t.name, t.shape, t.type, t.buffer = name.encode(), np.array([1, WIDTH], np.int32), type_, 0
    if scale is not None:
        q = fb.QuantizationParametersT()
        q.scale, q.zeroPoint = np.array([scale], np.float32), np.array([zero_point], np.int64)
        t.quantization = q
    return t


def island_model(op: str, in_q: tuple[float, int], out_q: tuple[float, int]) -> fb.ModelT:
    """int8 -> DEQUANTIZE -> OP (float) -> QUANTIZE -> int8: what the TF converter leaves for ELU."""
    codes = []
    for name in ("DEQUANTIZE", op, "QUANTIZE"):
        c = fb.OperatorCodeT()
        c.builtinCode = getattr(fb.BuiltinOperator, name)
        c.deprecatedBuiltinCode = min(c.builtinCode, 127)
        c.version = 1 if name != "DEQUANTIZE" else 2
        codes.append(c)
    sg = fb.SubGraphT()
    sg.tensors = [_tensor("in", fb.TensorType.INT8, *in_q), _tensor("deq", fb.TensorType.FLOAT32),
                  _tensor("act", fb.TensorType.FLOAT32), _tensor("out", fb.TensorType.INT8, *out_q)]
    sg.inputs, sg.outputs = np.array([0], np.int32), np.array([3], np.int32)
    sg.operators = []
    for k in range(3):
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = k, np.array([k], np.int32), np.array([k + 1], np.int32)
        sg.operators.append(o)
    sg.name = b"main"
    model = fb.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, codes, [sg], [fb.BufferT()]
    model.description = b"test island"
    return model


def run_all_int8(model: fb.ModelT, tmp_path) -> np.ndarray:
    data = flatbuffer.align(flatbuffer.save_model(model), tmp_path)
    interp = runtime.Interpreter.from_bytes(data, arena_size=64 << 10)
    interp.set_input(np.arange(-128, 128, dtype=np.int8)[None, :], 0)
    interp.invoke()
    return np.array(interp.get_output(0)).reshape(-1).astype(int)


# (input scale, zero point), (output scale, zero point): a hidden layer of the tiny export, a
# wide symmetric range, and a narrow one where ELU saturates at -1 inside the int8 range.
QUANTS = [((0.015297756, 10), (0.010447463, -44)),
          ((0.05, 0), (0.03, -95)),
          ((0.004, -100), (0.0035, 20))]


@pytest.mark.parametrize("in_q,out_q", QUANTS)
def test_elu_rewrite_matches_float_elu_within_one_lsb(in_q, out_q, tmp_path):
    """TFLM int8 ELU (LUT) after the rewrite vs TFLM running the float island, all 256 inputs."""
    island = island_model("ELU", in_q, out_q)
    want = run_all_int8(island, tmp_path)

    fused = island_model("ELU", in_q, out_q)
    assert flatbuffer.fuse_float_islands(fused) == ["ELU"]
    assert flatbuffer.op_names(fused) == ["ELU"]
    assert [flatbuffer.tensor_type(fused, i) for i in range(len(fused.subgraphs[0].tensors))] == ["INT8", "INT8"]
    assert fused.operatorCodes[0].version == 1
    got = run_all_int8(fused, tmp_path)

    assert np.abs(got - want).max() <= 1
    # the float path really is ELU at these scales: negative side bends, positive side is linear
    x = in_q[0] * (np.arange(-128, 128) - in_q[1])
    ref = np.clip(np.round(np.where(x < 0, np.expm1(x), x) / out_q[0]) + out_q[1], -128, 127)
    assert np.abs(want - ref).max() <= 1


def test_float_island_of_other_op_is_refused_unless_allowed():
    """TANH has no fusion rule here: its island stays float, so check_ops refuses it."""
    model = island_model("TANH", (0.02, 0), (1 / 128, 0))
    assert flatbuffer.fuse_float_islands(model) == []
    with pytest.raises(CprError, match="float island.*TANH"):
        check_ops(model, allow_float=False)
    assert check_ops(model, allow_float=True) == ["DEQUANTIZE", "TANH", "QUANTIZE"]


def test_int8_exp_is_refused_naming_the_op():
    """The TF converter quantises Mish's EXP/LOG to int8, but TFLM has only float kernels."""
    model = island_model("ELU", (0.02, 0), (0.02, 0))
    flatbuffer.fuse_float_islands(model)
    model.operatorCodes[0].builtinCode = fb.BuiltinOperator.EXP
    model.operatorCodes[0].deprecatedBuiltinCode = fb.BuiltinOperator.EXP
    with pytest.raises(CprError, match="op EXP cannot run int8 on TFLM.*Mish"):
        check_ops(model, allow_float=True)


def test_compact_drops_unused_tensors_and_opcodes():
    model = island_model("ELU", (0.02, 0), (0.02, 0))
    flatbuffer.fuse_float_islands(model)
    sg = model.subgraphs[0]
    assert len(sg.tensors) == 2 and len(model.operatorCodes) == 1
    assert list(sg.inputs) == [0] and list(sg.outputs) == [1]
    assert [t.name for t in sg.tensors] == [b"in", b"out"]
