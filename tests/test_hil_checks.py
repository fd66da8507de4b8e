"""Every check of report.json fails on a constructed bad case, and the references and seeds of
a run are honest (issue 16). Fast: no board, except where an export folder is needed."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cpr_edge.errors import CprError
from cpr_edge.hil import checks

BOARD = "qemu-mps2-an386"


# -- return_ratio (item 2) ------------------------------------------------------------------

def test_return_ratio_fails_on_all_zero_returns():
    c = checks.return_ratio_check([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    assert not c["passed"] and c["value"] is None


def test_return_ratio_fails_when_a_mean_hides_a_collapsed_episode():
    c = checks.return_ratio_check([900.0, 0.0, 0.0], [300.0, 300.0, 300.0])
    assert c["value"] == 1.0 and not c["passed"]
    assert c["per_seed_ratio"] == [3.0, 0.0, 0.0]


def test_return_ratio_fails_below_threshold_and_passes_a_faithful_run():
    assert not checks.return_ratio_check([280.0, 280.0], [300.0, 300.0], 0.95)["passed"]
    assert not checks.return_ratio_check([300.0], [300.0, 300.0])["passed"]  # unpaired
    # a faithful run: the bound clears the threshold once the pairs are tight enough
    ok = checks.return_ratio_check([300.0, 298.0, 301.0, 299.0], [300.0, 300.0, 300.0, 300.0])
    assert ok["passed"] and ok["verdict"] == "PASS" and ok["lower_95"] >= 0.95


# -- statistics (issue 12 item 9): one-sided bounds, INCONCLUSIVE with the count to decide --

def test_a_high_variance_task_at_three_episodes_is_inconclusive_not_passed():
    """The cheetah-run case of issue 12: ratio 1.375 on 3 episodes whose float references sit
    far from each other; the paired spread leaves the bound below the threshold."""
    c = checks.return_ratio_check([250.0, 130.0, 252.7], [240.0, 60.0, 160.2], 0.95)
    assert c["value"] > 0.95 and c["verdict"] == "INCONCLUSIVE" and not c["passed"]
    assert c["lower_95"] < 0.95 < c["upper_95"] and c["episodes_needed"] > 3
    assert "episodes would decide it" in c["note"]


def test_one_episode_is_never_a_pass_and_a_clear_loss_is_a_fail():
    one = checks.return_ratio_check([300.0], [300.0])
    assert one["verdict"] == "INCONCLUSIVE" and not one["passed"] and one["lower_95"] is None
    bad = checks.return_ratio_check([200.0, 210.0, 205.0], [300.0, 301.0, 299.0])
    assert bad["verdict"] == "FAIL" and bad["upper_95"] < 0.95


def test_default_episode_count_follows_the_task_spread():
    from cpr_edge.hil.stats import default_episodes

    assert 3 <= default_episodes("cartpole-swingup") < default_episodes("reacher-easy")


# -- int8_fidelity (issue 9 item 6) ---------------------------------------------------------

def test_int8_fidelity_fails_when_quantisation_costs_return():
    err = {"mean_abs": 0.1, "p99_abs": 0.4, "max_abs": 0.6, "max_lsb": 74.0, "observations": 100}
    bad = checks.int8_fidelity_check([845.5, 840.0], [862.7, 862.7], 0.98, err)
    assert bad["name"] == "int8_fidelity" and not bad["passed"] and bad["value"] < 0.98
    assert bad["action_error"]["max_lsb"] == 74.0 and bad["threshold"] == 0.98
    assert not checks.int8_fidelity_check([860.0, 0.0, 860.0], [862.0, 862.0, 862.0], 0.5)["passed"]
    good = checks.int8_fidelity_check([860.0, 858.0, 861.0], [862.7, 862.7, 862.7], 0.98, err)
    assert good["passed"] and good["verdict"] == "PASS"  # same statistics as return_ratio
    assert checks.int8_fidelity_check([860.0], [862.7], 0.98, err)["verdict"] == "INCONCLUSIVE"


# -- latency (item 8): counts named by their unit, seconds from instructions an estimate -----

def test_latency_names_instructions_and_estimates():
    counts = np.array([40_000, 40_040, 80_000], np.int64)
    st = checks.latency_stats(counts, "instructions", 25_000_000)
    assert "p99_s" not in st and st["p99_s_estimate"] == pytest.approx(st["p99"] / 25e6)
    assert st["unit"] == "instructions" and "1 cycles per instruction" in st["seconds_basis"]
    assert st["cycles_per_instruction_basis"] == "one cycle per instruction assumed"  # no board model given
    real = checks.latency_stats(counts, "cycles", 64_000_000)
    assert "p99_s_estimate" not in real and real["p99_s"] == pytest.approx(real["p99"] / 64e6)
    over = checks.latency_check(counts, "instructions", 25_000_000, budget_s=1e-3)
    assert not over["passed"] and over["estimate"] and over["unit"] == "s (estimate)"
    assert checks.latency_check(counts, "cycles", 25_000_000, budget_s=0.01)["passed"]
    assert not checks.latency_check(np.zeros(0), "cycles", 25_000_000, 1.0)["passed"]


# -- memory (item 9): stack measured and checked, the reserve not counted as used -----------

MEMORY = {"flash": {"total": 100_000, "capacity": 4_194_304},
          "ram": {"data": 100, "bss": 12_000, "stack_reserved": 8192, "total": 20_292, "capacity": 4_194_304}}


def test_memory_check_measures_the_stack():
    ok = checks.memory_check(MEMORY, {"stack_size": 8192, "stack_used": 1500})
    assert ok["passed"] and ok["value"]["ram_measured"] == 100 + 12_000 + 1500
    assert not checks.memory_check(MEMORY, None)["passed"]  # not measured: not proven
    assert not checks.memory_check(MEMORY, {"stack_size": 8192, "stack_used": 8192})["passed"]
    assert not checks.memory_check(MEMORY, {"stack_size": 4096, "stack_used": 100})["passed"]
    tight = json.loads(json.dumps(MEMORY))
    tight["flash"]["capacity"] = 50_000
    assert not checks.memory_check(tight, {"stack_size": 8192, "stack_used": 100})["passed"]
    tight = json.loads(json.dumps(MEMORY))
    tight["ram"]["capacity"] = 16_000  # static + reserve 20292 > 16000
    assert not checks.memory_check(tight, {"stack_size": 8192, "stack_used": 100})["passed"]


def test_completion_check_fails_on_a_failed_or_missing_episode():
    class E:
        def __init__(self, seed, failed):
            self.seed, self.failed = seed, failed

    assert checks.completion_check([E(1, None), E(2, None)])["passed"]
    assert not checks.completion_check([E(1, None), E(2, "step 3: no reply")])["passed"]
    assert not checks.completion_check([])["passed"]


# -- held-out seeds (item 3) -----------------------------------------------------------------

def test_check_seeds_are_held_out_from_the_selection_seeds():
    from cpr_edge.hil.closed_loop import check_seeds, eval_seeds

    for seed in range(3):
        chosen = eval_seeds(20, seed)
        assert not set(check_seeds(20, seed)) & set(chosen)
    with pytest.raises(CprError, match="not held out"):
        check_seeds(3, 0, selection=[100_001])


# -- host baselines apply the checkpoint's normalisation (item 5) ----------------------------

def test_host_float_baseline_normalises_like_the_export(make_checkpoint, tmp_path):
    from cpr_edge.agents.checkpoint import load_checkpoint, save_checkpoint
    from cpr_edge.export.onnx_graph import reference_actions
    from cpr_edge.hil.run import _policy

    path = make_checkpoint(tmp_path / "n.pt")
    ck = load_checkpoint(path)
    obs = ck.replay["obs"].reshape(-1, 5)[:50].astype(np.float32)
    ck.normalization = {"kind": "affine", "mean": obs.mean(0).tolist(), "std": (obs.std(0) + 0.1).tolist()}
    save_checkpoint(ck, tmp_path / "affine.pt")
    loaded, policy = _policy(tmp_path / "affine.pt")
    got = np.stack([policy(o) for o in obs])
    want = reference_actions(loaded, obs)  # what the export compares the int8 model with
    np.testing.assert_allclose(got, want, atol=1e-6)
    raw = np.stack([loaded.agent.policy_action(o) for o in obs])
    assert np.max(np.abs(raw - want)) > 1e-3  # the raw-observation policy would be another controller


# -- reference from the export folder, HELLO checked against it (item 6) ---------------------

def test_reference_comes_from_the_export_and_hello_is_checked(hil_model_dir):
    from cpr_edge.hil.link import Hello
    from cpr_edge.hil.reference import Int8Reference

    ref = Int8Reference(hil_model_dir)
    info = json.loads((hil_model_dir / "export.json").read_text())
    assert ref.input_q.scale == pytest.approx(info["input"]["scale"], rel=1e-7)
    good = Hello(2, "instructions", 5, 1, 25_000_000, ref.input_q.scale, ref.input_q.zero_point,
                 ref.output_q.scale, ref.output_q.zero_point, info["sha256"], 1, 7, 0, 10, BOARD,
                 "cpr-edge x src y")
    ref.check_hello(good)
    for field, value in (("input_scale", ref.input_q.scale * 1.001), ("input_zero_point", ref.input_q.zero_point + 1),
                         ("output_scale", ref.output_q.scale * 2), ("output_zero_point", 5)):
        bad = Hello(**{**good.to_dict(), field: value})
        with pytest.raises(CprError, match=field):
            ref.check_hello(bad)


# -- identity (items 1 and 7) -----------------------------------------------------------------

@pytest.fixture(scope="module")
def other_checkpoint(make_checkpoint, tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("other") / "other.pt", seed=3)


def test_hil_refuses_another_checkpoint_in_one_line(hil_model_dir, other_checkpoint, tmp_path, capsys):
    from cpr_edge.cli import main

    rc = main(["hil", "--board", BOARD, "--model", str(hil_model_dir), "--checkpoint", str(other_checkpoint),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "is not the one" in err, err
    assert not (tmp_path / "out").exists()


def test_stale_or_foreign_firmware_is_refused(hil_model_dir, tmp_path, capsys):
    from cpr_edge.cli import main
    from cpr_edge.hil.identity import check_firmware

    fw = tmp_path / "firmware" / BOARD
    shutil.copytree(hil_model_dir / "firmware" / BOARD, fw)
    mem = json.loads((fw / "memory.json").read_text())
    check_firmware(hil_model_dir, fw / "firmware.elf", mem)  # the real build belongs
    with pytest.raises(CprError, match="stale firmware"):
        check_firmware(hil_model_dir, fw / "firmware.elf", {**mem, "firmware_source_id": "0" * 16})
    with pytest.raises(CprError, match="not the ELF"):
        check_firmware(hil_model_dir, fw / "firmware.elf", {**mem, "elf_sha256": "0" * 64})
    with pytest.raises(CprError, match="built from model"):
        check_firmware(hil_model_dir, fw / "firmware.elf", {**mem, "model_sha256": "0" * 64})
    (fw / "memory.json").write_text(json.dumps({**mem, "firmware_source_id": "0" * 16}))
    rc = main(["hil", "--board", BOARD, "--model", str(hil_model_dir), "--firmware", str(fw / "firmware.elf"),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "stale firmware" in err, err


def test_hello_must_name_the_recorded_firmware_sources():
    from cpr_edge.firmware_build.identity import fw_version, source_id_of
    from cpr_edge.hil.identity import check_hello_identity

    ident = {"firmware_source_id": "abcdef0123456789", "elf_sha256": "0" * 64}
    check_hello_identity({"fw_version": fw_version("0.1.0", "abcdef0123456789")}, ident)
    with pytest.raises(CprError, match="stale"):
        check_hello_identity({"fw_version": "cpr-edge 0.1.0"}, ident)  # main's version string
    assert source_id_of("cpr-edge 0.1.0 src 1234") == "1234" and source_id_of("cpr-edge 0.1.0") is None
