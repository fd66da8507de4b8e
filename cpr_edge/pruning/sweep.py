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
from cpr_edge.pruning.allocation import Bounds
from cpr_edge.pruning.prune import (check_args, check_latent_cap, check_quant_eval, checkpoint_repeat, policy_returns,
                                    prune_checkpoint)
from cpr_edge.pruning.sweep_summary import label, summarize, summary_markdown

FIELDS = ["task", "metric", "ratio", "allocation", "target", "latent_cap", "seed", "recover", "recover_steps", "episodes",
          "importance_source", "params_deployed_before", "params_deployed_after", "params_all_before",
          "params_all_after", "removed_deployed", "removed_all", "latent", "return_unpruned", "return",
          "return_std", "quant", "return_quant_unpruned", "return_quant", "time_s", "status", "error"]
LATER = {"latent_cap": str(Bounds.latent_hi), "quant": "", "return_quant_unpruned": "", "return_quant": "",
         "status": "ok", "error": ""}
"""Columns added after the first sweeps, and what an older CSV's rows mean by them: the default
latent cap, no quantised evaluation, and (before sweeps ran on Ray) every row finished."""
FIELDS_V1 = [f for f in FIELDS if f not in LATER]
FIELDS_V2 = [*FIELDS_V1, "status", "error"]  # Ray sweeps, before --latent-cap and --quant
Log = Callable[[str], None]
MODES = ("oneshot", "gradual")
"""``oneshot``: prune once, then recover; ``gradual``: prune while training on (``prune --gradual``)."""


def _key(row: dict) -> tuple:
    return (row["task"], row["metric"], round(float(row["ratio"]), 6), row["allocation"], row["target"],
            round(float(row["latent_cap"]), 6), row["quant"], int(row["seed"]), row["recover"])


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = set(reader.fieldnames or [])
    missing = set(FIELDS) - header
    if rows and (header - set(FIELDS) or not missing <= set(LATER)):
        raise CprError(f"{path} is not a sweep CSV of this version (columns differ); choose another --out")
    return [{**{k: LATER[k] for k in missing}, **r} for r in rows]


def write_rows(path: Path, rows: list[dict], fields: list[str] = FIELDS) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def ok_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("status", "ok") == "ok"]


def _row(info: dict, recover: str, returns: list[float], unpruned: list[float], episodes: int,
         quant: tuple[list[float], list[float]] | None = None) -> dict:
    """``quant``: the quantised returns of this row's policy and of the unpruned one."""
    p = info["params"]
    return {"task": info["task"], "metric": info["metric"], "ratio": info["ratio"], "allocation": info["allocation"],
            "target": info["target"], "latent_cap": info["latent_cap"], "seed": info["seed"], "recover": recover,
            "recover_steps": info["recover_steps"] if recover != "none" else 0, "episodes": episodes,
            "importance_source": info["importance_source"],
            "params_deployed_before": p["deployed"]["before"], "params_deployed_after": p["deployed"]["after"],
            "params_all_before": p["all"]["before"], "params_all_after": p["all"]["after"],
            "removed_deployed": round(p["deployed"]["removed_fraction"], 5),
            "removed_all": round(p["all"]["removed_fraction"], 5), "latent": info["widths"]["after"]["latent"],
            "return_unpruned": round(float(np.mean(unpruned)), 3), "return": round(float(np.mean(returns)), 3),
            "return_std": round(float(np.std(returns)), 3),
            "quant": info["return_quant"]["activations"] if quant else "",
            "return_quant_unpruned": round(float(np.mean(quant[1])), 3) if quant else "",
            "return_quant": round(float(np.mean(quant[0])), 3) if quant else "",
            "time_s": info["time_s"]["total"], "status": "ok", "error": ""}


def _failed_row(base: dict, recover: str, recover_steps: int, episodes: int, error: str) -> dict:
    row = dict.fromkeys(FIELDS, "")
    row.update(base, recover=recover, recover_steps=recover_steps if recover != "none" else 0, episodes=episodes,
               status="failed", error=error)
    return row


def unpruned_cell(ck: Checkpoint, episodes: int, seed: int, quant: str = "") -> dict:
    """The unpruned agent's float returns, and its quantised ones with ``quant``."""
    from cpr_edge.quant.sim_eval import quantized_returns

    repeat = checkpoint_repeat(ck)
    return {"float": policy_returns(ck.agent, ck.task, episodes, seed, repeat),
            "quant": quantized_returns(ck.agent, ck, ck.task, episodes, seed, quant, repeat) if quant else None}


