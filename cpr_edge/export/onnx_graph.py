"""Stage 1: the deployed controller as a float ONNX graph (observation -> action).

The observation normalisation of the checkpoint is folded into the first Linear layer, so
the exported model takes raw observations, exactly what the board reads from its sensors.
"""
from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import numpy as np
import torch

from cpr_edge.agents.checkpoint import Checkpoint
from cpr_edge.agents.told import DeployedPolicy
from cpr_edge.errors import CprError

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "obs", "action"

NO_INT8_ON_TFLM = {
    "Mish": "Mish needs EXP and LOG (softplus), which TFLM runs only in float",
    "Softplus": "Softplus needs EXP and LOG, which TFLM runs only in float",
    "Exp": "EXP has only a float kernel in TFLM",
    "Log": "LOG has only a float kernel in TFLM",
}
"""ONNX ops that cannot become int8 TFLM ops: refused before the slow conversion."""


def normalize(obs: np.ndarray, normalization: dict) -> np.ndarray:
    """What the host applies before the encoder (docs/checkpoint.md ``normalization``)."""
    kind = normalization.get("kind", "none")
    if kind == "none":
        return obs
    if kind == "affine":
        return (obs - np.asarray(normalization["mean"], np.float32)) / np.asarray(normalization["std"], np.float32)
    raise CprError(f"unsupported observation normalisation kind {kind!r} (known: none, affine)")


def input_prescale(calib: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension ``(offset, gain)``: the board feeds ``(obs - offset) * gain`` to the model.

    ``none`` is the identity (raw observations). ``standardize`` uses the calibration mean and
    standard deviation: int8 input quantisation is one scale for the whole observation, so
    without it a dimension with a small range (an angle's cosine next to a velocity) gets only
    a handful of levels.
    """
    dim = calib.shape[1]
    if kind == "none":
        return np.zeros(dim, np.float32), np.ones(dim, np.float32)
    if kind == "standardize":
        std = calib.std(0)
        gain = np.where(std > 1e-6, 1.0 / np.maximum(std, 1e-6), 1.0)
        return calib.mean(0).astype(np.float32), gain.astype(np.float32)
    raise CprError(f"unknown input prescale {kind!r} (known: none, standardize)")


def deployed_policy(ck: Checkpoint, prescale: tuple[np.ndarray, np.ndarray] | None = None) -> DeployedPolicy:
    """A float copy of encoder -> pi with the normalisation folded into the first layer.

    With ``prescale=(offset, gain)`` the model takes ``(obs - offset) * gain`` instead of obs.
    """
    act = ck.arch.activation
    if act.capitalize() in NO_INT8_ON_TFLM:
        raise CprError(f"cannot export: activation {act.capitalize()} cannot run int8 on TFLM "
                       f"({NO_INT8_ON_TFLM[act.capitalize()]})")
    model = DeployedPolicy(copy.deepcopy(ck.agent.model.encoder), copy.deepcopy(ck.agent.model.pi)).eval()
    norm = ck.normalization or {"kind": "none"}
    kind = norm.get("kind", "none")
    if kind == "none":
        return _unfold_prescale(model, prescale)
    if kind != "affine":
        raise CprError(f"unsupported observation normalisation kind {kind!r} (known: none, affine)")
    mean = torch.as_tensor(np.asarray(norm["mean"], np.float32))
    std = torch.as_tensor(np.asarray(norm["std"], np.float32))
    if mean.shape != (ck.arch.obs_dim,) or std.shape != (ck.arch.obs_dim,):
        raise CprError(f"normalisation mean/std must have obs_dim={ck.arch.obs_dim} entries")
    if not torch.all(std > 0):
        raise CprError("normalisation std must be positive in every entry")
    first = model.encoder.net[0]
    with torch.no_grad():
        # W((x - m) / s) + b = (W / s) x + (b - (W / s) m)
        first.weight.div_(std)
        first.bias.sub_(first.weight @ mean)
    return _unfold_prescale(model, prescale)


def _unfold_prescale(model: DeployedPolicy, prescale) -> DeployedPolicy:
    if prescale is None:
        return model
    offset, gain = (torch.as_tensor(np.asarray(v, np.float32)) for v in prescale)
    first = model.encoder.net[0]
    with torch.no_grad():
        # W obs + b with obs = x / gain + offset: (W / gain) x + (b + W offset)
        first.bias.add_(first.weight @ offset)
        first.weight.div_(gain)
    return model


def reference_actions(ck: Checkpoint, obs: np.ndarray) -> np.ndarray:
    """PyTorch float actions of the checkpoint itself (normalise, then encoder -> pi)."""
    model = DeployedPolicy(ck.agent.model.encoder, ck.agent.model.pi).eval()
    with torch.no_grad():
        x = torch.as_tensor(normalize(obs, ck.normalization or {"kind": "none"}), dtype=torch.float32)
        return model(x).numpy()


def export_onnx(model: torch.nn.Module, obs_dim: int, path: Path) -> list[str]:
    """Write the ONNX graph (TorchScript exporter, batch 1); return its op types in order."""
    import onnx

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy-exporter deprecation notice
        torch.onnx.export(model, torch.zeros(1, obs_dim), buf, dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    graph = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(graph)
    ops = [n.op_type for n in graph.graph.node]
    for op in ops:
        if op in NO_INT8_ON_TFLM:
            raise CprError(f"cannot export: ONNX op {op} cannot run int8 on TFLM ({NO_INT8_ON_TFLM[op]})")
    if "MatMul" in ops:
        raise CprError("Linear layers came out as MatMul instead of Gemm; FULLY_CONNECTED needs Gemm")
    path.write_bytes(buf.getvalue())
    return ops
