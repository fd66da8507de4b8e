/* FULLY_CONNECTED int8 for cores without the DSP extension (Cortex-M0, M3): no SMLAD, no
 * SXTB16, only 32-bit multiplies. Built when CPR_FC_VARIANT_UNROLLED is defined.
 *
 * The weights come in the DSP kernels' 4-row interleaved layout (cpr_edge.codegen.lower.
 * interleave4): in a block of four rows, row r's bytes k..k+3 are the word at offset
 * 16 * (k / 4) + 4 * r. The generator aligns the array to 4 bytes and every block and group
 * starts at a multiple of 4, so each group of four weights is one aligned word load (ARMv6-M
 * has no unaligned access: a misaligned array would fault, not give wrong numbers). Four
 * input bytes, each loaded and offset once, serve the four rows of a block: 16
 * multiply-accumulates per four input loads and four weight loads, where the reference
 * kernel loads two bytes per product. The weight bytes are sign-extended out of the word
 * with shifts, which every Thumb core has.
 *
 * The products and their int32 sum are those of the reference kernel (weights_offset is 0:
 * symmetric int8 weights, which the generator requires), in another order; int32 addition
 * is associative, so the result equals the reference bit for bit. */
#include "cpr_runtime.h"

#if defined(CPR_FC_VARIANT_UNROLLED)
#include "../reference/requant.h"

/* A 4-byte-aligned word that may alias the int8 weights. */
typedef uint32_t __attribute__((may_alias, aligned(4))) cpr_weight_word;

/* Byte j of a little-endian word, sign-extended. */
#define CPR_BYTE0(v) ((int32_t)(int8_t)(v))
#define CPR_BYTE1(v) ((int32_t)((v) << 16) >> 24)
#define CPR_BYTE2(v) ((int32_t)((v) << 8) >> 24)
#define CPR_BYTE3(v) ((int32_t)(v) >> 24)

/* acc += the four inputs x0..x3 times the four weights of word v */
#define CPR_MAC4(acc, v)                                                          \
    acc += x0 * CPR_BYTE0(v) + x1 * CPR_BYTE1(v) + x2 * CPR_BYTE2(v) + x3 * CPR_BYTE3(v)

static inline int8_t requantize(const cpr_fc_params *p, int32_t acc, int32_t multiplier,
                                int32_t shift)
{
    acc = cpr_requantize_nonneg(acc, multiplier, shift) + p->output_offset;
    acc = acc < p->act_min ? p->act_min : acc;
    acc = acc > p->act_max ? p->act_max : acc;
    return (int8_t)acc;
}

void cpr_fully_connected_s8_unrolled(const cpr_fc_params *p, const int8_t *input,
                                     int32_t batches, int32_t in_depth, const int8_t *weights,
                                     const int32_t *bias, int32_t out_depth, int8_t *output)
{
    const int32_t cstep = p->per_channel ? 1 : 0; /* multiplier/shift stride per output */
    const int32_t off = p->input_offset;
    const int32_t k4 = in_depth & ~3;
    const int32_t tail = in_depth - k4;
    for (int32_t b = 0; b < batches; ++b, input += in_depth, output += out_depth) {
        const int8_t *w = weights;
        const int32_t *mult = p->multiplier, *shift = p->shift;
        int32_t n = 0;
        for (; n + 4 <= out_depth; n += 4) {
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            if (bias) {
                a0 = bias[n];
                a1 = bias[n + 1];
                a2 = bias[n + 2];
                a3 = bias[n + 3];
            }
            const cpr_weight_word *wv = (const cpr_weight_word *)w;
            for (const int8_t *x = input, *const x_end = input + k4; x < x_end; x += 4, wv += 4) {
                const int32_t x0 = x[0] + off, x1 = x[1] + off, x2 = x[2] + off, x3 = x[3] + off;
                CPR_MAC4(a0, wv[0]);
                CPR_MAC4(a1, wv[1]);
                CPR_MAC4(a2, wv[2]);
                CPR_MAC4(a3, wv[3]);
            }
            w += 4 * k4;
            for (int32_t k = 0; k < tail; ++k) { /* each row's last in_depth % 4 bytes */
                const int32_t xk = input[k4 + k] + off;
                a0 += xk * w[k];
                a1 += xk * w[tail + k];
                a2 += xk * w[2 * tail + k];
                a3 += xk * w[3 * tail + k];
            }
            w += 4 * tail;
            output[n] = requantize(p, a0, mult[0], shift[0]);
            output[n + 1] = requantize(p, a1, mult[cstep], shift[cstep]);
            output[n + 2] = requantize(p, a2, mult[2 * cstep], shift[2 * cstep]);
            output[n + 3] = requantize(p, a3, mult[3 * cstep], shift[3 * cstep]);
            mult += 4 * cstep;
            shift += 4 * cstep;
        }
        for (; n < out_depth; ++n, w += in_depth) { /* the last out_depth % 4 rows, row-major */
            int32_t acc = bias ? bias[n] : 0;
            for (int32_t k = 0; k < in_depth; ++k) {
                acc += (input[k] + off) * w[k];
            }
            output[n] = requantize(p, acc, mult[0], shift[0]);
            mult += cstep;
            shift += cstep;
        }
    }
}
#else
typedef int cpr_fully_connected_unrolled_not_selected; /* keeps the translation unit non-empty */
#endif