def sweep_cell(ck: Checkpoint, metric: str, ratio: float, allocation: str, target: str, recover: str,
               with_none: bool, recover_steps: int, seed: int, episodes: int, posthoc_steps: int,
               unpruned: dict, latent_cap: float = Bounds.latent_hi, quant: str = "") -> list[dict]:
    """One prune (+ recovery): the ``recover`` row, and the ``none`` row of the same pruned
    agent before recovery when ``with_none`` (``recover == "none"`` gives that row alone).
    ``quant``: every row also gets its policy's quantised return, and ``qat`` trains for it."""
    _, info = prune_checkpoint(ck, metric, ratio, allocation, target, recover, recover_steps, seed, episodes,
                               posthoc_steps=posthoc_steps, unpruned_returns=unpruned["float"],
                               bounds=Bounds(latent_hi=latent_cap), quant_eval=quant or None,
                               **({"qat_activations": quant} if quant else {}))
    per, floats = info["return"]["per_episode"], unpruned["float"]
    q = info["return_quant"]["per_episode"] if quant else None
    rows = ([_row(info, "none", per["pruned"], floats, episodes, q and (q["pruned"], unpruned["quant"]))]
            if with_none or recover == "none" else [])
    if recover != "none":
        rows.append(_row(info, recover, per["recovered"], floats, episodes, q and (q["recovered"], unpruned["quant"])))
    return rows


def gradual_cell(ck: Checkpoint, metric: str, ratio: float, allocation: str, target: str, steps: int,
                 schedule: dict, seed: int, episodes: int, unpruned: dict) -> list[dict]:
    """One gradual prune (``prune --gradual``): its ``gradual`` row."""
    from cpr_edge.pruning.gradual_checkpoint import gradual_prune_checkpoint

    _, info = gradual_prune_checkpoint(ck, metric, ratio, steps, allocation, target, seed=seed,
                                       eval_episodes=episodes, unpruned_returns=unpruned["float"], **schedule)
    return [_row(info, "gradual", info["return"]["per_episode"]["recovered"], unpruned["float"], episodes)]


