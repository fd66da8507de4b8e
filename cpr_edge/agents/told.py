"""TOLD: the five components of TD-MPC v1, each its own module.

Layer widths are explicit (``Arch``) rather than derived from the config, so that a
structurally pruned model is rebuilt from its saved widths and a plain state dict.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from cpr_edge.agents.config import TDMPCConfig

ACTIVATIONS = {"elu": nn.ELU, "mish": nn.Mish, "relu": nn.ReLU}


@dataclass
class Arch:
    """Widths of every layer of a TOLD model (the pruned sizes after pruning)."""

    obs_dim: int
    act_dim: int
    latent_dim: int
    encoder: list[int]
    """Hidden widths of h (one hidden layer in TD-MPC v1)."""
    dynamics: list[int]
    reward: list[int]
    q1: list[int]
    q2: list[int]
    pi: list[int]
    activation: str = "elu"
    """Hidden activation of the MLPs; ELU in the paper (others only for tests)."""

    @classmethod
    def from_config(cls, cfg: TDMPCConfig, obs_dim: int, act_dim: int) -> "Arch":
        two = [cfg.mlp_dim, cfg.mlp_dim]
        return cls(obs_dim, act_dim, cfg.latent_dim, [cfg.enc_dim], list(two), list(two),
                   list(two), list(two), list(two))

    def to_dict(self) -> dict:
        return asdict(self)


def mlp(in_dim: int, hidden: list[int], out_dim: int, act: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), ACTIVATIONS[act]()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """h: observation -> latent z."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.net = mlp(arch.obs_dim, arch.encoder, arch.latent_dim, arch.activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class Dynamics(nn.Module):
    """d: (z, a) -> next z."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.net = mlp(arch.latent_dim + arch.act_dim, arch.dynamics, arch.latent_dim, arch.activation)

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, a], dim=-1))


class Reward(nn.Module):
    """R: (z, a) -> predicted reward."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.net = mlp(arch.latent_dim + arch.act_dim, arch.reward, 1, arch.activation)

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, a], dim=-1))


class QFunction(nn.Module):
    """Q: (z, a) -> value; Linear -> LayerNorm -> Tanh -> Linear -> ELU -> Linear."""

    def __init__(self, arch: Arch, hidden: list[int]):
        super().__init__()
        h1, h2 = hidden
        self.net = nn.Sequential(
            nn.Linear(arch.latent_dim + arch.act_dim, h1), nn.LayerNorm(h1), nn.Tanh(),
            nn.Linear(h1, h2), ACTIVATIONS[arch.activation](), nn.Linear(h2, 1))

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, a], dim=-1))


class Policy(nn.Module):
    """pi: z -> action mean in [-1, 1] (tanh of the MLP output)."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.net = mlp(arch.latent_dim, arch.pi, arch.act_dim, arch.activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z))


COMPONENTS = ("encoder", "dynamics", "reward", "q1", "q2", "pi")
"""Component names, in the paper's order (h, d, R, Q1, Q2, pi)."""


class TOLD(nn.Module):
    """Task-Oriented Latent Dynamics model."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        self.encoder = Encoder(arch)
        self.dynamics = Dynamics(arch)
        self.reward = Reward(arch)
        self.q1 = QFunction(arch, arch.q1)
        self.q2 = QFunction(arch, arch.q2)
        self.pi = Policy(arch)

    def reset_parameters(self) -> None:
        """Paper init: orthogonal weights, zero biases, zero last layer of reward and Q."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight)
                nn.init.zeros_(m.bias)
        for head in (self.reward.net[-1], self.q1.net[-1], self.q2.net[-1]):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def next(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dynamics(z, a), self.reward(z, a)

    def Q(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(z, a), self.q2(z, a)

    def act(self, z: torch.Tensor, std: float = 0.0) -> torch.Tensor:
        """Policy-prior action; with ``std`` > 0 a clipped Gaussian sample around the mean."""
        mu = self.pi(z)
        if std <= 0:
            return mu
        eps = (torch.randn_like(mu) * std).clamp(-0.3, 0.3)
        return (mu + eps).clamp(-1.0, 1.0)

    def components(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in COMPONENTS}


class DeployedPolicy(nn.Module):
    """What goes on a board: observation -> encoder -> pi -> tanh mean action."""

    def __init__(self, encoder: Encoder, pi: Policy):
        super().__init__()
        self.encoder = encoder
        self.pi = pi

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.pi(self.encoder(obs))
