"""Write model.h and model.c from lowered steps and the activation plan."""
from __future__ import annotations

import numpy as np

from cpr_edge.codegen.lower import Const, Step


def c_float(x: float) -> str:
    """An exact float32 literal (C99 hex float)."""
    return float(np.float32(x)).hex() + "f"


def c_array(c: Const, per_line: int = 20) -> str:
    if c.alternates:
        # word-aligned, like the layout below; the first condition that holds picks the array
        alts = list(c.alternates)
        if c.dsp_values is not None:
            alts.append((f"defined({c.layout_macro})", c.dsp_values))
        out = []
        for i, (cond, values) in enumerate(alts):
            out.append(f"#{'if' if i == 0 else 'elif'} {cond}\n"
                       f"{_array(c.name, c.ctype, values, per_line, ' __attribute__((aligned(4)))')}")
        if not c.only_if:
            out.append(f"#else\n{_array(c.name, c.ctype, c.values, per_line)}")
        return "\n".join(out) + "\n#endif"
    if c.dsp_values is not None:
        # word-aligned: the unrolled kernel loads the interleaved weights a word at a time,
        # and ARMv6-M has no unaligned loads
        return (f"#if defined({c.layout_macro})\n"
                f"/* the layout of the optimised kernels (cpr_runtime.h: {c.layout_macro}) */\n"
                f"{_array(c.name, c.ctype, c.dsp_values, per_line, ' __attribute__((aligned(4)))')}"
                f"\n#else\n{_array(c.name, c.ctype, c.values, per_line)}\n#endif")
    return _array(c.name, c.ctype, c.values, per_line)


def _array(name: str, ctype: str, values: np.ndarray, per_line: int, attributes: str = "") -> str:
    vals = [str(int(v)) for v in values.reshape(-1)]
    if ctype == "int32_t":  # -2147483648 is not a valid int literal in C
        vals = ["(-2147483647 - 1)" if s == "-2147483648" else s for s in vals]
    if ctype == "uint32_t":  # 2^31 and above are not int literals
        vals = [s + "u" for s in vals]
    if ctype == "int64_t":  # 16x8 biases: 64-bit literals
        vals = ["(-9223372036854775807LL - 1)" if s == "-9223372036854775808" else s + "LL" for s in vals]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n    ".join(lines) if lines else "0"
    return f"static const {ctype} {name}[{max(1, len(vals))}]{attributes} = {{\n    {body}\n}};"


# Element type of the quantised model input/output and the runtime's (de)quantiser for it,
# by the tensor's dtype (the int16 entries are filled in with the 16x8 mode's runtime).
IO_TYPES = {"int8": ("int8_t", "cpr_quantize_f32_s8", "cpr_dequantize_s8_f32"),
            "int16": ("int16_t", "cpr_quantize_f32_s16", "cpr_dequantize_s16_f32")}


def io_type(dtype: str) -> tuple[str, str, str]:
    """(C type, quantise function, dequantise function) of a model I/O tensor dtype."""
    if dtype not in IO_TYPES:
        raise ValueError(f"no encode/decode for model I/O of type {dtype}")
    return IO_TYPES[dtype]


def prescale(info: dict) -> tuple[list[float], list[float]]:
    """The input prescale (export.json input.offset / input.gain); identity when not given."""
    n = info["input"]["len"]
    offset = info["input"].get("offset") or [0.0] * n
    gain = info["input"].get("gain") or [1.0] * n
    if len(offset) != n or len(gain) != n:
        raise ValueError(f"input prescale has {len(offset)} offsets / {len(gain)} gains, the model {n} inputs")
    return [float(v) for v in offset], [float(v) for v in gain]


def _float_array(name: str, values: list[float], per_line: int = 6) -> str:
    vals = [c_float(v) for v in values]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return f"const float {name}[MODEL_INPUT_LEN] = {{\n    " + ",\n    ".join(lines) + "\n};"


def encode_decode_c(info: dict) -> str:
    """model_encode_input / model_decode_output: the board side of export.json's input and
    output description (docs/export.md): x = (obs - offset) * gain in float32, then quantise;
    dequantise the output."""
    offset, gain = prescale(info)
    _, quantize, _ = io_type(info["input"]["dtype"])
    _, _, dequantize = io_type(info["output"]["dtype"])
    return f"""/* Input prescale of export.json (input.offset, input.gain). */
{_float_array("model_input_offset", offset)}
{_float_array("model_input_gain", gain)}

void model_encode_input(const float *obs, MODEL_INPUT_T *q)
{{
    float x[MODEL_INPUT_LEN];
    for (int32_t i = 0; i < MODEL_INPUT_LEN; i++)
        x[i] = (obs[i] - model_input_offset[i]) * model_input_gain[i]; /* float32, no FMA possible */
    {quantize}(x, MODEL_INPUT_LEN, model_input_scale, model_input_zero_point, q);
}}

void model_decode_output(const MODEL_OUTPUT_T *q, float *action)
{{
    {dequantize}(q, MODEL_OUTPUT_LEN, model_output_scale, model_output_zero_point, action);
}}
"""


