"""The TD-MPC training loop: one plan and one update per agent step (after seeding)."""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from cpr_edge.agents.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cpr_edge.agents.config import make_config
from cpr_edge.agents.evaluate import evaluate, summary
from cpr_edge.agents.replay import ReplayBuffer
from cpr_edge.agents.tdmpc import TDMPC, UpdateHook
from cpr_edge.agents.told import Arch
from cpr_edge.envs import make_env, resolve_task
from cpr_edge.errors import CprError


@dataclass
class TrainConfig:
    """One training run."""

    task: str = "cartpole-swingup"
    """dm_control suite task, ``domain-task`` (docs/tasks.md)."""
    action_repeat: int | None = None
    """Env steps per agent step; None: TD-MPC's default for the domain (or the resumed checkpoint's)."""
    preset: str = "small"
    """Architecture preset: ``small`` or ``paper``."""
    steps: int = 60_000
    """Environment steps (action repeat included)."""
    seed: int = 1
    """Seed of torch, numpy and the environment."""
    eval_freq: int = 10_000
    """Evaluate every this many env steps (0: only at the end)."""
    eval_episodes: int = 5
    """Episodes per periodic evaluation and mode."""
    eval_mpc: bool = True
    """Also evaluate with MPC planning (slower) periodically."""
    replay_sample: int = 10_000
    """Transitions kept in the checkpoint; topped up with rollouts of the final agent."""
    threads: int = 1
    """torch threads (more than one slows down under CPU contention)."""
    out: str = "checkpoint.pt"
    """Checkpoint path (written atomically at each evaluation and at the end)."""
    resume: str | Checkpoint | None = None
    """Continue from this checkpoint (a path, or one already loaded, which is trained in place):
    its weights, replay sample, step count and evaluations (optimiser moments restart; ``steps``
    stays the total)."""
    final_mpc: bool = True
    """Also evaluate with MPC planning at the end."""
    config_overrides: dict = field(default_factory=dict)
    """TDMPCConfig fields to change from the preset (quick runs and tests)."""


def collect_rollouts(agent: TDMPC, task: str, episodes: int, seed: int, noise: float = 0.1,
                     action_repeat: int | None = None):
    """Episodes of the policy prior with Gaussian exploration noise, as replay arrays."""
    obs_l, act_l, rew_l = [], [], []
    rng = np.random.default_rng(seed)
    for ep in range(episodes):
        env = make_env(task, seed + ep, action_repeat)
        obs, done = env.reset(), False
        o, a, r = [obs], [], []
        while not done:
            act = np.clip(agent.policy_action(obs) + noise * rng.standard_normal(agent.arch.act_dim), -1, 1)
            obs, rew, done = env.step(act)
            o.append(obs), a.append(act), r.append(rew)
        obs_l.append(np.stack(o)), act_l.append(np.stack(a)), rew_l.append(np.asarray(r))
    return {"obs": np.stack(obs_l).astype(np.float32), "action": np.stack(act_l).astype(np.float32),
            "reward": np.stack(rew_l).astype(np.float32)}


