"""16x8 models (int16 activations, int8 weights) in the real HIL firmware on every board.

A standardized 16x8 export of a small agent is built by ``cpr_edge.firmware_build.build_firmware`` for
every board definition; each emulated board boots in QEMU and its INFER actions must equal, bit
for bit, the host tflite-micro reference (``cpr_edge.hil.reference.Int8Reference``: export.json's
prescale, int16 quantisation, TFLM) on a few hundred observations. A model whose int16
activations do not fit a board's RAM is refused in one line and leaves nothing behind.
"""
from __future__ import annotations

import numpy as np
import pytest

from cpr_edge.boards import list_boards, load_board

EMULATED = [b for b in list_boards() if load_board(b).emulated]
TASK = "cartpole-swingup"


@pytest.fixture(scope="module")
def export16(make_checkpoint, tmp_path_factory):
    from cpr_edge.export.pipeline import export_checkpoint

    root = tmp_path_factory.mktemp("fw16")
    ck = make_checkpoint(root / "ck.pt", seed=3)
    info = export_checkpoint(ck, root / "model", activations="int16", prescale="standardize")
    return ck, root / "model", info


SMALL_FLASH_BYTES = 128 * 1024
"""The 16x8 image of this model is about 104 KB: a board with less flash (bluepill-f103c8,
64 KB) must refuse it."""


@pytest.fixture(scope="module")
def builds16(export16, tmp_path_factory):
    """``{board: build result}`` for every board definition, real boards included (built, not
    run), except those with less than SMALL_FLASH_BYTES of flash: ``{board: CprError}`` there."""
    from cpr_edge.errors import CprError
    from cpr_edge.firmware_build import build_firmware

    _, model, _ = export16
    builds = {}
    for b in list_boards():
        try:
            builds[b] = build_firmware(b, model, model / "firmware" / b)
        except CprError as e:
            if load_board(b).flash_size >= SMALL_FLASH_BYTES:
                raise
            builds[b] = e
    return builds


def _observations(ck, info, n_replay=240, n_random=60):
    """Replay observations (the states the controller sees) spread over both episodes, wide
    random ones in the prescaled space (negative ELU inputs, large activations) and two that
    saturate the int16 input at both ends."""
    from cpr_edge.agents.checkpoint import load_checkpoint

    obs = load_checkpoint(ck).replay["obs"].reshape(-1, info["obs_dim"]).astype(np.float32)
    replay = obs[np.linspace(0, len(obs) - 1, n_replay).astype(int)]
    offset = np.asarray(info["input"]["offset"], np.float32)
    gain = np.asarray(info["input"]["gain"], np.float32)
    rng = np.random.default_rng(7)
    wide = (offset + rng.normal(0, 3, (n_random, info["obs_dim"])) / gain).astype(np.float32)
    extremes = np.stack([np.full(info["obs_dim"], 1e6, np.float32), np.full(info["obs_dim"], -1e6, np.float32)])
    return np.concatenate([replay, wide, extremes])


def test_16x8_firmware_builds_for_every_board(export16, builds16):
    _, model, info = export16
    assert info["activations"] == "int16" and info["input_prescale"] == "standardize"
    for board, res in builds16.items():
        if load_board(board).flash_size < SMALL_FLASH_BYTES:  # refused in one line, nothing written
            msg = str(res)
            assert msg.startswith(f"the model does not fit {board}: flash needs") and "\n" not in msg, msg
            assert not (model / "firmware" / board).exists()
            continue
        header = (model / "firmware" / board / "model" / "model.h").read_text()
        assert "typedef int16_t MODEL_INPUT_T;" in header and "typedef int16_t MODEL_OUTPUT_T;" in header
        mem = res["memory"]
        assert mem["fits"] and mem["model_sha256"] == info["sha256"]
        # int16 activations: the arena holds two bytes per element
        assert mem["ram"]["activations"] % 2 == 0 and mem["ram"]["activations"] >= 2 * 256


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("board", EMULATED)
def test_16x8_hil_infer_bit_exact_to_tflm(board, export16, builds16):
    from cpr_edge.hil.reference import Int8Reference, dequantize, quantize
    from cpr_edge.hil.session import QemuSession

    ck, model, info = export16
    ref = Int8Reference(model)
    assert ref.input_q.dtype == "int16" and ref.output_q.dtype == "int16"
    obs = _observations(ck, info)
    want = np.stack([ref(o) for o in obs])
    assert len(np.unique(want)) > 150  # int16 output: the actions are not a handful of levels
    # the prescale changes the actions of this model: a board that skipped it would fail here
    raw = []
    for o in obs[:40]:
        ref.interp.set_input(quantize(o, ref.input_q).reshape(ref.in_shape), 0)
        ref.interp.invoke()
        raw.append(dequantize(np.asarray(ref.interp.get_output(0)).reshape(-1), ref.output_q))
    assert np.any(np.stack(raw) != want[:40])
    with QemuSession(load_board(board), builds16[board]["elf"], info["sha256"]) as s:
        ref.check_hello(s.hello)
        got = np.stack([s.link.infer(o)[0] for o in obs])
        stats = s.link.stats()
    assert got.tobytes() == want.astype(np.float32).tobytes()  # bit-exact, not within an LSB
    assert stats["infers"] == len(obs)


