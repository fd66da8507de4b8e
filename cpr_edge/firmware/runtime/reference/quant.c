/* Fixed-point requantisation, the TFLM reference way (gemmlowp double rounding). */
#include "cpr_runtime.h"
#include "requant.h"

int32_t cpr_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    return cpr_requantize(x, multiplier, shift);
}

int32_t cpr_multiply_by_quantized_multiplier_smaller_than_one(int32_t x, int32_t multiplier,
                                                              int32_t shift)
{
    return cpr_rounding_divide_by_pot(cpr_srdhm(x, multiplier), -shift);
}
