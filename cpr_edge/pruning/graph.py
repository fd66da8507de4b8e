"""Torch-Pruning dependency graphs over models that have no single forward.

TOLD is five modules called in different ways, so ``ToldGraphModule`` wraps them in one
forward that exercises every component. Two details make Torch-Pruning find the right
coupling (both found in a trial with torch-pruning 1.6.1):

* the dynamics output is returned as ``d([z, a]) - z``: this ties the dynamics' output
  channels to the latent; without it they form a group of their own;
* ``[z, a]`` concatenations are traced as concat nodes, so the latent's input columns of
  every consumer are mapped to their offsets and the action columns are never touched.

Output heads (reward, Q, pi, decoder) are never roots of a pruning group here: pruning
starts from hidden layers and from the encoder's latent layer only.
"""
from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn


class ToldGraphModule(nn.Module):
    """obs, action -> every component's output, with the dynamics tied to the latent."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, obs: torch.Tensor, action: torch.Tensor):
        m = self.model
        z = m.encoder(obs)
        return (m.dynamics(z, action) - z, m.reward(z, action), m.q1(z, action), m.q2(z, action), m.pi(z))


def build_graph(wrapper: nn.Module, example_inputs: tuple) -> tp.DependencyGraph:
    """Dependency graph of ``wrapper``; gradients are enabled while tracing because
    Torch-Pruning follows ``grad_fn`` (a frozen target network would trace to nothing)."""
    flags = [p.requires_grad for p in wrapper.parameters()]
    wrapper.requires_grad_(True)
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(wrapper, example_inputs=example_inputs)
    finally:
        for p, f in zip(wrapper.parameters(), flags):
            p.requires_grad_(f)


def told_graph(model: nn.Module) -> tp.DependencyGraph:
    arch = model.arch
    example = (torch.zeros(2, arch.obs_dim), torch.zeros(2, arch.act_dim))
    return build_graph(ToldGraphModule(model), example)


def prune_units(DG: tp.DependencyGraph, root: nn.Module, idxs: list[int]) -> list[tuple[str, str, int]]:
    """Remove output channels ``idxs`` of ``root`` and every coupled channel; returns the
    (layer, kind, count) list of what the group touched."""
    group = DG.get_pruning_group(root, tp.prune_linear_out_channels, sorted(int(i) for i in idxs))
    touched = [(DG._module2name.get(dep.target.module, str(dep.target.module)), dep.handler.__name__, len(ix))
               for dep, ix in group.items]
    group.prune()
    return touched
