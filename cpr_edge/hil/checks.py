"""The checks a HIL run must pass, each with its figure and threshold (docs/report.md).

A check is ``{name, passed, value, threshold, unit, note}``; a run passes only if every
check passes.
"""
from __future__ import annotations

import numpy as np

DEFAULT_MIN_RETURN_RATIO = 0.95
DEFAULT_MIN_FIDELITY_RATIO = 0.98
COLLAPSE_FLOOR = 0.5
"""No single episode may fall below this fraction of its paired (same-seed) reference: a ratio
of means must not hide a collapsed episode behind a lucky one."""


def make_check(name: str, passed: bool, value, threshold, unit: str = "", note: str = "", **extra) -> dict:
    return {"name": name, "passed": bool(passed), "value": value, "threshold": threshold,
            "unit": unit, "note": note, **extra}


def paired_ratio_check(name: str, subject: list[float], reference: list[float], min_ratio: float,
                       subject_name: str, reference_name: str, collapse_floor: float = COLLAPSE_FLOOR,
                       **extra) -> dict:
    """Returns of ``subject`` against ``reference`` on the same seeds (paired, in seed order).

    ``verdict`` (cpr_edge.hil.stats): PASS when the one-sided 95 % lower bound of the ratio of
    mean returns reaches ``min_ratio`` and no seed's return is below ``collapse_floor`` times its
    reference's; FAIL when the upper bound is below ``min_ratio`` or an episode collapsed;
    INCONCLUSIVE otherwise (too few episodes for the variance seen), with ``episodes_needed``.
    Only PASS passes. A reference whose mean return is not positive proves nothing (e.g.
    all-zero returns): the ratio is undefined and the check fails."""
    from cpr_edge.hil import stats

    p, u = np.asarray(subject, np.float64), np.asarray(reference, np.float64)
    if p.size == 0 or p.size != u.size:
        return make_check(name, False, None, min_ratio, "", f"{p.size} {subject_name} returns against "
                          f"{u.size} {reference_name} returns: nothing to pair", per_seed_ratio=[],
                          verdict="FAIL", **extra)
    pm, um = float(p.mean()), float(u.mean())
    per_seed = [round(float(a / b), 4) if b > 0 else None for a, b in zip(p, u)]
    if um <= 0:
        return make_check(name, False, None, min_ratio, "",
                          f"{reference_name} mean return {um:.1f} is not positive: the ratio is undefined "
                          f"and proves nothing", per_seed_ratio=per_seed, verdict="FAIL", **extra)
    b = stats.ratio_bounds(p, u)
    verdict, need = stats.verdict(b, min_ratio)
    collapsed = [i for i, r in enumerate(per_seed) if r is not None and r < collapse_floor]
    if collapsed:
        verdict = "FAIL"
    note = f"{verdict}: {subject_name} {pm:.1f} / {reference_name} {um:.1f} = {b['ratio']:.4f}"
    if b["lower"] is not None:
        note += f", one-sided 95 % bounds [{b['lower']:.4f}, {b['upper']:.4f}] over {b['n']} paired episodes"
    else:
        note += f", {b['n']} paired episode: no variance to bound the ratio with"
    if verdict == "INCONCLUSIVE":
        note += (f"; about {need} episodes would decide it" if need else
                 "; no affordable episode count decides it (ratio at the threshold)")
    if collapsed:
        note += (f"; episode(s) {', '.join(str(i) for i in collapsed)} below {collapse_floor:g} of their "
                 f"paired reference (per-seed ratios {per_seed})")
    r3 = lambda v: None if v is None else round(float(v), 4)
    return make_check(name, verdict == "PASS", round(b["ratio"], 4), min_ratio, "", note,
                      per_seed_ratio=per_seed, collapse_floor=collapse_floor, verdict=verdict,
                      lower_95=r3(b["lower"]), upper_95=r3(b["upper"]), episodes=b["n"],
                      episodes_needed=need if verdict == "INCONCLUSIVE" else None, **extra)


def return_ratio_check(pruned_board: list[float], unpruned_float: list[float],
                       min_ratio: float = DEFAULT_MIN_RETURN_RATIO) -> dict:
    """The pruned int8 model on the board against the unpruned float policy on the host."""
    return paired_ratio_check("return_ratio", pruned_board, unpruned_float, min_ratio,
                              "pruned on board", "unpruned float on host")


def int8_fidelity_check(pruned_board: list[float], pruned_float: list[float],
                        min_ratio: float = DEFAULT_MIN_FIDELITY_RATIO, export_error: dict | None = None) -> dict:
    """What quantisation costs: the pruned int8 model on the board against the same pruned
    checkpoint in float on the host, same seeds; export.json's open-loop action error beside it."""
    err = {k: (export_error or {}).get(k) for k in ("mean_abs", "p99_abs", "max_abs", "max_lsb", "observations")}
    return paired_ratio_check("int8_fidelity", pruned_board, pruned_float, min_ratio,
                              "pruned int8 on board", "pruned float on host", action_error=err)


UNIT_SECONDS = {"cycles": "measured", "instructions": "estimate"}
"""How the board's counter becomes seconds: cycles / clock_hz is a time; instructions (QEMU
-icount) times the board's cycles per instruction (its latency model, docs/boards.md) / clock_hz
is an estimate, named so."""


