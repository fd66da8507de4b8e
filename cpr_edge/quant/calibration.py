"""Calibration, training and held-back observations from a checkpoint's replay sample.

The export calibrates its int8 ranges on one part and measures the action error on the
other; quantisation-aware and plain recovery train on the first part only.
"""
from __future__ import annotations

import numpy as np

from cpr_edge.agents.checkpoint import Checkpoint
from cpr_edge.errors import CprError

MIN_CALIBRATION = 32
"""Fewer calibration observations than this give meaningless int8 ranges: refuse."""
MAX_CALIBRATION = 1000
"""Calibration cost grows linearly; a thousand spread-out observations pin the ranges."""
MAX_HELD_OUT = 1000


def kept_episodes(episodes: int) -> int:
    """Of two or more episodes, all but the last fifth (at least one held back) train."""
    return episodes - max(1, episodes // 5)


def train_and_held(ck: Checkpoint) -> tuple[np.ndarray, np.ndarray]:
    """All replay observations split into training and held-back ones, never overlapping.

    With two or more episodes the last fifth of the episodes (at least one) is held back;
    with one episode every other step is. Recovery trains on the first part only, so the
    held-back action error of an export stays out of sample.
    """
    obs = ck.replay.get("obs") if ck.replay else None
    if obs is None or np.asarray(obs).size == 0:
        raise CprError("no calibration data: the checkpoint has no replay observations")
    obs = np.asarray(obs, dtype=np.float32)
    if obs.ndim != 3 or obs.shape[-1] != ck.arch.obs_dim:
        raise CprError(f"no usable calibration data: replay obs has shape {list(obs.shape)}, "
                       f"expected [episodes, steps, {ck.arch.obs_dim}]")
    if not np.all(np.isfinite(obs)):
        raise CprError("calibration data is not finite: the replay observations contain NaN or inf")
    dim = obs.shape[-1]
    if obs.shape[0] >= 2:
        keep = kept_episodes(obs.shape[0])
        return obs[:keep].reshape(-1, dim), obs[keep:].reshape(-1, dim)
    flat = obs.reshape(-1, dim)
    return flat[0::2], flat[1::2]


def training_episodes(replay: dict) -> dict:
    """The replay sample without its held-back episodes (as ``train_and_held`` splits them), for
    recoveries that train on whole episodes (TOLD fine-tuning)."""
    episodes = np.asarray(replay["obs"]).shape[0]
    if episodes < 2:
        return replay
    return {k: np.asarray(v)[:kept_episodes(episodes)] for k, v in replay.items()}


def split_observations(ck: Checkpoint) -> tuple[np.ndarray, np.ndarray]:
    """Calibration and held-back observations (``train_and_held``), evenly thinned to their caps."""
    calib, held = train_and_held(ck)
    if len(calib) < MIN_CALIBRATION or len(held) < 1:
        raise CprError(f"not enough calibration data: {len(calib)} replay observations "
                       f"(need at least {MIN_CALIBRATION} plus held-back ones)")
    return _thin(calib, MAX_CALIBRATION), _thin(held, MAX_HELD_OUT)


def _thin(x: np.ndarray, cap: int) -> np.ndarray:
    if len(x) <= cap:
        return x
    return x[np.linspace(0, len(x) - 1, cap).round().astype(int)]
