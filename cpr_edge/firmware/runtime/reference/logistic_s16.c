/* LOGISTIC int16 (zero points 0, output scale 2^-15), TFLM reference_integer_ops::Logistic:
 * the 256-entry sigmoid table with linear interpolation over 9 fractional bits. */
#include "cpr_runtime.h"

void cpr_logistic_s16(const cpr_sigmoid16_params *p, const int16_t *input, int32_t n,
                      int16_t *output)
{
    int32_t multiplier = p->input_multiplier, left_shift = p->input_left_shift;
    if (multiplier == 0) { /* power-of-two input scale */
        multiplier = 3 << left_shift;
        left_shift = 0;
    }
    const int32_t round = left_shift > 0 ? 1 << (left_shift - 1) : 0;
    for (int32_t i = 0; i < n; ++i) {
        const int32_t x = ((int32_t)input[i] * multiplier + round) >> left_shift;
        const uint32_t ax = (uint32_t)(x < 0 ? -x : x);
        const uint32_t uh = ax >> 9;
        uint32_t result;
        if (uh >= 255) {
            result = 0x7FFFu << 10;
        } else {
            const uint32_t ua = p->table[uh], ub = p->table[uh + 1];
            result = (ua << 9) + (ax & 0x1FF) * (ub - ua);
        }
        result = x >= 0 ? result + (1u << 9) : (1u << 25) - result + (1u << 9) - 1;
        output[i] = (int16_t)(result >> 10);
    }
}
