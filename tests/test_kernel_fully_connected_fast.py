"""The fast int8 FULLY_CONNECTED DSP kernels (blocked, few_inputs: cpr_edge.codegen.fc_select)
against the tflite-micro interpreter on random shapes, on the host (intrinsics emulated in C)
and on a Cortex-M4 in QEMU (the inline assembly), each kernel forced onto every layer; their
folded requantisation against TFLM's double rounding in integers; and the generator's
refusals (bounds that do not hold leave the layer to the generic kernel)."""
from __future__ import annotations

import numpy as np
import pytest
from test_kernel_fully_connected import A, _requant_double, fc_model
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from cpr_edge.codegen import fc_select, generate
from cpr_edge.codegen.builder import TensorSpec, build_model
from cpr_edge.codegen.harness import TARGETS, build_host, build_qemu, qemu_outputs, run_host, run_qemu, tflm_outputs

ACTS = [A.NONE, A.NONE, A.RELU, A.RELU6, A.RELU_N1_TO_1]


def random_case(rng, max_k: int) -> tuple:
    """k, n, per_channel, activation, input zp, output zp, bias (fc_model's arguments)"""
    return (int(rng.integers(1, max_k + 1)), int(rng.integers(1, 23)), bool(rng.integers(2)),
            ACTS[int(rng.integers(len(ACTS)))], int(rng.integers(-128, 128)),
            int(rng.integers(-20, 21)), bool(rng.integers(4)))


@pytest.fixture
def forced():
    def force(kernel: str):
        fc_select.FORCED[:] = [kernel]
    yield force
    fc_select.FORCED[:] = []


def _generate(tmp_path, rng, case):
    model = fc_model(rng, *case)
    (tmp_path / "m.tflite").write_bytes(model)
    generate(tmp_path / "m.tflite", tmp_path)
    return model


@pytest.mark.parametrize("kernel,max_k", [("blocked", 300), ("few_inputs", 8)])
def test_fast_kernel_host_random_shapes_match_tflm(tmp_path, forced, kernel, max_k):
    forced(kernel)
    rng = np.random.default_rng(14 if kernel == "blocked" else 15)
    used = 0
    for i in range(8):
        case = random_case(rng, max_k)
        d = tmp_path / str(i)
        d.mkdir()
        model = _generate(d, rng, case)
        used += f"cpr_fc_s8_{kernel}_" in (d / "model.c").read_text()
        x = rng.integers(-128, 128, (200, case[0]), dtype=np.int8)
        got = run_host(build_host(d, "dsp_rotate"), x)
        np.testing.assert_array_equal(got, tflm_outputs(model, x), err_msg=f"{kernel} {case}")
    assert used >= 6  # the bounds hold for these layers: the fast kernel ran, not the generic one


@pytest.mark.qemu
@pytest.mark.parametrize("kernel,shapes", [
    ("blocked", [(300, 7), (64, 4), (17, 9), (133, 2), (16, 1), (5, 3)]),
    ("few_inputs", [(5, 21), (8, 4), (1, 3), (3, 10)])])
def test_fast_kernel_qemu_m4_matches_tflm(tmp_path, forced, kernel, shapes):
    """Every remainder of rows (N % 4) and inputs (K % 4, K % 16: the assembly loop) once."""
    forced(kernel)
    rng = np.random.default_rng(4)
    for i, (k, n) in enumerate(shapes):
        case = (k, n, i % 2 == 0, ACTS[i % len(ACTS)], int(rng.integers(-128, 128)), 3, i != 1)
        d = tmp_path / str(i)
        d.mkdir()
        model = _generate(d, rng, case)
        assert f"cpr_fc_s8_{kernel}_" in (d / "model.c").read_text()
        x = rng.integers(-128, 128, (100, k), dtype=np.int8)
        got = qemu_outputs(run_qemu(build_qemu(d, x, "dsp_rotate")), len(x))
        np.testing.assert_array_equal(got, tflm_outputs(model, x), err_msg=f"{kernel} {case}")


def _fast_requant(acc: np.ndarray, m: int, e: int, out_offset: int) -> np.ndarray:
    """requant_fast.h in numpy int64: SMMULR(2 acc, m), + (v >> 31) + round, >> e, + SSAT."""
    v = (2 * acc * m + (1 << 31)) >> 32
    v = (v + (v >> 31) + (1 << (e - 1)) + (out_offset << e)) >> e
    return np.clip(v, -128, 127)


def test_fast_requantisation_equals_tflm_double_rounding():
    rng = np.random.default_rng(0)
    for _ in range(40):
        m = int(rng.integers(1 << 30, 1 << 31))
        e = int(rng.integers(1, 20))
        off = int(rng.integers(-128, 128))
        acc = np.concatenate([rng.integers(-(1 << 29) + 1, 1 << 29, 300),
                              np.arange(-3, 4) * (1 << e) + (1 << (e - 1)),  # exact ties
                              np.arange(-3, 4) * (1 << (e + 1))]).astype(np.int64)
        want = [min(127, max(-128, _requant_double(int(a), m, -e) + off)) for a in acc]
        np.testing.assert_array_equal(_fast_requant(acc, m, e, off), want)


