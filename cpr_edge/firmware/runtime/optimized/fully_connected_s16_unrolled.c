/* FULLY_CONNECTED 16x8 for cores without the DSP extension (Cortex-M0, M3): no SMLALD.
 * Built when CPR_FC_VARIANT_UNROLLED is defined; the weights stay row-major.
 *
 * TFLM accumulates int16 x int8 products in int64, which on these cores costs a 64-bit add
 * (ADDS, ADCS and a sign extension) per product. One product is at most 32768 * 128 = 2^22
 * in magnitude, so 256 of them sum to at most 2^30 and cannot overflow an int32: the kernel
 * sums the products of each run of CPR_FC16_CHUNK inputs in an int32 (4 per loop step) and
 * adds that partial sum to the int64 accumulator once per run. Every sum is exact, so the
 * result equals the reference kernel's bit for bit. */
#include "cpr_runtime.h"

#if defined(CPR_FC_VARIANT_UNROLLED)
#include "../reference/requant64.h"

#define CPR_FC16_CHUNK 256 /* 256 * 2^22 = 2^30 < 2^31 */

void cpr_fully_connected_s16_unrolled(const cpr_fc16_params *p, const int16_t *input,
                                      int32_t batches, int32_t in_depth, const int8_t *weights,
                                      const int64_t *bias, int32_t out_depth, int16_t *output)
{
    const int32_t cstep = p->per_channel ? 1 : 0;
    for (int32_t b = 0; b < batches; ++b, input += in_depth, output += out_depth) {
        const int8_t *w = weights;
        for (int32_t n = 0; n < out_depth; ++n, w += in_depth) {
            int64_t acc = bias ? bias[n] : 0;
            for (int32_t k = 0; k < in_depth;) {
                const int32_t end = in_depth - k > CPR_FC16_CHUNK ? k + CPR_FC16_CHUNK : in_depth;
                int32_t part = 0;
                for (; k + 4 <= end; k += 4) {
                    part += input[k] * w[k] + input[k + 1] * w[k + 1] + input[k + 2] * w[k + 2] +
                            input[k + 3] * w[k + 3];
                }
                for (; k < end; ++k) {
                    part += input[k] * w[k];
                }
                acc += part;
            }
            int32_t v = cpr_requantize64(acc, p->multiplier[n * cstep], p->shift[n * cstep]);
            v = v < p->act_min ? p->act_min : v;
            output[n] = (int16_t)(v > p->act_max ? p->act_max : v);
        }
    }
}
#else
typedef int cpr_fully_connected_s16_unrolled_not_selected; /* keeps the translation unit non-empty */
#endif
