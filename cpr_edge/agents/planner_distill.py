"""Planner distillation: the policy prior learns the MPC planner's actions, DAgger style.

Why: a board runs only encoder -> pi (tanh mean); the planner stays on the host. TD-MPC trains
pi to maximise its own Q estimate, which need not follow what the planner does: on walker-walk
small the planner returns 946 while pi alone returns 220. Here pi imitates the planner instead.

Each iteration rolls out episodes in which, at every step, the planner's action is executed with
probability beta (decaying per iteration) and pi's otherwise; every visited observation is
labelled with the planner's action; the labelled observations are aggregated over iterations and
pi is trained on all of them (MSE on the tanh mean). Labelling the states pi itself reaches is what
makes this DAgger rather than behaviour cloning of planner episodes: pi learns to recover from its
own mistakes.

The encoder stays frozen: dynamics, reward and Q read its latents, so changing it would shift the
model the planner plans with (and the planner labels later iterations). Only pi trains. pi also
seeds the planner (num_pi_trajs of its samples), so later labels come from a planner with a better
prior; that is intended. The label is the planner's final MPPI mean for the first step, not the
elite ``plan()`` samples and executes: the mean is what an MSE fit converges to anyway, without
the sampling noise.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cpr_edge.agents.checkpoint import Checkpoint, save_checkpoint
from cpr_edge.agents.evaluate import eval_seed, evaluate, summary
from cpr_edge.agents.tdmpc import TDMPC
from cpr_edge.envs import make_env
from cpr_edge.errors import CprError

SECTION = "planner_distillation"
VERSION = 1
ROLLOUT_SEED_OFFSET = 30_000
"""Distillation rollouts use env seeds 30000 + seed*1000 + k, disjoint from training seeds and
from the evaluation seeds (10000 + seed*1000 + episode, cpr_edge/agents/evaluate.py)."""


@dataclass
class DistillConfig:
    """One distillation run (docs/training.md, "Planner distillation")."""

    iterations: int = 6
    """Roll out, label, aggregate, train: this many times."""
    episodes: int = 4
    """Episodes rolled out (and labelled) per iteration."""
    steps: int = 2000
    """Gradient steps on pi per iteration, over the whole aggregate."""
    batch_size: int = 256
    lr: float = 3e-4
    """Adam learning rate of pi (fresh moments each iteration)."""
    beta: float = 1.0
    """Probability of executing the planner's action at iteration 0 (1: the first episodes are MPC)."""
    beta_decay: float = 0.5
    """beta at iteration i is beta * beta_decay ** i."""
    q_weight: float = 0.0
    """Weight of TD-MPC's policy objective, -min(Q1,Q2)(z, pi(z)) divided by its batch mean |Q|, as
    a regulariser. 0 by default: that objective is what left pi far below the planner."""
    max_episode_steps: int | None = None
    """Agent steps per rollout (None: whole episodes)."""
    plan_iterations: int | None = None
    """MPPI iterations of the labelling planner (None: the checkpoint's evaluation planner)."""
    plan_samples: int | None = None
    """MPPI samples of the labelling planner (None: the checkpoint's)."""
    eval_episodes: int = 10
    """Policy-only episodes before and after (held-out seeds: cpr-edge eval --seed SEED's)."""
    iteration_eval_episodes: int = 5
    """Policy-only episodes after each iteration (the first of the same held-out seeds; 0: none)."""
    mpc_episodes: int = 0
    """MPC episodes after the last iteration (checks the planner still works; 0: skipped)."""
    seed: int = 0


def check_config(dc: DistillConfig) -> None:
    """Bad values stop the command in one line, before anything slow runs."""
    positive = {"iterations": dc.iterations, "episodes": dc.episodes, "steps": dc.steps,
                "batch-size": dc.batch_size, "eval-episodes": dc.eval_episodes}
    for name, value in positive.items():
        if value < 1:
            raise CprError(f"--{name} must be at least 1, got {value}")
    for name, value in {"iteration-eval-episodes": dc.iteration_eval_episodes, "mpc-episodes": dc.mpc_episodes,
                        "seed": dc.seed, "q-weight": dc.q_weight}.items():
        if value < 0:
            raise CprError(f"--{name} must not be negative, got {value}")
    if not dc.lr > 0:
        raise CprError(f"--lr must be positive, got {dc.lr}")
    if not (0 <= dc.beta <= 1 and 0 <= dc.beta_decay <= 1):
        raise CprError(f"--beta and --beta-decay must lie in [0, 1], got {dc.beta} and {dc.beta_decay}")
    if dc.iterations * dc.episodes > 1000:
        raise CprError(f"--iterations x --episodes is {dc.iterations * dc.episodes}; at most 1000 rollouts "
                       "(their env seeds must stay disjoint from the evaluation seeds)")
    for name, value in {"max-episode-steps": dc.max_episode_steps, "plan-iterations": dc.plan_iterations,
                        "plan-samples": dc.plan_samples}.items():
        if value is not None and value < 1:
            raise CprError(f"--{name} must be at least 1, got {value}")


