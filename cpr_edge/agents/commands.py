"""``cpr-edge train`` and ``cpr-edge eval``."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    from cpr_edge.cli import add_checkpoint_args
    from cpr_edge.envs.tasks import EXAMPLES
    from cpr_edge.pruning.commands import METRIC_CHOICES, add_schedule_args

    p = sub.add_parser("train", help="train a TD-MPC agent on a dm_control task",
                       description="Train TD-MPC (v1) on a dm_control task and write a checkpoint.")
    # checked inside the command (resolve_task): listing the suite here would load dm_control on --help
    p.add_argument("--task", default="cartpole-swingup",
                   help=f"dm_control suite task, domain-task (default cartpole-swingup; e.g. {', '.join(EXAMPLES[1:])}; "
                        "any task with flat observations, docs/tasks.md)")
    p.add_argument("--action-repeat", type=int, default=None, metavar="N",
                   help="env steps per agent step (default TD-MPC's for the domain: cartpole 8; walker, "
                        "humanoid, dog 2; others 4)")
    p.add_argument("--preset", default="small", choices=["small", "paper"])
    p.add_argument("--steps", type=int, default=60_000, help="environment steps (default 60000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--eval-freq", type=int, default=10_000, help="env steps between evaluations")
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--no-eval-mpc", action="store_true", help="periodic evaluation in policy mode only")
    p.add_argument("--no-final-mpc", action="store_true",
                   help="final evaluation in policy mode only (MPC planning costs most of a short run's evaluation)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--importance", action="store_true",
                   help="track gradient importance during training (stored in the checkpoint)")
    p.add_argument("--prune-to", type=float, default=None, metavar="R",
                   help="prune during training: remove the fraction R of the --target parameters on the "
                        "schedule (docs/importance.md, 'Gradual pruning')")
    p.add_argument("--metric", default="fisher", help="with --prune-to: importance metric, "
                                                      f"{', '.join(METRIC_CHOICES)} (default fisher)")
    p.add_argument("--allocation", default="component", help="with --prune-to: component (default), uniform or global")
    p.add_argument("--target", default="deployed", help="with --prune-to: count R over the deployed subnet "
                                                        "(encoder+pi, default) or all parameters")
    add_schedule_args(p, 0.2, 0.8)
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue training from a checkpoint of the same task and preset")
    p.add_argument("--out", default=None, help="checkpoint path (default TASK_PRESET.pt)")
    p.add_argument("--json", action="store_true", help="print the final evaluation as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint (policy-only and MPC returns)",
                       description="Mean and std of episode returns in policy-only (encoder -> pi, "
                                   "what runs on a board) and MPC (host-only planning) modes.")
    add_checkpoint_args(p)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--mode", choices=["policy", "mpc", "both"], default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)


def cmd_train(args: argparse.Namespace) -> int:
    from cpr_edge.cli import emit
    from cpr_edge.envs import make_env, resolve_task

    args.task = resolve_task(args.task)
    make_env(args.task, args.seed, args.action_repeat)  # non-flat task, bad repeat: refused before torch loads
    from cpr_edge.agents.train import TrainConfig, train

    from cpr_edge.importance.metrics import GRADIENT_METRICS
    from cpr_edge.importance.tracker import ImportanceTracker

    pruning = args.prune_to is not None
    schedule = train_schedule(args) if pruning else None  # bad schedule: refused before training
    sections, hooks, after_step, tracker = {}, [], None, None
    if args.importance or (pruning and args.metric in GRADIENT_METRICS):
        tracker = ImportanceTracker()
        hooks.append(tracker)
        sections["importance"] = tracker.state_dict
    if pruning:
        from cpr_edge.pruning.gradual import GradualPruner

        after_step = GradualPruner(schedule, tracker, log=_log)
        sections["gradual_pruning"] = after_step.state_dict
    tc = TrainConfig(task=args.task, action_repeat=args.action_repeat, preset=args.preset, steps=args.steps, seed=args.seed,
                     eval_freq=args.eval_freq, eval_episodes=args.eval_episodes,
                     eval_mpc=not args.no_eval_mpc, final_mpc=not args.no_final_mpc, threads=args.threads,
                     resume=args.resume,
                     out=args.out or f"{args.task}_{args.preset}.pt")
    ck = train(tc, hooks=hooks, extra_sections=(lambda: {k: f() for k, f in sections.items()}) if sections else None,
               after_step=after_step)
    last = ck.training["evals"][-1]
    summary = {"task": args.task, "preset": args.preset, "checkpoint": tc.out, **ck.training}
    mpc = f", MPC return {last['mpc']:.1f}" if "mpc" in last else ""
    text = (f"wrote {tc.out}: policy-only return {last['policy']:.1f}{mpc} "
            f"after {ck.training['env_steps']} env steps in {ck.training['wall_s']:.0f} s")
    if pruning:
        g = ck.extra["gradual_pruning"]
        summary["gradual_pruning"] = {k: g[k] for k in ("schedule", "removed_fraction", "done")}
        text += (f"; pruned during training by {args.metric} ({args.schedule}, {len(g['events'])} pruning steps): "
                 f"{g['removed_fraction']['deployed']:.1%} of the deployed, {g['removed_fraction']['all']:.1%} "
                 f"of all parameters removed")
    emit(args, summary, text)
    return 0


def _log(s: str) -> None:
    import sys

    print(s, file=sys.stderr, flush=True)


def train_schedule(args: argparse.Namespace):
    """The ``--prune-to`` schedule over this run's env steps."""
    from cpr_edge.agents.config import make_config
    from cpr_edge.errors import CprError
    from cpr_edge.importance.metrics import GRADIENT_METRICS
    from cpr_edge.pruning.gradual import GradualSchedule, check_schedule

    check_schedule(args.prune_to, args.prune_start, args.prune_end, args.prune_steps, args.schedule, args.metric,
                   args.allocation, args.target)
    if args.resume:
        raise CprError("--prune-to starts from an unpruned agent: to prune a trained checkpoint while training "
                       "it on, use cpr-edge prune --checkpoint CK --gradual STEPS")
    start, end = round(args.prune_start * args.steps), round(args.prune_end * args.steps)
    seed_steps = make_config(args.preset).seed_steps
    if args.metric in GRADIENT_METRICS and start < seed_steps:
        raise CprError(f"--prune-start {args.prune_start} is {start} env steps, before the first update at "
                       f"{seed_steps} (seeding): {args.metric} has no gradients there; use --prune-start >= "
                       f"{seed_steps / args.steps:.3g} or a weight metric (l1, random)")
    return GradualSchedule(args.prune_to, start, end, args.prune_steps, args.schedule, args.metric,
                           args.allocation, args.target, args.seed)


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from cpr_edge.agents.checkpoint import load_checkpoint, resolve_checkpoint
    from cpr_edge.agents.evaluate import evaluate, summary
    from cpr_edge.cli import emit
    from cpr_edge.errors import CprError

    if args.episodes < 1:
        raise CprError("--episodes must be at least 1")
    torch.set_num_threads(1)
    ck = load_checkpoint(resolve_checkpoint(args.checkpoint, args.task, args.preset))
    modes = ["policy", "mpc"] if args.mode == "both" else [args.mode]
    out = {"task": ck.task, "episodes": args.episodes}
    lines = [f"{ck.task} ({ck.path}), {args.episodes} episodes"]
    for mode in modes:
        s = summary(evaluate(ck.agent, ck.task, args.episodes, mode, args.seed, ck.spec["action_repeat"]))
        out[mode] = {"mean": s["mean"], "std": s["std"]}
        label = "policy-only" if mode == "policy" else "MPC"
        lines.append(f"  {label:12s} return {s['mean']:7.1f} ± {s['std']:.1f}")
    emit(args, out, "\n".join(lines))
    return 0