def test_fast_constants_refuse_unproven_layers(tmp_path):
    w = np.full((4, 300), 127, np.int8)
    ok = fc_select.fast_constants(w, np.zeros(4, np.int32), 5, 0, [1 << 30] * 4, [-8] * 4)
    assert ok is not None and ok["kbias"][0] == 5 * 127 * 300 and ok["round"][0] == 1 << 7
    # |acc| may reach 2^29: 16384 inputs of 127 * 128 (plus bias)
    assert fc_select.fast_constants(np.full((1, 33100), 127, np.int8), None, 0, 0, [1 << 30], [-8]) is None
    assert fc_select.fast_constants(w, None, 0, 0, [1 << 30] * 4, [0] * 4) is None   # no right shift
    assert fc_select.fast_constants(w, None, 0, 0, [1 << 30] * 4, [1] * 4) is None   # a left shift
    # a refused layer (one row's bias 2^29) runs the generic kernel under every variant, exact
    rng = np.random.default_rng(2)
    k, n = 20, 6
    xs, ws = 0.02, [0.01] * n
    opt = schema.FullyConnectedOptionsT()
    model = build_model("FULLY_CONNECTED", [
        TensorSpec((1, k), "int8", [xs], [3]),
        TensorSpec((n, k), "int8", ws, [0] * n, rng.integers(-127, 128, (n, k), dtype=np.int8)),
        TensorSpec((n,), "int32", [xs * s for s in ws], [0] * n, np.array([1 << 29] + [0] * (n - 1), np.int32)),
        TensorSpec((1, n), "int8", [0.3], [0])], [0, 1, 2], [3], opt)
    (tmp_path / "m.tflite").write_bytes(model)
    generate(tmp_path / "m.tflite", tmp_path)
    text = (tmp_path / "model.c").read_text()
    assert "cpr_fc_s8_" not in text and "cpr_fully_connected_s8(&fc0_params" in text
    x = rng.integers(-128, 128, (50, k), dtype=np.int8)
    want = tflm_outputs(model, x)
    assert len(np.unique(want)) > 10
    np.testing.assert_array_equal(run_host(build_host(tmp_path, "dsp_rotate"), x), want)


def test_layouts_hold_every_weight_once():
    rng = np.random.default_rng(1)
    for n, k in [(1, 1), (3, 5), (4, 16), (7, 37), (9, 3)]:
        w = rng.integers(-127, 128, (n, k), dtype=np.int8)
        for layout in (fc_select.blocked_layout, fc_select.mve_layout):
            out = layout(w)
            assert out.size == w.size and sorted(out.tolist()) == sorted(w.reshape(-1).tolist())
        if k >= 4:  # a block starts with its first row's first group
            assert fc_select.blocked_layout(w)[:4].tolist() == w[0, :4].tolist()
    # the M4 remainder rows sit in the blocked loop: a 3-row block of 8 inputs interleaves
    w = np.arange(24, dtype=np.int8).reshape(3, 8)
    assert fc_select.blocked_layout(w)[:12].tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]


def test_choice_follows_measured_costs():
    """few inputs: the records; wide layers: the blocked kernel (fc_costs.json, measured)."""
    assert fc_select.choose_dsp(5, 128, True) == "few_inputs"
    assert fc_select.choose_dsp(256, 256, True) == "blocked"
    assert fc_select.choose_dsp(256, 256, False) == "generic"
    for k, n in [(5, 128), (256, 256), (64, 3)]:
        best = fc_select.choose_dsp(k, n, True)
        costs = {v: fc_select.predicted_instructions(v, k, n) for v in ("generic", "blocked")}
        assert costs[best if best != "few_inputs" else "blocked"] <= max(costs.values())


@pytest.mark.qemu
def test_generator_choice_runs_on_m4_and_m7(tmp_path):
    """The kernels the costs pick, not forced: a 5-input first layer and a wide one."""
    rng = np.random.default_rng(9)
    for i, case in enumerate([(5, 40, True, A.NONE, -3, 2, True), (96, 13, True, A.NONE, 7, -1, True)]):
        d = tmp_path / str(i)
        d.mkdir()
        model = _generate(d, rng, case)
        x = rng.integers(-128, 128, (60, case[0]), dtype=np.int8)
        for cpu in ("cortex-m4", "cortex-m7"):
            got = qemu_outputs(run_qemu(build_qemu(d, x, "dsp_rotate", cpu=cpu),
                                        machine=TARGETS[cpu][1]), len(x))
            np.testing.assert_array_equal(got, tflm_outputs(model, x), err_msg=f"{cpu} {case}")
