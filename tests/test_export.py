"""End-to-end export of a small agent through ONNX, onnx2tf, the TF converter and TFLM.

TensorFlow takes ~10 s to import, so one export per granularity is shared by the module.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from tflite_micro import runtime
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

from cpr_edge.agents.checkpoint import load_checkpoint, save_checkpoint
from cpr_edge.agents.told import DeployedPolicy
from cpr_edge.errors import CprError
from cpr_edge.export import export_checkpoint

pytestmark = pytest.mark.slow

MAX_LSB, MEAN_LSB = 6.0, 1.5
"""Stated tolerance of TFLM int8 vs PyTorch float actions, in output LSBs (the TANH output
scale, 1/128): five int8 matmuls and three ELU tables each round to half an LSB of their own
scale; over the tiny agent's held-back episode the error measures ~3 LSB max, <1 LSB mean."""


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny"
    lines = []
    info = export_checkpoint(tiny_checkpoint, out, progress=lines.append)
    return out, info, lines


@pytest.fixture(scope="module")
def exported_per_tensor(tiny_checkpoint, tmp_path_factory):
    """The command line: per-tensor weights, standardised input, per-channel measured too."""
    from cpr_edge.cli import main

    out = tmp_path_factory.mktemp("export") / "tiny_pt"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                   "--granularity", "per-tensor", "--compare-granularity", "--input-prescale", "standardize",
                   "--activations", "int8",
                   "--json"])
    assert rc == 0
    return out, json.loads(stdout.getvalue())


def _ops_and_tensor_types(data: bytes):
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(bytearray(data), 0))
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    sg = m.subgraphs[0]
    for op in sg.operators:
        code = m.operatorCodes[op.opcodeIndex]
        used = [i for i in list(op.inputs) + list(op.outputs) if i >= 0]
        yield names[max(code.builtinCode, code.deprecatedBuiltinCode)], [types[sg.tensors[i].type] for i in used]


def _held_back(ck):
    """The export holds back the last fifth of the replay episodes (here: the second of two)."""
    return ck.replay["obs"][-1].astype(np.float32)


def _tflm_actions(data: bytes, obs: np.ndarray, info: dict) -> np.ndarray:
    """What a board does: prescale, quantise, invoke, dequantise."""
    iq, oq = info["input"], info["output"]
    obs = (obs - np.asarray(iq["offset"], np.float32)) * np.asarray(iq["gain"], np.float32)
    interp = runtime.Interpreter.from_bytes(data, arena_size=info["tflm"]["arena_bytes"])
    out = []
    for o in obs:
        q = np.clip(np.round(o / iq["scale"]) + iq["zero_point"], -128, 127).astype(np.int8)
        interp.set_input(q[None, :], 0)
        interp.invoke()
        out.append((int(np.array(interp.get_output(0)).reshape(-1)[0]) - oq["zero_point"]) * oq["scale"])
    return np.array(out)


def test_export_folder_is_complete_and_consistent(exported):
    out, info, lines = exported
    assert sorted(p.name for p in out.iterdir()) == sorted(info["files"])
    on_disk = json.loads((out / "export.json").read_text())
    assert on_disk == json.loads(json.dumps(info))
    data = (out / "model_int8.tflite").read_bytes()
    assert info["model_bytes"] == len(data)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert (info["obs_dim"], info["act_dim"], info["task"]) == (5, 1, "cartpole-swingup")
    assert info["normalization"] == {"kind": "none"} and info["input_prescale"] == "none"
    assert info["input"]["offset"] == [0.0] * 5 and info["input"]["gain"] == [1.0] * 5
    assert info["tflm"]["arena_bytes"] > 0 and info["error"]["max_abs"] >= info["error"]["mean_abs"] >= 0
    assert len(lines) >= 6 and lines[0].startswith("[1/6]")
    # no scratch or temporary folders left beside the output
    assert [p.name for p in out.parent.iterdir()] == [out.name]


def test_op_resolver_lists_exactly_the_ops(exported):
    out, info, _ = exported
    header = (out / "op_resolver.h").read_text()
    assert info["op_resolver"] == ["FULLY_CONNECTED", "ELU", "TANH"]
    assert "MicroMutableOpResolver<kCprEdgeOpCount>" in header and "kCprEdgeOpCount = 3;" in header
    assert [ln.split("resolver.")[1].split("(")[0] for ln in header.splitlines() if "resolver.Add" in ln] == \
        ["AddFullyConnected", "AddElu", "AddTanh"]