def check_checkpoint(ck: Checkpoint) -> None:
    if "quantization" in ck.extra:
        raise CprError(f"{ck.path} went through quantisation-aware recovery: its int8 ranges would no longer "
                       "match the distilled pi; distil the planner first, then run cpr-edge qat")


def planner_action(agent: TDMPC, obs: np.ndarray, t0: bool, dc: DistillConfig) -> tuple[np.ndarray, np.ndarray]:
    """(the action MPC executes, the label): plan() in eval mode, warm-started along the episode
    as in MPC evaluation; the label is its final MPPI mean, which plan() keeps for the next warm start."""
    executed = agent.plan(obs, eval_mode=True, t0=t0, iterations=dc.plan_iterations, num_samples=dc.plan_samples)
    label = agent._prev_mean[0].clamp(-1, 1).numpy().copy()
    return executed, label


def rollout(agent: TDMPC, task: str, seed: int, beta: float, dc: DistillConfig, action_repeat: int):
    """One episode of the beta mixture; returns (observations [T,O], labels [T,A], planner share, return)."""
    env = make_env(task, seed, action_repeat)
    torch.manual_seed(seed)
    np.random.seed(seed)  # plan() draws its elite with numpy's global generator
    mix = np.random.default_rng(seed)
    obs, done, t, total, planned = env.reset(), False, 0, 0.0, 0
    obs_l, label_l = [], []
    while not done and (dc.max_episode_steps is None or t < dc.max_episode_steps):
        executed, label = planner_action(agent, obs, t == 0, dc)
        obs_l.append(obs.astype(np.float32)), label_l.append(label)
        use_planner = mix.random() < beta
        planned += use_planner
        obs, r, done = env.step(executed if use_planner else agent.policy_action(obs))
        total, t = total + r, t + 1
    return np.stack(obs_l), np.stack(label_l), planned / t, float(total)


@torch.no_grad()
def action_mse(agent: TDMPC, z: torch.Tensor, labels: torch.Tensor) -> float:
    return F.mse_loss(agent.model.pi(z), labels).item()


def train_policy(agent: TDMPC, z: torch.Tensor, labels: torch.Tensor, dc: DistillConfig,
                 gen: torch.Generator) -> dict:
    """``dc.steps`` Adam steps of pi on the aggregate (latents of the frozen encoder)."""
    pi = agent.model.pi
    optim = torch.optim.Adam(pi.parameters(), lr=dc.lr)
    q_heads = (agent.model.q1, agent.model.q2)
    for q in q_heads:
        q.requires_grad_(False)  # the regulariser's gradient goes to pi only
    pi.train()
    mse_sum, q_sum, n = 0.0, 0.0, 0
    try:
        for step in range(dc.steps):
            idx = torch.randint(0, z.shape[0], (dc.batch_size,), generator=gen)
            action = pi(z[idx])
            mse = F.mse_loss(action, labels[idx])
            loss = mse
            if dc.q_weight > 0:
                q = torch.min(*agent.model.Q(z[idx], action))
                q_term = -q.mean() / q.abs().mean().detach().clamp(min=1e-6)  # scale-free, as TD3+BC
                loss = loss + dc.q_weight * q_term
                if step >= dc.steps - 100:
                    q_sum += q.mean().item()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            if step >= dc.steps - 100:
                mse_sum, n = mse_sum + mse.item(), n + 1
    finally:
        for q in q_heads:
            q.requires_grad_(True)
        pi.eval()
    out = {"train_mse_last100": mse_sum / n}
    if dc.q_weight > 0:
        out["q_last100"] = q_sum / n
    return out


def _eval(agent: TDMPC, ck: Checkpoint, episodes: int, mode: str, seed: int) -> dict:
    s = summary(evaluate(agent, ck.task, episodes, mode, seed, ck.spec["action_repeat"]))
    return {"mean": round(s["mean"], 2), "std": round(s["std"], 2), "returns": [round(r, 2) for r in s["returns"]]}


