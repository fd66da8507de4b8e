"""Headroom against the board's limits (report.json ``constraints``), the binding constraint in
report.md, and plots that stay readable on a 4 MB board and on an 8 KB part: axis scales, ranges
and tick counts read back from the matplotlib figures."""
from __future__ import annotations

import numpy as np
import pytest

from cpr_edge.hil.closed_loop import Episode, EpisodeSet
from cpr_edge.report.constraints import constraints, headroom_lines
from cpr_edge.report.figure_file import plt
from cpr_edge.report.headroom_plot import memory_figure
from cpr_edge.report.plots import latency_figure, returns_figure
from cpr_edge.report.write import markdown

SEEDS = [100000, 100001, 100002]


def synthetic_report(flash=(58944, 4 << 20), ram=(11248, 4 << 20), p99_s=0.0081, budget_s=0.08,
                     clock_hz=25_000_000, measured=False, returns_gap=0.0):
    """A report.json as prune-and-flash writes it, with chosen flash / RAM totals and latency
    (``ram`` is memory.json's ``total``: .data + .bss + the reserved stack)."""
    lat = {"estimate": not measured, "budget_s": budget_s, "steps": 300,
           "unit": "cycles" if measured else "instructions", "min": 0.95 * p99_s * clock_hz,
           "max": p99_s * clock_hz, "mean": 0.97 * p99_s * clock_hz, "p50": 0.97 * p99_s * clock_hz,
           "p90": 0.99 * p99_s * clock_hz, "p99": p99_s * clock_hz}
    lat["p99_s" if measured else "p99_s_estimate"] = p99_s
    base = np.array([863.5, 862.9, 862.2])
    return {"format": "cpr-edge/report", "version": 2, "task": "cartpole-swingup", "passed": True,
            "board": {"name": "qemu-stm32vldiscovery" if ram[1] < 65536 else "qemu-mps2-an386",
                      "emulated": True, "counter_unit": lat["unit"], "clock_hz": clock_hz},
            "model": {"sha256": "ab" * 32, "bytes": 60000}, "seeds": SEEDS,
            "returns": {"pruned_board": list(base * (1 - returns_gap)), "unpruned_float_host": list(base),
                        "pruned_float_host": list(base * (1 - returns_gap / 2))},
            "mean_return": {"pruned_board": float(base.mean() * (1 - returns_gap)),
                            "unpruned_float_host": float(base.mean()),
                            "pruned_float_host": float(base.mean() * (1 - returns_gap / 2))},
            "latency": lat,
            "memory": {"flash": {"total": flash[0], "capacity": flash[1]},
                       "ram": {"data": 0, "bss": ram[0] - 2048, "stack_reserved": 2048, "total": ram[0],
                               "capacity": ram[1]}},
            "checks": [{"name": "return_ratio", "passed": True, "value": 1 - returns_gap, "threshold": 0.95},
                       {"name": "int8_fidelity", "passed": True, "value": 1.0, "threshold": 0.98},
                       {"name": "memory_fits", "passed": True, "unit": "bytes",
                        "value": {"flash": flash[0], "ram_static": ram[0] - 2048, "stack_used": 1500},
                        "threshold": {"flash": flash[1], "ram": ram[1], "stack_reserved": 2048}}],
            "tools": {"python": "3"}, "plots": []}


def episodes_for(report, steps=120):
    """An EpisodeSet whose board invoke counts give the report's latency (one per seed)."""
    lat = report["latency"]
    rng = np.random.default_rng(0)
    es = EpisodeSet(seeds=SEEDS)
    es.runs["pruned_board"] = [
        Episode("pruned_board", s, 0.0, steps, np.zeros((steps, 5), np.float32), np.zeros((steps, 1), np.float32),
                rng.uniform(lat["min"], lat["max"], steps)) for s in SEEDS]
    return es


SMALL_RAM_BOUND = dict(flash=(101_000, 128 << 10), ram=(7700, 8192), p99_s=0.056, clock_hz=24_000_000)


