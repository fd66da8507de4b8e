"""Compile generated code with the runtime and run it on many inputs: on the host (gcc)
and on a Cortex-M in QEMU (semihosting image). Used by the bit-exactness tests and by
benchmarks/kernel_speed.py."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from cpr_edge.codegen import runtime_defines, runtime_include_dir, runtime_sources
from cpr_edge.errors import CprError

CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, **kw)
    except FileNotFoundError as exc:
        raise CprError(f"{cmd[0]} not found: install it") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else proc.stderr
        raise CprError(f"{Path(cmd[0]).name} failed ({proc.returncode}): {err.strip()[:2000]}")
    return proc


def build_host(model_dir: str | Path, variant: str = "reference", out: str | Path | None = None) -> Path:
    """gcc: model.c + runtime + tests/host_main.c -> an executable."""
    model_dir = Path(model_dir)
    exe = Path(out) if out else model_dir / f"host_{variant}"
    inc = runtime_include_dir()
    srcs = [model_dir / "model.c", inc / "tests" / "host_main.c", *runtime_sources(variant)]
    _run(["gcc", *CFLAGS, *runtime_defines(variant), f"-I{inc}", f"-I{model_dir}",
          *map(str, srcs), "-o", str(exe)])
    return exe


def run_host(exe: str | Path, inputs: np.ndarray, float_io: bool = False,
             dtype=np.int8, out_dtype=None) -> np.ndarray:
    """inputs [N, input_len] of the model's integer type ``dtype`` (int8, or int16 for a 16x8
    model), or float32 with ``float_io`` -> outputs [N, output_len] of ``out_dtype`` (default
    the input type)."""
    dtype = np.float32 if float_io else dtype
    x = np.ascontiguousarray(inputs, dtype=dtype)
    proc = _run([str(exe)] + (["float"] if float_io else []), input=x.tobytes(), timeout=120)
    return np.frombuffer(proc.stdout, dtype=out_dtype or dtype).reshape(len(x), -1)


M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
# core -> (compiler flags, QEMU machine). These machines share the test link map: code at
# 0x0, SRAM at 0x20000000 (mps2-an505, Cortex-M33, boots Secure at another map: not here).
# The micro:bit has 16 KB of RAM there, so its stack starts at the end of those.
TARGETS = {"cortex-m4": (M4_FLAGS, "mps2-an386"),
           "cortex-m7": (["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"], "mps2-an500"),
           "cortex-m3": (["-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"], "mps2-an385"),
           "cortex-m0": (["-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft",
                          "-Wl,--defsym=cpr_test_ram_end=0x20004000"], "microbit"),
           # boots Secure: its own link map (tests/qemu_mps3.ld), FPU and MVE from -mcpu
           "cortex-m55": (["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"], "mps3-an547")}
LINK_MAPS = {"cortex-m55": "qemu_mps3.ld"}
"""link map of a core's test machine other than tests/qemu_mps2.ld"""
QEMU_MACHINE = "mps2-an386"


def _vectors_h(inputs: np.ndarray) -> str:
    if inputs.dtype == np.float32:  # exact hex-float literals
        rows = ",\n".join("    {" + ", ".join(float(v).hex() + "f" for v in row) + "}" for row in inputs)
        return (f"/* generated test inputs */\n#define TEST_FLOAT 1\n#define TEST_COUNT {len(inputs)}\n"
                f"static const float test_inputs[TEST_COUNT][MODEL_INPUT_LEN] = {{\n{rows}\n}};\n")
    rows = ",\n".join("    {" + ", ".join(str(int(v)) for v in row) + "}" for row in inputs)
    return (f"/* generated test inputs */\n#define TEST_COUNT {len(inputs)}\n"
            f"static const MODEL_INPUT_T test_inputs[TEST_COUNT][MODEL_INPUT_LEN] = {{\n{rows}\n}};\n")


