"""Measure the instruction costs of the int8 FULLY_CONNECTED DSP kernels and write the cost
model the code generator chooses a kernel per layer by (cpr_edge/codegen/fc_costs.json).

Each kernel ("generic": cpr_fully_connected_s8 of the dsp_rotate build, "blocked",
"few_inputs") runs one-layer models of a grid of shapes on QEMU mps2-an386 (Cortex-M4,
`-icount shift=0`, instructions counted through SysTick as in kernel_speed.py), forced onto
every layer through fc_select.FORCED. A least-squares fit per kernel gives

    instructions = call + input * K + row * N + block * ceil(N / 4) + mac * N * K
                   + tail_input_row * N * (K % 4) + leftover_mac * (N % 4) * K
                   + short_group_row * N * ((K / 4) % 4)

(K inputs, N outputs; the model_invoke overhead is in ``call``; leftover_mac is what a MAC of
the last N % 4 rows costs beyond ``mac``, short_group_row what a group of 4 inputs outside the
blocked kernel's 16-input loop costs per row), fitted to relative error (weights 1 / measured).
--refit fits the points already in the file again (after a change of the formula). The file also keeps the
measured points and the fit's largest relative error. fc_select.choose_dsp takes the kernel
with the fewest predicted instructions. The 16x8 kernels (s16_blocked, s16_few_inputs: 16x8
one-layer models, forced through fc_select.FORCED16) are measured the same way for
fc_select.choose16. Takes about five minutes (--only KERNELS: just those, the others kept).

Usage: python benchmarks/fc_costs.py [--out cpr_edge/codegen/fc_costs.json] [--only s16_blocked,...]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from kernel_speed import fc16_tflite, fc_tflite, measure  # noqa: E402

from cpr_edge.codegen import fc_select  # noqa: E402
from cpr_edge.fileio import write_json_atomic  # noqa: E402

GRID = {"generic": ([4, 7, 16, 33, 64, 130, 256], [1, 2, 3, 4, 9, 32]),
        "blocked": ([4, 7, 16, 33, 64, 130, 256], [1, 2, 3, 4, 9, 32]),
        "few_inputs": ([1, 2, 3, 4, 5, 6, 7, 8], [1, 3, 4, 9, 32]),
        # 16x8 (fc_select.choose16): the two fast kernels where both may run, K <= 8
        "s16_blocked": ([1, 2, 3, 4, 5, 6, 7, 8], [1, 3, 4, 9, 32, 64]),
        "s16_few_inputs": ([1, 2, 3, 4, 5, 6, 7, 8], [1, 3, 4, 9, 32, 64])}
TERMS = fc_select.COST_TERMS
features = fc_select.cost_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=fc_select.COSTS_FILE)
    ap.add_argument("--refit", action="store_true", help="fit the measured points in --out again")
    ap.add_argument("--only", default="", help="measure only these kernels (comma-separated), "
                    "keep the others' points and models from --out")
    args = ap.parse_args()
    if args.refit:
        old = json.loads(args.out.read_text())["points"]
        points = {kern: old[kern] for kern in GRID if kern in old}
        models = {kern: fit([(p["k"], p["n"], p["instructions"]) for p in points[kern]], kern)
                  for kern in points}
        return write(args.out, models, points)
    models, points = {}, {}
    only = [k for k in args.only.split(",") if k]
    if only:
        old = json.loads(args.out.read_text())
        models = {k: v for k, v in old["models"].items() if k not in only}
        points = {k: v for k, v in old["points"].items() if k not in only}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for kernel, (ks, ns) in GRID.items():
            if only and kernel not in only:
                continue
            rows = []
            s16 = kernel.startswith("s16_")
            for k in ks:
                for n in ns:
                    path = work / f"fc{'16' if s16 else ''}_{k}x{n}.tflite"
                    if not path.exists():
                        path.write_bytes(fc16_tflite(k, n) if s16 else fc_tflite(k, n))
                    fc_select.FORCED16[:] = [kernel[4:]] if s16 else []
                    try:
                        r = measure(path, "dsp_rotate", "cortex-m4", None if s16 else kernel, work,
                                    check=False)
                    finally:
                        fc_select.FORCED16[:] = []
                    rows.append((k, n, r["instructions_per_invoke"]))
            models[kernel] = fit(rows, kernel)
            points[kernel] = [{"k": k, "n": n, "instructions": v} for k, n, v in rows]
    write(args.out, models, points)


def fit(rows: list[tuple[int, int, int]], kernel: str) -> dict:
    a = np.array([features(k, n) for k, n, _ in rows])
    y = np.array([v for _, _, v in rows], float)
    coef = np.linalg.lstsq(a / y[:, None], np.ones_like(y), rcond=None)[0]
    worst = float(np.max(np.abs(a @ coef - y) / y))
    model = {**{t: round(float(c), 3) for t, c in zip(TERMS, coef)},
             "fit_max_relative_error": round(worst, 4)}
    print(f"{kernel:>10}: " + ", ".join(f"{t} {model[t]}" for t in TERMS)
          + f"  (fit within {100 * worst:.1f} %)")
    return model


def write(out: Path, models: dict, points: dict) -> None:
    write_json_atomic(out, {
        "machine": "qemu mps2-an386 (Cortex-M4), instructions (-icount shift=0)",
        "measured_by": "benchmarks/fc_costs.py", "formula": " + ".join(
            f"{t} * {f}" for t, f in zip(TERMS, fc_select.COST_FEATURES)),
        "models": models, "points": points})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
