"""``prune --gradual STEPS``: train a trained checkpoint on for STEPS env steps while pruning it
on the schedule (``cpr_edge.pruning.gradual``); the cheaper path for an agent that exists.

Training resumes as ``train --resume`` does: the checkpoint's replay sample fills the buffer,
fresh episodes are collected with MPC planning, one TOLD + policy update per agent step (no
second seeding). Gradient metrics are tracked from the checkpoint's importance trace when it
matches the model, else from the first update of the continuation.
"""
from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from cpr_edge.agents.checkpoint import Checkpoint
from cpr_edge.errors import CprError
from cpr_edge.importance.metrics import GRADIENT_METRICS
from cpr_edge.pruning.allocation import Bounds
from cpr_edge.pruning.gradual import GradualPruner, GradualSchedule, check_schedule


def gradual_prune_checkpoint(ck: Checkpoint, metric: str = "fisher", ratio: float = 0.5, steps: int = 10_000,
                             allocation: str = "component", target: str = "deployed", schedule: str = "cosine",
                             start: float = 0.0, end: float = 0.8, prune_steps: int = 20, seed: int = 0,
                             eval_episodes: int = 5, progress: Callable[[str], None] | None = None,
                             unpruned_returns: list[float] | None = None) -> tuple[Checkpoint, dict]:
    """The checkpoint trained on for ``steps`` env steps with ``ratio`` of its ``target``
    parameters removed on the schedule, and a prune.json dict (the keys of ``prune_checkpoint``:
    ``recover`` is ``gradual``, ``recover_steps`` the env steps; the ``pruned`` and
    ``recovered`` returns are both those after the continued training)."""
    from cpr_edge.agents.train import TrainConfig, train
    from cpr_edge.importance.tracker import ImportanceTracker
    from cpr_edge.pruning.prune import checkpoint_repeat, param_summary, policy_returns
    from cpr_edge.pruning.pruner import latent_sizes

    check_schedule(ratio, start, end, prune_steps, schedule, metric, allocation, target, ratio_flag="--ratio")
    if steps < 1:
        raise CprError(f"--gradual must be at least 1 env step, got {steps}")
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    env0 = int(ck.training.get("env_steps", 0))
    sched = GradualSchedule(ratio, env0 + round(start * steps), env0 + round(end * steps), prune_steps, schedule,
                            metric, allocation, target, seed)
    work = copy.deepcopy(ck)  # trained in place; ck stays the unpruned reference
    tracker, source = None, "weights"
    if metric in GRADIENT_METRICS:
        trace = ck.extra.get("importance") or {}
        try:
            tracker, source = ImportanceTracker.from_state_dict(trace, work.agent.model), "trace"
            if not tracker.groups:
                raise CprError("empty trace")
        except (CprError, KeyError):
            tracker, source = ImportanceTracker(), "continuation"
    pruner = GradualPruner(sched, tracker, log=say)
    before = param_summary(ck.arch)
    sections = lambda: {**({"importance": tracker.state_dict()} if tracker else {}),
                        "gradual_pruning": {**pruner.state_dict(), "source": {"checkpoint": str(ck.path or ""),
                                                                              "env_steps": env0}}}
    say(f"gradual: {steps} env steps from {env0}, {metric} on a {schedule} schedule to {ratio:g} of the "
        f"{target} parameters between env steps {sched.start_step} and {sched.end_step}")
    with tempfile.TemporaryDirectory() as tmp:
        tc = TrainConfig(task=ck.task, preset=ck.preset, steps=env0 + steps, seed=seed, eval_freq=0, eval_episodes=1,
                         eval_mpc=False, final_mpc=False, replay_sample=int(np.prod(ck.replay["reward"].shape)),
                         out=str(Path(tmp) / "gradual.pt"), resume=work)
        new = train(tc, hooks=[tracker] if tracker else [], extra_sections=sections, log=say, after_step=pruner)
    t_train = time.perf_counter() - t0
    if not pruner.state_dict()["done"]:
        raise CprError(f"the schedule did not reach its last pruning point in {steps} env steps")
    new.path = None
    new.normalization = ck.normalization
    t = time.perf_counter()
    r_unpruned = (list(unpruned_returns) if unpruned_returns is not None
                  else policy_returns(ck.agent, ck.task, eval_episodes, seed, checkpoint_repeat(ck)))
    r_after = policy_returns(new.agent, ck.task, eval_episodes, seed, checkpoint_repeat(ck))
    t_eval = time.perf_counter() - t
    after = param_summary(new.arch)
    g = new.extra["gradual_pruning"]
    sizes, kept = g["unpruned"]["widths"], g["kept"]
    mean = lambda r: float(np.mean(r)) if r else None
    say(f"policy-only return: unpruned {mean(r_unpruned)}, after gradual pruning {mean(r_after)}")
    info = {
        "task": ck.task, "checkpoint": str(ck.path) if ck.path else None, "metric": metric, "ratio": ratio,
        "allocation": allocation, "target": target, "latent_cap": Bounds.latent_hi,  # held to the unpruned width
        "recover": "gradual", "recover_steps": steps, "seed": seed, "importance_source": source,
        "params": {k: {"before": before[k], "after": after[k], "removed_fraction": 1 - after[k] / before[k]}
                   for k in ("deployed", "all")},
        "params_per_component": {c: {"before": before["components"][c], "after": after["components"][c]}
                                 for c in before["components"]},
        "macs": {c: {"before": before["macs"][c], "after": after["macs"][c]} for c in before["macs"]},
        "widths": {"before": sizes, "after": {n: len(k) for n, k in kept.items()}},
        "units_removed_fraction": {n: 1 - len(kept[n]) / sizes[n] for n in sizes},
        "latent_sizes": latent_sizes(new.agent.model), "kept": kept,
        "schedule": g["schedule"], "events": [{k: e[k] for k in ("step", "scheduled", "removed_fraction")}
                                              for e in g["events"]],
        "return": {"policy": {"unpruned": mean(r_unpruned), "pruned": mean(r_after), "recovered": mean(r_after)},
                   "episodes": eval_episodes,
                   "per_episode": {"unpruned": r_unpruned, "pruned": r_after, "recovered": r_after}},
        "time_s": {"train": round(t_train, 3), "evaluate": round(t_eval, 3),
                   "total": round(time.perf_counter() - t0, 3)},
    }
    return new, info
