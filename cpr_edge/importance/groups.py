"""Prunable unit groups of an MLP model, as index sets over its parameters.

A *unit group* is a set of structurally coupled units that are kept or removed together:

* a hidden layer of one component: unit j owns row j of the layer's weight and bias, the
  matching LayerNorm entries (Q networks), and column j of the next Linear's weight;
* the latent coupling group: latent index k owns row k of every *producer* (the layers whose
  output is the latent: encoder's last Linear, and the dynamics' last Linear, whose output
  *is* the next latent) and column k of every *consumer* (the first Linear of each component
  that reads ``[z, a]`` or ``z``; latent columns come first, action columns are never touched).

These definitions serve the importance accumulators (which reduce per-weight quantities to
per-unit scores); the physical removal is done by Torch-Pruning (``cpr_edge/pruning/graph.py``),
whose dependency graph must find the same groups (a test checks that it does).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from cpr_edge.agents.told import COMPONENTS


@dataclass
class Slice:
    """The part of one parameter tensor that belongs to a unit group."""

    param: str
    """Parameter name in the model's ``named_parameters()``."""
    dim: int
    """0: unit u is row ``start + u``; 1: unit u is column ``start + u``."""
    start: int = 0


@dataclass
class UnitGroup:
    name: str
    """``<component>.<hidden layer index>`` or ``latent``."""
    component: str
    """Component the units belong to (``latent`` for the coupling group)."""
    size: int
    """Number of units."""
    root: str
    """Module name of the Linear whose output channels are these units (Torch-Pruning root)."""
    slices: list[Slice] = field(default_factory=list)


def _linears(net: nn.Sequential) -> list[int]:
    return [i for i, m in enumerate(net) if isinstance(m, nn.Linear)]


def mlp_groups(model: nn.Module, components: dict[str, str], producers: list[str],
               consumers: list[str]) -> list[UnitGroup]:
    """Unit groups of a model made of ``nn.Sequential`` MLPs.

    ``components`` maps a component name to the module path of its Sequential; ``producers``
    and ``consumers`` are module paths of the Linears that write / read the latent.
    """
    groups = []
    for comp, path in components.items():
        net = model.get_submodule(path)
        lin = _linears(net)
        for k, i in enumerate(lin[:-1]):  # the last Linear is an output head: never pruned
            layer = net[i]
            g = UnitGroup(f"{comp}.{k}", comp, layer.out_features, f"{path}.{i}")
            g.slices += [Slice(f"{path}.{i}.weight", 0), Slice(f"{path}.{i}.bias", 0)]
            for j in range(i + 1, lin[k + 1]):
                if isinstance(net[j], nn.LayerNorm):
                    g.slices += [Slice(f"{path}.{j}.weight", 0), Slice(f"{path}.{j}.bias", 0)]
            g.slices.append(Slice(f"{path}.{lin[k + 1]}.weight", 1))
            groups.append(g)
    if producers:
        size = model.get_submodule(producers[0]).out_features
        g = UnitGroup("latent", "latent", size, producers[0])
        for p in producers:
            g.slices += [Slice(f"{p}.weight", 0), Slice(f"{p}.bias", 0)]
        g.slices += [Slice(f"{c}.weight", 1) for c in consumers]
        groups.append(g)
    return groups


def told_groups(model: nn.Module) -> list[UnitGroup]:
    """Groups of a TOLD model: hidden layers of h, d, R, Q1, Q2, pi, and the latent."""
    comps = {c: f"{c}.net" for c in COMPONENTS}
    last = lambda c: f"{c}.net.{_linears(model.get_submodule(f'{c}.net'))[-1]}"
    return mlp_groups(model, comps, producers=[last("encoder"), last("dynamics")],
                      consumers=[f"{c}.net.0" for c in ("dynamics", "reward", "q1", "q2", "pi")])


def reduce_units(group: UnitGroup, tensors: dict[str, torch.Tensor], how: str = "sum") -> torch.Tensor:
    """Per-unit reduction of a per-weight quantity over the group's slices.

    ``how`` is ``sum`` (sum over every weight of the unit) or ``count`` (how many weights).
    """
    n = group.size
    parts = []
    for s in group.slices:
        t = tensors[s.param]
        if s.dim == 0:
            t = t[s.start:s.start + n]
            per_unit = t.numel() // n
            part = t if t.dim() == 1 else t.sum(1)
        else:
            per_unit = t.shape[0]
            part = t[:, s.start:s.start + n].sum(0)
        parts.append(part if how == "sum" else torch.full((n,), float(per_unit)))
    return torch.stack(parts).sum(0)


def group_params(groups: list[UnitGroup]) -> set[str]:
    return {s.param for g in groups for s in g.slices}
