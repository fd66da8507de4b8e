"""ADD, SUB, MUL, SQUARED_DIFFERENCE (with broadcasting, activation and constant operands)
and MEAN: generated code against the tflite-micro interpreter, host and QEMU."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from cpr_edge.codegen import generate
from cpr_edge.codegen.builder import OpSpec, TensorSpec, build_graph
from cpr_edge.codegen.harness import (build_host, build_qemu, qemu_outputs, run_host, run_qemu,
                                      tflm_outputs)

OPTIONS = {"ADD": schema.AddOptionsT, "SUB": schema.SubOptionsT, "MUL": schema.MulOptionsT,
           "SQUARED_DIFFERENCE": schema.SquaredDifferenceOptionsT}


def binary_model(name: str, rng, activation: int = 0) -> bytes:
    """x -> LOGISTIC -> y; z = OP(x, y) (same shape); out = OP(z, c) with c const [4, 1]."""
    def opts():
        o = OPTIONS[name]()
        if hasattr(o, "fusedActivationFunction"):
            o.fusedActivationFunction = activation
        return o

    shape = (2, 4, 8)
    tensors = [TensorSpec(shape, "int8", [0.05], [-3]),
               TensorSpec(shape, "int8", [1 / 256], [-128]),
               TensorSpec((4, 1), "int8", [0.02], [7], rng.integers(-128, 128, (4, 1), dtype=np.int8)),
               TensorSpec(shape, "int8", [float(rng.uniform(0.02, 0.08))], [int(rng.integers(-20, 20))]),
               TensorSpec(shape, "int8", [float(rng.uniform(0.02, 0.08))], [int(rng.integers(-20, 20))])]
    ops = [OpSpec("LOGISTIC", [0], [1]), OpSpec(name, [0, 1], [3], opts()),
           OpSpec(name, [3, 2], [4], opts())]
    return build_graph(tensors, ops, [0], [4])


def mean_model(axes: list[int], keep_dims: bool) -> bytes:
    shape = (2, 4, 8)
    out_shape = tuple(1 if i in [a % 3 for a in axes] else d for i, d in enumerate(shape))
    if not keep_dims:
        out_shape = tuple(d for i, d in enumerate(shape) if i not in [a % 3 for a in axes])
    o = schema.ReducerOptionsT()
    o.keepDims = keep_dims
    tensors = [TensorSpec(shape, "int8", [0.05], [-3]),
               TensorSpec((len(axes),), "int32", data=np.array(axes, np.int32)),
               TensorSpec(out_shape, "int8", [0.03], [5])]
    return build_graph(tensors, [OpSpec("MEAN", [0, 1], [2], o)], [0], [2])


CASES = [("ADD", 0), ("ADD", schema.ActivationFunctionType.RELU), ("SUB", 0), ("MUL", 0),
         ("SQUARED_DIFFERENCE", 0)]


def _check_host(tmp_path, model, n=300, seed=0):
    (tmp_path / "m.tflite").write_bytes(model)
    info = generate(tmp_path / "m.tflite", tmp_path)
    x = np.random.default_rng(seed).integers(-128, 128, (n, info["input"]["len"]), dtype=np.int8)
    want = tflm_outputs(model, x)
    assert len(np.unique(want)) > 5
    np.testing.assert_array_equal(run_host(build_host(tmp_path), x), want)
    return info


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-act{c[1]}" for c in CASES])
def test_binary_op_host_matches_tflm(tmp_path, case):
    info = _check_host(tmp_path, binary_model(case[0], np.random.default_rng(5), case[1]))
    assert info["ops"] == ["LOGISTIC", case[0], case[0]]


@pytest.mark.parametrize("axes,keep", [([1], True), ([-1], False), ([0, 1], True), ([2], True)])
def test_mean_host_matches_tflm(tmp_path, axes, keep):
    _check_host(tmp_path, mean_model(axes, keep))


@pytest.mark.qemu
def test_binary_and_mean_qemu_match_tflm(tmp_path):
    rng = np.random.default_rng(9)
    models = {name: binary_model(name, rng) for name in OPTIONS}
    models["MEAN"] = mean_model([1], True)
    for name, model in models.items():
        d = tmp_path / name
        d.mkdir()
        (d / "m.tflite").write_bytes(model)
        info = generate(d / "m.tflite", d)
        x = rng.integers(-128, 128, (200, info["input"]["len"]), dtype=np.int8)
        got = qemu_outputs(run_qemu(build_qemu(d, x)), len(x))
        np.testing.assert_array_equal(got, tflm_outputs(model, x), err_msg=name)
