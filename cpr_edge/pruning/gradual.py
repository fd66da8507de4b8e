"""Gradual (during-training) structured pruning: the schedule and the pruning step.

The removed fraction of the target parameters follows a schedule from 0 at ``start_step`` to
``ratio`` at ``end_step`` (env steps). At each of ``steps`` evenly spaced pruning points the
units with the lowest smoothed score are removed for good (``prune_structure``: allocation per
component, coupling groups through the dependency graph, model and EMA target alike); the Adam
moments of the kept rows and columns and the tracker's accumulators follow, and training goes
on with the smaller agent (docs/importance.md, "Gradual pruning").
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from cpr_edge.errors import CprError
from cpr_edge.importance.groups import UnitGroup, told_groups
from cpr_edge.importance.metrics import GRADIENT_METRICS, MEAN_METRICS, METRICS, POSTHOC_METRICS, WEIGHT_METRICS
from cpr_edge.pruning.allocation import ALLOCATIONS, TARGETS, Bounds, param_total, unpruned_floor

SCHEDULES = ("cosine", "linear", "cubic")
VERSION = 1


def scheduled_fraction(kind: str, ratio: float, progress: float) -> float:
    """Removed fraction at ``progress`` in [0, 1] of the pruning window: linear; cubic
    (Zhu & Gupta 2017: fast early, slow near the end); cosine (slow at both ends)."""
    s = min(max(float(progress), 0.0), 1.0)
    if kind == "linear":
        return ratio * s
    if kind == "cubic":
        return ratio * (1.0 - (1.0 - s) ** 3)
    if kind == "cosine":
        return ratio * 0.5 * (1.0 - math.cos(math.pi * s))
    raise CprError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULES)}")


@dataclass
class GradualSchedule:
    ratio: float
    """Removed fraction of the ``target`` parameters at ``end_step``."""
    start_step: int
    end_step: int
    """Env steps (action repeat included) where the schedule leaves 0 and reaches ``ratio``."""
    steps: int = 20
    """Pruning points, evenly spaced in (start_step, end_step]."""
    kind: str = "cosine"
    metric: str = "fisher"
    allocation: str = "component"
    target: str = "deployed"
    seed: int = 0

    def fraction(self, step: int) -> float:
        span = max(self.end_step - self.start_step, 1)
        return scheduled_fraction(self.kind, self.ratio, (step - self.start_step) / span)

    def points(self) -> list[int]:
        span = self.end_step - self.start_step
        return [self.start_step + round(span * k / self.steps) for k in range(1, self.steps + 1)]

    def to_dict(self) -> dict:
        return asdict(self)


def check_schedule(ratio: float, start: float, end: float, steps: int, kind: str, metric: str,
                   allocation: str, target: str, ratio_flag: str = "--prune-to") -> None:
    """Bad arguments of ``train --prune-to`` / ``prune --gradual``: one line, before training."""
    if not 0.0 < ratio < 1.0:
        raise CprError(f"{ratio_flag} must be a fraction strictly between 0 and 1, got {ratio}")
    if not 0.0 <= start < end <= 1.0:
        raise CprError(f"need 0 <= --prune-start < --prune-end <= 1, got {start} and {end}")
    if steps < 1:
        raise CprError(f"--prune-steps must be at least 1, got {steps}")
    if metric in POSTHOC_METRICS or metric in MEAN_METRICS:
        how = "post hoc" if metric in POSTHOC_METRICS else "by its trace's all-time mean"
        raise CprError(f"--metric {metric} scores a saved checkpoint {how}; pruning while training reads the "
                       f"live importance tracker: use --metric {metric.rsplit('-', 1)[0]}")
    for name, value, allowed in (("schedule", kind, SCHEDULES), ("metric", metric, METRICS),
                                 ("allocation", allocation, ALLOCATIONS), ("target", target, TARGETS)):
        if value not in allowed:
            raise CprError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")


# --- following the removed units: one index list per parameter dimension --------------------
def kept_index(groups: list[UnitGroup], kept: dict[str, list[int]],
               shapes: dict[str, torch.Size]) -> dict[str, list[list[int] | None]]:
    """Per parameter and dimension, the indices that stay (None: the whole dimension).

    Indices no group owns stay, such as the action columns of ``[z, a]`` inputs."""
    gone: dict[tuple[str, int], set[int]] = {}
    for g in groups:
        lost = set(range(g.size)) - set(kept[g.name])
        for s in g.slices:
            gone.setdefault((s.param, s.dim), set()).update(s.start + i for i in lost)
    return {name: [None if not gone.get((name, d)) else
                   [i for i in range(n) if i not in gone[(name, d)]] for d, n in enumerate(shape)]
            for name, shape in shapes.items()}


def take(t: torch.Tensor, index: list[list[int] | None]) -> torch.Tensor:
    for d, ix in enumerate(index):
        if ix is not None and t.dim() > d:
            t = t.index_select(d, torch.tensor(ix, dtype=torch.long))
    return t


def carry_adam(old_optim: torch.optim.Optimizer, new_optim: torch.optim.Optimizer, old_params: dict,
               new_params: dict, index: dict) -> None:
    """Adam's step count and moments of the kept rows/columns, into the new optimiser."""
    by_id = {id(p): n for n, p in old_params.items()}
    for p_old, state in old_optim.state.items():
        name = by_id[id(p_old)]
        p_new = new_params[name]
        new_optim.state[p_new] = {k: (take(v, index[name]).clone() if torch.is_tensor(v) and v.shape == p_old.shape
                                      else (v.clone() if torch.is_tensor(v) else v)) for k, v in state.items()}


