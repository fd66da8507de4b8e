"""Export of a plain PyTorch policy: an ``nn.Sequential`` of Linear and ELU / ReLU / Tanh layers.

For users who do not use TD-MPC. The policy file is either the whole module
(``torch.save(model, "policy.pt")``) or its state dict plus a layer list
(``--layers linear,elu,linear,tanh``). Both are read with ``torch.load(weights_only=True)``; a
whole module is unpickled with only these five classes allowed, so a policy file cannot run
code. The model then goes through the stages of the checkpoint export (export/pipeline.py:
ONNX, onnx2tf, quantisation on the user's calibration observations, ELU island rewrite, op
check, TFLM verification against the float module on held-back observations) into the same
export folder, which ``cpr-edge build`` and ``cpr-edge validate`` take (docs/export.md,
"A plain PyTorch policy").
"""
from __future__ import annotations

import copy
import hashlib
import re
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from cpr_edge.errors import CprError
from cpr_edge.export import c_array, flatbuffer
from cpr_edge.export.onnx_graph import OPSET, export_onnx, input_prescale
from cpr_edge.export.pipeline import FORMAT, VERSION, _version, build_int8, output_error
from cpr_edge.export.quantize import ACTIVATIONS, GRANULARITIES, IO_TYPES, import_tensorflow, onnx_to_saved_model
from cpr_edge.export.tflm_ops import op_resolver_header
from cpr_edge.export.tflm_run import run_tflm, smallest_arena
from cpr_edge.fileio import atomic_dir, write_json_atomic
from cpr_edge.quant.calibration import MAX_CALIBRATION, MAX_HELD_OUT, MIN_CALIBRATION, _thin

