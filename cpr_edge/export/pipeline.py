"""``export_checkpoint``: checkpoint -> verified int8 TFLM model folder (docs/export.md).

Stages: ONNX graph -> TF import -> onnx2tf SavedModel -> int8 quantisation -> ELU island
rewrite and op check -> TFLM verification (arena search, action error on held-back
observations). The folder is written atomically: on any failure nothing is left behind.
"""
from __future__ import annotations

import hashlib
import platform
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from cpr_edge.agents.checkpoint import Checkpoint, load_checkpoint
from cpr_edge.errors import CprError
from cpr_edge.export import c_array, flatbuffer
from cpr_edge.export.attribution import error_attribution
from cpr_edge.export.onnx_graph import OPSET, deployed_policy, export_onnx, input_prescale, reference_actions
from cpr_edge.export.quantize import (ACTIVATIONS, GRANULARITIES, IO_TYPES, import_tensorflow, onnx_to_saved_model,
                                      quantize)
from cpr_edge.export.tflm_ops import check_ops, op_resolver_header
from cpr_edge.export.tflm_run import run_tflm, smallest_arena
from cpr_edge.fileio import atomic_dir, write_json_atomic
from cpr_edge.quant.calibration import split_observations

FORMAT, VERSION = "cpr-edge/export", 1


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def build_int8(saved_model: Path, calib: np.ndarray, io: str, granularity: str,
               allow_float: bool, work: Path, activations: str = "int8") -> dict:
    """Quantise, fuse the float ELU islands, check the ops; the model bytes and what was done."""
    raw = quantize(saved_model, calib, work / "tensorflow.log", io=io, granularity=granularity,
                   activations=activations)
    model = flatbuffer.load_model(raw)
    fused = flatbuffer.fuse_float_islands(model)
    float_kept = check_ops(model, allow_float, activations)
    data = flatbuffer.align(flatbuffer.save_model(model), work)
    model = flatbuffer.load_model(data)
    return {"bytes": data, "model": model, "fused": fused, "float_ops": float_kept,
            "converter_ops": flatbuffer.op_names(flatbuffer.load_model(raw))}


def output_error(got: np.ndarray, want: np.ndarray, output_q: dict, reference: str) -> dict:
    """export.json ``error``: TFLM's outputs against the float reference's, also in output LSBs."""
    if got.shape != want.shape:
        raise CprError(f"TFLM output shape {list(got.shape)} differs from PyTorch {list(want.shape)}")
    err = np.abs(got - want)
    error = {"max_abs": float(err.max()), "mean_abs": float(err.mean()),
             "rmse": float(np.sqrt((err ** 2).mean())), "p99_abs": float(np.quantile(err, 0.99)),
             "observations": int(len(got)), "reference": reference}
    if "scale" in output_q:
        error["max_lsb"] = error["max_abs"] / output_q["scale"]
        error["mean_lsb"] = error["mean_abs"] / output_q["scale"]
    return error


def verify(data: bytes, model, ck: Checkpoint, held: np.ndarray, prescale, work: Path, name: str) -> dict:
    """Smallest TFLM arena, then TFLM actions at exactly that arena against PyTorch float.

    TFLM gets the held-back observations as the board would: prescaled, then quantised."""
    path = work / name
    path.write_bytes(data)
    arena, allocations, tries = smallest_arena(path)
    input_q, output_q = flatbuffer.io_quant(model, "input"), flatbuffer.io_quant(model, "output")
    offset, gain = prescale
    got = run_tflm(data, (held - offset) * gain, input_q, output_q, arena)
    error = output_error(got, reference_actions(ck, held), output_q,
                         "PyTorch float encoder -> pi (tanh mean) on held-back replay observations")
    tflm = {"arena_bytes": int(arena), "arena_search_tries": int(tries), "allocations": allocations,
            "interpreter": f"tflite-micro {_version('tflite_micro')} (Python, {platform.machine()})"}
    return {"tflm": tflm, "error": error}


DEFAULT_PRESCALE = "standardize"
"""Measured (docs/export.md): one input scale over raw observations costs most of the int8
error of every shipped checkpoint (cartpole-swingup small mean 0.134 -> 0.076, reacher-easy
small 0.293 -> 0.076 with standardize)."""


def resolve_prescale(ck: Checkpoint, prescale: str | None) -> str:
    """The input prescale: as asked, else the one a quantisation-aware recovery trained with,
    else the default. Asking for another than the trained one is refused: the int8 ranges the
    recovery adapted to belong to its prescale."""
    trained = (ck.extra.get("quantization") or {}).get("input_prescale")
    if prescale is None:
        return trained or DEFAULT_PRESCALE
    if trained is not None and prescale != trained:
        raise CprError(f"the checkpoint was trained quantisation-aware with input prescale {trained!r}; "
                       f"exporting it with {prescale!r} would discard that (omit --input-prescale)")
    return prescale


