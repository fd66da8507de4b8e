"""``cpr-edge export``: checkpoint -> verified int8 TFLM model folder."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    from cpr_edge.cli import add_checkpoint_args

    p = sub.add_parser("export", help="export encoder + policy to an int8 TFLite Micro model",
                       description="Export the deployed controller (observation -> encoder -> pi -> tanh "
                                   "mean action) to an integer .tflite (16x8 by default, or int8), check that "
                                   "every op has a TFLM kernel of its type, run it in the tflite-micro "
                                   "interpreter, attribute the action error to tensors and write the export "
                                   "folder (docs/export.md).")
    add_checkpoint_args(p)
    p.add_argument("--policy", metavar="PT",
                   help="instead of a checkpoint: a plain PyTorch policy, an nn.Sequential of Linear and ELU/ReLU/Tanh "
                        "layers saved whole (torch.save(model, PT)) or as a state dict with --layers "
                        "(docs/export.md, 'A plain PyTorch policy'); needs --calibration")
    p.add_argument("--calibration", metavar="NPY",
                   help="with --policy: policy inputs [N, inputs] (.npy) to calibrate on; every 5th row is held back "
                        "for the TFLM verification")
    p.add_argument("--layers", help="with --policy and a state dict: the layers in order, e.g. linear,elu,linear,tanh")
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    p.add_argument("--io", choices=["int8", "float"], default="int8", help="model input/output type (default int8)")
    p.add_argument("--activations", choices=["int8", "int16"], default=None,
                   help="int16 (default, or the type a quantisation-aware recovery trained for): the 16x8 mode (int16 activations and I/O, int8 weights; ELU kept as an "
                        "exact float island), measured mean action error 0.004 on cartpole-swingup where int8 "
                        "leaves 0.076 (docs/export.md); int8: fully int8, half the activation RAM")
    p.add_argument("--granularity", choices=["per-channel", "per-tensor"], default="per-channel",
                   help="weight scales (default per-channel)")
    p.add_argument("--allow-float", action="store_true",
                   help="accept float ops left after the ELU rewrite (TFLM then runs them in float)")
    p.add_argument("--compare-granularity", action="store_true",
                   help="also build the other granularity and record its arena and error")
    p.add_argument("--input-prescale", choices=["none", "standardize"], default=None,
                   help="standardize: the model takes (obs - input.offset) * input.gain (per-dimension "
                        "calibration mean/std), applied by the board before quantising; much finer input "
                        "resolution. none: raw observations. Default: the prescale a quantisation-aware "
                        "recovery trained with, else standardize")
    p.add_argument("--json", action="store_true", help="print export.json on stdout")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    import sys

    import torch

    from cpr_edge.agents.checkpoint import resolve_checkpoint
    from cpr_edge.cli import emit
    from cpr_edge.export.pipeline import export_checkpoint

    torch.set_num_threads(1)
    if args.policy or args.calibration or args.layers:
        return cmd_export_policy(args)
    from cpr_edge.agents.checkpoint import load_checkpoint
    from cpr_edge.export.pipeline import resolve_activations

    ck = load_checkpoint(resolve_checkpoint(args.checkpoint, args.task, args.preset))
    activations = resolve_activations(ck, args.activations, default="int16")
    info = export_checkpoint(ck, args.out, io=args.io, granularity=args.granularity,
                             allow_float=args.allow_float, compare_granularity=args.compare_granularity,
                             prescale=args.input_prescale, activations=activations,
                             progress=lambda line: print(f"export: {line}", file=sys.stderr, flush=True))
    e, q = info["error"], info["output"]
    text = (f"wrote {args.out}: {info['model_bytes']} bytes, ops {' '.join(info['op_resolver'])}, "
            f"all int8: {info['all_int8']}, TFLM arena {info['tflm']['arena_bytes']} bytes, "
            f"action error max {e['max_abs']:.4f} mean {e['mean_abs']:.4f}"
            + (f" (output LSB {q['scale']:.5f})" if "scale" in q else ""))
    emit(args, info, text)
    return 0


def cmd_export_policy(args: argparse.Namespace) -> int:
    """``--policy PT --calibration NPY``: a plain nn.Sequential through the same stages."""
    import sys

    from cpr_edge.cli import emit
    from cpr_edge.errors import CprError
    from cpr_edge.export.sequential import export_sequential

    if not args.policy or not args.calibration:
        raise CprError("a plain PyTorch policy needs both --policy PT and --calibration NPY")
    clash = [f for f, v in (("--checkpoint", args.checkpoint), ("--task", args.task), ("--preset", args.preset),
                            ("--compare-granularity", args.compare_granularity)) if v]
    if clash:
        raise CprError(f"--policy exports a plain PyTorch policy; {', '.join(clash)} belong to checkpoint exports")
    info = export_sequential(args.policy, args.calibration, args.out, layers=args.layers, io=args.io,
                             granularity=args.granularity, allow_float=args.allow_float,
                             prescale=args.input_prescale or "standardize", activations=args.activations or "int16",
                             progress=lambda line: print(f"export: {line}", file=sys.stderr, flush=True))
    e = info["error"]
    emit(args, info, f"wrote {args.out}: {info['model_bytes']} bytes, ops {' '.join(info['op_resolver'])}, "
                     f"TFLM arena {info['tflm']['arena_bytes']} bytes, output error max {e['max_abs']:.4f} "
                     f"mean {e['mean_abs']:.4f} against the float policy")
    return 0
