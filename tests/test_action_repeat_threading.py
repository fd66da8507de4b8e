"""A checkpoint trained at a non-default action repeat (``train --action-repeat``) is evaluated at
that repeat by pruning (prune, sweep cells, boundary) and in the HIL closed loop, not at the
task's default."""
from __future__ import annotations

import numpy as np
import pytest

from cpr_edge.agents.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def repeat4_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny cartpole-swingup checkpoint (default repeat 8) with the spec of a run at repeat 4."""
    from cpr_edge.envs import default_action_repeat, make_env

    ck = load_checkpoint(tiny_checkpoint)
    assert default_action_repeat(ck.task) == 8
    ck.spec = make_env(ck.task, 0, 4).spec.to_dict()
    assert (ck.spec["action_repeat"], ck.spec["episode_length"]) == (4, 250)
    path = tmp_path_factory.mktemp("repeat4") / "repeat4.pt"
    save_checkpoint(ck, path)
    return path


def test_prune_evaluates_at_the_checkpoints_repeat(repeat4_checkpoint):
    from cpr_edge.agents.evaluate import evaluate
    from cpr_edge.pruning.prune import prune_checkpoint
    from cpr_edge.pruning.sweep import unpruned_cell

    ck = load_checkpoint(repeat4_checkpoint)
    at4 = evaluate(ck.agent, ck.task, 1, "policy", 0, 4)
    at8 = evaluate(ck.agent, ck.task, 1, "policy", 0, 8)
    assert not np.isclose(at4[0], at8[0])  # the two repeats are told apart by the return
    new, info = prune_checkpoint(ck, "l1", 0.5, recover="none", eval_episodes=1, seed=0)
    assert info["return"]["per_episode"]["unpruned"] == pytest.approx(at4)
    assert info["return"]["per_episode"]["pruned"] == pytest.approx(
        evaluate(new.agent, ck.task, 1, "policy", 0, 4))
    assert new.spec["action_repeat"] == 4
    assert unpruned_cell(ck, 1, 0)["float"] == pytest.approx(at4)  # sweep and boundary's unpruned returns
    from cpr_edge.quant.sim_eval import quantized_returns

    assert unpruned_cell(ck, 1, 0, "int16")["quant"] == pytest.approx(  # sweep --quant's, at the same repeat
        quantized_returns(ck.agent, ck, ck.task, 1, 0, "int16", 4))


def test_hil_host_episode_and_board_lane_use_the_repeat(repeat4_checkpoint):
    from cpr_edge.hil.closed_loop import _Lane, host_episode
    from cpr_edge.hil.run import _policy

    ck, policy = _policy(repeat4_checkpoint)
    e = host_episode("pruned_float_host", policy, ck.task, 7, ck.spec["action_repeat"])
    assert e.steps == 250 and e.obs.shape == (250, ck.spec["obs_dim"])
    assert host_episode("x", policy, ck.task, 7).steps == 125  # the task's default, for comparison
    lane = _Lane("pruned_board", ck.task, 7, action_repeat=ck.spec["action_repeat"])
    assert (lane.env.action_repeat, lane.env.spec.episode_length) == (4, 250)
    assert lane.env.spec.control_timestep == pytest.approx(ck.spec["control_timestep"])


@pytest.mark.qemu
@pytest.mark.slow
def test_hil_run_on_qemu_at_the_checkpoints_repeat(repeat4_checkpoint, tmp_path, capsys):
    """``cpr-edge hil`` end to end (real export, firmware, QEMU): the board's episode and the host
    baselines have the 250 steps of repeat 4, and the latency budget is that repeat's period."""
    import json

    from cpr_edge.cli import main
    from cpr_edge.export.pipeline import export_checkpoint
    from cpr_edge.firmware_build import build_firmware

    board, model, out = "qemu-mps2-an386", tmp_path / "model", tmp_path / "hil"
    export_checkpoint(repeat4_checkpoint, model)
    build_firmware(board, model, model / "firmware" / board)
    rc = main(["hil", "--board", board, "--model", str(model), "--episodes", "1", "--out", str(out), "--json"])
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    assert rc in (0, 1) and report["stopped"] is None  # one paired episode may leave returns INCONCLUSIVE
    steps = {label: [e["steps"] for e in eps] for label, eps in report["episodes"].items()}
    assert steps == {"pruned_board": [250], "unpruned_float_host": [250], "pruned_float_host": [250]}
    assert all(e["failed"] is None for e in report["episodes"]["pruned_board"])
    assert report["latency"]["budget_s"] == pytest.approx(0.04)  # 4 x 10 ms, not the default 8 x 10 ms