def test_all_ops_int8_and_tanh_in_the_model(exported):
    out, info, _ = exported
    ops = list(_ops_and_tensor_types((out / "model_int8.tflite").read_bytes()))
    assert [name for name, _ in ops] == info["ops"]
    assert info["ops"] == ["FULLY_CONNECTED", "ELU", "FULLY_CONNECTED", "FULLY_CONNECTED", "ELU",
                           "FULLY_CONNECTED", "ELU", "FULLY_CONNECTED", "TANH"]
    for name, types in ops:
        assert set(types) <= {"INT8", "INT32"}, (name, types)
    assert info["all_int8"] and info["float_ops"] == [] and info["fused_islands"] == ["ELU"] * 3
    assert "DEQUANTIZE" in info["converter_ops"]  # the converter really left float islands
    assert info["input"]["type"] == info["output"]["type"] == "INT8"
    assert info["output"]["scale"] == pytest.approx(1 / 128) and info["output"]["zero_point"] == 0


def test_tflm_matches_pytorch_within_output_lsbs(exported, tiny_checkpoint):
    out, info, _ = exported
    ck = load_checkpoint(tiny_checkpoint)
    obs = _held_back(ck)
    with torch.no_grad():
        want = DeployedPolicy(ck.agent.model.encoder, ck.agent.model.pi)(torch.from_numpy(obs)).numpy()[:, 0]
    got = _tflm_actions((out / "model_int8.tflite").read_bytes(), obs, info)
    lsb = info["output"]["scale"]
    err = np.abs(got - want)
    assert err.max() <= MAX_LSB * lsb and err.mean() <= MEAN_LSB * lsb
    assert np.std(want) > 5 * lsb  # the actions really vary, so the match means something
    # export.json reports the same figures on the same held-back observations
    assert info["error"]["observations"] == len(obs)
    assert info["error"]["max_abs"] == pytest.approx(err.max(), abs=1e-6)
    assert info["error"]["mean_abs"] == pytest.approx(err.mean(), abs=1e-6)


def test_arena_is_the_smallest_that_runs(exported):
    out, info, _ = exported
    arena = info["tflm"]["arena_bytes"]
    model = str(out / "model_int8.tflite")

    def probe(n):
        return subprocess.run([sys.executable, "-m", "cpr_edge.export.tflm_run", model, str(n)],
                              capture_output=True, timeout=120).returncode

    assert probe(arena) == 0
    assert probe(arena - 16) != 0


def test_model_data_c_array_is_the_model_and_aligned(exported, tmp_path):
    out, info, _ = exported
    gcc = shutil.which("gcc")  # scripts/setup.sh installs it (host builds of the codegen tests too)
    assert gcc is not None, "no host gcc: run scripts/setup.sh (Debian package gcc)"
    main = tmp_path / "dump.c"
    main.write_text('#include <stdio.h>\n#include <stdint.h>\n#include "model_data.h"\n'
                    'int main(void) { if ((uintptr_t)cpr_edge_model_data % 16) return 3;\n'
                    '  fwrite(cpr_edge_model_data, 1, cpr_edge_model_data_len, stdout); return 0; }\n')
    exe = tmp_path / "dump"
    subprocess.run([gcc, "-std=c11", "-O0", "-I", str(out), str(main), str(out / "model_data.c"), "-o", str(exe)],
                   check=True, capture_output=True)
    r = subprocess.run([str(exe)], capture_output=True, timeout=30)
    assert r.returncode == 0
    assert r.stdout == (out / "model_int8.tflite").read_bytes()


def test_per_tensor_vs_per_channel(exported, exported_per_tensor):
    pc_out, pc, _ = exported
    pt_out, pt = exported_per_tensor
    assert pt["granularity"] == "per-tensor" and pc["granularity"] == "per-channel"
    assert pt["all_int8"] and pt["ops"] == pc["ops"]

    def weight_scales(info):  # weight matrices with more than one output row
        return [t["scale"] for t in info["tensors"] if t["constant"] and t["type"] == "INT8" and t["shape"][0] > 1]

    assert len(weight_scales(pt)) == len(weight_scales(pc)) == 4
    assert all(isinstance(s, float) for s in weight_scales(pt))
    assert all(isinstance(s, list) and len(s) > 1 for s in weight_scales(pc))
    # per-channel pays for its scales in flash and for its multipliers in the arena
    assert pt["model_bytes"] < pc["model_bytes"]
    assert pt["tflm"]["arena_bytes"] < pc["tflm"]["arena_bytes"]
    # --compare-granularity rebuilt per-channel and measured the same arena as the main export
    costs = pt["granularity_costs"]
    assert costs["per-tensor"]["arena_bytes"] == pt["tflm"]["arena_bytes"]
    assert costs["per-channel"]["arena_bytes"] == pc["tflm"]["arena_bytes"]
    assert costs["per-channel"]["model_bytes"] > costs["per-tensor"]["model_bytes"] == pt["model_bytes"]


