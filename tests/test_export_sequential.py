"""cpr-edge export --policy: a plain nn.Sequential (not TD-MPC) through the export, its TFLM
verification, the firmware build and cpr-edge validate on QEMU (real converter, compiler, QEMU)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cpr_edge.cli import main
from cpr_edge.export.sequential import load_policy

IN, OUT = 7, 3


def random_policy(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN, 19), nn.ELU(), nn.Linear(19, 13), nn.ReLU(), nn.Linear(13, OUT), nn.Tanh())


def cli(argv, capsys):
    rc = main([str(a) for a in argv])
    c = capsys.readouterr()
    return rc, c.out, c.err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("seq")
    model = random_policy()
    torch.save(model, root / "policy.pt")
    torch.save(model.state_dict(), root / "policy_sd.pt")
    x = np.random.default_rng(0).normal(size=(200, IN)).astype(np.float32) * [1, 2, 0.1, 5, 1, 1, 3]
    np.save(root / "obs.npy", x.astype(np.float32))
    return root, model


@pytest.fixture(scope="module")
def exported(files):
    root, model = files
    out = root / "export"
    rc = main(["export", "--policy", str(root / "policy.pt"), "--calibration", str(root / "obs.npy"),
               "--out", str(out), "--json"])
    assert rc == 0
    return out


def test_export_is_verified_against_the_float_policy(exported, files):
    root, model = files
    info = json.loads((exported / "export.json").read_text())
    assert info["source"]["kind"] == "sequential"
    assert info["source"]["layers"] == ["linear", "elu", "linear", "relu", "linear", "tanh"]
    assert (info["obs_dim"], info["act_dim"], info["activations"]) == (IN, OUT, "int16")
    assert info["calibration"] == {**info["calibration"], "observations": 160, "held_out": 40}
    assert "FULLY_CONNECTED" in info["ops"] and "TANH" in info["ops"] and info["verified"]
    # 16x8 on a tanh output: the measured error is a few hundredths of the [-1, 1] range at most
    assert 0.0 < info["error"]["max_abs"] < 0.05 and info["error"]["observations"] == 40
    assert (exported / "model_int8.tflite").is_file() and (exported / "model.onnx").is_file()


@pytest.mark.qemu
def test_validate_sequential_export_bit_exact_on_qemu(exported, tmp_path, capsys):
    out = tmp_path / "v"
    rc, stdout, err = cli(["validate", "--board", "qemu-mps2-an386", "--model", exported, "--random", 60,
                           "--out", out, "--json"], capsys)
    assert rc == 0, err
    r = json.loads(stdout)
    assert r["model"]["kind"] == "export" and r["inputs"]["prescale"]
    assert r["comparison"]["bit_exact"] and r["comparison"]["inputs"] == 60
    assert (out / "validate.json").is_file()


def test_state_dict_with_layers_loads_the_same_policy(files):
    root, model = files
    got = load_policy(root / "policy_sd.pt", "linear,elu,linear,relu,linear,tanh")
    x = torch.randn(16, IN)
    with torch.no_grad():
        assert torch.equal(got(x), model(x))
    assert torch.equal(load_policy(root / "policy.pt")(x), model(x).detach())


def _bad(case, root, tmp_path):
    policy, calib, extra = root / "policy.pt", root / "obs.npy", []
    if case == "unsupported-layer":
        policy = tmp_path / "p.pt"
        torch.save(nn.Sequential(nn.Linear(IN, 4), nn.SiLU(), nn.Linear(4, OUT)), policy)
    elif case == "not-sequential":
        policy = tmp_path / "p.pt"
        torch.save(nn.Linear(IN, OUT), policy)
    elif case == "state-dict-no-layers":
        policy = root / "policy_sd.pt"
    elif case == "layers-mismatch":
        policy, extra = root / "policy_sd.pt", ["--layers", "linear,elu,linear,tanh"]
    elif case == "calibration-shape":
        calib = tmp_path / "c.npy"
        np.save(calib, np.zeros((100, IN + 1), np.float32))
    elif case == "too-few-rows":
        calib = tmp_path / "c.npy"
        np.save(calib, np.zeros((20, IN), np.float32))
    elif case == "with-task":
        extra = ["--task", "cartpole-swingup"]
    elif case == "no-calibration":
        calib = None
    return policy, calib, extra


@pytest.mark.parametrize("case", ["unsupported-layer", "not-sequential", "state-dict-no-layers", "layers-mismatch",
                                  "calibration-shape", "too-few-rows", "with-task", "no-calibration"])
def test_bad_policy_input_is_one_line_and_leaves_nothing(case, files, tmp_path, capsys):
    root, _ = files
    policy, calib, extra = _bad(case, root, tmp_path)
    out = tmp_path / "x" / "export"
    argv = ["export", "--policy", policy, *(["--calibration", calib] if calib else []), *extra, "--out", out]
    rc, stdout, err = cli(argv, capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("cpr-edge: error:"), err
    expect = {"unsupported-layer": "SiLU", "not-sequential": "Linear, not an nn.Sequential",
              "state-dict-no-layers": "--layers", "layers-mismatch": "belong to no linear layer",
              "calibration-shape": f"[N, {IN}]", "too-few-rows": "at least", "with-task": "--task",
              "no-calibration": "--calibration"}[case]
    assert expect in lines[0]
    assert not out.parent.exists()
