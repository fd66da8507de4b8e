"""TOLD components, paper initialisation, losses and the planner."""
import numpy as np
import pytest
import torch

from cpr_edge.agents.config import make_config
from cpr_edge.agents.replay import ReplayBuffer
from cpr_edge.agents.tdmpc import TDMPC, model_loss, policy_loss, told_losses
from cpr_edge.agents.told import TOLD, Arch

OBS, ACT = 5, 2


@pytest.fixture
def agent():
    cfg = make_config("small", batch_size=32)
    return TDMPC(cfg, Arch.from_config(cfg, OBS, ACT), seed=0)


def test_component_output_shapes(agent):
    m, B = agent.model, 7
    obs, a = torch.randn(B, OBS), torch.rand(B, ACT) * 2 - 1
    z = m.encoder(obs)
    assert z.shape == (B, 32)
    nz, r = m.next(z, a)
    assert nz.shape == (B, 32) and r.shape == (B, 1)
    q1, q2 = m.Q(z, a)
    assert q1.shape == q2.shape == (B, 1)
    pi = m.pi(z)
    assert pi.shape == (B, ACT) and pi.abs().max() <= 1


def test_layer_structure_follows_paper(agent):
    m = agent.model
    assert [type(l).__name__ for l in m.encoder.net] == ["Linear", "ELU", "Linear"]
    assert [type(l).__name__ for l in m.q1.net] == ["Linear", "LayerNorm", "Tanh", "Linear", "ELU", "Linear"]
    assert m.dynamics.net[0].in_features == 32 + ACT and m.dynamics.net[-1].out_features == 32
    assert m.pi.net[-1].out_features == ACT
    assert len(list(m.components())) == 6


def test_paper_initialisation(agent):
    m = agent.model
    for head in (m.reward.net[-1], m.q1.net[-1], m.q2.net[-1]):
        assert torch.count_nonzero(head.weight) == 0 and torch.count_nonzero(head.bias) == 0
    w = m.dynamics.net[2].weight  # square orthogonal matrix
    assert torch.allclose(w @ w.T, torch.eye(w.shape[0]), atol=1e-4)
    assert torch.count_nonzero(m.encoder.net[0].bias) == 0


def _fixed_batch(seed=0, B=32, H=5):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(B, OBS, generator=g)
    next_obs = torch.randn(H, B, OBS, generator=g)
    action = torch.rand(H, B, ACT, generator=g) * 2 - 1
    reward = torch.randn(H, B, 1, generator=g)
    return obs, next_obs, action, reward, None, torch.ones(B)


@pytest.mark.parametrize("term", ["consistency", "reward", "value", "pi"])
def test_each_loss_decreases_on_fixed_batch(agent, term):
    batch = _fixed_batch()
    cfg = agent.cfg

    def measure():
        c, r, v, _, zs = told_losses(agent.model, agent.target, cfg, *batch[:4])
        return {"consistency": c.mean().item(), "reward": r.mean().item(), "value": v.mean().item(),
                "pi": policy_loss(agent.model, cfg, zs).item()}[term]

    before = measure()
    for _ in range(40):
        agent.update(batch, step=100_000)
    after = measure()
    assert after < before, f"{term} loss did not decrease: {before:.4f} -> {after:.4f}"


def test_update_hooks_see_gradients(agent):
    seen = {}

    def hook(ag, info):
        seen["grad"] = ag.model.encoder.net[0].weight.grad.abs().sum().item()
        seen["pi_grad"] = ag.model.pi.net[0].weight.grad.abs().sum().item()
        seen["losses"] = info["losses"]

    agent.hooks.append(hook)
    for head in (agent.model.reward.net[-1], agent.model.q1.net[-1], agent.model.q2.net[-1]):
        head.weight.data.normal_()  # non-zero heads (zero at init) so every path has gradient
    agent.update(_fixed_batch(), step=100_000)
    assert seen["grad"] > 0 and seen["pi_grad"] > 0
    assert set(seen["losses"]) >= {"consistency", "reward", "value", "pi", "total"}


def test_target_is_ema(agent):
    before = [p.clone() for p in agent.target.parameters()]
    for _ in range(agent.cfg.update_freq):
        agent.update(_fixed_batch(), step=100_000)
    moved = [((pt - b).abs().max().item()) for pt, b in zip(agent.target.parameters(), before)]
    assert max(moved) > 0
    for p, pt, b in zip(agent.model.parameters(), agent.target.parameters(), before):
        # one EMA step: target moved a tau-fraction of the way towards the online weights
        assert torch.allclose(pt, b + agent.cfg.tau * (p - b), atol=1e-6)


def test_plan_respects_bounds_and_is_seeded(agent):
    obs = np.random.default_rng(0).standard_normal(OBS).astype(np.float32)
    torch.manual_seed(3); np.random.seed(3)
    a1 = agent.plan(obs, iterations=2, num_samples=64)
    torch.manual_seed(3); np.random.seed(3)
    a2 = agent.plan(obs, iterations=2, num_samples=64)
    assert a1.shape == (ACT,) and np.all(np.abs(a1) <= 1)
    np.testing.assert_array_equal(a1, a2)


def test_replay_sequences_stay_inside_episodes():
    rb = ReplayBuffer(OBS, ACT, episode_length=10, capacity_episodes=3, horizon=5, seed=0)
    for e in range(4):  # one more than capacity: the oldest is overwritten
        obs = np.full((11, OBS), e, np.float32) + np.arange(11, dtype=np.float32)[:, None] / 100
        rb.add(obs, np.zeros((10, ACT), np.float32), np.arange(10, dtype=np.float32))
    obs, next_obs, action, reward, (ep, t), w = rb.sample(256)
    assert (t <= 10 - 5).all()
    # next_obs[k] is the observation k+1 steps after obs, in the same episode
    np.testing.assert_allclose(next_obs[0].numpy() - obs.numpy(), 0.01, atol=1e-5)
    assert set(np.unique(obs[:, 0].numpy().round())) <= {1.0, 2.0, 3.0}