def shrink_agent(agent, groups: list[UnitGroup], scores: dict, ratio: float, sched: GradualSchedule,
                 seed: int, bounds: Bounds | None = None) -> tuple[dict, dict, dict]:
    """Remove ``ratio`` of the agent's current target parameters by ``scores``, in place (the
    training loop, the hooks and the checkpoint keep the same agent object). Returns
    ``(removed, kept)`` per group in the current numbering, and the per-parameter index."""
    from cpr_edge.pruning.prune import prune_structure

    rng = torch.get_rng_state()  # building the pruned agent reseeds torch: training keeps its stream
    new, removed, kept, _ = prune_structure(agent, groups, scores, sched.metric, ratio, sched.target,
                                            sched.allocation, bounds, seed=seed)
    torch.set_rng_state(rng)
    old_params = dict(agent.model.named_parameters())
    index = kept_index(groups, kept, {n: p.shape for n, p in old_params.items()})
    new_params = dict(new.model.named_parameters())
    for name, p in new_params.items():  # the graph removed exactly what the allocation chose
        if not torch.equal(p.detach(), take(old_params[name].detach(), index[name])):
            raise RuntimeError(f"pruned {name} is not the kept slice of the old one")
    carry_adam(agent.optim, new.optim, old_params, new_params, index)
    carry_adam(agent.pi_optim, new.pi_optim, old_params, new_params, index)
    agent.arch, agent.model, agent.target = new.arch, new.model, new.target
    agent.optim, agent.pi_optim = new.optim, new.pi_optim
    return removed, kept, index


class GradualPruner:
    """Called after each agent step as ``pruner(agent, env_step)``; prunes at the schedule's points.

    Gradient metrics read the smoothed (EMA) scores of ``tracker``, which must be among the
    agent's update hooks; ``l1``/``l2``/``random`` score the current weights."""

    def __init__(self, schedule: GradualSchedule, tracker=None, log=lambda s: None):
        if schedule.metric in GRADIENT_METRICS and tracker is None:
            raise CprError(f"gradual pruning by {schedule.metric} needs the importance tracker")
        self.schedule, self.tracker, self.log = schedule, tracker, log
        self.points = schedule.points()
        self.events: list[dict] = []
        self.unpruned: dict | None = None
        self.bounds: Bounds | None = None
        self.alive: dict[str, list[int]] = {}
        """Per group, the unpruned index of every current unit."""

    def __call__(self, agent, step: int) -> None:
        if not self.points or step < self.points[0]:
            return
        if self.schedule.metric in GRADIENT_METRICS and self.tracker.updates == 0:
            return  # no gradient yet (seeding): the first update comes with the next agent step
        while self.points and step >= self.points[0]:
            self.points.pop(0)
        self.prune(agent, step)

    def _start(self, agent) -> None:
        self.unpruned = {"widths": {g.name: g.size for g in told_groups(agent.model)},
                         "params": {t: param_total(agent.arch, t) for t in TARGETS}, "arch": agent.arch.to_dict()}
        self.alive = {n: list(range(s)) for n, s in self.unpruned["widths"].items()}
        # the one-cut bounds held against the unpruned widths, so that the cuts do not compound them
        self.bounds = Bounds(keep=unpruned_floor(told_groups(agent.model), Bounds()))

    @torch.no_grad()
    def prune(self, agent, step: int) -> None:
        s = self.schedule
        if self.unpruned is None:
            self._start(agent)
        goal = s.fraction(step) if self.points else s.ratio  # the last point reaches the ratio exactly
        base = self.unpruned["params"][s.target]
        now = param_total(agent.arch, s.target)
        increment = 1.0 - (1.0 - goal) * base / now  # of the current parameters, to be at goal overall
        if increment <= 1e-9:
            return  # rounding up at earlier points is already ahead of the schedule
        t0 = time.perf_counter()
        groups = told_groups(agent.model)
        weights = {n: p.detach() for n, p in agent.model.named_parameters()}
        if s.metric in GRADIENT_METRICS:
            scores, source = self.tracker.scores(s.metric, weights), "trace"
        else:
            cls = WEIGHT_METRICS[s.metric]
            scorer = cls(groups, s.seed + len(self.events)) if s.metric == "random" else cls(groups)
            scores, source = scorer(weights), "weights"
        removed, kept, index = shrink_agent(agent, groups, scores, increment, s, s.seed, self.bounds)
        if self.tracker is not None:
            self.tracker.follow_pruning(agent.model, kept, lambda name, t: take(t, index[name]))
        gone = {n: [self.alive[n][i] for i in ix] for n, ix in removed.items() if ix}
        self.alive = {n: [self.alive[n][i] for i in kept[n]] for n in self.alive}
        event = {"step": int(step), "update": int(agent.n_updates), "scheduled": round(goal, 6),
                 "removed_fraction": {t: 1.0 - param_total(agent.arch, t) / self.unpruned["params"][t] for t in TARGETS},
                 "widths": {n: len(k) for n, k in self.alive.items()}, "removed": gone, "source": source,
                 "time_s": round(time.perf_counter() - t0, 3)}
        self.events.append(event)
        self.log(f"prune @ {step} env steps: scheduled {goal:.3f}, {s.target} removed "
                 f"{event['removed_fraction'][s.target]:.3f}, latent {agent.arch.latent_dim}")

    def state_dict(self) -> dict:
        """The checkpoint section ``gradual_pruning`` (docs/checkpoint.md)."""
        done = not self.points and bool(self.events)
        return {"version": VERSION, "schedule": self.schedule.to_dict(), "unpruned": self.unpruned,
                "events": list(self.events), "kept": dict(self.alive), "done": done,
                "removed_fraction": self.events[-1]["removed_fraction"] if self.events else {t: 0.0 for t in TARGETS}}
