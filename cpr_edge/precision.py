"""Which numeric precision a deployment gets, and the export options of prune-and-flash.

``auto`` (the default) takes the most faithful precision whose firmware fits the board:
16x8 (int16 activations, int8 weights) first, then int8 with quantisation-aware recovery.
Measured on the shipped checkpoints (docs/export.md): 16x8 leaves a held-back action error
of mean 0.004 / p99 0.02 where int8 leaves 0.06-0.08 / 0.2-0.26 even after quantisation-aware
recovery (the policies are steep; every 8-bit tensor costs about as much as the input), at
about twice the activation RAM (1 088 B vs 544 B on cartpole) and a few percent more flash.
A build that does not fit the board's flash or RAM, or (on an emulated board) whose invoke
count measured by BENCH exceeds the latency budget at the board's clock, is the signal to step
down (16x8 costs about twice int8's instructions); the HIL latency check then runs on whatever
was chosen.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from cpr_edge.errors import CprError

PRECISIONS = ("auto", "16x8", "int8")
STEPS = {"16x8": "int16", "int8": "int8"}
"""precision -> ``export_checkpoint(activations=...)``"""


@dataclass
class ExportOptions:
    """What prune-and-flash passes to ``export_checkpoint`` (every export option)."""

    io: str = "int8"
    """Model input/output: integer (int8, or int16 in 16x8) or float."""
    granularity: str = "per-channel"
    """Weight scales per output channel or per tensor."""
    prescale: str | None = None
    """Input prescale; None: the trained one, else standardize (export.pipeline.resolve_prescale)."""
    allow_float: bool = False
    """Accept float islands other than 16x8's exact ELU."""
    compare_granularity: bool = False

    def kwargs(self, precision: str) -> dict:
        return {"io": self.io, "granularity": self.granularity, "prescale": self.prescale,
                "allow_float": self.allow_float, "compare_granularity": self.compare_granularity,
                "activations": STEPS[precision]}


@dataclass
class Choice:
    """The precision tried in order and what happened to each (report.json ``precision``)."""

    requested: str
    tried: list[dict] = field(default_factory=list)
    chosen: str | None = None

    def to_dict(self) -> dict:
        return {"requested": self.requested, "chosen": self.chosen, "tried": self.tried}


def candidates(precision: str) -> list[str]:
    if precision not in PRECISIONS:
        raise CprError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return ["16x8", "int8"] if precision == "auto" else [precision]


def does_not_fit(e: CprError) -> bool:
    """The build's refusal of an image larger than the board (cpr_edge.firmware_build)."""
    from cpr_edge.errors import DoesNotFit

    return isinstance(e, DoesNotFit)


def add_export_args(p: argparse.ArgumentParser) -> None:
    """The export options, for prune-and-flash (``cpr-edge export`` has its own)."""
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default): 16x8 when its firmware fits the board, else int8 with "
                        "quantisation-aware recovery; or force 16x8 / int8")
    p.add_argument("--qat-steps", type=int, default=600,
                   help="quantisation-aware recovery steps for the chosen precision (default 600; 0: "
                        "post-training quantisation only)")
    p.add_argument("--io", choices=["int8", "float"], default="int8",
                   help="model input/output type: integer (default) or float")
    p.add_argument("--granularity", choices=["per-channel", "per-tensor"], default="per-channel",
                   help="weight scales (default per-channel)")
    p.add_argument("--input-prescale", choices=["none", "standardize"], default=None,
                   help="input prescale applied on the board (default standardize)")
    p.add_argument("--allow-float", action="store_true",
                   help="accept float ops left after the int8 rewrite (TFLM then runs them in float)")


def export_options(args: argparse.Namespace) -> ExportOptions:
    if getattr(args, "qat_steps", 0) < 0:
        raise CprError(f"--qat-steps must be >= 0, got {args.qat_steps}")
    return ExportOptions(io=args.io, granularity=args.granularity, prescale=args.input_prescale,
                         allow_float=args.allow_float)


def latency_probe(board, build: dict, model_dir, budget_s: float) -> dict | None:
    """On an emulated board: boot the firmware, BENCH 20 invokes, and compare the slowest with
    the budget through the board's latency model (instructions x cycles per instruction at its
    clock, an estimate, as the latency check says). None on a real board (the HIL run measures it)."""
    from cpr_edge.fit.probe import count_instructions, latency_estimate_s
    from cpr_edge.hil.session import is_emulated

    if not is_emulated(board):
        return None
    invoke_max = count_instructions(board, build, model_dir, invokes=20)
    seconds = latency_estimate_s(board, invoke_max)
    return {"invoke_max": invoke_max, "unit": "instructions", "seconds_estimate": seconds, "budget_s": budget_s,
            "fits": seconds <= budget_s}
