"""FULLY_CONNECTED 16x8 (int16 activations, int8 weights, int64 or no bias): generated code
and runtime kernels against the tflite-micro interpreter, on the host for every variant and
on a Cortex-M4/M7 in QEMU with the real DSP instructions."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from cpr_edge.codegen import generate
from cpr_edge.codegen.builder import TensorSpec, build_model
from cpr_edge.codegen.harness import TARGETS, build_host, build_qemu, qemu_outputs, run_host, run_qemu, tflm_outputs

A = schema.ActivationFunctionType


def fc16_model(rng, k: int, n: int, per_channel: bool, activation: int, bias: str) -> bytes:
    w = rng.integers(-127, 128, (n, k), dtype=np.int8)
    ws = list(rng.uniform(0.002, 0.02, n)) if per_channel else [float(rng.uniform(0.002, 0.02))]
    xs, ys = float(rng.uniform(1e-4, 5e-4)), float(rng.uniform(2e-3, 2e-2))
    opt = schema.FullyConnectedOptionsT()
    opt.fusedActivationFunction = activation
    x = TensorSpec((1, k), "int16", [xs], [0])
    wt = TensorSpec((n, k), "int8", ws, [0] * len(ws), w)
    y = TensorSpec((1, n), "int16", [ys], [0])
    if bias == "int64":
        b = TensorSpec((n,), "int64", [xs * s for s in ws], [0] * len(ws),
                       rng.integers(-2_000_000, 2_000_000, n).astype(np.int64))
        return build_model("FULLY_CONNECTED", [x, wt, b, y], [0, 1, 2], [3], opt)
    opt.quantizedBiasType = schema.TensorType.INT64 if bias == "none-int64" else 0
    return build_model("FULLY_CONNECTED", [x, wt, y], [0, 1, -1], [2], opt)


CASES = [  # k, n, per_channel, activation, bias
    (37, 19, True, A.NONE, "int64"),
    (64, 32, False, A.RELU, "int64"),
    (3, 5, True, A.NONE, "none"),        # no bias, default bias type: TFLM accumulates in int32
    (130, 7, True, A.NONE, "none-int64"),  # no bias, int64 bias type: int64 accumulator
    (8, 64, False, A.RELU_N1_TO_1, "int64"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"k{c[0]}n{c[1]}-{c[4]}" for c in CASES])
def test_fc16_host_all_variants_match_tflm(tmp_path, case):
    rng = np.random.default_rng(sum(case[:2]))
    model = fc16_model(rng, *case)
    (tmp_path / "m.tflite").write_bytes(model)
    info = generate(tmp_path / "m.tflite", tmp_path)
    assert info["input"]["dtype"] == "int16" and info["macs_total"] == case[0] * case[1]
    assert "int model_invoke(const int16_t *in, int16_t *out);" in (tmp_path / "model.h").read_text()
    x = rng.integers(-32768, 32768, (300, case[0])).astype(np.int16)
    x[0], x[1] = 32767, -32768  # the extremes
    want = tflm_outputs(model, x)
    assert want.dtype == np.int16 and len(np.unique(want)) > 50  # more than the clamp
    for variant in ("reference", "dsp", "dsp_rotate"):
        got = run_host(build_host(tmp_path, variant), x, dtype=np.int16)
        np.testing.assert_array_equal(got, want, err_msg=variant)


QEMU_RUNS = [("cortex-m4", "reference"), ("cortex-m4", "dsp_rotate"), ("cortex-m7", "dsp")]


@pytest.mark.qemu
@pytest.mark.parametrize("cpu,variant", QEMU_RUNS, ids=[f"{c}-{v}" for c, v in QEMU_RUNS])
def test_fc16_qemu_cortex_m_matches_tflm(tmp_path, cpu, variant):
    rng = np.random.default_rng(3)
    for i, case in enumerate(CASES[:4]):
        model = fc16_model(rng, *case)
        d = tmp_path / str(i)
        d.mkdir()
        (d / "m.tflite").write_bytes(model)
        generate(d / "m.tflite", d)
        x = rng.integers(-32768, 32768, (100, case[0])).astype(np.int16)
        elf = build_qemu(d, x, variant, cpu=cpu)
        got = qemu_outputs(run_qemu(elf, machine=TARGETS[cpu][1]), len(x), dtype=np.int16)
        np.testing.assert_array_equal(got, tflm_outputs(model, x), err_msg=f"{cpu} {variant} case {i}")
