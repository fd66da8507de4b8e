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


def run_host(exe: str | Path, inputs: np.ndarray, float_io: bool = False) -> np.ndarray:
    """inputs [N, input_len] int8 (or float32) -> outputs [N, output_len]."""
    dtype = np.float32 if float_io else np.int8
    x = np.ascontiguousarray(inputs, dtype=dtype)
    proc = _run([str(exe)] + (["float"] if float_io else []), input=x.tobytes(), timeout=120)
    return np.frombuffer(proc.stdout, dtype=dtype).reshape(len(x), -1)
