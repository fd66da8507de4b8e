/* FULLY_CONNECTED 16x8 with the Cortex-M DSP extension.
 *
 * Built when CPR_FC_VARIANT_DSP or CPR_FC_VARIANT_DSP_ROTATE is defined.
 *
 * The activations are already int16, so one 32-bit load gives SMLALD a ready pair: unlike the int8 kernel there is no SXTAB16 on the input
 * side. Only the weights are widened. The generator stores each group of 4 weights of a row
 * as k, k+2, k+1, k+3: SXTB16 then yields (k, k+1) and SXTB16 ROR 8 yields (k+2, k+3), the
 * pairs matching the input words (x[k], x[k+1]) and (x[k+2], x[k+3]). The in_depth % 4
 * tail stays in order. The int64 accumulation is exact, so the result equals the reference
 * kernel bit for bit. */
#include "cpr_runtime.h"

#if defined(CPR_FC_VARIANT_DSP) || defined(CPR_FC_VARIANT_DSP_ROTATE)
#include "acle_dsp.h"
#include "../reference/requant64.h"

static inline uint32_t read_pair(const int16_t *p)
{
    return cpr_read4((const int8_t *)p);
}

void cpr_fully_connected_s16_dsp(const cpr_fc16_params *p, const int16_t *input,
                                 int32_t batches, int32_t in_depth, const int8_t *weights,
                                 const int64_t *bias, int32_t out_depth, int16_t *output)
{
    const int32_t k4 = in_depth & ~3;
    const int32_t cstep = p->per_channel ? 1 : 0;
    for (int32_t b = 0; b < batches; ++b, input += in_depth, output += out_depth) {
        const int8_t *w = weights;
        for (int32_t n = 0; n < out_depth; ++n, w += in_depth) {
            int32_t v;
            {
                int64_t acc = bias ? bias[n] : 0;
                int32_t k = 0;
                for (; k + 8 <= k4; k += 8) {
                    const uint32_t w0 = cpr_read4(w + k), w1 = cpr_read4(w + k + 4);
                    acc = cpr_smlald(read_pair(input + k), cpr_sxtb16(w0), acc);
                    acc = cpr_smlald(read_pair(input + k + 2), cpr_sxtb16_ror8(w0), acc);
                    acc = cpr_smlald(read_pair(input + k + 4), cpr_sxtb16(w1), acc);
                    acc = cpr_smlald(read_pair(input + k + 6), cpr_sxtb16_ror8(w1), acc);
                }
                for (; k < k4; k += 4) {
                    const uint32_t wv = cpr_read4(w + k);
                    acc = cpr_smlald(read_pair(input + k), cpr_sxtb16(wv), acc);
                    acc = cpr_smlald(read_pair(input + k + 2), cpr_sxtb16_ror8(wv), acc);
                }
                for (; k < in_depth; ++k) {
                    acc += (int32_t)input[k] * w[k];
                }
                v = cpr_requantize64(acc, p->multiplier[n * cstep], p->shift[n * cstep]);
            }
            v = v < p->act_min ? p->act_min : v;
            output[n] = (int16_t)(v > p->act_max ? p->act_max : v);
        }
    }
}
#else
typedef int cpr_fully_connected_s16_dsp_not_selected; /* keeps the translation unit non-empty */
#endif
