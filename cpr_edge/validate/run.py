"""``validate``: a .tflite on a board against the TFLM interpreter (docs/validate.md).

Build the HIL firmware (cpr_edge.firmware_build), boot it in QEMU or flash the real board and
open the HIL link (cpr_edge.hil.session), send every input (INFER_Q with the integers for an
int8/int16 input, INFER with float32 for a float input: the board quantises), collect each
reply's outputs and invoke count, run the same inputs through tflite-micro's interpreter,
and compare bit for bit. Latency is the per-inference invoke count (instructions in QEMU,
DWT cycles on real boards) as the HIL report gives it (cpr_edge.hil.checks.latency_stats);
memory is memory.json's, beside the smallest TFLM arena for the same model. Everything is
written into one folder atomically: validate.json, validate.md, outputs.npz, firmware/.
"""
from __future__ import annotations

import platform
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from cpr_edge.boards import Board, load_board
from cpr_edge.errors import CprError
from cpr_edge.fileio import atomic_dir, write_json_atomic, write_text_atomic
from cpr_edge.firmware_build.model_source import DEPLOYED_NAME, check_frame_limits, resolve_model
from cpr_edge.validate.compare import compare
from cpr_edge.validate.inputs import TflmModel, load_inputs, random_inputs

FORMAT, VERSION = "cpr-edge/validate", 1
DEFAULT_RANDOM = 100
"""Inputs when neither --inputs nor --random is given."""


def default_out_dir(model, board_name: str) -> Path:
    """x.tflite -> x-validate-BOARD beside it; an export folder -> DIR/validate-BOARD."""
    model = Path(model)
    if model.is_file():
        return model.parent / f"{model.stem}-validate-{board_name}"
    return model / f"validate-{board_name}"


def _tflm_version() -> str:
    try:
        return metadata.version("tflite_micro")
    except metadata.PackageNotFoundError:
        return "unknown"


def _io(end) -> dict:
    return {"dtype": end.dtype, "shape": list(end.shape), "core_dtype": end.quant.dtype,
            "scale": float(end.quant.scale), "zero_point": int(end.quant.zero_point)}


def _run_on_board(link, rows: np.ndarray, integer_input: bool, say) -> tuple[np.ndarray, np.ndarray]:
    outs, counts = [], []
    for i, row in enumerate(rows):
        pending = link.infer_q_start(row) if integer_input else link.infer_start(row)
        y, count = link.infer_finish(pending)
        outs.append(y)
        counts.append(count)
        if (i + 1) % 100 == 0 or i + 1 == len(rows):
            say(f"  {i + 1} / {len(rows)} inputs on the board")
    return np.stack(outs), np.asarray(counts, np.int64)


def memory_summary(mem: dict, arena: int, allocations: dict, model_bytes: int, stats: dict) -> dict:
    """The firmware's figures (memory.json, the board's STATS) beside TFLM's arena."""
    ram, flash = mem["ram"], mem["flash"]
    invoke_stack = (ram.get("stack") or {}).get("invoke_measured")
    inference = ram["activations"] + invoke_stack if invoke_stack is not None else None
    return {
        "flash_bytes": flash["total"], "flash_capacity": flash["capacity"],
        "model_constants_bytes": flash.get("model_constants"), "tflite_bytes": model_bytes,
        "ram_bytes": ram["total"], "ram_capacity": ram["capacity"],
        "activation_bytes": ram["activations"], "invoke_stack_measured": invoke_stack,
        "stack_reserved": ram["stack_reserved"], "stack_used_on_board": stats.get("stack_used"),
        "inference_ram_bytes": inference,
        "tflm_arena_bytes": int(arena), "tflm_arena_tail_bytes": allocations.get("tail_bytes"),
        "inference_ram_vs_tflm_arena": round(inference / arena, 4) if inference and arena else None,
    }


