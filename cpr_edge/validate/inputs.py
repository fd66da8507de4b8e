"""The model as TFLM sees it, and the inputs ``cpr-edge validate`` runs on it.

``TflmModel`` wraps the real tflite-micro interpreter on one .tflite: its input and output
types and shapes, the quantisation of the integer core (cpr_edge.hil.reference.core_quant) and
``run(rows)`` (raw float rows get an export folder's input prescale first, as the board's
``model_encode_input`` does), which returns outputs in the form the board's INFER reply has (float32: the
model's own float output, or the int8/int16 output dequantised as ``model_decode_output``
does). Inputs come from a .npy (``load_inputs``) or a seeded generator (``random_inputs``),
checked against the model before anything is built.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cpr_edge.errors import CprError
from cpr_edge.hil.reference import TYPE_RANGES, Quant, core_quant, dequantize, quantize

MAX_ROWS = 100_000
"""Upper bound on validate inputs (at about 200 round trips/s on QEMU: over 8 minutes)."""
RANDOM_MARGIN = 0.1
"""Random float inputs span the input quantisation's range plus this fraction on each side,
so that the clamp of QUANTIZE is exercised too."""


@dataclass
class Io:
    dtype: str
    """``float32``, ``int8`` or ``int16``: the model's own input/output tensor type."""
    shape: tuple[int, ...]
    quant: Quant
    """The integer core's quantisation at this end (for float I/O: the QUANTIZE output /
    DEQUANTIZE input)."""

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def integer(self) -> bool:
        return self.dtype != "float32"


class TflmModel:
    """The tflite-micro interpreter (PyPI ``tflite-micro``) on ``path``."""

    def __init__(self, path: str | Path, prescale: tuple | None = None, label: str | None = None):
        from tflite_micro import runtime

        from cpr_edge.codegen.reader import read_model

        self.path = Path(path)
        label = label or self.path.name  # the user's file name in messages
        g = read_model(self.path)
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise CprError(f"{label}: the model must have one input and one output, not "
                           f"{len(g.inputs)} and {len(g.outputs)}")
        data = self.path.read_bytes()
        try:
            self.interp = runtime.Interpreter.from_bytes(data, arena_size=max(1 << 20, 8 * len(data)))
        except Exception as e:  # TFLM's own refusal (an op it lacks, a bad model)
            raise CprError(f"TFLM cannot load {label}: {' '.join(str(e).split())[:200]}") from None
        try:
            q_in, q_out = core_quant(self.path)
        except StopIteration:  # float I/O without the QUANTIZE / DEQUANTIZE ends
            raise CprError(f"{label}: a float model input must feed a QUANTIZE and a float output come "
                           f"from a DEQUANTIZE (an integer model inside)") from None
        d_in, d_out = self.interp.get_input_details(0), self.interp.get_output_details(0)
        self.input = Io(np.dtype(d_in["dtype"]).name, tuple(int(v) for v in d_in["shape"]), q_in)
        self.output = Io(np.dtype(d_out["dtype"]).name, tuple(int(v) for v in d_out["shape"]), q_out)
        for end in (self.input, self.output):
            if end.dtype not in ("float32", *TYPE_RANGES):
                raise CprError(f"{label}: model I/O of type {end.dtype}; validate takes int8, int16 or float32")
        self.prescale = None
        if prescale is not None:  # an export folder's input.offset / input.gain (export.json)
            n = self.input.size
            offset, gain = (np.broadcast_to(np.asarray(v if v is not None else d, np.float32).reshape(-1), (n,))
                            for v, d in zip(prescale, (0.0, 1.0)))
            self.prescale = (offset.astype(np.float32), gain.astype(np.float32))

    def prescaled(self, x: np.ndarray) -> np.ndarray:
        """What the board's ``model_encode_input`` makes of a raw float input before quantising:
        ``(x - offset) * gain`` in float32 (identity for a bare .tflite)."""
        x = np.asarray(x, np.float32)
        if self.prescale is None:
            return x
        offset, gain = self.prescale
        return ((x - offset) * gain).astype(np.float32)

    def run(self, rows: np.ndarray) -> np.ndarray:
        """Outputs [N, output size] as float32, one invoke per row of ``rows`` (model input type)."""
        out = []
        if not self.input.integer:  # raw float inputs: the board prescales them (INFER)
            rows = self.prescaled(rows)
        for row in rows:
            self.interp.set_input(np.asarray(row).reshape(self.input.shape), 0)
            self.interp.invoke()
            out.append(np.asarray(self.interp.get_output(0)).reshape(-1))
        y = np.stack(out)
        return y.astype(np.float32) if not self.output.integer else dequantize(y, self.output.quant)


