"""Run sweep cells as Ray tasks: a local Ray started and stopped here, or an existing cluster.

A *cell* is one plain function call ``fn(*args)`` whose arguments may be object references
(``RayCells.put`` for data shared by every cell, ``RayCells.submit`` for a result other cells
wait on). At most ``workers`` cells are in flight; each runs in a Ray worker with one CPU and
one torch thread. A cell that raises does not stop the others: its error is handed to the
caller's ``on_done``, which may submit follow-up cells (the bisection of ``boundary``).
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from cpr_edge.errors import CprError

ENGINE = "ray"


@dataclass
class Cell:
    """``fn(*args)`` run remotely; ``tag`` is the caller's label for it (its CSV key, say)."""
    tag: Any
    fn: Callable
    args: tuple = ()


@dataclass
class Outcome:
    cell: Cell
    result: Any = None
    error: str | None = None  # one line: "ExceptionType: message"


def ray_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("ray")


def one_line(exc: BaseException, limit: int = 400) -> str:
    import ray.exceptions

    cause = exc
    if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None:
        cause = exc.cause  # the exception the cell raised, not Ray's wrapper with the remote traceback
    text = " ".join(f"{type(cause).__name__}: {cause}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run_cell(fn: Callable, *args):
    """Executed in a Ray worker: one torch thread per cell, as the CPU Ray granted it is one."""
    import torch

    torch.set_num_threads(1)
    return fn(*args)


class RayCells:
    """Context manager owning one Ray connection: ``with RayCells(workers, address) as rc: ...``.

    Without ``address`` a local Ray with ``workers`` CPUs is started (no dashboard) and shut
    down on exit, its processes with it; with ``address`` the command joins that cluster and
    only disconnects on exit. ``workers`` then caps the cells in flight (default: the
    cluster's CPUs)."""

    def __init__(self, workers: int | None = None, address: str | None = None):
        if workers is not None and workers < 1:
            raise CprError(f"--workers must be at least 1, got {workers}")
        self.address = address
        self.workers = workers
        self.session_dir: str | None = None
        self._remote = None

    def __enter__(self) -> "RayCells":
        os.environ.setdefault("MUJOCO_GL", "disable")  # workers inherit it: no GL context for evaluation
        import ray

        common = dict(log_to_driver=False, logging_level=logging.ERROR)
        try:
            if self.address:
                ctx = ray.init(address=self.address, **common)
            else:
                ctx = ray.init(num_cpus=self.workers or 1, include_dashboard=False, **common)
        except (ConnectionError, ray.exceptions.AuthenticationError) as e:
            hint = ("; a cluster with token authentication also needs RAY_AUTH_MODE=token here (and its token in "
                    "~/.ray/auth_token or RAY_AUTH_TOKEN)") if self.address else ""
            raise CprError(f"cannot {'join Ray at ' + self.address if self.address else 'start a local Ray'}: "
                           f"{' '.join(str(e).split())[:200]}{hint}") from None
        self.session_dir = ctx.address_info.get("session_dir")
        if self.workers is None:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # max_retries=1: a worker that died (OOM, node lost) is retried once; an exception is not
        self._remote = ray.remote(num_cpus=1, max_retries=1)(_run_cell)
        return self

    def __exit__(self, *exc) -> None:
        import ray

        ray.shutdown()

    def info(self) -> dict:
        return {"engine": ENGINE, "ray_version": ray_version(), "workers": self.workers,
                "ray_address": self.address or "local", "ray_session_dir": self.session_dir}

    def put(self, obj):
        """Ship ``obj`` to the object store once; cells receive it by reference."""
        import ray

        return ray.put(obj)

    def submit(self, fn: Callable, *args):
        """Start ``fn(*args)`` now (outside the ``workers`` cap): for a result several cells need."""
        return self._remote.remote(fn, *args)

    def run(self, cells: list[Cell], on_done: Callable[[Outcome, Callable[[str], None]], list[Cell] | None],
            total: int | None = None, desc: str = "cells") -> None:
        """Run ``cells`` (and whatever ``on_done`` returns), ``workers`` at a time, in completion
        order; a tqdm bar on stderr counts finished cells. ``on_done(outcome, say)``: ``say``
        prints a line above the bar."""
        import ray
        from tqdm import tqdm

        queue = list(cells)
        running: dict = {}
        with tqdm(total=total or len(queue), desc=desc, unit="cell", file=sys.stderr, dynamic_ncols=True) as bar:
            while queue or running:
                while queue and len(running) < self.workers:
                    cell = queue.pop(0)
                    running[self._remote.remote(cell.fn, *cell.args)] = cell
                ready, _ = ray.wait(list(running), num_returns=1)
                cell = running.pop(ready[0])
                try:
                    outcome = Outcome(cell, result=ray.get(ready[0]))
                except Exception as e:  # the cell raised, or its worker died twice: a failed cell
                    outcome = Outcome(cell, error=one_line(e))
                more = on_done(outcome, lambda s: tqdm.write(s, file=sys.stderr)) or []
                queue.extend(more)
                bar.update(1)
