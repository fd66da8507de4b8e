"""Overhead of the importance tracker as a percentage of TD-MPC update time. Target: <= 5%.

Method: a ``small`` cartpole agent with a replay of real random-action episodes runs
``--updates`` TD-MPC updates (batch 256, 1 thread), alternating with and without the tracker
hooked in. Times are CPU time of this thread (``time.thread_time``), so that other jobs on a
shared machine do not inflate them; wall-clock figures are printed too. The headline figure
is the median time inside the hook over the median update time without it.

Usage: python benchmarks/importance_overhead.py [--updates 40] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch


def build_agent(seed: int = 0, episodes: int = 4):
    from cpr_edge.agents.config import make_config
    from cpr_edge.agents.replay import ReplayBuffer
    from cpr_edge.agents.tdmpc import TDMPC
    from cpr_edge.agents.told import Arch
    from cpr_edge.envs import make_env

    cfg = make_config("small")
    env = make_env("cartpole-swingup", seed)
    spec = env.spec
    agent = TDMPC(cfg, Arch.from_config(cfg, spec.obs_dim, spec.act_dim), seed=seed)
    buf = ReplayBuffer(spec.obs_dim, spec.act_dim, spec.episode_length, episodes, cfg.horizon, seed=seed)
    rng = np.random.default_rng(seed)
    for ep in range(episodes):
        env = make_env("cartpole-swingup", seed + ep)
        o, done, obs, act, rew = env.reset(), False, [], [], []
        obs.append(o)
        while not done:
            a = rng.uniform(-1, 1, spec.act_dim).astype(np.float32)
            o, r, done = env.step(a)
            obs.append(o), act.append(a), rew.append(r)
        buf.add(np.stack(obs), np.stack(act), np.asarray(rew))
    return agent, buf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from cpr_edge.importance.tracker import ImportanceTracker

    agent, buf = build_agent()
    tracker = ImportanceTracker(snapshot_every=10)
    hook_s: list[float] = []
    hook_wall: list[float] = []

    def timed(ag, info):
        t, w = time.thread_time(), time.perf_counter()
        tracker(ag, info)
        hook_s.append(time.thread_time() - t)
        hook_wall.append(time.perf_counter() - w)

    for _ in range(3):  # warm-up
        agent.update(buf.sample(256), 10**6)
    with_hook, without, wall_without = [], [], []
    for k in range(2 * args.updates):
        hooked = k % 2 == 0
        agent.hooks = [timed] if hooked else []
        t, w = time.thread_time(), time.perf_counter()
        agent.update(buf.sample(256), 10**6)
        (with_hook if hooked else without).append(time.thread_time() - t)
        if not hooked:
            wall_without.append(time.perf_counter() - w)
    update_ms = 1000 * float(np.median(without))
    hook_ms = 1000 * float(np.median(hook_s))
    result = {
        "updates": args.updates, "batch_size": 256, "preset": "small", "threads": 1, "clock": "thread CPU time",
        "update_ms_median": round(update_ms, 2), "hook_ms_median": round(hook_ms, 3),
        "hook_ms_max": round(1000 * max(hook_s), 3),
        "overhead_percent": round(100 * hook_ms / update_ms, 2),
        "interleaved_overhead_percent": round(100 * (np.median(with_hook) / np.median(without) - 1), 2),
        "wall_update_ms_median": round(1000 * float(np.median(wall_without)), 2),
        "wall_hook_ms_median": round(1000 * float(np.median(hook_wall)), 3),
        "snapshots": len(tracker.trace), "target_percent": 5.0,
    }
    text = (f"TD-MPC update (small, batch 256, 1 thread): {update_ms:.1f} ms CPU median "
            f"({result['wall_update_ms_median']:.1f} ms wall)\n"
            f"importance tracker hook: {hook_ms:.2f} ms CPU median (max {result['hook_ms_max']:.2f} ms, "
            f"incl. {len(tracker.trace)} snapshots)\n"
            f"overhead: {result['overhead_percent']:.2f} % of update time (target <= 5 %); "
            f"interleaved with/without medians: {result['interleaved_overhead_percent']:+.2f} %")
    print(json.dumps(result) if args.json else text)
    if args.json:
        print(text, file=sys.stderr)


if __name__ == "__main__":
    main()
