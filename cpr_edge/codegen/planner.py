"""Static activation plan: one arena, tensors placed by liveness.

A tensor lives from the step that writes it to the last step that reads it (inclusive,
so an op's output never overlaps its own inputs). Tensors are placed largest first at the
lowest offset free of every placed tensor whose lifetime overlaps (TFLM's greedy planner
idea, done once at generation time).
"""
from __future__ import annotations

from dataclasses import dataclass

ALIGN = 8


@dataclass
class Placement:
    tensor: int
    offset: int
    size: int
    first: int
    last: int


def plan(sizes: dict[int, int], lifetimes: dict[int, tuple[int, int]]) -> tuple[dict[int, Placement], int]:
    """Offsets for every tensor in ``sizes`` and the arena size in bytes."""
    order = sorted(sizes, key=lambda t: (-sizes[t], lifetimes[t][0], t))
    placed: list[Placement] = []
    for t in order:
        first, last = lifetimes[t]
        size = sizes[t]
        busy = sorted((p.offset, p.offset + p.size) for p in placed
                      if p.first <= last and first <= p.last)
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, _align(hi))
        placed.append(Placement(t, offset, size, first, last))
    arena = max((p.offset + p.size for p in placed), default=0)
    return {p.tensor: p for p in placed}, _align(arena)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN
