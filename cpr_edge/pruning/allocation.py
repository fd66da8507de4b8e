"""How many units each group keeps, so that a target fraction of parameters is removed.

The target counts parameters over the *deployed* subnet (encoder + pi: the groups
``encoder.*``, ``pi.*`` and ``latent`` are pruned) or over the whole agent (``all``: every
group). Three rules (docs/importance.md, "Allocation"):

* ``component`` (default): each component c (``latent`` counts as one) removes a fraction
  p_c = clip(alpha * rho_c^-gamma, lo_c, hi_c) of its units, where rho_c is the component's
  normalised importance density; alpha is found by bisection so the target is reached;
* ``uniform``: the same fraction p in every group (bisection on p);
* ``global``: unit scores are divided by their group's mean and ranked together; units
  below a threshold go (at most hi of a group), the threshold found by bisection.

Counts round up, so the removed fraction is always at least the target.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from cpr_edge.agents.told import TOLD, Arch
from cpr_edge.errors import CprError
from cpr_edge.importance.groups import UnitGroup

ALLOCATIONS = ("component", "uniform", "global")
TARGETS = ("deployed", "all")
DEPLOYED = ("encoder", "pi")


@dataclass
class Bounds:
    """Per-component limits on the fraction of units removed."""

    lo: float = 0.0
    """Least fraction of units every pruned component loses."""
    hi: float = 0.9
    """Most fraction of units a hidden layer loses."""
    latent_hi: float = 0.75
    """Most fraction of latent dimensions removed (every component reads the latent)."""
    gamma: float = 0.5
    """Sharpness of the component rule: p_c proportional to rho_c^-gamma (0 = uniform)."""
    keep: dict[str, int] = field(default_factory=dict)
    """Least width per group name, whatever the fractions allow. Gradual pruning sets it from the
    unpruned widths: ``hi`` and ``latent_hi`` are fractions of the current width, so without it
    twenty cuts compound them (a 32-wide latent fell to 4 where one cut stops at 8)."""

    def hi_of(self, component: str) -> float:
        return self.latent_hi if component == "latent" else self.hi


def arch_with(arch: Arch, widths: dict[str, int]) -> Arch:
    """``arch`` with group widths replaced (``encoder.0`` -> arch.encoder[0], ``latent`` -> latent_dim)."""
    new = replace(arch, **{c: list(getattr(arch, c)) for c in ("encoder", "dynamics", "reward", "q1", "q2", "pi")})
    for name, w in widths.items():
        if name == "latent":
            new.latent_dim = int(w)
        else:
            comp, k = name.split(".")
            getattr(new, comp)[int(k)] = int(w)
    return new


def count(arch: Arch) -> dict[str, dict[str, int]]:
    """Parameters and multiply-accumulates (one sample, Linear layers) per component."""
    with torch.device("meta"):
        model = TOLD(arch)
    out = {}
    for name, comp in model.components().items():
        macs = sum(m.in_features * m.out_features for m in comp.modules() if isinstance(m, torch.nn.Linear))
        out[name] = {"params": sum(p.numel() for p in comp.parameters()), "macs": macs}
    return out


def param_total(arch: Arch, target: str) -> int:
    c = count(arch)
    return sum(v["params"] for k, v in c.items() if target == "all" or k in DEPLOYED)


def prunable(groups: list[UnitGroup], target: str) -> list[UnitGroup]:
    if target == "all":
        return list(groups)
    return [g for g in groups if g.component in DEPLOYED or g.component == "latent"]


def component_density(groups: list[UnitGroup], scores: dict[str, torch.Tensor],
                      weights_per_unit: dict[str, torch.Tensor]) -> dict[str, float]:
    """rho_c: mean per-weight unit score of component c over that of all pruned units."""
    per = {g.name: scores[g.name].double() / weights_per_unit[g.name].double() for g in groups}
    overall = torch.cat(list(per.values())).mean().item()
    comps: dict[str, list[torch.Tensor]] = {}
    for g in groups:
        comps.setdefault(g.component, []).append(per[g.name])
    return {c: (torch.cat(v).mean().item() / overall if overall > 0 else 1.0) for c, v in comps.items()}


def _removed(n: int, p: float) -> int:
    return min(n - 1, math.ceil(p * n - 1e-9))


def unpruned_floor(groups: list[UnitGroup], bounds: Bounds) -> dict[str, int]:
    """Per group, the width one cut within ``bounds`` leaves at the most (``Bounds.keep``)."""
    return {g.name: g.size - _removed(g.size, bounds.hi_of(g.component)) for g in groups}


def _bisect(removed_fraction, target: float, hi: float = 1.0, iters: int = 50) -> float:
    """Smallest x in [0, hi] with removed_fraction(x) >= target (monotone non-decreasing)."""
    lo_x, hi_x = 0.0, hi
    for _ in range(iters):
        mid = 0.5 * (lo_x + hi_x)
        if removed_fraction(mid) >= target:
            hi_x = mid
        else:
            lo_x = mid
    return hi_x


def told_allocate(arch: Arch, groups: list[UnitGroup], scores: dict[str, torch.Tensor], ratio: float,
                  target: str = "deployed", method: str = "component", bounds: Bounds | None = None,
                  weights_per_unit: dict[str, torch.Tensor] | None = None) -> dict[str, int]:
    """``allocate`` for a TOLD model: ``target`` picks the pruned groups and the counted params."""
    if target not in TARGETS:
        raise CprError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    return allocate(prunable(groups, target), scores, ratio,
                    lambda widths: param_total(arch_with(arch, widths), target), method, bounds,
                    weights_per_unit, what=f"{target} parameters")


def allocate(pg: list[UnitGroup], scores: dict[str, torch.Tensor], ratio: float,
             param_count: Callable[[dict[str, int]], int], method: str = "component",
             bounds: Bounds | None = None, weights_per_unit: dict[str, torch.Tensor] | None = None,
             what: str = "parameters") -> dict[str, int]:
    """Units to *remove* per group of ``pg`` so that ``param_count(widths)`` drops by ``ratio``."""
    if method not in ALLOCATIONS:
        raise CprError(f"unknown allocation {method!r}; choose one of {', '.join(ALLOCATIONS)}")
    b = bounds or Bounds()
    base = param_count({g.name: g.size for g in pg})
    limit = {g.name: max(0, g.size - b.keep.get(g.name, 0)) for g in pg}  # most units a group may lose

    def fraction(removed: dict[str, int]) -> float:
        return 1.0 - param_count({g.name: g.size - removed[g.name] for g in pg}) / base

    if method in ("component", "uniform"):
        if method == "component":
            counts = weights_per_unit or {g.name: torch.ones(g.size) for g in pg}
            rho = component_density(pg, scores, counts)
            weight = {c: max(r, 1e-12) ** -b.gamma for c, r in rho.items()}
            scale = max(weight.values())
            weight = {c: w / scale for c, w in weight.items()}  # alpha in [0, 1] reaches every hi
        else:
            weight = {g.component: 1.0 for g in pg}

        def plan(alpha: float) -> dict[str, int]:
            return {g.name: min(limit[g.name],
                                _removed(g.size, min(max(alpha * weight[g.component], b.lo), b.hi_of(g.component))))
                    for g in pg}

        alpha_max = 1.0 / min(weight.values()) if method == "component" else 1.0
        most = fraction(plan(alpha_max))
        if most < ratio:
            raise CprError(f"ratio {ratio} of {what} is not reachable within the bounds "
                           f"(at most {most:.3f}); lower --ratio")
        return plan(_bisect(lambda a: fraction(plan(a)), ratio, hi=alpha_max))

    # global: one ranking of group-normalised scores
    norm = {g.name: scores[g.name].double() / max(scores[g.name].double().mean().item(), 1e-30) for g in pg}
    caps = {g.name: min(g.size - 1, limit[g.name], math.floor(b.hi_of(g.component) * g.size + 1e-9)) for g in pg}
    floors = {g.name: min(caps[g.name], _removed(g.size, b.lo)) for g in pg}
    ordered = {n: torch.sort(v).values for n, v in norm.items()}
    top = max(v.max().item() for v in norm.values()) * 1.0001 + 1e-12

    def plan_tau(tau: float) -> dict[str, int]:
        return {n: max(floors[n], min(caps[n], int((ordered[n] < tau).sum()))) for n in ordered}

    most = fraction(plan_tau(top))
    if most < ratio:
        raise CprError(f"ratio {ratio} of {what} is not reachable within the bounds "
                       f"(at most {most:.3f}); lower --ratio")
    return plan_tau(_bisect(lambda t: fraction(plan_tau(t)), ratio, hi=top))