def _rows(x: np.ndarray, model: TflmModel, what: str) -> np.ndarray:
    n = model.input.size
    if x.ndim == 1 and x.size == n:
        x = x.reshape(1, n)  # a single input
    if x.ndim < 2 or x.shape[0] < 1 or int(np.prod(x.shape[1:])) != n:
        raise CprError(f"{what} has shape {list(x.shape)}; the model takes rows of {n} values "
                       f"(shape [N, {n}] or [N, {', '.join(str(d) for d in model.input.shape[1:])}])")
    if x.shape[0] > MAX_ROWS:
        raise CprError(f"{what} has {x.shape[0]} rows; validate runs at most {MAX_ROWS}")
    return x.reshape(x.shape[0], n)


def prepare(x: np.ndarray, model: TflmModel, what: str) -> np.ndarray:
    """Rows in the model's input type: float32 for a float input; for an integer input the
    values themselves if integer (range-checked), else quantised as the board would."""
    x = _rows(np.asarray(x), model, what)
    if x.dtype.kind not in "iuf":
        raise CprError(f"{what} holds {x.dtype} values; give numbers")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise CprError(f"{what} holds non-finite values (the board refuses them, BAD_VALUE)")
    if not model.input.integer:
        return x.astype(np.float32)
    if x.dtype.kind == "f":  # real values: prescaled and quantised as INFER's model_encode_input does
        return quantize(model.prescaled(x), model.input.quant)
    lo, hi = TYPE_RANGES[model.input.dtype]
    if x.min() < lo or x.max() > hi:
        raise CprError(f"{what} holds integers outside {model.input.dtype} [{lo}, {hi}], the model input type")
    return x.astype(model.input.dtype)


def load_inputs(path: str | Path, model: TflmModel) -> np.ndarray:
    """A .npy of inputs (``--inputs``): [N, input size] or [N, *input shape]."""
    path = Path(path)
    if not path.is_file():
        raise CprError(f"--inputs {path}: no such file")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CprError(f"--inputs {path} is not a readable .npy array: {' '.join(str(e).split())[:160]}") from None
    if not isinstance(x, np.ndarray):
        raise CprError(f"--inputs {path} holds an archive, not one array: save it with numpy.save")
    return prepare(x, model, f"--inputs {path.name}")


def random_inputs(n: int, model: TflmModel, seed: int = 0) -> np.ndarray:
    """``--random N``: integer inputs uniform over the whole input type; float inputs uniform
    over what the input quantisation represents, widened by RANDOM_MARGIN each side."""
    if not 1 <= n <= MAX_ROWS:
        raise CprError(f"--random {n}: give 1 .. {MAX_ROWS} inputs")
    rng = np.random.default_rng(seed)
    size = (n, model.input.size)
    if model.input.integer:
        lo, hi = TYPE_RANGES[model.input.dtype]
        return rng.integers(lo, hi + 1, size=size).astype(model.input.dtype)
    q = model.input.quant
    lo, hi = TYPE_RANGES[q.dtype]
    a, b = (lo - q.zero_point) * q.scale, (hi - q.zero_point) * q.scale
    pad = RANDOM_MARGIN * (b - a)
    u = rng.uniform(a - pad, b + pad, size=size)
    if model.prescale is not None:  # back to raw inputs: x = u / gain + offset
        offset, gain = (v.astype(np.float64) for v in model.prescale)
        u = u / np.where(gain != 0, gain, 1.0) + offset
    return u.astype(np.float32)
