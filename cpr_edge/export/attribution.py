"""Where the int8 precision goes: per-tensor error of the exported model against float.

Two views, both on the held-back observations (docs/export.md, ``error_attribution``):

- **accumulated**: every quantised activation tensor as the TFLM interpreter computes it
  (read back with ``kPreserveAllTensors``), dequantised, against the same tensor of the float
  model. The error grows along the graph; the tensor where it jumps is where it is made.
- **isolated**: the action error when only that one tensor (or only the weights) is
  quantised and everything else stays float (``FakeQuantPolicy.only``). The largest entries
  say which tensor a cure (a finer input scale, 16-bit activations, quantisation-aware
  training) should address.

The float tensors come from ``FakeQuantPolicy`` (the same folds as the exported graph), and its
integer path is compared with TFLM: ``exact_fraction`` is the share of held-back observations on
which every tensor is bit-identical, the proof that the attribution describes this model.
"""
from __future__ import annotations

import numpy as np
import torch

from cpr_edge.errors import CprError
from cpr_edge.export import flatbuffer
from cpr_edge.quant.fake_quant import FakeQuantPolicy, int8_forward

QUANTISED = ("INT8", "INT16")


def _stats(err: np.ndarray) -> dict:
    return {"mean_abs": float(err.mean()), "p99_abs": float(np.quantile(err, 0.99)), "max_abs": float(err.max())}


def tflm_tensors(data: bytes, model, x: np.ndarray, input_q: dict) -> tuple[list[dict], list[np.ndarray]]:
    """The quantised activation tensors in execution order (input first) and their integer
    values [N, width] from the TFLM interpreter for model inputs ``x`` (float, prescaled)."""
    from tflite_micro import runtime

    from cpr_edge.export.tflm_run import quantize_input

    table = flatbuffer.tensor_table(model)
    sg = model.subgraphs[0]
    order = [int(sg.inputs[0])] + [int(op.outputs[0]) for op in sg.operators]
    rows = [table[i] for i in order if table[i]["type"] in QUANTISED and "scale" in table[i]]
    interp = runtime.Interpreter.from_bytes(data, arena_size=max(1 << 20, 8 * len(data)),
                                            intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    values: list[list[np.ndarray]] = [[] for _ in rows]
    q_in = quantize_input(x, input_q)
    for row in q_in:
        interp.set_input(row[None, :], 0)
        interp.invoke()
        for k, r in enumerate(rows):
            values[k].append(np.asarray(interp.GetTensor(r["index"], 0)["tensor_data"]).reshape(-1))
    return rows, [np.stack(v).astype(np.int64) for v in values]


def error_attribution(ck, data: bytes, model, calib_x: np.ndarray, held_x: np.ndarray,
                      offset: np.ndarray, gain: np.ndarray, input_q: dict, granularity: str = "per-channel") -> dict:
    """export.json ``attribution`` (``calib_x`` / ``held_x``: prescaled model inputs)."""
    try:
        fq = FakeQuantPolicy(ck.agent.model.encoder, ck.agent.model.pi, ck.normalization, offset, gain, granularity)
    except CprError as e:  # a layer kind the fake-quant forward does not model
        return {"available": False, "why": str(e)}
    fq.calibrate(torch.as_tensor(calib_x, dtype=torch.float32))
    x = torch.as_tensor(held_x, dtype=torch.float32)
    with torch.no_grad():
        floats = [t.numpy() for t in fq.tensors(x, quantize=False)]
    names = fq.tensor_names()
    rows, ints = tflm_tensors(data, model, held_x, input_q)
    if len(rows) != len(floats) or any(r["shape"][-1] != f.shape[-1] for r, f in zip(rows, floats)):
        return {"available": False,
                "why": f"the model has {len(rows)} quantised tensors where the float policy has {len(floats)}"}
    # the emulation takes the .tflite's own float32 scales (calibration sums in another order
    # may differ in the last bit, which moves a requantisation multiplier)
    fq.qparams = [(float(r["scale"]), int(r["zero_point"])) for r in rows]
    fq.bounds = [(-32768, 32767) if r["type"] == "INT16" else (-128, 127) for r in rows]
    tensors = []
    for name, row, q, f in zip(names, rows, ints, floats):
        got = (q - row["zero_point"]) * row["scale"]
        err = np.abs(got - f)
        tensors.append({"name": name, "tensor": row["index"], "type": row["type"], "scale": row["scale"],
                        "zero_point": row["zero_point"], "float_min": float(f.min()), "float_max": float(f.max()),
                        "accumulated": {**_stats(err), "mean_lsb": float(err.mean() / row["scale"])}})
    want = floats[-1]
    for k, t in enumerate(tensors):
        t["isolated"] = _isolated(fq, x, want, {k})
    exact = None
    if all(r["type"] == "INT8" for r in rows):
        emulated = int8_forward(fq, held_x)
        same = np.ones(len(held_x), bool)
        for e, q in zip(emulated, ints):
            same &= np.all(e == q, axis=1)
        exact = float(same.mean())
    return {"available": True, "observations": int(len(held_x)), "tensors": tensors,
            "weights_isolated": _isolated(fq, x, want, {"weights"}),
            "exact_fraction": exact}


def _isolated(fq: FakeQuantPolicy, x: torch.Tensor, want: np.ndarray, only: set) -> dict:
    fq.only = only
    try:
        with torch.no_grad():
            got = fq(x).numpy()
    finally:
        fq.only = None
    return _stats(np.abs(got - want))
