"""cpr-edge import of a checkpoint written as the original TD-MPC (v1) code writes one.

``OriginalTOLD`` re-creates the module layout of nicklashansen/tdmpc (src/algorithm/tdmpc.py
TOLD and helper.py enc / mlp / q): six nn.Sequential named ``_encoder`` ... ``_Q2``. It is saved
as the original's ``TDMPC.save`` does: ``torch.save({'model': sd, 'model_target': sd})``. Its
policy is the original's ``pi(h(obs))`` with std 0: tanh of ``_pi`` of ``_encoder``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cpr_edge.agents.checkpoint import load_checkpoint
from cpr_edge.agents.evaluate import run_episode
from cpr_edge.cli import main

TASK, OBS, ACT = "cartpole-swingup", 5, 1
ENC, MLP, LATENT = 24, 20, 12


class OriginalTOLD(nn.Module):
    """The original TOLD's modules, with its layer order and indices."""

    def __init__(self, obs_dim=OBS, act_dim=ACT, enc_dim=ENC, mlp_dim=MLP, latent_dim=LATENT):
        super().__init__()

        def mlp(i, o):
            return nn.Sequential(nn.Linear(i, mlp_dim), nn.ELU(), nn.Linear(mlp_dim, mlp_dim), nn.ELU(),
                                 nn.Linear(mlp_dim, o))

        def q():
            return nn.Sequential(nn.Linear(latent_dim + act_dim, mlp_dim), nn.LayerNorm(mlp_dim), nn.Tanh(),
                                 nn.Linear(mlp_dim, mlp_dim), nn.ELU(), nn.Linear(mlp_dim, 1))

        self._encoder = nn.Sequential(nn.Linear(obs_dim, enc_dim), nn.ELU(), nn.Linear(enc_dim, latent_dim))
        self._dynamics = mlp(latent_dim + act_dim, latent_dim)
        self._reward = mlp(latent_dim + act_dim, 1)
        self._pi = mlp(latent_dim, act_dim)
        self._Q1, self._Q2 = q(), q()

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        z = self._encoder(torch.tensor(obs, dtype=torch.float32).unsqueeze(0))
        return torch.tanh(self._pi(z))[0].numpy()


def original_save(path, seed=0, **widths):
    torch.manual_seed(seed)
    model, target = OriginalTOLD(**widths), OriginalTOLD(**widths)
    with torch.no_grad():  # random weights (not the zeroed heads of a fresh init), LayerNorm included
        for m in (model, target):
            for p in m.parameters():
                p.normal_(0.0, 0.5)
    torch.save({"model": model.state_dict(), "model_target": target.state_dict()}, path)
    return model, target


def cli(argv, capsys):
    rc = main([str(a) for a in argv])
    c = capsys.readouterr()
    return rc, c.out, c.err


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("import")
    model, target = original_save(root / "model.pt")
    (root / "default.yaml").write_text(
        "task: quadruped-run\nmodality: 'state'\naction_repeat: ???\nmin_std: 0.05\nnum_samples: 512\n"
        f"mixture_coef: 0.05\nhorizon: 5\nseed_steps: 5000\nstd_schedule: linear(0.5, ${{min_std}}, 25000)\n"
        f"horizon_schedule: linear(1, ${{horizon}}, 25000)\nepisode_length: 1000/${{action_repeat}}\n"
        f"enc_dim: {ENC}\nmlp_dim: {MLP}\nlatent_dim: {LATENT}\n")
    (root / "cartpole.yaml").write_text("action_repeat: 8\n")
    return root, model, target


