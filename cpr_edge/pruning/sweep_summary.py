"""Tables of a sweep: mean over seeds with 95 % Student-t intervals, and the paired difference
to L1 (same seeds, same evaluation episodes), per recovery, ratio and metric."""
from __future__ import annotations

import numpy as np

from cpr_edge.pruning.allocation import Bounds


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of a Student-t confidence interval (nan half-width for n < 2)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return float(x.mean()), float("nan")
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return float(x.mean()), float(half)


def summarize(rows: list[dict], baseline: str = "l1", value: str = "return") -> list[dict]:
    """Per (recover, ratio, metric): mean ``value`` over seeds with a 95% t-interval, and the
    paired difference to ``baseline`` (same seeds, same evaluation episodes) with its interval.
    Rows of several latent caps are told apart by their metric (``fisher cap 0.5``)."""
    table = {}
    for r in rows:
        table.setdefault((r["recover"], float(r["ratio"]), label(r)), {})[int(r["seed"])] = float(r[value])
    out = []
    for (rec, ratio, metric), by_seed in sorted(table.items()):
        mean, half = t_interval(list(by_seed.values()))
        item = {"recover": rec, "ratio": ratio, "metric": metric, "n": len(by_seed), "mean": mean, "ci95": half}
        base = table.get((rec, ratio, baseline))
        if base and metric != baseline:
            common = sorted(set(by_seed) & set(base))
            d_mean, d_half = t_interval([by_seed[s] - base[s] for s in common]) if common else (float("nan"),) * 2
            item.update({f"diff_vs_{baseline}": d_mean, f"diff_ci95": d_half})
        out.append(item)
    return out


def label(row: dict) -> str:
    """A row's metric, with its latent cap when that is not the default (``fisher cap 0.5``)."""
    cap = row.get("latent_cap")
    return row["metric"] + (f" cap {float(cap):g}" if cap and round(float(cap), 6) != Bounds.latent_hi else "")


def summary_markdown(summary: list[dict], baseline: str = "l1", what: str = "policy-only return") -> str:
    """Tables per recovery: mean return ± 95% CI over seeds, and the paired difference to ``baseline``."""
    lines = []
    for rec in sorted({s["recover"] for s in summary}, key=lambda r: (r != "none", r)):
        sub = [s for s in summary if s["recover"] == rec]
        metrics = sorted({s["metric"] for s in sub}, key=lambda m: (m == baseline, m))
        ratios = sorted({s["ratio"] for s in sub})
        cell = {(s["ratio"], s["metric"]): s for s in sub}
        title = f"### recovery: {rec}" + ("" if what == "policy-only return" else f" ({what})")
        lines += [title, "", "| ratio | " + " | ".join(metrics) + " |",
                  "|---|" + "---|" * len(metrics)]
        for r in ratios:
            row = []
            for m in metrics:
                c = cell.get((r, m))
                if not c:
                    row.append("")
                    continue
                text = f"{c['mean']:.0f} ± {c['ci95']:.0f}"
                if f"diff_vs_{baseline}" in c:
                    text += f" (Δ{baseline} {c[f'diff_vs_{baseline}']:+.0f} ± {c['diff_ci95']:.0f})"
                row.append(text)
            lines.append(f"| {r:.2f} | " + " | ".join(row) + " |")
        lines.append("")
    n = max((s["n"] for s in summary), default=0)
    lines.append(f"Mean {what} over {n} seeds ± half-width of the 95% Student-t interval; "
                 f"Δ{baseline}: paired difference to {baseline} (same seeds and evaluation episodes).")
    return "\n".join(lines) + "\n"
