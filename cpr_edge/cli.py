"""The ``cpr-edge`` command: one sub-command per pipeline stage.

Each stage module exposes ``register(subparsers)``, which adds its parser and sets
``func``; heavy imports happen inside ``func`` so that ``--help`` stays fast.
Every sub-command that computes figures takes ``--json`` (one JSON object on stdout;
progress and logs on stderr).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from cpr_edge import __version__
from cpr_edge.errors import CprError

STAGES = [
    "cpr_edge.agents.commands",
    "cpr_edge.importers.commands",
    "cpr_edge.pruning.commands",
    "cpr_edge.quant.commands",
    "cpr_edge.export.commands",
    "cpr_edge.firmware_build.commands",
    "cpr_edge.hil.commands",
    "cpr_edge.report.commands",
    "cpr_edge.fit.commands",
    "cpr_edge.validate.commands",
    "cpr_edge.pipeline",
]


def emit(args, obj: dict, text: str) -> None:
    """Print ``obj`` as JSON with ``--json``, else the human-readable ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(obj, indent=None, default=float))
    else:
        print(text)


def add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    """``--checkpoint PATH`` (a file) or ``--task T [--preset P]`` (a shipped checkpoint)."""
    p.add_argument("--checkpoint", help="checkpoint file")
    p.add_argument("--task", help="use the shipped checkpoint of this task (default cartpole-swingup)")
    p.add_argument("--preset", default=None, help="preset of the shipped checkpoint (default small)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cpr-edge",
        description="Prune a TD-MPC controller, quantise it to int8, run it on a microcontroller "
                    "and check it over a hardware-in-the-loop link.")
    parser.add_argument("--version", action="version", version=f"cpr-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in STAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and (e.name == name or name.startswith(e.name + ".")):
                continue  # stage not built in this version
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
        return int(rc or 0)
    except CprError as e:
        print(f"cpr-edge: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("cpr-edge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
