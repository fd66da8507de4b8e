"""dm_control (MuJoCo) suite tasks as flat-vector environments with action repeat.

Observation order: the keys of the task's ``observation_spec()`` in the order the suite
defines them, each flattened row-major and concatenated. The order is recorded in
checkpoints (``spec.obs_keys``) so that a board receives exactly the same layout.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

os.environ.setdefault("MUJOCO_GL", "disable")

import numpy as np

from cpr_edge.envs.tasks import EXAMPLES, close_matches, default_action_repeat, resolve_task, suite_tasks
from cpr_edge.errors import CprError

EPISODE_ENV_STEPS = 1000


@dataclass
class EnvSpec:
    task: str
    obs_keys: list[tuple[str, list[int]]]
    obs_dim: int
    act_dim: int
    act_low: list[float]
    act_high: list[float]
    action_repeat: int
    control_timestep: float
    """Seconds of simulated time per agent step (physics dt x action repeat)."""
    episode_length: int
    """Agent steps per episode."""

    def to_dict(self) -> dict:
        return {**self.__dict__, "obs_keys": [[k, list(s)] for k, s in self.obs_keys]}


class DMCEnv:
    """A suite task: ``reset() -> obs``, ``step(a) -> (obs, reward, done)``.

    Actions come in [-1, 1] (the policy's range) and are mapped affinely to the task's
    bounds, then clipped to them. Rewards are summed over the action repeat.
    """

    def __init__(self, task: str, seed: int = 0, action_repeat: int | None = None):
        task = resolve_task(task)
        action_repeat = default_action_repeat(task) if action_repeat is None else action_repeat
        check_action_repeat(action_repeat)
        from dm_control import suite

        domain, name = suite_tasks()[task]
        self._env = suite.load(domain, name, task_kwargs={"random": seed})
        unusable = unusable_reason(self._env)
        if unusable:
            raise CprError(f"task {task} is not usable: {unusable}; {_usable_near(task)}")
        self.task = task
        self.action_repeat = action_repeat
        aspec = self._env.action_spec()
        self._low = np.asarray(aspec.minimum, dtype=np.float64)
        self._high = np.asarray(aspec.maximum, dtype=np.float64)
        ospec = self._env.observation_spec()
        keys = [(k, list(v.shape)) for k, v in ospec.items()]
        obs_dim = int(sum(int(np.prod(s)) if s else 1 for _, s in keys))
        self.spec = EnvSpec(
            task=task, obs_keys=keys, obs_dim=obs_dim, act_dim=int(aspec.shape[0]),
            act_low=self._low.tolist(), act_high=self._high.tolist(),
            action_repeat=self.action_repeat,
            control_timestep=float(self._env.control_timestep()) * self.action_repeat,
            episode_length=EPISODE_ENV_STEPS // self.action_repeat)
        self._t = 0

    def _flat(self, timestep) -> np.ndarray:
        return np.concatenate([np.asarray(timestep.observation[k], dtype=np.float32).ravel()
                               for k, _ in self.spec.obs_keys])

    def reset(self) -> np.ndarray:
        self._t = 0
        return self._flat(self._env.reset())

    def step(self, action) -> tuple[np.ndarray, float, bool]:
        a = np.asarray(action, dtype=np.float64).reshape(self.spec.act_dim)
        if not np.all(np.isfinite(a)):
            raise CprError("action is not finite")
        a = np.clip(self._low + (np.clip(a, -1, 1) + 1.0) * 0.5 * (self._high - self._low),
                    self._low, self._high)
        reward = 0.0
        for _ in range(self.action_repeat):
            ts = self._env.step(a)
            reward += float(ts.reward or 0.0)
            if ts.last():
                break
        self._t += 1
        return self._flat(ts), reward, bool(ts.last())


def make_env(task: str, seed: int = 0, action_repeat: int | None = None) -> DMCEnv:
    """``action_repeat`` None: TD-MPC's default for the task's domain (docs/tasks.md)."""
    return DMCEnv(task, seed, action_repeat)


def check_action_repeat(action_repeat: int) -> None:
    # the replay buffer holds fixed-length episodes: the repeat must divide the 1000 env steps
    if not isinstance(action_repeat, int) or action_repeat < 1 or EPISODE_ENV_STEPS % action_repeat:
        divisors = [d for d in range(1, 11) if EPISODE_ENV_STEPS % d == 0]
        raise CprError(f"action repeat must be a whole divisor of {EPISODE_ENV_STEPS} env steps "
                       f"(e.g. {', '.join(map(str, divisors))}), not {action_repeat!r}")


def unusable_reason(env) -> str | None:
    """Why a loaded suite environment cannot be used here (None: it can)."""
    shaped = [f"{k} {tuple(v.shape)}" for k, v in env.observation_spec().items() if len(v.shape) > 1]
    if shaped:
        return f"observations are not flat ({', '.join(shaped)}; only 1-D and scalar entries are supported)"
    if env._step_limit != EPISODE_ENV_STEPS:  # lqr: no time limit and it ends early at the goal
        return (f"episodes are not {EPISODE_ENV_STEPS} control steps (time limit "
                f"{env._step_limit} steps); training keeps fixed-length episodes")
    return None


@functools.lru_cache(maxsize=None)
def is_usable(task: str) -> bool:
    from dm_control import suite

    return unusable_reason(suite.load(*suite_tasks()[task])) is None


def _usable_near(task: str) -> str:
    near = [t for t in close_matches(task, [t for t in suite_tasks() if t != task]) if is_usable(t)]
    return f"usable tasks near it: {', '.join(near)}" if near else f"usable tasks: e.g. {', '.join(EXAMPLES)}"
