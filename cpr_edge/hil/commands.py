"""``cpr-edge hil``: only the HIL stage, on a model that is already exported and built.

Folder layout it expects (what ``cpr-edge prune-and-flash`` writes):
``MODEL/`` is an export folder (``model_int8.tflite``, ``export.json``) with the firmware in
``MODEL/firmware/BOARD/`` (``firmware.elf``, ``memory.json``); the unpruned baseline is an export
folder of the same shape, by default ``MODEL/../baseline``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from cpr_edge.errors import CprError

_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


def parse_budget(text: str | None) -> float | None:
    """``0.08``, ``80ms``, ``500us`` -> seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(s|ms|us|µs)?\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise CprError(f"--budget must be a positive time such as 0.02, 20ms or 500us, not {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def budget_from_args(args: argparse.Namespace) -> float | None:
    """The latency budget in seconds from ``--budget`` or ``--control-hz`` (one period of the
    control loop); None: the task's control period."""
    hz = getattr(args, "control_hz", None)
    if hz is not None and args.budget is not None:
        raise CprError("give --budget or --control-hz, not both")
    if hz is not None:
        if not hz > 0:
            raise CprError(f"--control-hz must be a positive rate such as 100 or 1000, not {hz}")
        return 1.0 / hz
    return parse_budget(args.budget)


def add_budget_args(p: argparse.ArgumentParser) -> None:
    """``--budget`` / ``--control-hz`` (read with ``budget_from_args``): hil, prune-and-flash, fit."""
    p.add_argument("--budget", default=None,
                   help="latency budget for the p99 invoke time, e.g. 20ms (default: the task's control period)")
    p.add_argument("--control-hz", type=float, default=None,
                   help="control loop rate: the budget is one period (e.g. 500 -> 2 ms); instead of --budget")


def add_hil_args(p: argparse.ArgumentParser) -> None:
    """Options shared by ``hil`` and ``prune-and-flash``."""
    p.add_argument("--port", default=None,
                   help="serial port of a real board (/dev/ttyACM0); for QEMU the TCP port of its serial (default: free)")
    p.add_argument("--episodes", type=int, default=None,
                   help="episodes per controller, same seeds for all (default: chosen from the task's "
                        "return spread, cpr_edge.hil.stats.default_episodes)")
    add_budget_args(p)
    p.add_argument("--min-return-ratio", type=float, default=0.95,
                   help="pruned-on-board / unpruned-float return must reach this (default 0.95)")
    p.add_argument("--min-fidelity-ratio", type=float, default=0.98,
                   help="int8_fidelity: pruned int8 on board / pruned float on host must reach this (default 0.98)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed block of the held-out check seeds 100000 + 1000*seed + i (default 0)")


def register(sub) -> None:
    p = sub.add_parser("hil", help="run closed-loop episodes of a built model on a board and check them",
                       description="Boot (QEMU) or flash (real board) the firmware of an exported model, run "
                                   "closed-loop episodes over the serial link against the baselines, check "
                                   "return ratio, latency and memory, and write the report. Exit 0 only on a pass.")
    p.add_argument("--board", required=True,
                   help="board name (cpr-edge build --list-boards) or your own board file PATH.yaml")
    p.add_argument("--model", required=True, metavar="DIR", help="export folder holding model_int8.tflite and firmware/BOARD/")
    p.add_argument("--firmware", default=None, help="firmware ELF (default MODEL/firmware/BOARD/firmware.elf)")
    p.add_argument("--checkpoint", default=None, help="float checkpoint of the model (default: the one export.json names)")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="export folder of the unpruned model, built for the board (default MODEL/../baseline)")
    add_hil_args(p)
    p.add_argument("--out", default=None, help="report folder (default MODEL/../hil-BOARD)")
    p.add_argument("--json", action="store_true", help="print report.json's checks and figures as one JSON object")
    p.set_defaults(func=cmd_hil)


def firmware_of(model_dir: Path, board: str, elf: str | None = None) -> tuple[Path, dict | None]:
    """The ELF built for ``board`` from ``model_dir``, and its memory.json if present."""
    path = Path(elf) if elf else model_dir / "firmware" / board / "firmware.elf"
    if path.is_dir():
        path = path / "firmware.elf"
    if not path.is_file():
        raise CprError(f"no firmware for board {board} at {path}; build it first: "
                       f"cpr-edge build --board {board} --model {model_dir} --out {model_dir / 'firmware' / board}")
    mem = path.parent / "memory.json"
    return path, (json.loads(mem.read_text()) if mem.is_file() else None)


def export_checkpoint_path(model_dir: Path) -> Path | None:
    info = model_dir / "export.json"
    if not info.is_file():
        raise CprError(f"{model_dir} is not an export folder (no export.json)")
    ref = (json.loads(info.read_text()).get("checkpoint") or {}).get("path")
    return Path(ref) if ref else None


def selection_seeds(extra: dict) -> list[int]:
    """The evaluation seeds pruning chose with (recorded in the checkpoint), for every level of
    pruning the checkpoint went through."""
    from cpr_edge.hil.closed_loop import eval_seeds

    seeds, info = [], extra.get("pruning")
    while info:
        n = int((info.get("return") or {}).get("episodes") or 0)
        if n > 0:
            seeds += eval_seeds(n, int(info.get("seed", 0)))
        info = info.get("previous")
    return sorted(set(seeds))


