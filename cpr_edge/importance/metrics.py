"""Importance metrics: one small class per metric (formulas in docs/importance.md).

Gradient metrics are *accumulators*: ``acc(weights, grads)`` folds one update's gradients
in; ``acc.scores(weights, smoothing)`` returns per-unit scores (higher = keep). Weight
metrics (L1, L2, random) need no training: ``metric(weights)`` returns the scores.
Torch-Pruning's own Hessian importance is not used: in 1.6.1 it does not accumulate.
"""
from __future__ import annotations

import torch

from cpr_edge.importance.groups import UnitGroup, group_params, reduce_units
from cpr_edge.errors import CprError

Tensors = dict[str, torch.Tensor]


class Accumulated:
    """Per-unit step scores s_t folded into a plain sum and a bias-corrected EMA.

    EMA with horizon H: e_t = b e_{t-1} + (1 - b) s_t with b = 1 - 1/H, reported as
    e_t / (1 - b^t) so that early estimates are not shrunk towards zero.
    """

    def __init__(self, groups: list[UnitGroup], ema_horizon: float = 1000.0):
        self.groups = groups
        self.beta = 1.0 - 1.0 / max(float(ema_horizon), 1.0)
        self.steps = 0
        self.total = {g.name: torch.zeros(g.size) for g in groups}
        self.ema = {g.name: torch.zeros(g.size) for g in groups}

    def add(self, step_scores: Tensors) -> None:
        self.steps += 1
        for name, s in step_scores.items():
            self.total[name] += s
            self.ema[name].mul_(self.beta).add_(s, alpha=1.0 - self.beta)

    def scores(self, weights: Tensors | None = None, smoothing: str = "ema") -> Tensors:
        if smoothing == "sum":
            return {k: v.clone() for k, v in self.total.items()}
        corr = 1.0 - self.beta ** max(self.steps, 1)
        return {k: v / corr for k, v in self.ema.items()}

    def state_dict(self) -> dict:
        return {"steps": self.steps, "beta": self.beta, "total": dict(self.total), "ema": dict(self.ema)}

    def load_state_dict(self, d: dict) -> None:
        self.steps, self.beta = int(d["steps"]), float(d["beta"])
        self.total = {k: v.clone() for k, v in d["total"].items()}
        self.ema = {k: v.clone() for k, v in d["ema"].items()}


class GradientSaliency(Accumulated):
    """Gradient accumulation (first-order Taylor): sum_t | sum_{i in g} w_i dL_t/dw_i |."""

    def __call__(self, weights: Tensors, grads: Tensors, wg: Tensors | None = None) -> None:
        """``wg``: the products w_i g_i if the caller already has them (shared with Fisher)."""
        wg = wg if wg is not None else {n: weights[n] * grads[n] for n in group_params(self.groups)}
        self.add({g.name: reduce_units(g, wg).abs() for g in self.groups})


class FisherSaliency(Accumulated):
    """Empirical diagonal Fisher times w^2: sum_t sum_{i in g} (w_i dL_t/dw_i)^2."""

    def __call__(self, weights: Tensors, grads: Tensors, wg: Tensors | None = None) -> None:
        wg = wg if wg is not None else {n: weights[n] * grads[n] for n in group_params(self.groups)}
        wg2 = {n: v.square() for n, v in wg.items()}
        self.add({g.name: reduce_units(g, wg2) for g in self.groups})


class LaplaceSNR:
    """Bayesian uncertainty: a diagonal Laplace posterior per weight,
    sigma_i^2 = 1 / (N F_i + lambda), F_i the empirical Fisher (mean squared gradient).
    A unit scores the mean signal-to-noise |w_i| / sigma_i over its weights; low = prunable.

    F_i is kept per weight both as a running mean over all updates (``smoothing="sum"``) and
    as a bias-corrected EMA (``"ema"``); the SNR is taken at the current weights.
    """

    def __init__(self, groups: list[UnitGroup], ema_horizon: float = 1000.0,
                 n_data: float = 10_000.0, prior_precision: float = 1e-4):
        self.groups, self.n_data, self.prior_precision = groups, float(n_data), float(prior_precision)
        self.beta = 1.0 - 1.0 / max(float(ema_horizon), 1.0)
        self.steps = 0
        self.sum: Tensors = {}
        """Per weight: sum over updates of the squared gradient (mean = sum / steps)."""
        self.ema: Tensors = {}

    def __call__(self, weights: Tensors, grads: Tensors) -> None:
        self.steps += 1
        names = sorted(group_params(self.groups))
        if not self.sum:
            self.sum = {n: torch.zeros_like(grads[n]) for n in names}
            self.ema = {n: torch.zeros_like(grads[n]) for n in names}
        g = [grads[n] for n in names]
        ema = [self.ema[n] for n in names]
        # one fused kernel per list instead of one per tensor: this runs after every update
        torch._foreach_addcmul_([self.sum[n] for n in names], g, g)
        torch._foreach_mul_(ema, self.beta)
        torch._foreach_addcmul_(ema, g, g, value=1.0 - self.beta)

    def fisher(self, smoothing: str = "ema") -> Tensors:
        if smoothing == "sum":
            return {n: f / max(self.steps, 1) for n, f in self.sum.items()}
        corr = 1.0 - self.beta ** max(self.steps, 1)
        return {n: f / corr for n, f in self.ema.items()}

    def scores(self, weights: Tensors, smoothing: str = "ema") -> Tensors:
        fisher = self.fisher(smoothing)
        snr = {n: weights[n].abs() * torch.sqrt(self.n_data * fisher[n] + self.prior_precision)
               for n in fisher}
        return {g.name: reduce_units(g, snr) / reduce_units(g, snr, "count") for g in self.groups}

    def state_dict(self) -> dict:
        return {"steps": self.steps, "beta": self.beta, "n_data": self.n_data,
                "prior_precision": self.prior_precision, "sum": dict(self.sum), "ema": dict(self.ema)}

    def load_state_dict(self, d: dict) -> None:
        self.steps, self.beta = int(d["steps"]), float(d["beta"])
        self.n_data, self.prior_precision = float(d["n_data"]), float(d["prior_precision"])
        self.sum = {k: v.clone() for k, v in d["sum"].items()}
        self.ema = {k: v.clone() for k, v in d["ema"].items()}


