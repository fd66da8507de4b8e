"""The deployed controller as the int8 TFLite model computes it, in PyTorch.

``FakeQuantPolicy`` wraps a checkpoint's encoder and pi (sharing their parameters) and
reproduces what the export makes of them (docs/export.md, docs/quantization.md):

- the model input is ``x = (obs - offset) * gain``; the observation normalisation and the
  prescale are folded into the first layer on the fly, so gradients reach the checkpoint's
  own weights;
- weights per-channel symmetric int8 (scale ``max|w_row| / 127``), biases int32 on the
  ``input_scale * weight_scale`` grid;
- activations asymmetric int8 with the TF converter's calibration rule: min/max over the
  calibration observations of the *float* model, widened to include 0, ``scale = (max -
  min) / 255``, ``zero_point = round(-128 - min / scale)``;
- a Linear followed directly by a Linear (the encoder's latent) loses its bias to the next
  layer's, as onnx2tf folds it, so the quantised latent tensor is ``W h`` without ``b``;
- ELU quantises its input, computes in float, quantises its output (TFLM's int8 ELU is a
  table built that way); TANH's output is fixed at scale 1/128, zero point 0;
- rounding is half away from zero; gradients pass straight through (zero outside the range).

``calibrate`` sets the ranges; since they come from the float model by the converter's own
rule on the same observations, the converter then uses exactly these ranges.
``int8_forward`` is the integer path (TFLM's requantisation, tables made by the TFLM
interpreter): it equals the TFLM int8 model of the same weights (tests/test_fake_quant.py).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cpr_edge.errors import CprError

TANH_SCALE, TANH_ZERO_POINT = 1.0 / 128.0, 0
QMIN, QMAX = -128, 127
ACTS = {nn.ELU: "elu", nn.ReLU: "relu"}


def round_away(v: torch.Tensor) -> torch.Tensor:
    """Round half away from zero (TfLiteRound, std::round)."""
    return torch.sign(v) * torch.floor(torch.abs(v) + 0.5)


def minmax_qparams(lo: float, hi: float) -> tuple[float, int]:
    """The converter's int8 activation quantisation of a calibrated range (0 always inside)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0:
        return 1.0, 0
    scale = float(np.float32((hi - lo) / 255.0))
    zp = float(round_away(torch.tensor(QMIN - lo / scale, dtype=torch.float64)))
    return scale, int(min(QMAX, max(QMIN, zp)))


def fake_quant(x: torch.Tensor, scale: float, zp: int, qmin: int = QMIN, qmax: int = QMAX) -> torch.Tensor:
    """Quantise-dequantise with a straight-through gradient inside the representable range."""
    lo, hi = (qmin - zp) * scale, (qmax - zp) * scale
    xc = torch.clamp(x, lo, hi)
    q = torch.clamp(round_away(xc / scale) + zp, qmin, qmax)
    return xc + ((q - zp) * scale - xc).detach()


