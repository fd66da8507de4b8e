/* ADD int8 with broadcasting, TFLM reference integer semantics: both inputs are moved
 * to a common scale with a left shift of 20 bits, combined, then requantised. */
#include "cpr_runtime.h"
#include "broadcast.h"

void cpr_add_s8(const cpr_arith_params *p, const cpr_broadcast *b, const int8_t *in1,
                const int8_t *in2, int8_t *out)
{
    const int32_t n = cpr_broadcast_count(b);
    for (int32_t i = 0; i < n; ++i) {
        int32_t o1, o2;
        cpr_broadcast_offsets(b, i, &o1, &o2);
        const int32_t x1 = (in1[o1] + p->input1_offset) * (1 << p->left_shift);
        const int32_t x2 = (in2[o2] + p->input2_offset) * (1 << p->left_shift);
        const int32_t s1 = cpr_multiply_by_quantized_multiplier_smaller_than_one(
            x1, p->input1_multiplier, p->input1_shift);
        const int32_t s2 = cpr_multiply_by_quantized_multiplier_smaller_than_one(
            x2, p->input2_multiplier, p->input2_shift);
        const int32_t raw = cpr_multiply_by_quantized_multiplier_smaller_than_one(
                                s1 + s2, p->output_multiplier, p->output_shift) +
                            p->output_offset;
        out[i] = cpr_clamp_s8(raw, p->act_min, p->act_max);
    }
}
