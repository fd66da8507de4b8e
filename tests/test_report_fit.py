"""report.md's "Fit to the board" section and fit.png from report.json ``fit`` (docs/report.md):
the probe table in run order with the chosen row, the binding constraint and why; null optional
fields; the plot's lines at the limit and at the limit less the margin, and the chosen ratio."""
from __future__ import annotations

import copy

import pytest

from cpr_edge.report.figure_file import plt
from cpr_edge.report.fit import fit_figure, fit_lines


def _probe(ratio, flash, ram, instructions, ret, fits, binding="flash"):
    return {"ratio": ratio, "precision": "16x8", "params": round(300_000 * (1 - ratio)), "flash_bytes": flash,
            "ram_bytes": ram, "invoke_instructions": instructions, "latency_s_estimate": instructions / 24e6,
            "fits": fits, "binding": binding, "return_float": ret, "seconds": 41.0}


FIT = {"board": "qemu-stm32vldiscovery", "metric": "fisher", "precision": "16x8", "margin": 0.1,
       "limits": {"flash_bytes": 131072, "ram_bytes": 8192, "latency_budget_s": 0.08},
       "probes": [_probe(0.6, 140_000, 6000, 400_000, None, False), _probe(0.8, 95_000, 5200, 260_000, 801.0, True),
                  _probe(0.7, 112_000, 5600, 330_000, 840.2, True), _probe(0.66, 125_400, 5800, 360_000, None, False),
                  _probe(0.68, 117_000, 5700, 345_000, 842.5, True)],
       "chosen": {"ratio": 0.68, "precision": "16x8", "binding": "flash",
                  "why": "smallest removal on the grid at which all limits hold with the margin; the next "
                         "smaller probed ratio 0.66 exceeds flash by 1.2 KB"},
       "grid_step": 0.02}


def test_table_in_run_order_with_the_chosen_row_bold():
    lines = fit_lines(FIT)
    rows = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| #")]
    assert [r.split(" | ")[1].strip("* ").split(" ")[0] for r in rows] == ["0.6", "0.8", "0.7", "0.66", "0.68"]
    chosen = [r for r in rows if "(chosen)" in r]
    assert chosen == ["| **5** | **0.68 (chosen)** | **16x8** | **96000** | **117000 B (89.3 %)** | "
                      "**5700 B (69.6 %)** | **14.4 (18.0 %)** | **842.5** | **yes** | **flash** |"]
    assert "| 1 | 0.6 | 16x8 | 120000 | 140000 B (106.8 %) | 6000 B (73.2 %) | 16.7 (20.8 %) | – | no | flash |" in rows
    text = "\n".join(lines)
    assert "**Chosen: ratio 0.68 at 16x8; binding constraint: flash (89.3 % of its limit used).** " \
           "Smallest removal on the grid" in text and "exceeds flash by 1.2 KB." in text
    assert "limits flash 128 KiB, RAM 8192 B, latency budget 80 ms, 10.0 % of each kept free" in text


def test_null_optional_fields_and_no_choice_render():
    fit = copy.deepcopy(FIT)
    fit["probes"][1].update(params=None, flash_bytes=None, latency_s_estimate=None, fits=None, binding=None,
                            return_float=None)
    fit.update(chosen=None, margin=None, grid_step=None, metric=None)
    fit["limits"]["latency_budget_s"] = None
    text = "\n".join(fit_lines(fit))
    assert "| 2 | 0.8 | 16x8 | – | – | 5200 B (63.5 %) | – | – | – | – |" in text
    assert "**No ratio was chosen**" in text and "(chosen)" not in text
    fig = fit_figure(fit)
    plt.close(fig)


def test_chosen_not_among_probes_is_said():
    fit = copy.deepcopy(FIT)
    fit["chosen"]["ratio"] = 0.5
    assert "(the chosen ratio is not among the probes listed)" in fit_lines(fit)


def test_fit_plot_limit_margin_and_chosen_ratio():
    fig = fit_figure(FIT)
    ax = fig.axes[0]
    try:
        horizontal = sorted(ln.get_ydata()[0] for ln in ax.lines if list(ln.get_xdata()) == [0, 1])
        assert horizontal == pytest.approx([0.9, 1.0])
        vertical = [ln.get_xdata()[0] for ln in ax.lines if list(ln.get_ydata()) == [0, 1]]
        assert vertical == pytest.approx([0.68])
        lo, hi = ax.get_ylim()
        assert lo == 0 and 140_000 / 131072 <= hi <= 1.2  # the worst probe (flash 107 %) is inside
        flash = next(ln for ln in ax.lines if ln.get_color() == "tab:blue")
        assert list(flash.get_xdata()) == [0.6, 0.66, 0.68, 0.7, 0.8]  # sorted by ratio
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "limit less the 10.0 % margin = 90.0 %" in labels and "chosen ratio 0.68, binding flash" in labels
        assert len([t for t in ax.get_yticks() if lo <= t <= hi]) <= 7
    finally:
        plt.close(fig)
