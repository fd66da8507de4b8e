"""``cpr-edge hil`` on an ``export --policy`` folder (a plain nn.Sequential, no task) is refused
in one line before anything is built or booted: there is no task to run episodes on."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cpr_edge.cli import main

MESSAGE = "it has no task to run closed-loop episodes on; check it on the board with cpr-edge validate --board BOARD"


@pytest.fixture(scope="module")
def policy_export(tmp_path_factory):
    """A real ``cpr-edge export --policy`` folder of a small random policy."""
    root = tmp_path_factory.mktemp("policy")
    torch.manual_seed(0)
    torch.save(nn.Sequential(nn.Linear(5, 8), nn.ELU(), nn.Linear(8, 1), nn.Tanh()), root / "policy.pt")
    np.save(root / "obs.npy", np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32))
    assert main(["export", "--policy", str(root / "policy.pt"), "--calibration", str(root / "obs.npy"),
                 "--out", str(root / "export")]) == 0
    return root


@pytest.mark.parametrize("extra", [[], ["--checkpoint", "CK"], ["--baseline", "SELF"]])
def test_hil_refuses_a_policy_export_in_one_line(policy_export, tiny_checkpoint, tmp_path, capsys, extra):
    model = policy_export / "export"
    extra = [{"CK": str(tiny_checkpoint), "SELF": str(model)}.get(a, a) for a in extra]
    rc = main(["hil", "--board", "qemu-mps2-an386", "--model", str(model), "--out", str(tmp_path / "hil"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err, err
    assert err.startswith(f"cpr-edge: error: {model} is an export of a plain policy (source sequential): ")
    assert MESSAGE in err
    assert not (tmp_path / "hil").exists() and not (model / "firmware").exists()  # nothing built, no report


def test_run_hil_refuses_it_before_the_identity_checks(policy_export, tiny_checkpoint, tmp_path):
    from cpr_edge.boards import load_board
    from cpr_edge.errors import CprError
    from cpr_edge.hil.run import HilConfig, run_hil

    cfg = HilConfig(board=load_board("qemu-mps2-an386"), model_dir=policy_export / "export",
                    firmware=tmp_path / "firmware.elf", checkpoint=tiny_checkpoint, log_dir=tmp_path / "logs")
    with pytest.raises(CprError, match="no task to run closed-loop episodes"):
        run_hil(cfg)
    assert not (tmp_path / "logs").exists()


def test_prune_and_flash_cannot_take_the_policy_file(policy_export, tmp_path, capsys):
    """prune-and-flash starts from a TD-MPC checkpoint: the plain policy file is refused as one."""
    rc = main(["prune-and-flash", "--checkpoint", str(policy_export / "policy.pt"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("cpr-edge: error: ") and "\n" not in err, err
    assert not (tmp_path / "run").exists()