def validate(board: Board | str, model, out_dir=None, inputs=None, random_n: int | None = None,
             seed: int = 0, port=None, flash: bool = True, fc_kernel: str | None = None,
             progress: Callable[[str], None] | None = None) -> dict:
    """Run ``model`` (a .tflite or an export folder) on ``board``; returns validate.json's object.

    Every check of the arguments (model, inputs, port, frame limits) comes before the build;
    the output folder appears only complete."""
    from cpr_edge.export.tflm_run import smallest_arena
    from cpr_edge.firmware_build import build_firmware, export_prescale
    from cpr_edge.hil.checks import latency_stats
    from cpr_edge.hil.session import check_real_board_port, open_session, parse_port

    say = progress or (lambda m: None)
    board = load_board(board) if isinstance(board, str) else board
    if inputs is not None and random_n is not None:
        raise CprError("give --inputs or --random, not both")
    source = resolve_model(model)
    parse_port(port, board.emulated)
    check_real_board_port(board, port)  # the board file's port, checked before the build
    out_dir = Path(out_dir) if out_dir else default_out_dir(source.path, board.name)
    times = {}
    prescale = export_prescale(source.path) if source.kind == "export" else None
    with tempfile.TemporaryDirectory(prefix="cpr-validate-") as scratch:  # no folder before the checks
        (Path(scratch) / DEPLOYED_NAME).write_bytes(source.data)  # the model the board runs
        ref = TflmModel(Path(scratch) / DEPLOYED_NAME, prescale, label=source.tflite.name)
    check_frame_limits(ref.input.size, ref.output.size)
    if inputs is not None:
        x = load_inputs(inputs, ref)
        input_info = {"source": "file", "path": str(Path(inputs).resolve())}
    else:
        x = random_inputs(DEFAULT_RANDOM if random_n is None else int(random_n), ref, seed)
        input_info = {"source": "random", "seed": int(seed)}
    input_info.update(count=int(len(x)), dtype=str(x.dtype), min=float(x.min()), max=float(x.max()),
                      prescale="export.json input.offset / input.gain" if prescale else None)
    with atomic_dir(out_dir) as tmp:
        (tmp / DEPLOYED_NAME).write_bytes(source.data)
        if source.rewrites:
            say(f"model: {source.summary()['rewrite']}")
        t0 = time.monotonic()
        build = build_firmware(board, source.path, tmp / "firmware", progress=say, fc_kernel=fc_kernel)
        times["build_s"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        want = ref.run(x)
        original = TflmModel(source.tflite, prescale).run(x) if source.rewrites else None
        times["tflm_s"] = round(time.monotonic() - t0, 2)
        say(f"{'booting' if board.emulated else ('flashing' if flash else 'opening')} {board.name}, "
            f"{len(x)} inputs")
        t0 = time.monotonic()
        with open_session(board, build["elf"], build["model_sha256"], port, flash=flash) as session:
            hello = session.hello
            got, counts = _run_on_board(session.link, x, ref.input.integer, say)
            stats = session.link.stats()
            session_kind = session.kind
        times["board_s"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        say("smallest TFLM arena (one subprocess per try)")
        arena, allocations, tries = smallest_arena(tmp / DEPLOYED_NAME)
        times["tflm_arena_s"] = round(time.monotonic() - t0, 2)
        result = compare(got, want, ref.output.quant)
        codegen = build["memory"]
        report = {
            "format": FORMAT, "version": VERSION, "bit_exact": result["bit_exact"],
            "board": {"name": board.name, "kind": board.kind, "core": board.core, "clock_hz": board.clock_hz,
                      "definition": board.source or f"cpr_edge/boards/{board.name}.yaml",
                      "fc_kernel": build["fc_kernel"], "session": session_kind,
                      "fw_version": hello.fw_version},
            "model": {**source.summary(), "input": _io(ref.input), "output": _io(ref.output)},
            "inputs": input_info,
            "comparison": {**result, "reference": f"tflite-micro {_tflm_version()} Python interpreter "
                                                   f"({platform.machine()}) on the deployed model"},
            "comparison_with_original": None if original is None else
                {**compare(got, original, ref.output.quant),
                 "reference": "tflite-micro on the model as given, before the float-island rewrite"},
            "latency": latency_stats(counts, hello.counter_unit, board.clock_hz,
                                     board.cycles_per_instruction, board.latency_basis),
            "memory": memory_summary(codegen, arena, allocations, len(source.data), stats),
            "tflm_arena_search_tries": int(tries),
            "files": {"firmware": "firmware/firmware.elf", "bin": "firmware/firmware.bin",
                      "hex": "firmware/firmware.hex", "memory_json": "firmware/memory.json",
                      "model": DEPLOYED_NAME, "outputs": "outputs.npz"},
            "timings": times,
        }
        np.savez(tmp / "outputs.npz", inputs=x, board=got, tflm=want, invoke_counts=counts,
                 **({"tflm_original": original} if original is not None else {}))
        write_json_atomic(tmp / "validate.json", report)
        from cpr_edge.validate.report import validate_md

        write_text_atomic(tmp / "validate.md", validate_md(report))
    report["out_dir"] = str(out_dir.resolve())
    return report
