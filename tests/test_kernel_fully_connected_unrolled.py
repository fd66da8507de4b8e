"""FULLY_CONNECTED int8, the ``unrolled`` kernel for cores without the DSP extension
(optimized/fully_connected_unrolled.c: four rows at a time on the interleaved layout, word
loads of the weights, plain 32-bit multiplies) against the tflite-micro interpreter: on the
host over random shapes (odd depths, fewer than four rows, a leftover of 1-3 rows, per-tensor
and per-channel, every fused activation, with and without bias) and on a real Cortex-M0
(QEMU microbit, no unaligned loads: a misaligned weight word would fault) and Cortex-M3
(QEMU mps2-an385)."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from cpr_edge.codegen import generate
from cpr_edge.codegen.harness import (TARGETS, build_host, build_qemu, qemu_outputs, run_host,
                                      run_qemu, tflm_outputs)
from test_kernel_fully_connected import fc_model

A = schema.ActivationFunctionType
ACTIVATIONS = [A.NONE, A.RELU, A.RELU6, A.RELU_N1_TO_1]


def random_cases(seed: int, count: int) -> list[tuple]:
    """(k, n, per_channel, activation, input zp, output zp, bias): depths 1..150 (every
    k % 4), 1..23 rows (every n % 4, fewer than one block of four included)."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        k = int(rng.integers(1, 151)) if i % 3 else int(rng.integers(1, 9))
        n = int(rng.integers(1, 24))
        cases.append((k, n, bool(rng.integers(2)), ACTIVATIONS[i % 4], int(rng.integers(-128, 128)),
                      int(rng.integers(-128, 128)), bool(i % 5)))
    return cases


HOST_CASES = random_cases(11, 6) + [(1, 1, False, A.NONE, 0, 0, True), (4, 4, True, A.NONE, -128, 127, True),
                                     (255, 9, True, A.RELU, 3, -9, True)]


def _model(tmp_path, case, seed):
    rng = np.random.default_rng(seed)
    model = fc_model(rng, *case)
    (tmp_path / "m.tflite").write_bytes(model)
    generate(tmp_path / "m.tflite", tmp_path)
    return model, rng


def test_unrolled_cases_cover_the_layout():
    """The random shapes reach every in_depth % 4, every leftover-row count and tiny layers."""
    assert {c[0] % 4 for c in HOST_CASES} == {0, 1, 2, 3}
    assert {c[1] % 4 for c in HOST_CASES} == {0, 1, 2, 3}
    assert any(c[1] < 4 for c in HOST_CASES) and any(not c[6] for c in HOST_CASES)


@pytest.mark.parametrize("case", HOST_CASES, ids=[f"k{c[0]}n{c[1]}" for c in HOST_CASES])
def test_unrolled_host_matches_tflm(tmp_path, case):
    model, rng = _model(tmp_path, case, sum(case[:2]))
    x = rng.integers(-128, 128, (200, case[0]), dtype=np.int8)
    x[0], x[1] = 127, -128
    want = tflm_outputs(model, x)
    np.testing.assert_array_equal(run_host(build_host(tmp_path, "unrolled"), x), want)
    assert "__attribute__((aligned(4)))" in (tmp_path / "model.c").read_text()


QEMU_CASES = [(37, 19, True, A.NONE, 5, -7, True), (3, 5, True, A.RELU6, 0, 10, True),
              (130, 6, False, A.NONE, 17, 0, False), (64, 32, False, A.RELU, -128, -128, True)]


@pytest.mark.qemu
@pytest.mark.parametrize("cpu", ["cortex-m0", "cortex-m3"])
def test_unrolled_qemu_no_dsp_cores_match_tflm(tmp_path, cpu):
    for i, case in enumerate(QEMU_CASES):
        d = tmp_path / str(i)
        d.mkdir()
        model, rng = _model(d, case, 7 + i)
        x = rng.integers(-128, 128, (100, case[0]), dtype=np.int8)
        elf = build_qemu(d, x, "unrolled", cpu=cpu)
        got = qemu_outputs(run_qemu(elf, machine=TARGETS[cpu][1]), len(x))
        np.testing.assert_array_equal(got, tflm_outputs(model, x), err_msg=f"{cpu} case {i}")
