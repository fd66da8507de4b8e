"""dm_control (MuJoCo) suite tasks as flat-vector environments with action repeat.

Observation order: the keys of the task's ``observation_spec()`` in the order the suite
defines them, each flattened row-major and concatenated. The order is recorded in
checkpoints (``spec.obs_keys``) so that a board receives exactly the same layout.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("MUJOCO_GL", "disable")

import numpy as np

from cpr_edge.envs.tasks import TASKS
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

    def __init__(self, task: str, seed: int = 0):
        if task not in TASKS:
            raise CprError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
        from dm_control import suite

        domain, name = task.split("-", 1)
        self._env = suite.load(domain, name, task_kwargs={"random": seed})
        self.task = task
        self.action_repeat = TASKS[task]
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


def make_env(task: str, seed: int = 0) -> DMCEnv:
    return DMCEnv(task, seed)