def model_h(info: dict) -> str:
    float_io = info["float_io"]
    in_t, out_t = io_type(info["input"]["dtype"])[0], io_type(info["output"]["dtype"])[0]
    return f"""/* model.h: generated by cpr-edge codegen; do not edit.
 * Source: {info['source']} (sha256 {info['sha256']}) */
#ifndef CPR_MODEL_H
#define CPR_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define MODEL_INPUT_LEN {info['input']['len']}
#define MODEL_OUTPUT_LEN {info['output']['len']}
#define MODEL_ACTIVATION_BYTES {info['activation_bytes']}
#define MODEL_WEIGHT_BYTES {info['weight_bytes']}
#define MODEL_MACS {info['macs_total']}
#define MODEL_FLOAT_IO {int(float_io)}
#define MODEL_IO_INT16 {int(info['input']['dtype'] == 'int16')}

extern const float model_input_scale;
extern const int32_t model_input_zero_point;
extern const float model_output_scale;
extern const int32_t model_output_zero_point;
extern const uint8_t model_sha256[32];
extern const char model_sha256_hex[65];
extern const float model_input_offset[MODEL_INPUT_LEN];
extern const float model_input_gain[MODEL_INPUT_LEN];

/* Element types of the quantised model input and output. */
typedef {in_t} MODEL_INPUT_T;
typedef {out_t} MODEL_OUTPUT_T;

/* obs[MODEL_INPUT_LEN] (raw observation, float32) -> q: x = (obs - model_input_offset) *
 * model_input_gain in float32, then quantised with model_input_scale / zero point like
 * TFLM's QUANTIZE (round half away from zero, clamped to the type's range). */
void model_encode_input(const float *obs, MODEL_INPUT_T *q);
/* q[MODEL_OUTPUT_LEN] -> action: (q - model_output_zero_point) * model_output_scale. */
void model_decode_output(const MODEL_OUTPUT_T *q, float *action);

/* Runs the integer model: in[MODEL_INPUT_LEN] -> out[MODEL_OUTPUT_LEN]. Returns 0.
 * int8_t for an int8 model, int16_t for a 16x8 model (MODEL_IO_INT16). */
int model_invoke(const {in_t} *in, {out_t} *out);
{'''/* Float I/O, as the .tflite has it: QUANTIZE in, model_invoke, DEQUANTIZE out. */
int model_invoke_float(const float *in, float *out);
''' if float_io else ''}
#ifdef __cplusplus
}}
#endif
#endif /* CPR_MODEL_H */
"""


def model_c(info: dict, steps: list[Step], pointers: dict[int, str]) -> str:
    sha = bytes.fromhex(info["sha256"])
    out = [f"""/* model.c: generated by cpr-edge codegen; do not edit.
 * Source: {info['source']} (sha256 {info['sha256']})
 * {len(steps)} operators, {info['macs_total']} MACs, activation arena {info['activation_bytes']} bytes,
 * constants {info['weight_bytes']} bytes (flash). */
#include <stdint.h>
#include <string.h>

#include "cpr_runtime.h"
#include "model.h"

const float model_input_scale = {c_float(info['input']['scale'])};
const int32_t model_input_zero_point = {info['input']['zero_point']};
const float model_output_scale = {c_float(info['output']['scale'])};
const int32_t model_output_zero_point = {info['output']['zero_point']};
const uint8_t model_sha256[32] = {{{', '.join(f'0x{b:02x}' for b in sha)}}};
const char model_sha256_hex[65] = "{info['sha256']}";

/* Activation arena: every intermediate tensor at a fixed offset (see the plan below). */
static _Alignas(8) int8_t arena[MODEL_ACTIVATION_BYTES > 0 ? MODEL_ACTIVATION_BYTES : 1];
"""]
    seen: set[str] = set()
    for step in steps:
        for c in step.consts:
            if c.name not in seen:
                seen.add(c.name)
                out.append(c_array(c))
        out.extend(step.params)
    out.append("\n/* Activation plan (tensor: offset, bytes, live steps):")
    for line in info["plan_lines"]:
        out.append(f" *   {line}")
    in_t, out_t = io_type(info["input"]["dtype"])[0], io_type(info["output"]["dtype"])[0]
    out.append(f" */\n\nint model_invoke(const {in_t} *in, {out_t} *out)\n{{")
    out.append("    (void)arena;")
    for i, step in enumerate(steps):
        op = step.op
        out.append(f"    /* step {i}: {op.name} (operator {op.index}) */")
        if step.call:
            out.append("    " + step.call.format(**{f"t{t}": p for t, p in pointers.items()}))
    for line in info.get("output_copy", []):
        out.append("    " + line)
    out.append("    return 0;\n}\n")
    out.append(encode_decode_c(info))
    if info["float_io"]:
        _, quantize, _ = io_type(info["input"]["dtype"])
        _, _, dequantize = io_type(info["output"]["dtype"])
        out.append(f"""int model_invoke_float(const float *in, float *out)
{{
    MODEL_INPUT_T q_in[MODEL_INPUT_LEN];
    MODEL_OUTPUT_T q_out[MODEL_OUTPUT_LEN];
    {quantize}(in, MODEL_INPUT_LEN, model_input_scale, model_input_zero_point, q_in);
    const int rc = model_invoke(q_in, q_out);
    {dequantize}(q_out, MODEL_OUTPUT_LEN, model_output_scale, model_output_zero_point, out);
    return rc;
}}
""")
    return "\n".join(out)
