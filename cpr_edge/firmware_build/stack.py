"""The HIL firmware's stack, sized from measurement instead of a fixed figure.

The stack the linker reserves is what the firmware was measured to use with this model on
this core, plus a stated margin:

  reserved = round_up_8(ceil(measured * (1 + MARGIN_FRACTION)) + MARGIN_BYTES)

``measured`` comes from firmware/tests/invoke_stack_probe.c, run in QEMU on the board (an
emulated one) or on its ``emulated_twin`` (a real one: same core and FPU, same kernels): the
stack of the HIL request handling (main loop's frame parser, the handlers of every request
type, the invoke at the depth where the firmware calls it, SysTick ticks), and on its own the
stack of ``model_invoke``. The probe costs one build of its image and one QEMU run; the
figures are cached in the build folder (``stack_probe.json``) under a content hash of
everything they depend on, so rebuilding the same model for the same board measures nothing.
A real board without an emulated twin keeps the fixed ``stack_bytes`` of its definition.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Callable

from cpr_edge.boards import Board, load_board
from cpr_edge.errors import CprError, DoesNotFit
from cpr_edge.firmware_build import STACK_CACHE_FILE as CACHE_FILE

MARGIN_FRACTION = 0.25
MARGIN_BYTES = 256
MARGIN_WHY = ("25 % for paths the probe does not take (data-dependent branches in the "
              "soft-float and libgcc helpers, a real board's own UART driver and clock code "
              "measured on its emulated twin), plus 256 B for one interrupt at the deepest "
              "point: an exception frame with FP context is 104 B and the UART handler's own "
              "frame is under 64 B; the firmware's interrupts share one priority, so they do "
              "not nest")


def reserve_for(measured: int) -> int:
    """Bytes to reserve for a measured stack high-water mark (8-byte aligned, AAPCS)."""
    raw = math.ceil(measured * (1 + MARGIN_FRACTION)) + MARGIN_BYTES
    return (raw + 7) // 8 * 8


def measuring_board(board: Board) -> Board | None:
    """The emulated board the stack of ``board`` is measured on: itself, its twin, or None."""
    if board.emulated:
        return board
    if board.emulated_twin:
        twin = load_board(board.emulated_twin)
        if not twin.emulated:
            raise CprError(f"board definition {board.name}.yaml: emulated_twin {twin.name} is not emulated")
        if twin.cpu_flags != board.cpu_flags:
            raise CprError(f"board definition {board.name}.yaml: emulated_twin {twin.name} has other "
                           f"core flags ({' '.join(twin.cpu_flags)}), its stack would not be this board's")
        return twin
    return None


def probe_key(twin: Board, model_dir, fc_kernel: str, source_id: str) -> str:
    """Content hash of everything the measured figures depend on."""
    from cpr_edge.firmware_build import export_prescale

    h = hashlib.sha256()
    h.update((Path(model_dir) / "model_int8.tflite").read_bytes())
    h.update(json.dumps([twin.name, list(twin.cpu_flags), fc_kernel, source_id,
                         export_prescale(model_dir)]).encode())
    return h.hexdigest()


def plan_stack(board: Board, model_dir, fc_kernel: str, source_id: str, free_ram: int, work: Path,
               cache_dir: Path | None, log: Callable[[str], None], build_variables: dict | None = None) -> dict:
    """The ``ram.stack`` object of memory.json (docs/memory.md) for ``board``: measured
    figures (probe or cache) and the bytes to reserve. ``free_ram`` (RAM left by .data and
    .bss of the HIL image) is the probe image's stack, so the probe cannot overflow it.
    ``build_variables``: the make variables of the HIL build of an emulated ``board``, whose
    objects the probe then reuses (a twin's probe is built apart, in ``work``)."""
    twin = measuring_board(board)
    if twin is None:
        if board.stack_bytes is None:
            raise CprError(f"board definition {board.name}.yaml: a real board without emulated_twin "
                           "needs stack_bytes")
        return {"source": "board definition", "measured_on": None, "invoke_measured": None,
                "hil_measured": None, "outside_invoke": None, "margin": None,
                "reserved": board.stack_bytes, "from_cache": False}
    key = probe_key(twin, model_dir, fc_kernel, source_id)
    figures = _cached(cache_dir, key)
    if figures is None:
        from cpr_edge.firmware_build.probe import measure_invoke_stack, probe_in_build

        log(f"measuring the stack on {twin.name} (probe image in QEMU)")
        # the probe's .bss is below the HIL image's (its stack is the RAM the image leaves); a
        # twin with less RAM than the board leaves the probe less
        probe_stack = min(free_ram, twin.ram_size - (board.ram_size - free_ram)) // 8 * 8
        if probe_stack < 64:
            raise DoesNotFit(f"the model does not fit {board.name}: RAM: .data + .bss leave {free_ram} "
                           f"of {board.ram_size} bytes, no room for a stack")
        if twin is board and build_variables is not None:
            figures = probe_in_build(board, build_variables, probe_stack)
        else:
            figures = measure_invoke_stack(twin, model_dir, work, fc_kernel=fc_kernel, stack_bytes=probe_stack)
        if figures["hil_stack_bytes"] >= probe_stack - 8:  # no painted word left: it overflowed
            raise DoesNotFit(f"the model does not fit {board.name}: RAM: .data + .bss leave {free_ram} "
                           f"of {board.ram_size} bytes for the stack, and the HIL firmware needs more "
                           f"(the stack probe on {twin.name} used all {probe_stack} it had)")
        figures = {"key": key, "invoke_stack_bytes": figures["invoke_stack_bytes"],
                   "hil_stack_bytes": figures["hil_stack_bytes"]}
        from_cache = False
    else:
        log(f"stack figures of {twin.name} from {CACHE_FILE} (same model, sources, core)")
        from_cache = True
    invoke, hil = figures["invoke_stack_bytes"], figures["hil_stack_bytes"]
    measured = max(invoke, hil)
    return {"source": "measured", "measured_on": twin.name, "invoke_measured": invoke,
            "hil_measured": hil, "outside_invoke": max(0, hil - invoke),
            "margin": {"fraction": MARGIN_FRACTION, "bytes": MARGIN_BYTES, "why": MARGIN_WHY},
            "reserved": reserve_for(measured), "from_cache": from_cache, "_cache": figures}


def _cached(cache_dir: Path | None, key: str) -> dict | None:
    if cache_dir is None or not (cache_dir / CACHE_FILE).is_file():
        return None
    try:
        figures = json.loads((cache_dir / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(figures, dict) and figures.get("key") == key
          and all(isinstance(figures.get(k), int) and figures[k] > 0
                  for k in ("invoke_stack_bytes", "hil_stack_bytes")))
    return figures if ok else None
