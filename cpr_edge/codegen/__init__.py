"""Ahead-of-time C code from an int8 .tflite, bit-exact to the TFLM reference kernels.

Public API:
  generate(tflite_path, out_dir) -> dict     model.c / model.h / codegen.json
  runtime_sources(variant) -> list[Path]     kernel C files for "reference", "dsp", "dsp_rotate", "unrolled", "mve"
  runtime_defines(variant) -> list[str]      the -D flag that selects that variant
  runtime_include_dir() -> Path              folder holding cpr_runtime.h
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from cpr_edge.errors import CprError

VARIANTS = {"reference": [], "dsp": ["-DCPR_FC_VARIANT_DSP"],
            "dsp_rotate": ["-DCPR_FC_VARIANT_DSP_ROTATE"], "unrolled": ["-DCPR_FC_VARIANT_UNROLLED"],
            "mve": ["-DCPR_FC_VARIANT_MVE"]}
"""mve: Cortex-M55 only (MVE int8 FULLY_CONNECTED; the DSP kernels for the rest)"""


# Imported eagerly: a lazy import of the submodule `generate` would rebind the package
# attribute `generate` from this function to the module.
from cpr_edge.codegen.generate import generate  # noqa: E402


def runtime_include_dir() -> Path:
    return Path(str(resources.files("cpr_edge") / "firmware" / "runtime"))


def runtime_sources(variant: str = "reference") -> list[Path]:
    """C files to compile for a FULLY_CONNECTED variant (compile them with runtime_defines)."""
    if variant not in VARIANTS:
        raise CprError(f"unknown kernel variant {variant!r}; choose from {', '.join(VARIANTS)}")
    root = runtime_include_dir()
    files = sorted((root / "reference").glob("*.c"))
    if variant != "reference":
        files += sorted((root / "optimized").glob("*.c"))
    return files


def runtime_defines(variant: str = "reference") -> list[str]:
    if variant not in VARIANTS:
        raise CprError(f"unknown kernel variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return list(VARIANTS[variant])
