/* MEAN int8 (TFLM QuantizedMeanOrSum): int32 sum over the reduced elements, zero point
 * removed, then one requantisation whose multiplier already holds 1/num_elements. */
#include "cpr_runtime.h"

void cpr_mean_s8(const cpr_mean_params *p, const int8_t *input, int32_t outer, int32_t inner,
                 int32_t tail, int8_t *output)
{
    for (int32_t o = 0; o < outer; ++o) {
        for (int32_t t = 0; t < tail; ++t) {
            int32_t sum = 0;
            for (int32_t i = 0; i < inner; ++i) {
                sum += input[(o * inner + i) * tail + t];
            }
            sum -= p->input_zero_point * p->num_elements;
            int32_t v = cpr_multiply_by_quantized_multiplier(sum, p->multiplier, p->shift) +
                        p->output_zero_point;
            v = v < -128 ? -128 : (v > 127 ? 127 : v);
            output[o * tail + t] = (int8_t)v;
        }
    }
}
