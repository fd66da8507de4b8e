"""Episode returns of a checkpoint, in policy-only and MPC modes."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from cpr_edge.envs import make_env

EVAL_SEED_OFFSET = 10_000
"""Evaluation episodes use seeds disjoint from training seeds."""


def eval_seed(seed: int, episode: int) -> int:
    """The environment seed of evaluation ``episode`` under ``seed`` (``cpr-edge eval``, pruning's
    returns, the simulated quantised returns and the HIL seeds that choose all share it)."""
    return EVAL_SEED_OFFSET + seed * 1000 + episode


def run_episode(task: str, seed: int, act: Callable[[np.ndarray, int], np.ndarray],
                record: bool = False, action_repeat: int | None = None):
    """One episode with ``act(obs, t) -> action``; returns the return (and the trace if asked).
    ``action_repeat`` None: the task's default; a checkpoint's is ``spec["action_repeat"]``."""
    env = make_env(task, seed, action_repeat)
    obs, done, total, t = env.reset(), False, 0.0, 0
    trace = []
    while not done:
        a = act(obs, t)
        if record:
            trace.append((obs.copy(), np.asarray(a, dtype=np.float32).copy()))
        obs, r, done = env.step(a)
        total += r
        t += 1
    return (total, trace) if record else total


def evaluate(agent, task: str, episodes: int, mode: str = "policy", seed: int = 0,
             action_repeat: int | None = None) -> list[float]:
    """Returns of ``episodes`` episodes; ``mode`` is ``policy`` (encoder -> pi) or ``mpc``."""
    if mode == "policy":
        act = lambda obs, t: agent.policy_action(obs)
    elif mode == "mpc":
        act = lambda obs, t: agent.plan(obs, eval_mode=True, t0=(t == 0))
    else:
        raise ValueError(mode)
    return evaluate_actor(act, task, episodes, seed, action_repeat)


def evaluate_actor(act: Callable[[np.ndarray, int], np.ndarray], task: str, episodes: int, seed: int = 0,
                   action_repeat: int | None = None) -> list[float]:
    """Returns of ``episodes`` episodes of ``act(obs, t)`` on the evaluation seeds of ``seed``:
    any two actors evaluated with the same ``seed`` see the same episodes (paired returns)."""
    returns = []
    for ep in range(episodes):
        s = eval_seed(seed, ep)
        torch.manual_seed(s)
        np.random.seed(s)
        returns.append(run_episode(task, s, act, action_repeat=action_repeat))
    return returns


def summary(returns: list[float]) -> dict:
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns)),
            "returns": [float(r) for r in returns]}
