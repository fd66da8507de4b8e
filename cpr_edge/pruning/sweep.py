"""``cpr-edge sweep`` (metric x ratio x seed, CSV + plots) and ``cpr-edge boundary`` (bisection)."""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from cpr_edge.agents.checkpoint import Checkpoint
from cpr_edge.errors import CprError
from cpr_edge.fileio import write_text_atomic
from cpr_edge.pruning.prune import check_args, policy_returns, prune_checkpoint

FIELDS = ["task", "metric", "ratio", "allocation", "target", "seed", "recover", "recover_steps", "episodes",
          "importance_source", "params_deployed_before", "params_deployed_after", "params_all_before",
          "params_all_after", "removed_deployed", "removed_all", "latent", "return_unpruned", "return",
          "return_std", "time_s"]
Log = Callable[[str], None]


def _key(row: dict) -> tuple:
    return (row["task"], row["metric"], round(float(row["ratio"]), 6), row["allocation"], row["target"],
            int(row["seed"]), row["recover"])


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and set(rows[0]) != set(FIELDS):
        raise CprError(f"{path} is not a sweep CSV of this version (columns differ); choose another --out")
    return rows


def write_rows(path: Path, rows: list[dict], fields: list[str] = FIELDS) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def _row(info: dict, recover: str, returns: list[float], unpruned: list[float], episodes: int) -> dict:
    p = info["params"]
    return {"task": info["task"], "metric": info["metric"], "ratio": info["ratio"], "allocation": info["allocation"],
            "target": info["target"], "seed": info["seed"], "recover": recover,
            "recover_steps": info["recover_steps"] if recover != "none" else 0, "episodes": episodes,
            "importance_source": info["importance_source"],
            "params_deployed_before": p["deployed"]["before"], "params_deployed_after": p["deployed"]["after"],
            "params_all_before": p["all"]["before"], "params_all_after": p["all"]["after"],
            "removed_deployed": round(p["deployed"]["removed_fraction"], 5),
            "removed_all": round(p["all"]["removed_fraction"], 5), "latent": info["widths"]["after"]["latent"],
            "return_unpruned": round(float(np.mean(unpruned)), 3), "return": round(float(np.mean(returns)), 3),
            "return_std": round(float(np.std(returns)), 3), "time_s": info["time_s"]["total"]}


def run_sweep(ck: Checkpoint, metrics: list[str], ratios: list[float], seeds: list[int], recovers: list[str],
              out: str | Path, allocation: str = "component", target: str = "deployed", recover_steps: int = 300,
              episodes: int = 5, posthoc_steps: int = 16, log: Log = lambda s: print(s, file=sys.stderr)) -> dict:
    """Run every (seed, metric, ratio) once per non-``none`` recovery; the ``none`` row is the
    same pruned agent before recovery. Rows already in ``out/sweep.csv`` are skipped."""
    for m in metrics:
        for r in ratios:
            for rec in recovers:
                check_args(m, r, allocation, target, rec, recover_steps)
    if not (metrics and ratios and seeds and recovers):
        raise CprError("sweep needs at least one metric, ratio, seed and recovery")
    out = Path(out)
    csv_path = out / "sweep.csv"
    rows = read_rows(csv_path)
    done = {_key(r) for r in rows}
    total = len(metrics) * len(ratios) * len(seeds)
    k = 0
    for seed in seeds:
        unpruned = None
        for metric in metrics:
            for ratio in ratios:
                k += 1
                base = {"task": ck.task, "metric": metric, "ratio": ratio, "allocation": allocation,
                        "target": target, "seed": seed}
                needed = [rec for rec in recovers if _key({**base, "recover": rec}) not in done]
                if not needed:
                    continue
                if unpruned is None:
                    unpruned = policy_returns(ck.agent, ck.task, episodes, seed)
                    log(f"seed {seed}: unpruned policy-only return {np.mean(unpruned):.1f}")
                real = [rec for rec in needed if rec != "none"] or ["none"]
                for i, rec in enumerate(real):
                    _, info = prune_checkpoint(ck, metric, ratio, allocation, target, rec, recover_steps, seed,
                                               episodes, posthoc_steps=posthoc_steps, unpruned_returns=unpruned)
                    per = info["return"]["per_episode"]
                    if i == 0 and "none" in needed:
                        rows.append(_row(info, "none", per["pruned"], unpruned, episodes))
                    if rec != "none":
                        rows.append(_row(info, rec, per["recovered"], unpruned, episodes))
                    r = info["return"]["policy"]
                    log(f"[{k}/{total}] seed {seed} {metric:6s} ratio {ratio:.2f}: pruned {r['pruned']:.1f}, "
                        f"{rec} {r['recovered']:.1f} (unpruned {r['unpruned']:.1f}) in {info['time_s']['total']:.1f} s")
                write_rows(csv_path, rows)  # after every prune: an interrupted sweep resumes here
    from cpr_edge.pruning.plots import plot_sweep, plot_trace

    plots = [str(plot_sweep(rows, out / "sweep_return.png"))]
    trace = (ck.extra.get("importance") or {}).get("trace")
    if trace:
        plots.append(str(plot_trace(trace, out / "importance_trace.png")))
    else:
        log("no importance trace in this checkpoint (train with --importance): trace plot skipped")
    summary = summarize(rows)
    write_text_atomic(out / "sweep_summary.md", summary_markdown(summary))
    return {"csv": str(csv_path), "rows": len(rows), "plots": plots, "summary": summary,
            "summary_md": str(out / "sweep_summary.md")}


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of a Student-t confidence interval (nan half-width for n < 2)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return float(x.mean()), float("nan")
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return float(x.mean()), float(half)