def test_ram_bound_small_part():
    c = constraints(synthetic_report(**SMALL_RAM_BOUND))
    assert c["binding"] == "ram"
    assert c["ram"] == {**c["ram"], "used": 7700, "limit": 8192, "headroom": 492, "unit": "B",
                        "stack_reserved": 2048, "stack_used": 1500}
    assert c["ram"]["headroom_fraction"] == pytest.approx(492 / 8192)
    assert c["latency"]["used"] == pytest.approx(0.056) and c["latency"]["estimate"] is True
    text = "\n".join(headroom_lines(c))
    assert "**binding constraint: RAM, 492 B (6.0 %) left**" in text
    assert "| **RAM** | **7700 B** | **8192 B** | **492 B** | **6.0 %** |" in text
    assert "| flash | 98.6 KiB | 128 KiB | 29.4 KiB | 22.9 % |" in text  # not bold: not binding


def test_flash_bound_and_over_the_limit():
    c = constraints(synthetic_report(flash=(140_000, 131072), ram=(6000, 8192), p99_s=0.02))
    assert c["binding"] == "flash"
    assert c["flash"]["headroom"] == 131072 - 140_000 < 0
    assert "**binding constraint: flash, 8928 B (6.8 %) over**" in "\n".join(headroom_lines(c))


def test_latency_bound_says_estimate_or_measured():
    est = constraints(synthetic_report(flash=(60_000, 131072), ram=(4000, 8192), p99_s=0.076))
    assert est["binding"] == "latency"
    assert "**binding constraint: latency, 4 ms (5.0 %) left (estimate)**" in "\n".join(headroom_lines(est))
    real = constraints(synthetic_report(flash=(60_000, 131072), ram=(4000, 8192), p99_s=0.076, measured=True))
    assert real["latency"]["estimate"] is False
    assert "**binding constraint: latency, 4 ms (5.0 %) left**" in "\n".join(headroom_lines(real))


def test_missing_figures_cannot_bind():
    r = synthetic_report(**SMALL_RAM_BOUND)
    r["latency"] = {"steps": 0, "unit": "instructions", "budget_s": 0.08}
    assert set(constraints(r)) == {"flash", "ram", "binding"}
    r["memory"] = None
    assert constraints(r) == {"binding": None}
    assert headroom_lines(constraints(r)) == ["(no flash, RAM or latency figures in this report)"]


def test_report_md_has_headroom_and_fit_sections():
    r = synthetic_report(**SMALL_RAM_BOUND)
    md = markdown(r)
    assert "## Headroom on qemu-stm32vldiscovery" in md and "**binding constraint: RAM" in md
    assert "## Fit to the board" not in md
    r["fit"] = {"board": "qemu-stm32vldiscovery", "probes": [], "chosen": None}
    assert "## Fit to the board" in markdown(r)


def _visible_ticks(axis, lo, hi):
    return [t for t in axis.get_majorticklocs() if lo <= t <= hi]


def test_memory_plot_4mb_board_is_logarithmic_and_readable():
    r = synthetic_report()
    fig = memory_figure(r)
    ax = fig.axes[0]
    try:
        assert ax.get_xscale() == "log"
        lo, hi = ax.get_xlim()
        used = [58944 / (4 << 20), 11248 / (4 << 20), 0.0081 / 0.08]
        assert lo <= min(used) and hi > 1.0 and lo >= min(used) / 10  # a bar of 0.27 % is visible
        bars = [p for p in ax.patches if p.get_facecolor()[3] == 1.0]  # used bars (headroom ones are translucent)
        assert [b.get_x() + b.get_width() for b in bars] == pytest.approx(used)
        assert len(_visible_ticks(ax.xaxis, lo, hi)) <= 5
        assert "100 %\n(limit)" in [ax.xaxis.get_major_formatter()(1.0)]
        bold = [t.get_text() for t in ax.get_yticklabels() if t.get_fontweight() == "bold"]
        assert bold == ["latency p99 (est.)"]  # 10 % of the budget binds on a 4 MB board
        notes = [t.get_text() for t in ax.texts]
        assert any("3.99 MiB (99.7 %) left" in t for t in notes)
    finally:
        plt.close(fig)


