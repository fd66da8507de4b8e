"""QUANTIZE / DEQUANTIZE at float model I/O: model_invoke_float against the tflite-micro
interpreter, bit for bit on the float32 outputs, on the host and in QEMU (Cortex-M4F FPU)."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from cpr_edge.codegen import generate
from cpr_edge.codegen.builder import OpSpec, TensorSpec, build_graph
from cpr_edge.codegen.harness import (build_host, build_qemu, qemu_outputs, run_host, run_qemu,
                                      tflm_outputs)

IN_SCALE, IN_ZP = 0.037, -4


def float_io_model(rng) -> bytes:
    k, n = 6, 5
    ws = list(rng.uniform(0.005, 0.02, n))
    tensors = [TensorSpec((1, k), "float32"),
               TensorSpec((1, k), "int8", [IN_SCALE], [IN_ZP]),
               TensorSpec((n, k), "int8", ws, [0] * n, rng.integers(-127, 128, (n, k), dtype=np.int8)),
               TensorSpec((n,), "int32", [IN_SCALE * s for s in ws], [0] * n,
                          rng.integers(-3000, 3000, n).astype(np.int32)),
               TensorSpec((1, n), "int8", [0.02], [3]),
               TensorSpec((1, n), "int8", [1 / 128], [0]),
               TensorSpec((1, n), "float32")]
    ops = [OpSpec("QUANTIZE", [0], [1]),
           OpSpec("FULLY_CONNECTED", [1, 2, 3], [4], schema.FullyConnectedOptionsT()),
           OpSpec("TANH", [4], [5]), OpSpec("DEQUANTIZE", [5], [6])]
    return build_graph(tensors, ops, [0], [6])


def float_inputs(rng, n: int) -> np.ndarray:
    x = rng.normal(0, 2.5, (n, 6)).astype(np.float32)
    # exact ties of x / scale (round half away from zero), saturation, signed zero
    ties = (np.arange(-8, 8) + 0.5).astype(np.float32) * np.float32(IN_SCALE)
    x[:16, 0] = ties
    x[16:20, 1] = [1e6, -1e6, -0.0, 3.4e38]
    return x


def test_float_io_host_matches_tflm(tmp_path):
    rng = np.random.default_rng(4)
    model = float_io_model(rng)
    (tmp_path / "m.tflite").write_bytes(model)
    info = generate(tmp_path / "m.tflite", tmp_path)
    assert info["float_io"] and info["ops"] == ["QUANTIZE", "FULLY_CONNECTED", "TANH", "DEQUANTIZE"]
    assert info["input"]["scale"] == pytest.approx(IN_SCALE) and info["input"]["zero_point"] == IN_ZP
    assert "int model_invoke_float(const float *in, float *out);" in (tmp_path / "model.h").read_text()
    x = float_inputs(rng, 300)
    want = tflm_outputs(model, x).astype(np.float32)
    got = run_host(build_host(tmp_path), x, float_io=True)
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


@pytest.mark.qemu
def test_float_io_qemu_matches_tflm(tmp_path):
    rng = np.random.default_rng(6)
    model = float_io_model(rng)
    (tmp_path / "m.tflite").write_bytes(model)
    generate(tmp_path / "m.tflite", tmp_path)
    x = float_inputs(rng, 200)
    got = qemu_outputs(run_qemu(build_qemu(tmp_path, x)), len(x), np.float32)
    want = tflm_outputs(model, x).astype(np.float32)
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
