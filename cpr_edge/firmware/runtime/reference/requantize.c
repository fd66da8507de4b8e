/* QUANTIZE between integer types (int8 <-> int16, int16 -> int16), TFLM Requantize:
 * (q - input_zero_point) scaled by the double-rounding multiplier of s_in / s_out, plus the
 * output zero point, clamped to the output type. */
#include "cpr_runtime.h"
#include "requant.h"

static int32_t requant(const cpr_requant_params *p, int32_t q)
{
    int32_t v = cpr_requantize(q - p->input_zero_point, p->multiplier, p->shift) +
                p->output_zero_point;
    v = v < p->out_min ? p->out_min : v;
    return v > p->out_max ? p->out_max : v;
}

void cpr_requantize_s16_s8(const cpr_requant_params *p, const int16_t *in, int32_t n, int8_t *out)
{
    for (int32_t i = 0; i < n; ++i) {
        out[i] = (int8_t)requant(p, in[i]);
    }
}

void cpr_requantize_s8_s16(const cpr_requant_params *p, const int8_t *in, int32_t n, int16_t *out)
{
    for (int32_t i = 0; i < n; ++i) {
        out[i] = (int16_t)requant(p, in[i]);
    }
}

void cpr_requantize_s16_s16(const cpr_requant_params *p, const int16_t *in, int32_t n,
                            int16_t *out)
{
    for (int32_t i = 0; i < n; ++i) {
        out[i] = (int16_t)requant(p, in[i]);
    }
}
