"""The fast 16x8 FULLY_CONNECTED kernel (optimized/fully_connected_s16_blocked.c: int32
accumulation, SMMULR requantisation) against the tflite-micro interpreter on random shapes,
on the host and on a Cortex-M4 in QEMU; its multiplier identity in integers; and the layers
the generator leaves to the generic kernel."""
from __future__ import annotations

import numpy as np
import pytest
from test_kernel_fully_connected_s16 import A, fc16_model

from cpr_edge.codegen import fc_select, generate
from cpr_edge.codegen.harness import build_host, build_qemu, qemu_outputs, run_host, run_qemu, tflm_outputs

BIASES = ["int64", "none", "none-int64"]
ACTS = [A.NONE, A.NONE, A.RELU, A.RELU_N1_TO_1]


@pytest.fixture(autouse=True)
def forced_blocked():
    """the blocked kernel on every fast layer: K <= 8 ones would take the few-inputs records
    (tests/test_kernel_fully_connected_s16_few_inputs.py)"""
    fc_select.FORCED16[:] = ["blocked"]
    yield
    fc_select.FORCED16[:] = []


def _case(rng, i: int) -> tuple:
    return (int(rng.integers(1, 260)), int(rng.integers(1, 23)), bool(i % 2), ACTS[i % 4],
            BIASES[i % 3])


def _check(d, rng, case, run):
    model = fc16_model(rng, *case)
    (d / "m.tflite").write_bytes(model)
    generate(d / "m.tflite", d)
    assert "cpr_fc_s16_blocked_" in (d / "model.c").read_text()
    x = rng.integers(-32768, 32768, (100, case[0])).astype(np.int16)
    x[0], x[1] = 32767, -32768
    np.testing.assert_array_equal(run(d, x), tflm_outputs(model, x), err_msg=str(case))


def test_s16_fast_host_random_shapes_match_tflm(tmp_path):
    rng = np.random.default_rng(16)
    for i in range(8):
        d = tmp_path / str(i)
        d.mkdir()
        _check(d, rng, _case(rng, i),
               lambda d, x: run_host(build_host(d, "dsp_rotate"), x, dtype=np.int16))


@pytest.mark.qemu
def test_s16_fast_qemu_m4_matches_tflm(tmp_path):
    """Shapes covering the assembly loop (K >= 16), every K % 4 and N % 4."""
    rng = np.random.default_rng(17)
    for i, (k, n) in enumerate([(256, 9), (67, 4), (18, 3), (5, 2), (130, 1), (33, 7)]):
        d = tmp_path / str(i)
        d.mkdir()
        _check(d, rng, (k, n, i % 2 == 0, ACTS[i % 4], BIASES[i % 3]),
               lambda d, x: qemu_outputs(run_qemu(build_qemu(d, x, "dsp_rotate")), len(x),
                                         dtype=np.int16))


def test_smmulr_multiplier_equals_tflm_int64_requantisation():
    rng = np.random.default_rng(3)
    for _ in range(40):
        mult, shift = int(rng.integers(1 << 30, (1 << 31) - 1)), int(rng.integers(-17, 0))
        m = fc_select.fast16_constants(np.ones((1, 1), np.int8), None, [mult], [shift])
        assert m is not None
        reduced = (mult + (1 << 15)) >> 16 if mult < 0x7FFF0000 else 0x7FFF
        t = 15 - shift
        acc = rng.integers(-(1 << 31), 1 << 31, 500, dtype=np.int64)
        want = (acc * reduced + (1 << (t - 1))) >> t  # requant64.h
        np.testing.assert_array_equal((acc * int(m[0]) + (1 << 31)) >> 32, want)


def test_s16_fast_refuses_unproven_layers():
    w = np.full((2, 600), 127, np.int8)  # 32768 * 127 * 600 > 2^31
    assert fc_select.fast16_constants(w, None, [1 << 30] * 2, [-3] * 2) is None
    w = np.full((2, 10), 1, np.int8)
    assert fc_select.fast16_constants(w, np.array([1 << 31, 0]), [1 << 30] * 2, [-3] * 2) is None
    assert fc_select.fast16_constants(w, None, [1 << 30] * 2, [0] * 2) is None    # M >= 2^31
    assert fc_select.fast16_constants(w, None, [1 << 30] * 2, [-18] * 2) is None  # t > 32
    assert fc_select.fast16_constants(w, None, [1 << 30] * 2, [-1] * 2) is not None
