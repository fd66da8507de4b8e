"""QUANTIZE between int8 and int16 (TFLM Requantize) against the tflite-micro interpreter on
every input value."""
from __future__ import annotations

import numpy as np
import pytest

from cpr_edge.codegen import generate
from cpr_edge.codegen.builder import TensorSpec, build_model
from cpr_edge.codegen.harness import build_host, run_host, tflm_outputs

CASES = [("int16", "int8", 3e-4, 0, 0.02, -5), ("int8", "int16", 0.02, 7, 3e-4, 0),
         ("int16", "int16", 3e-4, 0, 1.7e-4, 0)]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_requantize_all_inputs_match_tflm(tmp_path, case):
    src, dst, s_in, zp_in, s_out, zp_out = case
    lo, hi = (-128, 128) if src == "int8" else (-32768, 32768)
    model = build_model("QUANTIZE", [TensorSpec((1, 256), src, [s_in], [zp_in]),
                                     TensorSpec((1, 256), dst, [s_out], [zp_out])], [0], [1])
    (tmp_path / "m.tflite").write_bytes(model)
    generate(tmp_path / "m.tflite", tmp_path)
    x = np.arange(lo, hi).astype(src).reshape(-1, 256)  # every input value
    want = tflm_outputs(model, x)
    assert len(np.unique(want)) > 100
    got = run_host(build_host(tmp_path), x, dtype=np.dtype(src), out_dtype=np.dtype(dst))
    np.testing.assert_array_equal(got, want)
