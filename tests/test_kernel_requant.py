"""Requantisation (reference/quant.c, reference/requant.h) against gemmlowp's
SaturatingRoundingDoublingHighMul + RoundingDivideByPOT written out in Python integers,
including the extremes where the shift-only rewrite of the division could go wrong."""
from __future__ import annotations

import subprocess

import numpy as np

from cpr_edge.codegen import runtime_include_dir, runtime_sources

INT32_MIN, INT32_MAX = -2**31, 2**31 - 1

HARNESS = r"""
#include <stdio.h>
#include "cpr_runtime.h"
#include "reference/requant.h"
int main(void)
{
    long long x, m, s;
    while (scanf("%lld %lld %lld", &x, &m, &s) == 3) {
        int32_t a = cpr_multiply_by_quantized_multiplier((int32_t)x, (int32_t)m, (int32_t)s);
        int32_t b = m >= 0 ? cpr_requantize_nonneg((int32_t)x, (int32_t)m, (int32_t)s) : a;
        int32_t c = s <= 0 ? cpr_multiply_by_quantized_multiplier_smaller_than_one(
                                 (int32_t)x, (int32_t)m, (int32_t)s) : a;
        printf("%d %d %d\n", a, b, c);
    }
    return 0;
}
"""


def wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def gemmlowp(x: int, m: int, s: int) -> int:
    x = wrap32(x * (1 << max(s, 0)))  # TFLM's int32 multiply by 1 << left_shift
    if x == m == INT32_MIN:
        high = INT32_MAX
    else:
        ab = x * m
        nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
        q = abs(ab + nudge) // (1 << 31)  # C division: truncation towards zero
        high = q if ab + nudge >= 0 else -q
    e = max(-s, 0)
    mask = (1 << e) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> e) + (1 if (high & mask) > threshold else 0)


def test_requantisation_matches_gemmlowp(tmp_path):
    src = tmp_path / "requant_main.c"
    src.write_text(HARNESS)
    exe = tmp_path / "requant"
    quant = [p for p in runtime_sources("reference") if p.name == "quant.c"]
    subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Werror", f"-I{runtime_include_dir()}",
                    str(src), *map(str, quant), "-o", str(exe)], check=True)
    rng = np.random.default_rng(0)
    special_x = [INT32_MIN, INT32_MIN + 1, -2**30, -12345, -1, 0, 1, 2**30, INT32_MAX - 1, INT32_MAX]
    special_m = [0, 1, 2**30, 1518500250, INT32_MAX, INT32_MIN]
    cases = [(x, m, s) for x in special_x for m in special_m for s in (-31, -20, -1, 0, 1, 5, 30)]
    for _ in range(20000):
        cases.append((int(rng.integers(INT32_MIN, INT32_MAX, endpoint=True)),
                      int(rng.integers(2**30, 2**31)), int(rng.integers(-31, 8))))
        cases.append((int(rng.integers(-2**20, 2**20)), int(rng.integers(0, 2**31)),
                      int(rng.integers(-31, 1))))
    text = "\n".join(f"{x} {m} {s}" for x, m, s in cases)
    out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True).stdout
    rows = [tuple(map(int, line.split())) for line in out.splitlines()]
    assert len(rows) == len(cases)
    for (x, m, s), got in zip(cases, rows):
        want = gemmlowp(x, m, s)
        assert got == (want, want, want), (x, m, s)
