"""TD-MPC v1: TOLD losses, the policy update and MPPI planning, read top to bottom.

One deviation from the reference code, so that importance hooks see gradients that belong
to the current weights: the model loss and the policy loss are both back-propagated
before either optimiser steps (the policy loss therefore sees the pre-step Q, as the TD
target does). Hooks run at that point, on unclipped gradients.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cpr_edge.agents.config import TDMPCConfig
from cpr_edge.agents.told import TOLD, Arch

UpdateHook = Callable[["TDMPC", dict], None]
"""Called after every update with ``info`` = {step, losses}; gradients are on the parameters."""


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    mix = np.clip(step / max(duration, 1), 0.0, 1.0)
    return float((1.0 - mix) * start + mix * end)


def told_losses(model: TOLD, target: TOLD, cfg: TDMPCConfig, obs, next_obs, action, reward):
    """The three TOLD model losses over the horizon, per sample, and the latents for pi.

    obs [B,O], next_obs [H,B,O], action [H,B,A], reward [H,B,1]. Only the dynamics roll-out
    is sequential; Q, reward and the targets run once on all H steps stacked.
    Returns (consistency [B,1], reward [B,1], value [B,1], priority [B,1], latents [H+1,B,Z]).
    """
    H = action.shape[0]
    with torch.no_grad():
        next_z_target = target.encoder(next_obs)
        next_z_online = model.encoder(next_obs)
        next_a = model.act(next_z_online, cfg.min_std)
        td_target = reward + cfg.discount * torch.min(*target.Q(next_z_online, next_a))
    zs = [model.encoder(obs)]
    for t in range(H):
        zs.append(model.dynamics(zs[-1], action[t]))
    z_in = torch.stack(zs[:-1])          # latents the predictions start from, [H,B,Z]
    z_next = torch.stack(zs[1:])         # predicted next latents, [H,B,Z]
    q1, q2 = model.Q(z_in, action)
    reward_pred = model.reward(z_in, action)
    rho = (cfg.rho ** torch.arange(H, dtype=torch.float32)).view(H, 1, 1)
    consistency = (rho * F.mse_loss(z_next, next_z_target, reduction="none").mean(2, keepdim=True)).sum(0)
    reward_loss = (rho * F.mse_loss(reward_pred, reward, reduction="none")).sum(0)
    value = (rho * (F.mse_loss(q1, td_target, reduction="none")
                    + F.mse_loss(q2, td_target, reduction="none"))).sum(0)
    priority = (rho * ((q1 - td_target).abs() + (q2 - td_target).abs())).sum(0)
    return consistency, reward_loss, value, priority.detach(), torch.stack(zs).detach()


def model_loss(cfg: TDMPCConfig, consistency, reward_loss, value, weights):
    total = (cfg.consistency_coef * consistency.clamp(max=1e4)
             + cfg.reward_coef * reward_loss.clamp(max=1e4)
             + cfg.value_coef * value.clamp(max=1e4))
    return (total.squeeze(1) * weights).mean() / cfg.horizon


def policy_loss(model: TOLD, cfg: TDMPCConfig, zs: torch.Tensor) -> torch.Tensor:
    """-min(Q1,Q2)(z, pi(z)) over the horizon's latents [H+1,B,Z]; Q weights get no gradient."""
    for q in (model.q1, model.q2):
        q.requires_grad_(False)
    a = model.act(zs, cfg.min_std)
    rho = (cfg.rho ** torch.arange(zs.shape[0], dtype=torch.float32)).view(-1, 1, 1)
    loss = (-torch.min(*model.Q(zs, a)) * rho).mean(dim=(1, 2)).sum()
    for q in (model.q1, model.q2):
        q.requires_grad_(True)
    return loss


