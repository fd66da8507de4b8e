"""Stack used by ``model_invoke`` and by the HIL request handling, measured on an emulated
board by stack painting (firmware/tests/invoke_stack_probe.c): the HIL image's stack is sized
from them (cpr_edge.firmware_build.stack), and benchmarks/memory_vs_tflm.py takes the
inference-RAM figure (activation arena + invoke stack)."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from cpr_edge.boards import Board, load_board
from cpr_edge.firmware_build import _check_tools, _first_error, _make, export_prescale
from cpr_edge.firmware_build.config import board_config_h, make_variables
from cpr_edge.errors import CprError
from cpr_edge.fileio import write_text_atomic


def measure_invoke_stack(board: Board | str, model_dir, work_dir=None, fc_kernel: str | None = None,
                         stack_bytes: int | None = None) -> dict:
    """``{"invoke_stack_bytes", "hil_stack_bytes", "activation_bytes", "frames_ok"}`` for
    ``model_dir/model_int8.tflite`` on ``board`` (emulated), measured in QEMU. The probe image
    gets ``stack_bytes`` of stack (default: the board's ``stack_bytes``, else a quarter of
    its RAM)."""
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
                 **make_variables(board, fc_kernel or board.fc_kernel)}
    return probe_in_build(board, variables, stack_bytes or board.stack_bytes or board.ram_size // 4 // 8 * 8)


def probe_in_build(board: Board, variables: dict, stack_bytes: int) -> dict:
    """Link and run the probe image in a build folder set up for ``board`` (``variables``: its
    make variables, with OUT, CONFIG_DIR and MODEL_DIR): as ``OUT/stack_probe.elf``, beside a
    HIL image, whose objects it reuses, so only the probe's own files are compiled."""
    variables = {**variables, "APP": "invoke_stack_probe", "IMAGE": "stack_probe",
                 "STACK_SIZE": str(stack_bytes), "LDEXTRA": ""}
    res = _make(variables, lambda m: None)
    if res.returncode != 0:
        raise CprError(f"stack probe build failed: {_first_error(res.stderr)}")
    elf = Path(variables["OUT"]) / "stack_probe.elf"
    try:  # it runs in about a second; a fault stops the core in a loop
        run = subprocess.run(board.semihosting_command(elf), capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise CprError(f"stack probe on {board.name} did not finish within 60 s (a fault in the "
                       "probe image: stack overflow?)") from None
    out = run.stdout + run.stderr
    if run.returncode != 0:
        raise CprError(f"stack probe failed on {board.name} (exit {run.returncode}): {out[-300:]}")
    figures = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            figures[parts[0]] = int(parts[1])
    if "invoke_stack_bytes" not in figures or "hil_stack_bytes" not in figures:
        raise CprError(f"stack probe printed no figures: {out[-300:]}")
    if figures.get("frames_ok") != 6:  # every request frame but the bad-length, bad-CRC and unknown ones
        raise CprError(f"stack probe: the HIL handlers acted on {figures.get('frames_ok')} of 6 frames")
    return figures
