"""report.json, report.md and the plots of one HIL run (format: docs/report.md)."""
from __future__ import annotations

import functools
import platform
import shutil
import subprocess
from pathlib import Path

from cpr_edge.fileio import write_json_atomic, write_text_atomic
from cpr_edge.hil.run import LABELS
from cpr_edge.report.constraints import constraints, headroom_lines, latency_seconds
from cpr_edge.report.fit import fit_lines
from cpr_edge.report.units import fmt_seconds

FORMAT = "cpr-edge/report"
VERSION = 2
PACKAGES = ("cpr-edge", "torch", "numpy", "dm-control", "mujoco", "tensorflow", "tflite-micro",
            "onnx", "onnx2tf", "torch-pruning", "pyserial", "matplotlib")


@functools.lru_cache(maxsize=1)
def tool_versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    for exe in ("qemu-system-arm", "arm-none-eabi-gcc", "pyocd"):
        path = shutil.which(exe)
        if path is None:
            out[exe] = None
            continue
        try:
            r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
            out[exe] = (r.stdout or r.stderr).splitlines()[0].strip()
        except (OSError, subprocess.TimeoutExpired, IndexError):
            out[exe] = "unknown"
    return out


def importance_per_component(prune_report: dict | None) -> tuple[dict, dict, str]:
    """(mean importance per component, fraction of units kept per component, metric)
    from a prune.json, or empty dicts when it has none."""
    if not prune_report:
        return {}, {}, ""
    imp = prune_report.get("importance") or {}
    if isinstance(imp, dict) and "per_component" in imp:
        imp = imp["per_component"]
    per = {}
    for comp, v in (imp.items() if isinstance(imp, dict) else []):
        if isinstance(v, dict):
            v = v.get("mean", v.get("importance"))
        if isinstance(v, (int, float)):
            per[comp] = float(v)
    kept = {}
    for comp, v in (prune_report.get("kept_fraction") or {}).items():
        if isinstance(v, (int, float)):
            kept[comp] = float(v)
    return per, kept, str(prune_report.get("metric", ""))


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


def markdown(report: dict) -> str:
    r = report
    lines = [f"# HIL report: {r['task']} on {r['board']['name']}", "",
             f"**{'PASSED' if r['passed'] else 'FAILED'}** — model `{r['model']['sha256'][:16]}…` "
             f"({r['model']['bytes']} bytes), {len(r['seeds'])} episode(s) per controller, seeds "
             f"{r['seeds'][0]}…{r['seeds'][-1]}.", "",
             "| check | value | threshold | result | note |", "|---|---|---|---|---|"]
    for c in r["checks"]:
        unit = f" {c['unit']}" if c.get("unit") and c["value"] is not None and not isinstance(c["value"], dict) else ""
        lines.append(f"| {c['name']} | {_fmt(c['value'])}{unit} | {_fmt(c['threshold'])} | "
                     f"{'pass' if c['passed'] else '**FAIL**'} | {c.get('note', '')} |")
    lines += ["", f"## Headroom on {r['board']['name']}", ""] + headroom_lines(r.get("constraints") or constraints(r))
    if r.get("fit"):
        lines += ["", "## Fit to the board", ""] + fit_lines(r["fit"])
    lines += ["", "## Returns (same seeds)", "", "| controller | mean | per episode |", "|---|---|---|"]
    for k, label in LABELS.items():
        rets = r["returns"].get(k) or []
        if rets:
            lines.append(f"| {label} | {sum(rets) / len(rets):.1f} | {', '.join(f'{x:.1f}' for x in rets)} |")
    lat = r["latency"]
    if lat.get("steps"):
        p99, estimate = latency_seconds(lat)
        est = (f" — **estimate**: QEMU counts instructions; seconds: {lat.get('seconds_basis', 'instructions / clock')}"
               if estimate else "")
        lines += ["", "## Latency", "",
                  f"{lat['steps']} steps; invoke {lat['p50']:.0f} (p50) / {lat['p99']:.0f} (p99) / "
                  f"{lat['max']:.0f} (max) {lat['unit']} at {r['board']['clock_hz'] / 1e6:g} MHz = "
                  f"{fmt_seconds(p99)} p99{' (estimate)' if estimate else ''} against a budget of "
                  f"{fmt_seconds(lat['budget_s'])}{est}."]
    if r.get("stopped"):
        lines[2:2] = [f"**Run stopped** ({r['stopped']['kind']}): {r['stopped']['reason']}", ""]
    if r.get("acceptance"):
        lines += ["", f"Acceptance of board actions: {r['acceptance']['reason']}."]
    resumed = [(k, e["seed"], e["resets"]) for k, eps in r.get("episodes", {}).items() for e in eps if e.get("resets")]
    for label, seed, resets in resumed:
        lines.append(f"- {label} seed {seed}: resumed after board reset(s) at step(s) "
                     f"{', '.join(str(x['step']) for x in resets)}")
    link = r.get("boards", {}).get("pruned_board", {})
    if link:
        lines += ["", f"Link: {link.get('steps_per_s')} control steps/s, counters {link.get('link')}, "
                      f"board STATS {link.get('stats')}."]
    if r.get("quantization"):
        lines += ["", "## Quantisation", ""] + quantization_lines(r["quantization"])
    if r.get("timings"):
        lines += ["", "## Stage times", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in r["timings"].items()]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in r.get("plots", [])]
    lines += ["", "## Tools", "", ", ".join(f"{k} {v}" for k, v in r["tools"].items() if v), ""]
    return "\n".join(lines)


