"""The fake-quant forward against the real converter and the TFLM interpreter, and
quantisation-aware recovery (docs/quantization.md)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from cpr_edge.agents.checkpoint import load_checkpoint, save_checkpoint
from cpr_edge.export.onnx_graph import input_prescale, reference_actions
from cpr_edge.export.pipeline import export_checkpoint
from cpr_edge.export.tflm_run import run_tflm
from cpr_edge.quant.calibration import split_observations
from cpr_edge.quant.fake_quant import FakeQuantPolicy, int8_forward, minmax_qparams, requantize


def _gemmlowp(x: int, m: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier written out with Python integers (C semantics)."""
    left, right = max(shift, 0), max(-shift, 0)
    x = ((x << left) + (1 << 31)) % (1 << 32) - (1 << 31)
    ab = x * m
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    high = int((ab + nudge) / (1 << 31)) if abs(ab + nudge) < (1 << 52) else (ab + nudge) // (1 << 31)
    q = ab + nudge
    high = -((-q) // (1 << 31)) if q < 0 else q // (1 << 31)  # C truncation toward zero
    mask = (1 << right) - 1
    rem, threshold = high & mask, (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if rem > threshold else 0)


def test_requantize_is_tflm_double_rounding():
    rng = np.random.default_rng(0)
    acc = rng.integers(-(1 << 24), 1 << 24, 4000)
    mult = rng.integers(1 << 30, (1 << 31) - 1, 4000)
    shift = rng.integers(-12, 3, 4000)
    got = requantize(acc, mult, shift)
    want = [_gemmlowp(int(a), int(m), int(s)) for a, m, s in zip(acc, mult, shift)]
    assert got.tolist() == want


def test_minmax_qparams_follow_the_converter_rule():
    assert minmax_qparams(0.5, 2.0) == (pytest.approx(2.0 / 255, rel=1e-6), -128)  # 0 is always inside
    s, z = minmax_qparams(-1.0, 3.0)
    assert s == pytest.approx(4.0 / 255, rel=1e-6) and z == round(-128 + 1.0 / s)
    assert minmax_qparams(-2.0, 0.0)[1] == 127


@pytest.fixture(scope="module")
def standardized(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("fq") / "tiny_std"
    info = export_checkpoint(tiny_checkpoint, out, prescale="standardize")
    return out, info, load_checkpoint(tiny_checkpoint)


def _shifted_teacher(agent):
    """A teacher that acts differently from the student (its last layer nudged), so that the
    recovery has something to learn and its weights move (a student that already equals its
    teacher gains nothing; the recovery would keep its starting weights)."""
    teacher = copy.deepcopy(agent)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        last = teacher.model.pi.net[-1]
        last.weight.add_(0.05 * torch.randn(last.weight.shape, generator=gen))
    return teacher


def _policy(ck, info, calib):
    off, gain = np.asarray(info["input"]["offset"], np.float32), np.asarray(info["input"]["gain"], np.float32)
    fq = FakeQuantPolicy(ck.agent.model.encoder, ck.agent.model.pi, ck.normalization, off, gain)
    fq.calibrate(torch.as_tensor((calib - off) * gain))
    return fq, off, gain


def test_calibrated_ranges_are_the_converters(standardized):
    out, info, ck = standardized
    calib, _ = split_observations(ck)
    fq, _, _ = _policy(ck, info, calib)
    tensors = [t for t in info["tensors"] if not t["constant"]]
    assert len(tensors) == len(fq.qparams)
    for (s, z), t in zip(fq.qparams, tensors):
        assert s == pytest.approx(t["scale"], rel=1e-5) and z == t["zero_point"], t["name"]


def test_int8_forward_is_bit_exact_and_fake_quant_within_one_lsb_on_random_inputs(standardized):
    """Random inputs, wider than the calibration range (so clamping is exercised too). The
    integer path runs on the exported model's activation ranges: its own calibration agrees
    with the converter's only to float32 rounding (test above), and a scale 3e-7 off already
    moves an output by 1 LSB on some input (seen: 1 of 400)."""
    out, info, ck = standardized
    calib, _ = split_observations(ck)
    fq, off, gain = _policy(ck, info, calib)
    fq.qparams = [(float(np.asarray(t["scale"]).reshape(-1)[0]), int(np.asarray(t["zero_point"]).reshape(-1)[0]))
                  for t in info["tensors"] if not t["constant"]]
    x = np.random.default_rng(1).uniform(-6, 6, (400, ck.arch.obs_dim)).astype(np.float32)
    data = (out / "model_int8.tflite").read_bytes()
    tflm = run_tflm(data, x, info["input"], info["output"], info["tflm"]["arena_bytes"])
    ints = int8_forward(fq, x)
    emulated = (ints[-1] - info["output"]["zero_point"]) * info["output"]["scale"]
    np.testing.assert_array_equal(emulated.astype(np.float32), tflm)
    with torch.no_grad():
        trained_path = fq(torch.as_tensor(x)).numpy()
    assert np.max(np.abs(trained_path - tflm)) <= info["output"]["scale"] * (1 + 1e-5)


def test_simulated_int8_policy_acts_as_the_tflm_model(standardized):
    """``quant.sim_eval`` (what ``sweep --quant int8`` evaluates) on the exported model's own
    held-back observations: the TFLM interpreter's actions, to one LSB where its own calibration
    rounds a range differently from the converter's (see the test above)."""
    from cpr_edge.quant.sim_eval import quantized_policy

    out, info, ck = standardized
    _, held = split_observations(ck)
    off, gain = np.asarray(info["input"]["offset"], np.float32), np.asarray(info["input"]["gain"], np.float32)
    tflm = run_tflm((out / "model_int8.tflite").read_bytes(), (held - off) * gain, info["input"], info["output"],
                    info["tflm"]["arena_bytes"])
    act = quantized_policy(ck.agent, ck, "int8")
    sim = np.stack([act(o) for o in held])
    lsb = info["output"]["scale"]
    assert np.max(np.abs(sim - tflm)) <= lsb * (1 + 1e-5)
    assert np.mean(np.all(sim == tflm, axis=1)) >= 0.99
    with pytest.raises(Exception, match="int4"):
        quantized_policy(ck.agent, ck, "int4")


def test_attribution_in_export_json_describes_this_model(standardized):
    _, info, _ = standardized
    att = info["attribution"]
    assert att["available"] and att["exact_fraction"] == 1.0
    names = [t["name"] for t in att["tensors"]]
    assert names[0] == "input" and names[-1] == "action (tanh)" and "fc4 (pre-tanh)" in names
    final = att["tensors"][-1]["accumulated"]
    assert final["mean_abs"] == pytest.approx(info["error"]["mean_abs"], rel=1e-4)
    assert all(t["isolated"]["mean_abs"] <= final["mean_abs"] * 1.5 + 1e-6 for t in att["tensors"])


def test_export_of_a_qat_checkpoint_keeps_the_trained_ranges(tiny_checkpoint, tmp_path):
    """The converter, calibrating the trained weights, lands on the ranges the recovery
    trained with, and the integer emulation stays bit-exact to TFLM."""
    from cpr_edge.quant.qat import QatConfig, qat_recover

    ck = load_checkpoint(tiny_checkpoint)
    ck.extra["quantization"] = qat_recover(ck.agent, _shifted_teacher(ck.agent), ck, "standardize",
                                           QatConfig(steps=100, lr=1e-3))
    path = save_checkpoint(ck, tmp_path / "qat.pt")
    assert ck.extra["quantization"]["reverted"] is False  # else the ranges would match trivially
    after = export_checkpoint(path, tmp_path / "qat_model")
    assert after["input_prescale"] == "standardize"  # taken from the checkpoint
    assert after["activations"] == "int8"  # the trained type is the export's default
    assert after["quantization_aware"]["steps"] == 100
    assert after["quantization_aware"]["ranges_match"] is True
    assert after["attribution"]["exact_fraction"] == 1.0


def test_16x8_recovery_trains_on_the_converters_int16_ranges(tiny_checkpoint, tmp_path):
    """int16 activations are symmetric (max|x| / 32767, zero point 0): the recovery's ranges
    are the converter's for a 16x8 export too."""
    from cpr_edge.quant.qat import QatConfig, qat_recover

    ck = load_checkpoint(tiny_checkpoint)
    ck.extra["quantization"] = qat_recover(ck.agent, _shifted_teacher(ck.agent), ck, "standardize",
                                           QatConfig(steps=50, lr=1e-3, activations="int16"))
    assert all(z == 0 for _, z in ck.extra["quantization"]["ranges"])
    assert ck.extra["quantization"]["reverted"] is False
    path = save_checkpoint(ck, tmp_path / "qat16.pt")
    info = export_checkpoint(path, tmp_path / "m16")  # int16 from the checkpoint's record
    assert info["input"]["type"] == "INT16"
    assert info["quantization_aware"]["activations"] == "int16"
    assert info["quantization_aware"]["ranges_match"] is True


def test_qat_brings_the_int8_policy_closer_to_the_float_teacher(shipped_cartpole_small):
    """On the trained cartpole policy (int8 error mean ~0.063 with standardize): held-back
    int8 actions (the integer path, bit-exact to TFLM) against the float teacher."""
    from cpr_edge.quant.qat import QatConfig, qat_recover

    ck = load_checkpoint(shipped_cartpole_small)
    teacher = copy.deepcopy(ck.agent)
    calib, held = split_observations(ck)
    want = reference_actions(ck, held)
    off, gain = input_prescale(calib, "standardize")

    def err():
        fq, _, _ = _policy(ck, {"input": {"offset": off, "gain": gain}}, calib)
        return float(np.abs(int8_forward(fq, (held - off) * gain)[-1] / 128.0 - want).mean())

    before = err()
    # lr 3e-5: on the shipped checkpoint retrained with its trace (int8 error 0.063 before,
    # 0.076 on the earlier one) 400 steps at the default 3e-4 raise the held-back objective and
    # are reverted; at 3e-5 the error falls 12 % on one machine and 7.6 % on another (measured
    # 2026-12-02: the same seed, another CPU's float summation order, another trajectory), so
    # the bar is a 5 % fall, not either figure
    rec = qat_recover(ck.agent, teacher, ck, "standardize", QatConfig(steps=400, lr=3e-5))
    after = err()
    assert rec["loss_last"] < rec["loss_first"] and not rec["reverted"]
    assert after < 0.95 * before, (before, after)


def test_relu_per_tensor_float_io_affine_normalisation_bit_exact(make_checkpoint, tmp_path):
    """The other layer and export kinds: fused ReLU, one weight scale per tensor, float model
    I/O (the QUANTIZE / DEQUANTIZE inside the model) and an affine observation normalisation
    folded into the first layer: the integer path equals TFLM on random inputs."""
    path = make_checkpoint(tmp_path / "relu.pt", activation="relu", seed=5)
    ck = load_checkpoint(path)
    calib, _ = split_observations(ck)
    ck.normalization = {"kind": "affine", "mean": calib.mean(0).tolist(), "std": (calib.std(0) + 0.1).tolist()}
    path = save_checkpoint(ck, tmp_path / "relu_norm.pt")
    out = tmp_path / "relu_pt_float"
    info = export_checkpoint(path, out, io="float", granularity="per-tensor", prescale="standardize",
                             activations="int8")
    assert info["attribution"]["available"] and info["attribution"]["exact_fraction"] == 1.0
    off, gain = np.asarray(info["input"]["offset"], np.float32), np.asarray(info["input"]["gain"], np.float32)
    fq = FakeQuantPolicy(ck.agent.model.encoder, ck.agent.model.pi, ck.normalization, off, gain, "per-tensor")
    fq.calibrate(torch.as_tensor((calib - off) * gain))
    x = np.random.default_rng(2).uniform(-5, 5, (300, ck.arch.obs_dim)).astype(np.float32)
    tflm = run_tflm((out / "model_int8.tflite").read_bytes(), x, info["input"], info["output"],
                    info["tflm"]["arena_bytes"])
    emulated = (int8_forward(fq, x)[-1].astype(np.float32) - 0) * np.float32(1 / 128)
    np.testing.assert_array_equal(emulated, tflm)


def test_export_refuses_another_prescale_than_the_trained_one(tiny_checkpoint, tmp_path):
    from cpr_edge.errors import CprError

    ck = load_checkpoint(tiny_checkpoint)
    ck.extra["quantization"] = {"aware": True, "input_prescale": "standardize"}
    with pytest.raises(CprError, match="trained quantisation-aware with input prescale 'standardize'"):
        export_checkpoint(ck, tmp_path / "x", prescale="none")
    assert not (tmp_path / "x").exists()
