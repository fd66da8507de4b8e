/* FULLY_CONNECTED int8, TFLM reference semantics (per-tensor and per-channel). */
#include "cpr_runtime.h"
#include "requant.h"

void cpr_fully_connected_s8_reference(const cpr_fc_params *p, const int8_t *input,
                                      int32_t batches, int32_t in_depth, const int8_t *weights,
                                      const int32_t *bias, int32_t out_depth, int8_t *output)
{
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *x = input + b * in_depth;
        for (int32_t n = 0; n < out_depth; ++n) {
            const int8_t *w = weights + n * in_depth;
            int32_t acc = 0;
            for (int32_t k = 0; k < in_depth; ++k) {
                acc += (x[k] + p->input_offset) * (w[k] + p->weights_offset);
            }
            if (bias) {
                acc += bias[n];
            }
            const int32_t c = p->per_channel ? n : 0;
            acc = cpr_requantize(acc, p->multiplier[c], p->shift[c]);
            acc += p->output_offset;
            acc = acc < p->act_min ? p->act_min : acc;
            acc = acc > p->act_max ? p->act_max : acc;
            output[b * out_depth + n] = (int8_t)acc;
        }
    }
}
