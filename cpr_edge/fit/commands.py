"""``cpr-edge fit``: the search alone; ``add_fit_args`` / ``fit_for_args`` also serve
``prune-and-flash --fit``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cpr_edge.errors import CprError


def add_fit_args(p: argparse.ArgumentParser, flag: bool) -> None:
    """The search's options; ``flag`` adds ``--fit`` (prune-and-flash), else the search is the command."""
    if flag:
        p.add_argument("--fit", action="store_true",
                       help="choose the ratio: the smallest removal at which flash, RAM and the latency "
                            "budget hold on the board with --fit-margin free (cpr-edge fit); --ratio is then not given")
    p.add_argument("--fit-margin", type=float, default=0.1,
                   help="fraction of each limit (flash, RAM, latency budget) kept free by the fit (default 0.1)")
    p.add_argument("--grid-step", type=float, default=0.02,
                   help="the fit probes removal ratios that are multiples of this (default 0.02)")


def register(sub) -> None:
    from cpr_edge.cli import add_checkpoint_args
    from cpr_edge.hil.commands import add_budget_args
    from cpr_edge.precision import add_export_args

    p = sub.add_parser("fit", help="find the smallest removal at which the controller fits a board",
                       description="Probe removal ratios (prune, export, generate, build, count instructions in "
                                   "QEMU) until the smallest one whose flash, RAM and estimated latency hold on "
                                   "the board with a margin is found. No recovery, no HIL: prune-and-flash --fit "
                                   "runs those on the chosen ratio. Exit 2 if nothing fits, naming the binding "
                                   "constraint and the best figure reached.")
    add_checkpoint_args(p)
    p.add_argument("--board", default="qemu-mps2-an386", help="board name (default qemu-mps2-an386)")
    p.add_argument("--metric", default="fisher", help="importance metric (default fisher)")
    add_budget_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the importance scores (default 0)")
    add_fit_args(p, flag=False)
    add_export_args(p)
    p.add_argument("--out", default=None, help="write fit.json here (a folder; default: print only)")
    p.add_argument("--json", action="store_true", help="print fit.json on stdout")
    p.set_defaults(func=cmd_fit)


def fit_for_args(args, ck, board, budget_s: float | None, precisions: list[str], opts, say) -> dict:
    """Run the search for parsed ``args`` (fit or prune-and-flash --fit): report.json ``fit``."""
    from cpr_edge.fit.probe import Limits
    from cpr_edge.fit.search import FitConfig, check_config, fit_to_board
    from cpr_edge.importance.metrics import check_prune_metric

    check_prune_metric(args.metric)
    cfg = FitConfig(margin=args.fit_margin, grid_step=args.grid_step, metric=args.metric, seed=args.seed)
    check_config(cfg)
    budget = float(budget_s if budget_s is not None else ck.spec["control_timestep"])
    limits = Limits(flash_bytes=board.flash_size, ram_bytes=board.ram_size, latency_budget_s=budget)
    return fit_to_board(ck, board, limits, precisions, opts.kwargs, cfg, say)


def fit_with_return(fit: dict, result: dict) -> dict:
    """The fit record with the chosen probe's return filled in: the recovered pruned float
    policy's mean over the HIL check episodes (probes themselves are not recovered)."""
    ret = result.get("mean_return", {}).get("pruned_float_host")
    for row in fit["probes"]:
        if (row["ratio"], row["precision"]) == (fit["chosen"]["ratio"], fit["chosen"]["precision"]):
            row["return_float"] = ret
    return fit


def probe_table(fit: dict) -> str:
    lines = [f"{'ratio':>6} {'prec':>5} {'params':>8} {'flash B':>8} {'RAM B':>6} {'latency ms':>11}  result"]
    for r in sorted(fit["probes"], key=lambda r: (r["precision"], r["ratio"])):
        lat = "-" if r["latency_s_estimate"] is None else f"{r['latency_s_estimate'] * 1e3:.3f}"
        mark = " <- chosen" if (r["ratio"], r["precision"]) == (fit["chosen"]["ratio"], fit["chosen"]["precision"]) else ""
        lines.append(f"{r['ratio']:>6.2f} {r['precision']:>5} {r['params']:>8} {r['flash_bytes']:>8} {r['ram_bytes']:>6} "
                     f"{lat:>11}  {'fits' if r['fits'] else r['binding'] + ' over'}{mark}")
    c = fit["chosen"]
    lines.append(f"chosen: ratio {c['ratio']:g} ({c['precision']}), binding constraint {c['binding']}: {c['why']}")
    return "\n".join(lines)


def cmd_fit(args: argparse.Namespace) -> int:
    import torch

    from cpr_edge.agents.checkpoint import load_checkpoint, resolve_checkpoint
    from cpr_edge.boards import load_board
    from cpr_edge.cli import emit
    from cpr_edge.export.pipeline import resolve_prescale
    from cpr_edge.fileio import write_json_atomic
    from cpr_edge.hil.commands import budget_from_args
    from cpr_edge.precision import candidates, export_options

    torch.set_num_threads(1)
    budget = budget_from_args(args)
    precisions = candidates(args.precision)
    opts = export_options(args)
    board = load_board(args.board)
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise CprError(f"--out {out} exists and is not a folder")
    ck = load_checkpoint(resolve_checkpoint(args.checkpoint, args.task, args.preset))
    opts.prescale = resolve_prescale(ck, opts.prescale)
    fit = fit_for_args(args, ck, board, budget, precisions, opts,
                       lambda m: print(f"      {m}", file=sys.stderr, flush=True))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "fit.json", fit)
    emit(args, fit, probe_table(fit))
    return 0
