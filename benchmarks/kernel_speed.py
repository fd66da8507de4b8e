"""Instructions per MAC of the FULLY_CONNECTED kernels, per layer shape and per whole model,
side by side for every kernel variant, with issue 14's goals beside them.

Method: each figure is a generated model (cpr_edge.codegen) timed in QEMU with
`-icount shift=0`, where SysTick counts instructions: the image first times a loop of exactly
2 * 1e6 instructions (SUBS + BNE) to measure instructions per tick (40 on mps2-an386 at 25 MHz,
31.25 on mps3-an547 at 32 MHz), then BENCH_REPS calls of model_invoke. A layer shape is a
one-FULLY_CONNECTED model (random int8 weights, per-channel scales, int32 bias), so the
figures include requantisation, call set-up and model_invoke (a few instructions). Every
measured image is also run on 16 random inputs and compared with the TFLM interpreter
(exact=True). Figures are instructions, not cycles (QEMU does not model timing).

Columns (machine):
  reference           portable C (mps2-an386, Cortex-M4)
  dsp                 ACLE-only DSP kernel (an386)
  dsp_rotate_generic  the dsp_rotate build with every layer forced onto the generic
                      cpr_fully_connected_s8 kernel: what dsp_rotate ran before issue 14
  dsp_rotate          the fast kernels the generator picks per layer (an386; the default)
  mve                 Cortex-M55 Helium kernel (mps3-an547)

Per op (--per-op): every step of model_invoke timed on its own in one image
(runtime/tests/qemu_bench_steps.c: a SysTick mark before each step of the generated
model_invoke, the cost of a mark measured and subtracted), for each --model and column.

--default-models: the issue's models made first, in a temporary folder: `cpr-edge prune`
(shipped cartpole-swingup small, fisher, ratio 0.5) and `cpr-edge export` of the result as 16x8
(the default precision) and int8 (about two minutes).

Usage: python benchmarks/kernel_speed.py [--json] [--sizes 256x256,...] [--model PATH ...]
       [--default-models] [--per-op] [--columns dsp_rotate]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cpr_edge.codegen import fc_select, generate, runtime_defines, runtime_include_dir, runtime_sources
from cpr_edge.codegen.harness import TARGETS, arm_compile, build_qemu, qemu_outputs, run_qemu, tflm_outputs

CAL_INSTRUCTIONS = 2 * 1_000_000
# column -> (build variant, core, forced DSP kernel or None)
COLUMNS = {"reference": ("reference", "cortex-m4", None),
           "dsp": ("dsp", "cortex-m4", None),
           "dsp_rotate_generic": ("dsp_rotate", "cortex-m4", "generic"),
           "dsp_rotate": ("dsp_rotate", "cortex-m4", None),
           "mve": ("mve", "cortex-m55", None)}
GOALS = {"fc_256x256_dsp_rotate": 1.4, "fc_256x256_mve": 0.3, "model_dsp_rotate": 70_000}
"""issue 14: instructions/MAC of a 256x256 layer on the M4 and with MVE; instructions per
inference of the default pruned cartpole-swingup model on mps2-an386"""


def fc_tflite(k: int, n: int, seed: int = 0) -> bytes:
    """One int8 FULLY_CONNECTED, K inputs -> N outputs, per-channel, with bias."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    from cpr_edge.codegen.builder import TensorSpec, build_model
    rng = np.random.default_rng(seed)
    ws = list(rng.uniform(0.002, 0.02, n))
    xs, ys = 0.03, float(0.2 * np.sqrt(k / 64))
    opt = schema.FullyConnectedOptionsT()
    return build_model("FULLY_CONNECTED", [
        TensorSpec((1, k), "int8", [xs], [3]),
        TensorSpec((n, k), "int8", ws, [0] * n, rng.integers(-127, 128, (n, k), dtype=np.int8)),
        TensorSpec((n,), "int32", [xs * s for s in ws], [0] * n,
                   rng.integers(-20000, 20000, n).astype(np.int32)),
        TensorSpec((1, n), "int8", [ys], [-5])], [0, 1, 2], [3], opt)


