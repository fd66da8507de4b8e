"""dm_control wrapper: flattening order, determinism under a seed, action bounds."""
import numpy as np
import pytest

from cpr_edge.envs import TASKS, make_env
from cpr_edge.errors import CprError


def rollout(task, seed, n=20):
    env = make_env(task, seed)
    rng = np.random.default_rng(123)
    obs = [env.reset()]
    rewards = []
    for _ in range(n):
        o, r, _ = env.step(rng.uniform(-1, 1, env.spec.act_dim))
        obs.append(o), rewards.append(r)
    return np.stack(obs), np.array(rewards)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_spec_and_flattening(task):
    env = make_env(task, 0)
    obs = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (env.spec.obs_dim,)
    assert env.spec.obs_dim == sum(int(np.prod(s)) if s else 1 for _, s in env.spec.obs_keys)
    assert env.spec.episode_length * env.spec.action_repeat == 1000


def test_observation_order_is_the_suite_order():
    env = make_env("cartpole-swingup", 0)
    ts = env._env.reset()
    manual = np.concatenate([np.ravel(ts.observation["position"]), np.ravel(ts.observation["velocity"])])
    np.testing.assert_allclose(env._flat(ts), manual.astype(np.float32))
    assert [k for k, _ in env.spec.obs_keys] == ["position", "velocity"]


def test_determinism_under_seed():
    o1, r1 = rollout("cartpole-swingup", 5)
    o2, r2 = rollout("cartpole-swingup", 5)
    o3, _ = rollout("cartpole-swingup", 6)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(o1, o3)


def test_action_repeat_and_episode_end():
    env = make_env("cartpole-swingup", 0)
    env.reset()
    steps, done = 0, False
    while not done:
        _, _, done = env.step(np.zeros(1))
        steps += 1
    assert steps == 125  # 1000 env steps at action repeat 8


def test_actions_are_clipped_to_bounds():
    e1, e2 = make_env("cartpole-swingup", 1), make_env("cartpole-swingup", 1)
    e1.reset(), e2.reset()
    o1, _, _ = e1.step(np.array([5.0]))
    o2, _, _ = e2.step(np.array([1.0]))
    np.testing.assert_array_equal(o1, o2)
    with pytest.raises(CprError):
        e1.step(np.array([np.nan]))


def test_unknown_task():
    with pytest.raises(CprError, match="unknown task"):
        make_env("cartpole-balance-nope")
