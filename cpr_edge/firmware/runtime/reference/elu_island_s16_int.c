/* The float ELU island of a 16x8 model, DEQUANTIZE(int16) -> ELU(float) -> QUANTIZE(int16),
 * in integers only: for cores without an FPU, where elu_island_s16.c's float expm1 and
 * division run in soft float.
 *
 * With n = q - zp_in the output is zp_out +/- round_half_away(magnitude):
 *   n >= 0: magnitude = n * pos_mult / 2^pos_shift          (n * s_in / s_out)
 *   n <  0: magnitude = (neg_full - hi[m >> 8] * lo[m & 255] / 2^31) / 2^neg_shift, m = -n
 *                                                           ((1 - e^(-s_in m)) / s_out)
 * The generator (codegen/elu16_int.py) emulates these integer operations for all 65536
 * inputs and compares them with the TFLM interpreter; the inputs where the two differ lie
 * within `guard` (in 2^-shift units) of a rounding boundary and are stored in exc_q / exc_y,
 * so the list is searched only for inputs that close to one half. The result is TFLM's for
 * every input. */
#include "cpr_runtime.h"
#include "elu_exceptions.h"

void cpr_elu_island_s16_int(const cpr_elu16_int_params *p, const int16_t *input, int32_t n,
                            int16_t *output)
{
    for (int32_t i = 0; i < n; ++i) {
        const int32_t q = input[i];
        const int32_t d = q - p->input_zero_point;
        uint64_t mag;
        int32_t shift;
        int64_t guard;
        if (d >= 0) {
            mag = (uint64_t)(uint32_t)d * p->pos_mult;
            shift = p->pos_shift;
            guard = p->pos_guard;
        } else {
            const uint32_t m = (uint32_t)(-d);
            const uint32_t a = m >> 8;
            const uint64_t e = a < (uint32_t)p->hi_len
                                   ? ((uint64_t)p->hi[a] * p->lo[m & 255u]) >> 31
                                   : 0u;
            mag = (uint64_t)p->neg_full - e;
            shift = p->neg_shift;
            guard = p->neg_guard;
        }
        const uint64_t half = (uint64_t)1 << (shift - 1);
        if (guard >= 0) {
            const uint64_t frac = mag & ((half << 1) - 1u);
            const uint64_t dist = frac > half ? frac - half : half - frac;
            if (dist <= (uint64_t)guard) {
                const int32_t k = cpr_elu_find_exception(p->exc_q, p->exceptions, q);
                if (k >= 0) {
                    output[i] = p->exc_y[k];
                    continue;
                }
            }
        }
        uint64_t r = (mag + half) >> shift;
        r = r > 100000u ? 100000u : r;
        const int32_t v = d >= 0 ? p->output_zero_point + (int32_t)r
                                 : p->output_zero_point - (int32_t)r;
        output[i] = (int16_t)(v < -32768 ? -32768 : (v > 32767 ? 32767 : v));
    }
}
