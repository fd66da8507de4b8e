"""``grad-posthoc`` / ``fisher-posthoc`` / ``bayes-posthoc``: post hoc scores on a checkpoint
that carries a matching training trace, where the plain names read the trace."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from cpr_edge.agents.checkpoint import load_checkpoint, save_checkpoint


def test_posthoc_name_skips_the_trace(traced_checkpoint):
    from cpr_edge.pruning.pruner import importance_scores

    ck = load_checkpoint(traced_checkpoint)
    imp = ck.extra["importance"]
    for metric in ("grad", "fisher", "bayes"):
        _, trace, src_trace = importance_scores(ck.agent, metric, imp, ck.replay, posthoc_steps=2, posthoc_batch=16)
        _, post, src_post = importance_scores(ck.agent, f"{metric}-posthoc", imp, ck.replay,
                                              posthoc_steps=2, posthoc_batch=16)
        assert (src_trace, src_post) == ("trace", "posthoc")
        assert set(trace) == set(post)
        assert any(not torch.allclose(trace[k], post[k]) for k in trace), metric
    # without a trace the plain name falls back to the same post hoc scores (the policy loss
    # draws from torch's RNG, so both start from the same seed, as prune_checkpoint does)
    torch.manual_seed(0)
    _, plain, src = importance_scores(ck.agent, "fisher", None, ck.replay, posthoc_steps=2, posthoc_batch=16)
    torch.manual_seed(0)
    _, forced, _ = importance_scores(ck.agent, "fisher-posthoc", imp, ck.replay, posthoc_steps=2, posthoc_batch=16)
    assert src == "posthoc" and all(torch.equal(plain[k], forced[k]) for k in plain)


def test_cli_prune_fisher_trace_vs_posthoc(traced_checkpoint, tmp_path, capsys):
    from cpr_edge.cli import main

    infos = {}
    for metric in ("fisher", "fisher-posthoc"):
        out = tmp_path / metric
        assert main(["prune", "--checkpoint", str(traced_checkpoint), "--metric", metric, "--ratio", "0.5",
                     "--episodes", "1", "--recover", "none", "--posthoc-steps", "2", "--out", str(out)]) == 0
        assert f"with {metric} importance" in capsys.readouterr().out
        infos[metric] = json.loads((out / "prune.json").read_text())
        assert load_checkpoint(out / "checkpoint.pt").extra["pruning"]["metric"] == metric
    assert infos["fisher"]["importance_source"] == "trace"
    assert infos["fisher-posthoc"]["importance_source"] == "posthoc"
    assert infos["fisher"]["kept"] != infos["fisher-posthoc"]["kept"]


@pytest.mark.parametrize("argv, message", [
    (["prune", "--metric", "fisher-trace"], "unknown metric 'fisher-trace'; choose one of "),
    (["prune", "--metric", "l1-posthoc"], "unknown metric 'l1-posthoc'"),
    (["prune", "--metric", "fisher-posthoc", "--gradual", "100"], "--metric fisher-posthoc scores a saved "
                                                                  "checkpoint post hoc"),
    (["sweep", "--metrics", "fisher,bayes-post"], "unknown metric 'bayes-post'"),
])
def test_bad_or_misplaced_posthoc_name_is_one_line(traced_checkpoint, tmp_path, capsys, argv, message):
    from cpr_edge.cli import main

    out = tmp_path / "bad"
    rc = main([*argv, "--checkpoint", str(traced_checkpoint), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("cpr-edge: error: ") and message in err and "\n" not in err, err
    assert not out.exists()
    if "choose one of" in message:
        assert "grad-posthoc, fisher-posthoc, bayes-posthoc" in err


def test_train_prune_to_refuses_posthoc(tmp_path, capsys):
    from cpr_edge.cli import main

    rc = main(["train", "--task", "cartpole-swingup", "--steps", "6000", "--prune-to", "0.5",
               "--metric", "bayes-posthoc", "--out", str(tmp_path / "ck.pt")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert err == ("cpr-edge: error: --metric bayes-posthoc scores a saved checkpoint post hoc; pruning while "
                   "training reads the live importance tracker: use --metric bayes")
    assert not (tmp_path / "ck.pt").exists()


def test_sweep_rows_keep_posthoc_names_apart(traced_checkpoint, tmp_path, capsys):
    from cpr_edge.cli import main

    assert main(["sweep", "--checkpoint", str(traced_checkpoint), "--metrics", "fisher,fisher-posthoc",
                 "--ratios", "0.5", "--seeds", "0", "--recover", "none", "--episodes", "1", "--posthoc-steps", "2",
                 "--out", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert {(r["metric"], r["importance_source"], r["status"]) for r in rows} == {
        ("fisher", "trace", "ok"), ("fisher-posthoc", "posthoc", "ok")}
    assert {s["metric"] for s in out["summary"]} == {"fisher", "fisher-posthoc"}
    header = (tmp_path / "sweep_summary.md").read_text().splitlines()[2]
    assert header == "| ratio | fisher | fisher-posthoc |"
