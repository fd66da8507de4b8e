"""PNG plots of one HIL run (matplotlib, Agg backend, written atomically)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cpr_edge.fileio import atomic_path  # noqa: E402
from cpr_edge.hil.run import LABELS  # noqa: E402


def _save(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def latency_plot(result: dict, episodes, path: Path) -> str:
    """Histogram of per-step invoke time, and the per-step trace of the first episode."""
    lat = result["latency"]
    hz = result["board"]["clock_hz"]
    eps = [e for e in episodes.runs.get("pruned_board", []) if e.invoke_counts is not None and len(e.invoke_counts)]
    us = np.concatenate([e.invoke_counts for e in eps]) / hz * 1e6 if eps else np.zeros(0)
    from cpr_edge.hil.checks import p99_seconds

    p99, estimate = p99_seconds(lat)
    est = " (estimate: one instruction per cycle)" if estimate else ""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    if us.size:
        a.hist(us, bins=min(40, max(5, us.size // 5)), color="tab:blue")
        a.axvline(p99 * 1e6, color="tab:red", ls="--", label=f"p99 {p99 * 1e6:.1f} µs{' (est.)' if estimate else ''}")
        a.legend()
        b.plot(eps[0].invoke_counts / hz * 1e6, lw=1)
        b.axhline(lat["budget_s"] * 1e6, color="tab:red", ls=":", label=f"budget {lat['budget_s'] * 1e3:g} ms")
        if lat["budget_s"] * 1e6 > 20 * max(us.max(), 1e-9):
            b.set_yscale("log")
        b.legend()
    a.set_xlabel(f"invoke time [µs]{est}")
    a.set_ylabel("steps")
    a.set_title(f"{result['board']['name']}: invoke latency, {us.size} steps")
    b.set_xlabel("agent step")
    b.set_ylabel("invoke time [µs]")
    b.set_title(f"per-step trace, seed {eps[0].seed}" if eps else "no board steps")
    return _save(fig, path)


def returns_plot(result: dict, path: Path) -> str:
    """Return per episode (seed) of the pruned model on the board against each baseline."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    seeds = result["seeds"]
    x = np.arange(len(seeds))
    labels = [k for k in LABELS if result["returns"].get(k)]
    w = 0.8 / max(len(labels), 1)
    for i, k in enumerate(labels):
        r = result["returns"][k]
        ax.bar(x[:len(r)] + (i - (len(labels) - 1) / 2) * w, r, w, label=LABELS[k])
    ax.set_xticks(x, [str(s) for s in seeds], rotation=30)
    ax.set_xlabel("episode seed")
    ax.set_ylabel("return")
    ax.set_title(f"{result['task']}: return per episode")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def memory_plot(result: dict, path: Path) -> str:
    """Flash and RAM use of the build against the board's capacity."""
    from cpr_edge.hil.checks import memory_figures

    fig, ax = plt.subplots(figsize=(6, 3))
    mem = result.get("memory")
    if mem:
        fu, fc, ru, rc = memory_figures(mem)
        names = ["flash", "RAM"]
        ax.barh(names, [fc / 1024, rc / 1024], color="lightgray", label="capacity")
        ax.barh(names, [fu / 1024, ru / 1024], color=["tab:blue" if fu <= fc else "tab:red",
                                                      "tab:blue" if ru <= rc else "tab:red"], label="used")
        for i, (u, c) in enumerate(((fu, fc), (ru, rc))):
            ax.text(c / 1024, i, f" {u / 1024:.1f} / {c / 1024:.0f} KiB ({100 * u / c:.1f}%)", va="center")
        ax.legend(loc="lower right")
    ax.set_xlabel("KiB")
    ax.set_title(f"{result['board']['name']}: memory")
    return _save(fig, path)


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
