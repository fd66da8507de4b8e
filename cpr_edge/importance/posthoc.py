"""Importance of a checkpoint without a training trace: K gradient steps on its replay sample.

Each step samples a batch of (horizon+1)-step sequences from the checkpoint's replay sample,
back-propagates the TOLD model loss and the policy loss exactly as ``TDMPC.update`` does, and
calls the tracker -- but never steps the optimisers: the scores belong to the weights as saved.
"""
from __future__ import annotations

import numpy as np
import torch

from cpr_edge.agents.replay import ReplayBuffer
from cpr_edge.agents.tdmpc import model_loss, policy_loss, told_losses
from cpr_edge.importance.tracker import ImportanceTracker


def replay_buffer(agent, replay: dict, seed: int = 0) -> ReplayBuffer:
    """A prioritised buffer (uniform priorities) holding a checkpoint's replay sample."""
    obs, act, rew = replay["obs"], replay["action"], replay["reward"]
    E, T = act.shape[:2]
    cfg = agent.cfg
    buf = ReplayBuffer(obs.shape[-1], act.shape[-1], T, E, cfg.horizon, cfg.per_alpha, cfg.per_beta, seed)
    for e in range(E):
        buf.add(obs[e], act[e], rew[e])
    return buf


def posthoc_importance(agent, replay: dict, steps: int = 16, batch_size: int = 128, seed: int = 0,
                       ema_horizon: float | None = None) -> ImportanceTracker:
    """Accumulate grad / fisher / bayes over ``steps`` replay batches at fixed weights.

    With fixed weights there is nothing to smooth, so the EMA horizon defaults to ``steps``
    (both the sum and the EMA then rank units the same way).
    """
    tracker = ImportanceTracker(ema_horizon=ema_horizon or steps, snapshot_every=10**9,
                                bayes_n_data=float(np.prod(replay["action"].shape[:2])))
    buf = replay_buffer(agent, replay, seed)
    model, cfg = agent.model, agent.cfg
    was_training = model.training
    model.train()
    for k in range(steps):
        obs, next_obs, action, reward, _, weights = buf.sample(batch_size)
        model.zero_grad(set_to_none=True)
        consistency, reward_loss, value, _, zs = told_losses(model, agent.target, cfg, obs, next_obs, action, reward)
        model_loss(cfg, consistency, reward_loss, value, weights).backward()
        policy_loss(model, cfg, zs).backward()
        tracker(agent, {"step": k})
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return tracker
