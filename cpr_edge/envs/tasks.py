"""Task names (``domain-task``) of the dm_control suite and TD-MPC (v1)'s action repeat per domain.

Kept free of heavy imports at module level: the command-line parser imports this module, and
``cpr-edge --help`` must not load dm_control. The suite is enumerated only when a name is resolved,
inside a command.

Names: dm_control's own domain and task names joined by one dash, ``ball_in_cup-catch``,
``finger-turn_hard``, ``humanoid_CMU-stand``. Also accepted, when they point at exactly one task:
every underscore written as a dash (``ball-in-cup-catch``, TD-MPC's ``finger-turn-hard``), the
lower-case form, and TD-MPC's ``cup`` for ``ball_in_cup``. The canonical name is what checkpoints
and file names carry.
"""
from __future__ import annotations

import difflib
import functools

TDMPC_ACTION_REPEAT: dict[str, int] = {"cartpole": 8, "walker": 2, "humanoid": 2, "dog": 2}
"""Domains with their own ``action_repeat`` in TD-MPC v1's ``cfgs/tasks/*.yaml``; see docs/tasks.md."""
DEFAULT_ACTION_REPEAT = 4
"""TD-MPC v1's ``cfgs/tasks/default.yaml``: every other domain."""

TASKS: dict[str, int] = {t: TDMPC_ACTION_REPEAT.get(t.split("-")[0], DEFAULT_ACTION_REPEAT)
                         for t in ("cartpole-swingup", "pendulum-swingup", "reacher-easy",
                                   "cheetah-run", "walker-walk")}
"""The tasks the project's own tests, benchmarks and shipped checkpoints use, with their default
action repeat. Any flat suite task trains (``resolve_task``); this is not the list of what works."""

EXAMPLES = ("cartpole-swingup", "walker-walk", "cheetah-run", "hopper-hop", "finger-spin",
            "ball_in_cup-catch")

_TDMPC_DOMAIN_ALIASES = {"cup": "ball_in_cup"}


def default_action_repeat(task: str) -> int:
    """TD-MPC v1's action repeat for a canonical ``domain-task`` name."""
    return TDMPC_ACTION_REPEAT.get(task.split("-", 1)[0], DEFAULT_ACTION_REPEAT)


@functools.lru_cache(maxsize=1)
def suite_tasks() -> dict[str, tuple[str, str]]:
    """Every task of ``dm_control.suite.ALL_TASKS`` as ``{"domain-task": (domain, task)}``."""
    import os

    os.environ.setdefault("MUJOCO_GL", "disable")  # state observations only: no renderer
    from dm_control import suite

    return {f"{d}-{t}": (d, t) for d, t in suite.ALL_TASKS}


def _spellings(canonical: str) -> set[str]:
    domain, task = canonical.split("-", 1)
    forms = {canonical, canonical.lower(), canonical.replace("_", "-"), canonical.replace("_", "-").lower()}
    for alias, full in _TDMPC_DOMAIN_ALIASES.items():
        if domain == full:
            forms |= {f"{alias}-{task}", f"{alias}-{task.replace('_', '-')}"}
    return forms


@functools.lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    """Alternative spelling -> canonical name, keeping only spellings that name one task."""
    seen: dict[str, set[str]] = {}
    for canonical in suite_tasks():
        for form in _spellings(canonical):
            seen.setdefault(form, set()).add(canonical)
    return {form: next(iter(c)) for form, c in seen.items() if len(c) == 1}


def close_matches(name: str, candidates, n: int = 4) -> list[str]:
    return difflib.get_close_matches(name, sorted(candidates), n=n, cutoff=0.6)


def resolve_task(name: str) -> str:
    """The canonical name of a suite task, or a one-line CprError naming close matches."""
    from cpr_edge.errors import CprError

    tasks = suite_tasks()
    if name in tasks:
        return name
    alias = _aliases().get(name) or _aliases().get(name.lower())
    if alias:
        return alias
    near = close_matches(name, tasks) or close_matches(name.lower().replace("_", "-"), _aliases())
    near = list(dict.fromkeys(_aliases().get(m, m) for m in near))
    hint = f"did you mean {', '.join(near)}?" if near else f"e.g. {', '.join(EXAMPLES)}"
    raise CprError(f"unknown task {name!r} (dm_control suite names are domain-task): {hint} "
                   f"(all: docs/tasks.md)")