def resolve_activations(ck: Checkpoint, activations: str | None, default: str = "int8") -> str:
    """The activation type: as asked, else the one a quantisation-aware recovery trained for,
    else ``default``; another than the trained one is refused (its ranges would not match)."""
    trained = (ck.extra.get("quantization") or {}).get("activations")
    if activations is None:
        activations = trained or default
    if activations not in ACTIVATIONS:
        raise CprError(f"activations must be one of {', '.join(ACTIVATIONS)}, not {activations!r}")
    if trained is not None and activations != trained:
        raise CprError(f"the checkpoint was trained quantisation-aware for {trained} activations; exporting "
                       f"it with {activations} would discard that (omit --activations)")
    return activations


def export_checkpoint(checkpoint: str | Path | Checkpoint, out_dir: str | Path, io: str = "int8",
                      granularity: str = "per-channel", allow_float: bool = False,
                      progress: Callable[[str], None] | None = None,
                      compare_granularity: bool = False, prescale: str | None = None,
                      activations: str | None = None, checks: bool = True) -> dict:
    """Export ``checkpoint`` to ``out_dir`` (docs/export.md). ``checks=False`` skips the TFLM
    verification and the error attribution: only for a size/speed probe (``cpr-edge fit``),
    whose export.json then says ``"verified": false``; such a model is never flashed."""
    say = progress or (lambda line: None)
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    activations = resolve_activations(ck, activations)
    if io not in IO_TYPES:
        raise CprError(f"io must be one of {', '.join(IO_TYPES)}, not {io!r}")
    if granularity not in GRANULARITIES:
        raise CprError(f"granularity must be one of {', '.join(GRANULARITIES)}, not {granularity!r}")
    prescale = resolve_prescale(ck, prescale)
    calib, held = split_observations(ck)
    input_prescale(calib, prescale)  # refuse an unknown kind before the slow stages
    try:
        return _export(ck, Path(out_dir), calib, held, io, granularity, allow_float, say,
                       compare_granularity, prescale, activations, checks)
    except OSError as e:  # e.g. an output folder that cannot be written
        raise CprError(f"export to {out_dir} failed: {type(e).__name__}: {e}")


