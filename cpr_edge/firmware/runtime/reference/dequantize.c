/* DEQUANTIZE int8 / int16 -> float32, TFLM reference: scale * (q - zero_point), rounded once. */
#include "cpr_runtime.h"

void cpr_dequantize_s8_f32(const int8_t *input, int32_t n, float scale, int32_t zero_point,
                           float *output)
{
    for (int32_t i = 0; i < n; ++i) {
        /* TFLM multiplies in double and rounds to float; the exact product of a float and
         * a 9-bit integer fits a double, so one float multiply rounds identically. */
        output[i] = scale * (float)(input[i] - zero_point);
    }
}

void cpr_dequantize_s16_f32(const int16_t *input, int32_t n, float scale, int32_t zero_point,
                            float *output)
{
    for (int32_t i = 0; i < n; ++i) {
        /* (q - zp) has at most 17 bits: the exact product still fits a double's 53 */
        output[i] = scale * (float)((int32_t)input[i] - zero_point);
    }
}