def replay_sample(agent: TDMPC, buffer: ReplayBuffer, task: str, n: int, seed: int,
                  action_repeat: int | None = None) -> dict:
    """The newest ``n`` buffer transitions, topped up with fresh policy rollouts if short."""
    data = buffer.transitions(limit=n)
    have = data["obs"].shape[0] * buffer.T
    if have < n:
        extra = collect_rollouts(agent, task, -(-(n - have) // buffer.T), seed=seed + 50_000,
                                 action_repeat=action_repeat)
        data = {k: np.concatenate([data[k], extra[k]]) for k in data}
    return data


def train(tc: TrainConfig, hooks: list[UpdateHook] | None = None,
          extra_sections: Callable[[], dict] | None = None,
          log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
          after_step: Callable[[TDMPC, int], None] | None = None) -> Checkpoint:
    """Train, evaluate periodically, and write the checkpoint; ``extra_sections()`` adds
    optional checkpoint sections (such as the importance trace) at each write.
    ``after_step(agent, env_step)`` runs after every agent step's update (gradual pruning
    shrinks the agent there, in place)."""
    tc = dataclasses.replace(tc, task=resolve_task(tc.task))  # checkpoints carry the canonical name
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    start = (tc.resume if isinstance(tc.resume, Checkpoint)
             else load_checkpoint(tc.resume) if tc.resume else None)
    if start and (start.task, start.preset) != (tc.task, tc.preset):
        raise CprError(f"--resume checkpoint is {start.task}/{start.preset}, not {tc.task}/{tc.preset}")
    repeat = tc.action_repeat
    if start:
        resumed_repeat = start.spec["action_repeat"]
        if repeat is not None and repeat != resumed_repeat:
            raise CprError(f"--resume checkpoint was trained at action repeat {resumed_repeat}, not {repeat}")
        repeat = resumed_repeat
    cfg = (dataclasses.replace(start.cfg, **tc.config_overrides) if start
           else make_config(tc.preset, **tc.config_overrides))
    if start:
        start.agent.cfg = cfg
    env = make_env(tc.task, tc.seed, repeat)
    spec = env.spec
    repeat = spec.action_repeat
    agent = start.agent if start else TDMPC(cfg, Arch.from_config(cfg, spec.obs_dim, spec.act_dim), seed=tc.seed)
    agent.hooks.extend(hooks or [])
    T = spec.episode_length
    resumed_episodes = start.replay["obs"].shape[0] if start else 0
    buffer = ReplayBuffer(spec.obs_dim, spec.act_dim, T,
                          capacity_episodes=tc.steps // (T * spec.action_repeat) + 2 + resumed_episodes,
                          horizon=cfg.horizon, alpha=cfg.per_alpha, beta=cfg.per_beta, seed=tc.seed)
    for e in range(resumed_episodes):
        buffer.add(start.replay["obs"][e], start.replay["action"][e], start.replay["reward"][e])
    history: list[dict] = list(start.training.get("evals", [])) if start else []
    ck = Checkpoint(agent, tc.task, tc.preset, spec.to_dict(), {"kind": "none"}, {}, {})

    def do_eval(step: int, final: bool = False):
        row = {"env_steps": step, "wall_s": round(time.time() - t_start, 1),
               "policy": summary(evaluate(agent, tc.task, tc.eval_episodes, "policy", tc.seed, repeat))["mean"]}
        if tc.final_mpc if final else tc.eval_mpc:
            row["mpc"] = summary(evaluate(agent, tc.task, tc.eval_episodes, "mpc", tc.seed, repeat))["mean"]
        history.append(row)
        log(f"eval @ {step} env steps: " + ", ".join(f"{k}={v}" for k, v in row.items() if k != "env_steps"))

    def write(step: int, final: bool):
        ck.replay = (replay_sample(agent, buffer, tc.task, tc.replay_sample, tc.seed, repeat) if final
                     else buffer.transitions(limit=tc.replay_sample))
        ck.training = {"env_steps": step, "seed": tc.seed, "updates": agent.n_updates,
                       "wall_s": round(time.time() - t_start, 1), "evals": history}
        if extra_sections:
            ck.extra = extra_sections()
        save_checkpoint(ck, tc.out)

    t_start = time.time() - (start.training.get("wall_s", 0.0) if start else 0.0)
    step = int(start.training["env_steps"]) if start else 0
    next_eval = (step // tc.eval_freq + 1) * tc.eval_freq if tc.eval_freq else 0
    seeded = start is not None
    bar = tqdm(total=tc.steps, initial=step, unit="env-step", file=sys.stderr, dynamic_ncols=True)
    ep = 0
    while step < tc.steps:
        obs = env.reset()
        o, a_l, r_l = [obs], [], []
        for t in range(T):
            if step < cfg.seed_steps:
                a = np.random.uniform(-1, 1, spec.act_dim).astype(np.float32)
            else:
                a = agent.plan(obs, step, eval_mode=False, t0=(t == 0),
                               iterations=cfg.train_iterations, num_samples=cfg.train_num_samples)
            obs, r, done = env.step(a)
            o.append(obs), a_l.append(a), r_l.append(r)
            step += spec.action_repeat
            bar.update(spec.action_repeat)
            if step >= cfg.seed_steps and buffer.n_episodes > 0:
                n = 1 if seeded else cfg.seed_steps // spec.action_repeat
                seeded = True
                for _ in range(n):
                    batch = buffer.sample(cfg.batch_size)
                    info = agent.update(batch, step)
                    buffer.update_priorities(batch[4], info["priority"])
            if after_step:
                after_step(agent, step)
            if done:
                break
        buffer.add(np.stack(o), np.stack(a_l), np.asarray(r_l))
        ep += 1
        bar.set_postfix(episode_return=f"{sum(r_l):.0f}")
        if tc.eval_freq and step >= next_eval and step < tc.steps:
            next_eval += tc.eval_freq
            do_eval(step)
            write(step, final=False)
    bar.close()
    do_eval(step, final=True)
    write(step, final=True)
    return ck
