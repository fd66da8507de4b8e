"""Checkpoint files: one ``torch.save`` dict of plain types and tensors (see docs/checkpoint.md).

Loaded only with ``weights_only=True``; modules are rebuilt from the saved layer widths.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cpr_edge.agents.config import TDMPCConfig, config_from_dict
from cpr_edge.agents.tdmpc import TDMPC
from cpr_edge.agents.told import Arch
from cpr_edge.errors import CprError
from cpr_edge.fileio import atomic_path

FORMAT = "cpr-edge/checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: the agent plus everything later stages need."""

    agent: TDMPC
    task: str
    preset: str
    spec: dict
    """Environment spec: obs_keys, obs_dim, act_dim, act_low/high, action_repeat, control_timestep."""
    normalization: dict
    replay: dict[str, np.ndarray]
    """Replay sample: obs [E,T+1,O], action [E,T,A], reward [E,T] (float32)."""
    training: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    """Optional sections written by later stages (``importance``, ``pruning``)."""
    path: Path | None = None

    @property
    def arch(self) -> Arch:
        return self.agent.arch

    @property
    def cfg(self) -> TDMPCConfig:
        return self.agent.cfg

    def replay_obs(self) -> np.ndarray:
        """All replay observations, flattened to [N, obs_dim]."""
        return self.replay["obs"].reshape(-1, self.replay["obs"].shape[-1])


def to_payload(ck: Checkpoint) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "task": ck.task,
        "preset": ck.preset,
        "config": dataclasses.asdict(ck.cfg),
        "arch": ck.arch.to_dict(),
        "spec": ck.spec,
        "normalization": ck.normalization,
        "model": ck.agent.model.state_dict(),
        "target": ck.agent.target.state_dict(),
        "replay": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ck.replay.items()},
        "training": ck.training,
        **ck.extra,
    }


def save_checkpoint(ck: Checkpoint, path: str | Path) -> Path:
    """Write atomically: a crash mid-save leaves any previous file intact."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(to_payload(ck), tmp)
    return path


def _brief(e: Exception) -> str:
    """The first sentence of ``e`` (never cut mid-sentence: a long one ends at a word with …)."""
    import re

    first = re.split(r"(?<=[.!?])\s", (str(e).strip().splitlines() or [""])[0])[0]
    if len(first) > 160:
        first = first[:160].rsplit(" ", 1)[0] + " …"
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CprError(f"checkpoint not found: {path}")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged or foreign file
        raise CprError(f"not a readable checkpoint: {path} ({_brief(e)})")
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise CprError(f"not a cpr-edge checkpoint: {path} (no '{FORMAT}' format tag)")
    if d.get("version") != VERSION:
        raise CprError(f"unsupported checkpoint version {d.get('version')!r} in {path}; this build reads {VERSION}")
    try:
        cfg = config_from_dict(d["config"])
        arch = Arch(**d["arch"])
        agent = TDMPC(cfg, arch, init=False)
        agent.model.load_state_dict(d["model"])
        agent.target.load_state_dict(d["target"])
        agent.make_optimizers()
        replay = {k: v.numpy() for k, v in d["replay"].items()}
    except (KeyError, TypeError, RuntimeError) as e:
        raise CprError(f"damaged checkpoint {path}: {_brief(e)}")
    known = {"format", "version", "task", "preset", "config", "arch", "spec", "normalization",
             "model", "target", "replay", "training"}
    extra = {k: v for k, v in d.items() if k not in known}
    return Checkpoint(agent, d["task"], d["preset"], d["spec"], d["normalization"], replay,
                      d.get("training", {}), extra, path)


def shipped_checkpoint_path(task: str, preset: str = "small") -> Path:
    """Path of a checkpoint shipped as package data."""
    ref = resources.files("cpr_edge") / "data" / "checkpoints" / f"{task}_{preset}.pt"
    path = Path(str(ref))
    if not path.is_file():
        available = sorted(p.name[:-3] for p in path.parent.glob("*.pt"))
        raise CprError(f"no shipped checkpoint for task {task!r}, preset {preset!r}; shipped: {', '.join(available) or 'none'}")
    return path


def resolve_checkpoint(checkpoint: str | None, task: str | None, preset: str | None) -> Path:
    """``--checkpoint PATH`` means a file; ``--task T [--preset P]`` means the shipped one."""
    if checkpoint:
        return Path(checkpoint)
    return shipped_checkpoint_path(task or "cartpole-swingup", preset or "small")
