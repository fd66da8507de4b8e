"""FULLY_CONNECTED 16x8 with the ``unrolled`` variant (cores without the DSP extension:
optimized/fully_connected_s16_unrolled.c, int32 partial sums of 256 products added into the
int64 accumulator) against the tflite-micro interpreter: on the host, with depths across the
256-product runs and extreme inputs (every product at its largest magnitude), and in QEMU on
a Cortex-M0 (microbit) and a Cortex-M3 (mps2-an385)."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from cpr_edge.codegen import generate
from cpr_edge.codegen.harness import TARGETS, build_host, build_qemu, qemu_outputs, run_host, run_qemu, tflm_outputs
from test_kernel_fully_connected_s16 import fc16_model

A = schema.ActivationFunctionType
CASES = [  # k, n, per_channel, activation, bias
    (37, 19, True, A.NONE, "int64"),
    (3, 5, True, A.NONE, "none"),
    (257, 6, False, A.RELU, "int64"),       # one full run of 256 and one product
    (600, 3, True, A.NONE, "none-int64"),   # two full runs and a tail, odd rows
    (8, 64, False, A.RELU_N1_TO_1, "int64"),
]


def _inputs(rng, k: int, count: int) -> np.ndarray:
    x = rng.integers(-32768, 32768, (count, k)).astype(np.int16)
    x[0], x[1] = -32768, 32767  # with +-127 weights: every product near 2^22
    return x


@pytest.mark.parametrize("case", CASES, ids=[f"k{c[0]}n{c[1]}-{c[4]}" for c in CASES])
def test_fc16_unrolled_host_matches_tflm(tmp_path, case):
    rng = np.random.default_rng(sum(case[:2]))
    model = fc16_model(rng, *case)
    (tmp_path / "m.tflite").write_bytes(model)
    generate(tmp_path / "m.tflite", tmp_path)
    x = _inputs(rng, case[0], 200)
    want = tflm_outputs(model, x)
    assert len(np.unique(want)) > 20
    np.testing.assert_array_equal(run_host(build_host(tmp_path, "unrolled"), x, dtype=np.int16), want)


@pytest.mark.qemu
@pytest.mark.parametrize("cpu", ["cortex-m0", "cortex-m3"])
def test_fc16_unrolled_qemu_no_dsp_cores_match_tflm(tmp_path, cpu):
    rng = np.random.default_rng(5)
    for i, case in enumerate(CASES[:4]):
        model = fc16_model(rng, *case)
        d = tmp_path / str(i)
        d.mkdir()
        (d / "m.tflite").write_bytes(model)
        generate(d / "m.tflite", d)
        x = _inputs(rng, case[0], 40)
        elf = build_qemu(d, x, "unrolled", cpu=cpu)
        got = qemu_outputs(run_qemu(elf, machine=TARGETS[cpu][1]), len(x), dtype=np.int16)
        np.testing.assert_array_equal(got, tflm_outputs(model, x), err_msg=f"{cpu} case {i}")
