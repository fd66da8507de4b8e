"""Code generator: model.h contract, summary, activation plan, refusals, atomic writes."""
from __future__ import annotations

import hashlib
import re
import subprocess

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from cpr_edge.codegen import generate, runtime_defines, runtime_include_dir, runtime_sources
from cpr_edge.codegen.builder import OpSpec, TensorSpec, build_graph, build_model
from cpr_edge.codegen.harness import build_host, run_host, tflm_outputs
from cpr_edge.codegen.lower import interleave4
from cpr_edge.codegen.planner import plan
from cpr_edge.errors import CprError


def mlp_model(rng, widths=(6, 32, 48, 32, 3)) -> bytes:
    """FC -> ELU -> FC -> ELU -> ... -> FC -> TANH, per-channel weights."""
    tensors = [TensorSpec((1, widths[0]), "int8", [0.04], [2])]
    ops = []
    x = 0
    for i, (k, n) in enumerate(zip(widths[:-1], widths[1:])):
        ws = list(rng.uniform(0.003, 0.02, n))
        xs = tensors[x].scale[0]
        tensors += [TensorSpec((n, k), "int8", ws, [0] * n, rng.integers(-127, 128, (n, k), dtype=np.int8)),
                    TensorSpec((n,), "int32", [xs * s for s in ws], [0] * n,
                               rng.integers(-2000, 2000, n).astype(np.int32)),
                    TensorSpec((1, n), "int8", [float(rng.uniform(0.03, 0.1))], [int(rng.integers(-30, 30))])]
        w, b, y = len(tensors) - 3, len(tensors) - 2, len(tensors) - 1
        ops.append(OpSpec("FULLY_CONNECTED", [x, w, b], [y], schema.FullyConnectedOptionsT()))
        last = i == len(widths) - 2
        tensors.append(TensorSpec((1, n), "int8", [1 / 128] if last else [0.05], [0] if last else [-10]))
        ops.append(OpSpec("TANH" if last else "ELU", [y], [len(tensors) - 1]))
        x = len(tensors) - 1
    return build_graph(tensors, ops, [0], [x])


@pytest.fixture
def mlp(tmp_path):
    model = mlp_model(np.random.default_rng(0))
    path = tmp_path / "model_int8.tflite"
    path.write_bytes(model)
    return path


def test_summary_and_model_h_contract(mlp, tmp_path):
    out = tmp_path / "gen"
    info = generate(mlp, out)
    assert info["sha256"] == hashlib.sha256(mlp.read_bytes()).hexdigest()
    assert info["ops"] == ["FULLY_CONNECTED", "ELU"] * 3 + ["FULLY_CONNECTED", "TANH"]
    assert [l["macs"] for l in info["layers"] if l["op"] == "FULLY_CONNECTED"] == [192, 1536, 1536, 96]
    assert info["macs_total"] == 192 + 1536 + 1536 + 96
    assert info["input"]["len"] == 6 and info["output"]["len"] == 3
    assert info["input"]["zero_point"] == 2 and info["output"]["scale"] == pytest.approx(1 / 128)
    # weights + biases + multipliers + shifts + 4 tables
    n_w = 6 * 32 + 32 * 48 + 48 * 32 + 32 * 3
    n_ch = 32 + 48 + 32 + 3
    assert info["weight_bytes"] == n_w + 3 * 4 * n_ch + 4 * 256
    h = (out / "model.h").read_text()
    for decl in ["#define MODEL_INPUT_LEN 6", "#define MODEL_OUTPUT_LEN 3",
                 f"#define MODEL_ACTIVATION_BYTES {info['activation_bytes']}",
                 "extern const float model_input_scale;", "extern const int32_t model_input_zero_point;",
                 "extern const float model_output_scale;", "extern const int32_t model_output_zero_point;",
                 "extern const uint8_t model_sha256[32];", "extern const char model_sha256_hex[65];",
                 "int model_invoke(const int8_t *in, int8_t *out);"]:
        assert decl in h
    assert "model_invoke_float" not in h  # int8 I/O
    c = (out / "model.c").read_text()
    assert f'model_sha256_hex[65] = "{info["sha256"]}"' in c
    assert re.search(r"static const int8_t fc0_weights\[192\]", c)  # weights are const (flash)
    assert (out / "codegen.json").exists()


def test_activation_plan_reuses_buffers(mlp, tmp_path):
    info = generate(mlp, tmp_path / "gen")
    # intermediates: FC and ELU outputs of widths 32, 48, 32 (the final TANH writes `out`)
    naive = 2 * (32 + 48 + 32) + 3
    assert info["activation_bytes"] <= 48 + 48 + 8  # two live buffers at a time, aligned
    assert info["activation_bytes"] < naive
    for p in info["plan"]:  # no two tensors alive at the same step share bytes
        for q in info["plan"]:
            if p is not q and p["first_step"] <= q["last_step"] and q["first_step"] <= p["last_step"]:
                assert p["offset"] + p["bytes"] <= q["offset"] or q["offset"] + q["bytes"] <= p["offset"]
    x = np.random.default_rng(1).integers(-128, 128, (200, 6), dtype=np.int8)
    np.testing.assert_array_equal(run_host(build_host(tmp_path / "gen"), x),
                                  tflm_outputs(mlp.read_bytes(), x))


def test_planner_places_overlapping_lifetimes_apart():
    placement, arena = plan({1: 100, 2: 50, 3: 100}, {1: (0, 1), 2: (1, 2), 3: (2, 3)})
    assert placement[1].offset == 0
    assert placement[3].offset == 0  # 1 is dead when 3 is born: same bytes
    assert placement[2].offset == 104  # alive with both: after them, 8-byte aligned
    assert arena == 160