class L1Magnitude:
    """sum_{i in g} |w_i|."""

    def __init__(self, groups: list[UnitGroup]):
        self.groups = groups

    def __call__(self, weights: Tensors) -> Tensors:
        absw = {n: weights[n].abs() for n in group_params(self.groups)}
        return {g.name: reduce_units(g, absw) for g in self.groups}


class L2Magnitude:
    """sqrt(sum_{i in g} w_i^2)."""

    def __init__(self, groups: list[UnitGroup]):
        self.groups = groups

    def __call__(self, weights: Tensors) -> Tensors:
        sq = {n: weights[n].square() for n in group_params(self.groups)}
        return {g.name: reduce_units(g, sq).sqrt() for g in self.groups}


class RandomScore:
    """Uniform random scores from a seeded generator (the no-information baseline)."""

    def __init__(self, groups: list[UnitGroup], seed: int = 0):
        self.groups, self.seed = groups, seed

    def __call__(self, weights: Tensors | None = None) -> Tensors:
        gen = torch.Generator().manual_seed(self.seed)
        return {g.name: torch.rand(g.size, generator=gen) for g in self.groups}


GRADIENT_METRICS = {"grad": GradientSaliency, "fisher": FisherSaliency, "bayes": LaplaceSNR}
WEIGHT_METRICS = {"l1": L1Magnitude, "l2": L2Magnitude, "random": RandomScore}
METRICS = (*GRADIENT_METRICS, *WEIGHT_METRICS)

POSTHOC_SUFFIX = "-posthoc"
POSTHOC_METRICS = tuple(m + POSTHOC_SUFFIX for m in GRADIENT_METRICS)
"""``grad-posthoc`` etc.: the gradient metric scored post hoc on the replay sample even when the
checkpoint carries a matching training trace (the plain names prefer the trace)."""
MEAN_SUFFIX = "-mean"
MEAN_METRICS = tuple(m + MEAN_SUFFIX for m in GRADIENT_METRICS)
"""``fisher-mean`` etc.: the trace's running mean over every training update instead of its EMA
(horizon ``ema_horizon`` updates): the longest memory, where ``-posthoc`` is the shortest."""
SCORE_METRICS = (*METRICS, *POSTHOC_METRICS, *MEAN_METRICS)
PRUNE_METRICS = SCORE_METRICS
"""Every single name a one-shot prune (prune, sweep, boundary, fit, prune-and-flash) accepts;
``RANK@ALLOCATION`` (``fisher@l1``) pairs two of them (``ranking_and_allocation``)."""
ALLOCATION_SEP = "@"


def split_metric(name: str) -> tuple[str, str]:
    """``"fisher-posthoc"`` -> ``("fisher", "posthoc")``, ``"fisher-mean"`` -> ``("fisher", "mean")``;
    any other name -> ``(name, "")``. A ``RANK@ALLOCATION`` pair splits by its ranking metric."""
    name = name.split(ALLOCATION_SEP)[0]
    for suffix, names in ((POSTHOC_SUFFIX, POSTHOC_METRICS), (MEAN_SUFFIX, MEAN_METRICS)):
        if name in names:
            return name[: -len(suffix)], suffix[1:]
    return name, ""


def ranking_and_allocation(name: str) -> tuple[str, str]:
    """``"fisher@l1"``: units ranked within each group by fisher, the component fractions set by
    l1's scores -> ``("fisher", "l1")``; a single name does both -> ``(name, name)``."""
    check_prune_metric(name)
    rank, _, alloc = name.partition(ALLOCATION_SEP)
    return rank, alloc or rank


def check_prune_metric(name: str) -> None:
    """A one-line error for a name no prune accepts."""
    parts = name.split(ALLOCATION_SEP) if isinstance(name, str) else [None]
    if len(parts) > 2 or any(p not in SCORE_METRICS for p in parts):
        raise CprError(f"unknown metric {name!r}; choose one of {', '.join(SCORE_METRICS)}, "
                       f"or RANK{ALLOCATION_SEP}ALLOCATION of two (e.g. fisher{ALLOCATION_SEP}l1)")
