"""Closed-loop episodes: the host steps the dm_control task, a policy (on the host, or on a
board over the HIL link) computes every action from the observation it is given.

A board's action is applied only once it is verified: the link checks CRC, sequence number,
size, boot id and finiteness, and, when a host reference of the same int8 model is given (the
real tflite-micro interpreter), the action must equal the reference's bit for bit (a tolerance
only for firmware this tool did not build). Anything else ends the episode with ``failed`` set
to the reason; the unverified action is never applied. A board that rebooted mid-episode is
detected on the very reply, re-identified (HELLO, model hash) and the episode resumed, with the
reset recorded in the episode (the board keeps no state between INFERs).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from cpr_edge.agents.evaluate import run_episode
from cpr_edge.envs import make_env
from cpr_edge.errors import CprError
from cpr_edge.hil.link import BoardReset, LinkError, LinkLost
from cpr_edge.hil.retry import BudgetExhausted, ErrorBudget
from cpr_edge.hil.reference import Int8Reference  # noqa: F401  (re-exported)


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
    invoke_counts: np.ndarray | None = None
    """[T] the board's invoke counter per step, in HELLO's ``counter_unit`` (instructions on
    QEMU, cycles on real boards); None on the host."""
    failed: str | None = None
    """Why the episode stopped early; None if it ran to the end."""
    wall_s: float = 0.0
    resets: list = field(default_factory=list)
    """Board reboots detected during the episode: ``{step, boot_id_seen, boot_id_new, model_sha256}``;
    the episode resumed after each (``resumed``)."""
    link: dict | None = None
    """What the link spent on this episode: ``budget``, ``failed_attempts``."""

    def summary(self) -> dict:
        return {"label": self.label, "seed": self.seed, "return": self.ret, "steps": self.steps,
                "failed": self.failed, "wall_s": round(self.wall_s, 3), "resumed": bool(self.resets),
                "resets": self.resets, **({"link": self.link} if self.link else {})}


class EpisodesStopped(CprError):
    """The run cannot go on (link lost for good, Ctrl-C): the episodes so far, with why."""

    def __init__(self, reason: str, kind: str, episodes: list):
        super().__init__(reason)
        self.reason, self.kind, self.episodes = reason, kind, episodes


def host_episode(label: str, policy: Callable[[np.ndarray], np.ndarray], task: str, seed: int,
                 action_repeat: int | None = None) -> Episode:
    """An episode with a host policy ``policy(obs) -> action``, at ``action_repeat`` (the
    checkpoint's ``spec["action_repeat"]``; None: the task's default)."""
    t0 = time.perf_counter()
    total, trace = run_episode(task, seed, lambda obs, t: np.asarray(policy(obs), np.float32), record=True,
                               action_repeat=action_repeat)
    obs, actions = zip(*trace)
    return Episode(label, seed, total, len(trace), np.stack(obs), np.stack(actions),
                   wall_s=time.perf_counter() - t0)


class _Lane:
    """One episode in progress on the board."""

    def __init__(self, label: str, task: str, seed: int, budget: ErrorBudget | None = None,
                 action_repeat: int | None = None):
        self.label, self.seed = label, seed
        self.budget = budget
        self.resets = []
        self.env = make_env(task, seed, action_repeat)
        self.t0 = time.perf_counter()
        self.obs, self.done, self.ret = self.env.reset(), False, 0.0
        self.os, self.as_, self.counts = [], [], []
        self.action = None
        self.failed = None

    def apply(self) -> None:
        """Step the task with the verified action."""
        self.os.append(self.obs), self.as_.append(self.action), self.counts.append(self.count)
        self.obs, r, self.done = self.env.step(self.action)
        self.ret += r
        self.action = None

    def episode(self, act_dim: int) -> Episode:
        link = ({"budget": self.budget.limit, "failed_attempts": self.budget.used}
                if self.budget is not None else None)
        return Episode(self.label, self.seed, self.ret, len(self.as_),
                       np.stack(self.os) if self.os else np.zeros((0, self.obs.size), np.float32),
                       np.stack(self.as_) if self.as_ else np.zeros((0, act_dim), np.float32),
                       np.asarray(self.counts, np.int64), self.failed, time.perf_counter() - self.t0,
                       self.resets, link)


def _start(link, lane, reference, integer_frames: bool):
    link.budget = lane.budget
    if integer_frames:
        return link.infer_q_start(reference.quantized_input(lane.obs))
    return link.infer_start(lane.obs)


def _verify(a: np.ndarray, want: np.ndarray, tol: float) -> bool:
    """Exact (bit for bit) when ``tol`` is 0, else within ``tol``."""
    if want.shape != a.shape:
        return False
    if tol == 0:
        return np.array_equal(want.view(np.uint32), a.view(np.uint32))
    return bool(np.max(np.abs(want - a)) <= tol)


def board_episodes(label: str, session, task: str, seeds: list[int], reference: Callable | None = None,
                   on_step: Callable[[int], None] | None = None, max_lsb: int = 0,
                   lanes: int = 2, budget_per_step: float | None = 10.0,
                   action_repeat: int | None = None) -> list[Episode]:
    """Episodes whose every action comes from the board behind ``session.link``.

    ``lanes`` episodes run interleaved: while the board computes the action of one, the host
    steps the physics of another (one request in flight at a time, so the results equal a
    sequential run). ``reference(obs) -> action`` (e.g. ``Int8Reference``) must give the very
    same float32 action, or be within ``max_lsb`` output quantisation steps when that is not 0
    (foreign firmware only). With a reference of an integer-input model the observation goes
    as an INFER_Q frame (the host prescales and quantises exactly as the board would). Each
    episode gets an error budget of ``budget_per_step`` failed attempts per control step.
    ``action_repeat``: the checkpoint's ``spec["action_repeat"]`` (None: the task's default).
    ``on_step(t)`` runs before each request of a single-lane run (fault tests use it). An
    episode whose action cannot be verified stops with ``failed`` set; its unverified action is
    never applied. A lost link or Ctrl-C raises ``EpisodesStopped`` with the episodes so far.
    """
    link = session.link
    act_dim = session.hello.output_len
    tol = max_lsb * float(session.hello.output_scale) * (1 + 1e-6)
    integer_frames = (reference is not None and getattr(reference, "integer_input", False)
                      and session.hello.input_elem_bytes == reference.input_itemsize)
    steps = int(getattr(session, "episode_steps", 0) or 0)
    lanes = 1 if on_step is not None else max(1, lanes)
    todo = list(seeds)
    active: list[_Lane] = []
    finished: dict[int, Episode] = {}
    ready = None  # a lane whose verified action waits to be applied
    turn = 0

    def new_lane(seed):
        ln = _Lane(label, task, seed, action_repeat=action_repeat)
        n = steps or getattr(ln.env.spec, "episode_length", 1000)
        ln.budget = ErrorBudget.for_steps(int(n), budget_per_step) if budget_per_step else None
        return ln

    def stopped(reason: str, kind: str):
        for ln in active:
            if ln.failed is None and not (ln.done and ln is not ready):
                ln.failed = f"step {len(ln.as_)}: {reason}"
            finished[ln.seed] = ln.episode(act_dim)
        return EpisodesStopped(reason, kind, [finished[s] for s in seeds if s in finished])

    try:
        while todo or active or ready:
            while todo and len(active) < lanes:
                active.append(new_lane(todo.pop(0)))
            asking = [ln for ln in active if ln.action is None and not ln.done and ln.failed is None]
            lane = asking[turn % len(asking)] if asking else None
            turn += 1
            pending = None
            if lane is not None:
                if on_step is not None:
                    on_step(len(lane.as_))
                try:
                    pending = _start(link, lane, reference, integer_frames)
                except LinkLost as e:
                    raise stopped(str(e), "link") from None
                except (LinkError, BudgetExhausted) as e:
                    lane.failed = f"step {len(lane.as_)}: {e}"
            if ready is not None:  # the host's share, while the board computes
                ready.apply()
                ready = None
            while pending is not None:
                try:
                    a, lane.count = link.infer_finish(pending)
                    pending = None
                    want = reference(lane.obs) if reference is not None else a
                    if not _verify(a, want, tol):
                        lane.failed = (f"step {len(lane.as_)}: board action {a.tolist()} differs from the "
                                       f"host int8 reference {want.tolist()}"
                                       + (f" by more than {max_lsb} LSB" if max_lsb else "") + "; not applied")
                    else:
                        lane.action, ready = a, lane
                except BoardReset as e:  # detected on the reply itself: re-identify, ask again
                    try:
                        h = session.reidentify()
                    except LinkLost as e2:
                        raise stopped(str(e2), "link") from None
                    except (CprError, BudgetExhausted) as e2:
                        lane.failed = f"step {len(lane.as_)}: {e}; re-identifying failed: {e2}"
                        pending = None
                        continue
                    lane.resets.append({"step": len(lane.as_), "boot_id_seen": e.got,
                                        "boot_id_new": h.boot_id, "model_sha256": h.model_sha256})
                    try:
                        pending = _start(link, lane, reference, integer_frames)
                    except (LinkError, BudgetExhausted) as e2:
                        lane.failed, pending = f"step {len(lane.as_)}: {e2}", None
                except LinkLost as e:
                    raise stopped(str(e), "link") from None
                except (LinkError, BudgetExhausted) as e:
                    lane.failed, pending = f"step {len(lane.as_)}: {e}", None
            for ln in list(active):
                if ln.failed or (ln.done and ln is not ready):
                    active.remove(ln)
                    finished[ln.seed] = ln.episode(act_dim)
    except KeyboardInterrupt:
        raise stopped("interrupted (Ctrl-C)", "interrupted") from None
    finally:
        link.budget = None
    return [finished[s] for s in seeds]


def board_episode(label: str, session, task: str, seed: int, reference: Callable | None = None,
                  on_step: Callable[[int], None] | None = None, max_lsb: int = 0,
                  action_repeat: int | None = None) -> Episode:
    """One episode on the board (see ``board_episodes``)."""
    return board_episodes(label, session, task, [seed], reference, on_step, max_lsb, lanes=1,
                          action_repeat=action_repeat)[0]


def eval_seeds(episodes: int, seed: int = 0) -> list[int]:
    """The evaluation seeds of ``cpr-edge eval`` and of pruning's returns: the seeds that
    *choose* (ratio, boundary search). A HIL check never runs on them (``check_seeds``)."""
    from cpr_edge.agents.evaluate import eval_seed

    if episodes < 1:
        raise CprError("--episodes must be at least 1")
    return [eval_seed(seed, i) for i in range(episodes)]


CHECK_SEED_OFFSET = 100_000
"""HIL episodes run on held-out seeds ``CHECK_SEED_OFFSET + 1000 * seed + i``, disjoint from
every evaluation seed (``EVAL_SEED_OFFSET`` 10000 + 1000 * seed + i for seeds below 90)."""


def check_seeds(episodes: int, seed: int = 0, selection: list[int] | None = None) -> list[int]:
    """The held-out seeds every controller of a HIL run uses; refused if they overlap the
    seeds that chose anything (``selection``)."""
    if episodes < 1:
        raise CprError("--episodes must be at least 1")
    if episodes > 1000 or seed < 0:
        raise CprError("--episodes must be at most 1000 and --seed not negative")
    seeds = [CHECK_SEED_OFFSET + seed * 1000 + i for i in range(episodes)]
    shared = sorted(set(seeds) & set(selection or []))
    if shared:
        raise CprError(f"check seeds {shared[:5]} were also used to choose the model: not held out")
    return seeds


@dataclass
class EpisodeSet:
    """Episodes of several controllers on the same seeds."""

    seeds: list[int]
    runs: dict[str, list[Episode]] = field(default_factory=dict)

    def returns(self, label: str) -> list[float]:
        return [e.ret for e in self.runs.get(label, [])]

    def save_npz(self, path) -> None:
        """Per step obs, action and invoke count of every episode (``LABEL/SEED/obs`` ...)."""
        from cpr_edge.fileio import atomic_path

        arrays = {}
        for label, eps in self.runs.items():
            for e in eps:
                arrays[f"{label}/{e.seed}/obs"] = e.obs
                arrays[f"{label}/{e.seed}/action"] = e.actions
                if e.invoke_counts is not None:
                    arrays[f"{label}/{e.seed}/invoke_count"] = e.invoke_counts
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
