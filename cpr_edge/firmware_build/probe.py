"""Stack used by ``model_invoke``, measured on an emulated board by stack painting
(firmware/tests/invoke_stack_probe.c), for the inference-RAM figure
(activation arena + invoke stack) of benchmarks/memory_vs_tflm.py."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from cpr_edge.boards import Board, load_board
from cpr_edge.firmware_build import _check_tools, _first_error, _make, export_prescale
from cpr_edge.firmware_build.config import board_config_h, make_variables
from cpr_edge.errors import CprError
from cpr_edge.fileio import write_text_atomic


def measure_invoke_stack(board: Board | str, model_dir, work_dir=None, fc_kernel: str | None = None) -> dict:
    """``{"invoke_stack_bytes", "activation_bytes"}`` for ``model_dir/model_int8.tflite`` on
    ``board`` (emulated), measured in QEMU."""
    from cpr_edge.codegen.generate import generate

    board = load_board(board) if isinstance(board, str) else board
    if not board.emulated:
        raise CprError(f"{board.name} is not emulated: the stack probe runs in QEMU")
    _check_tools()
    work = Path(work_dir or tempfile.mkdtemp(prefix="cpr-probe-"))
    work.mkdir(parents=True, exist_ok=True)
    generate(Path(model_dir) / "model_int8.tflite", work / "model", input_prescale=export_prescale(model_dir))
    write_text_atomic(work / "board_config.h", board_config_h(board))
    variables = {"OUT": str(work), "CONFIG_DIR": str(work), "MODEL_DIR": str(work / "model"),
                 "APP": "invoke_stack_probe", **make_variables(board, fc_kernel or board.fc_kernel)}
    res = _make(variables, lambda m: None)
    if res.returncode != 0:
        raise CprError(f"stack probe build failed: {_first_error(res.stderr)}")
    run = subprocess.run(board.semihosting_command(work / "firmware.elf"), capture_output=True,
                         text=True, timeout=120)
    out = run.stdout + run.stderr
    if run.returncode != 0:
        raise CprError(f"stack probe failed on {board.name} (exit {run.returncode}): {out[-300:]}")
    figures = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            figures[parts[0]] = int(parts[1])
    if "invoke_stack_bytes" not in figures:
        raise CprError(f"stack probe printed no figures: {out[-300:]}")
    return figures