def test_import_round_trip_and_policy_returns_equal(imported, tmp_path, capsys):
    root, model, target = imported
    out = tmp_path / "ck.pt"
    rc, stdout, err = cli(["import", root / "model.pt", "--task", "cartpole-swingup",
                           "--config", root / "default.yaml", "--config", root / "cartpole.yaml",
                           "--replay-sample", 200, "--eval-episodes", 1, "--out", out], capsys)
    assert rc == 0, err
    ck = load_checkpoint(out)
    # every tensor of both networks came through unchanged
    for ours, theirs in ((ck.agent.model, model), (ck.agent.target, target)):
        sd = ours.state_dict()
        for k, v in theirs.state_dict().items():
            mod, rest = k.split(".", 1)
            name = {"_encoder": "encoder", "_dynamics": "dynamics", "_reward": "reward", "_pi": "pi",
                    "_Q1": "q1", "_Q2": "q2"}[mod]
            assert torch.equal(sd[f"{name}.net.{rest}"], v), k
        assert len(sd) == len(theirs.state_dict())
    assert ck.task == TASK and ck.spec["action_repeat"] == 8 and ck.spec["episode_length"] == 125
    assert (ck.arch.encoder, ck.arch.pi, ck.arch.latent_dim) == ([ENC], [MLP, MLP], LATENT)
    # config read as the original means it: agent steps become env steps (x8), mixture 0.05 of 512
    assert ck.cfg.seed_steps == 40_000 and ck.cfg.std_decay_steps == 200_000 and ck.cfg.num_pi_trajs == 25
    assert ck.cfg.horizon_decay_steps == 200_000 and ck.cfg.std_start == 0.5
    # replay sample refilled by rollouts of the imported policy (2 episodes of 125 steps >= 200)
    assert ck.replay["obs"].shape == (2, 126, OBS) and ck.replay["action"].shape == (2, 125, ACT)
    acts = ck.replay["action"].reshape(-1, ACT)
    prior = np.stack([model.act(o) for o in ck.replay["obs"][:, :-1].reshape(-1, OBS)])
    assert 0.0 < np.abs(acts - prior).max() <= 0.3 + 1e-6  # prior + clipped 0.1 noise
    assert ck.extra["imported"]["from"] == "tdmpc-v1" and len(ck.training["evals"]) == 1
    # policy-only returns of the imported agent equal the original module's on the same seeds
    for seed in (3, 4):
        ours = run_episode(TASK, seed, lambda obs, t: ck.agent.policy_action(obs), action_repeat=8)
        theirs = run_episode(TASK, seed, lambda obs, t: model.act(obs), action_repeat=8)
        assert ours == theirs and ours > 0.0


def _corrupt(case, root, tmp_path):
    """(source path, extra args) of a bad input."""
    p = tmp_path / "bad.pt"
    args = ["--task", TASK]
    if case == "not-tdmpc":
        torch.save({"weights": torch.zeros(3)}, p)
    elif case == "missing-key":
        d = torch.load(root / "model.pt", weights_only=True)
        del d["model"]["_Q2.5.bias"]
        torch.save(d, p)
    elif case == "no-target":
        d = torch.load(root / "model.pt", weights_only=True)
        torch.save({"model": d["model"]}, p)
    elif case == "config-mismatch":
        p = root / "model.pt"
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"enc_dim: 256\nmlp_dim: {MLP}\nlatent_dim: {LATENT}\n")
        args += ["--config", cfg]
    elif case == "inner-shape":
        d = torch.load(root / "model.pt", weights_only=True)
        d["model_target"]["_Q1.3.weight"] = torch.zeros(MLP, MLP + 1)
        torch.save(d, p)
    elif case == "wrong-task-dims":
        p = root / "model.pt"
        args = ["--task", "walker-walk"]
    elif case == "unknown-task":
        p = root / "model.pt"
        args = ["--task", "cartpol-swingupp"]
    elif case == "not-a-file":
        p.write_bytes(b"not a torch file")
    return p, args


@pytest.mark.parametrize("case", ["not-tdmpc", "missing-key", "no-target", "config-mismatch", "inner-shape",
                                  "wrong-task-dims", "unknown-task", "not-a-file"])
def test_bad_input_is_one_line_exit_2_nothing_written(case, imported, tmp_path, capsys):
    root, _, _ = imported
    src, args = _corrupt(case, root, tmp_path)
    out = tmp_path / "sub" / "ck.pt"
    rc, stdout, err = cli(["import", src, *args, "--out", out, "--replay-sample", 10], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cpr-edge: error:"), err
    expect = {"not-tdmpc": "not a TD-MPC", "missing-key": "_Q2.5.bias", "no-target": "model_target",
              "config-mismatch": "enc_dim", "inner-shape": "_Q1.3.weight", "wrong-task-dims": "walker-walk",
              "unknown-task": "unknown task", "not-a-file": "not a readable"}[case]
    assert expect in lines[0]
    assert not out.exists() and not out.parent.exists()