def latency_stats(counts: np.ndarray, unit: str, clock_hz: int, cycles_per_instruction: float = 1.0,
                  basis: str | None = None) -> dict:
    """Per-step invoke counts (in ``unit``) summarised; seconds at ``clock_hz`` under the keys
    ``p99_s`` (cycles) or ``p99_s_estimate`` (instructions x ``cycles_per_instruction``)."""
    t = np.asarray(counts, np.float64)
    if t.size == 0:
        return {"steps": 0, "unit": unit}
    pct = {f"p{q}": float(np.percentile(t, q)) for q in (50, 90, 99)}
    measured = UNIT_SECONDS.get(unit) == "measured"
    suffix, cpi = ("_s", 1.0) if measured else ("_s_estimate", float(cycles_per_instruction))
    secs = {f"{k}{suffix}": v * cpi / clock_hz for k, v in (("p50", pct["p50"]), ("p99", pct["p99"]),
                                                             ("max", float(t.max())))}
    out = {"steps": int(t.size), "unit": unit, "min": float(t.min()), "max": float(t.max()),
           "mean": float(t.mean()), **pct, **secs,
           "seconds_basis": ("cycles / clock_hz" if measured
                             else f"instructions x {cpi:g} cycles per instruction / clock_hz")}
    if not measured:
        out["cycles_per_instruction"] = cpi
        out["cycles_per_instruction_basis"] = basis or "one cycle per instruction assumed"
    return out


def p99_seconds(latency: dict) -> tuple[float | None, bool]:
    """(p99 seconds, whether it is an estimate) of a report's latency dict."""
    if "p99_s" in latency:
        return latency["p99_s"], False
    return latency.get("p99_s_estimate"), True


def latency_check(counts: np.ndarray, counter_unit: str, clock_hz: int, budget_s: float,
                  cycles_per_instruction: float = 1.0) -> dict:
    """p99 of the per-step invoke counts in seconds against the budget. QEMU counts
    instructions: the seconds are an estimate through the board's cycles per instruction, said so."""
    if len(counts) == 0:
        return make_check("latency_p99", False, None, budget_s, "s", "no board steps were measured")
    st = latency_stats(counts, counter_unit, clock_hz, cycles_per_instruction)
    secs, estimate = p99_seconds(st)
    note = (f"p99 {st['p99']:.0f} {counter_unit} at {clock_hz / 1e6:g} MHz"
            + (f" (estimate: {cycles_per_instruction:g} cycles per instruction)" if estimate else ""))
    return make_check("latency_p99", secs <= budget_s, secs, budget_s,
                      "s (estimate)" if estimate else "s", note, counter_unit=counter_unit,
                      p99_count=st["p99"], estimate=estimate)


def memory_check(memory: dict, stats: dict | None) -> dict:
    """Flash and RAM of the build within the board's capacity, with the stack **measured**: the
    board's STATS ``stack_used`` (high-water mark of the painted stack) must stay below the
    reserved stack, which sits right above .bss: a stack that used all of its reserve may have
    run into the activation arena. RAM used = .data + .bss + measured stack; the unused part of
    the reserve is not counted as used."""
    flash_used, flash_cap, _, ram_cap = memory_figures(memory)
    ram = memory.get("ram", {}) if isinstance(memory.get("ram"), dict) else {}
    static = int(ram.get("data", 0)) + int(ram.get("bss", 0))
    reserved = ram.get("stack_reserved")
    used = (stats or {}).get("stack_used")
    size = (stats or {}).get("stack_size")
    value = {"flash": flash_used, "ram_static": static, "stack_used": used,
             "ram_measured": static + used if used is not None else None}
    threshold = {"flash": flash_cap, "ram": ram_cap, "stack_reserved": reserved}
    if used is None or reserved is None:
        return make_check("memory_fits", False, value, threshold, "bytes",
                          "stack not measured (no STATS stack_used or no stack reserve in memory.json)")
    problems = []
    if flash_used > flash_cap:
        problems.append(f"flash {flash_used} > {flash_cap} B")
    if static + int(reserved) > ram_cap:
        problems.append(f"RAM data+bss {static} + stack reserve {reserved} > {ram_cap} B")
    if size is not None and int(size) != int(reserved):
        problems.append(f"board reports a {size} B stack, memory.json reserves {reserved} B: another build")
    if used >= int(reserved):
        problems.append(f"stack used {used} B of {reserved} B reserved: the whole reserve was used, "
                        f"an overflow into .bss (activation arena) cannot be ruled out")
    note = (f"flash {flash_used}/{flash_cap} B, RAM {static} B static + {used} B stack measured "
            f"(of {reserved} B reserved) / {ram_cap} B")
    return make_check("memory_fits", not problems, value, threshold, "bytes",
                      "; ".join(problems) or note)


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


def completion_check(episodes, expected: int | None = None) -> dict:
    """Every board episode (``expected`` of them) ran to the end with verified actions; an
    episode resumed after a detected board reset counts as completed, and says so."""
    expected = len(episodes) if expected is None else expected
    done = sum(e.failed is None for e in episodes)
    reasons = "; ".join(f"seed {e.seed}: {e.failed}" for e in episodes if e.failed)[:400]
    resumed = [e.seed for e in episodes if getattr(e, "resets", None)]
    if resumed:
        reasons = (reasons + "; " if reasons else "") + f"resumed after a board reset: seeds {resumed}"
    return make_check("board_episodes_completed", done == expected and expected > 0,
                      done, expected, "episodes", reasons, resumed=resumed)
