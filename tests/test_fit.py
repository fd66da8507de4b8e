"""Fit to the board (cpr_edge.fit): the search's bracketing, the judgement of a probe, the
latency model, and an unfittable request refused in one line with nothing written, probed for
real (prune, export, build, QEMU instruction count) on the 8 KB qemu-stm32vldiscovery."""
from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest

from cpr_edge.boards import load_board
from cpr_edge.errors import CprError
from cpr_edge.fit.probe import Limits, judge, latency_estimate_s
from cpr_edge.fit.search import FitConfig, _search_one, check_config, unfittable_message
from cpr_edge.hil.checks import latency_check, latency_stats
from cpr_edge.hil.commands import budget_from_args

LIMITS = Limits(flash_bytes=100_000, ram_bytes=8_000, latency_budget_s=0.01)


def row(ratio, flash, ram=4000, lat=0.001):
    return judge({"ratio": ratio, "flash_bytes": flash, "ram_bytes": ram, "latency_s_estimate": lat},
                 LIMITS, 0.1)


def synthetic(boundary_flash_at: int, n: int = 48):
    """Flash falling linearly with the grid index; ``calls`` records the probes."""
    calls = []

    def probe(i):
        calls.append(i)
        return row(i / n, 90_000 + (boundary_flash_at - i) * 1_000)
    return probe, calls


@pytest.mark.parametrize("boundary", [1, 7, 23, 40, 47])
def test_search_finds_the_smallest_fitting_grid_index_next_to_one_that_does_not(boundary):
    probe, calls = synthetic(boundary)
    index, rows = _search_one(probe, 48)
    assert index == boundary
    assert rows[index]["fits"] and not rows[index - 1]["fits"]
    assert len(calls) == len(set(calls)) <= 9  # bracketing, not a scan of 49 ratios


def test_search_stops_at_ratio_zero_when_the_unpruned_model_fits_and_at_none_when_nothing_does():
    probe, calls = synthetic(-5)
    assert _search_one(probe, 48)[0] == 0 and calls == [48, 0]
    probe, calls = synthetic(60)
    index, rows = _search_one(probe, 48)
    assert index is None and calls == [48]  # one probe proves it unfittable


def test_judge_names_the_constraint_nearest_or_over_its_limit_with_the_margin():
    assert row(0.5, 89_000)["fits"] and row(0.5, 89_000)["binding"] == "flash"
    r = row(0.5, 91_000)  # under 100 000 but over 90 % of it
    assert not r["fits"] and r["binding"] == "flash"
    r = row(0.5, 10_000, ram=7_500)
    assert not r["fits"] and r["binding"] == "ram"
    r = row(0.5, 10_000, lat=0.0095)
    assert not r["fits"] and r["binding"] == "latency"
    r = judge({"ratio": 0.1, "flash_bytes": 200_000, "ram_bytes": 4000, "latency_s_estimate": None}, LIMITS, 0.1)
    assert not r["fits"] and r["binding"] == "flash"  # too big to boot: latency unmeasured
    r = judge({"ratio": 0.9, "flash_bytes": 1000, "ram_bytes": 1000, "latency_s_estimate": None}, LIMITS, 0.1)
    assert not r["fits"]  # every constraint must be measured to fit


def test_unfittable_message_names_the_binding_constraint_and_the_best_figure():
    rows = [row(0.96, 20_000, lat=0.05), row(0.0, 300_000, lat=None)]
    msg = unfittable_message(load_board("qemu-stm32vldiscovery"), rows, LIMITS, 0.1)
    assert "latency binds" in msg and "50 ms (estimate)" in msg and "9 ms" in msg and "0.96" in msg
    assert "\n" not in msg


def test_fit_config_is_checked():
    for bad in (FitConfig(margin=-0.1), FitConfig(margin=0.6), FitConfig(grid_step=0), FitConfig(max_ratio=1.0)):
        with pytest.raises(CprError):
            check_config(bad)


