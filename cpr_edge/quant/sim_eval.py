"""Policy-only returns of the *quantised* encoder + pi, in simulation, without a board.

The policy acts through ``FakeQuantPolicy`` calibrated as ``cpr-edge export`` calibrates
(the checkpoint's calibration observations, the export's input prescale, the converter's range
rule). With int8 activations the action is the integer computation of TFLM's kernels, bit for
bit on the same ranges (tests/test_fake_quant.py); the ranges themselves agree with the
converter's to float32 rounding, which can move an output by one LSB now and then. With int16
activations (the 16x8 export) every tensor is rounded to its grid: a model of the 16x8 kernels,
whose errors are ~256x below int8's, not bit-exact. So a sweep can ask what the board would
return at every cell for about the cost of a float evaluation, without exporting.
"""
from __future__ import annotations

import numpy as np
import torch

from cpr_edge.agents.evaluate import evaluate_actor
from cpr_edge.errors import CprError

ACTIVATIONS = ("int8", "int16")


def quantized_policy(agent, ck, activations: str = "int8", prescale: str = "standardize"):
    """``obs -> action`` through the quantised forward of ``agent``'s encoder + pi, calibrated on
    ``ck``'s calibration observations (``ck`` supplies the replay sample and normalisation)."""
    from cpr_edge.export.onnx_graph import input_prescale
    from cpr_edge.quant.calibration import split_observations
    from cpr_edge.quant.fake_quant import FakeQuantPolicy, int8_forward

    if activations not in ACTIVATIONS:
        raise CprError(f"quantised activations must be one of {', '.join(ACTIVATIONS)}, not {activations!r}")
    calib, _ = split_observations(ck)
    offset, gain = input_prescale(calib, prescale)
    fq = FakeQuantPolicy(agent.model.encoder, agent.model.pi, ck.normalization, offset, gain)
    bits = 16 if activations == "int16" else 8
    with torch.no_grad():
        fq.calibrate(torch.as_tensor((calib - offset) * gain), bits)
    if bits == 16:  # every tensor and the weights on their grids (the 16x8 rounding model)
        fq.only = {"weights", *range(len(fq.qparams))}

    s_out, z_out = fq.qparams[-1]

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        x = ((np.asarray(obs, np.float32) - offset) * gain)[None]
        if bits == 8:  # the integer path, dequantised as the board dequantises the action
            return ((int8_forward(fq, x)[-1][0] - z_out) * s_out).astype(np.float32)
        return fq(torch.as_tensor(x))[0].numpy()

    return act


def quantized_returns(agent, ck, task: str, episodes: int, seed: int = 0, activations: str = "int8",
                      action_repeat: int | None = None, prescale: str = "standardize") -> list[float]:
    """Returns of ``episodes`` policy-only episodes through the quantised forward, on the same
    episode seeds as ``agents.evaluate.evaluate`` (so they pair with the float returns)."""
    act = quantized_policy(agent, ck, activations, prescale)
    return [float(r) for r in evaluate_actor(lambda obs, t: act(obs), task, episodes, seed, action_repeat)]