def weight_scales(w: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """Per output row (or, per tensor, one for all rows): max |w| / 127; an all-zero row gets
    scale 1."""
    m = w.detach().abs().amax(dim=1)
    if not per_channel:
        m = m.max().expand_as(m)
    return torch.where(m > 0, m / 127.0, torch.ones_like(m)).float()


class FakeQuantPolicy(nn.Module):
    """encoder -> pi -> tanh as the int8 model computes it (see the module docstring)."""

    def __init__(self, encoder: nn.Module, pi: nn.Module, normalization: dict | None,
                 offset: np.ndarray, gain: np.ndarray, granularity: str = "per-channel"):
        super().__init__()
        self.encoder, self.pi = encoder, pi
        self.stages = _stages(list(encoder.net) + list(pi.net))
        if granularity not in ("per-channel", "per-tensor"):
            raise CprError(f"granularity must be per-channel or per-tensor, not {granularity!r}")
        self.per_channel = granularity == "per-channel"
        norm = normalization or {"kind": "none"}
        self.norm = None
        if norm.get("kind", "none") != "none":
            self.register_buffer("norm_mean", torch.as_tensor(np.asarray(norm["mean"], np.float32)))
            self.register_buffer("norm_std", torch.as_tensor(np.asarray(norm["std"], np.float32)))
            self.norm = True
        self.register_buffer("offset", torch.as_tensor(np.asarray(offset, np.float32)))
        self.register_buffer("gain", torch.as_tensor(np.asarray(gain, np.float32)))
        self.qparams: list[tuple[float, int]] | None = None
        """per quantised activation tensor, in model order: (scale, zero_point)"""
        self.quantize = True
        self._tables: dict[tuple, torch.Tensor] = {}
        self.bounds: list[tuple[int, int]] | None = None
        """per tensor (qmin, qmax) for the ``only`` rounding; None: int8 everywhere (an int16
        model's attribution sets int16 bounds)"""
        self.only: set | None = None
        """quantise only these tensor indices (and weights if ``"weights"`` is in it); None: all"""

    # -- the layers as the exported graph has them ------------------------------------
    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor | None, str | None]]:
        """(weight, bias or None, activation) per FULLY_CONNECTED, folds applied."""
        out = []
        carry = None  # bias of a Linear with no activation, folded into the next layer
        for i, (lin, act) in enumerate(self.stages):
            w, b = lin.weight, lin.bias
            if i == 0:  # the same float32 operations as export.onnx_graph.deployed_policy
                if self.norm:
                    w = w / self.norm_std
                    b = b - w @ self.norm_mean
                b = b + w @ self.offset
                w = w / self.gain
            if carry is not None:
                b = b + w @ carry
                carry = None
            if act is None and i + 1 < len(self.stages):
                carry, b = b, None
            out.append((w, b, act))
        return out

    def tensors(self, x: torch.Tensor, quantize: bool | None = None) -> list[torch.Tensor]:
        """Every activation tensor of the model, input first, action last (float values).

        Fully quantised, each value is the TFLM integer result (``integer_tensors``) and the
        gradient that of the float computation (straight through); with ``only`` set, the
        chosen tensors are rounded to their grid and the rest stay float."""
        return self._run(x, self.quantize if quantize is None else quantize)[0]

    def integer_tensors(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The int8 values (int64 tensors) of every activation tensor, as TFLM computes them."""
        with torch.no_grad():
            return self._run(x, True, exact_only=True)[1]

    def _run(self, x: torch.Tensor, quantize: bool, exact_only: bool = False):
        if quantize and self.qparams is None:
            raise CprError("fake-quant policy has no ranges: call calibrate() first")
        exact = quantize and self.only is None
        if exact and self.bounds and any(b != (QMIN, QMAX) for b in self.bounds):
            raise CprError("the integer path models int8 models only; an int16 model is rounded with `only`")
        out: list[torch.Tensor] = []
        ints: list[torch.Tensor] = []

        def emit(t: torch.Tensor, qi: torch.Tensor | None = None) -> torch.Tensor:
            k = len(out)
            if exact:
                s, z = self.qparams[k]
                if qi is None:  # the model input: TFLM's QUANTIZE, in float32
                    qi = torch.clamp(round_away(t.detach().float() / np.float32(s)) + z, QMIN, QMAX).long()
                ints.append(qi)
                if not exact_only:
                    t = t + ((qi - z).to(t.dtype) * s - t).detach()
            elif quantize and k in self.only:
                t = fake_quant(t, *self.qparams[k], *(self.bounds[k] if self.bounds else (QMIN, QMAX)))
            out.append(t)
            return t

        x = emit(x)
        for w, b, act in self.layers():
            k_in = len(out) - 1
            if quantize and (exact or "weights" in self.only):
                s_in = self.qparams[k_in][0]
                sw = weight_scales(w, self.per_channel)
                # the converter divides in float32 (a float64 ratio of 27.4999991 is 27.5 there)
                # the converter multiplies by the float32 inverse of the scale (53.499996, not the
                # 53.5 a float32 division gives, rounds to 53 in a shipped reacher export)
                wi = torch.clamp(round_away(w.detach().float() * (1.0 / sw.double()).float()[:, None]), -127, 127).double()
                w = w + (wi.to(w.dtype) * sw[:, None] - w).detach()
                if b is not None:
                    bs = (torch.tensor(s_in, dtype=torch.float32) * sw).double()
                    bi = round_away(b.detach().double() / bs)
                    b = b + (bi * bs - b.double()).to(b.dtype).detach()
            y = x @ w.T if not exact_only else None
            if y is not None and b is not None:
                y = y + b
            qi = None
            if exact:
                z_in = self.qparams[k_in][1]
                s_out, z_out = self.qparams[k_in + 1]
                acc = (ints[-1] - z_in) @ wi.long().T
                if b is not None:
                    acc = acc + bi.long()
                mult, shift = multipliers(float(np.float32(s_in)), sw.numpy(), s_out, self.per_channel)
                lo = max(QMIN, z_out) if act == "relu" else QMIN
                qi = torch.clamp(requantize_t(acc, mult, shift) + z_out, lo, QMAX)
            if act == "relu":  # fused into FULLY_CONNECTED: one tensor
                x = emit(torch.relu(y) if y is not None else None, qi)
                continue
            y = emit(y, qi)
            if act in ("elu", "tanh"):
                f = (torch.nn.functional.elu if act == "elu" else torch.tanh)
                qa = None
                if exact:
                    s_a, z_a = self.qparams[len(out)]
                    table = self._table(act.upper(), *self.qparams[len(out) - 1], s_a, z_a)
                    qa = table[qi + 128]
                y = emit(f(y) if y is not None else None, qa)
            x = y
        return out, ints

    def _table(self, op: str, s_in: float, z_in: int, s_out: float, z_out: int) -> torch.Tensor:
        key = (op, s_in, z_in, s_out, z_out)
        if key not in self._tables:
            self._tables[key] = torch.as_tensor(lookup_table(op, s_in, z_in, s_out, z_out))
        return self._tables[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tensors(x)[-1]

    def tensor_names(self) -> list[str]:
        names = ["input"]
        for i, (_, _, act) in enumerate(self.layers()):
            names.append(f"fc{i}" + ("+relu" if act == "relu" else (" (pre-tanh)" if act == "tanh" else "")))
            if act == "elu":
                names.append(f"fc{i}.elu")
            elif act == "tanh":
                names.append("action (tanh)")
        return names

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, bits: int = 8) -> list[tuple[float, int]]:
        """Ranges from the float model on ``x`` (model inputs), by the converter's rule: int8
        asymmetric min/max; int16 (``bits=16``, the 16x8 mode) symmetric, ``max|x| / 32767``,
        zero point 0, TANH's output 1/32768. Sets ``bounds`` to the type's range."""
        ts = self.tensors(torch.as_tensor(x, dtype=self.gain.dtype), quantize=False)
        names = self.tensor_names()
        qp = []
        for t, name in zip(ts, names):
            if bits == 16:
                m = max(abs(t.min().item()), abs(t.max().item()))
                qp.append((1.0 / 32768.0, 0) if name == "action (tanh)" else (float(np.float32(m / 32767.0)) or 1.0, 0))
            elif name == "action (tanh)":
                qp.append((TANH_SCALE, TANH_ZERO_POINT))
            else:
                qp.append(minmax_qparams(t.min().item(), t.max().item()))
        self.qparams = qp
        self.bounds = [(-32768, 32767) if bits == 16 else (QMIN, QMAX)] * len(qp)
        return qp


def _stages(modules: list[nn.Module]) -> list[tuple[nn.Linear, str | None]]:
    """(Linear, following activation) pairs; the last Linear is followed by tanh."""
    stages: list[tuple[nn.Linear, str | None]] = []
    for m in modules:
        if isinstance(m, nn.Linear):
            stages.append((m, None))
        elif type(m) in ACTS and stages and stages[-1][1] is None:
            stages[-1] = (stages[-1][0], ACTS[type(m)])
        else:
            raise CprError(f"quantisation-aware training supports Linear with ELU/ReLU, not {type(m).__name__}")
    if not stages or stages[-1][1] is not None:
        raise CprError("the deployed policy must end in a Linear layer followed by tanh")
    stages[-1] = (stages[-1][0], "tanh")
    return stages


# -- the integer path: what TFLM computes, bit for bit ---------------------------------
def multipliers(s_in: float, s_w: np.ndarray, s_out: float, per_channel: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(multiplier, shift) per row as TFLM's Prepare makes them: per channel the float32 scales
    widened to double and the ratio formed in double; per tensor the input x weight product
    taken in float32 first (GetQuantizedConvolutionMultipler); then QuantizeMultiplier
    (vectorised ``cpr_edge.codegen.quant.quantize_multiplier``)."""
    s_w = np.asarray(s_w, np.float32)
    if per_channel:
        real = np.float64(s_in) * s_w.astype(np.float64) / np.float64(np.float32(s_out))
    else:
        real = (np.float32(s_in) * s_w).astype(np.float64) / np.float64(np.float32(s_out))
    q, shift = np.frexp(real)
    fixed = np.floor(q * (1 << 31) + 0.5)
    shift = np.where(fixed == (1 << 31), shift + 1, shift)
    fixed = np.where(fixed == (1 << 31), fixed / 2, fixed)
    small = shift < -31
    fixed, shift = np.where(small, 0, fixed), np.where(small, 0, shift)
    fixed, shift = np.where(real == 0, 0, fixed), np.where(real == 0, 0, shift)
    return torch.as_tensor(fixed.astype(np.int64)), torch.as_tensor(shift.astype(np.int64))


def requantize_t(acc: torch.Tensor, multiplier: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """TFLM MultiplyByQuantizedMultiplier (double rounding: SaturatingRoundingDoublingHighMul,
    then RoundingDivideByPOT) on int64 tensors holding int32 values."""
    left = torch.clamp(shift, min=0)
    right = torch.clamp(-shift, min=0)
    x = torch.remainder((acc << left) + (1 << 31), 1 << 32) - (1 << 31)  # int32 wrap of the shift
    high = (x * multiplier + (1 << 30)) >> 31
    mask = (torch.ones_like(right) << right) - 1
    threshold = (mask >> 1) + (high < 0).long()
    return (high >> right) + ((high & mask) > threshold).long()


def requantize(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``requantize_t`` on numpy arrays."""
    return requantize_t(torch.as_tensor(np.asarray(acc, np.int64)), torch.as_tensor(np.asarray(multiplier, np.int64)),
                        torch.as_tensor(np.asarray(shift, np.int64))).numpy()


def lookup_table(op: str, s_in: float, z_in: int, s_out: float, z_out: int) -> np.ndarray:
    """The 256-entry int8 table of ``op``, made by running the TFLM interpreter."""
    from cpr_edge.codegen.builder import TensorSpec, build_model, run_tflm

    model = build_model(op, [TensorSpec((1, 256), "int8", [s_in], [z_in]),
                             TensorSpec((1, 256), "int8", [s_out], [z_out])], [0], [1])
    grid = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    return np.asarray(run_tflm(model, [[grid]])[0], np.int64).reshape(256)


def int8_forward(policy: FakeQuantPolicy, x: np.ndarray) -> list[np.ndarray]:
    """Every activation tensor as int8 values [N, width] (``integer_tensors``), numpy."""
    if policy.qparams is None:
        raise CprError("fake-quant policy has no ranges: call calibrate() first")
    ts = policy.integer_tensors(torch.as_tensor(np.asarray(x, np.float32)))
    return [t.numpy() for t in ts]
