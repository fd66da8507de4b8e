"""Allocation and ranking apart: ``RANK@ALLOCATION`` metrics (``fisher@l1``), the trace's
all-time mean (``fisher-mean``) beside its EMA, and ``--latent-cap``."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from cpr_edge.agents.checkpoint import load_checkpoint


def _cut(ck, metric, ratio=0.6, **kw):
    from cpr_edge.pruning.prune import prune_structure
    from cpr_edge.pruning.pruner import prune_scores

    groups, scores, alloc, source = prune_scores(ck.agent, metric, ck.extra.get("importance"), ck.replay,
                                                 posthoc_steps=2)
    _, removed, kept, _ = prune_structure(ck.agent, groups, scores, metric, ratio, alloc_scores=alloc, **kw)
    return scores, removed, {n: len(k) for n, k in kept.items()}, source


def test_pair_takes_widths_from_one_metric_and_units_from_the_other(traced_checkpoint):
    ck = load_checkpoint(traced_checkpoint)
    fisher_scores, _, fisher_widths, _ = _cut(ck, "fisher")
    _, _, l1_widths, _ = _cut(ck, "l1")
    assert fisher_widths != l1_widths  # else the test could not tell the two allocations apart
    scores, removed, widths, source = _cut(ck, "fisher@l1")
    assert widths == l1_widths and source == "trace@weights"
    for name, idx in removed.items():  # the units that go are fisher's lowest, as many as l1 allots
        assert sorted(idx) == sorted(torch.argsort(fisher_scores[name], stable=True)[: len(idx)].tolist())
    _, _, reverse_widths, source = _cut(ck, "l1@fisher")
    assert reverse_widths == fisher_widths and source == "weights@trace"


def test_mean_name_reads_the_trace_running_mean(traced_checkpoint):
    from cpr_edge.importance.tracker import ImportanceTracker
    from cpr_edge.pruning.pruner import importance_scores

    ck = load_checkpoint(traced_checkpoint)
    tracker = ImportanceTracker.from_state_dict(ck.extra["importance"], ck.agent.model)
    weights = {n: p.detach() for n, p in ck.agent.model.named_parameters()}
    for metric in ("grad", "fisher", "bayes"):
        _, scores, source = importance_scores(ck.agent, f"{metric}-mean", ck.extra["importance"], ck.replay)
        want = tracker.scores(metric, weights, "sum")
        assert source == "trace" and all(torch.equal(scores[k], want[k]) for k in want)
        ema = tracker.scores(metric, weights, "ema")
        assert any(not torch.equal(scores[k], ema[k]) for k in want)


def test_latent_cap_bounds_the_latent_cut(traced_checkpoint):
    from cpr_edge.pruning.allocation import Bounds

    ck = load_checkpoint(traced_checkpoint)
    size = ck.agent.arch.latent_dim
    _, _, default, _ = _cut(ck, "fisher", ratio=0.9)
    _, _, capped, _ = _cut(ck, "fisher", ratio=0.9, bounds=Bounds(latent_hi=0.5))
    assert default["latent"] < size // 2 <= capped["latent"]


@pytest.mark.parametrize("argv, message", [
    (["--metric", "fisher@taylor"], "unknown metric 'fisher@taylor'; choose one of grad, fisher"),
    (["--metric", "fisher@l1@l2"], "unknown metric 'fisher@l1@l2'"),
    (["--latent-cap", "1.0"], "--latent-cap must be a fraction in [0, 1), got 1.0"),
    (["--latent-cap", "0.5", "--gradual", "100"], "--latent-cap applies to one cut"),
    (["--metric", "fisher@l1", "--gradual", "100"], "unknown metric 'fisher@l1'"),
])
def test_bad_pair_or_cap_is_one_line(tiny_checkpoint, tmp_path, capsys, argv, message):
    from cpr_edge.cli import main

    rc = main(["prune", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "p"), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and message in err
    assert not (tmp_path / "p").exists()


def test_sweep_rows_name_the_pair_and_the_cap(traced_checkpoint, tmp_path, capsys):
    from cpr_edge.cli import main

    out = tmp_path / "sweep"
    argv = ["sweep", "--checkpoint", str(traced_checkpoint), "--metrics", "fisher@l1,l1", "--ratios", "0.6",
            "--seeds", "0", "--recover", "none", "--episodes", "1", "--latent-cap", "0.5", "--out", str(out),
            "--json"]
    assert main(argv) == 0
    with open(out / "sweep.csv", newline="") as f:
        rows = {r["metric"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"fisher@l1", "l1"}
    assert rows["fisher@l1"]["importance_source"] == "trace@weights"
    assert {r["latent_cap"] for r in rows.values()} == {"0.5"}
    assert rows["fisher@l1"]["latent"] == rows["l1"]["latent"]  # the same allocation
    assert all(int(r["latent"]) >= 16 for r in rows.values())
    capsys.readouterr()
    assert main(argv) == 0  # finished: nothing to run
    assert json.loads(capsys.readouterr().out)["cells"]["run"] == 0
    assert main([*argv[:-3], "--latent-cap", "0.75", "--out", str(out), "--json"]) == 0  # another cap: new cells
    assert json.loads(capsys.readouterr().out)["cells"]["run"] == 2


def test_sweep_quant_rows_carry_the_quantised_return(tiny_checkpoint, tmp_path, capsys):
    """``sweep --quant int8 --recover none,distill,qat,distill+qat``: every row also has the return
    through the int8 forward (cpr_edge.quant.sim_eval), qat trains for int8, and the summary has a
    table of the quantised returns beside the float ones."""
    from cpr_edge.agents.checkpoint import load_checkpoint
    from cpr_edge.cli import main
    from cpr_edge.quant.sim_eval import quantized_returns

    out = tmp_path / "q"
    argv = ["sweep", "--checkpoint", str(tiny_checkpoint), "--metrics", "l1", "--ratios", "0.5", "--seeds", "0",
            "--recover", "none,distill,qat,distill+qat", "--recover-steps", "3", "--episodes", "1", "--quant", "int8",
            "--out", str(out), "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    with open(out / "sweep.csv", newline="") as f:
        rows = {r["recover"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"none", "distill", "qat", "distill+qat"} and {r["quant"] for r in rows.values()} == {"int8"}
    ck = load_checkpoint(tiny_checkpoint)
    want = quantized_returns(ck.agent, ck, ck.task, 1, 0, "int8")
    assert [float(r["return_quant_unpruned"]) for r in rows.values()] == pytest.approx([want[0]] * 4, abs=1e-3)
    assert all(r["return_quant"] != "" for r in rows.values())
    assert {s["recover"] for s in res["summary_quant"]} == {"none", "distill", "qat", "distill+qat"}
    assert "int8 (simulated) policy-only return" in (out / "sweep_summary.md").read_text()
    assert main(argv) == 0 and json.loads(capsys.readouterr().out)["cells"]["run"] == 0
    with pytest.raises(SystemExit):  # argparse: not a choice
        main([*argv[:-3], "--quant", "int4", "--out", str(out)])


def test_distill_then_qat_is_distillation_followed_by_quantisation_aware_steps(tiny_checkpoint):
    from cpr_edge.pruning.prune import prune_checkpoint

    ck = load_checkpoint(tiny_checkpoint)
    _, d = prune_checkpoint(ck, "l1", 0.5, recover="distill", recover_steps=3, eval_episodes=0, seed=0)
    _, both = prune_checkpoint(ck, "l1", 0.5, recover="distill+qat", recover_steps=3, eval_episodes=0, seed=0,
                               qat_activations="int8")
    assert "quantization" not in d and both["quantization"]["activations"] == "int8"
    assert both["quantization"]["steps"] == 3
    assert both["recovery_loss"]["first"] == d["recovery_loss"]["first"]  # the same distillation first