def test_standardized_input_needs_and_uses_offset_and_gain(exported_per_tensor, tiny_checkpoint):
    out, pt = exported_per_tensor
    ck = load_checkpoint(tiny_checkpoint)
    calib = ck.replay["obs"][0]  # the export calibrates on the first episode, holds back the second
    iq = pt["input"]
    assert pt["input_prescale"] == "standardize"
    assert np.allclose(iq["offset"], calib.mean(0), atol=1e-5)
    assert np.allclose(iq["gain"], 1 / calib.std(0), rtol=1e-4)
    obs = _held_back(ck)
    with torch.no_grad():
        want = DeployedPolicy(ck.agent.model.encoder, ck.agent.model.pi)(torch.from_numpy(obs)).numpy()[:, 0]
    data = (out / "model_int8.tflite").read_bytes()
    err = np.abs(_tflm_actions(data, obs, pt) - want)
    lsb = pt["output"]["scale"]
    assert err.max() <= MAX_LSB * lsb and err.mean() <= MEAN_LSB * lsb
    assert err.max() == pytest.approx(pt["error"]["max_abs"], abs=1e-6)
    # a board that skipped the prescale would be far off
    raw = dict(pt, input={**iq, "offset": [0.0] * 5, "gain": [1.0] * 5})
    assert np.abs(_tflm_actions(data, obs, raw) - want).mean() > 4 * MEAN_LSB * lsb


def test_corrupt_checkpoint_fails_cleanly_and_keeps_old_folder(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous export")
    with pytest.raises(CprError, match="checkpoint"):
        export_checkpoint(bad, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "out"]


def test_mish_is_refused_naming_the_op(tmp_path, capsys, make_checkpoint):
    from cpr_edge.cli import main

    ck = make_checkpoint(tmp_path / "mish.pt", activation="mish")
    rc = main(["export", "--checkpoint", str(ck), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("cpr-edge: error:") and "Mish" in err[-1] and "TFLM" in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mish.pt"]


def test_missing_calibration_data_is_refused(tiny_checkpoint, tmp_path):
    ck = load_checkpoint(tiny_checkpoint)
    ck.replay = {k: v[:, :10] for k, v in ck.replay.items()}  # 2 episodes of 10 steps
    with pytest.raises(CprError, match="calibration data"):
        export_checkpoint(ck, tmp_path / "out")
    ck.replay = {}
    with pytest.raises(CprError, match="no calibration data"):
        export_checkpoint(ck, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_affine_normalisation_is_folded_into_the_first_layer(tiny_checkpoint, tmp_path):
    from cpr_edge.export.onnx_graph import deployed_policy, input_prescale, reference_actions

    ck = load_checkpoint(tiny_checkpoint)
    obs = ck.replay_obs()[:200]
    ck.normalization = {"kind": "affine", "mean": obs.mean(0).tolist(), "std": (obs.std(0) + 0.5).tolist()}
    with torch.no_grad():
        folded = deployed_policy(ck)(torch.from_numpy(obs)).numpy()
    want = reference_actions(ck, obs)
    assert np.abs(folded - want).max() < 1e-5
    plain = reference_actions(load_checkpoint(tiny_checkpoint), obs)
    assert np.abs(plain - want).max() > 1e-2  # the normalisation changes the actions
    save_checkpoint(ck, tmp_path / "norm.pt")
    assert load_checkpoint(tmp_path / "norm.pt").normalization["kind"] == "affine"
    # with a prescale on top, the model takes (obs - offset) * gain
    offset, gain = input_prescale(obs, "standardize")
    with torch.no_grad():
        both = deployed_policy(ck, (offset, gain))(torch.from_numpy((obs - offset) * gain)).numpy()
    assert np.abs(both - want).max() < 1e-5
    ck.normalization = {"kind": "affine", "mean": [0.0] * 5, "std": [1.0, 0.0, 1.0, 1.0, 1.0]}
    with pytest.raises(CprError, match="std must be positive"):
        deployed_policy(ck)


def test_converter_failures_are_one_line_errors(exported, tmp_path):
    """onnx2tf on a broken ONNX file, and the TF converter on a damaged SavedModel, both end in
    a CprError (the fixture has loaded TensorFlow already)."""
    from cpr_edge.export.quantize import onnx_to_saved_model, quantize

    (tmp_path / "broken.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(CprError, match="onnx2tf failed"):
        onnx_to_saved_model(tmp_path / "broken.onnx", tmp_path / "sm", tmp_path / "log")
    saved = onnx_to_saved_model(exported[0] / "model.onnx", tmp_path / "sm_ok", tmp_path / "log")
    calib = np.zeros((40, 5), np.float32)
    assert len(quantize(saved, calib, tmp_path / "log")) > 0
    (saved / "saved_model.pb").write_bytes(b"\x08garbage")
    with pytest.raises(CprError, match="TFLite converter failed"):
        quantize(saved, calib, tmp_path / "log")
