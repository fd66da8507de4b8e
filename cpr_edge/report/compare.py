"""``cpr-edge report RUN_DIR...``: several runs or boards in one table and one plot."""
from __future__ import annotations

import json
from pathlib import Path

from cpr_edge.errors import CprError
from cpr_edge.report.constraints import NAMES, constraints, describe, latency_seconds
from cpr_edge.report.units import fmt_bytes, fmt_percent, fmt_seconds


def load_report(run_dir) -> dict:
    p = Path(run_dir)
    path = p if p.is_file() else p / "report.json"
    if not path.is_file():
        raise CprError(f"no report.json in {run_dir}")
    try:
        r = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CprError(f"{path} is not valid JSON: {e}")
    if r.get("format") != "cpr-edge/report" or not isinstance(r.get("checks"), list):
        raise CprError(f"{path} is not a cpr-edge report")
    r["_path"] = str(path)
    return r


def row(r: dict) -> dict:
    checks = {c["name"]: c for c in r["checks"]}
    rr = checks.get("return_ratio", {})
    lat = r.get("latency", {})
    c = r.get("constraints") or constraints(r)
    flash, ram = c.get("flash") or {}, c.get("ram") or {}
    return {
        "name": f"{r['board']['name']} ({Path(r['_path']).parent.name})",
        "run": str(Path(r["_path"]).parent), "task": r["task"], "board": r["board"]["name"],
        "passed": bool(r["passed"]), "model_sha256": r["model"]["sha256"],
        "model_bytes": r["model"]["bytes"],
        "return_pruned_board": r["mean_return"].get("pruned_board"),
        "return_unpruned_float": r["mean_return"].get("unpruned_float_host"),
        "return_ratio": rr.get("value"), "return_ratio_threshold": rr.get("threshold"),
        "latency_p99_s": latency_seconds(lat)[0], "latency_estimate": latency_seconds(lat)[1],
        "budget_s": lat.get("budget_s"),
        "flash_used": flash.get("used"), "flash_capacity": flash.get("limit"),
        "ram_used": ram.get("used"), "ram_capacity": ram.get("limit"),
        "headroom_fraction": {k: c[k]["headroom_fraction"] for k in NAMES if isinstance(c.get(k), dict)},
        "binding": c.get("binding"),
        "binding_text": describe(c["binding"], c[c["binding"]]) if c.get("binding") else None,
        "failed_checks": [x["name"] for x in r["checks"] if not x["passed"]],
    }


def markdown_table(rows: list[dict]) -> str:
    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    def mem(used, cap):
        return "–" if used is None or not cap else f"{fmt_bytes(used)} of {fmt_bytes(cap)} ({fmt_percent(1 - used / cap)} left)"

    lines = ["| run | task | result | return board / float | ratio | p99 latency | flash | RAM | binding constraint | model |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lat = "–" if r["latency_p99_s"] is None else (
            fmt_seconds(r["latency_p99_s"]) + (" (est.)" if r["latency_estimate"] else ""))
        fl, ram = mem(r["flash_used"], r["flash_capacity"]), mem(r["ram_used"], r["ram_capacity"])
        res = "pass" if r["passed"] else "**FAIL** (" + ", ".join(r["failed_checks"]) + ")"
        lines.append(f"| {r['name']} | {r['task']} | {res} | {f(r['return_pruned_board'], '.1f')} / "
                     f"{f(r['return_unpruned_float'], '.1f')} | {f(r['return_ratio'], '.3f')} | {lat} | {fl} | "
                     f"{ram} | {r['binding_text'] or '–'} | `{r['model_sha256'][:12]}` |")
    return "\n".join(lines) + "\n"


def compare(run_dirs: list, out_dir) -> dict:
    """Write compare.md and compare.png into ``out_dir``; return the rows."""
    from cpr_edge.fileio import write_text_atomic
    from cpr_edge.report.plots import compare_plot

    if not run_dirs:
        raise CprError("give at least one run folder")
    rows = [row(load_report(d)) for d in run_dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    write_text_atomic(out / "compare.md", "# Runs compared\n\n" + table + "\n![compare](compare.png)\n")
    compare_plot(rows, out / "compare.png")
    return {"rows": rows, "table": table, "markdown": str(out / "compare.md"), "plot": str(out / "compare.png")}
