"""A short real training run, the CLI, and the shipped checkpoints."""
import json
import subprocess
import sys

import numpy as np
import pytest

from cpr_edge.agents.checkpoint import load_checkpoint, shipped_checkpoint_path
from cpr_edge.agents.evaluate import evaluate
from cpr_edge.agents.train import TrainConfig, train
from cpr_edge.envs import TASKS
from cpr_edge.errors import CprError


def test_training_smoke_run(tmp_path):
    """A few hundred env steps through seeding, updates, hooks, evaluation and the checkpoint."""
    calls = []
    tc = TrainConfig(task="cartpole-swingup", steps=2000, eval_freq=1000, eval_episodes=1,
                     eval_mpc=False, replay_sample=300, out=str(tmp_path / "smoke.pt"),
                     config_overrides=dict(seed_steps=1000, batch_size=32, iterations=2, num_samples=64,
                                           train_iterations=1, train_num_samples=32))
    ck = train(tc, hooks=[lambda agent, info: calls.append(info["step"])],
               extra_sections=lambda: {"importance": {"calls": len(calls)}})
    # the first agent step past the seed point does seed_steps / action_repeat updates (125),
    # each of the remaining (2000 - 1000) / 8 - 1 agent steps one
    assert len(calls) == 1000 // 8 + (1000 // 8 - 1)
    loaded = load_checkpoint(tmp_path / "smoke.pt")
    assert loaded.training["env_steps"] == 2000 and len(loaded.training["evals"]) == 2
    assert loaded.replay["obs"].shape[0] * 125 >= 300
    assert loaded.extra["importance"]["calls"] == len(calls)
    assert "mpc" in loaded.training["evals"][-1]


def test_training_on_another_suite_task_at_an_overridden_repeat(tmp_path):
    """hopper-hop at action repeat 8 (default 4): the repeat reaches the env, the evaluations,
    the replay top-up and the checkpoint spec; resuming at another repeat is refused."""
    tc = TrainConfig(task="hopper-hop", action_repeat=8, steps=1000, eval_freq=0, eval_episodes=1,
                     eval_mpc=False, replay_sample=250, out=str(tmp_path / "hop.pt"),
                     config_overrides=dict(seed_steps=500, batch_size=16, iterations=1, num_samples=16,
                                           num_elites=4, num_pi_trajs=4, train_iterations=1, train_num_samples=16))
    train(tc, log=lambda s: None)
    ck = load_checkpoint(tmp_path / "hop.pt")
    assert ck.task == "hopper-hop" and ck.training["env_steps"] == 1000
    assert (ck.spec["action_repeat"], ck.spec["episode_length"], ck.spec["obs_dim"], ck.spec["act_dim"]) == (8, 125, 15, 4)
    assert ck.replay["obs"].shape == (2, 126, 15)  # one training episode (1000 steps) + one top-up
    with pytest.raises(CprError, match="action repeat 8, not 4"):
        train(TrainConfig(task="hopper-hop", action_repeat=4, steps=2000, resume=str(tmp_path / "hop.pt"),
                          out=str(tmp_path / "hop2.pt")), log=lambda s: None)


def test_help_lists_subcommands():
    r = subprocess.run([sys.executable, "-m", "cpr_edge.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("train", "eval"):
        assert cmd in r.stdout
        sub = subprocess.run([sys.executable, "-m", "cpr_edge.cli", cmd, "--help"], capture_output=True, text=True)
        assert sub.returncode == 0 and "usage: cpr-edge " + cmd in sub.stdout


def test_shipped_checkpoints_exist_and_load():
    for task, preset in [("cartpole-swingup", "small"), ("cartpole-swingup", "paper"), ("reacher-easy", "small"),
                         ("cheetah-run", "small")]:
        ck = load_checkpoint(shipped_checkpoint_path(task, preset))
        assert ck.task == task and ck.preset == preset
        assert ck.replay["reward"].size >= 10_000
        assert ck.spec["action_repeat"] == TASKS[task]
    # trained with --importance: the trace the default prune uses
    assert (load_checkpoint(shipped_checkpoint_path("cheetah-run", "small")).extra.get("importance") or {}).get("trace")


def test_shipped_cartpole_policy_only_return(shipped_cartpole_small):
    """Policy-only control (encoder -> pi, tanh mean): what will run on a board."""
    ck = load_checkpoint(shipped_cartpole_small)
    returns = evaluate(ck.agent, ck.task, episodes=3, mode="policy")
    assert np.mean(returns) >= 750, returns


def test_eval_cli_json(shipped_cartpole_small):
    r = subprocess.run([sys.executable, "-m", "cpr_edge.cli", "eval", "--task", "cartpole-swingup",
                        "--episodes", "2", "--mode", "policy", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["task"] == "cartpole-swingup" and out["episodes"] == 2
    assert out["policy"]["mean"] > 700 and "mpc" not in out


def test_resume_continues_steps_replay_and_evaluations(tiny_checkpoint, tmp_path):
    ck0 = load_checkpoint(tiny_checkpoint)
    ck0.training["env_steps"] = 6000  # as if trained past the seed point (5000 env steps)
    from cpr_edge.agents.checkpoint import save_checkpoint

    start = save_checkpoint(ck0, tmp_path / "start.pt")
    calls = []
    tc = TrainConfig(task="cartpole-swingup", steps=6500, eval_freq=0, eval_episodes=1, eval_mpc=False,
                     replay_sample=100, out=str(tmp_path / "resumed.pt"), resume=str(start),
                     config_overrides=dict(batch_size=16, train_iterations=1, train_num_samples=32,
                                           iterations=1, num_samples=32))
    train(tc, hooks=[lambda agent, info: calls.append(info["step"])])
    ck = load_checkpoint(tmp_path / "resumed.pt")
    # training runs whole episodes: one more 125-step episode at action repeat 8
    assert ck.training["env_steps"] == 7000
    assert len(calls) == 125 and calls[0] == 6008  # one update per agent step, no second seeding
    assert ck.cfg.batch_size == 16