def run_sweep(ck: Checkpoint, metrics: list[str], ratios: list[float], seeds: list[int], recovers: list[str],
              out: str | Path, allocation: str = "component", target: str = "deployed", recover_steps: int = 300,
              episodes: int = 5, posthoc_steps: int = 16, log: Log = lambda s: print(s, file=sys.stderr),
              workers: int | None = 1, address: str | None = None, mode: str = "oneshot",
              schedule: dict | None = None, latent_cap: float = Bounds.latent_hi, quant: str = "") -> dict:
    """Run every (seed, metric, ratio) once per non-``none`` recovery as a Ray task (a cell);
    the ``none`` row is the same pruned agent before recovery. Rows already finished in
    ``out/sweep.csv`` are skipped (failed ones are retried); the CSV is rewritten atomically
    as each cell finishes, so an interrupted sweep resumes there. ``mode="gradual"``: each cell
    trains the checkpoint on for ``recover_steps`` env steps while pruning on ``schedule``
    (``start``, ``end``, ``prune_steps``, ``schedule``); its rows have recovery ``gradual``.
    ``latent_cap``: the most fraction of latent dimensions a cut removes (``Bounds.latent_hi``).
    ``quant`` (``int8``/``int16``): every row also records the return of its policy's quantised
    forward (cpr_edge.quant.sim_eval), and recovery ``qat`` trains for those activations."""
    from cpr_edge.pruning.ray_cells import ENGINE, Cell, RayCells, ray_version

    if mode not in MODES:
        raise CprError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "gradual":
        from cpr_edge.pruning.gradual import check_schedule

        schedule = schedule or {}
        recovers = ["gradual"]
        for m in metrics:
            for r in ratios:
                check_schedule(r, schedule.get("start", 0.0), schedule.get("end", 0.8),
                               schedule.get("prune_steps", 20), schedule.get("schedule", "cosine"), m,
                               allocation, target, ratio_flag="--ratios")
        if recover_steps < 1:
            raise CprError(f"--gradual-steps must be at least 1, got {recover_steps}")
        if latent_cap != Bounds.latent_hi:
            raise CprError(f"--latent-cap applies to one cut; --mode gradual keeps the default {Bounds.latent_hi}")
        if quant:
            raise CprError("--quant applies to one cut; --mode gradual records float returns only")
    check_latent_cap(latent_cap)
    check_quant_eval(quant or None)
    for m in metrics if mode == "oneshot" else []:
        for r in ratios:
            for rec in recovers:
                check_args(m, r, allocation, target, rec, recover_steps)
    if not (metrics and ratios and seeds and recovers):
        raise CprError("sweep needs at least one metric, ratio, seed and recovery")
    out = Path(out)
    csv_path = out / "sweep.csv"
    rows = {_key(r): r for r in read_rows(csv_path)}
    done = {k for k, r in rows.items() if r["status"] == "ok"}
    cells = []  # (base, recover, with_none)
    for seed in seeds:
        for metric in metrics:
            for ratio in ratios:
                base = {"task": ck.task, "metric": metric, "ratio": ratio, "allocation": allocation,
                        "target": target, "latent_cap": latent_cap, "quant": quant, "seed": seed}
                needed = [rec for rec in recovers if _key({**base, "recover": rec}) not in done]
                real = [rec for rec in needed if rec != "none"] or (["none"] if needed else [])
                cells += [(base, rec, i == 0 and "none" in needed and rec != "none") for i, rec in enumerate(real)]
    n_cells = len(seeds) * len(metrics) * len(ratios) * max(1, len([r for r in recovers if r != "none"]))
    engine = {"engine": ENGINE, "ray_version": ray_version(), "workers": workers, "ray_address": address or "local",
              "ray_started": False}
    failed = 0
    if cells:
        with RayCells(workers, address) as rc:
            engine.update(rc.info(), ray_started=True)
            log(f"{len(cells)} of {n_cells} cells to run on Ray {engine['ray_version']} "
                f"({engine['ray_address']}, {rc.workers} workers)")
            ck_ref = rc.put(ck)  # shipped once; every cell reads it from the object store
            unpruned = {s: rc.submit(unpruned_cell, ck_ref, episodes, s, quant)
                        for s in sorted({b["seed"] for b, _, _ in cells})}
            todo = [Cell((base, rec, with_none), sweep_cell,
                         (ck_ref, base["metric"], base["ratio"], allocation, target, rec, with_none, recover_steps,
                          base["seed"], episodes, posthoc_steps, unpruned[base["seed"]], latent_cap, quant))
                    if mode == "oneshot" else
                    Cell((base, rec, False), gradual_cell,
                         (ck_ref, base["metric"], base["ratio"], allocation, target, recover_steps, schedule,
                          base["seed"], episodes, unpruned[base["seed"]]))
                    for base, rec, with_none in cells]

            def finished(o, say):
                nonlocal failed
                base, rec, with_none = o.cell.tag
                label = f"seed {base['seed']} {base['metric']:6s} ratio {base['ratio']:.2f} {rec}"
                if o.error is None:
                    new = o.result
                    say(f"{label}: " + ", ".join(f"{r['recover']} {float(r['return']):.1f}" for r in new)
                        + f" (unpruned {float(new[0]['return_unpruned']):.1f}) in {new[0]['time_s']:.1f} s")
                else:
                    failed += 1
                    new = [_failed_row(base, r, recover_steps, episodes, o.error)
                           for r in (["none"] if with_none else []) + [rec]]
                    say(f"{label}: failed: {o.error}")
                for r in new:
                    rows[_key(r)] = r
                write_rows(csv_path, list(rows.values()))  # whole CSV, temp file + rename

            rc.run(todo, finished, desc="sweep")
    else:
        log(f"all {n_cells} cells already in {csv_path}: nothing to run, Ray not started")
    all_rows = list(rows.values())
    good = ok_rows(all_rows)
    from cpr_edge.pruning.plots import plot_sweep, plot_trace

    plots = [str(plot_sweep([{**r, "metric": label(r)} for r in good], out / "sweep_return.png"))] if good else []
    trace = (ck.extra.get("importance") or {}).get("trace")
    if trace:
        plots.append(str(plot_trace(trace, out / "importance_trace.png")))
    else:
        log("no importance trace in this checkpoint (train with --importance): trace plot skipped")
    summary = summarize(good)
    quant_rows = [r for r in good if r.get("quant")]
    summary_quant = summarize(quant_rows, value="return_quant") if quant_rows else []
    write_text_atomic(out / "sweep_summary.md", summary_markdown(summary) + (
        "\n" + summary_markdown(summary_quant, what=f"{'/'.join(sorted({r['quant'] for r in quant_rows}))} "
                                                    f"(simulated) policy-only return") if quant_rows else ""))
    n_failed = sum(r["status"] != "ok" for r in all_rows)
    return {"csv": str(csv_path), "rows": len(all_rows), "rows_failed": n_failed, "plots": plots,
            "summary": summary, **({"summary_quant": summary_quant} if quant_rows else {}), "summary_md": str(out / "sweep_summary.md"), **engine,
            "cells": {"total": n_cells, "run": len(cells), "skipped": n_cells - len(cells), "failed": failed}}