def distill_planner(ck: Checkpoint, dc: DistillConfig, out: str | Path,
                    log: Callable[[str], None] = lambda s: None) -> dict:
    """Distil in place (``ck.agent.model.pi``), writing ``out`` after every iteration (so a run
    stopped early leaves its last finished iteration); returns the recorded section."""
    check_config(dc)
    check_checkpoint(ck)
    agent, repeat = ck.agent, ck.spec["action_repeat"]
    agent.model.eval()
    gen = torch.Generator().manual_seed(dc.seed)
    t_start = time.time()
    previous = ck.extra.get(SECTION)
    plan_cfg = {"iterations": dc.plan_iterations or agent.cfg.iterations,
                "num_samples": dc.plan_samples or agent.cfg.num_samples,
                "horizon": agent.cfg.horizon, "label": "final MPPI mean of the first action, eval mode"}
    section = {"version": VERSION, "method": "dagger",
               "source": {"checkpoint": str(ck.path) if ck.path else None,
                          "env_steps": ck.training.get("env_steps")},
               "config": asdict(dc), "planner": plan_cfg, "trained": "pi (encoder frozen)",
               "rollout_seeds": [ROLLOUT_SEED_OFFSET + dc.seed * 1000,
                                 ROLLOUT_SEED_OFFSET + dc.seed * 1000 + dc.iterations * dc.episodes - 1],
               "eval_seeds": [eval_seed(dc.seed, 0), eval_seed(dc.seed, dc.eval_episodes - 1)],
               "history": [], "labelled_states": 0, "done": False}
    if previous is not None:
        section["previous"] = previous
    section["return_before"] = _eval(agent, ck, dc.eval_episodes, "policy", dc.seed)
    log(f"policy-only before: {section['return_before']['mean']:.1f} ± {section['return_before']['std']:.1f} "
        f"over {dc.eval_episodes} episodes")

    obs_all, labels_all = [], []
    for it in range(dc.iterations):
        beta = dc.beta * dc.beta_decay ** it
        t_it = time.time()
        new_obs, new_labels, shares, returns = [], [], [], []
        for ep in range(dc.episodes):
            seed = ROLLOUT_SEED_OFFSET + dc.seed * 1000 + it * dc.episodes + ep
            o, lab, share, ret = rollout(agent, ck.task, seed, beta, dc, repeat)
            new_obs.append(o), new_labels.append(lab), shares.append(share), returns.append(ret)
        t_label = time.time() - t_it
        obs_all += new_obs
        labels_all += new_labels
        with torch.no_grad():  # the encoder is frozen: its latents are computed once per state
            z_new = agent.model.encoder(torch.as_tensor(np.concatenate(new_obs)))
        y_new = torch.as_tensor(np.concatenate(new_labels))
        z = z_new if it == 0 else torch.cat([z, z_new])
        y = y_new if it == 0 else torch.cat([y, y_new])
        row = {"iteration": it, "beta": round(beta, 4), "episodes": dc.episodes, "labelled": int(y_new.shape[0]),
               "aggregate": int(y.shape[0]), "planner_share": round(float(np.mean(shares)), 3),
               "rollout_return": round(float(np.mean(returns)), 2),
               "mse_new_before": action_mse(agent, z_new, y_new), "loss_before": action_mse(agent, z, y)}
        row.update(train_policy(agent, z, y, dc, gen))
        row["loss_after"] = action_mse(agent, z, y)
        if dc.iteration_eval_episodes:
            row["policy_return"] = _eval(agent, ck, dc.iteration_eval_episodes, "policy", dc.seed)["mean"]
        row["label_s_per_state"] = round(t_label / y_new.shape[0], 4)
        row["wall_s"] = round(time.time() - t_it, 1)
        section["history"].append(row)
        section["labelled_states"] = int(y.shape[0])
        section["wall_s"] = round(time.time() - t_start, 1)
        log(f"iteration {it}: beta {beta:.3f}, {row['labelled']} states labelled ({row['label_s_per_state']} s each), "
            f"rollout return {row['rollout_return']:.1f}, planner MSE on them {row['mse_new_before']:.4f}, "
            f"aggregate {row['aggregate']}: {row['loss_before']:.4f} -> {row['loss_after']:.4f}"
            + (f", policy-only {row['policy_return']:.1f}" if "policy_return" in row else ""))
        ck.extra[SECTION] = section
        save_checkpoint(ck, out)

    section["return_after"] = _eval(agent, ck, dc.eval_episodes, "policy", dc.seed)
    log(f"policy-only after: {section['return_after']['mean']:.1f} ± {section['return_after']['std']:.1f}")
    if dc.mpc_episodes:
        section["mpc_after"] = _eval(agent, ck, dc.mpc_episodes, "mpc", dc.seed)
        log(f"MPC after: {section['mpc_after']['mean']:.1f} ± {section['mpc_after']['std']:.1f}")
    section["done"] = True
    section["wall_s"] = round(time.time() - t_start, 1)
    ck.extra[SECTION] = section
    save_checkpoint(ck, out)
    return section
