"""report.json / report.md / plots of a real HIL run, and ``cpr-edge report`` comparisons."""
from __future__ import annotations

import json

import pytest

from cpr_edge.cli import main

pytestmark = [pytest.mark.qemu]
BOARD = "qemu-mps2-an386"


@pytest.fixture(scope="module")
def run_result(hil_model_dir):
    from cpr_edge.boards import load_board
    from cpr_edge.hil.commands import export_checkpoint_path, firmware_of
    from cpr_edge.hil.run import HilConfig, run_hil

    elf, memory = firmware_of(hil_model_dir, BOARD)
    cfg = HilConfig(board=load_board(BOARD), model_dir=hil_model_dir, firmware=elf,
                    checkpoint=export_checkpoint_path(hil_model_dir), memory=memory, episodes=1)
    return cfg, run_hil(cfg)


def test_report_files_and_format(run_result, tmp_path):
    from cpr_edge.report.write import write_report

    cfg, (result, episodes) = run_result
    prune = {"metric": "fisher", "ratio": 0.5,
             "importance": {"per_component": {"encoder": 0.8, "pi": 0.3}},
             "kept_fraction": {"encoder": 0.6, "pi": 0.4}}
    fit = {"board": BOARD, "margin": 0.1, "limits": {"flash_bytes": 4 << 20, "ram_bytes": 4 << 20,
                                                     "latency_budget_s": 0.08},
           "probes": [{"ratio": 0.5, "precision": "int8", "flash_bytes": 50_000, "ram_bytes": 9000,
                       "latency_s_estimate": None, "fits": True, "binding": "flash"}],
           "chosen": {"ratio": 0.5, "precision": "int8", "binding": "flash", "why": None}}
    rep = write_report(tmp_path, result, episodes, prune_report=prune, timings={"hil": 1.5}, extra={"fit": fit})
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(rep))
    assert on_disk["format"] == "cpr-edge/report" and on_disk["version"] == 2
    for c in on_disk["checks"]:
        assert set(c) >= {"name", "passed", "value", "threshold"}
    assert on_disk["passed"] == all(c["passed"] for c in on_disk["checks"])
    assert on_disk["tools"]["qemu-system-arm"].startswith("QEMU emulator version")
    assert on_disk["tools"]["tflite-micro"] and len(on_disk["model"]["sha256"]) == 64
    assert sorted(on_disk["plots"]) == ["fit.png", "importance.png", "latency.png", "memory.png", "returns.png"]
    c = on_disk["constraints"]
    assert c["flash"]["used"] == result["memory"]["flash"]["total"] and c["ram"]["limit"] == 4 << 20
    assert c["latency"]["used"] == result["latency"]["p99_s_estimate"] and c["latency"]["estimate"]
    assert c["binding"] == min(("flash", "ram", "latency"), key=lambda k: c[k]["headroom_fraction"])
    for p in on_disk["plots"]:
        assert (tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "report.md").read_text()
    assert "| check | value | threshold | result | note |" in md
    assert all(f"| {c['name']} |" in md for c in on_disk["checks"])
    assert "estimate" in md  # QEMU latency is labelled an estimate
    assert f"## Headroom on {BOARD}" in md and "**binding constraint: " in md
    assert "## Fit to the board" in md and "**0.5 (chosen)**" in md


def test_failed_check_fails_the_run_and_compare(run_result, tmp_path, capsys):
    from cpr_edge.hil import checks
    from cpr_edge.report.write import write_report

    cfg, (result, episodes) = run_result
    write_report(tmp_path / "a", result, episodes)
    tight = dict(result)
    lat = checks.latency_check(episodes.runs["pruned_board"][0].invoke_counts, "instructions", 25_000_000, 1e-6)
    assert not lat["passed"]
    tight["checks"] = [lat if c["name"] == "latency_p99" else c for c in result["checks"]]
    tight["passed"] = all(c["passed"] for c in tight["checks"])
    assert not tight["passed"]
    write_report(tmp_path / "b", tight, episodes)
    assert "**FAIL**" in (tmp_path / "b" / "report.md").read_text()

    rc = main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp"), "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["passed"] for r in rows] == [result["passed"], False]
    # one episode: the return statistics are INCONCLUSIVE (failed) in both; b adds the latency
    assert rows[1]["failed_checks"] == [c["name"] for c in tight["checks"] if not c["passed"]]
    assert "latency_p99" in rows[1]["failed_checks"] and "latency_p99" not in rows[0]["failed_checks"]
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert table.count(f"| {BOARD} (") == 2 and "latency_p99" in table
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_report_command_refuses_bad_folders(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no report.json" in capsys.readouterr().err
    (tmp_path / "report.json").write_text("{}")
    assert main(["report", str(tmp_path)]) == 2
    assert "not a cpr-edge report" in capsys.readouterr().err