@pytest.mark.qemu
@pytest.mark.slow
def test_16x8_closed_loop_on_board_equals_host_tflm(export16, builds16):
    from cpr_edge.hil.closed_loop import board_episodes, host_episode
    from cpr_edge.hil.reference import Int8Reference
    from cpr_edge.hil.session import QemuSession

    _, model, info = export16
    board = "qemu-mps2-an386"
    ref = Int8Reference(model)
    with QemuSession(load_board(board), builds16[board]["elf"], info["sha256"]) as s:
        got = board_episodes("board_16x8", s, TASK, [10_001], reference=ref, max_lsb=0)[0]
    host = host_episode("host_tflm_16x8", ref, TASK, 10_001)
    assert got.failed is None and got.steps == host.steps
    assert np.array_equal(got.actions, host.actions) and got.ret == host.ret


@pytest.mark.slow
def test_16x8_model_too_big_for_board_ram_is_refused_in_one_line(make_checkpoint, tmp_path):
    """A 33 000-wide encoder layer: its int16 output and the ELU island's int16 output are
    live together (132 000 bytes), more than the 128 KB of the Netduino Plus 2 before any
    stack (which is sized from measurement: about 1.2 KB); the int8 form of the same model
    would need half. The 4 MB MPS2 board holds it."""
    from cpr_edge.firmware_build import build_firmware
    from cpr_edge.errors import CprError
    from cpr_edge.export.pipeline import export_checkpoint

    ck = make_checkpoint(tmp_path / "wide.pt", seed=3, encoder=[33000], latent_dim=8, pi=[32, 32])
    model = tmp_path / "model"
    export_checkpoint(ck, model, activations="int16")
    out = tmp_path / "fw" / "qemu-mps2-an386"
    assert build_firmware("qemu-mps2-an386", model, out)["memory"]["ram"]["activations"] >= 132_000
    out = tmp_path / "fw" / "qemu-netduinoplus2"
    with pytest.raises(CprError) as e:
        build_firmware("qemu-netduinoplus2", model, out)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("the model does not fit qemu-netduinoplus2: RAM needs")
    assert "has 131072" in msg and "activations 132000" in msg
    assert not out.exists()


@pytest.mark.qemu
@pytest.mark.slow
def test_16x8_invoke_stack_probe_and_model_bench_image(export16, builds16, tmp_path):
    """The measuring images take the model's I/O types (int16 buffers for 16x8): the stack
    probe of benchmarks/memory_vs_tflm.py and the whole-model image of benchmarks/kernel_speed.py
    (compiled with -Werror=incompatible-pointer-types) build and run for a 16x8 model."""
    from cpr_edge.firmware_build.probe import measure_invoke_stack
    from cpr_edge.codegen import generate, runtime_defines, runtime_include_dir, runtime_sources
    from cpr_edge.codegen.harness import arm_compile, run_qemu

    _, model, _ = export16
    probe = measure_invoke_stack("qemu-mps2-an386", model, tmp_path / "probe")
    assert probe["activation_bytes"] == builds16["qemu-mps2-an386"]["memory"]["ram"]["activations"]
    assert 0 < probe["invoke_stack_bytes"] < 8192
    gen = tmp_path / "gen"
    generate(model / "model_int8.tflite", gen)
    elf = tmp_path / "bench_model.elf"
    arm_compile(elf, [gen / "model.c", runtime_include_dir() / "tests" / "qemu_bench_model.c",
                      *runtime_sources("dsp_rotate")], [gen], runtime_defines("dsp_rotate") + ["-DBENCH_REPS=3"])
    lines = dict(ln.split(None, 1) for ln in run_qemu(elf, icount=True).splitlines() if ln.strip())
    assert int(lines["CAL"]) > 0 and int(lines["MODEL"].split()[1]) > 0
