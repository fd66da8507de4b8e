"""What every board running the HIL firmware must do (docs/protocol.md)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cpr_edge.hil.link import INFER, LinkError, encode_frame


def _export(model_dir):
    return json.loads((model_dir / "export.json").read_text())


def test_hello_describes_board_and_model(session, board, model_dir):
    h = session.hello
    info = _export(model_dir)
    assert h.protocol == 2 and h.board_id == board.name
    assert h.counter_unit == board.counter_unit and h.clock_hz == board.clock_hz
    assert h.model_sha256 == info["sha256"]
    assert (h.input_len, h.output_len) == (info["obs_dim"], info["act_dim"])
    assert h.input_scale == pytest.approx(info["input"]["scale"], rel=1e-6)
    assert h.output_zero_point == info["output"]["zero_point"]


def test_actions_match_tflm(session, model_dir):
    """Observations from the checkpoint's replay, and extremes: the board's action is the
    tflite-micro interpreter's, bit for bit (firmware built by this tool)."""
    from cpr_edge.agents.checkpoint import load_checkpoint
    from cpr_edge.hil.closed_loop import Int8Reference

    ck = load_checkpoint(_export(model_dir)["checkpoint"]["path"])
    obs = ck.replay_obs()[:: max(1, len(ck.replay_obs()) // 150)][:150]
    obs = np.concatenate([obs, 1e3 * np.ones((1, obs.shape[1])), -1e3 * np.ones((1, obs.shape[1]))]).astype(np.float32)
    ref = Int8Reference(model_dir)
    worst = max(float(np.max(np.abs(session.link.infer(o)[0] - ref(o)))) for o in obs)
    assert worst == 0.0


def test_rejects_bad_input_and_keeps_answering(session):
    link = session.link
    with pytest.raises(LinkError, match="BAD_VALUE"):
        link.infer(np.full(session.hello.input_len, np.nan, np.float32))
    before = link.stats()
    # a frame with a bad CRC, a truncated one and garbage: none is acted upon
    bad = bytearray(encode_frame(INFER, 200, np.ones(session.hello.input_len, "<f4").tobytes()))
    bad[-1] ^= 0x55
    link.port.write(bytes(bad) + b"\x00\xa5\x02\x05" + bytes(range(40)))
    link.port.flush()
    assert link.hello().board_id == session.hello.board_id  # still answers
    after = link.stats()
    assert after["infers"] == before["infers"]
    assert after["crc_errors"] > before["crc_errors"]


def test_latency_and_stack(session, model_dir):
    from cpr_edge.agents.checkpoint import load_checkpoint

    spec = load_checkpoint(_export(model_dir)["checkpoint"]["path"]).spec
    b = session.link.bench(50)
    worst_s = b["max"] / session.hello.clock_hz
    assert 0 < b["min"] <= b["max"] and worst_s <= spec["control_timestep"]
    st = session.link.stats()
    assert 0 < st["stack_used"] < st["stack_size"]


def test_closed_loop_episode(session, model_dir, request):
    from cpr_edge.agents.checkpoint import load_checkpoint
    from cpr_edge.hil.closed_loop import Int8Reference, board_episode, eval_seeds

    ck = load_checkpoint(_export(model_dir)["checkpoint"]["path"])
    ref = Int8Reference(model_dir)
    for seed in eval_seeds(request.config.getoption("--episodes")):
        e = board_episode("board", session, ck.task, seed, reference=ref, max_lsb=0)
        assert e.failed is None, e.failed
        assert e.steps == ck.spec["episode_length"] and np.all(e.invoke_counts > 0)
