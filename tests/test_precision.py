"""prune-and-flash's precision choice: the most faithful precision whose firmware fits."""
from __future__ import annotations

import dataclasses

import pytest

from cpr_edge.agents.checkpoint import load_checkpoint
from cpr_edge.boards import load_board
from cpr_edge.errors import CprError
from cpr_edge.precision import ExportOptions, candidates


class _Clock:
    def __init__(self):
        self.times = {}

    def add(self, name, seconds):
        self.times[name] = self.times.get(name, 0.0) + seconds


def test_candidates_and_refusal():
    assert candidates("auto") == ["16x8", "int8"]
    assert candidates("int8") == ["int8"]
    with pytest.raises(CprError, match="--precision must be one of"):
        candidates("int4")


def test_auto_steps_down_to_int8_when_16x8_does_not_fit(tiny_checkpoint, tmp_path):
    """A board whose flash holds the int8 image but not the 16x8 one (int64 biases, int16 I/O
    code): auto deploys int8 after quantisation-aware recovery and says why in the choice."""
    from cpr_edge.pipeline import deploy

    ck = load_checkpoint(tiny_checkpoint)
    pruned = load_checkpoint(tiny_checkpoint)
    # the reference FULLY_CONNECTED kernels: with the fast int8 kernels (per-row records,
    # rounding constants) this tiny model's int8 image outgrows its 16x8 one
    board = dataclasses.replace(load_board("qemu-mps2-an386"), fc_kernel="reference")
    out16, out8 = tmp_path / "r16", tmp_path / "r8"
    out16.mkdir(), out8.mkdir()
    lines = []
    _, b16, c16, _ = deploy(ck, load_checkpoint(tiny_checkpoint), out16, board, ["16x8"], ExportOptions(prescale="standardize"), 0, 0,
                         lines.append, _Clock())
    _, b8, _, _ = deploy(ck, load_checkpoint(tiny_checkpoint), out8, board, ["int8"], ExportOptions(prescale="standardize"), 0, 0,
                      lines.append, _Clock())
    f16, f8 = b16["memory"]["flash"]["total"], b8["memory"]["flash"]["total"]
    assert f8 < f16, (f8, f16)
    small = dataclasses.replace(board, flash_size=(f8 + f16) // 2 // 1024 * 1024)
    assert f8 <= small.flash_size < f16
    out = tmp_path / "auto"
    out.mkdir()
    info, build, choice, deployed = deploy(ck, pruned, out, small, candidates("auto"), ExportOptions(prescale="standardize"), 20, 0,
                                 lines.append, _Clock())
    assert choice.chosen == "int8" and info["activations"] == "int8"
    assert [t["precision"] for t in choice.tried] == ["16x8", "int8"]
    assert "does not fit" in choice.tried[0]["result"] and choice.tried[1]["result"] == "fits"
    saved = load_checkpoint(out / "pruned.pt")
    assert saved.extra["quantization"]["activations"] == "int8" and saved.extra["quantization"]["steps"] == 20
    assert deployed.extra["quantization"]["activations"] == "int8"
    assert info["quantization_aware"]["ranges_match"] is True


def test_auto_steps_down_to_int8_when_16x8_misses_the_latency_budget(tiny_checkpoint, tmp_path):
    """QEMU instruction counts are deterministic: with a budget between the two models' BENCH
    figures (16x8 costs about twice int8's instructions) auto deploys int8 and says why."""
    from cpr_edge.pipeline import deploy
    from cpr_edge.precision import latency_probe

    ck = load_checkpoint(tiny_checkpoint)
    board = load_board("qemu-mps2-an386")
    runs = {}
    for precision in ("16x8", "int8"):
        out = tmp_path / precision
        out.mkdir()
        _, build, _, _ = deploy(ck, load_checkpoint(tiny_checkpoint), out, board, [precision], ExportOptions(prescale="standardize"), 0, 0,
                             lambda m: None, _Clock())
        runs[precision] = latency_probe(board, build, out / "model", 1.0)
    s16, s8 = runs["16x8"]["seconds_estimate"], runs["int8"]["seconds_estimate"]
    assert s8 < s16 and runs["16x8"]["unit"] == "instructions"
    budget = (s8 + s16) / 2
    out = tmp_path / "auto"
    out.mkdir()
    info, _, choice, _ = deploy(ck, load_checkpoint(tiny_checkpoint), out, board, candidates("auto"), ExportOptions(prescale="standardize"),
                             0, 0, lambda m: None, _Clock(), budget_s=budget)
    assert choice.chosen == "int8" and info["activations"] == "int8"
    assert "over the" in choice.tried[0]["result"] and "budget" in choice.tried[0]["result"]
