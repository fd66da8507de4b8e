/* FULLY_CONNECTED int8 with the Cortex-M DSP extension (SMLAD on pairs of int16).
 *
 * Built when CPR_FC_VARIANT_DSP or CPR_FC_VARIANT_DSP_ROTATE is defined.
 *
 * Weights come in the "4-row interleaved" layout (the code generator writes it for these
 * variants; cpr_fc_dsp_interleave() makes it at run time): rows are taken in blocks of four,
 * and inside a block the four rows' bytes k..k+3 follow each other (16 bytes per step of k),
 * then the four rows' last in_depth % 4 bytes; rows past the last full block stay row-major.
 * One pointer then walks the weights front to back, which keeps the loop free of index
 * arithmetic and register spills.
 *
 * Each load of four input bytes serves four output rows: SXTAB16 widens its even and odd
 * bytes to int16 while adding the input offset, SXTB16 does the same for each weight word
 * (odd bytes through a rotation by 8), and two SMLADs accumulate four products. Even/odd
 * order is the same on both sides, so every product pairs the right bytes, and int32
 * accumulation is exact: the result equals the reference kernel bit for bit. */
#include "cpr_runtime.h"

#if defined(CPR_FC_VARIANT_DSP) || defined(CPR_FC_VARIANT_DSP_ROTATE)
#include "acle_dsp.h"
#include "../reference/requant.h"

/* The output parameters, copied out of cpr_fc_params once: int8 stores may alias anything,
 * so reading them through the pointer would reload them after every output byte. */
typedef struct {
    int32_t output_offset, act_min, act_max;
    int32_t narrow; /* fused activation narrower than [-128, 127] */
} fc_out;

/* acc already holds the bias (accumulators start from it). SSAT does the int8 clamp of a
 * layer without fused activation in one instruction; a narrower range clamps again. */
static inline int8_t requantize(const fc_out *o, int32_t acc, int32_t multiplier, int32_t shift)
{
    acc = cpr_requantize_nonneg(acc, multiplier, shift) + o->output_offset;
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
    acc = __ssat(acc, 8);
#else
    acc = acc < -128 ? -128 : (acc > 127 ? 127 : acc);
#endif
    if (o->narrow) {
        acc = acc < o->act_min ? o->act_min : acc;
        acc = acc > o->act_max ? o->act_max : acc;
    }
    return (int8_t)acc;
}

/* Four input bytes at xp times the matching 16 interleaved weight bytes at wp, into the
 * accumulators a0..a3 of the current block of four rows. */
#define CPR_FC_DSP_STEP(xp, wp)                                   \
    do {                                                          \
        const uint32_t xv = cpr_read4(xp);                        \
        const int32_t xe = cpr_sxtab16(off2, xv);                 \
        const int32_t xo = cpr_sxtab16_ror8(off2, xv);            \
        uint32_t wv = cpr_read4(wp);                              \
        a0 = cpr_smlad(xe, cpr_sxtb16(wv), a0);                   \
        a0 = cpr_smlad(xo, cpr_sxtb16_ror8(wv), a0);              \
        wv = cpr_read4((wp) + 4);                                 \
        a1 = cpr_smlad(xe, cpr_sxtb16(wv), a1);                   \
        a1 = cpr_smlad(xo, cpr_sxtb16_ror8(wv), a1);              \
        wv = cpr_read4((wp) + 8);                                 \
        a2 = cpr_smlad(xe, cpr_sxtb16(wv), a2);                   \
        a2 = cpr_smlad(xo, cpr_sxtb16_ror8(wv), a2);              \
        wv = cpr_read4((wp) + 12);                                \
        a3 = cpr_smlad(xe, cpr_sxtb16(wv), a3);                   \
        a3 = cpr_smlad(xo, cpr_sxtb16_ror8(wv), a3);              \
    } while (0)

void cpr_fc_dsp_interleave(const int8_t *row_major, int32_t in_depth, int32_t out_depth,
                           int8_t *interleaved)
{
    const int32_t k4 = in_depth & ~3;
    int32_t n = 0;
    for (; n + 4 <= out_depth; n += 4) {
        for (int32_t k = 0; k < k4; k += 4) {
            for (int32_t r = 0; r < 4; ++r) {
                for (int32_t j = 0; j < 4; ++j) {
                    *interleaved++ = row_major[(n + r) * in_depth + k + j];
                }
            }
        }
        for (int32_t r = 0; r < 4; ++r) {
            for (int32_t k = k4; k < in_depth; ++k) {
                *interleaved++ = row_major[(n + r) * in_depth + k];
            }
        }
    }
    for (int32_t i = n * in_depth; i < out_depth * in_depth; ++i) {
        *interleaved++ = row_major[i];
    }
}

