"""``cpr-edge prune-and-flash`` end to end on QEMU (tiny checkpoint, three episodes)."""
from __future__ import annotations

import hashlib
import json

import pytest

from cpr_edge.cli import main
from cpr_edge.pipeline import STAGES


@pytest.mark.qemu
@pytest.mark.slow
def test_prune_and_flash_end_to_end(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    # 3 paired episodes, the fewest the paired return checks can decide with (one pair has no
    # variance: always INCONCLUSIVE, exit 1); on cartpole the per-seed ratios of this run stay
    # within ~2 % of each other, so 3 suffice (measured: return_ratio lower bound 0.969)
    rc = main(["prune-and-flash", "--checkpoint", str(tiny_checkpoint), "--episodes", "3",
               "--recover-steps", "20", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    report = json.loads((out / "report.json").read_text())
    failed = [c for c in report["checks"] if not c["passed"]]
    # deterministic (fixed seeds, bit-exact board): this run passes every check, exit status 0
    assert rc == 0 and report["passed"] and summary["passed"] and not failed, failed
    for i, stage in enumerate(STAGES, 1):  # every stage announced its progress
        assert f"[{i}/9]" in captured.err
        assert stage in report["timings"]
    checks = {c["name"]: c for c in report["checks"]}
    for name in ("return_ratio", "int8_fidelity"):  # decided by the one-sided 95 % bound
        c = checks[name]
        assert c["verdict"] == "PASS" and c["episodes"] == 3 and c["lower_95"] >= c["threshold"], c
    names = set(checks)
    assert {"return_ratio", "int8_fidelity", "latency_p99", "memory_fits", "board_episodes_completed",
            "baseline_board_episodes_completed"} <= names
    # held-out seeds, and the baseline checkpoint is the one pruned from
    assert not set(report["seeds_used"]["check"]) & set(report["seeds_used"]["selection"])
    assert report["identity"]["baseline"]["checkpoint_sha256"] == hashlib.sha256(
        tiny_checkpoint.read_bytes()).hexdigest()
    assert report["baselines_missing"] == {}
    # the board ran the pruned model; baseline (b) ran the unpruned one on the same board
    sha = hashlib.sha256((out / "model" / "model_int8.tflite").read_bytes()).hexdigest()
    base_sha = hashlib.sha256((out / "baseline" / "model_int8.tflite").read_bytes()).hexdigest()
    assert report["model"]["sha256"] == sha != base_sha
    assert report["boards"]["unpruned_int8_board"]["model_sha256"] == base_sha
    assert set(report["returns"]) == {"pruned_board", "unpruned_float_host", "unpruned_int8_board",
                                      "pruned_float_host"}
    assert {len(v) for v in report["returns"].values()} == {3}
    prune = json.loads((out / "prune.json").read_text())
    assert prune["params"]["deployed"]["after"] < prune["params"]["deployed"]["before"]
    assert (out / "pruned.pt").is_file() and (out / "report.md").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--ratio", "1.5"], "ratio"),
    (["--board", "no-such-board"], "no-such-board"),
    (["--episodes", "0"], "--episodes"),
    (["--budget", "fast"], "--budget"),
    (["--board", "nucleo-f446re"], "--port"),
])
def test_prune_and_flash_refuses_bad_arguments(tiny_checkpoint, tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    rc = main(["prune-and-flash", "--checkpoint", str(tiny_checkpoint), "--out", str(out), *argv])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("cpr-edge: error:") and message in err
    assert not out.exists()
