"""Quantisation-aware recovery: the deployed encoder + pi imitate a float teacher through the
int8 forward of ``FakeQuantPolicy``, so the weights learn to live with the int8 grid.

It is distillation (as ``cpr_edge.pruning.recovery.distill``) with two differences: the
student runs fake-quantised, and its activation ranges are recomputed from the float model
on the calibration observations every ``recalibrate_every`` steps and at the end, by the TF
converter's own rule; the converter, calibrating the trained weights on the same
observations, then arrives at the same ranges (docs/quantization.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cpr_edge.errors import CprError
from cpr_edge.export.onnx_graph import normalize
from cpr_edge.quant.fake_quant import FakeQuantPolicy


@dataclass
class QatConfig:
    """Quantisation-aware recovery settings."""

    steps: int = 1500
    """Optimiser steps."""
    batch_size: int = 256
    """Observations per step, drawn from the training split."""
    lr: float = 3e-4
    """Adam learning rate (a fine-tune of a trained policy: lower than plain distillation's)."""
    recalibrate_every: int = 25
    """Steps between recomputations of the activation ranges."""
    seed: int = 0
    activations: str = "int8"
    """``int8``: the whole int8 forward (bit-exact to TFLM); ``int16`` (the 16x8 export): int8
    weights and every activation rounded to its symmetric int16 grid (a rounding model of
    the 16x8 kernels, not bit-exact: their errors are ~256x below int8's)."""
    granularity: str = "per-channel"
    """The export's weight scales: per output channel or one per tensor."""
    float_weight: float = 1.0
    """Weight of the float student's own imitation loss: keeps the checkpoint's float policy
    the faithful float controller that its quantised model is measured against."""


def teacher_actions(teacher, normalization: dict | None, obs: np.ndarray) -> torch.Tensor:
    """The float teacher's tanh-mean actions on raw observations (its own normalisation)."""
    x = torch.as_tensor(normalize(obs, normalization or {"kind": "none"}), dtype=torch.float32)
    with torch.no_grad():
        return teacher.model.pi(teacher.model.encoder(x))


def quant_aware_distill(student, teacher, normalization: dict | None, teacher_normalization: dict | None,
                        train_obs: np.ndarray, calib_obs: np.ndarray, offset: np.ndarray, gain: np.ndarray,
                        cfg: QatConfig | None = None) -> dict:
    """Train ``student``'s encoder and pi in place; returns losses and the final ranges.

    ``train_obs`` [N, obs_dim] raw observations to imitate on; ``calib_obs`` the export's
    calibration observations (raw); ``offset``/``gain`` the export's input prescale.
    """
    cfg = cfg or QatConfig()
    gen = torch.Generator().manual_seed(cfg.seed)
    fq = FakeQuantPolicy(student.model.encoder, student.model.pi, normalization, offset, gain, cfg.granularity)
    if cfg.activations not in ("int8", "int16"):
        raise CprError(f"quantisation-aware activations must be int8 or int16, not {cfg.activations!r}")
    bits = 16 if cfg.activations == "int16" else 8
    offset, gain = np.asarray(offset, np.float32), np.asarray(gain, np.float32)
    x_train = torch.as_tensor((np.asarray(train_obs, np.float32) - offset) * gain)
    x_calib = torch.as_tensor((np.asarray(calib_obs, np.float32) - offset) * gain)
    target = teacher_actions(teacher, teacher_normalization, np.asarray(train_obs, np.float32))
    params = [*student.model.encoder.parameters(), *student.model.pi.parameters()]
    optim = torch.optim.Adam(params, lr=cfg.lr)
    losses = []
    calib_target = teacher_actions(teacher, teacher_normalization, np.asarray(calib_obs, np.float32))
    before = _objective(fq, x_calib, bits, calib_target, cfg.float_weight)
    start = [p.detach().clone() for p in params]
    student.model.train()
    for step in range(cfg.steps):
        if step % cfg.recalibrate_every == 0:
            fq.calibrate(x_calib, bits)
            fq.only = {"weights", *range(len(fq.qparams))} if bits == 16 else None
        idx = torch.randint(0, x_train.shape[0], (cfg.batch_size,), generator=gen)
        loss = F.mse_loss(fq(x_train[idx]), target[idx])
        if cfg.float_weight > 0:
            loss = loss + cfg.float_weight * F.mse_loss(fq.tensors(x_train[idx], quantize=False)[-1], target[idx])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        losses.append(loss.item())
    student.model.eval()
    after = _objective(fq, x_calib, bits, calib_target, cfg.float_weight)
    reverted = after > before  # training made it worse (it can: reacher-easy int8): keep the start
    if reverted:
        with torch.no_grad():
            for p, p0 in zip(params, start):
                p.copy_(p0)
    ranges = fq.calibrate(x_calib, bits)
    fq.only = None
    return {"losses": losses, "ranges": ranges, "policy": fq, "objective_before": before,
            "objective_after": after, "reverted": bool(reverted)}


@torch.no_grad()
def _objective(fq: FakeQuantPolicy, x: torch.Tensor, bits: int, target: torch.Tensor, float_weight: float) -> float:
    """The training loss on the calibration observations (training split), ranges recomputed."""
    fq.calibrate(x, bits)
    fq.only = {"weights", *range(len(fq.qparams))} if bits == 16 else None
    loss = F.mse_loss(fq(x), target) + float_weight * F.mse_loss(fq.tensors(x, quantize=False)[-1], target)
    fq.only = None
    return float(loss)


def qat_recover(student, teacher, ck, prescale: str, cfg: QatConfig | None = None,
                teacher_normalization: dict | None = None) -> dict:
    """``quant_aware_distill`` on a checkpoint's own data: trains on the training split,
    calibrates on the export's calibration observations with the export's ``prescale``
    kind. Returns what the checkpoint records under ``extra["quantization"]``."""
    from cpr_edge.export.onnx_graph import input_prescale
    from cpr_edge.quant.calibration import split_observations, train_and_held

    cfg = cfg or QatConfig()
    train, _ = train_and_held(ck)
    calib, _ = split_observations(ck)
    offset, gain = input_prescale(calib, prescale)
    norm = teacher_normalization if teacher_normalization is not None else ck.normalization
    out = quant_aware_distill(student, teacher, ck.normalization, norm, train, calib, offset, gain, cfg)
    losses = out["losses"]
    return {"aware": True, "activations": cfg.activations, "granularity": cfg.granularity,
            "input_prescale": prescale, "steps": cfg.steps,
            "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed,
            "loss_first": losses[0] if losses else None, "loss_last": float(np.mean(losses[-20:])) if losses else None,
            "objective_before": out["objective_before"], "objective_after": out["objective_after"],
            "reverted": out["reverted"],
            "ranges": [[float(s), int(z)] for s, z in out["ranges"]]}
