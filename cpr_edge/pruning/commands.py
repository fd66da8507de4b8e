"""``cpr-edge prune``, ``sweep``, ``boundary`` and ``autoencoder``."""
from __future__ import annotations

import argparse
import sys

TRAINING_METRICS = ("grad", "fisher", "bayes", "l1", "l2", "random")
"""What pruning while training (train --prune-to, prune --gradual) scores by: the live tracker."""
METRIC_CHOICES = (*TRAINING_METRICS, "grad-posthoc", "fisher-posthoc", "bayes-posthoc",
                  "grad-mean", "fisher-mean", "bayes-mean", "RANK@ALLOCATION (e.g. fisher@l1)")


def _latent_cap(p: argparse.ArgumentParser) -> None:
    p.add_argument("--latent-cap", type=float, default=0.75,
                   help="most fraction of the latent dimensions one cut removes (default 0.75: a 32-wide latent "
                        "keeps at least 8)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allocation", default="component", help="component (default), uniform or global")
    p.add_argument("--target", default="deployed",
                   help="count the ratio over the deployed subnet (encoder+pi, default) or all parameters")
    p.add_argument("--recover-steps", type=int, default=300, help="recovery steps (default 300)")
    p.add_argument("--episodes", type=int, default=5, help="policy-only evaluation episodes (default 5)")
    p.add_argument("--posthoc-steps", type=int, default=16,
                   help="gradient steps on the replay sample when the checkpoint has no importance trace "
                        "(or the metric is a -posthoc one)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_schedule_args(p: argparse.ArgumentParser, start: float, end: float) -> None:
    """The gradual-pruning schedule (``train --prune-to``, ``prune --gradual``, ``sweep --mode gradual``)."""
    p.add_argument("--prune-start", type=float, default=start,
                   help=f"fraction of the run where pruning starts (default {start})")
    p.add_argument("--prune-end", type=float, default=end,
                   help=f"fraction of the run where the removed fraction reaches the target (default {end})")
    p.add_argument("--schedule", default="cosine", help="removed fraction over the window: cosine (default), "
                                                        "linear or cubic")
    p.add_argument("--prune-steps", type=int, default=20,
                   help="pruning points, evenly spaced in the window (default 20)")


def _ray(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None,
                   help="cells run at once, one CPU and one torch thread each (default 1 on a local Ray, "
                        "the cluster's CPUs with --address)")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster (host:port, or auto) instead of starting a local Ray")


def _csv(kind):
    def parse(text: str):
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return parse


def register(sub) -> None:
    from cpr_edge.cli import add_checkpoint_args

    p = sub.add_parser("prune", help="prune a checkpoint by gradient-based, component-aware importance",
                       description="Score unit groups, allocate the parameter budget across components, "
                                   "remove units physically (model and EMA target), recover, and evaluate "
                                   "the policy-only return before and after. Writes OUT/checkpoint.pt and "
                                   "OUT/prune.json.")
    add_checkpoint_args(p)
    p.add_argument("--metric", default="fisher", help=f"importance metric: {', '.join(METRIC_CHOICES)} (default fisher)")
    p.add_argument("--ratio", type=float, default=0.5, help="fraction of target parameters to remove (default 0.5)")
    p.add_argument("--recover", default="distill",
                   help="distill (default), qat, distill+qat (each --recover-steps), finetune or none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="pruned", help="output folder (default ./pruned)")
    p.add_argument("--gradual", type=int, default=None, metavar="STEPS",
                   help="instead of one cut: train the checkpoint on for STEPS env steps (its replay sample and "
                        "fresh episodes) while removing --ratio on the schedule; --recover does not apply")
    add_schedule_args(p, 0.0, 0.8)
    _common(p)
    _latent_cap(p)
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("sweep", help="metric x ratio x seed pruning sweep (CSV + plots)",
                       description="Prune one checkpoint for every metric, ratio and seed; record the policy-only "
                                   "return without and with recovery. Resumes an existing CSV.")
    add_checkpoint_args(p)
    p.add_argument("--metrics", type=_csv(str), default=["grad", "fisher", "bayes", "l1", "random"],
                   help=f"comma-separated: {', '.join(METRIC_CHOICES)}")
    p.add_argument("--ratios", type=_csv(float), default=[0.3, 0.5, 0.7])
    p.add_argument("--seeds", type=_csv(int), default=[0, 1, 2])
    p.add_argument("--recover", type=_csv(str), default=["none", "distill"],
                   help="comma-separated recoveries (none, distill, qat, distill+qat, finetune)")
    p.add_argument("--quant", choices=["int8", "int16"], default=None,
                   help="also record each row's return through the quantised forward of the export with these "
                        "activations (simulated: bit-exact to TFLM for int8); recovery qat trains for them")
    p.add_argument("--out", default="results", help="output folder for sweep.csv and the plots")
    p.add_argument("--mode", default="oneshot", help="oneshot (default: prune, then --recover) or gradual "
                                                    "(train on for --gradual-steps while pruning; rows 'gradual')")
    p.add_argument("--gradual-steps", type=int, default=10_000, metavar="STEPS",
                   help="--mode gradual: env steps of training per cell (default 10000)")
    add_schedule_args(p, 0.0, 0.8)
    _common(p)
    _latent_cap(p)
    _ray(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("boundary", help="largest safe pruning ratio per metric, by bisection",
                       description="Per metric, the largest ratio whose recovered policy-only return stays at "
                                   "least --fraction of the unpruned return (COM-PACT's safe compression).")
    add_checkpoint_args(p)
    p.add_argument("--metrics", type=_csv(str), default=["grad", "fisher", "bayes", "l1", "random"])
    p.add_argument("--fraction", type=float, default=0.95, help="return fraction to keep (default 0.95)")
    p.add_argument("--iters", type=int, default=5, help="bisection steps per metric (default 5)")
    p.add_argument("--max-ratio", type=float, default=0.9)
    p.add_argument("--recover", default="distill")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="optional JSON file for the result")
    _common(p)
    _ray(p)
    p.set_defaults(func=cmd_boundary)

    p = sub.add_parser("autoencoder", help="the MLP autoencoder pruning sweep on scikit-learn digits",
                       description="Train an MLP encoder/decoder on the 8x8 digits with importance tracking, "
                                   "then prune it for every metric, allocation, ratio and seed; records test MSE.")
    p.add_argument("--metrics", type=_csv(str), default=["grad", "fisher", "bayes", "l1", "random"])
    p.add_argument("--allocations", type=_csv(str), default=["component", "uniform", "global"])
    p.add_argument("--ratios", type=_csv(float), default=[0.3, 0.5, 0.7, 0.9])
    p.add_argument("--seeds", type=_csv(int), default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    p.add_argument("--recover-epochs", type=int, default=3, help="fine-tuning epochs after pruning (default 3)")
    p.add_argument("--out", default="results", help="output folder for autoencoder.csv and its plot")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_autoencoder)


def _log(s: str) -> None:
    print(s, file=sys.stderr, flush=True)


def _load(args):
    import torch

    from cpr_edge.agents.checkpoint import load_checkpoint, resolve_checkpoint

    torch.set_num_threads(max(1, args.threads))
    return load_checkpoint(resolve_checkpoint(args.checkpoint, args.task, args.preset))


def _check_common(args) -> None:
    from cpr_edge.errors import CprError

    if args.episodes < 1:
        raise CprError("--episodes must be at least 1")
    if args.posthoc_steps < 1:
        raise CprError("--posthoc-steps must be at least 1")
    if getattr(args, "workers", None) is not None and args.workers < 1:
        raise CprError(f"--workers must be at least 1, got {args.workers}")


def _workers(args):
    """A local Ray gets one worker unless told: the sweep then costs one core, as it did before
    Ray, on machines shared with training runs; a cluster lends all its CPUs."""
    return args.workers if args.workers is not None or args.address else 1


def cmd_prune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cpr_edge.agents.checkpoint import save_checkpoint
    from cpr_edge.cli import emit
    from cpr_edge.errors import CprError
    from cpr_edge.fileio import write_json_atomic
    from cpr_edge.pruning.allocation import Bounds
    from cpr_edge.pruning.prune import check_args, check_latent_cap, prune_checkpoint

    _check_common(args)
    check_args(args.metric, args.ratio, args.allocation, args.target, args.recover, args.recover_steps)
    check_latent_cap(args.latent_cap)
    if args.gradual is not None:
        if args.latent_cap != Bounds.latent_hi:
            raise CprError(f"--latent-cap applies to one cut; --gradual keeps the default {Bounds.latent_hi}")
        from cpr_edge.pruning.gradual import check_schedule
        from cpr_edge.pruning.gradual_checkpoint import gradual_prune_checkpoint

        check_schedule(args.ratio, args.prune_start, args.prune_end, args.prune_steps, args.schedule, args.metric,
                       args.allocation, args.target, ratio_flag="--ratio")
        if args.gradual < 1:
            raise CprError(f"--gradual must be at least 1 env step, got {args.gradual}")
        ck = _load(args)
        new, info = gradual_prune_checkpoint(ck, args.metric, args.ratio, args.gradual, args.allocation, args.target,
                                             args.schedule, args.prune_start, args.prune_end, args.prune_steps,
                                             args.seed, args.episodes, progress=_log)
    else:
        ck = _load(args)
        new, info = prune_checkpoint(ck, args.metric, args.ratio, args.allocation, args.target, args.recover,
                                     args.recover_steps, args.seed, args.episodes, progress=_log,
                                     posthoc_steps=args.posthoc_steps, bounds=Bounds(latent_hi=args.latent_cap))
    out = Path(args.out)
    info["out"] = {"checkpoint": str(out / "checkpoint.pt"), "prune_json": str(out / "prune.json")}
    save_checkpoint(new, out / "checkpoint.pt")
    write_json_atomic(out / "prune.json", info)
    p, r = info["params"], info["return"]["policy"]
    text = "\n".join([
        f"pruned {ck.task} with {args.metric} importance ({info['importance_source']}), "
        f"{args.allocation} allocation, target {args.target}",
        f"  deployed params (encoder+pi) {p['deployed']['before']} -> {p['deployed']['after']} "
        f"({p['deployed']['removed_fraction']:.1%} removed)",
        f"  all params                   {p['all']['before']} -> {p['all']['after']} "
        f"({p['all']['removed_fraction']:.1%} removed)",
        f"  latent {info['widths']['before']['latent']} -> {info['widths']['after']['latent']}",
        f"  policy-only return: unpruned {r['unpruned']:.1f}, " + (
            f"after {args.gradual} env steps of training while pruning ({args.schedule}) {r['recovered']:.1f}"
            if args.gradual is not None else
            f"pruned {r['pruned']:.1f}, after recovery ({args.recover}, {args.recover_steps} steps) "
            f"{r['recovered']:.1f}"),
        f"  wrote {info['out']['checkpoint']} and {info['out']['prune_json']} ({info['time_s']['total']:.1f} s)"])
    emit(args, info, text)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from cpr_edge.cli import emit
    from cpr_edge.pruning.sweep import run_sweep

    _check_common(args)
    ck = _load(args)
    gradual = args.mode == "gradual"
    summary = run_sweep(ck, args.metrics, args.ratios, args.seeds, args.recover, args.out,
                        allocation=args.allocation, target=args.target,
                        recover_steps=args.gradual_steps if gradual else args.recover_steps,
                        episodes=args.episodes, posthoc_steps=args.posthoc_steps, log=_log,
                        workers=_workers(args), address=args.address, mode=args.mode,
                        schedule={"start": args.prune_start, "end": args.prune_end, "prune_steps": args.prune_steps,
                                  "schedule": args.schedule}, latent_cap=args.latent_cap, quant=args.quant or "")
    failed = f", {summary['rows_failed']} failed (rerun to retry)" if summary["rows_failed"] else ""
    emit(args, summary, f"wrote {summary['csv']} ({summary['rows']} rows{failed}) and {', '.join(summary['plots'])}")
    return 0


def cmd_boundary(args: argparse.Namespace) -> int:
    from cpr_edge.cli import emit
    from cpr_edge.errors import CprError
    from cpr_edge.fileio import write_json_atomic
    from cpr_edge.pruning.sweep import find_boundary

    _check_common(args)
    if not 0 < args.fraction <= 1:
        raise CprError("--fraction must be in (0, 1]")
    if args.iters < 1 or not 0 < args.max_ratio < 1:
        raise CprError("--iters must be >= 1 and --max-ratio in (0, 1)")
    ck = _load(args)
    result = find_boundary(ck, args.metrics, args.fraction, args.iters, args.max_ratio, args.allocation,
                           args.target, args.recover, args.recover_steps, args.seed, args.episodes,
                           args.posthoc_steps, log=_log, workers=_workers(args), address=args.address)
    if args.out:
        write_json_atomic(args.out, result)
    lines = [f"safe ratio (return >= {args.fraction:.0%} of unpruned {result['unpruned']:.1f}), "
             f"{args.allocation} allocation, target {args.target}, recovery {args.recover}"]
    lines += [f"  {m:8s} {v['ratio']:.3f}" + (f" (failed: {v['error']})" if v["status"] != "ok" else "")
              for m, v in result["metrics"].items()]
    emit(args, result, "\n".join(lines))
    return 0


def cmd_autoencoder(args: argparse.Namespace) -> int:
    import torch

    from cpr_edge.cli import emit
    from cpr_edge.pruning.autoencoder import run_autoencoder_sweep

    torch.set_num_threads(max(1, args.threads))
    summary = run_autoencoder_sweep(args.metrics, args.allocations, args.ratios, args.seeds, args.out,
                                    epochs=args.epochs, recover_epochs=args.recover_epochs, log=_log)
    emit(args, summary, f"wrote {summary['csv']} ({summary['rows']} rows) and {', '.join(summary['plots'])}")
    return 0
