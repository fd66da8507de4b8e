/* Offsets of the two inputs of a broadcast binary op for flat output index i.
 * Shared by add.c, sub.c, mul.c and squared_difference.c (internal header). */
#ifndef CPR_BROADCAST_H
#define CPR_BROADCAST_H
#include "cpr_runtime.h"

static inline void cpr_broadcast_offsets(const cpr_broadcast *b, int32_t i, int32_t *o1,
                                         int32_t *o2)
{
    int32_t off1 = 0, off2 = 0;
    for (int32_t d = b->dims - 1; d >= 0; --d) {
        const int32_t coord = i % b->shape[d];
        i /= b->shape[d];
        off1 += coord * b->stride1[d];
        off2 += coord * b->stride2[d];
    }
    *o1 = off1;
    *o2 = off2;
}

static inline int32_t cpr_broadcast_count(const cpr_broadcast *b)
{
    int32_t n = 1;
    for (int32_t d = 0; d < b->dims; ++d) {
        n *= b->shape[d];
    }
    return n;
}

static inline int8_t cpr_clamp_s8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* Element i's two inputs, offset and moved to their common scale (TFLM's add/sub/squared
 * difference preparation: left shift, then each input's own multiplier). */
static inline void cpr_arith_rescaled_inputs(const cpr_arith_params *p, const cpr_broadcast *b,
                                             int32_t i, const int8_t *in1, const int8_t *in2,
                                             int32_t *s1, int32_t *s2)
{
    int32_t o1, o2;
    cpr_broadcast_offsets(b, i, &o1, &o2);
    *s1 = cpr_multiply_by_quantized_multiplier_smaller_than_one(
        (in1[o1] + p->input1_offset) * (1 << p->left_shift), p->input1_multiplier, p->input1_shift);
    *s2 = cpr_multiply_by_quantized_multiplier_smaller_than_one(
        (in2[o2] + p->input2_offset) * (1 << p->left_shift), p->input2_multiplier, p->input2_shift);
}

#endif
