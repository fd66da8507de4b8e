"""Closed-loop episodes: the host steps the dm_control task, a policy (on the host, or on a
board over the HIL link) computes every action from the observation it is given.

A board's action is applied only once it is verified: the link checks CRC, sequence number,
size and finiteness, and, when a host reference of the same int8 model is given (the real
tflite-micro interpreter), the action must equal the reference's. Anything else ends the
episode with ``failed`` set to the reason; the unverified action is never applied.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from cpr_edge.envs import make_env
from cpr_edge.errors import CprError
from cpr_edge.hil.link import LinkError, dequantize_output, quantize_input


@dataclass
class Episode:
    """One episode, with what happened at every agent step."""

    label: str
    """Which controller: ``pruned_board``, ``unpruned_float_host``, ``unpruned_int8_board``, ..."""
    seed: int
    ret: float
    steps: int
    obs: np.ndarray
    """[T, obs_dim] float32: the observation each action was computed from."""
    actions: np.ndarray
    """[T, act_dim] float32: the applied actions."""
    ticks: np.ndarray | None = None
    """[T] invoke ticks reported by the board (None on the host)."""
    failed: str | None = None
    """Why the episode stopped early; None if it ran to the end."""
    wall_s: float = 0.0

    def summary(self) -> dict:
        return {"label": self.label, "seed": self.seed, "return": self.ret, "steps": self.steps,
                "failed": self.failed, "wall_s": round(self.wall_s, 3)}


class Int8Reference:
    """The exported int8 model run by the real tflite-micro interpreter on the host, with the
    board's input quantisation and output dequantisation (docs/protocol.md)."""

    def __init__(self, tflite_path, hello):
        from tflite_micro import runtime

        self.interp = runtime.Interpreter.from_file(str(tflite_path))
        self.h = hello
        d_in = self.interp.get_input_details(0)
        self.in_dtype = d_in["dtype"]
        self.in_shape = tuple(d_in["shape"])

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        h = self.h
        q = quantize_input(obs, h.input_scale, h.input_zero_point).reshape(self.in_shape)
        self.interp.set_input(q.astype(self.in_dtype), 0)
        self.interp.invoke()
        out = np.asarray(self.interp.get_output(0)).reshape(-1)
        return dequantize_output(out, h.output_scale, h.output_zero_point)


def host_episode(label: str, policy: Callable[[np.ndarray], np.ndarray], task: str, seed: int) -> Episode:
    """An episode with a host policy ``policy(obs) -> action``."""
    env = make_env(task, seed)
    t0 = time.perf_counter()
    obs, done, total = env.reset(), False, 0.0
    os_, as_ = [], []
    while not done:
        a = np.asarray(policy(obs), np.float32)
        os_.append(obs), as_.append(a)
        obs, r, done = env.step(a)
        total += r
    return Episode(label, seed, total, len(as_), np.stack(os_), np.stack(as_),
                   wall_s=time.perf_counter() - t0)


def board_episode(label: str, session, task: str, seed: int, reference: Callable | None = None,
                  on_step: Callable[[int], None] | None = None, max_lsb: int = 0) -> Episode:
    """An episode whose every action comes from the board behind ``session.link``.

    ``reference(obs) -> action`` (e.g. ``Int8Reference``) must agree within ``max_lsb``
    output quantisation steps; ``on_step(t)`` runs before step ``t`` (fault tests use it).
    """
    env = make_env(task, seed)
    link = session.link
    tol = max_lsb * float(session.hello.output_scale) * (1 + 1e-6)
    t0 = time.perf_counter()
    obs, done, total = env.reset(), False, 0.0
    os_, as_, ticks = [], [], []
    failed = None
    while not done:
        t = len(as_)
        if on_step is not None:
            on_step(t)
        try:
            a, tk = link.infer(obs)
        except LinkError as e:
            failed = f"step {t}: {e}"
            break
        if reference is not None:
            want = reference(obs)
            if want.shape != a.shape or np.max(np.abs(want - a)) > tol:
                failed = (f"step {t}: board action {a.tolist()} differs from the host int8 "
                          f"reference {want.tolist()}; not applied")
                break
        os_.append(obs), as_.append(a), ticks.append(tk)
        obs, r, done = env.step(a)
        total += r
    act_dim = session.hello.output_len
    return Episode(label, seed, total, len(as_),
                   np.stack(os_) if os_ else np.zeros((0, obs.size), np.float32),
                   np.stack(as_) if as_ else np.zeros((0, act_dim), np.float32),
                   np.asarray(ticks, np.int64), failed, time.perf_counter() - t0)


def eval_seeds(episodes: int, seed: int = 0) -> list[int]:
    """The seeds every controller of a run uses (the evaluation seeds of ``cpr-edge eval``)."""
    from cpr_edge.agents.evaluate import EVAL_SEED_OFFSET

    if episodes < 1:
        raise CprError("--episodes must be at least 1")
    return [EVAL_SEED_OFFSET + seed * 1000 + i for i in range(episodes)]


@dataclass
class EpisodeSet:
    """Episodes of several controllers on the same seeds."""

    seeds: list[int]
    runs: dict[str, list[Episode]] = field(default_factory=dict)

    def returns(self, label: str) -> list[float]:
        return [e.ret for e in self.runs.get(label, [])]

    def save_npz(self, path) -> None:
        """Per step obs, action and ticks of every episode (``LABEL/SEED/obs`` ...)."""
        from cpr_edge.fileio import atomic_path

        arrays = {}
        for label, eps in self.runs.items():
            for e in eps:
                arrays[f"{label}/{e.seed}/obs"] = e.obs
                arrays[f"{label}/{e.seed}/action"] = e.actions
                if e.ticks is not None:
                    arrays[f"{label}/{e.seed}/ticks"] = e.ticks
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