def quantization_lines(q: dict) -> list[str]:
    """The precision chosen, the held-back action error and where it comes from (export.json's
    ``attribution``, docs/export.md)."""
    lines = []
    p = q.get("precision") or {}
    if p:
        tried = "; ".join(f"{t['precision']}: {t['result']}" for t in p.get("tried", []))
        lines.append(f"Precision {p.get('chosen')} (asked {p.get('requested')}; tried {tried}).")
    e = q.get("action_error") or {}
    if e:
        lines.append(f"Held-back action error against the pruned float policy: mean {e['mean_abs']:.4f}, "
                     f"p99 {e['p99_abs']:.4f}, max {e['max_abs']:.4f} over {e.get('observations')} observations.")
    att = q.get("attribution") or {}
    if not att.get("available"):
        return lines + ([f"(no per-tensor attribution: {att.get('why')})"] if att else [])
    lines += ["", "| tensor | scale | float range | accumulated error mean / p99 (LSB) | "
                  "action error if only this is quantised (mean / p99) |", "|---|---|---|---|---|"]
    for t in att["tensors"]:
        a, i = t["accumulated"], t["isolated"]
        lines.append(f"| {t['name']} | {t['scale']:.4g} | [{t['float_min']:.2f}, {t['float_max']:.2f}] | "
                     f"{a['mean_abs']:.4f} / {a['p99_abs']:.4f} ({a['mean_lsb']:.2f}) | "
                     f"{i['mean_abs']:.4f} / {i['p99_abs']:.4f} |")
    w = att["weights_isolated"]
    lines.append(f"| weights (all layers) | per channel | | | {w['mean_abs']:.4f} / {w['p99_abs']:.4f} |")
    if att.get("exact_fraction") is not None:
        lines.append(f"\nInteger emulation equal to TFLM on {att['exact_fraction']:.1%} of "
                     f"{att['observations']} held-back observations (every tensor).")
    return lines


def write_report(out_dir, result: dict, episodes, prune_report: dict | None = None,
                 timings: dict | None = None, extra: dict | None = None) -> dict:
    """Write report.json, report.md, episodes.npz and the PNG plots into ``out_dir``."""
    from cpr_edge.report import plots
    from cpr_edge.report.fit import fit_plot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"format": FORMAT, "version": VERSION, **result, "tools": tool_versions()}
    if timings:
        report["timings"] = {k: round(v, 2) for k, v in timings.items()}
    if extra:
        report.update(extra)
    importance, kept, metric = importance_per_component(prune_report)
    if prune_report:
        report["pruning"] = {"metric": metric, "importance_per_component": importance,
                             "kept_fraction": kept,
                             **{k: prune_report[k] for k in ("ratio", "allocation", "target", "return")
                                if k in prune_report}}
    report["constraints"] = constraints(report)
    names = [plots.latency_plot(result, episodes, out / "latency.png"),
             plots.returns_plot(result, out / "returns.png"),
             plots.memory_plot(report, out / "memory.png")]
    if importance:
        names.append(plots.importance_plot(importance, kept, out / "importance.png", metric))
    if report.get("fit"):
        names.append(fit_plot(report["fit"], out / "fit.png"))
    report["plots"] = names
    episodes.save_npz(out / "episodes.npz")
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", markdown(report))
    return report
