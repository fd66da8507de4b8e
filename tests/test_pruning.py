"""Structured pruning of the TOLD model: coupling, exact indices, targets, round trip, allocation, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cpr_edge.agents.checkpoint import load_checkpoint, save_checkpoint
from cpr_edge.errors import CprError
from cpr_edge.importance.groups import told_groups
from cpr_edge.pruning.allocation import Bounds, arch_with, param_total, prunable, told_allocate
from cpr_edge.pruning.pruner import importance_scores, latent_sizes, lowest, prune_agent, weights_per_unit

A = 1  # cartpole action size


@pytest.fixture(scope="module")
def pruned_case(tiny_checkpoint):
    """Fisher importance (post hoc), component allocation of 50% of all parameters."""
    ck = load_checkpoint(tiny_checkpoint)
    agent = ck.agent
    with torch.no_grad():  # the fixture's target equals the model: make it distinct
        for p in agent.target.parameters():
            p.add_(0.01 * torch.randn_like(p))
    groups, scores, source = importance_scores(agent, "fisher", None, ck.replay, seed=0, posthoc_steps=4,
                                               posthoc_batch=32)
    n_remove = told_allocate(agent.arch, groups, scores, 0.5, "all", "component", None,
                             weights_per_unit(agent, groups))
    removed = {n: lowest(scores[n], k) for n, k in n_remove.items()}
    kept = {g.name: [i for i in range(g.size) if i not in set(removed[g.name])] for g in groups}
    return ck, agent, scores, removed, kept, prune_agent(agent, removed)


def test_removed_indices_are_the_lowest_scores(pruned_case):
    _, _, scores, removed, kept, _ = pruned_case
    for name, idx in removed.items():
        assert idx, f"{name} lost nothing"
        if kept[name]:
            assert scores[name][idx].max() <= scores[name][kept[name]].min()


def test_every_coupled_layer_has_the_new_latent_size(pruned_case):
    _, agent, _, removed, _, new = pruned_case
    z = agent.arch.latent_dim - len(removed["latent"])
    assert new.arch.latent_dim == z < agent.arch.latent_dim
    for model in (new.model, new.target):
        model.arch = new.arch
        assert set(latent_sizes(model).values()) == {z}, latent_sizes(model)
    # action inputs and output heads stay whole
    assert new.model.dynamics.net[0].in_features == z + A
    assert new.model.pi.net[-1].out_features == A
    assert [new.model.get_submodule(f"{c}.net")[-1].out_features for c in ("reward", "q1", "q2")] == [1, 1, 1]


def _expected(old: torch.nn.Module, kept: dict, name: str, rows: str | None, cols: str | None, action_cols: bool):
    w = dict(old.named_parameters())[name]
    if rows:
        w = w[kept[rows]]
    if cols:
        c = kept[cols] + ([w.shape[-1] - A] if action_cols else [])
        w = w[:, c]
    return w


@pytest.mark.parametrize("net", ["model", "target"])
def test_pruned_weights_are_exactly_the_kept_slices(pruned_case, net):
    """Model and EMA target keep exactly the chosen rows/columns, in order, nothing else."""
    _, agent, _, _, kept, new = pruned_case
    old, cur = getattr(agent, net), dict(getattr(new, net).named_parameters())
    checks = {
        "encoder.net.0.weight": ("encoder.0", None, False), "encoder.net.2.weight": ("latent", "encoder.0", False),
        "dynamics.net.0.weight": ("dynamics.0", "latent", True), "dynamics.net.4.weight": ("latent", "dynamics.1", False),
        "dynamics.net.4.bias": ("latent", None, False), "reward.net.0.weight": ("reward.0", "latent", True),
        "q1.net.0.weight": ("q1.0", "latent", True), "q1.net.1.weight": ("q1.0", None, False),
        "q2.net.3.weight": ("q2.1", "q2.0", False), "pi.net.0.weight": ("pi.0", "latent", False),
        "pi.net.2.weight": ("pi.1", "pi.0", False), "pi.net.4.weight": (None, "pi.1", False),
    }
    for name, (rows, cols, act) in checks.items():
        assert torch.equal(cur[name], _expected(old, kept, name, rows, cols, act)), name
    assert not torch.equal(new.model.q1.net[0].weight, new.target.q1.net[0].weight)  # two distinct nets


def test_pruned_agent_plans_and_acts(pruned_case):
    ck, _, _, _, _, new = pruned_case
    obs = ck.replay["obs"][0, 0]
    a = new.policy_action(obs)
    assert a.shape == (A,) and np.all(np.abs(a) <= 1)
    new.cfg.iterations, new.cfg.num_samples = 2, 64
    plan = new.plan(obs)
    assert plan.shape == (A,) and np.all(np.isfinite(plan))


def test_pruned_checkpoint_round_trip(pruned_case, tmp_path):
    from cpr_edge.pruning.prune import prune_checkpoint

    ck = pruned_case[0]
    new_ck, info = prune_checkpoint(ck, "l1", 0.5, "uniform", "all", "none", 0, eval_episodes=0)
    path = save_checkpoint(new_ck, tmp_path / "p.pt")
    torch.load(path, weights_only=True)  # plain types and tensors only
    back = load_checkpoint(path)
    assert back.arch == new_ck.arch and back.arch.latent_dim == info["widths"]["after"]["latent"]
    obs = torch.as_tensor(ck.replay_obs()[:16])
    for a, b in ((back.agent.model, new_ck.agent.model), (back.agent.target, new_ck.agent.target)):
        assert torch.equal(a.pi(a.encoder(obs)), b.pi(b.encoder(obs)))
    assert back.extra["pruning"]["kept"]["latent"] == info["kept"]["latent"]
    assert info["params"]["all"]["removed_fraction"] >= 0.5


@pytest.mark.parametrize("method", ["component", "uniform", "global"])
@pytest.mark.parametrize("target", ["deployed", "all"])
def test_allocation_reaches_target_within_bounds(pruned_case, method, target):
    _, agent, scores, _, _, _ = pruned_case
    groups = told_groups(agent.model)
    bounds = Bounds(lo=0.05, hi=0.8, latent_hi=0.6)
    for ratio in (0.3, 0.6):
        n = told_allocate(agent.arch, groups, scores, ratio, target, method, bounds, weights_per_unit(agent, groups))
        assert set(n) == {g.name for g in prunable(groups, target)}
        widths = {g.name: g.size - n.get(g.name, 0) for g in groups}
        removed = 1 - param_total(arch_with(agent.arch, widths), target) / param_total(agent.arch, target)
        assert ratio <= removed < ratio + 0.03
        for g in groups:
            if g.name in n:
                frac = n[g.name] / g.size
                assert bounds.lo - 1e-9 <= frac <= bounds.hi_of(g.component) + 1e-9
    with pytest.raises(CprError, match="not reachable"):
        told_allocate(agent.arch, groups, scores, 0.97, target, method, bounds)


def test_component_allocation_follows_importance(pruned_case):
    """The component whose per-weight importance is lowest loses the largest fraction."""
    _, agent, _, _, _, _ = pruned_case
    groups = told_groups(agent.model)
    scores = {g.name: torch.ones(g.size) * (10.0 if g.component == "pi" else 1.0) for g in groups}
    n = told_allocate(agent.arch, groups, scores, 0.5, "deployed", "component")
    assert n["pi.0"] / 256 < n["encoder.0"] / 256


def test_cli_prune_writes_checkpoint_and_json(tiny_checkpoint, tmp_path, capsys):
    from cpr_edge.cli import main

    out = tmp_path / "out"
    rc = main(["prune", "--checkpoint", str(tiny_checkpoint), "--metric", "grad", "--ratio", "0.5",
               "--episodes", "1", "--recover-steps", "20", "--posthoc-steps", "2", "--out", str(out), "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "prune.json").read_text())
    assert printed == saved
    for k in ("unpruned", "pruned", "recovered"):
        assert isinstance(saved["return"]["policy"][k], float)
    assert saved["params"]["deployed"]["after"] <= 0.5 * saved["params"]["deployed"]["before"]
    assert saved["params"]["all"]["before"] > saved["params"]["all"]["after"]
    assert set(saved["macs"]) == {"encoder", "dynamics", "reward", "q1", "q2", "pi"}
    back = load_checkpoint(out / "checkpoint.pt")
    assert back.arch.latent_dim == len(saved["kept"]["latent"])


@pytest.mark.parametrize("argv, message", [
    (["--ratio", "1.5"], "--ratio must be a fraction strictly between 0 and 1"),
    (["--ratio", "0"], "--ratio must be a fraction strictly between 0 and 1"),
    (["--metric", "hessian"], "unknown metric 'hessian'"),
    (["--allocation", "magic"], "unknown allocation 'magic'"),
])
def test_cli_prune_bad_input_is_one_line(tiny_checkpoint, tmp_path, capsys, argv, message):
    from cpr_edge.cli import main

    out = tmp_path / "bad"
    rc = main(["prune", "--checkpoint", str(tiny_checkpoint), "--out", str(out), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("cpr-edge: error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_recoveries_train_the_pruned_agent(pruned_case):
    """Distillation lowers its imitation loss; fine-tuning runs real TD-MPC updates on the pruned shapes."""
    from cpr_edge.pruning.recovery import distill, finetune

    ck, agent, _, _, _, new = pruned_case
    import copy

    student = copy.deepcopy(new)
    losses = distill(student, agent, ck.replay_obs(), steps=60, batch_size=64)
    assert losses[-1] < losses[0]
    tuned = copy.deepcopy(new)
    before = tuned.model.q1.net[0].weight.clone()
    losses = finetune(tuned, ck.replay, steps=2, batch_size=16)
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert not torch.equal(tuned.model.q1.net[0].weight, before)


def test_training_trace_is_used_when_it_matches(tiny_checkpoint):
    """A checkpoint trained with --importance is scored from its trace; a pruned one post hoc."""
    from cpr_edge.importance.posthoc import replay_buffer
    from cpr_edge.importance.tracker import ImportanceTracker

    ck = load_checkpoint(tiny_checkpoint)
    tracker = ImportanceTracker()
    ck.agent.hooks.append(tracker)
    buf = replay_buffer(ck.agent, ck.replay)
    ck.agent.update(buf.sample(16), 10**6)
    state = tracker.state_dict()
    _, scores, source = importance_scores(ck.agent, "bayes", state, ck.replay)
    weights = {n: p.detach() for n, p in ck.agent.model.named_parameters()}
    assert source == "trace"
    assert all(torch.equal(scores[k], v) for k, v in tracker.scores("bayes", weights).items())
    empty = {**state, "groups": [], "metrics": {}}  # what a pruned checkpoint keeps
    assert importance_scores(ck.agent, "bayes", empty, ck.replay, posthoc_steps=1, posthoc_batch=8)[2] == "posthoc"


def test_shipped_checkpoint_half_of_deployed_params(shipped_cartpole_small, tmp_path, capsys):
    """The acceptance command on the shipped trained agent (1 episode to stay quick)."""
    from cpr_edge.cli import main

    rc = main(["prune", "--checkpoint", str(shipped_cartpole_small), "--ratio", "0.5", "--target", "deployed",
               "--episodes", "1", "--recover-steps", "100", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "after recovery (distill, 100 steps)" in out
    info = json.loads((tmp_path / "prune.json").read_text())
    assert info["params"]["deployed"]["removed_fraction"] >= 0.5
    assert info["return"]["policy"]["unpruned"] > 500  # a trained agent, not a random one
