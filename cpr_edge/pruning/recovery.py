"""Recovery after pruning: policy distillation (default), quantisation-aware distillation
(``cpr_edge.quant.qat``) or short TOLD fine-tuning."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cpr_edge.agents.tdmpc import TDMPC
from cpr_edge.importance.posthoc import replay_buffer

RECOVERIES = ("distill", "qat", "distill+qat", "finetune", "none")
"""``qat``: distillation through the int8 forward of the export (cpr_edge.quant.qat);
``distill+qat``: distillation, then that, as prune-and-flash recovers (each ``recover_steps``)."""


def distill(student: TDMPC, teacher: TDMPC, obs: np.ndarray, steps: int = 300, batch_size: int = 256,
            lr: float = 1e-3, seed: int = 0) -> list[float]:
    """The pruned encoder+pi imitates the unpruned one's tanh actions on replay observations.

    Only the deployed subnet trains (dynamics, reward and Q are untouched), so it is cheap;
    the planner's latent model no longer matches the new encoder exactly, MPC may suffer.
    """
    gen = torch.Generator().manual_seed(seed)
    obs_t = torch.as_tensor(obs, dtype=torch.float32)
    with torch.no_grad():
        teacher_actions = teacher.model.pi(teacher.model.encoder(obs_t))
    params = [*student.model.encoder.parameters(), *student.model.pi.parameters()]
    optim = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, obs_t.shape[0], (batch_size,), generator=gen)
        loss = F.mse_loss(student.model.pi(student.model.encoder(obs_t[idx])), teacher_actions[idx])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        losses.append(loss.item())
    student.model.eval()
    return losses


def finetune(agent: TDMPC, replay: dict, steps: int = 50, batch_size: int = 64, seed: int = 0) -> list[float]:
    """``steps`` TD-MPC updates (TOLD losses + policy loss, EMA target) on the replay sample."""
    buf = replay_buffer(agent, replay, seed)
    agent.make_optimizers()
    losses = []
    for _ in range(steps):
        batch = buf.sample(batch_size)
        info = agent.update(batch, step=10**9)
        buf.update_priorities(batch[4], info["priority"])
        losses.append(info["losses"]["total"])
    return losses