def arm_compile(out_elf: Path, sources: list[Path], includes: list[Path], defines: list[str],
                flags: list[str] | None = None, cpu: str = "cortex-m4") -> Path:
    """arm-none-eabi-gcc for the QEMU test image (freestanding, own start-up); ``flags``
    default to ``cpu``'s, the link map is that core's test machine's."""
    tests = runtime_include_dir() / "tests"
    flags = flags or TARGETS[cpu][0]
    link_map = LINK_MAPS.get(cpu, "qemu_mps2.ld")
    _run(["arm-none-eabi-gcc", *CFLAGS, *flags, "-ffreestanding",
          "-ffunction-sections", "-fdata-sections", *defines,
          *[f"-I{p}" for p in [runtime_include_dir(), tests, *includes]],
          *map(str, sources), str(tests / "qemu_startup.c"),
          "-nostdlib", "-Wl,--gc-sections", f"-T{tests / link_map}", "-lgcc",
          "-o", str(out_elf)])
    return out_elf


def build_qemu(model_dir: str | Path, inputs: np.ndarray, variant: str = "reference",
               out: str | Path | None = None, cpu: str = "cortex-m4") -> Path:
    """A semihosting image that runs the model on `inputs` (embedded) and prints outputs.
    float32 inputs run model_invoke_float, int16 ones a 16x8 model's model_invoke, anything
    else model_invoke on int8."""
    model_dir = Path(model_dir)
    inputs = np.asarray(inputs)
    inputs = inputs if inputs.dtype in (np.float32, np.int16) else inputs.astype(np.int8)
    (model_dir / "test_vectors.h").write_text(_vectors_h(inputs))
    elf = Path(out) if out else model_dir / f"qemu_{variant}_{cpu}.elf"
    srcs = [model_dir / "model.c", runtime_include_dir() / "tests" / "qemu_main.c",
            *runtime_sources(variant)]
    return arm_compile(elf, srcs, [model_dir], runtime_defines(variant), TARGETS[cpu][0], cpu)


def run_qemu(elf: str | Path, icount: bool = False, timeout: float = 120,
             machine: str = QEMU_MACHINE) -> str:
    """Boot the image in qemu-system-arm (`machine`); return its semihosting console text."""
    if shutil.which("qemu-system-arm") is None:
        raise CprError("qemu-system-arm not found: install the Debian package qemu-system-arm")
    cmd = ["qemu-system-arm", "-M", machine, "-display", "none", "-monitor", "none",
           "-serial", "null", "-semihosting-config", "enable=on,target=native",
           "-kernel", str(elf)] + (["-icount", "shift=0"] if icount else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, text=True)
    except subprocess.TimeoutExpired as exc:
        raise CprError(f"QEMU did not exit within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise CprError(f"QEMU image exited with {proc.returncode}: {(proc.stdout + proc.stderr)[-500:]}")
    return proc.stdout + proc.stderr  # QEMU 7.2 writes the semihosting console to stderr


def qemu_outputs(text: str, count: int, dtype=np.int8) -> np.ndarray:
    rows = [bytes.fromhex(line[2:]) for line in text.splitlines() if line.startswith("O ")]
    if len(rows) != count or "DONE" not in text:
        raise CprError(f"QEMU run printed {len(rows)} of {count} outputs")
    return np.frombuffer(b"".join(rows), dtype=dtype).reshape(count, -1)


def tflm_outputs(model: bytes, inputs: np.ndarray) -> np.ndarray:
    """The tflite-micro interpreter on each row of `inputs` (reshaped to the input tensor)."""
    from tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(model, arena_size=max(64 * 1024, 8 * len(model)))
    shape = interp.get_input_details(0)["shape"]
    dtype = interp.get_input_details(0)["dtype"]
    outs = []
    for row in inputs:
        interp.set_input(np.asarray(row, dtype=dtype).reshape(shape), 0)
        interp.invoke()
        outs.append(np.array(interp.get_output(0)).reshape(-1))
    return np.stack(outs)
