"""Scores -> removed indices -> a physically smaller agent (model and EMA target alike)."""
from __future__ import annotations

import copy

import torch

from cpr_edge.agents.tdmpc import TDMPC
from cpr_edge.errors import CprError
from cpr_edge.importance.groups import UnitGroup, reduce_units, told_groups
from cpr_edge.importance.metrics import (ALLOCATION_SEP, SCORE_METRICS, WEIGHT_METRICS, check_prune_metric,
                                        ranking_and_allocation, split_metric)
from cpr_edge.importance.posthoc import posthoc_importance
from cpr_edge.importance.tracker import ImportanceTracker
from cpr_edge.pruning.allocation import arch_with
from cpr_edge.pruning.graph import prune_units, told_graph

ADDITIVE = ("grad", "fisher", "l1")
"""Metrics that sum over a unit's weights: normalised per weight for the component rule."""


def importance_scores(agent: TDMPC, metric: str, importance: dict | None, replay: dict, seed: int = 0,
                      posthoc_steps: int = 16, posthoc_batch: int = 128) -> tuple[list[UnitGroup], dict[str, torch.Tensor], str]:
    """Per-unit scores of one ``metric`` name and where they came from (``trace``, ``posthoc``, ``weights``).

    Gradient metrics use the checkpoint's training trace when it matches the model (its EMA;
    ``fisher-mean``: its running mean over every update), else ``posthoc_steps`` gradient steps
    on the replay sample (no optimiser step); a ``-posthoc`` name (``fisher-posthoc``) takes the
    post hoc scores even when the trace matches.
    """
    if metric not in SCORE_METRICS:
        check_prune_metric(metric)
        raise CprError(f"{metric!r} is a RANK@ALLOCATION pair: score its two metrics one at a time (prune_scores)")
    metric, variant = split_metric(metric)
    groups = told_groups(agent.model)
    weights = {n: p.detach() for n, p in agent.model.named_parameters()}
    if metric in WEIGHT_METRICS:
        cls = WEIGHT_METRICS[metric]
        scorer = cls(groups, seed) if metric == "random" else cls(groups)
        return groups, scorer(weights), "weights"
    tracker, source = None, "trace"
    if variant != "posthoc" and importance and importance.get("metrics") and importance.get("updates", 0) > 0:
        try:
            tracker = ImportanceTracker.from_state_dict(importance, agent.model)
        except CprError:
            tracker = None  # trace of another (unpruned) shape: fall back to post hoc
    if tracker is None:
        tracker, source = posthoc_importance(agent, replay, posthoc_steps, posthoc_batch, seed), "posthoc"
    return groups, tracker.scores(metric, weights, "sum" if variant == "mean" else "ema"), source


def prune_scores(agent: TDMPC, metric: str, importance: dict | None, replay: dict, seed: int = 0,
                 posthoc_steps: int = 16) -> tuple[list[UnitGroup], dict[str, torch.Tensor],
                                                   dict[str, torch.Tensor], str]:
    """``(groups, ranking scores, allocation scores, source)`` for a prune's ``metric``: one name
    scores both; ``RANK@ALLOCATION`` ranks units by one and sets the component fractions by the
    other (source ``trace@weights`` and the like)."""
    rank, alloc = ranking_and_allocation(metric)
    groups, scores, source = importance_scores(agent, rank, importance, replay, seed, posthoc_steps)
    if alloc == rank:
        return groups, scores, scores, source
    _, alloc_scores, alloc_source = importance_scores(agent, alloc, importance, replay, seed, posthoc_steps)
    return groups, scores, alloc_scores, f"{source}{ALLOCATION_SEP}{alloc_source}"


def is_additive(metric: str) -> bool:
    """Does ``metric`` (any single accepted name) sum over a unit's weights?"""
    return split_metric(metric)[0] in ADDITIVE


def weights_per_unit(agent: TDMPC, groups: list[UnitGroup]) -> dict[str, torch.Tensor]:
    params = dict(agent.model.named_parameters())
    return {g.name: reduce_units(g, params, "count") for g in groups}


def lowest(scores: torch.Tensor, n: int) -> list[int]:
    """Indices of the ``n`` lowest scores (ties: lower index first), sorted."""
    order = torch.argsort(scores.double(), stable=True)
    return sorted(order[:n].tolist())


def prune_agent(agent: TDMPC, removed: dict[str, list[int]], seed: int = 0) -> TDMPC:
    """A new agent without the ``removed`` unit indices of each group (latent last).

    The model is pruned group by group through its dependency graph; the EMA target replays
    the model's pruning history on its own graph, so both lose exactly the same indices.
    The result is rebuilt from its widths and a state dict, as a checkpoint load would.
    """
    model, target = copy.deepcopy(agent.model), copy.deepcopy(agent.target)
    groups = {g.name: g for g in told_groups(model)}
    DG = told_graph(model)
    for name in sorted(removed, key=lambda n: n == "latent"):
        if removed[name]:
            prune_units(DG, model.get_submodule(groups[name].root), removed[name])
    told_graph(target).load_pruning_history(DG.pruning_history())
    widths = {n: groups[n].size - len(ix) for n, ix in removed.items()}
    arch = arch_with(agent.arch, widths)
    new = TDMPC(agent.cfg, arch, seed=seed, init=False)  # (seeds torch's global RNG)
    new.model.load_state_dict(model.state_dict())
    new.target.load_state_dict(target.state_dict())
    new.target.requires_grad_(False)
    new.make_optimizers()
    new.n_updates, new.std = agent.n_updates, agent.std
    return new


def latent_sizes(model: torch.nn.Module) -> dict[str, int]:
    """Latent width as seen by every coupled layer (producers' outputs, consumers' z inputs)."""
    A = model.arch.act_dim
    return {"encoder.out": model.encoder.net[-1].out_features,
            "dynamics.out": model.dynamics.net[-1].out_features,
            **{f"{c}.in": model.get_submodule(f"{c}.net.0").in_features - A
               for c in ("dynamics", "reward", "q1", "q2")},
            "pi.in": model.pi.net[0].in_features}

