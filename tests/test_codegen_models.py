"""Whole exported models (real `cpr-edge export` output) through the code generator:
int8 outputs identical to the tflite-micro interpreter on hundreds of inputs, compiled for
the host with gcc (every kernel variant) and for Cortex-M4F / Cortex-M7 in QEMU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cpr_edge.agents.checkpoint import load_checkpoint
from cpr_edge.codegen import generate
from cpr_edge.codegen.harness import (TARGETS, build_host, build_qemu, qemu_outputs, run_host,
                                      run_qemu, tflm_outputs)


def observations(checkpoint, n: int) -> np.ndarray:
    torch.set_num_threads(1)
    obs = load_checkpoint(checkpoint).replay["obs"]
    obs = np.asarray(obs, dtype=np.float32).reshape(-1, obs.shape[-1])
    idx = np.random.default_rng(0).choice(len(obs), size=min(n, len(obs)), replace=False)
    return obs[idx]


def quantize(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    q = np.trunc(x / np.float32(scale) + np.copysign(np.float32(0.5), x)) + zp  # half away from 0
    return np.clip(q, -128, 127).astype(np.int8)


@pytest.mark.slow
@pytest.mark.qemu
def test_exported_model_bit_exact_host_and_qemu(hil_model_dir, tiny_checkpoint, tmp_path):
    tflite = hil_model_dir / "model_int8.tflite"
    info = generate(tflite, tmp_path)
    assert set(info["ops"]) <= {"FULLY_CONNECTED", "ELU", "TANH"}
    q = info["input"]
    x = np.concatenate([quantize(observations(tiny_checkpoint, 300), q["scale"], q["zero_point"]),
                        np.random.default_rng(1).integers(-128, 128, (200, q["len"]), dtype=np.int8)])
    want = tflm_outputs(tflite.read_bytes(), x)
    assert len(np.unique(want)) > 10
    for variant in ("reference", "dsp", "dsp_rotate"):
        np.testing.assert_array_equal(run_host(build_host(tmp_path, variant), x), want, err_msg=variant)
    for cpu, variant in [("cortex-m4", "reference"), ("cortex-m4", "dsp_rotate"), ("cortex-m7", "dsp")]:
        elf = build_qemu(tmp_path, x, variant, cpu=cpu)
        got = qemu_outputs(run_qemu(elf, machine=TARGETS[cpu][1]), len(x))
        np.testing.assert_array_equal(got, want, err_msg=f"qemu {cpu} {variant}")


@pytest.mark.slow
@pytest.mark.qemu
def test_exported_odd_widths_float_io_bit_exact(codegen_odd_float_export, tmp_path):
    tflite = codegen_odd_float_export / "model_int8.tflite"
    info = generate(tflite, tmp_path)
    assert info["float_io"] and info["ops"][0] == "QUANTIZE" and info["ops"][-1] == "DEQUANTIZE"
    fc = [l["macs"] for l in info["layers"] if l["op"] == "FULLY_CONNECTED"]
    assert 5 * 179 in fc and any(m % 4 for m in fc)  # odd widths exercise the kernel tails
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1.5, (300, info["input"]["len"])).astype(np.float32)
    want = tflm_outputs(tflite.read_bytes(), x).astype(np.float32)
    for variant in ("reference", "dsp"):
        got = run_host(build_host(tmp_path, variant), x, float_io=True)
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32), err_msg=variant)
    got = qemu_outputs(run_qemu(build_qemu(tmp_path, x[:200], "dsp")), 200, np.float32)
    np.testing.assert_array_equal(got.view(np.int32), want[:200].view(np.int32))