/* GCC's first scheduling pass hoists the 8 weight loads of an iteration ahead of their
 * use, which needs more registers than Thumb-2 has and spills accumulators to the stack on
 * every iteration; without it the loop keeps everything in registers. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-schedule-insns")))
#endif
void cpr_fully_connected_s8_dsp(const cpr_fc_params *p, const int8_t *input, int32_t batches,
                                int32_t in_depth, const int8_t *weights, const int32_t *bias,
                                int32_t out_depth, int8_t *output)
{
    const fc_out o = {p->output_offset, p->act_min, p->act_max,
                      p->act_min > -128 || p->act_max < 127};
    const int32_t cstep = p->per_channel ? 1 : 0; /* multiplier/shift stride per output */
    const int32_t input_offset = p->input_offset;
    const uint32_t off16 = (uint32_t)input_offset & 0xFFFFu;
    const uint32_t off2 = off16 | (off16 << 16); /* input offset in both halfwords */
    const int32_t k4 = in_depth & ~3;
    const int32_t tail = in_depth - k4;
    for (int32_t b = 0; b < batches; ++b, input += in_depth, output += out_depth) {
        const int8_t *w = weights;
        int32_t n = 0;
        const int32_t *mult = p->multiplier, *shift = p->shift;
        for (; n + 4 <= out_depth; n += 4) {
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            if (bias) {
                a0 = bias[n];
                a1 = bias[n + 1];
                a2 = bias[n + 2];
                a3 = bias[n + 3];
            }
            const int8_t *x = input;
            /* four 4-byte groups per iteration: the loop overhead is paid once per 64 MACs */
            for (const int8_t *const x_end16 = input + (k4 & ~15); x < x_end16; x += 16, w += 64) {
                CPR_FC_DSP_STEP(x, w);
                CPR_FC_DSP_STEP(x + 4, w + 16);
                CPR_FC_DSP_STEP(x + 8, w + 32);
                CPR_FC_DSP_STEP(x + 12, w + 48);
            }
            for (const int8_t *const x_end4 = input + k4; x < x_end4; x += 4, w += 16) {
                CPR_FC_DSP_STEP(x, w);
            }
            for (int32_t k = 0; k < tail; ++k) {
                const int32_t xk = input[k4 + k] + input_offset;
                a0 += xk * w[k];
                a1 += xk * w[tail + k];
                a2 += xk * w[2 * tail + k];
                a3 += xk * w[3 * tail + k];
            }
            w += 4 * tail;
            output[n] = requantize(&o, a0, mult[0], shift[0]);
            output[n + 1] = requantize(&o, a1, mult[cstep], shift[cstep]);
            output[n + 2] = requantize(&o, a2, mult[2 * cstep], shift[2 * cstep]);
            output[n + 3] = requantize(&o, a3, mult[3 * cstep], shift[3 * cstep]);
            mult += 4 * cstep;
            shift += 4 * cstep;
        }
        for (; n < out_depth; ++n, w += in_depth) { /* leftover rows, row-major */
            int32_t acc = bias ? bias[n] : 0;
            int32_t k = 0;
            for (; k < k4; k += 4) {
                const uint32_t xv = cpr_read4(input + k);
                const uint32_t wv = cpr_read4(w + k);
                acc = cpr_smlad(cpr_sxtab16(off2, xv), cpr_sxtb16(wv), acc);
                acc = cpr_smlad(cpr_sxtab16_ror8(off2, xv), cpr_sxtb16_ror8(wv), acc);
            }
            for (; k < in_depth; ++k) {
                acc += (input[k] + input_offset) * w[k];
            }
            output[n] = requantize(&o, acc, mult[0], shift[0]);
            mult += cstep;
            shift += cstep;
        }
    }
}
#else
typedef int cpr_fully_connected_dsp_not_selected; /* keeps the translation unit non-empty */
#endif
