"""The Cortex-M55 MVE (Helium) int8 FULLY_CONNECTED kernel (optimized/fully_connected_s8_mve.c)
against the tflite-micro interpreter on random shapes, in QEMU mps3-an547 (QEMU 7.2 models
the M55 with MVE), and the 16x8 model path of the mve build."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
from test_kernel_fully_connected import A, fc_model
from test_kernel_fully_connected_s16 import fc16_model

from cpr_edge.codegen import generate
from cpr_edge.codegen.harness import TARGETS, build_qemu, qemu_outputs, run_qemu, tflm_outputs

M55 = "cortex-m55"
ACTS = [A.NONE, A.RELU, A.NONE, A.RELU_N1_TO_1, A.RELU6]


def _run(d, model, x, dtype=np.int8):
    elf = build_qemu(d, x, "mve", cpu=M55)
    got = qemu_outputs(run_qemu(elf, machine=TARGETS[M55][1]), len(x), dtype=dtype)
    np.testing.assert_array_equal(got, tflm_outputs(model, x))
    return elf


@pytest.mark.qemu
def test_mve_kernel_random_shapes_match_tflm(tmp_path):
    """Random K (every K % 16 tail class appears over the draws, and K < 16: tail only) and
    N (every N % 4), per-tensor and per-channel, fused activations."""
    rng = np.random.default_rng(55)
    shapes = [(int(k), int(n)) for k, n in zip(rng.integers(1, 300, 7), rng.integers(1, 24, 7))]
    shapes += [(256, 4), (16, 1), (17, 6), (5, 3)]
    for i, (k, n) in enumerate(shapes):
        case = (k, n, i % 3 != 0, ACTS[i % len(ACTS)], int(rng.integers(-128, 128)),
                int(rng.integers(-10, 11)), i % 4 != 1)
        d = tmp_path / str(i)
        d.mkdir()
        model = fc_model(rng, *case)
        (d / "m.tflite").write_bytes(model)
        generate(d / "m.tflite", d)
        x = rng.integers(-128, 128, (60, k), dtype=np.int8)
        elf = _run(d, model, x)
        symbols = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True,
                                 text=True, check=True).stdout
        # linked (--gc-sections) and no other int8 kernel: the MVE kernel ran, few inputs too
        assert " cpr_fc_s8_mve_p" in symbols and " cpr_fc_s8_few_inputs" not in symbols
        assert " cpr_fully_connected_s8_dsp" not in symbols
    attrs = subprocess.run(["arm-none-eabi-readelf", "-A", str(elf)], capture_output=True,
                           text=True, check=True).stdout
    assert "Tag_MVE_arch: MVE Integer" in attrs


@pytest.mark.qemu
def test_mve_build_runs_16x8_layers_exactly(tmp_path):
    """The mve variant keeps the DSP 16x8 kernel for int16 layers: exact on the M55 too."""
    rng = np.random.default_rng(8)
    for i, case in enumerate([(37, 19, True, A.NONE, "int64"), (130, 7, True, A.NONE, "none-int64")]):
        d = tmp_path / str(i)
        d.mkdir()
        model = fc16_model(rng, *case)
        (d / "m.tflite").write_bytes(model)
        generate(d / "m.tflite", d)
        x = rng.integers(-32768, 32768, (60, case[0])).astype(np.int16)
        _run(d, model, x, dtype=np.int16)
