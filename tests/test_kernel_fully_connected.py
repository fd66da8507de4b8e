"""FULLY_CONNECTED int8: generated code + runtime kernels against the tflite-micro interpreter,
on the host (gcc) and on a Cortex-M4 in QEMU, for every kernel variant."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from cpr_edge.codegen import generate
from cpr_edge.codegen.builder import TensorSpec, build_model
from cpr_edge.codegen.harness import (TARGETS, build_host, build_qemu, qemu_outputs, run_host,
                                      run_qemu, tflm_outputs)
from cpr_edge.codegen.quant import quantize_multiplier

A = schema.ActivationFunctionType


def fc_model(rng, k: int, n: int, per_channel: bool, activation: int, in_zp: int, out_zp: int,
             bias: bool = True) -> bytes:
    w = rng.integers(-127, 128, (n, k), dtype=np.int8)
    ws = list(rng.uniform(0.002, 0.02, n)) if per_channel else [float(rng.uniform(0.002, 0.02))]
    xs, ys = float(rng.uniform(0.01, 0.05)), float(rng.uniform(0.05, 0.3))
    opt = schema.FullyConnectedOptionsT()
    opt.fusedActivationFunction = activation
    tensors = [TensorSpec((1, k), "int8", [xs], [in_zp]),
               TensorSpec((n, k), "int8", ws, [0] * len(ws), w),
               TensorSpec((n,), "int32", [xs * s for s in ws], [0] * len(ws),
                          rng.integers(-20000, 20000, n).astype(np.int32)),
               TensorSpec((1, n), "int8", [ys], [out_zp])]
    if not bias:
        return build_model("FULLY_CONNECTED", tensors[:2] + tensors[3:], [0, 1, -1], [2], opt)
    return build_model("FULLY_CONNECTED", tensors, [0, 1, 2], [3], opt)


CASES = [  # k, n, per_channel, activation, input zp, output zp, bias
    (37, 19, True, A.NONE, 5, -7, True),
    (64, 32, False, A.RELU, -128, -128, True),
    (3, 5, True, A.RELU6, 0, 10, True),
    (129, 7, False, A.NONE, 17, 0, False),
    (8, 64, True, A.RELU_N1_TO_1, -3, 4, True),
]


@pytest.mark.parametrize("case", CASES, ids=[f"k{c[0]}n{c[1]}" for c in CASES])
def test_fc_host_all_variants_match_tflm(tmp_path, case):
    rng = np.random.default_rng(sum(case[:2]))
    model = fc_model(rng, *case)
    (tmp_path / "m.tflite").write_bytes(model)
    info = generate(tmp_path / "m.tflite", tmp_path)
    assert info["macs_total"] == case[0] * case[1]
    x = rng.integers(-128, 128, (300, case[0]), dtype=np.int8)
    want = tflm_outputs(model, x)
    assert len(np.unique(want)) > 3  # the case exercises more than the clamp
    for variant in ("reference", "dsp", "dsp_rotate"):  # DSP intrinsics emulated in C on the host
        got = run_host(build_host(tmp_path, variant), x)
        np.testing.assert_array_equal(got, want, err_msg=variant)


QEMU_RUNS = [("cortex-m4", "reference"), ("cortex-m4", "dsp"), ("cortex-m4", "dsp_rotate"),
             ("cortex-m7", "dsp_rotate")]


@pytest.mark.qemu
@pytest.mark.parametrize("cpu,variant", QEMU_RUNS, ids=[f"{c}-{v}" for c, v in QEMU_RUNS])
def test_fc_qemu_cortex_m_matches_tflm(tmp_path, cpu, variant):
    rng = np.random.default_rng(7)
    for i, case in enumerate(CASES[:3]):
        model = fc_model(rng, *case)
        d = tmp_path / str(i)
        d.mkdir()
        (d / "m.tflite").write_bytes(model)
        generate(d / "m.tflite", d)
        x = rng.integers(-128, 128, (200, case[0]), dtype=np.int8)
        elf = build_qemu(d, x, variant, cpu=cpu)
        got = qemu_outputs(run_qemu(elf, machine=TARGETS[cpu][1]), len(x))
        np.testing.assert_array_equal(got, tflm_outputs(model, x), err_msg=f"{cpu} {variant} case {i}")


def _requant_double(acc: int, m: int, s: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul + RoundingDivideByPOT, in Python ints."""
    x = acc * (1 << max(s, 0))
    ab = x * m
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    high = _tdiv(ab + nudge, 1 << 31)  # C division truncates towards zero
    e = max(-s, 0)
    mask = (1 << e) - 1
    rem = high & mask
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> e) + (1 if rem > threshold else 0)


def _tdiv(a: int, b: int) -> int:
    q = abs(a) // b
    return q if a >= 0 else -q


def _requant_single(acc: int, m: int, s: int) -> int:
    """TFLITE_SINGLE_ROUNDING: one rounding of acc * m / 2^(31 - s)."""
    total = 31 - s
    return (acc * m + (1 << (total - 1))) >> total


def test_tflm_build_uses_double_rounding():
    """Decide empirically which MultiplyByQuantizedMultiplier the tflite-micro build uses:
    a FC with one input, weight 1, zero bias makes acc = x; outputs follow requant(acc)."""
    rng = np.random.default_rng(3)
    differs = 0
    for _ in range(12):
        xs, ys = float(rng.uniform(0.5, 1)), float(rng.uniform(4, 60))
        opt = schema.FullyConnectedOptionsT()
        model = build_model("FULLY_CONNECTED", [
            TensorSpec((1, 1), "int8", [xs], [0]),
            TensorSpec((1, 1), "int8", [1.0], [0], np.array([[1]], np.int8)),
            TensorSpec((1, 1), "int8", [ys], [0])], [0, 1, -1], [2], opt)
        x = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1)
        got = tflm_outputs(model, x).reshape(-1).astype(int)
        m, s = quantize_multiplier(float(np.float32(np.float32(xs) * np.float32(1.0))) /
                                   float(np.float32(ys)))
        double = [_requant_double(int(a), m, s) for a in x.reshape(-1)]
        single = [_requant_single(int(a), m, s) for a in x.reshape(-1)]
        assert list(got) == double
        differs += sum(a != b for a, b in zip(double, single))
    assert differs > 0, "cases too easy to tell the two rounding modes apart"
