"""Firmware build: generated model code + platform + HIL app, linked for one board.

``build_firmware(board, model, out_dir)`` generates C from ``model/model_int8.tflite`` or a
bare .tflite (cpr_edge.codegen), compiles it with the board's platform, UART driver and kernels through
firmware/Makefile (arm-none-eabi-gcc, -ffunction-sections -fdata-sections, --gc-sections),
and writes ``firmware.elf`` (with ``.bin`` and ``.hex`` beside it), ``firmware.map``, ``memory.json`` (docs/memory.md) and the
generated sources into ``out_dir``. A model that does not fit the board is refused with the
numbers, and then nothing is written: ``out_dir`` appears only for an image that fits.
"""
from __future__ import annotations

import importlib.resources
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from cpr_edge.boards import Board, load_board
from cpr_edge.firmware_build.config import board_config_h, make_variables
from cpr_edge.firmware_build.memory import memory_report
from cpr_edge.errors import CprError, DoesNotFit
from cpr_edge.fileio import atomic_dir, write_json_atomic, write_text_atomic

TOOLS = ("make", "arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "arm-none-eabi-objcopy")
STACK_CACHE_FILE = "stack_probe.json"
"""Measured stack figures of the last build in an output folder (cpr_edge.firmware_build.stack)."""
TEST_IMAGE_STACK_BYTES = 2048
"""Stack of the on-target unit test image: it measures 120-200 B (its buffers are static),
and 2 KB leaves room beside its 3.6 KB of .bss on an 8 KB part."""


def firmware_dir() -> Path:
    """The firmware sources (package data)."""
    return Path(str(importlib.resources.files("cpr_edge") / "firmware"))


def default_out_dir(model_dir, board_name: str) -> Path:
    """Where ``cpr-edge build`` puts a board's image unless told: MODEL_DIR/firmware/BOARD, or
    for a bare ``x.tflite`` x-firmware/BOARD beside it."""
    model = Path(model_dir)
    if model.is_file():
        return model.parent / f"{model.stem}-firmware" / board_name
    return model / "firmware" / board_name


def export_prescale(model_dir) -> tuple[list[float], list[float]] | None:
    """export.json's ``(input.offset, input.gain)`` for the model of ``model_dir``, which the
    generated ``model_encode_input`` applies; None for a bare .tflite (identity). An export.json
    that describes another .tflite is refused."""
    import hashlib
    import json

    info_path = Path(model_dir) / "export.json"
    if not info_path.is_file():
        return None
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as e:
        raise CprError(f"{info_path} is not readable JSON: {e}") from None
    tflite = Path(model_dir) / "model_int8.tflite"
    sha = hashlib.sha256(tflite.read_bytes()).hexdigest()
    if info.get("sha256") and info["sha256"] != sha:
        raise CprError(f"{info_path} describes model {info['sha256'][:12]}, but {tflite} is {sha[:12]}: "
                       "re-export the folder")
    inp = info.get("input") or {}
    if "offset" not in inp and "gain" not in inp:
        return None
    return inp.get("offset"), inp.get("gain")


def _check_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise CprError(f"missing build tools: {', '.join(missing)} (install make and gcc-arm-none-eabi)")


def _make(variables: dict[str, str], log: Callable[[str], None]) -> subprocess.CompletedProcess:
    cmd = ["make", "-s", "-C", str(firmware_dir()), f"-j{min(2, os.cpu_count() or 1)}"]
    cmd += [f"{k}={v}" for k, v in variables.items()]
    log("make " + " ".join(f"{k}=..." for k in variables))
    return subprocess.run(cmd, capture_output=True, text=True)


def _overflow_message(board: Board, mem: dict, stack: dict | None = None) -> str:
    f, r = mem["flash"], mem["ram"]
    parts = []
    if f["headroom"] < 0:
        parts.append(f"flash needs {f['total']} bytes (code {f['code']}, constants {f['constants']}, "
                     f"data {f['data_init']}) but has {f['capacity']}: {-f['headroom']} bytes over")
    if r["headroom"] < 0:
        if stack and stack["source"] == "measured":
            stack_text = (f"stack {r['stack_reserved']} = measured {max(stack['invoke_measured'], stack['hil_measured'])}"
                          f" on {stack['measured_on']} + margin")
        elif r["stack_reserved"] == 0:
            stack_text = "stack not yet sized"  # .data + .bss alone do not fit
        else:
            stack_text = f"stack {r['stack_reserved']}"
        parts.append(f"RAM needs {r['total']} bytes (data {r['data']}, bss {r['bss']} incl. "
                     f"activations {r['activations']}, {stack_text}) but has "
                     f"{r['capacity']}: {-r['headroom']} bytes over")
    return f"the model does not fit {board.name}: " + "; ".join(parts)


def build_firmware(board: Board | str, model_dir, out_dir, progress: Callable[[str], None] | None = None,
                   fc_kernel: str | None = None) -> dict:
    """Build the HIL firmware for ``board`` from ``model_dir`` into ``out_dir``.

    ``model_dir`` is an export folder (its ``model_int8.tflite`` and export.json's prescale)
    or a bare .tflite file (identity prescale; its float ELU islands rewritten and the model
    the board runs written as ``out_dir/model_int8.tflite``, cpr_edge.firmware_build.model_source).
    ``fc_kernel`` overrides the board's FULLY_CONNECTED variant (reference | dsp | dsp_rotate |
    unrolled). The image is linked twice: first without a stack (its .data + .bss), then with
    the stack sized from measurement (cpr_edge.firmware_build.stack: a probe image in QEMU on
    the board or its emulated twin, cached in ``out_dir``). Besides the ELF, ``firmware.bin``
    and ``firmware.hex`` (arm-none-eabi-objcopy) for other flash tools. Returns a summary:
    board, paths of the ELF, .bin, .hex, map and memory.json, and the memory report.
    """
    # the function, not the package attribute (which importing the submodule replaces)
    from cpr_edge.codegen.generate import generate
    from cpr_edge.firmware_build.model_source import DEPLOYED_NAME, check_frame_limits, resolve_model

    board = load_board(board) if isinstance(board, str) else board
    log = progress or (lambda msg: None)
    source = resolve_model(model_dir)
    _check_tools()
    variant = fc_kernel or board.fc_kernel
    out_dir = Path(out_dir).resolve()  # make runs in the firmware folder: paths must be absolute
    from cpr_edge.firmware_build.identity import firmware_source_id, sha256_of

    source_id = firmware_source_id()  # before compiling: what the image is built from
    with atomic_dir(out_dir) as tmp:
        if source.kind == "export":
            model_dir = source.path
        else:  # the deployed bytes beside the firmware: the stack probe and the HIL read them there
            model_dir = tmp
            (tmp / DEPLOYED_NAME).write_bytes(source.data)
            if source.rewrites:
                log(f"rewrote {source.summary()['rewrite']}")
        tflite = model_dir / DEPLOYED_NAME
        log(f"generating C from {source.tflite}")
        gen = generate(tflite, tmp / "model", input_prescale=export_prescale(model_dir))
        check_frame_limits(gen["input"]["len"], gen["output"]["len"])
        write_text_atomic(tmp / "board_config.h", board_config_h(board, source_id))
        variables = {"OUT": str(tmp), "CONFIG_DIR": str(tmp), "MODEL_DIR": str(tmp / "model"),
                     "APP": "hil", **make_variables(board, variant)}
        variables["STACK_SIZE"] = "0"  # first link: .data + .bss alone; the stack is sized below
        log(f"compiling for {board.name} ({board.core}, FULLY_CONNECTED {variant})")
        res = _make(variables, log)
        elf = tmp / "firmware.elf"
        if res.returncode != 0:
            if "overflowed" not in res.stderr and "will not fit" not in res.stderr:
                raise CprError(f"firmware build for {board.name} failed: {_first_error(res.stderr)}")
            # Link once more, keeping the oversized image, only to measure it for the message.
            _make({**variables, "LDEXTRA": "-Wl,--noinhibit-exec"}, log)
            if not elf.is_file():
                raise DoesNotFit(f"the model does not fit {board.name}: {_first_error(res.stderr)}")
            mem = memory_report(elf, board, activation_bytes=gen["activation_bytes"])
            raise DoesNotFit(_overflow_message(board, mem), mem)
        model_obj = tmp / "obj" / "model_model.o"
        mem = memory_report(elf, board, model_obj, activation_bytes=gen["activation_bytes"])
        if not mem["fits"]:
            raise DoesNotFit(_overflow_message(board, mem), mem)
        mem, stack = _link_with_measured_stack(board, model_dir, variant, source_id, variables, mem,
                                               gen["activation_bytes"], out_dir, log)
        mem["fc_kernel"] = variant
        mem["model_sha256"] = gen["sha256"]
        mem["elf_sha256"] = sha256_of(elf)
        mem["firmware_source_id"] = source_id
        mem["model_source"] = source.summary()
        images = _flash_images(elf)
        write_json_atomic(tmp / "memory.json", mem)
        if stack.get("_cache"):
            write_json_atomic(tmp / STACK_CACHE_FILE, stack["_cache"])
        shutil.rmtree(tmp / "obj")
        shutil.rmtree(tmp / "stack_probe", ignore_errors=True)  # a twin's probe build
        for name in ("stack_probe.elf", "stack_probe.map"):  # the board's own probe image
            (tmp / name).unlink(missing_ok=True)
        log(f"{board.name}: flash {mem['flash']['total']} / {mem['flash']['capacity']} bytes, "
            f"RAM {mem['ram']['total']} / {mem['ram']['capacity']} bytes")
    return {"board": board.name, "out_dir": str(out_dir), "elf": str(out_dir / "firmware.elf"),
            **{k: str(out_dir / p.name) for k, p in images.items()},
            "map": str(out_dir / "firmware.map"), "memory_json": str(out_dir / "memory.json"),
            "tflite": str(out_dir / DEPLOYED_NAME if source.kind == "tflite" else source.tflite),
            "fc_kernel": variant, "model_sha256": gen["sha256"], "model_source": source.summary(),
            "memory": mem}


def _flash_images(elf: Path) -> dict[str, Path]:
    """``firmware.bin`` (raw, from the lowest load address) and ``firmware.hex`` (Intel HEX)
    beside the ELF, for flash tools other than pyocd (STM32CubeProgrammer, nrfjprog, a
    drag-and-drop mass-storage probe)."""
    images = {"bin": elf.with_suffix(".bin"), "hex": elf.with_suffix(".hex")}
    for fmt, path in (("binary", images["bin"]), ("ihex", images["hex"])):
        r = subprocess.run(["arm-none-eabi-objcopy", "-O", fmt, str(elf), str(path)],
                           capture_output=True, text=True)
        if r.returncode != 0 or not path.is_file():
            raise CprError(f"arm-none-eabi-objcopy -O {fmt} failed: {_first_error(r.stderr)}")
    return images


def _link_with_measured_stack(board: Board, model_dir, variant: str, source_id: str, variables: dict,
                              mem: dict, activation_bytes: int, out_dir: Path, log) -> tuple[dict, dict]:
    """Relink the image of ``variables`` (linked without a stack, measured as ``mem``) with the
    stack planned from measurement; returns its memory report, with ``ram.stack``, and the plan.
    Refuses, with the figures, a stack that does not fit beside .data and .bss."""
    from cpr_edge.firmware_build.stack import plan_stack

    tmp = Path(variables["OUT"])
    cache = out_dir if (out_dir / STACK_CACHE_FILE).is_file() else None
    stack = plan_stack(board, model_dir, variant, source_id, mem["ram"]["headroom"], tmp / "stack_probe",
                       cache, log, build_variables=variables)
    variables["STACK_SIZE"] = str(stack["reserved"])
    elf = tmp / "firmware.elf"
    elf.unlink()
    res = _make(variables, log)
    if res.returncode != 0:
        if "overflowed" not in res.stderr and "will not fit" not in res.stderr:
            raise CprError(f"firmware build for {board.name} failed: {_first_error(res.stderr)}")
        _make({**variables, "LDEXTRA": "-Wl,--noinhibit-exec"}, log)
        over = memory_report(elf, board, activation_bytes=activation_bytes)
        raise DoesNotFit(_overflow_message(board, over, stack), over)
    mem = memory_report(elf, board, tmp / "obj" / "model_model.o", activation_bytes=activation_bytes)
    if not mem["fits"]:
        raise DoesNotFit(_overflow_message(board, mem, stack), mem)
    measured = None if stack["source"] != "measured" else max(stack["invoke_measured"], stack["hil_measured"])
    mem["ram"]["stack_measured"] = measured
    mem["ram"]["stack"] = {k: v for k, v in stack.items() if not k.startswith("_")}
    return mem, stack


def build_test_image(board: Board | str, out_dir, progress: Callable[[str], None] | None = None) -> Path:
    """Build the on-target unit tests (firmware/tests/test_on_target.c) for an emulated board;
    run the returned ELF with ``board.semihosting_command(elf)``: exit status 0 = all passed."""
    board = load_board(board) if isinstance(board, str) else board
    _check_tools()
    out_dir = Path(out_dir).resolve()
    with atomic_dir(out_dir) as tmp:
        write_text_atomic(tmp / "board_config.h", board_config_h(board))
        variables = {"OUT": str(tmp), "CONFIG_DIR": str(tmp), "APP": "unittest",
                     **{k: v for k, v in make_variables(board, "reference").items()
                        if not k.startswith(("RUNTIME", "FC_"))},
                     "STACK_SIZE": str(TEST_IMAGE_STACK_BYTES)}
        res = _make(variables, progress or (lambda msg: None))
        if res.returncode != 0:
            raise CprError(f"test image build for {board.name} failed: {_first_error(res.stderr)}")
        shutil.rmtree(tmp / "obj")
    return out_dir / "firmware.elf"


def _first_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if "error" in ln.lower() or "overflow" in ln.lower()]
    return (lines or stderr.strip().splitlines() or ["(no output)"])[0][:300]
