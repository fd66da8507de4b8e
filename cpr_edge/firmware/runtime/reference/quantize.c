/* QUANTIZE float32 -> int8 / int16, TFLM AffineQuantize. */
#include "cpr_runtime.h"
#include "float_round.h"

void cpr_quantize_f32_s8(const float *input, int32_t n, float scale, int32_t zero_point,
                         int8_t *output)
{
    for (int32_t i = 0; i < n; ++i) {
        int32_t q = cpr_round_half_away(input[i] / scale);
        /* add the zero point without overflow at the saturated ends */
        q = q > 1000 ? 1000 : (q < -1000 ? -1000 : q);
        q += zero_point;
        q = q < -128 ? -128 : (q > 127 ? 127 : q);
        output[i] = (int8_t)q;
    }
}

void cpr_quantize_f32_s16(const float *input, int32_t n, float scale, int32_t zero_point,
                          int16_t *output)
{
    for (int32_t i = 0; i < n; ++i) {
        int32_t q = cpr_round_half_away(input[i] / scale);
        q = q > 100000 ? 100000 : (q < -100000 ? -100000 : q);
        q += zero_point;
        q = q < -32768 ? -32768 : (q > 32767 ? 32767 : q);
        output[i] = (int16_t)q;
    }
}
