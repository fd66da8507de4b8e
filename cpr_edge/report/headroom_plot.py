"""memory.png: flash, RAM and p99 latency of one run as a fraction of each limit, with the
headroom left labelled and the binding constraint highlighted (report.json ``constraints``)."""
from __future__ import annotations

import math
from pathlib import Path

from matplotlib.ticker import FixedLocator, FuncFormatter

from cpr_edge.report.constraints import NAMES, constraints, describe
from cpr_edge.report.figure_file import plt, save_png
from cpr_edge.report.units import fmt_percent, fmt_quantity

LOG_BELOW = 0.05
"""A use below this fraction of its limit (a small model on a 4 MB board) would be a bar too
thin to see on a linear axis: the axis turns logarithmic then."""


def axis_range(fractions: list[float]) -> tuple[str, float, float]:
    """(scale, left, right) of the fraction-of-limit axis: linear from 0 when every use is at
    least ``LOG_BELOW`` of its limit, else logarithmic from the decade below the smallest; the
    limit (1.0) always inside."""
    top = max([1.0, *fractions])
    if all(f >= LOG_BELOW for f in fractions):
        return "linear", 0.0, top * 1.08
    smallest = min(f for f in fractions if f > 0) if any(f > 0 for f in fractions) else 1e-4
    return "log", 10 ** math.floor(math.log10(smallest)), top * 1.4


def percent_tick(x, _pos=None) -> str:
    """100 % is the limit and says so; the others are plain percentages (0.1 %, 20 %)."""
    return "100 %\n(limit)" if abs(x - 1.0) < 1e-9 else f"{100 * x:.3g} %"


def memory_figure(result: dict):
    c = constraints(result)
    rows = [k for k in NAMES if isinstance(c.get(k), dict)]
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.75 * max(len(rows), 1)))
    board = (result.get("board") or {}).get("name", "")
    if not rows:
        ax.set_title(f"{board}: no flash, RAM or latency figures")
        ax.set_yticks([])
        return fig
    used = [c[k]["used"] / c[k]["limit"] for k in rows]
    scale, left, right = axis_range(used)
    ax.set_xscale(scale)
    binding = c.get("binding")
    for i, (k, f) in enumerate(zip(rows, used)):
        color = "tab:red" if f > 1 else ("tab:orange" if k == binding else "tab:blue")
        ax.barh(i, f - left, left=left, color=color, height=0.6)
        if f < 1:
            ax.barh(i, 1 - f, left=f, color="tab:green", alpha=0.18, height=0.6, hatch="//",
                    edgecolor="tab:green", linewidth=0)
        e = c[k]
        text = (f"{fmt_quantity(e['used'], e['unit'])} of {fmt_quantity(e['limit'], e['unit'])}, "
                f"{fmt_quantity(abs(e['headroom']), e['unit'])} ({fmt_percent(abs(e['headroom_fraction']))}) "
                f"{'left' if e['headroom'] >= 0 else 'over'}")
        ax.annotate(text, xy=(1.02, i), xycoords=("axes fraction", "data"), va="center", fontsize=9,
                    fontweight="bold" if k == binding else "normal")
    ax.axvline(1.0, color="k", lw=1.2)
    names = [NAMES[k] + (" p99" if k == "latency" else "") + (" (est.)" if c[k].get("estimate") else "")
             for k in rows]
    ax.set_yticks(range(len(rows)), names)
    for label, k in zip(ax.get_yticklabels(), rows):
        label.set_fontweight("bold" if k == binding else "normal")
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(left, right)
    if scale == "log":
        decades = [10.0 ** p for p in range(round(math.log10(left)), 1)]
        ax.xaxis.set_major_locator(FixedLocator(decades))
        ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.xaxis.set_major_formatter(FuncFormatter(percent_tick))
    ax.set_xlabel("used, % of each limit" + (" (log scale: some uses are below "
                                               f"{LOG_BELOW:.0%} of their limit)" if scale == "log" else "")
                  + "; hatched: headroom")
    ax.set_title(f"{board}: headroom; binding constraint {describe(binding, c[binding])}" if binding
                 else f"{board}: headroom")
    return fig


def memory_plot(result: dict, path: Path) -> str:
    return save_png(memory_figure(result), path)