LAYER_TYPES = {"linear": nn.Linear, "elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh}
"""What a policy may hold, by the name ``--layers`` uses."""
ALLOWED = (nn.Sequential, *LAYER_TYPES.values())
HELD_EVERY = 5
"""Every fifth calibration row (rows 4, 9, 14, ...) is held back for the TFLM verification."""


def layer_names(model: nn.Sequential) -> list[str]:
    names = {cls: name for name, cls in LAYER_TYPES.items()}
    return [names[type(m)] for m in model]


def load_policy(path: str | Path, layers: str | None = None) -> nn.Sequential:
    """The policy of ``path`` as a float32 ``nn.Sequential`` in eval mode, or a one-line CprError."""
    path = Path(path)
    if not path.is_file():
        raise CprError(f"policy file not found: {path}")
    try:
        with torch.serialization.safe_globals(list(ALLOWED)):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle names the first class it may not build
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it holds {found.group(1)}" if found else f"{type(e).__name__}"
        raise CprError(f"cannot read policy {path}: {what}; a policy is an nn.Sequential of Linear, ELU, "
                       "ReLU and Tanh layers saved whole, or its state dict with --layers (docs/export.md)")
    if isinstance(obj, nn.Module):
        if layers:
            raise CprError(f"{path} holds a whole module; --layers is only for a state dict")
        if not isinstance(obj, nn.Sequential):
            raise CprError(f"{path} holds a {type(obj).__name__}, not an nn.Sequential")
        model = obj
    elif isinstance(obj, dict):
        if not layers:
            raise CprError(f"{path} is a state dict: give its layers, e.g. --layers linear,elu,linear,tanh")
        model = _from_state_dict(obj, layers, path)
    else:
        raise CprError(f"{path} holds a {type(obj).__name__}, not an nn.Sequential or a state dict")
    check_policy(model, path)
    return model.float().eval()


def _from_state_dict(sd: dict, layers: str, path: Path) -> nn.Sequential:
    names = [n.strip().lower() for n in layers.split(",") if n.strip()]
    unknown = [n for n in names if n not in LAYER_TYPES]
    if unknown:
        raise CprError(f"--layers: unknown layer {unknown[0]!r} (known: {', '.join(LAYER_TYPES)})")
    mods: list[nn.Module] = []
    for i, name in enumerate(names):
        if name != "linear":
            mods.append(LAYER_TYPES[name]())
            continue
        w = sd.get(f"{i}.weight")
        if not isinstance(w, torch.Tensor) or w.ndim != 2:
            raise CprError(f"{path}: no 2-D '{i}.weight' for layer {i} (linear) of --layers {layers}")
        b = sd.get(f"{i}.bias")
        lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        try:
            lin.load_state_dict({"weight": w, **({"bias": b} if b is not None else {})})
        except RuntimeError:
            raise CprError(f"{path}: '{i}.bias' has shape {list(b.shape)}, layer {i} has {w.shape[0]} outputs") from None
        mods.append(lin)
    model = nn.Sequential(*mods)
    extra = sorted(set(sd) - set(model.state_dict()))
    if extra:
        raise CprError(f"{path}: state dict keys {', '.join(extra[:3])} belong to no linear layer of --layers {layers}")
    return model


def check_policy(model: nn.Sequential, path) -> None:
    if len(model) == 0 or not isinstance(model[0], nn.Linear):
        raise CprError(f"{path}: the policy must start with a Linear layer")
    width = None
    for i, m in enumerate(model):
        if type(m) not in LAYER_TYPES.values():
            raise CprError(f"{path}: layer {i} is {type(m).__name__}; only Linear, ELU, ReLU, Tanh export")
        if isinstance(m, nn.ELU) and m.alpha != 1.0:
            raise CprError(f"{path}: layer {i} is ELU(alpha={m.alpha}); TFLite's ELU has alpha 1")
        if isinstance(m, nn.Linear):
            if width is not None and m.in_features != width:
                raise CprError(f"{path}: layer {i} takes {m.in_features} inputs, the layer before gives {width}")
            width = m.out_features
            if not all(torch.isfinite(p).all() for p in m.parameters()):
                raise CprError(f"{path}: layer {i} has NaN or inf weights")


def in_out(model: nn.Sequential) -> tuple[int, int]:
    lins = [m for m in model if isinstance(m, nn.Linear)]
    return lins[0].in_features, lins[-1].out_features


def load_calibration(path: str | Path, in_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(calibration, held-back)`` rows of a .npy of policy inputs ``[N, in_dim]``."""
    path = Path(path)
    if not path.is_file():
        raise CprError(f"calibration file not found: {path}")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise CprError(f"calibration {path} is not a readable .npy array ({type(e).__name__})") from None
    if x.ndim == 1 and in_dim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != in_dim:
        raise CprError(f"calibration {path} has shape {list(x.shape)}; the policy takes [N, {in_dim}]")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise CprError(f"calibration {path} is not finite numbers")
    x = x.astype(np.float32)
    held_mask = np.arange(len(x)) % HELD_EVERY == HELD_EVERY - 1
    calib, held = x[~held_mask], x[held_mask]
    if len(calib) < MIN_CALIBRATION or len(held) < 1:
        need = MIN_CALIBRATION * HELD_EVERY // (HELD_EVERY - 1) + 1
        raise CprError(f"calibration {path} has {len(x)} rows; at least {need} are needed "
                       f"({MIN_CALIBRATION} to calibrate, every {HELD_EVERY}th held back)")
    return _thin(calib, MAX_CALIBRATION), _thin(held, MAX_HELD_OUT)


def with_prescale(model: nn.Sequential, offset: np.ndarray, gain: np.ndarray) -> nn.Sequential:
    """A copy that takes ``(x - offset) * gain``: folded into the first Linear (as for checkpoints)."""
    m = copy.deepcopy(model)
    first = m[0]
    off, g = torch.as_tensor(offset), torch.as_tensor(gain)
    with torch.no_grad():
        if first.bias is None:
            first.bias = nn.Parameter(torch.zeros(first.out_features))
        first.bias.add_(first.weight @ off)
        first.weight.div_(g)
    return m


def export_sequential(policy: str | Path, calibration: str | Path, out_dir: str | Path, layers: str | None = None,
                      io: str = "int8", granularity: str = "per-channel", allow_float: bool = False,
                      prescale: str = "standardize", activations: str = "int16",
                      progress: Callable[[str], None] | None = None) -> dict:
    """Export the policy file to ``out_dir`` (docs/export.md); every input checked first."""
    say = progress or (lambda line: None)
    for name, value, known in (("io", io, IO_TYPES), ("granularity", granularity, GRANULARITIES),
                               ("activations", activations, ACTIVATIONS)):
        if value not in known:
            raise CprError(f"{name} must be one of {', '.join(known)}, not {value!r}")
    model = load_policy(policy, layers)
    in_dim, out_dim = in_out(model)
    calib, held = load_calibration(calibration, in_dim)
    offset, gain = input_prescale(calib, prescale)
    try:
        return _export(model, Path(policy), Path(calibration), Path(out_dir), calib, held, offset, gain, io,
                       granularity, allow_float, prescale, activations, say)
    except OSError as e:
        raise CprError(f"export to {out_dir} failed: {type(e).__name__}: {e}")


def _export(model, policy, calibration, out_dir, calib, held, offset, gain, io, granularity, allow_float,
            prescale, activations, say) -> dict:
    in_dim, out_dim = in_out(model)
    times: dict[str, float] = {}
    with atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory(prefix="cpr-export-") as scratch:
        work = Path(scratch)
        t = time.perf_counter()
        say(f"[1/6] ONNX: {' '.join(layer_names(model))}, {in_dim} -> {out_dim}, opset {OPSET}")
        onnx_ops = export_onnx(with_prescale(model, offset, gain), in_dim, tmp / "model.onnx")
        times["onnx"] = time.perf_counter() - t
        t = time.perf_counter()
        say("[2/6] importing TensorFlow")
        import_tensorflow(work / "tensorflow.log")
        say("[3/6] onnx2tf: ONNX -> TF SavedModel")
        saved_model = onnx_to_saved_model(tmp / "model.onnx", work / "saved_model", work / "tensorflow.log")
        times["onnx2tf"] = time.perf_counter() - t
        t = time.perf_counter()
        say(f"[4/6] quantising: {granularity} int8 weights, {activations} activations, {io} I/O, "
            f"{len(calib)} calibration rows")
        built = build_int8(saved_model, (calib - offset) * gain, io, granularity, allow_float, work, activations)
        times["quantize"] = time.perf_counter() - t
        ops = flatbuffer.op_names(built["model"])
        say(f"      ops: {' '.join(ops)}")
        t = time.perf_counter()
        say(f"[5/6] verifying in TFLM: arena search, {len(held)} held-back rows")
        data = built["bytes"]
        (work / "model_int8.tflite").write_bytes(data)
        arena, allocations, tries = smallest_arena(work / "model_int8.tflite")
        input_q, output_q = flatbuffer.io_quant(built["model"], "input"), flatbuffer.io_quant(built["model"], "output")
        got = run_tflm(data, (held - offset) * gain, input_q, output_q, arena)
        with torch.no_grad():
            want = model(torch.as_tensor(held)).numpy()
        error = output_error(got, want, output_q, "PyTorch float policy on the held-back calibration rows")
        times["verify"] = time.perf_counter() - t
        say(f"      arena {arena} bytes, output error max {error['max_abs']:.4f} mean {error['mean_abs']:.4f}")

        say("[6/6] writing artefacts")
        digest = hashlib.sha256(data).hexdigest()
        (tmp / "model_int8.tflite").write_bytes(data)
        (tmp / "model_data.h").write_text(c_array.model_header(len(data), digest))
        (tmp / "model_data.c").write_text(c_array.model_source(data, digest))
        (tmp / "op_resolver.h").write_text(op_resolver_header(ops))
        float_left = [f for f in flatbuffer.float_ops(built["model"]) if not f.boundary]
        info = {
            "format": FORMAT, "version": VERSION, "task": None, "preset": None,
            "source": {"kind": "sequential", "path": str(policy.resolve()),
                       "sha256": hashlib.sha256(policy.read_bytes()).hexdigest(), "layers": layer_names(model),
                       "widths": [m.out_features for m in model if isinstance(m, nn.Linear)]},
            "checkpoint": {"path": None, "sha256": None},
            "obs_dim": in_dim, "act_dim": out_dim, "arch": None,
            "io": io, "activations": activations, "granularity": granularity, "allow_float": allow_float,
            "normalization": {"kind": "none"}, "normalization_folded": False,
            "ops": ops, "op_resolver": list(dict.fromkeys(ops)),
            "converter_ops": built["converter_ops"], "fused_islands": built["fused"],
            "float_ops": [f.name for f in float_left], "all_int8": not float_left,
            "input_prescale": prescale,
            "input": {**input_q, "offset": [float(v) for v in offset], "gain": [float(v) for v in gain]},
            "output": output_q, "tensors": flatbuffer.tensor_table(built["model"]),
            "model_bytes": len(data), "sha256": digest, "verified": True,
            "tflm": {"arena_bytes": int(arena), "arena_search_tries": int(tries), "allocations": allocations,
                     "interpreter": f"tflite-micro {_version('tflite_micro')}"},
            "error": error,
            "attribution": {"available": False, "reason": "per-tensor attribution is for TD-MPC checkpoints"},
            "quantization_aware": None,
            "calibration": {"observations": int(len(calib)), "held_out": int(len(held)),
                            "source": f"{calibration.resolve()} (every {HELD_EVERY}th row held back)"},
            "onnx": {"opset": OPSET, "ops": onnx_ops}, "granularity_costs": {},
            "timings_s": {k: round(v, 3) for k, v in times.items()},
            "tools": {d: _version(d) for d in ("torch", "onnx", "onnx2tf", "tensorflow", "tflite_micro")},
            "files": ["model.onnx", "model_int8.tflite", "model_data.c", "model_data.h", "op_resolver.h",
                      "export.json"],
        }
        write_json_atomic(tmp / "export.json", info)
    return info
