/* Fixed-point requantisation, the TFLM reference way (gemmlowp double rounding). */
#include "cpr_runtime.h"

/* High 32 bits of 2*a*b, rounded to nearest (ties away from zero); saturates the one
 * overflow case a == b == INT32_MIN. */
static int32_t saturating_rounding_doubling_high_mul(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    /* C division truncates towards zero, as gemmlowp relies on. */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^exponent rounded to nearest, ties away from zero. */
static int32_t rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t cpr_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left_shift = shift > 0 ? shift : 0;
    const int32_t right_shift = shift > 0 ? 0 : -shift;
    /* The left shift wraps like TFLM's int32 multiply (x * (1 << left_shift)). */
    const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier),
                                  right_shift);
}

int32_t cpr_multiply_by_quantized_multiplier_smaller_than_one(int32_t x, int32_t multiplier,
                                                              int32_t shift)
{
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), -shift);
}
