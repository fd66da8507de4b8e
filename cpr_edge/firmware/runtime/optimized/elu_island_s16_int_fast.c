/* The integer 16x8 ELU island (reference/elu_island_s16_int.c) in 32-bit arithmetic: the same
 * results for every input, with constants the generator derives from the reference kernel's
 * (codegen/elu16_int.py fast_constants, which also checks the preconditions below; a layer
 * that fails them keeps the reference kernel).
 *
 * With the input zero point 0 and q the int16 input:
 *   q >= 0, X = q * pos_mult, S = pos_shift <= 32: UMULL of (q << (32 - S)) and pos_mult gives
 *     X / 2^S as the high word and X's fraction, scaled to 32 bits, as the low word; adding
 *     2^31 to the low word carries the reference's round-half-up into the high word
 *     (ADDS + ADC, the output zero point folded into the ADC). pos_identity: s_in = s_out
 *     (pos_mult = 2^S), the output is q + zp_out.
 *   q < 0, m = -q: e = hi[m >> 8] * lo[m & 255] / 2^31 is the high word of UMULL(2 hi, lo)
 *     (hi2: the table doubled, < 2^32; padded with zeros to 256 entries, so no bound test);
 *     mag = neg_full - e < 2^31, y = mag + 2^(S-1), r = y >> S, and y << (32 - S) is the
 *     fraction of mag + 1/2 scaled to 32 bits.
 * The reference looks an input up in its exception list when the fraction f of its magnitude
 * satisfies |f - 1/2| <= guard. With x the fraction of mag + 1/2 scaled to 32 bits and g the
 * guard at that scale (g < 2^31), that is (x + g) mod 2^32 <= 2 g. The loop adds g into its
 * one constant (pos_add, neg_add), so the test is one compare; that offset changes the
 * integer part only inside the window, where exact() recomputes the value without it and
 * searches the list (rare, out of line, so the loop keeps its registers). A guard of 1/2 or
 * more makes the window every input. A side without stored inputs skips the test (one loop
 * per case). Without the reference's 100000 clamp: |zp_out +/- r| stays far inside int32, so
 * SSAT #16 alone gives its value.
 * tests/test_kernel_elu_island_s16_fast.py checks all 65536 inputs against TFLM (host,
 * Cortex-M4, Cortex-M3, Cortex-M0). */
#include "cpr_runtime.h"
#include "../reference/elu_exceptions.h"
#include "requant_fast.h"

/* An input in a window: the formula without the window's offset, then the list. */
static __attribute__((noinline)) int32_t exact(const cpr_elu16_fast_params *p, int32_t q)
{
    int32_t v;
    if (q >= 0) {
        const uint64_t y = (uint64_t)((uint32_t)q << p->pos_pre) * p->pos_mult + 0x80000000u;
        v = (int32_t)(y >> 32) + p->output_zero_point;
    } else {
        const uint32_t m = (uint32_t)(-q);
        const uint32_t e = (uint32_t)(((uint64_t)p->hi2[m >> 8] * p->lo[m & 255u]) >> 32);
        v = p->output_zero_point - (int32_t)((p->neg_add - p->neg_g - e) >> p->neg_shift);
    }
    const int32_t k = cpr_elu_find_exception(p->exc_q, p->exceptions, q);
    return k >= 0 ? p->exc_y[k] : v;
}

/* identity / check_pos / check_neg: compile-time constants at every call */
static CPR_ALWAYS_INLINE void island(const cpr_elu16_fast_params *p, const int16_t *input, int32_t n,
                                  int16_t *output, int identity, int check_pos, int check_neg)
{
    const int32_t zp_out = p->output_zero_point, pos_pre = p->pos_pre, neg_shift = p->neg_shift;
    const int32_t neg_up = 32 - neg_shift;
    const uint32_t pos_mult = p->pos_mult, pos_add = p->pos_add, neg_add = p->neg_add;
    const uint32_t *hi2 = p->hi2, *lo = p->lo;
    for (int32_t i = 0; i < n; ++i) {
        const int32_t q = input[i];
        int32_t v;
        if (q >= 0) {
            if (identity) {
                v = q + zp_out;
            } else {
                /* + 2^31 rounds, + pos_g moves the window's edge: the high word changes only
                 * inside the window, where exact() recomputes it */
                const uint64_t y = (uint64_t)((uint32_t)q << pos_pre) * pos_mult + pos_add;
                v = (int32_t)(y >> 32) + zp_out;
                if (check_pos && (uint32_t)y <= p->pos_w) {
                    v = exact(p, q);
                }
            }
        } else {
            const uint32_t m = (uint32_t)(-q);
            const uint32_t e = (uint32_t)(((uint64_t)hi2[m >> 8] * lo[m & 255u]) >> 32);
            const uint32_t z = neg_add - e; /* mag + 1/2 + guard */
            v = zp_out - (int32_t)(z >> neg_shift);
            if (check_neg && (z << neg_up) <= p->neg_w) {
                v = exact(p, q);
            }
        }
        output[i] = (int16_t)cpr_ssat16(v);
    }
}

void cpr_elu_island_s16_int_fast(const cpr_elu16_fast_params *p, const int16_t *input, int32_t n,
                                 int16_t *output)
{
    const int cp = p->check & 1, cn = p->check & 2;
    if (p->pos_identity) {
        if (cn) {
            island(p, input, n, output, 1, 0, 1);
        } else {
            island(p, input, n, output, 1, 0, 0);
        }
    } else if (cp && cn) {
        island(p, input, n, output, 0, 1, 1);
    } else if (cp) {
        island(p, input, n, output, 0, 1, 0);
    } else if (cn) {
        island(p, input, n, output, 0, 0, 1);
    } else {
        island(p, input, n, output, 0, 0, 0);
    }
}
