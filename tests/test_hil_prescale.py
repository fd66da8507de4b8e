"""The input prescale of export.json (``input.offset`` / ``input.gain``) on the board: the
generated ``model_encode_input`` applies it, and a standardized model on the board gives exactly
the actions (and the closed-loop return) of host TFLM with the prescale applied."""
from __future__ import annotations

import numpy as np
import pytest

BOARD = "qemu-mps2-an386"
TASK = "cartpole-swingup"


@pytest.fixture(scope="module")
def standardized_model(tiny_checkpoint, tmp_path_factory):
    from cpr_edge.firmware_build import build_firmware
    from cpr_edge.export.pipeline import export_checkpoint

    model = tmp_path_factory.mktemp("prescale") / "model"
    info = export_checkpoint(tiny_checkpoint, model, prescale="standardize")
    assert info["input_prescale"] == "standardize"
    build_firmware(BOARD, model, model / "firmware" / BOARD)
    return model, info


def _observations(tiny_checkpoint, n=64):
    from cpr_edge.agents.checkpoint import load_checkpoint

    obs = load_checkpoint(tiny_checkpoint).replay["obs"].reshape(-1, 5).astype(np.float32)
    return obs[np.linspace(0, len(obs) - 1, n).astype(int)]


def test_generated_code_carries_the_prescale(standardized_model):
    model, info = standardized_model
    src = (model / "firmware" / BOARD / "model" / "model.c").read_text()
    header = (model / "firmware" / BOARD / "model" / "model.h").read_text()
    assert "typedef int8_t MODEL_INPUT_T;" in header and "typedef int8_t MODEL_OUTPUT_T;" in header
    assert "void model_encode_input(const float *obs, MODEL_INPUT_T *q);" in header
    for v in info["input"]["gain"][:2] + info["input"]["offset"][:2]:
        assert float(np.float32(v)).hex() + "f" in src


def test_standardized_model_on_board_equals_host_tflm_with_prescale(standardized_model, tiny_checkpoint):
    from cpr_edge.boards import load_board
    from cpr_edge.hil.closed_loop import board_episodes, host_episode
    from cpr_edge.hil.reference import Int8Reference, dequantize, quantize
    from cpr_edge.hil.session import QemuSession, sha256_file

    model, info = standardized_model
    ref = Int8Reference(model)
    obs = _observations(tiny_checkpoint)
    # the prescale matters for this model: without it TFLM gives other actions
    no_prescale = []
    for o in obs:
        ref.interp.set_input(quantize(o, ref.input_q).reshape(ref.in_shape), 0)
        ref.interp.invoke()
        no_prescale.append(dequantize(np.asarray(ref.interp.get_output(0)).reshape(-1), ref.output_q))
    want = np.stack([ref(o) for o in obs])
    assert np.any(np.stack(no_prescale) != want)
    with QemuSession(load_board(BOARD), model / "firmware" / BOARD / "firmware.elf",
                     sha256_file(model / "model_int8.tflite")) as s:
        ref.check_hello(s.hello)
        got = np.stack([s.link.infer(o)[0] for o in obs])
        assert np.array_equal(got, want)  # bit-exact, not within an LSB
        board = board_episodes("pruned_board", s, TASK, [10_000], reference=ref, max_lsb=0)[0]
    host = host_episode("host_tflm", ref, TASK, 10_000)
    assert board.failed is None and board.steps == host.steps
    assert np.array_equal(board.actions, host.actions)
    assert board.ret == host.ret
