"""``cpr-edge train`` and ``cpr-edge eval``."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    from cpr_edge.cli import add_checkpoint_args
    from cpr_edge.envs.tasks import EXAMPLES

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
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--importance", action="store_true",
                   help="track gradient importance during training (stored in the checkpoint)")
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

    hooks = []
    tracker = None
    if args.importance:
        from cpr_edge.importance.tracker import ImportanceTracker

        tracker = ImportanceTracker()
        hooks.append(tracker)
    tc = TrainConfig(task=args.task, action_repeat=args.action_repeat, preset=args.preset, steps=args.steps, seed=args.seed,
                     eval_freq=args.eval_freq, eval_episodes=args.eval_episodes,
                     eval_mpc=not args.no_eval_mpc, threads=args.threads, resume=args.resume,
                     out=args.out or f"{args.task}_{args.preset}.pt")
    ck = train(tc, hooks=hooks, extra_sections=(lambda: {"importance": tracker.state_dict()}) if tracker else None)
    last = ck.training["evals"][-1]
    emit(args, {"task": args.task, "preset": args.preset, "checkpoint": tc.out, **ck.training},
         f"wrote {tc.out}: policy-only return {last['policy']:.1f}, MPC return {last.get('mpc', float('nan')):.1f} "
         f"after {ck.training['env_steps']} env steps in {ck.training['wall_s']:.0f} s")
    return 0


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
