"""The 16x8 float ELU island DEQUANTIZE(int16) -> ELU -> QUANTIZE(int16) as one kernel, the
integer one (elu_island_s16_int.c, chosen where its fixed point covers the scales) and the
float one (elu_island_s16.c, the fallback): each equal to the tflite-micro interpreter on all
65536 int16 inputs, host, Cortex-M4 and the soft-float Cortex-M0."""
from __future__ import annotations

import numpy as np
import pytest

from cpr_edge.codegen import elu16, generate
from cpr_edge.codegen.builder import OpSpec, TensorSpec, build_graph
from cpr_edge.codegen.harness import (TARGETS, build_host, build_qemu, qemu_outputs, run_host, run_qemu,
                                      tflm_outputs)

ALL = np.arange(-32768, 32768, dtype=np.int16).reshape(-1, 256)
CASES = {"cartpole-fc0": (1.1442447430454195e-4, 1.0452911374159157e-4),
         "wide-in": (1e-3, 2e-4), "narrow-out": (5e-5, 3e-5), "coarse": (0.01, 0.004)}
KERNELS = ("integer", "float")


@pytest.fixture(params=KERNELS)
def kernel(request, monkeypatch):
    """Which island kernel the generator emits: "float" takes the fallback path, as for
    scales outside the integer kernel's fixed point."""
    if request.param == "float":
        monkeypatch.setattr(elu16, "integer_island", lambda *a, **k: None)
    return request.param


def island(s_in: float, s_out: float) -> bytes:
    tensors = [TensorSpec((1, 256), "int16", [s_in], [0]), TensorSpec((1, 256), "float32"),
               TensorSpec((1, 256), "float32"), TensorSpec((1, 256), "int16", [s_out], [0])]
    return build_graph(tensors, [OpSpec("DEQUANTIZE", [0], [1], None, 2), OpSpec("ELU", [1], [2]),
                                 OpSpec("QUANTIZE", [2], [3], None, 2)], [0], [3])


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_elu_island_all_inputs_match_tflm(tmp_path, case, kernel):
    model = island(*CASES[case])
    (tmp_path / "m.tflite").write_bytes(model)
    info = generate(tmp_path / "m.tflite", tmp_path)
    assert [s["op"] for s in info["float_islands"]] == ["ELU"] and len(info["layers"]) == 1
    summary = info["float_islands"][0]
    assert summary["kernel"] == kernel
    if kernel == "float":
        assert summary["exceptions"] < 64  # the float32 expm1 is close to libm's
    elif case != "coarse":  # coarse: s_in / s_out = 2.5, every odd input an exact tie
        # only inputs within about 1e-3 output steps of a rounding boundary differ
        assert summary["exceptions"] < 64 and summary["inputs_looked_up"] < 256
    want = tflm_outputs(model, ALL)
    for variant in ("reference", "dsp_rotate"):
        np.testing.assert_array_equal(run_host(build_host(tmp_path, variant), ALL, dtype=np.int16), want)


@pytest.mark.qemu
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m0"])
def test_elu_island_qemu_matches_tflm(tmp_path, cpu, kernel):
    """On the M4F's FPU and on the soft-float Cortex-M0 (libgcc's float routines): the float
    island uses only IEEE basic operations and no libm, the integer one no float at all, so
    both give the host's results."""
    model = island(*CASES["cartpole-fc0"])
    (tmp_path / "m.tflite").write_bytes(model)
    generate(tmp_path / "m.tflite", tmp_path)
    x = ALL[::4]
    got = qemu_outputs(run_qemu(build_qemu(tmp_path, x, cpu=cpu), machine=TARGETS[cpu][1]), len(x),
                       dtype=np.int16)
    np.testing.assert_array_equal(got, tflm_outputs(model, x))
