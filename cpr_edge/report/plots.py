"""PNG plots of one HIL run (matplotlib, Agg backend, written atomically)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from cpr_edge.hil.run import LABELS
from cpr_edge.report.constraints import latency_seconds
from cpr_edge.report.figure_file import plt, save_png as _save
from cpr_edge.report.headroom_plot import memory_figure, memory_plot  # noqa: F401  (re-exported)
from cpr_edge.report.units import fmt_percent, fmt_seconds, time_unit


def latency_figure(result: dict, episodes):
    """Histogram of per-step invoke time with the p99, and the per-step trace of the first
    episode against the budget; µs or ms by magnitude, a few ticks per axis."""
    lat = result["latency"]
    hz = result["board"]["clock_hz"]
    eps = [e for e in episodes.runs.get("pruned_board", []) if e.invoke_counts is not None and len(e.invoke_counts)]
    secs = np.concatenate([e.invoke_counts for e in eps]) / hz if eps else np.zeros(0)
    p99, estimate = latency_seconds(lat)
    budget = lat.get("budget_s")
    factor, unit = time_unit(p99 if p99 is not None else (secs.max() if secs.size else 0.0))
    est = " (estimate)" if estimate else ""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    if secs.size:
        a.hist(secs * factor, bins=min(40, max(5, secs.size // 5)), color="tab:blue")
        if p99 is not None:
            a.axvline(p99 * factor, color="tab:red", ls="--", label=f"p99 {fmt_seconds(p99, p99)}{est}")
            a.legend(fontsize=8)
        b.plot(eps[0].invoke_counts / hz * factor, lw=1, label=f"seed {eps[0].seed}")
        if budget:
            b.axhline(budget * factor, color="tab:red", ls=":", label=f"budget {fmt_seconds(budget)}")
            if budget > 20 * secs.max():
                b.set_yscale("log")
            else:
                b.set_ylim(0, max(budget, secs.max()) * factor * 1.1)
        b.legend(fontsize=8)
    a.xaxis.set_major_locator(MaxNLocator(nbins=4))
    a.ticklabel_format(axis="x", useOffset=False, style="plain")
    if b.get_yscale() == "linear":
        b.yaxis.set_major_locator(MaxNLocator(nbins=5))
    a.set_xlabel(f"invoke time [{unit}]" + (" (estimate from the instruction count)" if estimate else ""))
    a.set_ylabel("steps")
    share = f", p99 {fmt_percent(p99 / budget)} of budget" if (p99 is not None and budget) else ""
    fig.suptitle(f"{result['board']['name']}: invoke latency over {secs.size} steps{share}")
    a.set_title("histogram")
    b.set_xlabel("agent step")
    b.set_ylabel(f"invoke time [{unit}]{est}")
    b.set_title(f"per-step trace, seed {eps[0].seed}" if eps else "no board steps")
    return fig


def latency_plot(result: dict, episodes, path: Path) -> str:
    return _save(latency_figure(result, episodes), path)


def return_thresholds(result: dict) -> list[tuple[float, str]]:
    """(return, label) of the thresholds the statistical checks put on the pruned board's mean:
    ``return_ratio`` against (a), ``int8_fidelity`` against (c)."""
    checks = {c["name"]: c for c in result.get("checks") or []}
    out = []
    for name, ref, short in (("return_ratio", "unpruned_float_host", "(a) unpruned float"),
                             ("int8_fidelity", "pruned_float_host", "(c) pruned float")):
        thr, mean = (checks.get(name) or {}).get("threshold"), (result.get("mean_return") or {}).get(ref)
        if isinstance(thr, (int, float)) and isinstance(mean, (int, float)) and mean > 0:
            out.append((thr * mean, f"{thr * 100:g} % of {short} mean = {thr * mean:.1f}"))
    return out


def returns_figure(result: dict):
    """Return per episode (seed) of every controller as points, the axis zoomed to the data and
    the check thresholds so that a 2 % gap shows; says so when the axis does not start at 0."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    seeds = result["seeds"]
    x = np.arange(len(seeds))
    labels = [k for k in LABELS if result["returns"].get(k)]
    values = []
    for i, k in enumerate(labels):
        r = np.asarray(result["returns"][k], float)
        values += list(r)
        off = (i - (len(labels) - 1) / 2) * 0.12
        ax.plot(x[:len(r)] + off, r, "o-", ms=5, lw=0.8, label=f"{LABELS[k]} (mean {r.mean():.1f})")
    thresholds = return_thresholds(result)
    for (y, label), ls in zip(thresholds, ("--", ":")):
        ax.axhline(y, color="k", ls=ls, lw=1, label=f"threshold: {label}")
    shown = values + [y for y, _ in thresholds]
    if shown:
        lo, hi = min(shown), max(shown)
        pad = 0.12 * (hi - lo) if hi > lo else max(abs(hi) * 0.01, 1.0)
        ax.set_ylim(lo - pad, hi + pad)
    from_zero = ax.get_ylim()[0] <= 0 <= ax.get_ylim()[1]
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.set_xticks(x, [str(s) for s in seeds], rotation=30)
    ax.set_xlabel("episode seed")
    ax.set_ylabel("return" if from_zero else "return (axis does not start at 0)")
    ax.set_title(f"{result['task']}: return per episode")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def returns_plot(result: dict, path: Path) -> str:
    return _save(returns_figure(result), path)


def importance_plot(importance: dict[str, float], kept: dict[str, float] | None, path: Path,
                    metric: str = "") -> str:
    """Importance per component that drove the pruning (and the fraction of units kept)."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = list(importance)
    vals = [importance[n] for n in names]
    ax.bar(names, vals, color="tab:purple")
    ax.set_ylabel(f"mean unit importance{f' ({metric})' if metric else ''}")
    if vals and min(vals) > 0 and max(vals) / min(vals) > 100:
        ax.set_yscale("log")
    if kept:
        ax2 = ax.twinx()
        ax2.plot(names, [kept.get(n, np.nan) for n in names], "o", color="tab:orange", label="kept fraction")
        ax2.set_ylim(0, 1.05)
        ax2.set_ylabel("fraction of units kept")
        ax2.legend(loc="upper right", fontsize=8)
    ax.set_title("importance per component")
    plt.setp(ax.get_xticklabels(), rotation=20)
    return _save(fig, path)


def compare_plot(rows: list[dict], path: Path) -> str:
    """One figure for several runs: return ratio and p99 latency (fraction of budget)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = [r["name"] for r in rows]
    colors = ["tab:green" if r["passed"] else "tab:red" for r in rows]
    a.bar(names, [r["return_ratio"] or 0 for r in rows], color=colors)
    thr = [r["return_ratio_threshold"] for r in rows if r["return_ratio_threshold"]]
    if thr:
        a.axhline(thr[0], color="k", ls="--", lw=1, label=f"threshold {thr[0]}")
        a.legend()
    a.set_ylabel("return ratio (pruned on board / unpruned float)")
    b.bar(names, [r["latency_p99_s"] * 1e3 if r["latency_p99_s"] is not None else 0 for r in rows], color=colors)
    budgets = [r["budget_s"] * 1e3 if r.get("budget_s") else np.nan for r in rows]
    b.scatter(names, budgets, marker="_", s=900, color="k", label="budget", zorder=3)
    b.legend(fontsize=8)
    b.set_ylabel("p99 invoke latency [ms]", labelpad=8)
    b.set_yscale("log")
    for ax in (a, b):
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.suptitle("runs compared (green: passed)")
    return _save(fig, path)
