"""``cpr-edge import``: a checkpoint of another code base -> a cpr-edge checkpoint (docs/import.md)."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("import", help="import a checkpoint of the original TD-MPC (v1) code",
                       description="Turn a model.pt written by the original TD-MPC (v1) code (nicklashansen/tdmpc: "
                                   "{'model', 'model_target'} TOLD state dicts) into a cpr-edge checkpoint "
                                   "(docs/checkpoint.md), its replay sample filled by rollouts of the imported "
                                   "policy prior. Widths come from the tensors; the run's config YAML files, "
                                   "when given, are checked against them and supply the planner settings "
                                   "(docs/import.md).")
    p.add_argument("source", help="the original code's saved model (logs/TASK/state/EXP/SEED/models/model.pt)")
    p.add_argument("--task", help="dm_control task it was trained on (default: the config's task)")
    p.add_argument("--config", action="append", default=[], metavar="YAML",
                   help="the run's config files, in the order the original merges them "
                        "(cfgs/default.yaml, then cfgs/tasks/DOMAIN.yaml); repeatable")
    p.add_argument("--action-repeat", type=int, default=None,
                   help="default: the config's action_repeat, else TD-MPC's default for the domain")
    p.add_argument("--replay-sample", type=int, default=10_000,
                   help="transitions of imported-policy rollouts stored for calibration (default 10000)")
    p.add_argument("--eval-episodes", type=int, default=2,
                   help="policy-only episodes evaluated and recorded in training.evals (0: none)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="cpr-edge checkpoint to write (atomically)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    import sys

    import torch

    from cpr_edge.cli import emit
    from cpr_edge.importers.tdmpc_v1 import import_tdmpc_v1

    torch.set_num_threads(1)
    ck = import_tdmpc_v1(args.source, args.out, task=args.task, configs=args.config,
                         action_repeat=args.action_repeat, replay_sample=args.replay_sample, seed=args.seed,
                         eval_episodes=args.eval_episodes,
                         progress=lambda line: print(f"import: {line}", file=sys.stderr, flush=True))
    evals = ck.training["evals"]
    ret = f", policy-only return {evals[-1]['policy']:.1f}" if evals else ""
    summary = {"checkpoint": str(args.out), "task": ck.task, "preset": ck.preset, "arch": ck.arch.to_dict(),
               "action_repeat": ck.spec["action_repeat"], "replay_transitions": ck.extra["imported"]["replay"]["transitions"],
               "evals": evals}
    emit(args, summary, f"wrote {args.out}: {ck.task}, enc {ck.arch.encoder[0]} mlp {ck.arch.pi[0]} latent "
                        f"{ck.arch.latent_dim}, action repeat {ck.spec['action_repeat']}{ret}")
    return 0
