"""Lowering of an int8 FULLY_CONNECTED layer that the fast kernels may run (fc_select proved
their bounds): one model.c that builds for every kernel variant, each taking its own
kernel, weight layout and constants under the preprocessor (cpr_runtime.h):

    CPR_FC_S8_FAST_MVE   (mve)          cpr_fc_s8_mve, 16-byte chunk layout
    CPR_FC_S8_FAST       (dsp_rotate)   cpr_fc_s8_blocked or cpr_fc_s8_few_inputs, as
                                        fc_select.choose_dsp predicts cheaper, or the generic
                                        kernel when that is
    otherwise                           cpr_fully_connected_s8 with the TFLM constants
"""
from __future__ import annotations

import numpy as np

from cpr_edge.codegen import fc_select
from cpr_edge.codegen.lower import Const, Step, interleave4

MVE = "defined(CPR_FC_S8_FAST_MVE)"
DSP = "defined(CPR_FC_S8_FAST)"
PLACEHOLDER = np.zeros(1, np.int32)
"""what a constant the few-inputs records hold already is under CPR_FC_S8_FAST (C has no
empty arrays, and an unused one would be a warning)"""


def lower_fast(op, x, w, b, y, batches: int, per_channel: bool, mult: list[int],
               shift: list[int], lo: int, hi: int, fast: dict) -> Step:
    n_out, depth = w.shape
    k = f"fc{op.index}"
    dsp = fc_select.choose_dsp(depth, n_out, True)
    # the MVE kernel for every layer, few-input ones included (5 x 128 on mps3-an547: 2.91
    # instructions/MAC, the DSP records 3.55)
    mve = "mve"
    bias = b.data.reshape(-1).astype(np.int32) if b is not None else np.zeros(n_out, np.int32)
    few_records = fc_select.few_inputs_layout(w.data, fast) if dsp == "few_inputs" else None
    # the MVE kernel shifts with VSHL by a negative count: its shifts are stored negated
    kernel_values = {
        "mve": {"weights": fc_select.mve_layout(w.data), "bias": fast["kbias"],
                "multiplier": fast["multiplier"], "shift": -fast["shift"], "round": fast["round"]},
        "blocked": {"weights": fc_select.blocked_layout(w.data), "bias": fast["kbias"],
                    "multiplier": fast["multiplier"], "shift": fast["shift"], "round": fast["round"]},
        "few_inputs": {"weights": few_records, "bias": PLACEHOLDER, "multiplier": PLACEHOLDER,
                       "shift": PLACEHOLDER, "round": PLACEHOLDER}}

    def alts(name: str) -> list[tuple[str, np.ndarray]]:
        out = [(MVE, kernel_values[mve][name])]
        if dsp != "generic":
            out.append((DSP, kernel_values[dsp][name]))
        return out

    consts = [
        Const(f"{k}_weights", "int8_t", w.data.reshape(-1), "weights",
              dsp_values=interleave4(w.data), layout_macro="CPR_FC_S8_INTERLEAVED",
              alternates=alts("weights")),
        Const(f"{k}_bias", "int32_t", bias, "bias", alternates=alts("bias")),
        Const(f"{k}_multiplier", "int32_t", np.array(mult, np.int32), "requant",
              alternates=alts("multiplier")),
        Const(f"{k}_shift", "int32_t", np.array(shift, np.int32), "requant",
              alternates=alts("shift")),
        Const(f"{k}_round", "int32_t", fast["round"], "requant", only_if=True,
              alternates=alts("round")),
    ]

    def fast_params(kernel: str) -> str:
        sign = -1 if kernel == "mve" else 1
        m0, e0, r0 = ((0, 0, 0) if per_channel else
                      (mult[0], sign * int(fast["shift"][0]), int(fast["round"][0])))
        return (f"static const cpr_fc_fast_params {k}_fast = {{{m0}, {e0}, {r0}, {lo}, {hi}, "
                f"{int(per_channel)}, {k}_multiplier, {k}_shift, {k}_round}};")

    generic_params = (f"static const cpr_fc_params {k}_params = {{{-int(x.zero_point[0])}, 0, "
                      f"{int(y.zero_point[0])}, {lo}, {hi}, {k}_multiplier, {k}_shift, "
                      f"{int(per_channel)}}};")
    params = [f"#if {MVE}", fast_params(mve)]
    if dsp != "generic":
        params += [f"#elif {DSP}", fast_params(dsp)]
    params += ["#else", generic_params, "#endif"]
    args = f"{{t{x.index}}}, {batches}, {depth}, {k}_weights, {k}_bias, {n_out}, {{t{y.index}}});"
    narrow = lo > -128 or hi < 127
    lines = [f"#if {MVE}", f"    {entry_point(mve, per_channel, narrow, depth)}(&{k}_fast, {args}"]
    if dsp != "generic":
        lines += [f"#elif {DSP}", f"    {entry_point(dsp, per_channel, narrow, depth)}(&{k}_fast, {args}"]
    lines += ["#else", f"    cpr_fully_connected_s8(&{k}_params, {args}", "#endif"]
    call = "\n".join(lines).lstrip()
    return Step(op, [x.index], [y.index], call, consts, ["\n".join(params)],
                macs=batches * n_out * depth)


def entry_point(kernel: str, per_channel: bool, narrow: bool, depth: int) -> str:
    """The kernel's entry point for this layer's case (cpr_runtime.h CPR_FC_FAST_ENTRY): the
    linker then keeps only the cases a model uses."""
    if kernel == "few_inputs":
        return f"cpr_fc_s8_few_inputs_{(depth + 1) // 2}" + ("_narrow" if narrow else "")
    if kernel == "mve":  # clamps with VMAX/VMIN in every case
        return f"cpr_fc_s8_mve_{'pc' if per_channel else 'pt'}"
    return f"cpr_fc_s8_blocked_{'pc' if per_channel else 'pt'}" + ("_narrow" if narrow else "")