def _export(ck: Checkpoint, out_dir: Path, calib: np.ndarray, held: np.ndarray, io: str, granularity: str,
            allow_float: bool, say: Callable[[str], None], compare_granularity: bool, prescale: str,
            activations: str = "int8", checks: bool = True) -> dict:
    times: dict[str, float] = {}
    offset, gain = input_prescale(calib, prescale)
    model_calib = (calib - offset) * gain  # what the model input sees on the board
    with atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory(prefix="cpr-export-") as scratch:
        work = Path(scratch)
        t = time.perf_counter()
        say(f"[1/6] ONNX: encoder -> pi, obs {ck.arch.obs_dim} -> action {ck.arch.act_dim}, opset {OPSET}")
        onnx_ops = export_onnx(deployed_policy(ck, (offset, gain)), ck.arch.obs_dim, tmp / "model.onnx")
        times["onnx"] = time.perf_counter() - t

        t = time.perf_counter()
        say("[2/6] importing TensorFlow")
        import_tensorflow(work / "tensorflow.log")
        times["tf_import"] = time.perf_counter() - t

        t = time.perf_counter()
        say("[3/6] onnx2tf: ONNX -> TF SavedModel")
        saved_model = onnx_to_saved_model(tmp / "model.onnx", work / "saved_model", work / "tensorflow.log")
        times["onnx2tf"] = time.perf_counter() - t

        t = time.perf_counter()
        say(f"[4/6] quantising: {granularity} int8 weights, {activations} activations, {io} I/O, "
            f"{len(calib)} calibration observations")
        built = build_int8(saved_model, model_calib, io, granularity, allow_float, work, activations)
        times["quantize"] = time.perf_counter() - t
        ops = flatbuffer.op_names(built["model"])
        say(f"      ops: {' '.join(ops)}"
            + (f" (fused {len(built['fused'])} float {built['fused'][0]} islands)" if built["fused"] else ""))

        if not checks:
            say("[5/6] not verified in TFLM: a size/speed probe")
            checked = {"tflm": None, "error": None}
            attribution = {"available": False, "reason": "not verified (a size/speed probe)"}
        else:
            t = time.perf_counter()
            say(f"[5/6] verifying in TFLM: arena search (one subprocess per try), {len(held)} held-back observations")
            checked = verify(built["bytes"], built["model"], ck, held, (offset, gain), work, "model_int8.tflite")
            times["verify"] = time.perf_counter() - t
            say(f"      arena {checked['tflm']['arena_bytes']} bytes, action error max "
                f"{checked['error']['max_abs']:.4f} mean {checked['error']['mean_abs']:.4f}")
            t = time.perf_counter()
            attribution = error_attribution(ck, built["bytes"], built["model"], model_calib, (held - offset) * gain,
                                            offset, gain, flatbuffer.io_quant(built["model"], "input"), granularity)
            times["attribution"] = time.perf_counter() - t
        if attribution.get("available"):
            worst = max(attribution["tensors"], key=lambda r: r["isolated"]["mean_abs"])
            say(f"      largest isolated error: {worst['name']} (action error mean "
                f"{worst['isolated']['mean_abs']:.4f} when only it is quantised)")

        costs = {}
        if compare_granularity:
            t = time.perf_counter()
            other = GRANULARITIES[1 - GRANULARITIES.index(granularity)]
            say(f"[5/6] comparing with {other} weights")
            alt = build_int8(saved_model, model_calib, io, other, allow_float, work, activations)
            alt_checked = verify(alt["bytes"], alt["model"], ck, held, (offset, gain), work, f"model_{other}.tflite")
            for g, b, c in ((granularity, built, checked), (other, alt, alt_checked)):
                costs[g] = {"model_bytes": len(b["bytes"]), "arena_bytes": c["tflm"]["arena_bytes"],
                            "error_max_abs": c["error"]["max_abs"], "error_mean_abs": c["error"]["mean_abs"]}
            times["compare_granularity"] = time.perf_counter() - t

        say("[6/6] writing artefacts")
        data = built["bytes"]
        digest = hashlib.sha256(data).hexdigest()
        (tmp / "model_int8.tflite").write_bytes(data)
        (tmp / "model_data.h").write_text(c_array.model_header(len(data), digest))
        (tmp / "model_data.c").write_text(c_array.model_source(data, digest))
        (tmp / "op_resolver.h").write_text(op_resolver_header(ops))
        float_left = [f for f in flatbuffer.float_ops(built["model"]) if not f.boundary]
        info = {
            "format": FORMAT, "version": VERSION,
            "task": ck.task, "preset": ck.preset,
            "checkpoint": _checkpoint_ref(ck),
            "obs_dim": ck.arch.obs_dim, "act_dim": ck.arch.act_dim, "arch": ck.arch.to_dict(),
            "io": io, "activations": activations, "granularity": granularity, "allow_float": allow_float,
            "normalization": _plain(ck.normalization or {"kind": "none"}),
            "normalization_folded": (ck.normalization or {}).get("kind", "none") != "none",
            "ops": ops, "op_resolver": list(dict.fromkeys(ops)),
            "converter_ops": built["converter_ops"], "fused_islands": built["fused"],
            "float_ops": [f.name for f in float_left], "all_int8": not float_left,
            "input_prescale": prescale,
            "input": {**flatbuffer.io_quant(built["model"], "input"),
                      "offset": [float(v) for v in offset], "gain": [float(v) for v in gain]},
            "output": flatbuffer.io_quant(built["model"], "output"),
            "tensors": flatbuffer.tensor_table(built["model"]),
            "model_bytes": len(data), "sha256": digest, "verified": checks,
            "tflm": checked["tflm"], "error": checked["error"], "attribution": attribution,
            "quantization_aware": qat_record(ck, attribution),
            "calibration": {"observations": int(len(calib)), "held_out": int(len(held)),
                            "source": "checkpoint replay sample (held-back episodes excluded)"},
            "onnx": {"opset": OPSET, "ops": onnx_ops},
            "granularity_costs": costs,
            "timings_s": {k: round(v, 3) for k, v in times.items()},
            "tools": {d: _version(d) for d in ("torch", "onnx", "onnx2tf", "tensorflow", "tflite_micro")},
            "files": ["model.onnx", "model_int8.tflite", "model_data.c", "model_data.h",
                      "op_resolver.h", "export.json"],
        }
        write_json_atomic(tmp / "export.json", info)
    return info


def qat_record(ck: Checkpoint, attribution: dict) -> dict | None:
    """What a quantisation-aware recovery recorded, and whether the converter used its ranges.

    ``ranges_match`` (when the export's activation type is the trained one; else null): every
    activation tensor's (scale, zero point) in the .tflite equals the one the recovery trained with (scale to 1e-5 relative: both are float32 min/max of the same
    float model on the same observations, summed in different orders)."""
    q = ck.extra.get("quantization")
    if not q:
        return None
    out = {k: v for k, v in q.items() if k != "ranges"}
    trained = q.get("ranges") or []
    kind = {"int8": "INT8", "int16": "INT16"}.get(q.get("activations", "int8"))
    rows = attribution.get("tensors", []) if attribution.get("available") else []
    if rows and len(rows) == len(trained) and all(r["type"] == kind for r in rows):
        rel = max(abs(r["scale"] - s) / s for r, (s, _) in zip(rows, trained))
        out["ranges_match"] = bool(rel <= 1e-5 and all(r["zero_point"] == z for r, (_, z) in zip(rows, trained)))
        out["ranges_max_rel_diff"] = float(rel)
    else:
        out["ranges_match"] = None
    return out


def _checkpoint_ref(ck: Checkpoint) -> dict:
    if ck.path is None or not Path(ck.path).is_file():
        return {"path": None, "sha256": None}
    return {"path": str(Path(ck.path).resolve()), "sha256": hashlib.sha256(Path(ck.path).read_bytes()).hexdigest()}


def _plain(obj):
    """Normalisation entries may be tensors or arrays: make them JSON lists."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
