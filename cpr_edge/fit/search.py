"""``fit_to_board``: the smallest removal at which the deployed controller fits a board.

The question a user brings to a small part: what is the best controller that fits it at this
control rate? "Best" here is "least pruned": removal ratios on a grid (``grid_step``), with the
chosen metric and component-aware allocation, are probed (cpr_edge.fit.probe) until the
smallest ratio whose flash, RAM and estimated latency all hold with ``margin`` of each limit
free is found next to a smaller ratio that does not hold (or is ratio 0, the unpruned model).

The search brackets: the largest ratio first (the cheapest probe, and the one that proves a
request unfittable at once), then ratio 0, then regula falsi on the worst constraint's use,
safeguarded by a bisection whenever the same end of the bracket moved twice in a row. Sizes and instruction counts fall with the removal ratio, so the
bracket holds the boundary; the grid step bounds the overshoot. Precision ``auto`` searches
16x8 first and int8 only when no 16x8 ratio fits (16x8 keeps the controller; int8 halves
activation RAM and instructions). Recovery, quantisation-aware training and the HIL checks run
afterwards, once, on the chosen model (prune-and-flash).
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cpr_edge.errors import CprError
from cpr_edge.fit.probe import Limits, run_probe


@dataclass
class FitConfig:
    """How ``cpr-edge fit`` searches."""

    margin: float = 0.1
    """Fraction of each limit (flash, RAM, latency budget) kept free: QEMU's latency is an
    estimate (cycles per instruction from the core's timings), and flash/RAM grow with the next
    firmware change; 10 % keeps a fitted model fitting."""
    grid_step: float = 0.02
    """Removal ratios probed are multiples of this."""
    max_ratio: float = 0.96
    """Largest removal tried; beyond it the allocation's per-component caps bind."""
    metric: str = "fisher"
    """Importance metric ranking the units (cpr_edge.importance)."""
    seed: int = 0
    """Seed of the importance scores (post hoc) and of the pruned model's rebuild."""


def check_config(cfg: FitConfig) -> None:
    if not 0.0 <= cfg.margin < 0.5:
        raise CprError(f"--fit-margin must be in [0, 0.5), got {cfg.margin}")
    if not 0.0 < cfg.grid_step <= 0.25:
        raise CprError(f"--grid-step must be in (0, 0.25], got {cfg.grid_step}")
    if not 0.0 < cfg.max_ratio < 1.0:
        raise CprError(f"the largest ratio must be in (0, 1), got {cfg.max_ratio}")


def structure_fn(ck, cfg: FitConfig):
    """``ratio -> pruned agent`` with the importance scored once (seeded as prune_checkpoint
    seeds it, so the chosen ratio's structure is the one prune-and-flash then prunes)."""
    import numpy as np
    import torch

    from cpr_edge.pruning.prune import prune_structure
    from cpr_edge.pruning.pruner import prune_scores

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    groups, scores, alloc, source = prune_scores(ck.agent, cfg.metric, ck.extra.get("importance"), ck.replay, cfg.seed)
    return (lambda ratio: prune_structure(ck.agent, groups, scores, cfg.metric, ratio, seed=cfg.seed,
                                          alloc_scores=alloc)[0]), source


def _search_one(probe, n: int) -> tuple[int | None, dict]:
    """Smallest grid index 0..n whose probe fits (None: not even n), probing as few as it can."""
    rows: dict[int, dict] = {}

    def at(i: int) -> dict:
        if i not in rows:
            rows[i] = probe(i)
        return rows[i]

    if not at(n)["fits"]:
        return None, rows
    if at(0)["fits"]:
        return 0, rows
    lo, hi, last, repeats = 0, n, None, 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if repeats < 2:  # where the worst constraint's use crosses 1, linear in the ratio
            u_lo = max(v for v in at(lo)["uses"].values())
            u_hi = max(v for v in at(hi)["uses"].values())
            if u_lo > u_hi:
                mid = lo + math.ceil((u_lo - 1.0) / (u_lo - u_hi) * (hi - lo))
        # else bisect: the same end moved twice, the other is stuck (use is not linear there)
        mid = min(max(mid, lo + 1), hi - 1)
        side = "hi" if at(mid)["fits"] else "lo"
        hi, lo = (mid, lo) if side == "hi" else (hi, mid)
        repeats, last = (repeats + 1 if side == last else 1), side
    return hi, rows


def _describe(binding: str | None, row: dict, limits: Limits, margin: float) -> str:
    """``binding``'s figure in ``row`` against its limit, in words."""
    keep = 1.0 - margin
    if binding == "flash":
        return f"flash {row['flash_bytes']} B against {keep * limits.flash_bytes:.0f} B ({limits.flash_bytes} B less {margin:.0%})"
    if binding == "ram":
        return f"RAM {row['ram_bytes']} B against {keep * limits.ram_bytes:.0f} B ({limits.ram_bytes} B less {margin:.0%})"
    if binding == "latency":
        lat = row["latency_s_estimate"]
        return (f"latency {lat * 1e3:.3g} ms (estimate) against {keep * limits.latency_budget_s * 1e3:.3g} ms "
                f"({limits.latency_budget_s * 1e3:g} ms budget less {margin:.0%})")
    return "nothing measured"


def unfittable_message(board, rows: list[dict], limits: Limits, margin: float) -> str:
    """One line: the constraint that never holds and the best figure any probe reached."""
    last = max(rows, key=lambda r: r["ratio"])
    binding = last["binding"]
    best = min((r for r in rows if r.get("uses", {}).get(binding) is not None), key=lambda r: r["uses"][binding])
    return (f"nothing fits {board.name}: {binding} binds at every removal up to {last['ratio']:g}; the best "
            f"reached is {_describe(binding, best, limits, margin)} at removal {best['ratio']:g}")


def fit_to_board(ck, board, limits: Limits, precisions: list[str], export_kw_for, cfg: FitConfig,
                 say, work_dir: Path | None = None) -> dict:
    """Search; returns report.json's ``fit`` (docs/report.md). ``export_kw_for(precision)`` gives
    the export options. An unfittable request raises CprError (exit 2) naming the binding
    constraint and the best figure reached; nothing is written outside ``work_dir`` (a temporary
    folder unless given)."""
    from cpr_edge.boards import load_board

    check_config(cfg)
    twin = board if board.emulated else (load_board(board.emulated_twin) if board.emulated_twin else None)
    if twin is None or not twin.emulated:
        raise CprError(f"{board.name} has no emulated twin to count instructions on (board definition: emulated_twin)")
    t0 = time.perf_counter()
    structure, source = structure_fn(ck, cfg)
    n = int(round(cfg.max_ratio / cfg.grid_step))
    ratio_of = lambda i: round(min(i * cfg.grid_step, cfg.max_ratio), 6)
    probes: list[dict] = []
    chosen = None
    with tempfile.TemporaryDirectory(prefix="cpr-fit-", dir=work_dir) as scratch:
        for precision in precisions:
            def probe(i: int, precision=precision) -> dict:
                row = run_probe(ck, structure, ratio_of(i), precision, board, twin, Path(scratch),
                                export_kw_for(precision), limits, cfg.margin, say)
                probes.append(row)
                return row

            say(f"fit: {precision} on {board.name}, flash {limits.flash_bytes} B, RAM {limits.ram_bytes} B, "
                f"latency budget {limits.latency_budget_s * 1e3:g} ms, margin {cfg.margin:.0%}")
            index, rows = _search_one(probe, n)
            if index is not None:
                chosen = (index, precision, rows)
                break
            say(f"fit: no {precision} ratio up to {cfg.max_ratio:g} fits {board.name}")
    if chosen is None:
        raise CprError(unfittable_message(board, probes, limits, cfg.margin))
    index, precision, rows = chosen
    row = rows[index]
    if index == 0:
        why = f"the unpruned model fits with {cfg.margin:.0%} of each limit free: nothing is removed"
    else:
        below = rows[index - 1]
        why = (f"smallest removal on the {cfg.grid_step:g} grid at which flash, RAM and latency hold with "
               f"{cfg.margin:.0%} of each limit free; removal {below['ratio']:g} leaves "
               f"{_describe(below['binding'], below, limits, cfg.margin)}")
    # what stops a smaller removal; for the unpruned model, its tightest constraint (judge's binding)
    binding = rows[index - 1]["binding"] if index else row["binding"]
    return {"board": board.name, "metric": cfg.metric, "importance_source": source, "precision": precision,
            "margin": cfg.margin, "limits": limits.to_dict(), "grid_step": cfg.grid_step,
            "max_ratio": cfg.max_ratio, "latency_model": {
                "cycles_per_instruction": board.cycles_per_instruction, "clock_hz": board.clock_hz,
                "basis": board.latency_basis, "instructions_counted_on": twin.name},
            "probes": probes,
            "chosen": {"ratio": row["ratio"], "precision": precision, "params": row["params"],
                       "binding": binding, "why": why},
            "seconds": round(time.perf_counter() - t0, 1)}
