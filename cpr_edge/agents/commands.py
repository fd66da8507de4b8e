"""``cpr-edge train``, ``cpr-edge eval`` and ``cpr-edge distill-planner``."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    from cpr_edge.cli import add_checkpoint_args
    from cpr_edge.envs.tasks import EXAMPLES
    from cpr_edge.pruning.commands import TRAINING_METRICS, add_schedule_args

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
                                                      f"{', '.join(TRAINING_METRICS)} (default fisher)")
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

    p = sub.add_parser("distill-planner", help="train the policy prior to act as the MPC planner (DAgger)",
                       description="The board runs encoder -> pi, not the planner: roll out episodes (the "
                                   "planner's action executed with a decaying probability, pi's otherwise), "
                                   "label every visited observation with the planner's action, aggregate, and "
                                   "train pi (encoder frozen) to match. Writes OUT with a planner_distillation "
                                   "section (docs/training.md).")
    add_checkpoint_args(p)
    p.add_argument("--out", required=True, help="distilled checkpoint path (written after every iteration)")
    p.add_argument("--iterations", type=int, default=6, help="rollout-label-train iterations (default 6)")
    p.add_argument("--episodes", type=int, default=4, help="episodes labelled per iteration (default 4)")
    p.add_argument("--steps", type=int, default=2000, help="pi gradient steps per iteration (default 2000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate of pi (default 3e-4)")
    p.add_argument("--beta", type=float, default=1.0,
                   help="probability of executing the planner's action at iteration 0 (default 1)")
    p.add_argument("--beta-decay", type=float, default=0.5, help="beta factor per iteration (default 0.5)")
    p.add_argument("--q-weight", type=float, default=0.0,
                   help="weight of TD-MPC's policy objective (-Q / mean |Q|) as a regulariser (default 0)")
    p.add_argument("--max-episode-steps", type=int, default=None, metavar="T",
                   help="agent steps per rollout (default whole episodes)")
    p.add_argument("--plan-iterations", type=int, default=None, help="labelling planner's MPPI iterations "
                                                                     "(default the checkpoint's, 6)")
    p.add_argument("--plan-samples", type=int, default=None, help="labelling planner's samples (default the "
                                                                  "checkpoint's, 512)")
    p.add_argument("--eval-episodes", type=int, default=10,
                   help="policy-only episodes before and after (held-out seeds, as cpr-edge eval --seed)")
    p.add_argument("--iteration-eval-episodes", type=int, default=5,
                   help="policy-only episodes after each iteration (default 5; 0: none)")
    p.add_argument("--mpc-episodes", type=int, default=0, help="MPC episodes at the end (default 0: skipped)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_distill_planner)


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


def cmd_distill_planner(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cpr_edge.agents.planner_distill import DistillConfig, check_checkpoint, check_config, distill_planner
    from cpr_edge.cli import emit
    from cpr_edge.errors import CprError

    dc = DistillConfig(iterations=args.iterations, episodes=args.episodes, steps=args.steps,
                       batch_size=args.batch_size, lr=args.lr, beta=args.beta, beta_decay=args.beta_decay,
                       q_weight=args.q_weight, max_episode_steps=args.max_episode_steps,
                       plan_iterations=args.plan_iterations, plan_samples=args.plan_samples,
                       eval_episodes=args.eval_episodes, iteration_eval_episodes=args.iteration_eval_episodes,
                       mpc_episodes=args.mpc_episodes, seed=args.seed)
    check_config(dc)
    if Path(args.out).is_dir():
        raise CprError(f"--out {args.out} is a folder; give the checkpoint file to write")
    import torch

    from cpr_edge.agents.checkpoint import load_checkpoint, resolve_checkpoint

    torch.set_num_threads(1)
    ck = load_checkpoint(resolve_checkpoint(args.checkpoint, args.task, args.preset))
    check_checkpoint(ck)
    s = distill_planner(ck, dc, args.out, log=_log)
    before, after = s["return_before"], s["return_after"]
    text = (f"wrote {args.out}: policy-only return {after['mean']:.1f} ± {after['std']:.1f} over {dc.eval_episodes} "
            f"episodes (was {before['mean']:.1f} ± {before['std']:.1f}); {s['labelled_states']} states labelled by "
            f"the planner in {dc.iterations} iterations, {s['wall_s']:.0f} s")
    if "mpc_after" in s:
        text += f"; MPC {s['mpc_after']['mean']:.1f} ± {s['mpc_after']['std']:.1f} over {dc.mpc_episodes} episodes"
    emit(args, {"checkpoint": args.out, "task": ck.task, **{k: v for k, v in s.items() if k != "previous"}}, text)
    return 0
