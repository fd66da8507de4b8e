"""dm_control wrapper: flattening order, determinism under a seed, action bounds; task names."""
import subprocess
import sys

import numpy as np
import pytest

from cpr_edge.cli import main
from cpr_edge.envs import TASKS, make_env, resolve_task
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
    with pytest.raises(CprError, match="unknown task") as e:
        make_env("cartpole-balance-nope")
    assert "did you mean cartpole-balance," in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("task, obs_dim, act_dim, repeat", [("hopper-stand", 15, 4, 4), ("finger-spin", 9, 2, 4)])
def test_task_outside_the_shipped_five(task, obs_dim, act_dim, repeat):
    """Any flat suite task by name, at TD-MPC v1's repeat (finger has no cfgs/tasks yaml there: 4)."""
    assert task not in TASKS
    env = make_env(task, 0)
    assert (env.spec.obs_dim, env.spec.act_dim, env.spec.action_repeat) == (obs_dim, act_dim, repeat)
    assert env.spec.episode_length == 1000 // repeat
    assert env.spec.control_timestep == pytest.approx(0.02 * repeat)  # both domains: 20 ms control step
    obs = env.reset()
    steps, done = 0, False
    while not done:
        obs, r, done = env.step(np.zeros(act_dim))
        steps += 1
    assert steps == env.spec.episode_length and obs.shape == (obs_dim,) and np.isfinite(r)


def test_action_repeat_override():
    env = make_env("hopper-hop", 0, action_repeat=8)
    assert (env.spec.action_repeat, env.spec.episode_length) == (8, 125)
    assert env.spec.control_timestep == pytest.approx(0.16)
    with pytest.raises(CprError, match="divisor of 1000"):
        make_env("hopper-hop", 0, action_repeat=3)


def test_names_and_spellings():
    assert resolve_task("ball_in_cup-catch") == "ball_in_cup-catch"
    assert resolve_task("ball-in-cup-catch") == "ball_in_cup-catch"
    assert resolve_task("cup-catch") == "ball_in_cup-catch"  # TD-MPC's name
    assert resolve_task("finger-turn-hard") == "finger-turn_hard"
    assert resolve_task("humanoid_cmu-stand") == "humanoid_CMU-stand"
    assert make_env("ball-in-cup-catch").spec.task == "ball_in_cup-catch"
    with pytest.raises(CprError, match="did you mean hopper-hop"):
        resolve_task("hoper-hop")


@pytest.mark.parametrize("task, why", [("manipulator-bring_ball", r"not flat \(arm_pos \(8, 2\)"),
                                       ("lqr-lqr_2_1", "not 1000 control steps")])
def test_unusable_suite_tasks(task, why):
    """No suite task has pixel observations by default: non-flat and unbounded ones are the cases."""
    with pytest.raises(CprError, match=why) as e:
        make_env(task)
    assert "\n" not in str(e.value)


def test_train_refuses_bad_tasks_in_one_line(capsys):
    for argv in (["train", "--task", "hoper-hop"], ["train", "--task", "stacker-stack_2"],
                 ["train", "--task", "hopper-hop", "--action-repeat", "0"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("cpr-edge: error: ") and err.count("\n") == 1, err


def test_help_does_not_import_dm_control():
    code = ("import sys; from cpr_edge.cli import build_parser; p = build_parser()\n"
            "try: p.parse_args(['train', '--help'])\nexcept SystemExit: pass\n"
            "assert 'dm_control' not in sys.modules and 'torch' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "--action-repeat" in r.stdout, r.stderr
