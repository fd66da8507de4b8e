/* The float ELU island of a 16x8 model, DEQUANTIZE(int16) -> ELU(float) -> QUANTIZE(int16),
 * computed as TFLM runs it.
 *
 * TFLM has no integer ELU for int16, so the converter leaves it in float. The island's output
 * depends only on its int16 input. For x >= 0 ELU is the identity, and the dequantise
 * (one float32 product), the float32 division and round-half-away of QUANTIZE are IEEE basic
 * operations the board computes exactly as the host does. For x < 0 TFLM calls the C
 * library's expm1f, which a board cannot reproduce bit for bit; this kernel uses its own
 * float32 expm1 (fixed operation order, no FMA contraction under -std=c11) and the generator,
 * which emulates every operation of this file in numpy float32, compares all 65536 inputs
 * with the TFLM interpreter and lists the inputs where the two quantised results differ:
 * exc_q (sorted) / exc_y hold TFLM's output for those. The result is TFLM's for every input. */
#include "cpr_runtime.h"
#include "elu_exceptions.h"
#include "float_round.h"

#define CPR_LN2_HI 0x1.62e4p-1f       /* ln 2 split for an exact k * ln2_hi */
#define CPR_LN2_LO 0x1.7f7d1cp-20f
#define CPR_INV_LN2 0x1.715476p+0f

/* expm1(x) for x < 0 in float32: x = k ln2 + r, expm1(x) = 2^k expm1(r) + (2^k - 1). */
static float expm1_negative(float x)
{
    if (x < -17.0f) {
        return -1.0f; /* expm1 rounds to -1 in float32 below about -17.3 */
    }
    const int32_t k = cpr_round_half_away(x * CPR_INV_LN2);
    const float kf = (float)k;
    const float hi = x - kf * CPR_LN2_HI;
    const float r = hi - kf * CPR_LN2_LO;
    float p = 0x1.a01a02p-13f;          /* 1/5040 */
    p = p * r + 0x1.6c16c2p-10f;        /* 1/720 */
    p = p * r + 0x1.111112p-7f;         /* 1/120 */
    p = p * r + 0x1.555556p-5f;         /* 1/24 */
    p = p * r + 0x1.555556p-3f;         /* 1/6 */
    p = p * r + 0.5f;
    const float em1 = r + (r * r) * p;  /* expm1(r), |r| <= ln2 / 2 */
    union {
        uint32_t u;
        float f;
    } two_k = {(uint32_t)(k + 127) << 23}; /* k in [-25, 0]: a normal float */
    return two_k.f * em1 + (two_k.f - 1.0f);
}

void cpr_elu_island_s16(const cpr_elu16_params *p, const int16_t *input, int32_t n,
                        int16_t *output)
{
    for (int32_t i = 0; i < n; ++i) {
        const int32_t q = input[i];
        const int32_t k = cpr_elu_find_exception(p->exc_q, p->exceptions, q);
        if (k >= 0) {
            output[i] = p->exc_y[k];
            continue;
        }
        const float x = p->input_scale * (float)(q - p->input_zero_point);
        const float y = x < 0.0f ? expm1_negative(x) : x;
        int32_t v = cpr_round_half_away(y / p->output_scale);
        v = v > 100000 ? 100000 : (v < -100000 ? -100000 : v);
        v += p->output_zero_point;
        output[i] = (int16_t)(v < -32768 ? -32768 : (v > 32767 ? 32767 : v));
    }
}
