"""The checks a HIL run must pass, each with its figure and threshold (docs/report.md).

A check is ``{name, passed, value, threshold, unit, note}``; a run passes only if every
check passes.
"""
from __future__ import annotations

import numpy as np

DEFAULT_MIN_RETURN_RATIO = 0.95


def make_check(name: str, passed: bool, value, threshold, unit: str = "", note: str = "") -> dict:
    return {"name": name, "passed": bool(passed), "value": value, "threshold": threshold,
            "unit": unit, "note": note}


def return_ratio_check(pruned_board: list[float], unpruned_float: list[float],
                       min_ratio: float = DEFAULT_MIN_RETURN_RATIO) -> dict:
    """Mean return of the pruned model on the board over that of the unpruned float policy on
    the host, same seeds. With a non-positive reference the ratio is undefined; the check then
    asks the pruned return to be at least the reference."""
    p, u = float(np.mean(pruned_board)), float(np.mean(unpruned_float))
    if u > 0:
        ratio = p / u
        return make_check("return_ratio", ratio >= min_ratio, round(ratio, 4), min_ratio, "",
                          f"pruned on board {p:.1f} / unpruned float on host {u:.1f}")
    return make_check("return_ratio", p >= u, None, min_ratio, "",
                      f"reference return {u:.1f} is not positive; passed iff pruned {p:.1f} >= it")


def latency_stats(ticks: np.ndarray, clock_hz: int) -> dict:
    t = np.asarray(ticks, np.float64)
    if t.size == 0:
        return {"steps": 0}
    pct = {f"p{q}": float(np.percentile(t, q)) for q in (50, 90, 99)}
    return {"steps": int(t.size), "min": float(t.min()), "max": float(t.max()),
            "mean": float(t.mean()), **pct, "p99_s": pct["p99"] / clock_hz,
            "p50_s": pct["p50"] / clock_hz, "max_s": float(t.max()) / clock_hz}


def latency_check(ticks: np.ndarray, counter_unit: str, clock_hz: int, budget_s: float) -> dict:
    """p99 of the per-step invoke ticks, converted to seconds at the board's clock, against the
    budget. QEMU counts instructions: the figure is an estimate at the nominal clock."""
    if len(ticks) == 0:
        return make_check("latency_p99", False, None, budget_s, "s", "no board steps were measured")
    st = latency_stats(ticks, clock_hz)
    estimate = counter_unit == "instructions"
    note = (f"p99 {st['p99']:.0f} {counter_unit} at {clock_hz / 1e6:g} MHz"
            + (" (estimate: QEMU counts instructions, converted at the nominal clock)" if estimate else ""))
    return make_check("latency_p99", st["p99_s"] <= budget_s, st["p99_s"], budget_s, "s", note)


def memory_check(memory: dict) -> dict:
    """The build fits the board: flash and RAM use within capacity (from memory.json)."""
    flash_used, flash_cap, ram_used, ram_cap = memory_figures(memory)
    ok = flash_used <= flash_cap and ram_used <= ram_cap
    return make_check("memory_fits", ok, {"flash": flash_used, "ram": ram_used},
                      {"flash": flash_cap, "ram": ram_cap}, "bytes",
                      f"flash {flash_used}/{flash_cap} B, RAM {ram_used}/{ram_cap} B")


def memory_figures(memory: dict) -> tuple[int, int, int, int]:
    """(flash used, flash capacity, RAM used, RAM capacity) from a memory.json."""
    def total(section):
        if isinstance(section, (int, float)):
            return int(section)
        for k in ("used", "total", "bytes"):
            if k in section:
                return int(section[k])
        raise KeyError(f"memory.json section without a used/total figure: {sorted(section)}")

    flash, ram = memory["flash"], memory["ram"]
    cap = memory.get("capacity", {})
    flash_cap = flash.get("capacity") if isinstance(flash, dict) else None
    ram_cap = ram.get("capacity") if isinstance(ram, dict) else None
    flash_cap = int(flash_cap if flash_cap is not None else cap["flash"])
    ram_cap = int(ram_cap if ram_cap is not None else cap["ram"])
    return total(flash), flash_cap, total(ram), ram_cap


def completion_check(episodes) -> dict:
    """Every board episode ran to the end with verified actions."""
    done = sum(e.failed is None for e in episodes)
    reasons = "; ".join(f"seed {e.seed}: {e.failed}" for e in episodes if e.failed)[:400]
    return make_check("board_episodes_completed", done == len(episodes) and len(episodes) > 0,
                      done, len(episodes), "episodes", reasons)
