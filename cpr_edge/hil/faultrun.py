"""Closed-loop episodes through the fault proxy, each applied action recomputed afterwards with
the tflite-micro interpreter: what the fault suite (hil/test_faults.py) and the benchmark
(benchmarks/hil_faults.py) both measure. Emulated boards only (the proxy sits on QEMU's TCP
serial port)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cpr_edge.hil.closed_loop import EpisodesStopped, Int8Reference, board_episodes
from cpr_edge.hil.faults import FaultConfig, FaultProxy


def fault_session(board, model_dir, config: FaultConfig | None = None):
    """A QEMU session of ``model_dir``'s firmware whose link goes through a ``FaultProxy``."""
    from cpr_edge.firmware_build import default_out_dir
    from cpr_edge.hil.session import QemuSession, free_port, sha256_file

    port = free_port()
    proxy = FaultProxy(port, config or FaultConfig())
    s = QemuSession(board, default_out_dir(model_dir, board.name) / "firmware.elf",
                    sha256_file(model_dir / "model_int8.tflite"), port=port, link_url=proxy.link_url)
    proxy.session = s
    return s, proxy


def silent_wrong_actions(episode, reference) -> int:
    """Applied actions that are not, bit for bit, what the interpreter computes for their
    observation: each one would be a wrong action the run did not notice."""
    wrong = 0
    for obs, act in zip(episode.obs, episode.actions):
        want = reference(obs)
        if not np.array_equal(want.view(np.uint32), np.asarray(act, np.float32).view(np.uint32)):
            wrong += 1
    return wrong


@dataclass
class FaultResult:
    episodes: int
    completed: int
    silent_wrong: int
    resumed: int
    failed_reasons: list
    link: dict
    proxy: dict
    stopped: str | None = None

    @property
    def completion_rate(self) -> float:
        return self.completed / self.episodes if self.episodes else 0.0


def run_condition(board, model_dir, task: str, seeds: list[int], config: FaultConfig,
                  on_step=None, clean_handshake: bool = True, action_repeat: int | None = None) -> FaultResult:
    """``seeds`` episodes through a proxy with ``config``; the handshake runs on a clean line
    unless ``clean_handshake`` is False (then the faults start before HELLO)."""
    ref = Int8Reference(model_dir)
    quiet = FaultConfig(seed=config.seed)
    s, proxy = fault_session(board, model_dir, quiet if clean_handshake else config)
    stopped = None
    with proxy, s.start():
        proxy.config = config
        proxy.rng.seed(config.seed)
        s.episode_steps = None
        try:
            eps = board_episodes("pruned_board", s, task, seeds, reference=ref, on_step=on_step,
                                 lanes=1 if on_step else 2, action_repeat=action_repeat)
        except EpisodesStopped as e:
            eps, stopped = e.episodes, e.reason
        link = dict(s.link.counters.__dict__)
    return FaultResult(len(seeds), sum(e.failed is None for e in eps),
                       sum(silent_wrong_actions(e, ref) for e in eps), sum(bool(e.resets) for e in eps),
                       [e.failed for e in eps if e.failed], link, dict(proxy.counters.__dict__), stopped)
