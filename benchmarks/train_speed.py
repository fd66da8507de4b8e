"""Training speed on this machine: env steps/s per task, update and planning ms per preset.

Prints figures; asserts nothing. Run: .venv/bin/python benchmarks/train_speed.py [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cpr_edge.agents.config import make_config
from cpr_edge.agents.replay import ReplayBuffer
from cpr_edge.agents.tdmpc import TDMPC
from cpr_edge.agents.told import Arch
from cpr_edge.envs import TASKS, make_env


def env_steps_per_second(task: str, agent_steps: int = 200) -> float:
    env = make_env(task, 0)
    env.reset()
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(agent_steps):
        _, _, done = env.step(rng.uniform(-1, 1, env.spec.act_dim))
        if done:
            env.reset()
    return agent_steps * env.spec.action_repeat / (time.perf_counter() - t)


def timed(fn, n: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    print("\nenvironment steps/s (random actions, action repeat included)")
    for task in TASKS:
        print(f"  {task:18s} {env_steps_per_second(task):8.0f}")
    print("\nper agent step, cartpole-swingup shapes (obs 5, act 1)")
    print(f"  {'preset':8s} {'batch':>5s} {'update ms':>10s} {'plan ms (train)':>16s} {'plan ms (eval)':>15s}")
    for preset in ("small", "paper"):
        cfg = make_config(preset)
        agent = TDMPC(cfg, Arch.from_config(cfg, 5, 1))
        rb = ReplayBuffer(5, 1, 125, 8, cfg.horizon)
        rng = np.random.default_rng(0)
        for _ in range(8):
            rb.add(rng.standard_normal((126, 5), np.float32), rng.uniform(-1, 1, (125, 1)).astype(np.float32),
                   rng.random(125, np.float32))
        obs = rng.standard_normal(5).astype(np.float32)
        upd = timed(lambda: agent.update(rb.sample(cfg.batch_size), 100_000), args.repeats)
        plan_train = timed(lambda: agent.plan(obs, 100_000, eval_mode=False, iterations=cfg.train_iterations,
                                              num_samples=cfg.train_num_samples), args.repeats)
        plan_eval = timed(lambda: agent.plan(obs, 100_000), args.repeats)
        print(f"  {preset:8s} {cfg.batch_size:5d} {upd:10.1f} {plan_train:16.1f} {plan_eval:15.1f}")


if __name__ == "__main__":
    main()
