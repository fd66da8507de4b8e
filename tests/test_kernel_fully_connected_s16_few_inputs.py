"""The 16x8 few-inputs FULLY_CONNECTED kernel (optimized/fully_connected_s16_few_inputs.c:
records of bias, SMMULR multiplier and int16 weight pairs, the input pairs in registers)
against the tflite-micro interpreter on random shapes with every in_depth 1-8, on the host and
on a Cortex-M4 in QEMU (its assembly row loop); its record layout; and the generator's choice
from the measured costs."""
from __future__ import annotations

import numpy as np
import pytest
from test_kernel_fully_connected_s16 import A, fc16_model

from cpr_edge.codegen import fc_select, generate
from cpr_edge.codegen.harness import build_host, build_qemu, qemu_outputs, run_host, run_qemu, tflm_outputs

BIASES = ["int64", "none", "none-int64"]
ACTS = [A.NONE, A.RELU, A.NONE, A.RELU_N1_TO_1]  # RELU, RELU_N1_TO_1: the narrow (C) path


@pytest.fixture
def forced_few():
    """every fast 16x8 layer with K <= 8 on the few-inputs kernel, whatever the costs say"""
    fc_select.FORCED16[:] = ["few_inputs"]
    yield
    fc_select.FORCED16[:] = []


def _check(d, rng, k: int, n: int, i: int, run):
    case = (k, n, bool(i % 2), ACTS[i % 4], BIASES[i % 3])
    model = fc16_model(rng, *case)
    (d / "m.tflite").write_bytes(model)
    generate(d / "m.tflite", d)
    narrow = "_narrow" if case[3] != A.NONE else ""
    assert f"cpr_fc_s16_few_inputs_{(k + 1) // 2}{narrow}(" in (d / "model.c").read_text(), case
    x = rng.integers(-32768, 32768, (100, k)).astype(np.int16)
    x[0], x[1] = 32767, -32768
    np.testing.assert_array_equal(run(d, x), tflm_outputs(model, x), err_msg=str(case))


def test_s16_few_inputs_host_random_shapes_match_tflm(tmp_path, forced_few):
    rng = np.random.default_rng(61)
    for i, k in enumerate(range(1, 9)):
        d = tmp_path / str(i)
        d.mkdir()
        _check(d, rng, k, int(rng.integers(1, 80)), i,
               lambda d, x: run_host(build_host(d, "dsp_rotate"), x, dtype=np.int16))


@pytest.mark.qemu
def test_s16_few_inputs_qemu_m4_matches_tflm(tmp_path, forced_few):
    rng = np.random.default_rng(62)
    for i, (k, n) in enumerate([(5, 37), (8, 64), (1, 3), (3, 1), (6, 9), (7, 130), (2, 5), (4, 16)]):
        d = tmp_path / str(i)
        d.mkdir()
        _check(d, rng, k, n, i,
               lambda d, x: qemu_outputs(run_qemu(build_qemu(d, x, "dsp_rotate")), len(x),
                                         dtype=np.int16))


def test_few16_records():
    w = np.array([[1, -2, 3], [-128 + 1, 127, 0]], np.int8)
    rec = fc_select.few16_layout(w, np.array([-5, 7], np.int64), np.array([11, 12], np.int32))
    words = rec.view("<i4").reshape(2, 4)
    assert words[0, :2].tolist() == [-5, 11] and words[1, :2].tolist() == [7, 12]
    pairs = words[:, 2:].view("<i2").reshape(2, 4)
    np.testing.assert_array_equal(pairs, [[1, -2, 3, 0], [-127, 127, 0, 0]])


def test_choose16_from_measured_costs():
    assert fc_select.choose16(5, 216) == "few_inputs"   # the cartpole first layer
    assert fc_select.choose16(9, 216) == "blocked"      # too many inputs for the records
    assert fc_select.choose16(64, 64) == "blocked"
