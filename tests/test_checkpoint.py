"""Checkpoint round-trip, weights_only loading, and refusal of bad files."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from cpr_edge.agents.checkpoint import load_checkpoint, save_checkpoint
from cpr_edge.errors import CprError


def test_round_trip(tiny_checkpoint, tmp_path):
    ck = load_checkpoint(tiny_checkpoint)
    out = save_checkpoint(ck, tmp_path / "copy.pt")
    ck2 = load_checkpoint(out)
    for (k, v), (k2, v2) in zip(ck.agent.model.state_dict().items(), ck2.agent.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    for k in ck.replay:
        np.testing.assert_array_equal(ck.replay[k], ck2.replay[k])
    assert ck2.spec == ck.spec and ck2.task == "cartpole-swingup" and ck2.arch == ck.arch
    obs = ck.replay_obs()[:10]
    np.testing.assert_array_equal(ck.agent.policy_action(obs[0]), ck2.agent.policy_action(obs[0]))


def test_loads_with_weights_only(tiny_checkpoint):
    d = torch.load(tiny_checkpoint, weights_only=True)
    assert d["format"] == "cpr-edge/checkpoint" and d["version"] == 1


def test_widths_come_from_the_file(tmp_path, make_checkpoint):
    path = make_checkpoint(tmp_path / "narrow.pt", pi=[64, 48], encoder=[100], latent_dim=20)
    ck = load_checkpoint(path)
    assert ck.agent.model.pi.net[0].out_features == 64 and ck.agent.model.pi.net[2].out_features == 48
    assert ck.agent.model.encoder.net[-1].out_features == 20


@pytest.mark.parametrize("content,msg", [
    (None, "checkpoint not found"),
    (b"", "not a readable checkpoint"),
    (b"garbage\x00\x01not a zip", "not a readable checkpoint"),
])
def test_bad_files(tmp_path, content, msg):
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CprError, match=msg):
        load_checkpoint(path)


def test_truncated_file(tiny_checkpoint, tmp_path):
    path = tmp_path / "cut.pt"
    path.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(CprError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_wrong_kind_of_file(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"layer.weight": torch.zeros(3)}, path)
    with pytest.raises(CprError, match="not a cpr-edge checkpoint"):
        load_checkpoint(path)


def test_pickled_module_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # needs unpickling of a class: weights_only refuses
    with pytest.raises(CprError):
        load_checkpoint(path)


def test_cli_one_line_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    r = subprocess.run([sys.executable, "-m", "cpr_edge.cli", "eval", "--checkpoint", str(bad),
                        "--episodes", "1"], capture_output=True, text=True)
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("cpr-edge: error:"), r.stderr


def test_atomic_save_keeps_old_file_on_failure(tiny_checkpoint, tmp_path, monkeypatch):
    ck = load_checkpoint(tiny_checkpoint)
    target = tmp_path / "keep.pt"
    save_checkpoint(ck, target)
    before = target.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(ck, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.pt"]
