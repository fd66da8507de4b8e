"""``cpr-edge qat``: quantisation-aware recovery of a checkpoint, pruned or not."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    from cpr_edge.cli import add_checkpoint_args

    p = sub.add_parser("qat", help="quantisation-aware recovery: the int8 model learns to act as the float one",
                       description="Distil the deployed encoder + pi from the checkpoint's own float policy "
                                   "through the int8 forward of the export (per-channel int8 weights, int8 "
                                   "activations with the converter's calibrated ranges, straight-through "
                                   "gradients), on the training split of the replay sample. Writes a checkpoint "
                                   "that `cpr-edge export` and `prune-and-flash --checkpoint` take as it is "
                                   "(docs/quantization.md).")
    add_checkpoint_args(p)
    p.add_argument("--out", required=True, help="checkpoint file to write (atomically)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default 1500)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-4)")
    p.add_argument("--input-prescale", choices=["none", "standardize"], default="standardize",
                   help="the input prescale the export will use (default standardize)")
    p.add_argument("--activations", choices=["int8", "int16"], default="int16",
                   help="the export's activation type it trains for: int16 (default, as cpr-edge export) "
                        "or int8")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print what was recorded as JSON")
    p.set_defaults(func=cmd_qat)


def cmd_qat(args: argparse.Namespace) -> int:
    import copy
    import sys
    from dataclasses import replace

    import torch

    from cpr_edge.agents.checkpoint import Checkpoint, load_checkpoint, resolve_checkpoint, save_checkpoint
    from cpr_edge.cli import emit
    from cpr_edge.errors import CprError
    from cpr_edge.quant.qat import QatConfig, qat_recover

    torch.set_num_threads(1)
    cfg = QatConfig(seed=args.seed, activations=args.activations)
    if args.steps is not None:
        if args.steps < 1:
            raise CprError(f"--steps must be at least 1, got {args.steps}")
        cfg = replace(cfg, steps=args.steps)
    if args.lr is not None:
        if not args.lr > 0:
            raise CprError(f"--lr must be positive, got {args.lr}")
        cfg = replace(cfg, lr=args.lr)
    ck = load_checkpoint(resolve_checkpoint(args.checkpoint, args.task, args.preset))
    teacher = copy.deepcopy(ck.agent)
    print(f"qat: {cfg.steps} steps, {cfg.activations} activations, input prescale {args.input_prescale}",
          file=sys.stderr, flush=True)
    record = qat_recover(ck.agent, teacher, ck, args.input_prescale, cfg)
    extra = {**ck.extra, "quantization": record}
    out = Checkpoint(ck.agent, ck.task, ck.preset, ck.spec, ck.normalization, ck.replay, ck.training, extra, None)
    save_checkpoint(out, args.out)
    summary = {k: v for k, v in record.items() if k != "ranges"}
    emit(args, {"out": args.out, **summary},
         f"wrote {args.out}: quantisation-aware ({cfg.activations}), {cfg.steps} steps, objective "
         f"{record['objective_before']:.5f} -> {record['objective_after']:.5f}"
         + (" (worse: the starting weights were kept)" if record["reverted"] else ""))
    return 0
