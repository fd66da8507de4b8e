"""``cpr-edge import``: a checkpoint of the original TD-MPC (v1) code -> a cpr-edge checkpoint.

The original (nicklashansen/tdmpc) saves ``{'model': TOLD.state_dict(), 'model_target': ...}``
with ``torch.save``. Its TOLD holds six ``nn.Sequential``: ``_encoder`` (Linear, ELU, Linear),
``_dynamics``, ``_reward``, ``_pi`` (Linear, ELU, Linear, ELU, Linear), ``_Q1``, ``_Q2`` (Linear,
LayerNorm, Tanh, Linear, ELU, Linear). This project's TOLD (agents/told.py) has the same layers
at the same indices under ``encoder.net`` etc., so the weights map one to one by renaming; the
widths are read from the tensors and checked against the config when one is given. Everything
is checked before the slow part (rollouts for the replay sample) and nothing is written on a
refusal (docs/import.md).
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from cpr_edge.agents.checkpoint import Checkpoint, _brief, save_checkpoint
from cpr_edge.agents.config import PRESETS, make_config
from cpr_edge.agents.tdmpc import TDMPC
from cpr_edge.agents.told import Arch
from cpr_edge.errors import CprError
from cpr_edge.importers.tdmpc_v1_config import WIDTHS, config_action_repeat, config_fields, read_config_files

SOURCE = "tdmpc-v1"

LAYOUT = {
    "_encoder": ("encoder", (0, 2), ()),
    "_dynamics": ("dynamics", (0, 2, 4), ()),
    "_reward": ("reward", (0, 2, 4), ()),
    "_pi": ("pi", (0, 2, 4), ()),
    "_Q1": ("q1", (0, 3, 5), (1,)),
    "_Q2": ("q2", (0, 3, 5), (1,)),
}
"""Original module -> (this project's component, Linear indices, LayerNorm indices) in its Sequential."""

REPLAY_NOISE = 0.1
"""Gaussian noise on the policy-prior rollouts that fill the replay sample (as train.py tops up)."""


def expected_keys() -> list[str]:
    return [f"{mod}.{i}.{p}" for mod, (_, lin, ln) in LAYOUT.items() for i in sorted(lin + ln)
            for p in ("weight", "bias")]


def our_key(key: str) -> str:
    """``_Q1.3.weight`` -> ``q1.net.3.weight``."""
    mod, rest = key.split(".", 1)
    return f"{LAYOUT[mod][0]}.net.{rest}"


def rename(state: dict) -> dict:
    """Original TOLD state dict -> this project's, as float32 CPU copies."""
    return {our_key(k): v.detach().to("cpu", torch.float32).clone() for k, v in state.items()}


@dataclass
class Widths:
    obs_dim: int
    act_dim: int
    enc_dim: int
    mlp_dim: int
    latent_dim: int


def read_original(path: str | Path) -> tuple[dict, dict]:
    """``(model, model_target)`` state dicts of an original TD-MPC save, or a one-line CprError."""
    path = Path(path)
    if not path.is_file():
        raise CprError(f"TD-MPC checkpoint not found: {path}")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a foreign or damaged file
        raise CprError(f"not a readable TD-MPC checkpoint: {path} ({_brief(e)})")
    if isinstance(d, dict) and d.get("format") == "cpr-edge/checkpoint":
        raise CprError(f"{path} is already a cpr-edge checkpoint; use it directly (--checkpoint)")
    if not isinstance(d, dict) or not isinstance(d.get("model"), dict):
        raise CprError(f"not a TD-MPC (v1) checkpoint: {path} (expected the dict TDMPC.save writes, "
                       "with 'model' and 'model_target' state dicts)")
    if not isinstance(d.get("model_target"), dict):
        raise CprError(f"TD-MPC checkpoint {path} has no 'model_target' state dict (TDMPC.save writes both)")
    for name in ("model", "model_target"):
        check_layout(d[name], f"{path} '{name}'")
    return d["model"], d["model_target"]


def check_layout(state: dict, where: str) -> None:
    keys = set(state)
    enc = [k for k in keys if k.startswith("_encoder.")]
    if any(getattr(state[k], "ndim", 0) == 4 for k in enc):
        raise CprError(f"{where}: a pixel (convolutional) encoder; only state-observation TD-MPC models can be imported")
    missing = [k for k in expected_keys() if k not in keys]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CprError(f"{where} is not a TD-MPC (v1) TOLD state dict: missing {', '.join(missing[:3])}{more}")
    extra = sorted(keys - set(expected_keys()))
    if extra:
        raise CprError(f"{where}: unexpected keys {', '.join(extra[:3])} for a TD-MPC (v1) TOLD state dict")
    bad = [k for k in expected_keys() if not isinstance(state[k], torch.Tensor) or not state[k].is_floating_point()]
    if bad:
        raise CprError(f"{where}: {bad[0]} is not a float tensor")


def widths_of(state: dict) -> Widths:
    enc0, enc2, pi0, pi4 = (state[k].shape for k in ("_encoder.0.weight", "_encoder.2.weight",
                                                    "_pi.0.weight", "_pi.4.weight"))
    return Widths(obs_dim=int(enc0[1]), act_dim=int(pi4[0]), enc_dim=int(enc0[0]),
                  mlp_dim=int(pi0[0]), latent_dim=int(enc2[0]))


def check_shapes(state: dict, arch: Arch, where: str, against: str) -> None:
    """Every tensor against the shape the widths imply: a mismatch names the tensor and the widths."""
    from cpr_edge.agents.told import TOLD

    want = TOLD(arch).state_dict()
    for key, value in state.items():
        shape = list(want[our_key(key)].shape)
        if list(value.shape) != shape:
            raise CprError(f"{where}: {key} has shape {list(value.shape)}, {against} expects {shape}")


def check_config_widths(widths: Widths, fields: dict, config_names: str) -> None:
    for k in WIDTHS:
        if k in fields and fields[k] != getattr(widths, k):
            raise CprError(f"shape mismatch: the checkpoint has {k} {getattr(widths, k)}, "
                           f"the config ({config_names}) says {fields[k]}")


def preset_of(widths: Widths) -> str:
    """The preset with these widths; the original's defaults (``paper``) when neither matches."""
    for name, p in PRESETS.items():
        if all(p[k] == getattr(widths, k) for k in WIDTHS):
            return name
    return "paper"


def import_tdmpc_v1(src: str | Path, out: str | Path, task: str | None = None,
                    configs: list[str | Path] | None = None, action_repeat: int | None = None,
                    replay_sample: int = 10_000, seed: int = 1, eval_episodes: int = 2,
                    progress: Callable[[str], None] = lambda s: None) -> Checkpoint:
    """Import ``src`` and write the cpr-edge checkpoint ``out`` (docs/import.md)."""
    from cpr_edge.agents.evaluate import evaluate, summary
    from cpr_edge.agents.train import collect_rollouts
    from cpr_edge.envs import make_env, resolve_task
    from cpr_edge.envs.dmc import check_action_repeat

    t0 = time.time()
    if replay_sample < 1:
        raise CprError(f"--replay-sample must be at least 1 transition, not {replay_sample}")
    cfg_raw = read_config_files(list(configs or []))
    names = ", ".join(str(c) for c in configs or []) or "none"
    task = task or cfg_raw.get("task")
    if not task:
        raise CprError("no task: give --task (or a config with task:)")
    task = resolve_task(str(task))
    repeat = action_repeat if action_repeat is not None else config_action_repeat(cfg_raw)
    if repeat is not None:
        check_action_repeat(repeat)
    model_sd, target_sd = read_original(src)
    widths = widths_of(model_sd)
    env = make_env(task, seed, repeat)
    spec = env.spec
    if (widths.obs_dim, widths.act_dim) != (spec.obs_dim, spec.act_dim):
        raise CprError(f"shape mismatch: the checkpoint takes {widths.obs_dim} observations and gives "
                       f"{widths.act_dim} actions; {task} has {spec.obs_dim} and {spec.act_dim}")
    fields = config_fields(cfg_raw, spec.action_repeat)
    check_config_widths(widths, fields, names)
    cfg = make_config(preset_of(widths), **{**fields, **{k: getattr(widths, k) for k in WIDTHS}})
    arch = Arch.from_config(cfg, spec.obs_dim, spec.act_dim)
    against = f"the widths (enc_dim {cfg.enc_dim}, mlp_dim {cfg.mlp_dim}, latent_dim {cfg.latent_dim}) " \
              f"with {spec.obs_dim} observations and {spec.act_dim} actions"
    check_shapes(model_sd, arch, f"{src} 'model'", against)
    check_shapes(target_sd, arch, f"{src} 'model_target'", against)

    agent = TDMPC(cfg, arch, seed=seed, init=False)
    agent.model.load_state_dict(rename(model_sd))
    agent.target.load_state_dict(rename(target_sd))

    episodes = max(1, math.ceil(replay_sample / spec.episode_length))
    progress(f"replay sample: {episodes} episodes of the imported policy prior (noise {REPLAY_NOISE})")
    replay = collect_rollouts(agent, task, episodes, seed=seed + 50_000, noise=REPLAY_NOISE,
                              action_repeat=spec.action_repeat)
    evals = []
    if eval_episodes > 0:
        progress(f"policy-only return over {eval_episodes} episodes")
        row = summary(evaluate(agent, task, eval_episodes, "policy", seed, spec.action_repeat))
        evals.append({"env_steps": 0, "wall_s": round(time.time() - t0, 1), "policy": row["mean"]})
    src_path = Path(src)
    imported = {
        "from": SOURCE,
        "source": {"path": str(src_path.resolve()), "sha256": hashlib.sha256(src_path.read_bytes()).hexdigest()},
        "config_files": [str(Path(c).resolve()) for c in configs or []],
        "config": fields,
        "widths": asdict(widths),
        "replay": {"episodes": episodes, "transitions": int(replay["action"].shape[0] * replay["action"].shape[1]),
                   "noise": REPLAY_NOISE, "seed": seed + 50_000},
    }
    ck = Checkpoint(agent, task, preset_of(widths), spec.to_dict(), {"kind": "none"}, replay,
                    {"env_steps": 0, "seed": seed, "updates": 0, "wall_s": round(time.time() - t0, 1),
                     "evals": evals},
                    {"imported": imported})
    save_checkpoint(ck, out)
    ck.path = Path(out)
    return ck