def test_memory_plot_small_part_is_linear_to_the_limit():
    fig = memory_figure(synthetic_report(**SMALL_RAM_BOUND))
    ax = fig.axes[0]
    try:
        assert ax.get_xscale() == "linear"
        lo, hi = ax.get_xlim()
        assert lo == 0 and 1.0 < hi <= 1.1
        assert [t.get_text() for t in ax.get_yticklabels() if t.get_fontweight() == "bold"] == ["RAM"]
        assert "binding constraint RAM, 492 B (6.0 %) left" in ax.get_title()
    finally:
        plt.close(fig)


@pytest.mark.parametrize("p99_s, unit", [(0.0081, "ms"), (0.056, "ms"), (0.00042, "µs")])
def test_latency_plot_few_ticks_in_a_unit_by_magnitude(p99_s, unit):
    r = synthetic_report(p99_s=p99_s)
    fig = latency_figure(r, episodes_for(r))
    hist, trace = fig.axes
    try:
        assert f"[{unit}]" in hist.get_xlabel() and f"[{unit}]" in trace.get_ylabel()
        lo, hi = hist.get_xlim()
        assert 2 <= len(_visible_ticks(hist.xaxis, lo, hi)) <= 6
        assert hist.xaxis.get_major_formatter().get_offset() == ""  # no "+8.0e3" offset label
        labels = [t.get_text() for t in trace.get_legend().get_texts()]
        assert "budget 80 ms" in labels
        assert any(t.startswith("p99 ") and f" {unit} (estimate)" in t for t in
                   [x.get_text() for x in hist.get_legend().get_texts()])
        if trace.get_yscale() == "linear":
            assert trace.get_ylim()[1] >= 80 * (1e3 if unit == "ms" else 1e6) * 1e-3
    finally:
        plt.close(fig)


def test_returns_plot_zooms_to_a_2_percent_gap_with_the_threshold_visible():
    r = synthetic_report(returns_gap=0.02)
    fig = returns_figure(r)
    ax = fig.axes[0]
    try:
        lo, hi = ax.get_ylim()
        threshold = 0.95 * r["mean_return"]["unpruned_float_host"]
        values = [v for rets in r["returns"].values() for v in rets]
        assert 0 < lo <= threshold <= hi and lo <= min(values) and max(values) <= hi
        gap = max(values) - min(values)
        assert gap / (hi - lo) > 0.2  # the 2 % gap spans a good part of the axis
        assert "does not start at 0" in ax.get_ylabel()
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert f"threshold: 95 % of (a) unpruned float mean = {threshold:.1f}" in labels
        assert [ln.get_ydata()[0] for ln in ax.lines if ln.get_linestyle() == "--"] == pytest.approx([threshold])
    finally:
        plt.close(fig)


def test_compare_names_each_runs_binding_constraint(tmp_path):
    import json

    from cpr_edge.report.compare import compare

    for name, kw in (("big", {}), ("small", SMALL_RAM_BOUND)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(synthetic_report(**kw)))
    res = compare([tmp_path / "big", tmp_path / "small"], tmp_path / "cmp")
    assert [r["binding"] for r in res["rows"]] == ["latency", "ram"]
    assert res["rows"][1]["ram_used"] == 7700 and res["rows"][1]["headroom_fraction"]["ram"] == pytest.approx(492 / 8192)
    assert "| 7700 B of 8192 B (6.0 % left) | RAM, 492 B (6.0 %) left |" in res["table"]
    assert "| 57.6 KiB of 4 MiB (98.6 % left) |" in res["table"]
