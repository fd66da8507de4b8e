"""Element-wise int8 ops as 256-entry tables: every int8 input through generated code on
the host and in QEMU, against the tflite-micro interpreter running the op itself."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from cpr_edge.codegen import generate
from cpr_edge.codegen.builder import TensorSpec, build_model
from cpr_edge.codegen.harness import (build_host, build_qemu, qemu_outputs, run_host, run_qemu,
                                      tflm_outputs)
from cpr_edge.errors import CprError

ALL = np.arange(-128, 128, dtype=np.int8)


def leaky():
    o = schema.LeakyReluOptionsT()
    o.alpha = 0.2
    return o


# op, input (scale, zp), output (scale, zp), options
OPS = [
    ("TANH", (0.05, 3), (1 / 128, 0), None),
    ("LOGISTIC", (0.08, -10), (1 / 256, -128), None),
    ("ELU", (0.04, 20), (0.03, 40), None),
    ("RSQRT", (0.02, -128), (0.1, -128), None),
    ("LEAKY_RELU", (0.03, 5), (0.02, -3), leaky()),
    ("QUANTIZE", (0.03, 5), (0.05, -20), None),  # int8 -> int8 requantisation
    ("HARD_SWISH", (0.05, 0), (0.04, -60), None),
]


def one_op(name, qin, qout, options):
    # a vector of 40 elements, so the kernel loop runs over more than one element
    return build_model(name, [TensorSpec((1, 40), "int8", [qin[0]], [qin[1]]),
                              TensorSpec((1, 40), "int8", [qout[0]], [qout[1]])], [0], [1], options)


def inputs_covering_all_values(rng) -> np.ndarray:
    rows = list(np.resize(ALL, 7 * 40).reshape(7, 40))  # every int8 value at least once
    rows += [rng.integers(-128, 128, 40, dtype=np.int8) for _ in range(20)]
    return np.stack(rows).astype(np.int8)


@pytest.mark.parametrize("op", OPS, ids=[o[0] for o in OPS])
def test_lookup_op_host_matches_tflm(tmp_path, op):
    model = one_op(*op)
    (tmp_path / "m.tflite").write_bytes(model)
    info = generate(tmp_path / "m.tflite", tmp_path)
    assert info["ops"] == [op[0]]
    x = inputs_covering_all_values(np.random.default_rng(1))
    assert set(x.reshape(-1).tolist()) == set(ALL.tolist())
    want = tflm_outputs(model, x)
    np.testing.assert_array_equal(run_host(build_host(tmp_path), x), want)


@pytest.mark.qemu
def test_lookup_ops_qemu_match_tflm(tmp_path):
    x = inputs_covering_all_values(np.random.default_rng(2))
    for name, qin, qout, options in OPS[:4]:
        d = tmp_path / name
        d.mkdir()
        model = one_op(name, qin, qout, options)
        (d / "m.tflite").write_bytes(model)
        generate(d / "m.tflite", d)
        got = qemu_outputs(run_qemu(build_qemu(d, x)), len(x))
        np.testing.assert_array_equal(got, tflm_outputs(model, x), err_msg=name)


def test_lookup_op_tflm_cannot_run_is_refused(tmp_path):
    # TFLM has no int8 EXP kernel with these parameters -> a clear error naming the op
    model = one_op("LOG", (0.05, 0), (0.05, 0), None)
    (tmp_path / "m.tflite").write_bytes(model)
    with pytest.raises(CprError, match="LOG"):
        generate(tmp_path / "m.tflite", tmp_path)
    assert not (tmp_path / "model.c").exists()