def boundary_probe(ck: Checkpoint, metric: str, ratio: float, allocation: str, target: str, recover: str,
                   recover_steps: int, seed: int, episodes: int, posthoc_steps: int, unpruned: dict) -> dict:
    """One bisection probe: the recovered return at ``ratio``, -inf when the allocation cannot reach it."""
    try:
        _, info = prune_checkpoint(ck, metric, ratio, allocation, target, recover, recover_steps, seed,
                                   episodes, posthoc_steps=posthoc_steps, unpruned_returns=unpruned["float"])
    except CprError as e:  # ratio not reachable within the allocation bounds
        return {"return": float("-inf"), "note": str(e)}
    return {"return": info["return"]["policy"]["recovered"], "note": None}


def find_boundary(ck: Checkpoint, metrics: list[str], fraction: float = 0.95, iters: int = 5,
                  max_ratio: float = 0.9, allocation: str = "component", target: str = "deployed",
                  recover: str = "distill", recover_steps: int = 300, seed: int = 0, episodes: int = 5,
                  posthoc_steps: int = 16, log: Log = lambda s: print(s, file=sys.stderr),
                  workers: int | None = 1, address: str | None = None) -> dict:
    """Per metric, the largest ratio in [0, max_ratio] (to 2^-iters) whose recovered return is
    at least ``fraction`` of the unpruned return, assuming the return falls with the ratio.
    The metrics bisect side by side, one Ray task per probe; a probe that raises ends its
    metric's bisection (``status: failed`` with the error) and the others go on."""
    import ray

    from cpr_edge.pruning.ray_cells import Cell, RayCells, one_line

    for m in metrics:
        check_args(m, max_ratio, allocation, target, recover, recover_steps)
    result = {"task": ck.task, "fraction": fraction, "unpruned": None, "allocation": allocation,
              "target": target, "recover": recover, "recover_steps": recover_steps, "seed": seed, "metrics": {}}
    with RayCells(workers, address) as rc:
        result.update(rc.info())
        ck_ref = rc.put(ck)
        unpruned_ref = rc.submit(unpruned_cell, ck_ref, episodes, seed)
        try:
            unpruned = ray.get(unpruned_ref)["float"]  # the goal is needed to judge the first probe anyway
        except Exception as e:
            raise CprError(f"evaluating the unpruned agent failed: {one_line(e)}") from None
        goal = fraction * float(np.mean(unpruned))
        result["unpruned"] = float(np.mean(unpruned))
        log(f"unpruned policy-only return {np.mean(unpruned):.1f}; goal >= {goal:.1f}")
        state = {m: {"lo": 0.0, "hi": max_ratio, "tried": []} for m in metrics}

        def probe(metric: str) -> Cell:
            st = state[metric]
            mid = round(0.5 * (st["lo"] + st["hi"]), 6)
            return Cell((metric, mid), boundary_probe, (ck_ref, metric, mid, allocation, target, recover,
                                                        recover_steps, seed, episodes, posthoc_steps, unpruned_ref))

        def finished(o, say):
            metric, mid = o.cell.tag
            st = state[metric]
            if o.error is not None:
                st["error"] = o.error
                say(f"{metric:6s} ratio {mid:.3f}: failed: {o.error}")
                return []
            ret = o.result["return"]
            if o.result["note"]:
                say(f"{metric} ratio {mid:.3f}: {o.result['note']}")
            ok = ret >= goal
            st["tried"].append({"ratio": mid, "return": ret, "safe": ok})
            say(f"{metric:6s} ratio {mid:.3f}: recovered return {ret:.1f} -> {'safe' if ok else 'unsafe'}")
            st["lo"], st["hi"] = (mid, st["hi"]) if ok else (st["lo"], mid)
            return [probe(metric)] if len(st["tried"]) < iters else []

        rc.run([probe(m) for m in metrics], finished, total=len(metrics) * iters, desc="boundary")
    for m, st in state.items():
        result["metrics"][m] = {"ratio": st["lo"], "tried": st["tried"], "status": "failed" if "error" in st else "ok",
                                **({"error": st["error"]} if "error" in st else {})}
    return result