def summarize(rows: list[dict], baseline: str = "l1") -> list[dict]:
    """Per (recover, ratio, metric): mean return over seeds with a 95% t-interval, and the
    paired difference to ``baseline`` (same seeds, same evaluation episodes) with its interval."""
    table = {}
    for r in rows:
        table.setdefault((r["recover"], float(r["ratio"]), r["metric"]), {})[int(r["seed"])] = float(r["return"])
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


def summary_markdown(summary: list[dict], baseline: str = "l1") -> str:
    """Tables per recovery: mean return ± 95% CI over seeds, and the paired difference to ``baseline``."""
    lines = []
    for rec in sorted({s["recover"] for s in summary}, key=lambda r: (r != "none", r)):
        sub = [s for s in summary if s["recover"] == rec]
        metrics = sorted({s["metric"] for s in sub}, key=lambda m: (m == baseline, m))
        ratios = sorted({s["ratio"] for s in sub})
        cell = {(s["ratio"], s["metric"]): s for s in sub}
        lines += [f"### recovery: {rec}", "", "| ratio | " + " | ".join(metrics) + " |",
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
    lines.append(f"Mean policy-only return over {n} seeds ± half-width of the 95% Student-t interval; "
                 f"Δ{baseline}: paired difference to {baseline} (same seeds and evaluation episodes).")
    return "\n".join(lines) + "\n"


def find_boundary(ck: Checkpoint, metrics: list[str], fraction: float = 0.95, iters: int = 5,
                  max_ratio: float = 0.9, allocation: str = "component", target: str = "deployed",
                  recover: str = "distill", recover_steps: int = 300, seed: int = 0, episodes: int = 5,
                  posthoc_steps: int = 16, log: Log = lambda s: print(s, file=sys.stderr)) -> dict:
    """Per metric, the largest ratio in [0, max_ratio] (to 2^-iters) whose recovered return is
    at least ``fraction`` of the unpruned return, assuming the return falls with the ratio."""
    for m in metrics:
        check_args(m, max_ratio, allocation, target, recover, recover_steps)
    unpruned = policy_returns(ck.agent, ck.task, episodes, seed)
    goal = fraction * float(np.mean(unpruned))
    log(f"unpruned policy-only return {np.mean(unpruned):.1f}; goal >= {goal:.1f}")
    result = {"task": ck.task, "fraction": fraction, "unpruned": float(np.mean(unpruned)), "allocation": allocation,
              "target": target, "recover": recover, "recover_steps": recover_steps, "seed": seed, "metrics": {}}
    for metric in metrics:
        lo, hi, tried = 0.0, max_ratio, []
        for _ in range(iters):
            mid = round(0.5 * (lo + hi), 6)
            try:
                _, info = prune_checkpoint(ck, metric, mid, allocation, target, recover, recover_steps, seed,
                                           episodes, posthoc_steps=posthoc_steps, unpruned_returns=unpruned)
                ret = info["return"]["policy"]["recovered"]
            except CprError as e:  # ratio not reachable within the allocation bounds
                log(f"{metric} ratio {mid:.3f}: {e}")
                ret = float("-inf")
            ok = ret >= goal
            tried.append({"ratio": mid, "return": ret, "safe": ok})
            log(f"{metric:6s} ratio {mid:.3f}: recovered return {ret:.1f} -> {'safe' if ok else 'unsafe'}")
            lo, hi = (mid, hi) if ok else (lo, mid)
        result["metrics"][metric] = {"ratio": lo, "tried": tried}
    return result
