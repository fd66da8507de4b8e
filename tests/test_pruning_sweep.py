"""``cpr-edge sweep`` resumes from its CSV and plots; ``cpr-edge boundary`` bisects."""
from __future__ import annotations

import csv
import json


def test_sweep_writes_rows_resumes_and_plots(tiny_checkpoint, tmp_path, capsys):
    from cpr_edge.cli import main

    argv = ["sweep", "--checkpoint", str(tiny_checkpoint), "--metrics", "l1,random", "--ratios", "0.5",
            "--seeds", "0", "--recover", "none,distill", "--episodes", "1", "--recover-steps", "10",
            "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert {(r["metric"], r["recover"]) for r in rows} == {("l1", "none"), ("l1", "distill"),
                                                         ("random", "none"), ("random", "distill")}
    assert all(float(r["removed_deployed"]) >= 0.5 for r in rows)
    assert (tmp_path / "sweep_return.png").stat().st_size > 1000
    assert {(s["metric"], s["recover"]) for s in out["summary"]} >= {("random", "distill")}
    # a second run finds every row done: nothing is pruned again, the CSV is unchanged
    before = (tmp_path / "sweep.csv").read_text()
    assert main(argv) == 0
    assert "seed 0: unpruned" not in capsys.readouterr().err
    assert (tmp_path / "sweep.csv").read_text() == before


def test_boundary_bisects(tiny_checkpoint, capsys):
    from cpr_edge.cli import main

    assert main(["boundary", "--checkpoint", str(tiny_checkpoint), "--metrics", "l1", "--iters", "2",
                 "--fraction", "0.01", "--episodes", "1", "--recover", "none", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    tried = res["metrics"]["l1"]["tried"]
    # a 1% threshold is met at 0.45, so the second probe is halfway up: 0.675
    assert [t["ratio"] for t in tried] == [0.45, 0.675] and tried[0]["safe"]
    assert res["metrics"]["l1"]["ratio"] >= 0.45


def test_sweep_bad_metric_is_one_line(tiny_checkpoint, tmp_path, capsys):
    from cpr_edge.cli import main

    rc = main(["sweep", "--checkpoint", str(tiny_checkpoint), "--metrics", "l1,taylor", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("cpr-edge: error: unknown metric 'taylor'") and "\n" not in err
    assert not (tmp_path / "s").exists()
