"""The config of an original TD-MPC (v1) run (nicklashansen/tdmpc ``cfgs/*.yaml``) as TDMPCConfig fields.

The original code does not save its config beside ``model.pt``; the user passes the YAML files
the run was started with (``cfgs/default.yaml``, then ``cfgs/tasks/DOMAIN.yaml``), merged in
order as the original's ``parse_cfg`` merges them. Only what shapes the model or the planner is
read; logging and wandb keys are ignored.
"""
from __future__ import annotations

import re
from pathlib import Path

from cpr_edge.errors import CprError

SAME_NAME = ("enc_dim", "mlp_dim", "latent_dim", "consistency_coef", "reward_coef", "value_coef", "rho",
             "discount", "tau", "update_freq", "lr", "grad_clip_norm", "batch_size", "per_alpha", "per_beta",
             "horizon", "iterations", "num_samples", "num_elites", "temperature", "momentum", "min_std")
"""Fields with the same name and meaning in both codes."""

AGENT_STEP_FIELDS = {"seed_steps": "seed_steps"}
"""Counted in agent steps by the original (its ``step`` advances by one per action); in env steps
here, so they are multiplied by the action repeat."""

WIDTHS = ("enc_dim", "mlp_dim", "latent_dim")

_LINEAR = re.compile(r"^\s*linear\(\s*([^,]+?)\s*,\s*([^,]+?)\s*,\s*([^,)]+?)\s*\)\s*$")
_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ARITH = re.compile(r"^\s*(\d+)\s*([+\-*/])\s*(\d+)\s*$")


def read_config_files(paths: list[str | Path]) -> dict:
    """The YAML mappings of ``paths`` merged in order (a later file wins), ``${key}`` resolved."""
    import yaml

    merged: dict = {}
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise CprError(f"TD-MPC config not found: {p}")
        try:
            d = yaml.safe_load(p.read_text())
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
            raise CprError(f"TD-MPC config {p} is not readable YAML: {type(e).__name__}") from None
        if d is None:
            continue
        if not isinstance(d, dict):
            raise CprError(f"TD-MPC config {p} is not a mapping of keys to values")
        merged.update(d)
    return {k: _resolve(v, merged) for k, v in merged.items()}


def _resolve(value, cfg: dict, depth: int = 0):
    """OmegaConf-style ``${key}`` interpolation and the original's ``a/b`` arithmetic."""
    if not isinstance(value, str) or depth > 5:
        return value
    if _INTERP.search(value):
        whole = _INTERP.fullmatch(value.strip())
        if whole and whole.group(1) in cfg:
            return _resolve(cfg[whole.group(1)], cfg, depth + 1)
        value = _INTERP.sub(lambda m: str(_resolve(cfg.get(m.group(1), m.group(0)), cfg, depth + 1)), value)
    m = _ARITH.match(value)
    if m:
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        r = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else float("nan")}[op]
        return int(r) if float(r).is_integer() else r
    return value


def _number(cfg: dict, key: str, kind=float):
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise CprError(f"TD-MPC config {key}: {cfg[key]!r} is not a number") from None
    if kind is int:
        if float(v) != int(v):
            raise CprError(f"TD-MPC config {key}: {cfg[key]!r} is not a whole number")
        return int(v)
    return float(v)


def _schedule(cfg: dict, key: str) -> tuple[float, float, float] | None:
    """``linear(start, end, duration)`` or a constant, as the original's ``linear_schedule`` reads it."""
    v = cfg.get(key)
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v), float(v), 1.0
    m = _LINEAR.match(str(v))
    if not m:
        raise CprError(f"TD-MPC config {key}: {v!r} is neither a number nor linear(start, end, duration)")
    try:
        return tuple(float(_resolve(g, cfg)) for g in m.groups())
    except ValueError:
        raise CprError(f"TD-MPC config {key}: {v!r} has a value that is not a number") from None


def config_fields(cfg: dict, action_repeat: int) -> dict:
    """TDMPCConfig overrides from the original's config (docs/import.md has the table)."""
    if cfg.get("modality", "state") != "state":
        raise CprError(f"TD-MPC config modality {cfg['modality']!r}: only state observations can be imported")
    out: dict = {}
    for key in SAME_NAME:
        if key in cfg:
            kind = int if key in WIDTHS + ("update_freq", "batch_size", "horizon", "iterations",
                                           "num_samples", "num_elites") else float
            out[key] = _number(cfg, key, kind)
    for theirs, ours in AGENT_STEP_FIELDS.items():
        if theirs in cfg:
            out[ours] = _number(cfg, theirs, int) * action_repeat
    if "mixture_coef" in cfg:
        samples = out.get("num_samples", 512)
        out["num_pi_trajs"] = int(_number(cfg, "mixture_coef") * samples)
    std = _schedule(cfg, "std_schedule")
    if std:
        out["std_start"], out["std_decay_steps"] = std[0], int(std[2] * action_repeat)
    hor = _schedule(cfg, "horizon_schedule")
    if hor:
        out["horizon_decay_steps"] = int(hor[2] * action_repeat)
    return out


def config_action_repeat(cfg: dict) -> int | None:
    if "action_repeat" not in cfg or cfg["action_repeat"] in (None, "???"):
        return None
    return _number(cfg, "action_repeat", int)
