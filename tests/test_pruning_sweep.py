"""``cpr-edge sweep`` runs its cells on a local Ray it starts and stops, resumes from its CSV
(failed cells retried, a finished sweep starts no Ray) and plots; ``cpr-edge boundary`` bisects."""
from __future__ import annotations

import csv
import importlib.metadata
import json

import pytest

from cpr_edge.errors import CprError


def _live_ray_processes(session_dir: str) -> list[str]:
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if session_dir in cmd:
            found.append(cmd[:120])
    return found


def test_sweep_on_ray_failed_cell_rerun_and_resume(tiny_checkpoint, tmp_path, capsys):
    from cpr_edge.cli import main

    argv = ["sweep", "--checkpoint", str(tiny_checkpoint), "--metrics", "l1,random", "--seeds", "0",
            "--recover", "none,distill", "--episodes", "1", "--recover-steps", "10", "--out", str(tmp_path), "--json"]
    # ratio 0.99 is beyond what the component allocation can remove (at most 0.985): those cells raise
    assert main(argv + ["--ratios", "0.5,0.99", "--workers", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["engine"], out["ray_version"], out["workers"]) == ("ray", importlib.metadata.version("ray"), 2)
    assert out["ray_started"] and out["cells"] == {"total": 4, "run": 4, "skipped": 0, "failed": 2}
    assert not _live_ray_processes(out["ray_session_dir"])  # the command's Ray is gone with it
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    ok = {(r["metric"], r["recover"]) for r in rows if r["status"] == "ok"}
    assert ok == {("l1", "none"), ("l1", "distill"), ("random", "none"), ("random", "distill")}
    assert all(float(r["removed_deployed"]) >= 0.5 for r in rows if r["status"] == "ok")
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 4 and all(r["ratio"] == "0.99" and "not reachable" in r["error"] for r in failed)
    assert (tmp_path / "sweep_return.png").stat().st_size > 1000
    assert {(s["metric"], s["recover"]) for s in out["summary"]} >= {("random", "distill")}
    ok_before = [r for r in rows if r["status"] == "ok"]
    # a rerun retries only the failed cells; the finished rows stay as they were
    assert main(argv + ["--ratios", "0.5,0.99"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cells"] == {"total": 4, "run": 2, "skipped": 2, "failed": 2} and again["workers"] == 1
    assert [r for r in csv.DictReader(open(tmp_path / "sweep.csv")) if r["status"] == "ok"] == ok_before
    # the finished part of the sweep: no cell to run, no Ray started, the CSV untouched
    before = (tmp_path / "sweep.csv").read_text()
    assert main(argv + ["--ratios", "0.5"]) == 0
    cap = capsys.readouterr()
    done = json.loads(cap.out)
    assert done["cells"]["run"] == 0 and not done["ray_started"] and "Ray not started" in cap.err
    assert (tmp_path / "sweep.csv").read_text() == before


def test_sweep_reads_a_csv_without_status_columns(tmp_path):
    from cpr_edge.pruning.sweep import FIELDS_V1, FIELDS_V2, read_rows, write_rows

    later = {"latent_cap": "0.75", "quant": "", "return_quant_unpruned": "", "return_quant": ""}
    row = dict.fromkeys(FIELDS_V1, "1")
    write_rows(tmp_path / "sweep.csv", [row], FIELDS_V1)
    assert read_rows(tmp_path / "sweep.csv") == [{**row, "status": "ok", "error": "", **later}]
    row = dict.fromkeys(FIELDS_V2, "1")  # before --latent-cap and --quant: the default cap, no quantised return
    write_rows(tmp_path / "sweep.csv", [row], FIELDS_V2)
    assert read_rows(tmp_path / "sweep.csv") == [{**row, **later}]
    write_rows(tmp_path / "sweep.csv", [{**row, "extra": "x"}], [*FIELDS_V2, "extra"])
    with pytest.raises(CprError, match="not a sweep CSV of this version"):
        read_rows(tmp_path / "sweep.csv")


def test_boundary_bisects_on_ray(tiny_checkpoint, capsys):
    from cpr_edge.cli import main

    assert main(["boundary", "--checkpoint", str(tiny_checkpoint), "--metrics", "l1", "--iters", "2",
                 "--fraction", "0.01", "--episodes", "1", "--recover", "none", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["engine"] == "ray" and res["workers"] == 1
    tried = res["metrics"]["l1"]["tried"]
    # a 1% threshold is met at 0.45, so the second probe is halfway up: 0.675
    assert [t["ratio"] for t in tried] == [0.45, 0.675] and tried[0]["safe"]
    assert res["metrics"]["l1"]["ratio"] >= 0.45 and res["metrics"]["l1"]["status"] == "ok"


def test_sweep_bad_metric_is_one_line(tiny_checkpoint, tmp_path, capsys):
    from cpr_edge.cli import main

    rc = main(["sweep", "--checkpoint", str(tiny_checkpoint), "--metrics", "l1,taylor", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("cpr-edge: error: unknown metric 'taylor'") and "\n" not in err
    assert not (tmp_path / "s").exists()
    assert main(["sweep", "--checkpoint", str(tiny_checkpoint), "--workers", "0", "--out", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.strip() == "cpr-edge: error: --workers must be at least 1, got 0"
