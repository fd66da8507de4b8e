"""Episode returns of a checkpoint, in policy-only and MPC modes."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from cpr_edge.envs import make_env

EVAL_SEED_OFFSET = 10_000
"""Evaluation episodes use seeds disjoint from training seeds."""


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
    returns = []
    for ep in range(episodes):
        s = EVAL_SEED_OFFSET + seed * 1000 + ep
        torch.manual_seed(s)
        np.random.seed(s)
        if mode == "policy":
            act = lambda obs, t: agent.policy_action(obs)
        elif mode == "mpc":
            act = lambda obs, t: agent.plan(obs, eval_mode=True, t0=(t == 0))
        else:
            raise ValueError(mode)
        returns.append(run_episode(task, s, act, action_repeat=action_repeat))
    return returns


def summary(returns: list[float]) -> dict:
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns)),
            "returns": [float(r) for r in returns]}
