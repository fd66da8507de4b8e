"""Headroom of a run against the board's limits (report.json ``constraints``, docs/report.md):
flash and RAM from the build's memory.json, latency from the p99 invoke time and the budget,
and which of them binds, i.e. is the tightest relative to its limit.

Everything is read from report data (the ``memory`` and ``latency`` keys as docs/report.md and
docs/memory.md describe them), so an old report.json can be re-rendered from its file alone."""
from __future__ import annotations

from cpr_edge.report.units import fmt_percent, fmt_quantity

NAMES = {"flash": "flash", "ram": "RAM", "latency": "latency"}
"""How report.md and the plots name each constraint."""


def _section_total(section) -> int | None:
    """Bytes used by a memory.json section: its ``total`` (older files: ``used`` / ``bytes``)."""
    if isinstance(section, (int, float)):
        return int(section)
    if isinstance(section, dict):
        for k in ("total", "used", "bytes"):
            if isinstance(section.get(k), (int, float)):
                return int(section[k])
    return None


def _section_capacity(memory: dict, name: str) -> int | None:
    section = memory.get(name)
    if isinstance(section, dict) and isinstance(section.get("capacity"), (int, float)):
        return int(section["capacity"])
    cap = (memory.get("capacity") or {}).get(name)
    return int(cap) if isinstance(cap, (int, float)) else None


def _entry(used, limit, unit: str, **more) -> dict | None:
    if used is None or not limit:
        return None
    headroom = limit - used
    return {"used": used, "limit": limit, "headroom": headroom, "headroom_fraction": headroom / limit,
            "unit": unit, **more}


def latency_seconds(latency: dict) -> tuple[float | None, bool]:
    """(p99 invoke seconds, whether they are an estimate): ``p99_s`` is measured in cycles,
    ``p99_s_estimate`` derived from an instruction count (docs/report.md ``latency``)."""
    if latency.get("p99_s") is not None:
        return float(latency["p99_s"]), bool(latency.get("estimate", False))
    if latency.get("p99_s_estimate") is not None:
        return float(latency["p99_s_estimate"]), True
    return None, bool(latency.get("estimate", True))


def _stack_used(report: dict) -> int | None:
    """The board's painted-stack high-water mark, as the memory_fits check recorded it."""
    for c in report.get("checks") or []:
        if c.get("name") == "memory_fits" and isinstance(c.get("value"), dict):
            used = c["value"].get("stack_used")
            return int(used) if isinstance(used, (int, float)) else None
    return None


def constraints(report: dict) -> dict:
    """``{"flash": {...}, "ram": {...}, "latency": {...}, "binding": name or None}``; a constraint
    whose figures the report lacks (no build, no board steps) is left out and cannot bind.

    RAM used is the image's reservation (.data + .bss + the reserved stack, memory.json
    ``ram.total``): that is what must fit the part; the measured stack use is given beside it."""
    out: dict = {}
    mem = report.get("memory") or {}
    if mem:
        flash = _entry(_section_total(mem.get("flash")), _section_capacity(mem, "flash"), "B")
        ram_section = mem.get("ram") if isinstance(mem.get("ram"), dict) else {}
        ram = _entry(_section_total(mem.get("ram")), _section_capacity(mem, "ram"), "B",
                     static=int(ram_section.get("data", 0)) + int(ram_section.get("bss", 0))
                     if ram_section else None,
                     stack_reserved=ram_section.get("stack_reserved"), stack_used=_stack_used(report))
        out.update({k: v for k, v in (("flash", flash), ("ram", ram)) if v})
    lat = report.get("latency") or {}
    if lat.get("steps"):
        p99, estimate = latency_seconds(lat)
        entry = _entry(p99, lat.get("budget_s"), "s", estimate=estimate, quantile="p99")
        if entry:
            out["latency"] = entry
    out["binding"] = binding_of(out)
    return out


def binding_of(entries: dict) -> str | None:
    """The constraint with the smallest headroom relative to its limit (ties: flash, RAM, latency)."""
    named = [(entries[k]["headroom_fraction"], i, k) for i, k in enumerate(NAMES)
             if isinstance(entries.get(k), dict)]
    return min(named)[2] if named else None


def describe(name: str, entry: dict) -> str:
    """``RAM, 412 B (5.0 %) left`` or ``latency, 2.1 ms (3.0 %) over`` (estimates said so)."""
    h = entry["headroom"]
    word = "left" if h >= 0 else "over"
    est = " (estimate)" if entry.get("estimate") else ""
    return (f"{NAMES[name]}, {fmt_quantity(abs(h), entry['unit'])} "
            f"({fmt_percent(abs(entry['headroom_fraction']))}) {word}{est}")


def headroom_lines(c: dict) -> list[str]:
    """report.md's headroom table, the binding constraint in bold, and a sentence naming it."""
    rows = [k for k in NAMES if isinstance(c.get(k), dict)]
    if not rows:
        return ["(no flash, RAM or latency figures in this report)"]
    lines = ["| constraint | used | limit | headroom | left |", "|---|---|---|---|---|"]
    for k in rows:
        e = c[k]
        cells = [NAMES[k] + (" p99" if k == "latency" else ""),
                 fmt_quantity(e["used"], e["unit"]) + (" (estimate)" if e.get("estimate") else ""),
                 fmt_quantity(e["limit"], e["unit"]) + (" budget" if k == "latency" else ""),
                 ("" if e["headroom"] >= 0 else "−") + fmt_quantity(abs(e["headroom"]), e["unit"]),
                 fmt_percent(e["headroom_fraction"])]
        if k == c.get("binding"):
            cells = [f"**{x}**" for x in cells]
        lines.append("| " + " | ".join(cells) + " |")
    b = c.get("binding")
    lines += ["", f"**binding constraint: {describe(b, c[b])}**" if b else ""]
    ram = c.get("ram") or {}
    if ram.get("stack_reserved") is not None:
        measured = (f", of which the board used {fmt_quantity(ram['stack_used'], 'B')}"
                    if ram.get("stack_used") is not None else "")
        lines.append(f"\nRAM used is what the image reserves: {fmt_quantity(ram.get('static'), 'B')} "
                     f".data + .bss and {fmt_quantity(ram['stack_reserved'], 'B')} of stack reserved{measured}.")
    return lines
