/* roundf() semantics (half away from zero) without libm, as TFLM's TfLiteRound on a float
 * (internal header, shared by QUANTIZE and the ELU island). */
#ifndef CPR_FLOAT_ROUND_H
#define CPR_FLOAT_ROUND_H
#include <stdint.h>

static inline int32_t cpr_round_half_away(float v)
{
    if (v != v) {
        return 0; /* NaN: the firmware rejects it before; map it to the zero point */
    }
    if (v >= 2147483520.0f) {
        return INT32_MAX;
    }
    if (v <= -2147483648.0f) {
        return INT32_MIN;
    }
    int32_t t = (int32_t)v;          /* truncates towards zero */
    const float frac = v - (float)t; /* exact: |v| < 2^31 and t has v's integer part */
    if (frac >= 0.5f) {
        t += 1;
    } else if (frac <= -0.5f) {
        t -= 1;
    }
    return t;
}
#endif