def test_latency_model_scales_instruction_counts_by_the_boards_cycles_per_instruction():
    b = load_board("qemu-stm32vldiscovery")
    assert b.cycles_per_instruction > 1.0 and "wait state" in b.latency_basis.lower()
    assert latency_estimate_s(b, 1_000_000) == pytest.approx(1e6 * b.cycles_per_instruction / b.clock_hz)
    counts = np.full(10, 1_000_000)
    st = latency_stats(counts, "instructions", b.clock_hz, b.cycles_per_instruction, b.latency_basis)
    assert st["p99_s_estimate"] == pytest.approx(latency_estimate_s(b, 1_000_000))
    assert st["cycles_per_instruction_basis"] == b.latency_basis
    # cycles (DWT on a real board) are a measured time: no factor
    assert latency_stats(counts, "cycles", 1_000_000, 3.0)["p99_s"] == pytest.approx(1.0)
    budget = 1e6 * 1.0 / b.clock_hz * 1.01  # holds at one cycle per instruction, not at the model's
    assert not latency_check(counts, "instructions", b.clock_hz, budget, b.cycles_per_instruction)["passed"]
    assert latency_check(counts, "instructions", b.clock_hz, budget, 1.0)["passed"]


def test_control_hz_sets_the_budget_and_excludes_budget():
    ns = lambda **kw: argparse.Namespace(**{"budget": None, "control_hz": None, **kw})
    assert budget_from_args(ns(control_hz=500.0)) == pytest.approx(0.002)
    assert budget_from_args(ns(budget="20ms")) == pytest.approx(0.02)
    assert budget_from_args(ns()) is None
    for bad in (ns(control_hz=0.0), ns(control_hz=100.0, budget="1ms")):
        with pytest.raises(CprError):
            budget_from_args(bad)


def test_a_probe_export_is_refused_by_the_hil(hil_model_dir, tmp_path):
    from cpr_edge.hil.reference import load_export

    d = tmp_path / "probe"
    shutil.copytree(hil_model_dir, d, ignore=shutil.ignore_patterns("firmware"))
    info = json.loads((d / "export.json").read_text())
    load_export(d)  # a verified export is accepted
    (d / "export.json").write_text(json.dumps({**info, "verified": False}))
    with pytest.raises(CprError, match="probe"):
        load_export(d)


@pytest.mark.slow
@pytest.mark.qemu
def test_unfittable_budget_is_one_line_exit_2_naming_latency_with_nothing_written(tiny_checkpoint, tmp_path, capsys):
    """One real probe per precision (the largest removal: prune, export, build, boot, BENCH)
    shows that no ratio meets a 10 µs budget on the 24 MHz part; the run folder is never created."""
    from cpr_edge.cli import main

    out = tmp_path / "run"
    rc = main(["prune-and-flash", "--checkpoint", str(tiny_checkpoint), "--board", "qemu-stm32vldiscovery",
               "--fit", "--budget", "10us", "--episodes", "1", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    last = err[-1]
    assert last.startswith("cpr-edge: error: nothing fits qemu-stm32vldiscovery: latency binds"), last
    assert "ms (estimate) against 0.009 ms" in last and "at removal 0.96" in last
    assert not out.exists()
    # one probe per precision (auto: 16x8, then int8) proves it; the unpruned model is never probed
    probes = [ln.split()[1] + " " + ln.split()[2].rstrip(":") for ln in err if ln.strip().startswith("probe ")]
    assert probes == ["0.96 16x8", "0.96 int8"]


def test_fit_and_ratio_together_are_refused(tiny_checkpoint, tmp_path, capsys):
    from cpr_edge.cli import main

    rc = main(["prune-and-flash", "--checkpoint", str(tiny_checkpoint), "--fit", "--ratio", "0.5",
               "--out", str(tmp_path / "x")])
    assert rc == 2 and "not both" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
