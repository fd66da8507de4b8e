/* The int8 FULLY_CONNECTED requantisation of the fast kernels (internal header).
 *
 * TFLM's double rounding, out = clamp(RDBPOT(SRDHM(acc, m), e) + output_offset), in five
 * instructions plus the store, with the code generator's promise (cpr_fc_fast_params) that
 * |acc| < 2^29 and that e >= 1:
 *   SRDHM(acc, m) = (acc * m + 2^30) >> 31 = (2 * acc * m + 2^31) >> 32 = SMMULR(2 * acc, m)
 *     (2 * acc does not overflow; m >= 0 never hits SRDHM's saturating case);
 *   RDBPOT(v, e), rounding half away from zero, = (v + 2^(e-1) - (v < 0)) >> e
 *     (for v >= 0 a remainder of 2^(e-1) rounds up, for v < 0 it needs one more);
 *   adding output_offset after the shift is adding output_offset << e before it, so
 *   round = 2^(e-1) + (output_offset << e) is one constant per output channel;
 *   SSAT clamps to int8, a fused activation narrower than that clamps once more.
 * tests/test_kernel_fully_connected_fast.py checks it against TFLM; the bounds are checked by
 * cpr_edge.codegen.fc_select before a layer is given to these kernels. */
#ifndef CPR_REQUANT_FAST_H
#define CPR_REQUANT_FAST_H
#include <stdint.h>

#if defined(__GNUC__)
#define CPR_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define CPR_ALWAYS_INLINE inline
#endif

static CPR_ALWAYS_INLINE int32_t cpr_smmulr(int32_t a, int32_t b)
{
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    int32_t r;
    __asm("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((int64_t)a * b + 0x80000000LL) >> 32); /* arithmetic >> (GCC) */
#endif
}

static CPR_ALWAYS_INLINE int32_t cpr_ssat16(int32_t v)
{
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
    int32_t r;
    __asm("ssat %0, #16, %1" : "=r"(r) : "r"(v));
    return r;
#else
    return v < -32768 ? -32768 : (v > 32767 ? 32767 : v);
#endif
}

static CPR_ALWAYS_INLINE int32_t cpr_ssat8(int32_t v)
{
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
    int32_t r;
    __asm("ssat %0, #8, %1" : "=r"(r) : "r"(v));
    return r;
#else
    return v < -128 ? -128 : (v > 127 ? 127 : v);
#endif
}

/* acc2 = 2 * acc (a kernel whose weights are stored doubled gets it for free);
 * narrow: a compile-time constant at every call (the kernels instantiate both cases) */
static CPR_ALWAYS_INLINE int8_t cpr_fc_requant_fast2(int32_t acc2, int32_t multiplier, int32_t shift,
                                                     int32_t round, int32_t act_min,
                                                     int32_t act_max, int narrow)
{
    int32_t v = cpr_smmulr(acc2, multiplier);
    v = (v + (v >> 31) + round) >> shift;
    v = cpr_ssat8(v);
    if (narrow) {
        v = v < act_min ? act_min : v;
        v = v > act_max ? act_max : v;
    }
    return (int8_t)v;
}

static CPR_ALWAYS_INLINE int8_t cpr_fc_requant_fast(int32_t acc, int32_t multiplier, int32_t shift,
                                                    int32_t round, int32_t act_min, int32_t act_max,
                                                    int narrow)
{
    return cpr_fc_requant_fast2((int32_t)((uint32_t)acc << 1), multiplier, shift, round, act_min,
                                act_max, narrow);
}
#endif
