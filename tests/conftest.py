"""Shared fixtures: small real checkpoints built on the fly (no network, no mocks)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "disable")
torch.set_num_threads(1)


def build_checkpoint(path, task="cartpole-swingup", preset="small", episodes=2, seed=0,
                     activation="elu", **arch_overrides):
    """An untrained (paper-initialised, then perturbed) agent with a replay sample of real
    random-action episodes of ``task``. Small enough to build in a second or two."""
    from cpr_edge.agents.checkpoint import Checkpoint, save_checkpoint
    from cpr_edge.agents.config import make_config
    from cpr_edge.agents.tdmpc import TDMPC
    from cpr_edge.agents.told import Arch
    from cpr_edge.envs import make_env

    cfg = make_config(preset)
    env = make_env(task, seed)
    arch = Arch.from_config(cfg, env.spec.obs_dim, env.spec.act_dim)
    arch.activation = activation
    for k, v in arch_overrides.items():
        setattr(arch, k, v)
    agent = TDMPC(cfg, arch, seed=seed)
    with torch.no_grad():  # zero-initialised heads would make every output constant
        for p in agent.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        agent.target.load_state_dict(agent.model.state_dict())
    rng = np.random.default_rng(seed)
    obs_l, act_l, rew_l = [], [], []
    for ep in range(episodes):
        env = make_env(task, seed + ep)
        o, done = env.reset(), False
        os_, as_, rs = [o], [], []
        while not done:
            a = rng.uniform(-1, 1, env.spec.act_dim).astype(np.float32)
            o, r, done = env.step(a)
            os_.append(o), as_.append(a), rs.append(r)
        obs_l.append(np.stack(os_)), act_l.append(np.stack(as_)), rew_l.append(np.asarray(rs, np.float32))
    replay = {"obs": np.stack(obs_l), "action": np.stack(act_l), "reward": np.stack(rew_l)}
    ck = Checkpoint(agent, task, preset, env.spec.to_dict(), {"kind": "none"}, replay,
                    {"env_steps": 0, "seed": seed, "updates": 0, "wall_s": 0.0, "evals": []})
    save_checkpoint(ck, path)
    return path


@pytest.fixture(scope="session")
def make_checkpoint():
    """``build_checkpoint`` itself, for variants (``hil/`` has a conftest too, so tests cannot
    import this module by its name)."""
    return build_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of an untrained cartpole ``small`` checkpoint with 2 real replay episodes."""
    return build_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt")


@pytest.fixture(scope="session")
def traced_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint with an importance trace of 3 real TD-MPC updates (as --importance writes)."""
    import torch

    from cpr_edge.agents.checkpoint import load_checkpoint, save_checkpoint
    from cpr_edge.importance.posthoc import replay_buffer
    from cpr_edge.importance.tracker import ImportanceTracker

    ck = load_checkpoint(tiny_checkpoint)
    tracker = ImportanceTracker()
    ck.agent.hooks.append(tracker)
    buf = replay_buffer(ck.agent, ck.replay)
    torch.manual_seed(0)
    for step in range(3):
        ck.agent.update(buf.sample(16), 10**6 + step)
    ck.agent.hooks.remove(tracker)
    ck.extra["importance"] = tracker.state_dict()
    path = tmp_path_factory.mktemp("traced") / "traced.pt"
    save_checkpoint(ck, path)
    return path


@pytest.fixture(scope="session")
def shipped_cartpole_small():
    """Path of the shipped, trained cartpole-swingup ``small`` checkpoint."""
    from cpr_edge.agents.checkpoint import shipped_checkpoint_path

    return shipped_checkpoint_path("cartpole-swingup", "small")


@pytest.fixture(scope="session")
def hil_model_dir(tiny_checkpoint, tmp_path_factory):
    """Export folder of ``tiny_checkpoint`` (real export) with its firmware built for
    qemu-mps2-an386 in ``firmware/qemu-mps2-an386`` (the layout ``cpr-edge hil`` expects)."""
    from cpr_edge.firmware_build import build_firmware
    from cpr_edge.export.pipeline import export_checkpoint

    model = tmp_path_factory.mktemp("hil") / "model"
    export_checkpoint(tiny_checkpoint, model)
    build_firmware("qemu-mps2-an386", model, model / "firmware" / "qemu-mps2-an386")
    return model


@pytest.fixture(scope="session")
def codegen_odd_float_export(tmp_path_factory):
    """Export folder (real export: float I/O, per-tensor weights) of an untrained checkpoint
    whose encoder/policy widths are odd, as structured pruning leaves them (codegen tests)."""
    from cpr_edge.export.pipeline import export_checkpoint

    root = tmp_path_factory.mktemp("codegen_odd")
    ck = build_checkpoint(root / "odd.pt", encoder=[179], pi=[61, 37], latent_dim=23)
    export_checkpoint(ck, root / "model", io="float", granularity="per-tensor")
    return root / "model"


SMALL_FLASH_BYTES = 128 * 1024
"""Boards with less flash than this cannot hold ``hil_model_dir``'s image (about 100 KB: the
small preset's 94 KB of int8 weights plus 7 KB of code); bluepill-f103c8 has 64 KB."""


@pytest.fixture(scope="session")
def firmware_builds(hil_model_dir, tmp_path_factory, request):
    """``{board name: (build result dict, output folder)}``: ``hil_model_dir``'s model built
    by ``cpr_edge.firmware_build.build_firmware`` for every board definition, real boards included
    (firmware build and QEMU tests). A board with less than SMALL_FLASH_BYTES of flash gets
    the narrow ``codegen_odd_float_export`` model instead (its codegen.json is in its build)."""
    from cpr_edge.boards import list_boards, load_board
    from cpr_edge.firmware_build import build_firmware

    root = tmp_path_factory.mktemp("firmware")

    def model_for(name):
        if load_board(name).flash_size < SMALL_FLASH_BYTES:
            return request.getfixturevalue("codegen_odd_float_export")
        return hil_model_dir

    return {name: (build_firmware(name, model_for(name), root / name), root / name)
            for name in list_boards()}