class TDMPC:
    """Agent: TOLD model, EMA target, optimisers, planner state."""

    def __init__(self, cfg: TDMPCConfig, arch: Arch, seed: int = 0, init: bool = True):
        self.cfg, self.arch = cfg, arch
        torch.manual_seed(seed)
        self.model = TOLD(arch)
        if init:
            self.model.reset_parameters()
        self.target = copy.deepcopy(self.model).requires_grad_(False)
        self.make_optimizers()
        self.hooks: list[UpdateHook] = []
        self.std = cfg.std_start
        self._prev_mean: torch.Tensor | None = None
        self.n_updates = 0

    def model_parameters(self) -> list[torch.nn.Parameter]:
        """Everything but the policy prior, which has its own optimiser and loss."""
        return [p for n, p in self.model.named_parameters() if not n.startswith("pi.")]

    def make_optimizers(self) -> None:
        """(Re)create the optimisers; needed after pruning changes parameter shapes."""
        self.optim = torch.optim.Adam(self.model_parameters(), lr=self.cfg.lr)
        self.pi_optim = torch.optim.Adam(self.model.pi.parameters(), lr=self.cfg.lr)

    # --- learning ------------------------------------------------------------
    def update(self, batch, step: int) -> dict:
        cfg = self.cfg
        obs, next_obs, action, reward, idx, weights = batch
        self.std = linear_schedule(cfg.std_start, cfg.min_std, cfg.std_decay_steps, step)
        self.model.train()
        self.optim.zero_grad(set_to_none=True)
        self.pi_optim.zero_grad(set_to_none=True)

        consistency, reward_loss, value, priority, zs = told_losses(
            self.model, self.target, cfg, obs, next_obs, action, reward)
        loss = model_loss(cfg, consistency, reward_loss, value, weights)
        loss.backward()
        pi_loss = policy_loss(self.model, cfg, zs)
        pi_loss.backward()

        info = {"step": step, "losses": {
            "consistency": consistency.mean().item(), "reward": reward_loss.mean().item(),
            "value": value.mean().item(), "pi": pi_loss.item(), "total": loss.item()}}
        for hook in self.hooks:
            hook(self, info)

        torch.nn.utils.clip_grad_norm_(self.model_parameters(), cfg.grad_clip_norm)
        torch.nn.utils.clip_grad_norm_(self.model.pi.parameters(), cfg.grad_clip_norm)
        self.optim.step()
        self.pi_optim.step()
        self.n_updates += 1
        if self.n_updates % cfg.update_freq == 0:
            self.ema()
        self.model.eval()
        info["priority"] = priority.squeeze(1).clamp(max=1e4).numpy()
        return info

    @torch.no_grad()
    def ema(self) -> None:
        for p, pt in zip(self.model.parameters(), self.target.parameters()):
            pt.lerp_(p, self.cfg.tau)

    # --- acting --------------------------------------------------------------
    @torch.no_grad()
    def policy_action(self, obs: np.ndarray) -> np.ndarray:
        """Policy-only control: encoder -> pi, tanh mean. This is what runs on a board."""
        z = self.model.encoder(torch.as_tensor(obs, dtype=torch.float32)[None])
        return self.model.pi(z)[0].numpy()

    @torch.no_grad()
    def estimate_value(self, z, actions, horizon):
        G, discount = 0.0, 1.0
        for t in range(horizon):
            z, r = self.model.next(z, actions[t])
            G = G + discount * r
            discount *= self.cfg.discount
        return G + discount * torch.min(*self.model.Q(z, self.model.act(z, self.cfg.min_std)))

    @torch.no_grad()
    def plan(self, obs: np.ndarray, step: int = 10**9, eval_mode: bool = True, t0: bool = True,
             iterations: int | None = None, num_samples: int | None = None) -> np.ndarray:
        """MPPI over the latent model, with policy-prior trajectories among the samples."""
        cfg = self.cfg
        iterations = iterations or cfg.iterations
        num_samples = num_samples or cfg.num_samples
        A = self.arch.act_dim
        horizon = int(min(cfg.horizon, linear_schedule(1, cfg.horizon, cfg.horizon_decay_steps, step)))
        z0 = self.model.encoder(torch.as_tensor(obs, dtype=torch.float32)[None])
        n_pi = cfg.num_pi_trajs
        pi_actions = torch.empty(horizon, n_pi, A)
        z = z0.repeat(n_pi, 1)
        for t in range(horizon):
            pi_actions[t] = self.model.act(z, cfg.min_std)
            z, _ = self.model.next(z, pi_actions[t])

        z = z0.repeat(num_samples + n_pi, 1)
        mean = torch.zeros(horizon, A)
        std = 2 * torch.ones(horizon, A)
        if not t0 and self._prev_mean is not None and self._prev_mean.shape[0] == horizon:
            mean[:-1] = self._prev_mean[1:]
        for _ in range(iterations):
            actions = (mean[:, None] + std[:, None] * torch.randn(horizon, num_samples, A)).clamp(-1, 1)
            actions = torch.cat([actions, pi_actions], dim=1)
            value = self.estimate_value(z, actions, horizon).nan_to_num_(0.0)
            elite_idx = torch.topk(value.squeeze(1), min(cfg.num_elites, value.shape[0]), dim=0).indices
            elite_value, elite_actions = value[elite_idx], actions[:, elite_idx]
            score = torch.exp(cfg.temperature * (elite_value - elite_value.max(0)[0]))
            score /= score.sum(0)
            _mean = (score[None] * elite_actions).sum(1) / (score.sum(0) + 1e-9)
            _std = torch.sqrt((score[None] * (elite_actions - _mean[:, None]) ** 2).sum(1)
                              / (score.sum(0) + 1e-9)).clamp(self.std if not eval_mode else cfg.min_std, 2)
            mean, std = cfg.momentum * mean + (1 - cfg.momentum) * _mean, _std
        p = score.squeeze(1).numpy().astype(np.float64)
        choice = np.random.choice(p.size, p=p / p.sum())
        self._prev_mean = mean
        a = elite_actions[:, choice][0]
        if not eval_mode:
            a = a + std[0] * torch.randn(A)
        return a.clamp(-1, 1).numpy()
