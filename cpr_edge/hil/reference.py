"""The host's reference of a board's actions: the exported model run by the real tflite-micro
interpreter, with the input prescale and the quantisation of the export folder.

Everything comes from the export folder (``export.json`` and ``model_int8.tflite``), never from
the board: a quantisation constant the firmware got wrong must show up as a mismatch, not be
copied into the reference. ``check_hello`` compares the board's HELLO with the same figures.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cpr_edge.errors import CprError
from cpr_edge.hil.session import sha256_file

TYPE_RANGES = {"int8": (-128, 127), "int16": (-32768, 32767)}
"""Integer range of each quantised model I/O type the board may use."""


@dataclass
class Quant:
    """Quantisation of the int8/int16 tensor at one end of the integer core."""

    dtype: str
    scale: float
    zero_point: int


def quantize(x: np.ndarray, q: Quant) -> np.ndarray:
    """TFLM's QUANTIZE reference: float32 division, round half away from zero, add the zero
    point, clamp to the type's range (docs/protocol.md)."""
    lo, hi = TYPE_RANGES[q.dtype]
    v = (np.asarray(x, np.float32) / np.float32(q.scale)).astype(np.float64)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + q.zero_point, lo, hi).astype(q.dtype)


def dequantize(v: np.ndarray, q: Quant) -> np.ndarray:
    return ((np.asarray(v, np.int32) - q.zero_point).astype(np.float32) * np.float32(q.scale)).astype(np.float32)


def load_export(model_dir) -> dict:
    """export.json of ``model_dir``, checked to describe the ``model_int8.tflite`` beside it."""
    model_dir = Path(model_dir)
    path, tflite = model_dir / "export.json", model_dir / "model_int8.tflite"
    if not path.is_file() or not tflite.is_file():
        raise CprError(f"{model_dir} is not an export folder (needs export.json and model_int8.tflite)")
    try:
        info = json.loads(path.read_text())
    except ValueError as e:
        raise CprError(f"{path} is not valid JSON: {e}") from None
    sha = sha256_file(tflite)
    if info.get("sha256") != sha:
        raise CprError(f"{path} describes model {str(info.get('sha256'))[:12]}, but {tflite} is {sha[:12]}")
    if info.get("verified") is False:  # a cpr-edge fit probe: never run against the board
        raise CprError(f"{model_dir} was exported as a size/speed probe, not verified in TFLM: "
                       "export it with cpr-edge export")
    return info


def core_quant(tflite_path) -> tuple[Quant, Quant]:
    """Quantisation of the integer core's input and output, read from the .tflite: the model
    I/O tensors themselves, or for float I/O the QUANTIZE output / DEQUANTIZE input."""
    from cpr_edge.codegen.reader import read_model

    g = read_model(tflite_path)
    tin, tout = g.inputs[0], g.outputs[0]
    if g.tensors[tin].dtype == "float32":
        tin = next(op.outputs[0] for op in g.operators if op.name == "QUANTIZE" and tin in op.inputs)
    if g.tensors[tout].dtype == "float32":
        tout = next(op.inputs[0] for op in g.operators if op.name == "DEQUANTIZE" and tout in op.outputs)

    def q(t: int) -> Quant:
        x = g.tensors[t]
        if x.dtype not in TYPE_RANGES or x.scale is None:
            raise CprError(f"model tensor {x.name} is {x.dtype}: the board path needs int8 or int16")
        return Quant(x.dtype, float(np.float32(x.scale[0])), int(x.zero_point[0]))

    return q(tin), q(tout)


def prescale_of(info: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    inp = info.get("input") or {}
    offset = np.asarray(inp.get("offset", np.zeros(n)), np.float32).reshape(-1)
    gain = np.asarray(inp.get("gain", np.ones(n)), np.float32).reshape(-1)
    if offset.size != n or gain.size != n:
        raise CprError(f"export.json input.offset / input.gain have {offset.size} / {gain.size} values, "
                       f"the model takes {n}")
    return offset, gain


class Int8Reference:
    """``ref(obs) -> action``: what the board must compute for a raw observation, by the
    tflite-micro interpreter: ``x = (obs - input.offset) * input.gain`` (float32), quantise,
    invoke, dequantise (docs/protocol.md). Works for int8 and int16 model I/O (by tensor type)
    and for float-I/O models (TFLM's own QUANTIZE / DEQUANTIZE)."""

    def __init__(self, model_dir):
        from tflite_micro import runtime

        self.model_dir = Path(model_dir)
        self.info = load_export(model_dir)
        tflite = self.model_dir / "model_int8.tflite"
        self.interp = runtime.Interpreter.from_file(str(tflite))
        d_in = self.interp.get_input_details(0)
        self.in_dtype = np.dtype(d_in["dtype"])
        self.in_shape = tuple(d_in["shape"])
        self.input_q, self.output_q = core_quant(tflite)
        n = int(np.prod(self.in_shape))
        self.offset, self.gain = prescale_of(self.info, n)
        for key, q in (("input", self.input_q), ("output", self.output_q)):
            rec = self.info.get(key) or {}
            if rec.get("type", "").lower() in TYPE_RANGES and (
                    np.float32(rec.get("scale")) != np.float32(q.scale) or rec.get("zero_point") != q.zero_point):
                raise CprError(f"export.json {key} quantisation (scale {rec.get('scale')}, zero point "
                               f"{rec.get('zero_point')}) differs from the .tflite's ({q.scale}, {q.zero_point})")

    def prescaled(self, obs: np.ndarray) -> np.ndarray:
        return (np.asarray(obs, np.float32).reshape(-1) - self.offset) * self.gain

    @property
    def integer_input(self) -> bool:
        """Whether the model input itself is int8/int16 (then the host may send INFER_Q)."""
        return self.in_dtype != np.float32

    @property
    def input_itemsize(self) -> int:
        return np.dtype(self.input_q.dtype).itemsize

    def quantized_input(self, obs: np.ndarray) -> np.ndarray:
        """What the board's ``model_encode_input`` makes of ``obs``: prescale in float32, then
        TFLM's QUANTIZE; the payload of an INFER_Q frame (docs/protocol.md)."""
        return quantize(self.prescaled(obs), self.input_q)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = self.prescaled(obs)
        if self.in_dtype == np.float32:  # float I/O: TFLM's own QUANTIZE/DEQUANTIZE
            self.interp.set_input(x.reshape(self.in_shape), 0)
            self.interp.invoke()
            return np.asarray(self.interp.get_output(0), np.float32).reshape(-1)
        self.interp.set_input(quantize(x, self.input_q).reshape(self.in_shape), 0)
        self.interp.invoke()
        return dequantize(np.asarray(self.interp.get_output(0)).reshape(-1), self.output_q)

    def check_hello(self, hello) -> None:
        """The board's HELLO must carry exactly the export's quantisation and sizes."""
        h = hello if isinstance(hello, dict) else hello.to_dict()
        want = {"input_scale": np.float32(self.input_q.scale), "input_zero_point": self.input_q.zero_point,
                "output_scale": np.float32(self.output_q.scale), "output_zero_point": self.output_q.zero_point,
                "input_len": int(np.prod(self.in_shape))}
        bad = [f"{k} {h[k]!r} (export: {v!r})" for k, v in want.items()
               if (np.float32(h[k]) != v if k.endswith("scale") else h[k] != v)]
        if bad:
            raise CprError("the board's HELLO disagrees with the export folder: " + ", ".join(bad)
                           + "; rebuild the firmware from this export")
