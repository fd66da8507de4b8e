"""The 16x8 mode end to end: a real export of a small agent with int16 activations converts,
runs in TFLM, and its generated C equals TFLM bit for bit on the host and in QEMU on the
Cortex-M4 (mps2-an386) and Cortex-M7 (mps2-an500); unsupported int16 ops are refused in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cpr_edge.codegen import generate
from cpr_edge.codegen.builder import TensorSpec, build_model
from cpr_edge.codegen.harness import TARGETS, build_host, build_qemu, qemu_outputs, run_host, run_qemu, tflm_outputs
from cpr_edge.errors import CprError
from cpr_edge.export import flatbuffer
from cpr_edge.export.tflm_ops import check_ops


@pytest.fixture(scope="module")
def export16(make_checkpoint, tmp_path_factory):
    from cpr_edge.export.pipeline import export_checkpoint

    root = tmp_path_factory.mktemp("x16")
    ck = make_checkpoint(root / "ck.pt", seed=3)
    export_checkpoint(ck, root / "model", activations="int16")
    return root / "model"


def test_export_16x8_records_mode_and_int16_io(export16):
    info = json.loads((export16 / "export.json").read_text())
    assert info["activations"] == "int16"
    assert info["input"]["type"] == "INT16" and info["output"]["type"] == "INT16"
    assert info["input"]["zero_point"] == 0 and info["output"]["scale"] == 2.0 ** -15
    assert info["ops"].count("ELU") == 3 and info["float_ops"].count("ELU") == 3
    assert info["ops"][-1] == "TANH" and not info["all_int8"]
    t = {r["index"]: r for r in info["tensors"]}
    assert {t[i]["type"] for i in t if "bias" in t[i]["name"].lower() or t[i]["type"] == "INT64"} >= {"INT64"}
    # int16 activations: far finer than int8's 1/128 output LSB
    assert info["error"]["max_abs"] < 0.05 and info["tflm"]["arena_bytes"] > 0


def _inputs(export16, n=200):
    info = json.loads((export16 / "export.json").read_text())
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, (n, info["obs_dim"])).astype(np.float32)
    q = np.clip(np.round(x / info["input"]["scale"]), -32768, 32767).astype(np.int16)
    q[0], q[1] = 32767, -32768
    return q


def test_export_16x8_generated_code_bit_exact_on_host(export16, tmp_path):
    model = (export16 / "model_int8.tflite").read_bytes()
    info = generate(export16 / "model_int8.tflite", tmp_path)
    assert [s["op"] for s in info["float_islands"]] == ["ELU"] * 3
    x = _inputs(export16)
    want = tflm_outputs(model, x)
    assert want.dtype == np.int16 and len(np.unique(want)) > 20
    for variant in ("reference", "dsp", "dsp_rotate"):
        np.testing.assert_array_equal(run_host(build_host(tmp_path, variant), x, dtype=np.int16), want)


@pytest.mark.qemu
@pytest.mark.parametrize("cpu,variant", [("cortex-m4", "dsp_rotate"), ("cortex-m4", "reference"),
                                         ("cortex-m7", "dsp_rotate")])
def test_export_16x8_bit_exact_in_qemu(export16, tmp_path, cpu, variant):
    model = (export16 / "model_int8.tflite").read_bytes()
    generate(export16 / "model_int8.tflite", tmp_path)
    x = _inputs(export16, 60)
    got = qemu_outputs(run_qemu(build_qemu(tmp_path, x, variant, cpu=cpu), machine=TARGETS[cpu][1]),
                       len(x), dtype=np.int16)
    np.testing.assert_array_equal(got, tflm_outputs(model, x))


def _one_op(op: str) -> bytes:
    return build_model(op, [TensorSpec((1, 8), "int16", [2.0 ** -10], [0]),
                            TensorSpec((1, 8), "int16", [2.0 ** -10], [0])], [0], [1])


def test_unsupported_int16_op_refused_in_one_line(tmp_path):
    # the exporter's op check: TFLM has no int16 HARD_SWISH
    model = flatbuffer.load_model(_one_op("HARD_SWISH"))
    with pytest.raises(CprError) as e:
        check_ops(model, allow_float=False, activations="int16")
    assert "HARD_SWISH" in str(e.value) and "int16" in str(e.value) and "\n" not in str(e.value)
    # the code generator: an int16 op it has no kernel for (TFLM has int16 RELU)
    (tmp_path / "m.tflite").write_bytes(_one_op("RELU"))
    with pytest.raises(CprError, match=r"^unsupported op RELU on int16 tensors \(operator 0\)") as e:
        generate(tmp_path / "m.tflite", tmp_path / "gen")
    assert "\n" not in str(e.value) and not (tmp_path / "gen" / "model.c").exists()


def test_float_island_other_than_elu_refused_in_16x8(export16):
    """Only DEQUANTIZE -> ELU -> QUANTIZE islands are exact; a float op elsewhere is named."""
    model = flatbuffer.load_model((export16 / "model_int8.tflite").read_bytes())
    sg = model.subgraphs[0]
    elu = next(k for k, op in enumerate(sg.operators) if flatbuffer.op_name(model, op) == "ELU")
    del sg.operators[elu + 1]  # the island no longer ends in QUANTIZE(int16)
    with pytest.raises(CprError, match=r"float island left after the 16x8 conversion .*ELU \(op \d+\)"):
        check_ops(model, allow_float=False, activations="int16")
