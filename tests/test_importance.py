"""Importance metrics on hand-computed cases, and the training-hook tracker on real updates."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cpr_edge.importance.groups import mlp_groups, reduce_units, told_groups
from cpr_edge.importance.metrics import (FisherSaliency, GradientSaliency, L1Magnitude, L2Magnitude,
                                         LaplaceSNR, RandomScore)


def hand_case():
    """Linear(2,2) -> ELU -> Linear(2,1); the hidden layer is the only unit group (2 units).

    Unit 0 owns W0[0,:]=(1,2), b0[0]=0.5, W1[:,0]=2; unit 1 owns (3,-1), -0.5, -3.
    """
    model = nn.Module()
    model.a = nn.Sequential(nn.Linear(2, 2), nn.ELU(), nn.Linear(2, 1))
    w = {"a.0.weight": torch.tensor([[1.0, 2.0], [3.0, -1.0]]), "a.0.bias": torch.tensor([0.5, -0.5]),
         "a.2.weight": torch.tensor([[2.0, -3.0]]), "a.2.bias": torch.tensor([0.1])}
    g = {"a.0.weight": torch.tensor([[0.1, 0.2], [-0.1, 0.3]]), "a.0.bias": torch.tensor([1.0, 0.0]),
         "a.2.weight": torch.tensor([[0.5, 0.5]]), "a.2.bias": torch.tensor([9.0])}
    groups = mlp_groups(model, {"a": "a"}, [], [])
    return groups, w, g


def test_hand_case_groups():
    groups, w, _ = hand_case()
    assert [(x.name, x.size, x.root) for x in groups] == [("a.0", 2, "a.0")]
    assert reduce_units(groups[0], w, "count").tolist() == [4, 4]  # output bias of the head is not a unit's


def test_gradient_saliency_by_hand():
    groups, w, g = hand_case()
    acc = GradientSaliency(groups, ema_horizon=2)
    acc(w, g)  # unit 0: 0.1+0.4+0.5+1.0 = 2.0 ; unit 1: -0.3-0.3+0-1.5 = -2.1 -> |.|
    assert acc.scores(w, "sum")["a.0"].tolist() == pytest.approx([2.0, 2.1])
    acc(w, {k: 2 * v for k, v in g.items()})  # step scores 4.0, 4.2
    assert acc.scores(w, "sum")["a.0"].tolist() == pytest.approx([6.0, 6.3])
    # EMA b=0.5: e1 = 1.0, e2 = 0.5 + 2.0 = 2.5; bias-corrected by 1 - 0.25
    assert acc.scores(w, "ema")["a.0"].tolist() == pytest.approx([2.5 / 0.75, 2.625 / 0.75])


def test_fisher_saliency_by_hand():
    groups, w, g = hand_case()
    acc = FisherSaliency(groups)
    acc(w, g)  # unit 0: 0.01+0.16+0.25+1.0 ; unit 1: 0.09+0.09+0+2.25
    assert acc.scores(w, "sum")["a.0"].tolist() == pytest.approx([1.42, 2.43])


def test_laplace_snr_by_hand():
    groups, w, g = hand_case()
    acc = LaplaceSNR(groups, ema_horizon=10, n_data=100, prior_precision=1.0)
    acc(w, g)  # after one step F = g^2; SNR_i = |w_i| sqrt(100 g_i^2 + 1)
    u0 = (1 * math.sqrt(2) + 2 * math.sqrt(5) + 0.5 * math.sqrt(101) + 2 * math.sqrt(26)) / 4
    u1 = (3 * math.sqrt(2) + 1 * math.sqrt(10) + 0.5 * math.sqrt(1) + 3 * math.sqrt(26)) / 4
    for smoothing in ("sum", "ema"):
        assert acc.scores(w, smoothing)["a.0"].tolist() == pytest.approx([u0, u1], rel=1e-5)


def test_magnitude_and_random_by_hand():
    groups, w, _ = hand_case()
    assert L1Magnitude(groups)(w)["a.0"].tolist() == pytest.approx([5.5, 7.5])
    assert L2Magnitude(groups)(w)["a.0"].tolist() == pytest.approx([math.sqrt(9.25), math.sqrt(19.25)])
    r = RandomScore(groups, seed=3)
    assert torch.equal(r(w)["a.0"], r(w)["a.0"])
    assert not torch.equal(r(w)["a.0"], RandomScore(groups, seed=4)(w)["a.0"])


def test_told_latent_group_spans_every_component():
    from cpr_edge.agents.config import make_config
    from cpr_edge.agents.told import TOLD, Arch

    arch = Arch.from_config(make_config("small"), obs_dim=5, act_dim=1)
    model = TOLD(arch)
    groups = {g.name: g for g in told_groups(model)}
    assert set(groups) == {"encoder.0", "dynamics.0", "dynamics.1", "reward.0", "reward.1", "q1.0",
                           "q1.1", "q2.0", "q2.1", "pi.0", "pi.1", "latent"}
    lat = groups["latent"]
    assert lat.size == 32
    assert [s.param for s in lat.slices if s.dim == 0] == [
        "encoder.net.2.weight", "encoder.net.2.bias", "dynamics.net.4.weight", "dynamics.net.4.bias"]
    assert [s.param for s in lat.slices if s.dim == 1] == [
        f"{c}.net.0.weight" for c in ("dynamics", "reward", "q1", "q2", "pi")]
    params = dict(model.named_parameters())
    # each latent unit: 2 producer rows (256 + bias) and 5 consumer columns of 256 (never action columns)
    assert reduce_units(lat, params, "count").unique().tolist() == [2 * 257 + 5 * 256]
    # Q's first hidden layer carries its LayerNorm entries
    assert "q1.net.1.weight" in [s.param for s in groups["q1.0"].slices]


def test_tracker_hook_matches_direct_formula(tiny_checkpoint):
    """Two real TD-MPC updates; the hook's grad/fisher sums equal the formulas applied to
    the gradients another hook captured at the same point."""
    from cpr_edge.agents.checkpoint import load_checkpoint
    from cpr_edge.importance.posthoc import replay_buffer
    from cpr_edge.importance.tracker import ImportanceTracker

    ck = load_checkpoint(tiny_checkpoint)
    agent = ck.agent
    tracker = ImportanceTracker(ema_horizon=100, snapshot_every=1)
    captured = []
    agent.hooks += [tracker, lambda ag, info: captured.append(
        {n: (p.detach().clone(), p.grad.clone()) for n, p in ag.model.named_parameters()})]
    buf = replay_buffer(agent, ck.replay)
    for step in range(2):
        agent.update(buf.sample(32), 10**6)

    grad = torch.zeros(256)
    fisher = torch.zeros(256)
    for c in captured:  # pi.0: rows of pi.net.0 (+ bias) and columns of pi.net.2
        wg = [c["pi.net.0.weight"][0] * c["pi.net.0.weight"][1],
              (c["pi.net.0.bias"][0] * c["pi.net.0.bias"][1])[:, None],
              (c["pi.net.2.weight"][0] * c["pi.net.2.weight"][1]).T]
        grad += sum(x.sum(1) for x in wg).abs()
        fisher += sum(x.square().sum(1) for x in wg)
    assert torch.allclose(tracker.accumulators["grad"].total["pi.0"], grad, rtol=1e-4, atol=1e-9)
    assert torch.allclose(tracker.accumulators["fisher"].total["pi.0"], fisher, rtol=1e-4, atol=1e-12)
    assert grad.abs().sum() > 0

    # the state dict is plain types + tensors: it survives a weights_only round trip
    import io
    buf_io = io.BytesIO()
    torch.save(tracker.state_dict(), buf_io)
    buf_io.seek(0)
    d = torch.load(buf_io, weights_only=True)
    assert [row["update"] for row in d["trace"]] == [1, 2]
    assert set(d["trace"][-1]["fisher"]) == {"encoder", "dynamics", "reward", "q1", "q2", "pi", "latent"}
    back = ImportanceTracker.from_state_dict(d, agent.model)
    weights = {n: p.detach() for n, p in agent.model.named_parameters()}
    for m in ("grad", "fisher", "bayes"):
        a, b = tracker.scores(m, weights), back.scores(m, weights)
        assert all(torch.equal(a[k], b[k]) for k in a)