def cmd_hil(args: argparse.Namespace) -> int:
    from cpr_edge.boards import load_board
    from cpr_edge.cli import emit
    from cpr_edge.hil.run import HilConfig, run_hil
    from cpr_edge.report.write import write_report

    board = load_board(args.board)
    budget = budget_from_args(args)
    model_dir = Path(args.model)
    recorded = export_checkpoint_path(model_dir)
    from cpr_edge.hil.identity import check_task_export

    check_task_export(model_dir)  # an export --policy folder: refused before firmware, checkpoint, boot
    elf, memory = firmware_of(model_dir, board.name, args.firmware)
    checkpoint = Path(args.checkpoint) if args.checkpoint else recorded
    if checkpoint is None or not checkpoint.is_file():
        raise CprError(f"the float checkpoint of {model_dir} is unknown or gone ({checkpoint}); give --checkpoint")
    from cpr_edge.hil.identity import check_checkpoint, check_firmware

    check_checkpoint(model_dir, checkpoint)  # before anything slow: a foreign checkpoint is refused
    check_firmware(model_dir, elf, memory)
    from cpr_edge.agents.checkpoint import load_checkpoint

    extra = load_checkpoint(checkpoint).extra
    from cpr_edge.hil.session import is_emulated, parse_port
    from cpr_edge.hil.stats import default_episodes

    parse_port(args.port, is_emulated(board))  # a bad --port is refused before anything boots
    base_dir = Path(args.baseline) if args.baseline else model_dir.parent / "baseline"
    base_elf = base_ck = base_mem = None
    if (base_dir / "export.json").is_file():
        base_elf, base_mem = firmware_of(base_dir, board.name)
        base_ck = export_checkpoint_path(base_dir)
        if base_ck is None or not base_ck.is_file():
            raise CprError(f"the unpruned checkpoint of baseline {base_dir} is unknown or gone ({base_ck})")
        check_checkpoint(base_dir, base_ck)
        check_firmware(base_dir, base_elf, base_mem)
        source = (extra.get("pruning") or {}).get("source_sha256")
        if source and check_checkpoint(base_dir, base_ck)["checkpoint_sha256"] != source:
            raise CprError(f"baseline {base_dir} was exported from another checkpoint than the one "
                           f"{checkpoint} was pruned from")
    elif args.baseline or "pruning" in extra:
        raise CprError(f"the model is pruned: baseline (b) needs the unpruned model exported and built "
                       f"for {args.board} in {base_dir} (give --baseline DIR)")
    else:
        base_dir = None
    out = Path(args.out) if args.out else model_dir.parent / f"hil-{board.name}"
    cfg = HilConfig(board=board, model_dir=model_dir, firmware=elf, checkpoint=checkpoint,
                    baseline_checkpoint=base_ck, baseline_model_dir=base_dir, baseline_firmware=base_elf,
                    baseline_memory=base_mem, memory=memory, port=args.port,
                    episodes=args.episodes or default_episodes(load_checkpoint(checkpoint).task, args.min_return_ratio),
                    seed=args.seed, budget_s=budget, min_return_ratio=args.min_return_ratio,
                    min_fidelity_ratio=args.min_fidelity_ratio, selection_seeds=selection_seeds(extra),
                    log_dir=out)
    from cpr_edge.runfolder import RunFolder

    with RunFolder(out, "hil"):
        result, episodes = run_hil(cfg, progress=lambda m: print(m, file=sys.stderr, flush=True))
        report = write_report(out, result, episodes)
    emit(args, summary_json(report, out), summary_text(report, out))
    return exit_status(report)


EXIT_PASSED, EXIT_FAILED, EXIT_LINK, EXIT_INTERRUPTED = 0, 1, 3, 130
"""Exit status of a run that wrote its report: every check passed; a check failed (or was
inconclusive); the link failed for good; interrupted (Ctrl-C). 2 stays a one-line refusal."""


def exit_status(report: dict) -> int:
    stopped = report.get("stopped")
    if stopped:
        return EXIT_INTERRUPTED if stopped["kind"] == "interrupted" else EXIT_LINK
    return EXIT_PASSED if report["passed"] else EXIT_FAILED


def summary_json(report: dict, out: Path) -> dict:
    keys = ("passed", "checks", "task", "board", "model", "seeds", "returns", "mean_return", "latency",
            "memory", "timings")
    out_obj = {"out": str(out), **{k: report[k] for k in keys if k in report}}
    out_obj["model"] = {k: v for k, v in report["model"].items() if k != "export"}  # export.json is in report.json
    return out_obj


def summary_text(report: dict, out: Path) -> str:
    lines = [f"{'PASSED' if report['passed'] else 'FAILED'}: {report['task']} on {report['board']['name']}"]
    if report.get("stopped"):
        lines.append(f"  run stopped ({report['stopped']['kind']}): {report['stopped']['reason']}")
    for c in report["checks"]:
        lines.append(f"  {'pass' if c['passed'] else 'FAIL'}  {c['name']:34s} {c.get('note', '')}")
    lines.append(f"report: {out / 'report.md'}")
    return "\n".join(lines)
