"""TANH and LOGISTIC int16 (TFLM's sigmoid table with interpolation) against the tflite-micro
interpreter on all 65536 int16 inputs, for power-of-two and general input scales."""
from __future__ import annotations

import numpy as np
import pytest

from cpr_edge.codegen import generate
from cpr_edge.codegen.builder import TensorSpec, build_model
from cpr_edge.codegen.harness import build_host, build_qemu, qemu_outputs, run_host, run_qemu, tflm_outputs
from cpr_edge.errors import CprError

ALL = np.arange(-32768, 32768, dtype=np.int16).reshape(-1, 256)  # 256 inputs per invoke
SCALES = {"pot-2^-12": 2.0 ** -12, "pot-2^-11": 2.0 ** -11, "general-2.9e-4": 2.918494283221662e-4,
          "general-1e-5": 1e-5, "general-0.05": 0.05}


def one_op(op: str, in_scale: float, out_scale: float = 2.0 ** -15) -> bytes:
    return build_model(op, [TensorSpec((1, 256), "int16", [in_scale], [0]),
                            TensorSpec((1, 256), "int16", [out_scale], [0])], [0], [1])


@pytest.mark.parametrize("op", ["TANH", "LOGISTIC"])
@pytest.mark.parametrize("scale", list(SCALES), ids=list(SCALES))
def test_sigmoid16_all_inputs_match_tflm(tmp_path, op, scale):
    model = one_op(op, SCALES[scale])
    (tmp_path / "m.tflite").write_bytes(model)
    generate(tmp_path / "m.tflite", tmp_path)
    want = tflm_outputs(model, ALL)
    assert len(np.unique(want)) > 100  # the table and its interpolation are exercised
    np.testing.assert_array_equal(run_host(build_host(tmp_path), ALL, dtype=np.int16), want)


def test_sigmoid16_refuses_what_tflm_refuses(tmp_path):
    (tmp_path / "m.tflite").write_bytes(one_op("TANH", 2.0 ** -12, out_scale=2.0 ** -14))
    with pytest.raises(CprError, match=r"^TANH \(operator 0\): TFLM's int16 kernel needs output scale 2\^-15"):
        generate(tmp_path / "m.tflite", tmp_path)


@pytest.mark.qemu
def test_sigmoid16_qemu_m4_matches_tflm(tmp_path):
    for op in ("TANH", "LOGISTIC"):
        d = tmp_path / op
        d.mkdir()
        model = one_op(op, SCALES["general-2.9e-4"])
        (d / "m.tflite").write_bytes(model)
        generate(d / "m.tflite", d)
        x = ALL[::8]  # 8192 inputs across the whole range
        got = qemu_outputs(run_qemu(build_qemu(d, x)), len(x), dtype=np.int16)
        np.testing.assert_array_equal(got, tflm_outputs(model, x), err_msg=op)
