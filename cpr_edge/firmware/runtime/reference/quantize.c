/* QUANTIZE float32 -> int8, TFLM AffineQuantize. */
#include "cpr_runtime.h"

/* roundf() semantics (half away from zero) without libm. */
static int32_t round_half_away(float v)
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

void cpr_quantize_f32_s8(const float *input, int32_t n, float scale, int32_t zero_point,
                         int8_t *output)
{
    for (int32_t i = 0; i < n; ++i) {
        int32_t q = round_half_away(input[i] / scale);
        /* add the zero point without overflow at the saturated ends */
        q = q > 1000 ? 1000 : (q < -1000 ? -1000 : q);
        q += zero_point;
        q = q < -128 ? -128 : (q > 127 ? 127 : q);
        output[i] = (int8_t)q;
    }
}
