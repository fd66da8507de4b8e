"""PNG plots of the sweep (return vs ratio) and of the importance trace over training."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cpr_edge.fileio import atomic_path
from cpr_edge.importance.metrics import split_metric

COLORS = {"grad": "tab:blue", "fisher": "tab:orange", "bayes": "tab:green", "l1": "tab:red",
          "l2": "tab:purple", "random": "tab:gray"}


def _figure(ncols: int, width: float = 5.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 4), squeeze=False)
    return plt, fig, axes[0]


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_sweep(rows: list[dict], path: Path, y: str = "return", ylabel: str = "policy-only return",
               panel: str = "recover", x: str = "ratio", baseline: str = "return_unpruned",
               logy: bool = False) -> Path:
    """One panel per ``panel`` value; one line per metric (mean over seeds), band = min..max."""
    panels = sorted({r[panel] for r in rows}, key=lambda v: (v != "none", v))
    plt, fig, axes = _figure(len(panels))
    for ax, pv in zip(axes, panels):
        sub = [r for r in rows if r[panel] == pv]
        for metric in sorted({r["metric"] for r in sub}, key=lambda m: list(COLORS).index(m) if m in COLORS else 99):
            by_x: dict[float, list[float]] = {}
            for r in sub:
                if r["metric"] == metric:
                    by_x.setdefault(float(r[x]), []).append(float(r[y]))
            xs = sorted(by_x)
            mean = np.array([np.mean(by_x[v]) for v in xs])
            lo = np.array([np.min(by_x[v]) for v in xs])
            hi = np.array([np.max(by_x[v]) for v in xs])
            # fisher-posthoc / fisher-mean: fisher's colour, dashed; fisher@l1 dotted; "fisher cap 0.5"
            # (sweep_summary.label) dash-dotted with square markers; only plain metrics get a band
            name, capped = metric.split(" cap ")[0], " cap " in metric
            base, variant = split_metric(name)
            color = COLORS.get(base)
            style = "s-." if capped else "o:" if "@" in name else "o--" if variant else "o-"
            ax.plot(xs, mean, style, color=color, label=metric)
            if style == "o-":
                ax.fill_between(xs, lo, hi, color=color, alpha=0.15)
        if baseline in sub[0]:
            ax.axhline(np.mean([float(r[baseline]) for r in sub]), ls="--", color="k", lw=1, label="unpruned")
        if logy:
            ax.set_yscale("log")
        ax.set_title(f"{panel}: {pv}")
        ax.set_xlabel("pruning ratio" if x == "ratio" else x)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7 if len(ax.lines) > 8 else 8, ncol=2 if len(ax.lines) > 8 else 1)
    return _save(plt, fig, path)


def plot_trace(trace: list[dict], path: Path) -> Path:
    """Per metric, each component's mean unit score (EMA-smoothed) over training updates."""
    metrics = [m for m in ("grad", "fisher", "bayes") if m in trace[0]]
    plt, fig, axes = _figure(len(metrics))
    updates = [row["update"] for row in trace]
    for ax, metric in zip(axes, metrics):
        for c in trace[0][metric]:
            ax.plot(updates, [row[metric][c] for row in trace], "o-", ms=3, label=c)
        ax.set_yscale("log")
        ax.set_title(f"{metric}: mean unit score per component")
        ax.set_xlabel("training updates")
        ax.set_ylabel("mean unit score (EMA)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(plt, fig, path)
