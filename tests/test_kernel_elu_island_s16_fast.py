"""The 32-bit integer ELU island (optimized/elu_island_s16_int_fast.c, CPR_ELU16_FAST: the
dsp_rotate, mve and unrolled builds) against the tflite-micro interpreter on all 65536 int16
inputs: random scales and the cases its windows and paths distinguish (s_in = s_out, stored
inputs on one side or both, a window that takes every input), on the host, on the Cortex-M4,
the Cortex-M3 and the Cortex-M0 (64-bit products in libgcc); and its constants' preconditions."""
from __future__ import annotations

import numpy as np
import pytest

from cpr_edge.codegen import elu16_int, generate
from cpr_edge.codegen.harness import TARGETS, build_host, build_qemu, qemu_outputs, run_host, run_qemu, tflm_outputs
from test_kernel_elu_island_s16 import ALL, island

_rng = np.random.default_rng(14)
RANDOM = {f"random{i}": (float(10 ** _rng.uniform(-4.5, -2.5)), float(10 ** _rng.uniform(-4.5, -3.5)))
          for i in range(3)}
CASES = {"cartpole-fc0": (1.1442447430454195e-4, 1.0452911374159157e-4),
         "identity": (1.2e-4, 1.2e-4),  # s_in = s_out: the positive side is q itself
         "narrow-out": (5e-5, 3e-5),
         "coarse": (0.01, 0.004),       # every odd input a tie: windows take every input
         **RANDOM}


def _generated(tmp_path, case: str) -> tuple[bytes, dict]:
    model = island(*CASES[case])
    (tmp_path / "m.tflite").write_bytes(model)
    return model, generate(tmp_path / "m.tflite", tmp_path)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_fast_island_all_inputs_match_tflm_host(tmp_path, case):
    model, info = _generated(tmp_path, case)
    summary = info["float_islands"][0]
    assert summary["kernel"] == "integer" and summary["fast"], summary
    want = tflm_outputs(model, ALL)
    for variant in ("dsp_rotate", "unrolled"):  # both compile the fast kernel
        got = run_host(build_host(tmp_path, variant), ALL, dtype=np.int16)
        np.testing.assert_array_equal(got, want, err_msg=f"{case} {variant}")
    assert "cpr_elu_island_s16_int_fast(" in (tmp_path / "model.c").read_text()


@pytest.mark.qemu
@pytest.mark.parametrize("cpu,variant", [("cortex-m4", "dsp_rotate"), ("cortex-m3", "unrolled"),
                                        ("cortex-m0", "unrolled")])
@pytest.mark.parametrize("case", ["cartpole-fc0", "coarse", "random0"])
def test_fast_island_qemu_matches_tflm(tmp_path, cpu, variant, case):
    model, _ = _generated(tmp_path, case)
    elf = build_qemu(tmp_path, ALL, variant, cpu=cpu)
    got = qemu_outputs(run_qemu(elf, machine=TARGETS[cpu][1]), len(ALL), dtype=np.int16)
    np.testing.assert_array_equal(got, tflm_outputs(model, ALL))


def test_fast_constants_preconditions_and_windows():
    t = elu16_int.tables(1.1442447430454195e-4, 1.0452911374159157e-4)
    t.update(pos_guard=-1, neg_guard=-1)
    f = elu16_int.fast_constants(t, 0)
    assert f["check"] == 0 and f["pos_add"] == 1 << 31 and f["hi2"].size == 256
    assert int(f["hi2"].max()) < 1 << 32 and f["hi2"][0] == 2 * t["neg_full"]
    assert elu16_int.fast_constants(t, 3) is None                    # input zero point
    assert elu16_int.fast_constants({**t, "pos_shift": 33}, 0) is None
    assert elu16_int.fast_constants({**t, "neg_shift": 32}, 0) is None
    g = elu16_int.fast_constants({**t, "pos_guard": 5, "neg_guard": 7}, 0)
    assert g["check"] == 3 and g["pos_w"] == 2 * g["pos_g"] and g["pos_g"] == 5 << g["pos_pre"]
    assert g["neg_w"] == (14 << (32 - t["neg_shift"])) and g["neg_add"] == t["neg_full"] + (1 << (t["neg_shift"] - 1)) + 7
    every = elu16_int.fast_constants({**t, "neg_guard": 1 << (t["neg_shift"] - 1)}, 0)
    assert (every["neg_g"], every["neg_w"]) == (0, 0xFFFFFFFF)