def test_unsupported_op_is_refused_and_folder_untouched(mlp, tmp_path):
    out = tmp_path / "gen"
    generate(mlp, out)
    before = (out / "model.c").read_text()
    softmax = build_model("SOFTMAX", [TensorSpec((1, 8), "int8", [0.1], [0]),
                                      TensorSpec((1, 8), "int8", [1 / 256], [-128])], [0], [1],
                          schema.SoftmaxOptionsT())
    bad = tmp_path / "softmax.tflite"
    bad.write_bytes(softmax)
    with pytest.raises(CprError, match="unsupported op SOFTMAX") as err:
        generate(bad, out)
    assert "\n" not in str(err.value)
    assert (out / "model.c").read_text() == before


def test_float_op_in_the_middle_is_refused(tmp_path):
    model = build_graph([TensorSpec((1, 4), "float32"), TensorSpec((1, 4), "float32")],
                        [OpSpec("TANH", [0], [1])], [0], [1])
    (tmp_path / "f.tflite").write_bytes(model)
    with pytest.raises(CprError, match="QUANTIZE"):
        generate(tmp_path / "f.tflite", tmp_path / "gen")
    assert not (tmp_path / "gen").exists()


@pytest.mark.parametrize("content", [b"", b"not a flatbuffer at all", b"\x10\x00\x00\x00TFL3" + b"\xff" * 40])
def test_bad_files_give_one_line_errors(tmp_path, content):
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(CprError) as err:
        generate(path, tmp_path / "gen")
    assert "\n" not in str(err.value)
    with pytest.raises(CprError, match="cannot read"):
        generate(tmp_path / "missing.tflite", tmp_path / "gen")


def test_interleave4_matches_the_c_helper(tmp_path):
    """The generator's DSP weight layout equals cpr_fc_dsp_interleave() in C."""
    w = np.random.default_rng(2).integers(-128, 128, (11, 9), dtype=np.int8)
    src = tmp_path / "t.c"
    src.write_text(
        '#include <stdio.h>\n#include "cpr_runtime.h"\n'
        "int main(void){ int8_t w[99], o[99]; fread(w, 1, 99, stdin);"
        " cpr_fc_dsp_interleave(w, 9, 11, o); fwrite(o, 1, 99, stdout); return 0; }\n")
    exe = tmp_path / "t"
    subprocess.run(["gcc", "-std=c11", "-O2", *runtime_defines("dsp"), f"-I{runtime_include_dir()}",
                    str(src), *map(str, runtime_sources("dsp")), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], input=w.tobytes(), capture_output=True, check=True).stdout
    assert np.frombuffer(out, np.int8).tolist() == interleave4(w).tolist()


def test_runtime_sources_and_variants():
    ref = runtime_sources("reference")
    assert all(p.exists() and p.suffix == ".c" for p in ref)
    assert {p.name for p in ref} >= {"fully_connected.c", "lookup.c", "add.c", "mean.c", "quantize.c"}
    assert any(p.name == "fully_connected_dsp.c" for p in runtime_sources("dsp_rotate"))
    assert (runtime_include_dir() / "cpr_runtime.h").exists()
    assert runtime_defines("dsp_rotate") == ["-DCPR_FC_VARIANT_DSP_ROTATE"]
    with pytest.raises(CprError, match="unknown kernel variant"):
        runtime_sources("neon")


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7", "cortex-m33"])
def test_runtime_compiles_for_cortex_m(tmp_path, cpu):
    for variant in ("reference", "dsp", "dsp_rotate"):
        subprocess.run(["arm-none-eabi-gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                        f"-mcpu={cpu}", "-mthumb", *runtime_defines(variant),
                        f"-I{runtime_include_dir()}", "-c", *map(str, runtime_sources(variant))],
                       check=True, cwd=tmp_path)
        assert (tmp_path / "fully_connected.o").exists()


def test_reshapes_share_bytes_and_stay_exact(tmp_path):
    """FC -> RESHAPE -> TANH -> RESHAPE (graph output): reshapes emit no code; the last one
    makes TANH write straight into `out`."""
    rng = np.random.default_rng(4)

    def reshape_opts(shape):
        o = schema.ReshapeOptionsT()
        o.newShape = list(shape)
        return o

    tensors = [TensorSpec((1, 8), "int8", [0.05], [1]),
               TensorSpec((6, 8), "int8", [0.01], [0], rng.integers(-127, 128, (6, 8), dtype=np.int8)),
               TensorSpec((1, 6), "int8", [0.04], [-2]),
               TensorSpec((2,), "int32", data=np.array([2, 3], np.int32)),
               TensorSpec((2, 3), "int8", [0.04], [-2]),
               TensorSpec((2, 3), "int8", [1 / 128], [0]),
               TensorSpec((1,), "int32", data=np.array([6], np.int32)),
               TensorSpec((6,), "int8", [1 / 128], [0])]
    ops = [OpSpec("FULLY_CONNECTED", [0, 1, -1], [2], schema.FullyConnectedOptionsT()),
           OpSpec("RESHAPE", [2, 3], [4], reshape_opts((2, 3))),
           OpSpec("TANH", [4], [5]),
           OpSpec("RESHAPE", [5, 6], [7], reshape_opts((6,)))]
    model = build_graph(tensors, ops, [0], [7])
    (tmp_path / "m.tflite").write_bytes(model)
    info = generate(tmp_path / "m.tflite", tmp_path)
    c = (tmp_path / "model.c").read_text()
    assert "cpr_lookup_s8((arena + 0), 6, lut2_tanh, out);" in c
    assert info["activation_bytes"] == 8  # only the FC output (= first reshape) lives in the arena
    x = rng.integers(-128, 128, (200, 8), dtype=np.int8)
    np.testing.assert_array_equal(run_host(build_host(tmp_path), x), tflm_outputs(model, x))
