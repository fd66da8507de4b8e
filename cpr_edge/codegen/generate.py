"""generate(): .tflite -> model.c + model.h (+ codegen.json) in one folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cpr_edge.codegen import emit, lower16, planner
from cpr_edge.codegen.lower import Step, lower
from cpr_edge.codegen.reader import Graph, read_model
from cpr_edge.errors import CprError
from cpr_edge.fileio import write_json_atomic, write_text_atomic


CORE_TYPES = ("int8", "int16")
"""Element types of the integer core's input and output (int16: the 16x8 mode)."""


def _lower_all(g: Graph, core: list) -> list[Step]:
    """One step per operator; a 16x8 float ELU island (three operators) is one step."""
    steps, k = [], 0
    while k < len(core):
        island = lower16.find_elu_island(g, core, k)
        if island:
            steps.append(lower16.lower_elu_island(g, island))
            k += 3
        else:
            steps.append(lower(g, core[k]))
            k += 1
    return steps


def _strip_float_io(g: Graph) -> tuple[list, int, int, bool]:
    """Operators of the int8 core, its input and output tensors, and whether I/O is float."""
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise CprError(f"the model must have one input and one output, not "
                       f"{len(g.inputs)} and {len(g.outputs)}")
    ops = list(g.operators)
    if not ops:
        raise CprError("the model has no operators")
    gin, gout = g.inputs[0], g.outputs[0]
    fin, fout = g.tensors[gin].dtype == "float32", g.tensors[gout].dtype == "float32"
    if fin != fout:
        raise CprError("mixed float/int8 model I/O is unsupported: use int8 or float on both ends")
    if not fin:
        return ops, gin, gout, False
    users = [op for op in ops if gin in op.inputs]
    if (len(users) != 1 or users[0].name != "QUANTIZE"
            or g.tensors[users[0].outputs[0]].dtype not in CORE_TYPES):
        raise CprError("float model input must feed exactly one QUANTIZE to int8 or int16")
    producers = [op for op in ops if gout in op.outputs]
    if (len(producers) != 1 or producers[0].name != "DEQUANTIZE"
            or g.tensors[producers[0].inputs[0]].dtype not in CORE_TYPES):
        raise CprError("float model output must come from a DEQUANTIZE of an int8 or int16 tensor")
    core = [op for op in ops if op is not users[0] and op is not producers[0]]
    if not core:
        raise CprError("the model has no int8 operators between QUANTIZE and DEQUANTIZE")
    return core, users[0].outputs[0], producers[0].inputs[0], True


def _groups(steps: list[Step]) -> dict[int, int]:
    """Tensor -> root tensor whose bytes it shares (reshapes alias their input)."""
    root: dict[int, int] = {}

    def find(t: int) -> int:
        while root.get(t, t) != t:
            t = root[t]
        return t

    for s in steps:
        if s.alias:
            out, src = s.alias
            root[find(out)] = find(src)
    return {t: find(t) for s in steps for t in s.reads + s.writes}


def _quant(g: Graph, t: int) -> dict:
    x = g.tensors[t]
    return {"shape": list(x.shape), "len": x.size, "dtype": x.dtype,
            "scale": float(x.scale[0]), "zero_point": int(x.zero_point[0])}


def build(tflite_path: str | Path, input_prescale: tuple | None = None) -> tuple[dict, str, str]:
    """Everything in memory: (summary, model.c text, model.h text).

    ``input_prescale`` is export.json's ``(input.offset, input.gain)``, applied by
    ``model_encode_input``; None means identity (offset 0, gain 1)."""
    g = read_model(tflite_path)
    core, cin, cout, float_io = _strip_float_io(g)
    steps = _lower_all(g, core)
    group = _groups(steps)
    members: dict[int, set[int]] = {}
    for t, r in group.items():
        members.setdefault(r, set()).add(t)
    pointers: dict[int, str] = {}
    output_copy: list[str] = []
    sizes: dict[int, int] = {}
    life: dict[int, tuple[int, int]] = {}
    for r, ms in members.items():
        if cin in ms and cout in ms:
            output_copy.append("memcpy(out, in, sizeof(*out) * MODEL_OUTPUT_LEN);")
            ptr = "in"
        elif cout in ms:
            ptr = "out"
        elif cin in ms:
            ptr = "in"
        else:
            uses = [i for i, s in enumerate(steps) if ms & set(s.reads + s.writes)]
            sizes[r] = g.tensors[r].nbytes
            life[r] = (min(uses), max(uses))
            ptr = None
        for t in ms:
            pointers[t] = ptr
    placement, arena = planner.plan(sizes, life)
    for t, r in group.items():
        if pointers[t] is None:
            pointers[t] = f"(arena + {placement[r].offset})"
    layers = [{"index": s.op.index, "op": s.op.name, "macs": s.macs} for s in steps]
    info = {
        "source": Path(tflite_path).name,
        "sha256": g.sha256.hex(),
        "model_bytes": g.model_bytes,
        "ops": [op.name for op in g.operators],
        "float_io": float_io,
        "input": _quant(g, cin),
        "output": _quant(g, cout),
        "activation_bytes": arena,
        # the portable build's constants (a kernel variant's own layouts, the fast kernels'
        # rounding constants, may differ: memory.json has what a build holds)
        "weight_bytes": sum(c.nbytes for s in steps for c in {c.name: c for c in s.consts}.values()
                            if not c.only_if),
        "layers": layers,
        "macs_total": sum(s.macs for s in steps),
        "rounding": "double (gemmlowp SaturatingRoundingDoublingHighMul + RoundingDivideByPOT)",
        "plan": [{"tensor": g.tensors[p.tensor].name, "offset": p.offset, "bytes": p.size,
                  "first_step": p.first, "last_step": p.last} for p in sorted(placement.values(), key=lambda p: p.offset)],
        "output_copy": output_copy,
    }
    info["plan_lines"] = [f"{d['tensor']}: offset {d['offset']}, {d['bytes']} B, steps {d['first_step']}-{d['last_step']}"
                          for d in info["plan"]]
    for key in ("input", "output"):
        if info[key]["dtype"] not in CORE_TYPES:
            raise CprError(f"model {key} must be int8 or int16 after the float I/O ops, not {info[key]['dtype']}")
    info["float_islands"] = [dict(op=s.op.name, operator=s.op.index, **s.island) for s in steps if s.island]
    if input_prescale is not None:
        offset, gain = (np.asarray(v, np.float32).reshape(-1) for v in input_prescale)
        n = info["input"]["len"]
        if offset.size != n or gain.size != n or not (np.isfinite(offset).all() and np.isfinite(gain).all()):
            raise CprError(f"input prescale must be {n} finite offsets and gains, not {offset.size} and {gain.size}")
        info["input"]["offset"] = [float(v) for v in offset]
        info["input"]["gain"] = [float(v) for v in gain]
    c_text = emit.model_c(info, steps, pointers)
    h_text = emit.model_h(info)
    del info["plan_lines"], info["output_copy"]
    return info, c_text, h_text


def generate(tflite_path: str | Path, out_dir: str | Path, input_prescale: tuple | None = None) -> dict:
    """Write model.c, model.h and codegen.json into out_dir; return the summary.

    Everything is computed before the first write, and each file is replaced atomically,
    so a refused model leaves the folder as it was.
    """
    info, c_text, h_text = build(tflite_path, input_prescale)
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / "model.h", h_text)
    write_text_atomic(out_dir / "model.c", c_text)
    write_json_atomic(out_dir / "codegen.json", info)
    return info
