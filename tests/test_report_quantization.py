"""report.md's quantisation section is rendered from report data (prune-and-flash's
``quantization``: the precision choice, export.json's error and attribution)."""
from __future__ import annotations

from cpr_edge.report.write import quantization_lines


def _tensor(name, scale, acc, iso):
    return {"name": name, "scale": scale, "float_min": -1.0, "float_max": 2.0,
            "accumulated": {"mean_abs": acc, "p99_abs": 2 * acc, "max_abs": 3 * acc, "mean_lsb": acc / scale},
            "isolated": {"mean_abs": iso, "p99_abs": 2 * iso, "max_abs": 3 * iso}}


def test_quantization_section_names_the_choice_and_every_tensor():
    q = {"precision": {"requested": "auto", "chosen": "int8",
                       "tried": [{"precision": "16x8", "result": "the model does not fit b: flash ..."},
                                 {"precision": "int8", "result": "fits"}]},
         "action_error": {"mean_abs": 0.05, "p99_abs": 0.2, "max_abs": 0.3, "observations": 1000},
         "attribution": {"available": True, "observations": 1000, "exact_fraction": 1.0,
                         "tensors": [_tensor("input", 0.03, 0.01, 0.036), _tensor("fc0", 0.02, 0.02, 0.029),
                                     _tensor("action (tanh)", 1 / 128, 0.05, 0.002)],
                         "weights_isolated": {"mean_abs": 0.008, "p99_abs": 0.02, "max_abs": 0.03}}}
    text = "\n".join(quantization_lines(q))
    assert "Precision int8 (asked auto; tried 16x8: the model does not fit" in text
    assert "mean 0.0500, p99 0.2000" in text
    for name in ("| input |", "| fc0 |", "| action (tanh) |", "| weights (all layers) |"):
        assert name in text
    assert "0.0360 / 0.0720" in text  # the isolated column of the input
    assert "equal to TFLM on 100.0% of 1000" in text


def test_missing_attribution_says_why():
    lines = quantization_lines({"attribution": {"available": False, "why": "6 quantised tensors where 10"}})
    assert lines == ["(no per-tensor attribution: 6 quantised tensors where 10)"]
