/* ADD int8 with broadcasting, TFLM reference integer semantics: both inputs are moved
 * to a common scale with a left shift of 20 bits, combined, then requantised. */
#include "cpr_runtime.h"
#include "broadcast.h"

void cpr_add_s8(const cpr_arith_params *p, const cpr_broadcast *b, const int8_t *in1,
                const int8_t *in2, int8_t *out)
{
    const int32_t n = cpr_broadcast_count(b);
    for (int32_t i = 0; i < n; ++i) {
        int32_t s1, s2;
        cpr_arith_rescaled_inputs(p, b, i, in1, in2, &s1, &s2);
        const int32_t raw = cpr_multiply_by_quantized_multiplier_smaller_than_one(
                                s1 + s2, p->output_multiplier, p->output_shift) +
                            p->output_offset;
        out[i] = cpr_clamp_s8(raw, p->act_min, p->act_max);
    }
}
