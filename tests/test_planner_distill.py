"""cpr-edge distill-planner on a tiny real checkpoint: real planner labels, real episodes."""
from __future__ import annotations

import json

import pytest
import torch

from cpr_edge.cli import main


def _distill(ck, out, *extra):
    return main(["distill-planner", "--checkpoint", str(ck), "--out", str(out), "--iterations", "2",
                 "--episodes", "1", "--max-episode-steps", "12", "--steps", "150", "--lr", "1e-3",
                 "--batch-size", "16", "--plan-iterations", "2", "--plan-samples", "32",
                 "--eval-episodes", "1", "--iteration-eval-episodes", "1", *extra])


def test_distill_planner_moves_pi_toward_the_planner_and_records_the_section(tmp_path, capsys):
    """On the shipped walker checkpoint, whose pi lags its planner (a cheaper planner labels here)."""
    from cpr_edge.agents.checkpoint import load_checkpoint, shipped_checkpoint_path

    source = shipped_checkpoint_path("walker-walk", "small")
    out = tmp_path / "distilled.pt"
    assert _distill(source, out, "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    before, after = load_checkpoint(source), load_checkpoint(out)
    s = after.extra["planner_distillation"]
    assert s["done"] and s["method"] == "dagger" and printed["labelled_states"] == s["labelled_states"] == 24
    assert s["planner"]["iterations"] == 2 and s["planner"]["num_samples"] == 32
    assert [r["beta"] for r in s["history"]] == [1.0, 0.5] and s["history"][0]["planner_share"] == 1.0
    assert [r["aggregate"] for r in s["history"]] == [12, 24]
    for row in s["history"]:
        assert row["loss_after"] < 0.5 * row["loss_before"]  # pi's actions moved toward the planner's
    assert {"mean", "std", "returns"} <= set(s["return_after"]) and len(s["return_after"]["returns"]) == 1
    # only pi changed: the encoder and the rest of the TOLD model the planner uses are the checkpoint's
    for name, p in before.agent.model.state_dict().items():
        assert torch.equal(p, after.agent.model.state_dict()[name]) != name.startswith("pi."), name
    assert after.training == before.training and after.replay["obs"].shape == before.replay["obs"].shape
    assert after.extra["importance"].keys() == before.extra["importance"].keys()


def test_an_existing_trace_is_kept_and_a_second_run_nests_the_first(make_checkpoint, tmp_path):
    from cpr_edge.agents.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(make_checkpoint(tmp_path / "ck.pt"))
    ck.extra["importance"] = {"version": 1, "marker": [1, 2, 3]}
    save_checkpoint(ck, tmp_path / "ck.pt")
    assert _distill(tmp_path / "ck.pt", tmp_path / "a.pt", "--iterations", "1") == 0
    assert _distill(tmp_path / "a.pt", tmp_path / "b.pt", "--iterations", "1") == 0
    b = load_checkpoint(tmp_path / "b.pt")
    assert b.extra["importance"] == {"version": 1, "marker": [1, 2, 3]}
    assert b.extra["planner_distillation"]["previous"]["source"]["checkpoint"] == str(tmp_path / "ck.pt")


@pytest.mark.parametrize("flag,value,message", [
    ("--iterations", "0", "--iterations must be at least 1"),
    ("--beta", "1.5", "must lie in [0, 1]"),
    ("--lr", "0", "--lr must be positive"),
    ("--max-episode-steps", "0", "--max-episode-steps must be at least 1"),
])
def test_bad_values_are_one_line_refusals(tiny_checkpoint, tmp_path, capsys, flag, value, message):
    assert _distill(tiny_checkpoint, tmp_path / "o.pt", flag, value) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "o.pt").exists()


def test_out_folder_and_missing_checkpoint_are_refused(tiny_checkpoint, tmp_path, capsys):
    assert _distill(tiny_checkpoint, tmp_path) == 2
    assert "is a folder" in capsys.readouterr().err
    assert _distill(tmp_path / "none.pt", tmp_path / "o.pt") == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_help_names_the_command():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "cpr_edge.cli", "distill-planner", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: cpr-edge distill-planner" in r.stdout and "--beta-decay" in r.stdout


def test_shipped_walker_is_distilled_and_its_policy_prior_walks():
    """Issue 11's bar is 850 policy-only over 10 episodes (cpr-edge eval); 3 here keep it cheap."""
    import numpy as np

    from cpr_edge.agents.checkpoint import load_checkpoint, shipped_checkpoint_path
    from cpr_edge.agents.evaluate import evaluate

    ck = load_checkpoint(shipped_checkpoint_path("walker-walk", "small"))
    s = ck.extra["planner_distillation"]
    assert s["done"] and s["return_after"]["mean"] >= 850 and ck.extra["importance"]["trace"]
    returns = evaluate(ck.agent, ck.task, 3, "policy", 0, ck.spec["action_repeat"])
    assert np.mean(returns) >= 850, returns
