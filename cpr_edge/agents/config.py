"""TD-MPC hyper-parameters (Hansen, Wang & Su 2022), as one dataclass with two presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class TDMPCConfig:
    """Everything that shapes the TOLD model, its losses and the planner."""

    # --- architecture -------------------------------------------------------
    enc_dim: int = 256
    """Hidden width of the encoder h (one hidden layer, ELU)."""
    mlp_dim: int = 512
    """Hidden width of dynamics, reward, Q and policy MLPs (two hidden layers)."""
    latent_dim: int = 50
    """Size of the latent state z shared by all components."""

    # --- losses --------------------------------------------------------------
    consistency_coef: float = 2.0
    """Weight of the latent-consistency loss ||d(z,a) - h_target(s')||^2."""
    reward_coef: float = 0.5
    """Weight of the reward-prediction loss."""
    value_coef: float = 0.1
    """Weight of the TD value loss of both Q heads."""
    rho: float = 0.5
    """Temporal discount of the losses over the horizon (rho^t)."""
    discount: float = 0.99
    """Reward discount gamma."""
    tau: float = 0.01
    """EMA rate of the target network."""
    update_freq: int = 2
    """Target network EMA every this many updates."""
    lr: float = 1e-3
    """Adam learning rate of model and policy."""
    grad_clip_norm: float = 10.0
    """Gradient norm clip of model and policy updates."""
    batch_size: int = 256
    """Sequences per update (the paper uses 512; 256 trains as well here at half the cost)."""
    per_alpha: float = 0.6
    """Prioritised replay exponent."""
    per_beta: float = 0.4
    """Prioritised replay importance-weight exponent."""

    # --- planning (MPPI) ----------------------------------------------------
    horizon: int = 5
    """Planning and loss horizon."""
    iterations: int = 6
    """MPPI iterations per plan."""
    num_samples: int = 512
    """Gaussian action sequences per iteration."""
    num_elites: int = 64
    """Elite sequences kept per iteration."""
    num_pi_trajs: int = 24
    """Policy-prior sequences mixed into the samples."""
    temperature: float = 0.5
    """MPPI temperature on elite values."""
    momentum: float = 0.1
    """Momentum on the planner mean between iterations."""
    min_std: float = 0.05
    """Lowest action std: policy-prior noise and planner floor."""
    std_start: float = 0.5
    """Exploration std floor at the start of training (linearly annealed)."""
    std_decay_steps: int = 25_000
    """Env steps over which the std floor decays from std_start to min_std."""
    horizon_decay_steps: int = 25_000
    """Env steps over which the planning horizon grows from 1 to ``horizon``."""
    train_iterations: int = 3
    """MPPI iterations when acting during training (planning cost dominates a CPU run)."""
    train_num_samples: int = 256
    """Samples when acting during training."""

    # --- schedule -------------------------------------------------------------
    seed_steps: int = 5_000
    """Env steps of uniform random actions before the first update."""


PRESETS: dict[str, dict] = {
    "paper": dict(enc_dim=256, mlp_dim=512, latent_dim=50),
    "small": dict(enc_dim=256, mlp_dim=256, latent_dim=32),
}


def make_config(preset: str = "small", **overrides) -> TDMPCConfig:
    if preset not in PRESETS:
        from cpr_edge.errors import CprError

        raise CprError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return dataclasses.replace(TDMPCConfig(**PRESETS[preset]), **overrides)


def config_from_dict(d: dict) -> TDMPCConfig:
    known = {f.name for f in dataclasses.fields(TDMPCConfig)}
    return TDMPCConfig(**{k: v for k, v in d.items() if k in known})
