/* FULLY_CONNECTED 16x8 (int16 activations, int8 weights), TFLM reference_integer_ops.
 *
 * TFLM ignores the int16 zero points (they are 0 in 16x8 models; the generator refuses any
 * other), accumulates in int64 (with or without bias: tests/test_kernel_fully_connected_s16.py
 * shows the interpreter we verify against does so even without a bias) and requantises with
 * the 16-bit reduced multiplier of its int64 MultiplyByQuantizedMultiplier. */
#include "cpr_runtime.h"
#include "requant64.h"

void cpr_fully_connected_s16_reference(const cpr_fc16_params *p, const int16_t *input,
                                       int32_t batches, int32_t in_depth, const int8_t *weights,
                                       const int64_t *bias, int32_t out_depth, int16_t *output)
{
    for (int32_t b = 0; b < batches; ++b) {
        const int16_t *x = input + b * in_depth;
        for (int32_t n = 0; n < out_depth; ++n) {
            const int8_t *w = weights + n * in_depth;
            const int32_t c = p->per_channel ? n : 0;
            int64_t acc = 0;
            for (int32_t k = 0; k < in_depth; ++k) {
                acc += (int32_t)w[k] * (int32_t)x[k];
            }
            if (bias) {
                acc += bias[n];
            }
            int32_t acc_scaled = cpr_requantize64(acc, p->multiplier[c], p->shift[c]);
            acc_scaled = acc_scaled < p->act_min ? p->act_min : acc_scaled;
            acc_scaled = acc_scaled > p->act_max ? p->act_max : acc_scaled;
            output[b * out_depth + n] = (int16_t)acc_scaled;
        }
    }
}