def fc16_tflite(k: int, n: int, seed: int = 0) -> bytes:
    """One 16x8 FULLY_CONNECTED (int16 activations, int8 weights), K inputs -> N outputs,
    per-channel, with an int64 bias."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    from cpr_edge.codegen.builder import TensorSpec, build_model
    rng = np.random.default_rng(seed)
    ws = list(rng.uniform(0.002, 0.02, n))
    xs, ys = 3e-4, float(0.002 * np.sqrt(k / 64))
    return build_model("FULLY_CONNECTED", [
        TensorSpec((1, k), "int16", [xs], [0]),
        TensorSpec((n, k), "int8", ws, [0] * n, rng.integers(-127, 128, (n, k), dtype=np.int8)),
        TensorSpec((n,), "int64", [xs * s for s in ws], [0] * n,
                   rng.integers(-200000, 200000, n).astype(np.int64)),
        TensorSpec((1, n), "int16", [ys], [0])], [0, 1, 2], [3], schema.FullyConnectedOptionsT())


def measure_invoke(tflite: Path, column: str, work: Path, check: bool = True) -> dict:
    """Instructions per model_invoke of a .tflite under one column's build and core."""
    variant, cpu, forced = COLUMNS[column]
    return {"column": column, **measure(tflite, variant, cpu, forced, work, check)}


