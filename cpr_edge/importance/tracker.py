"""The training hook that accumulates gradient importance of every unit group.

``cpr-edge train --importance`` adds an ``ImportanceTracker()`` to the agent's update hooks
and stores ``tracker.state_dict()`` under the checkpoint key ``importance``. The hook runs
after both backward passes and before the optimisers step, so each parameter's gradient is
that of the TOLD loss term(s) that depend on it (docs/importance.md, "Which loss").
"""
from __future__ import annotations

import torch

from cpr_edge.importance.groups import UnitGroup, told_groups
from cpr_edge.importance.metrics import FisherSaliency, GradientSaliency, LaplaceSNR

VERSION = 1


class ImportanceTracker:
    """Accumulates grad / fisher / bayes scores per unit, with EMA smoothing and a trace."""

    def __init__(self, ema_horizon: float = 1000.0, snapshot_every: int = 100,
                 bayes_n_data: float = 10_000.0, bayes_prior_precision: float = 1e-4):
        self.config = {"ema_horizon": float(ema_horizon), "snapshot_every": int(snapshot_every),
                       "bayes_n_data": float(bayes_n_data), "bayes_prior_precision": float(bayes_prior_precision)}
        self.groups: list[UnitGroup] | None = None
        self.accumulators: dict = {}
        self.updates = 0
        self.trace: list[dict] = []

    def _build(self, model: torch.nn.Module) -> None:
        c = self.config
        self.groups = told_groups(model)
        self.accumulators = {
            "grad": GradientSaliency(self.groups, c["ema_horizon"]),
            "fisher": FisherSaliency(self.groups, c["ema_horizon"]),
            "bayes": LaplaceSNR(self.groups, c["ema_horizon"], c["bayes_n_data"], c["bayes_prior_precision"]),
        }

    @torch.no_grad()
    def __call__(self, agent, info: dict) -> None:
        model = agent.model
        if self.groups is None:
            self._build(model)
        weights, grads = {}, {}
        for n, p in model.named_parameters():
            weights[n] = p.detach()
            grads[n] = p.grad if p.grad is not None else torch.zeros_like(p)
        names = list(weights)
        wg = dict(zip(names, torch._foreach_mul([weights[n] for n in names], [grads[n] for n in names])))
        self.accumulators["grad"](weights, grads, wg)
        self.accumulators["fisher"](weights, grads, wg)
        self.accumulators["bayes"](weights, grads)
        self.updates += 1
        if self.updates % self.config["snapshot_every"] == 0:
            self.snapshot(model, info.get("step", self.updates))

    @torch.no_grad()
    def snapshot(self, model: torch.nn.Module, step: int) -> None:
        """Append per-component mean unit scores of every metric to the trace."""
        weights = {n: p.detach() for n, p in model.named_parameters()}
        row: dict = {"update": self.updates, "step": int(step)}
        for metric in self.accumulators:
            scores = self.scores(metric, weights)
            per_comp: dict[str, list[torch.Tensor]] = {}
            for g in self.groups:
                per_comp.setdefault(g.component, []).append(scores[g.name])
            row[metric] = {c: float(torch.cat(v).mean()) for c, v in per_comp.items()}
        units: dict[str, int] = {}
        for g in self.groups:
            units[g.component] = units.get(g.component, 0) + g.size
        row["units"] = units  # falls as gradual pruning removes units (docs/importance.md)
        self.trace.append(row)

    def follow_pruning(self, model: torch.nn.Module, kept: dict[str, list[int]], take) -> None:
        """After structural pruning of ``model``: keep the accumulated scores of the kept units
        (``kept``: indices per group, numbered before pruning) and ``take(param, tensor)`` of the
        per-weight Fisher of ``bayes``; the removed units' history is dropped with them."""
        if self.groups is None:
            return
        self.groups = told_groups(model)
        for name, acc in self.accumulators.items():
            acc.groups = self.groups
            if name == "bayes":
                acc.sum = {n: take(n, v) for n, v in acc.sum.items()}
                acc.ema = {n: take(n, v) for n, v in acc.ema.items()}
            else:
                ix = {n: torch.tensor(k, dtype=torch.long) for n, k in kept.items()}
                acc.total = {n: v[ix[n]] for n, v in acc.total.items()}
                acc.ema = {n: v[ix[n]] for n, v in acc.ema.items()}

    def scores(self, metric: str, weights: dict[str, torch.Tensor], smoothing: str = "ema") -> dict[str, torch.Tensor]:
        """Per-unit scores of ``metric`` (``grad``, ``fisher`` or ``bayes``), keyed by group name."""
        return self.accumulators[metric].scores(weights, smoothing)

    def state_dict(self) -> dict:
        """Plain types and tensors only (checkpoints load with ``weights_only=True``)."""
        return {"version": VERSION, "config": dict(self.config), "updates": self.updates,
                "groups": [{"name": g.name, "component": g.component, "size": g.size} for g in self.groups or []],
                "metrics": {k: a.state_dict() for k, a in self.accumulators.items()},
                "trace": list(self.trace)}

    @classmethod
    def from_state_dict(cls, d: dict, model: torch.nn.Module) -> "ImportanceTracker":
        """Rebuild a tracker for ``model``; the model's unit groups must match the saved ones."""
        from cpr_edge.errors import CprError

        t = cls(**d["config"])
        t.updates, t.trace = int(d["updates"]), list(d["trace"])
        if not d["groups"]:
            return t
        t._build(model)
        saved = [(g["name"], g["size"]) for g in d["groups"]]
        if saved != [(g.name, g.size) for g in t.groups]:
            raise CprError("the importance trace does not match this model's layer sizes "
                           "(was the checkpoint pruned after the trace was recorded?)")
        for k, acc in t.accumulators.items():
            acc.load_state_dict(d["metrics"][k])
        return t

