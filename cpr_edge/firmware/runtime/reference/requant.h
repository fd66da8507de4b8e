/* Inline TFLM MultiplyByQuantizedMultiplier (double rounding), shared by quant.c and the
 * kernels whose per-output cost matters (internal header). */
#ifndef CPR_REQUANT_H
#define CPR_REQUANT_H
#include <stdint.h>

/* gemmlowp SaturatingRoundingDoublingHighMul: the high 32 bits of 2*a*b, rounded to
 * nearest, ties away from zero; saturates the one overflow case a == b == INT32_MIN.
 *
 * gemmlowp writes it as (ab + nudge) / 2^31 with C's truncating division and
 * nudge = 2^30 (ab >= 0) or 1 - 2^30 (ab < 0). For ab < 0 the truncation is a ceiling:
 * ceil((ab + 1 - 2^30) / 2^31) = floor((ab + 2^30) / 2^31). So both signs reduce to one
 * arithmetic shift of ab + 2^30: the same bits, without a 64-bit division (SMULL, ADDS,
 * ADC and two shifts on Cortex-M). tests/test_kernel_requant.py checks the identity. */
static inline int32_t cpr_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    return (int32_t)((ab + ((int64_t)1 << 30)) >> 31); /* >> of a negative int64 is arithmetic
                                                         * on every compiler we target (GCC) */
}

/* x / 2^exponent rounded to nearest, ties away from zero. */
static inline int32_t cpr_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t cpr_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left_shift = shift > 0 ? shift : 0;
    const int32_t right_shift = shift > 0 ? 0 : -shift;
    /* The left shift wraps like TFLM's int32 multiply (x * (1 << left_shift)). */
    const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
    return cpr_rounding_divide_by_pot(cpr_srdhm(shifted, multiplier), right_shift);
}

/* Same, for multipliers >= 0 (every multiplier QuantizeMultiplier makes): the saturating
 * case of cpr_srdhm needs multiplier == INT32_MIN, so its test is left out. */
#if defined(__GNUC__)
#define CPR_UNLIKELY(c) __builtin_expect(!!(c), 0)
#else
#define CPR_UNLIKELY(c) (c)
#endif

static inline int32_t cpr_requantize_nonneg(int32_t x, int32_t multiplier, int32_t shift)
{
    /* a left shift needs a multiplier > 1, which int8 layers practically never have */
    const int32_t left_shift = CPR_UNLIKELY(shift > 0) ? shift : 0;
    const int32_t right_shift = shift > 0 ? 0 : -shift;
    const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
    const int64_t ab = (int64_t)shifted * (int64_t)multiplier;
    return cpr_rounding_divide_by_pot((int32_t)((ab + ((int64_t)1 << 30)) >> 31), right_shift);
}
#endif