def measure(tflite: Path, variant: str, cpu: str, forced: str | None, work: Path,
            check: bool = True) -> dict:
    """model_invoke instructions of ``tflite`` built for ``variant`` on ``cpu``'s QEMU machine,
    the DSP kernel of every eligible layer forced to ``forced`` (fc_select.FORCED) if given."""
    gen = work / f"{tflite.stem}_{variant}_{cpu}_{forced}"
    gen.mkdir(parents=True, exist_ok=True)
    fc_select.FORCED[:] = [forced] if forced else []
    try:
        info = generate(tflite, gen)
    finally:
        fc_select.FORCED[:] = []
    reps = max(1, 4_000_000 // (8 * max(info["macs_total"], 1)))
    elf = gen / "bench.elf"
    arm_compile(elf, [gen / "model.c", runtime_include_dir() / "tests" / "qemu_bench_model.c",
                      *runtime_sources(variant)], [gen],
                runtime_defines(variant) + [f"-DBENCH_REPS={reps}"], cpu=cpu)
    out = {line.split()[0]: line.split()[1:] for line in
           run_qemu(elf, icount=True, machine=TARGETS[cpu][1]).splitlines() if line.strip()}
    per_tick = CAL_INSTRUCTIONS / int(out["CAL"][0])
    per_invoke = int(out["MODEL"][1]) * per_tick / reps
    row = {"variant": variant, "forced": forced, "machine": TARGETS[cpu][1],
           "precision": "16x8" if info["input"]["dtype"] == "int16" else "int8",
           "macs": info["macs_total"], "reps": reps, "instructions_per_tick": per_tick,
           "instructions_per_invoke": round(per_invoke),
           "instructions_per_mac": round(per_invoke / max(info["macs_total"], 1), 3)}
    if check:
        row["exact"] = _exact(tflite, gen, variant, cpu, info)
    return row


def measure_steps(tflite: Path, column: str, work: Path) -> list[dict]:
    """Instructions of each step of model_invoke (one kernel call per step: codegen.json
    `layers`) under one column's build and core."""
    variant, cpu, forced = COLUMNS[column]
    gen = work / f"{tflite.stem}_{column}_steps"
    gen.mkdir(parents=True, exist_ok=True)
    fc_select.FORCED[:] = [forced] if forced else []
    try:
        info = generate(tflite, gen)
    finally:
        fc_select.FORCED[:] = []
    src = (gen / "model.c").read_text()
    head, sep, body = src.partition("\nint model_invoke(")
    body, end, tail = body.partition("\n    return 0;\n}")
    steps = len(info["layers"])
    body = re.sub(r"\n    /\* step (\d+): ", lambda m: f"\n    CPR_BENCH_MARK({m.group(1)});{m.group(0)}", body)
    (gen / "model.c").write_text(head + sep + body + f"\n    CPR_BENCH_MARK({steps});" + end + tail)
    reps = max(1, 8_000_000 // (8 * max(info["macs_total"], 1)))
    tests = runtime_include_dir() / "tests"
    elf = gen / "steps.elf"
    arm_compile(elf, [gen / "model.c", tests / "qemu_bench_steps.c", *runtime_sources(variant)], [gen],
                runtime_defines(variant) + [f"-DBENCH_REPS={reps}", f"-DBENCH_STEPS={steps}",
                                            "-include", str(tests / "qemu_bench_steps.h")], cpu=cpu)
    out: dict[str, list[str]] = {}
    for line in run_qemu(elf, icount=True, machine=TARGETS[cpu][1]).splitlines():
        if line.strip():
            out[" ".join(line.split()[:2]) if line.startswith("STEP") else line.split()[0]] = line.split()
    per_tick = CAL_INSTRUCTIONS / int(out["CAL"][1])
    mark = int(out["EMPTY"][2]) * per_tick / int(out["EMPTY"][1])
    rows, names = [], _kernel_names(gen / "model.c", variant, cpu)
    for k, layer in enumerate(info["layers"]):
        ticks = int(out[f"STEP {k}"][3])
        rows.append({"step": k, "op": layer["op"], "operator": layer["index"], "macs": layer["macs"],
                     "call": names[k],
                     "instructions": round(ticks * per_tick / reps - mark)})
    return rows


def _kernel_names(model_c: Path, variant: str, cpu: str) -> list[str]:
    """The kernel each step of model_invoke calls in this build: model.c preprocessed with
    the variant's defines, the first cpr_ call after each step's mark."""
    inc = runtime_include_dir()
    text = subprocess.run(["arm-none-eabi-gcc", "-E", "-P", *TARGETS[cpu][0], *runtime_defines(variant),
                           f"-I{inc}", f"-I{model_c.parent}", "-DCPR_BENCH_MARK(k)=cpr_bench_mark_##k",
                           str(model_c)], capture_output=True, text=True, check=True).stdout
    body = text.split("model_invoke(", 1)[1]
    return [re.findall(r"\b(cpr_\w+)\(", part)[0] for part in re.split(r"cpr_bench_mark_\d+", body)[1:-1]]


def _exact(tflite: Path, gen: Path, variant: str, cpu: str, info: dict) -> bool:
    model = tflite.read_bytes()
    dtype = np.int16 if info["input"]["dtype"] == "int16" else np.int8
    lim = np.iinfo(dtype)
    x = np.random.default_rng(1).integers(lim.min, lim.max + 1, (16, info["input"]["len"]), dtype=dtype)
    elf = build_qemu(gen, x, variant, gen / "check.elf", cpu=cpu)
    got = qemu_outputs(run_qemu(elf, machine=TARGETS[cpu][1]), len(x), dtype=dtype)
    return bool(np.array_equal(got, tflm_outputs(model, x)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256x256,256x32,32x256,64x64,5x128,7x3",
                    help="KxN layer sizes (in x out)")
    ap.add_argument("--model", type=Path, action="append", default=[],
                    help="also time model_invoke of this .tflite (repeatable: int8 and 16x8)")
    ap.add_argument("--columns", default=",".join(COLUMNS), help="subset of " + ",".join(COLUMNS))
    ap.add_argument("--default-models", action="store_true",
                    help="also time the default pruned cartpole-swingup model, 16x8 and int8 "
                         "(pruned and exported first)")
    ap.add_argument("--per-op", action="store_true",
                    help="also time every step of each --model on its own (instructions per step)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()
    columns = args.columns.split(",")
    say = (lambda s: print(s, file=sys.stderr)) if args.json else print
    shapes, models = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.default_models:
            args.model = default_models(work, say) + args.model
        say(f"{'instructions/MAC':<22}" + "".join(f"{c:>20}" for c in columns))
        for size in args.sizes.split(","):
            k, n = (int(v) for v in size.lower().split("x"))
            path = work / f"fc_{k}x{n}.tflite"
            path.write_bytes(fc_tflite(k, n))
            rows = {c: measure_invoke(path, c, work) for c in columns}
            shapes.append({"k": k, "n": n, "results": rows})
            say(f"FC {k:>4}x{n:<15}" + "".join(
                f"{rows[c]['instructions_per_mac']:>14.3f}{'' if rows[c]['exact'] else ' WRONG':>6}"
                for c in columns))
        for model in args.model:
            rows = {c: measure_invoke(model, c, work) for c in columns}
            models.append({"model": str(model), "results": rows})
            say(f"model {model} ({next(iter(rows.values()))['precision']}): instructions per inference")
            say(f"{'':<22}" + "".join(
                f"{rows[c]['instructions_per_invoke']:>14}{'' if rows[c]['exact'] else ' WRONG':>6}"
                for c in columns))
            say(f"{'  per MAC':<22}" + "".join(f"{rows[c]['instructions_per_mac']:>20.3f}" for c in columns))
            if args.per_op:
                models[-1]["steps"] = {c: measure_steps(model, c, work) for c in columns}
                for c in columns:
                    say(f"  per step, {c}:")
                    for r in models[-1]["steps"][c]:
                        say(f"    {r['step']:>2} {r['op']:<16} {r['call']:<28} {r['instructions']:>8}"
                            + (f"  {r['instructions'] / r['macs']:.2f}/MAC" if r["macs"] else ""))
                    say(f"    sum of steps {sum(r['instructions'] for r in models[-1]['steps'][c]):>34}")
    verdicts = _verdicts(shapes, models)
    for v in verdicts:
        say(f"goal {v['goal']}: {v['measured']} (<= {v['limit']}) {'met' if v['met'] else 'NOT met'}")
    if args.json:
        print(json.dumps({"unit": "instructions", "shapes": shapes, "models": models,
                          "goals": GOALS, "verdicts": verdicts}))


def default_models(work: Path, say) -> list[Path]:
    """The default pruned cartpole-swingup model, exported 16x8 and int8, through the CLI."""
    cli = [sys.executable, "-m", "cpr_edge.cli"]
    say("default models: cpr-edge prune (fisher, 0.5) and export, 16x8 and int8 ...")
    subprocess.run(cli + ["prune", "--out", str(work / "pruned"), "--threads", "1"], check=True,
                   capture_output=True)
    out = []
    for act in ("int16", "int8"):
        d = work / f"default_{'16x8' if act == 'int16' else 'int8'}"
        subprocess.run(cli + ["export", "--checkpoint", str(work / "pruned" / "checkpoint.pt"),
                              "--activations", act, "--out", str(d)], check=True, capture_output=True)
        out.append(d / "model_int8.tflite")
    return out


def _verdicts(shapes: list[dict], models: list[dict]) -> list[dict]:
    out = []
    for s in shapes:
        if (s["k"], s["n"]) == (256, 256):
            for c in ("dsp_rotate", "mve"):
                if c in s["results"]:
                    m = s["results"][c]["instructions_per_mac"]
                    out.append({"goal": f"FC 256x256 {c} instructions/MAC", "measured": m,
                                "limit": GOALS[f"fc_256x256_{c}"],
                                "met": m <= GOALS[f"fc_256x256_{c}"] and s["results"][c]["exact"]})
    for m in models:
        if "dsp_rotate" in m["results"]:
            r = m["results"]["dsp_rotate"]
            out.append({"goal": f"{r['precision']} model {Path(m['model']).parent.name}/"
                                f"{Path(m['model']).name} instructions per inference "
                                "(mps2-an386, dsp_rotate)",
                        "measured": r["instructions_per_invoke"], "limit": GOALS["model_dsp_rotate"],
                        "met": r["instructions_per_invoke"] <= GOALS["model_dsp_rotate"] and r["exact"]})
    return out


if __name__ == "__main__":
    main()
