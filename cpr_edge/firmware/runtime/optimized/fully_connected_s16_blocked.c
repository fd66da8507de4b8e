/* FULLY_CONNECTED 16x8 (int16 activations, int8 weights), fast DSP kernel: blocks of 4 rows,
 * the last block 1-3 rows, int32 accumulators and a one-instruction requantisation.
 *
 * Built when CPR_FC_S16_FAST is defined (dsp_rotate and mve variants), for the layers whose
 * bounds the code generator proved (cpr_edge.codegen.fc_select.fast16_constants):
 * - TFLM accumulates 16x8 products in int64. When |bias| + 32768 * sum |w| < 2^31 for every
 *   row, every partial sum fits in int32, so SMLAD into int32 (the bias its start value;
 *   the generator gives every such layer a bias array, zeros if it had none) gives the
 *   same number.
 * - TFLM's int64 requantisation is (acc * r + 2^(t-1)) >> t with the 16-bit multiplier r and
 *   t = 15 - shift. Multiplying r by 2^(32-t) (the generator's M, < 2^31 when it chose the
 *   layer) makes that (acc * M + 2^31) >> 32 exactly: SMMULR. Then SSAT to int16, and a
 *   fused activation narrower than int16 clamps once more.
 * - Weights per block of R rows: for each group of 4 inputs the R rows' 4 bytes in turn, each
 *   as k, k+2, k+1, k+3, so that SXTB16 gives the pair (k, k+1) and SXTB16 ROR 8 the pair
 *   (k+2, k+3) that the input words (x[k], x[k+1]), (x[k+2], x[k+3]) meet; then each row's
 *   in_depth % 4 tail bytes. The 4-row loop is inline assembly as in the int8 blocked kernel:
 *   2 LDR of input pairs (the model input may be only 2-byte aligned), 1 LDM of 4 weight
 *   words, 8 SXTB16, 8 SMLAD per 16 MACs.
 * Bit-exact to the reference kernel and TFLM (tests/test_kernel_fully_connected_s16_fast.py). */
#include "cpr_runtime.h"

#if defined(CPR_FC_S16_FAST)
#include "acle_dsp.h"
#include "requant_fast.h"

#define CPR_FC16_MAC(r, x01, x23, wp)                            \
    do {                                                         \
        if (R > (r)) {                                           \
            const uint32_t wv = cpr_read4((wp) + 4 * (r));       \
            a##r = cpr_smlad((x01), cpr_sxtb16(wv), a##r);       \
            a##r = cpr_smlad((x23), cpr_sxtb16_ror8(wv), a##r);  \
        }                                                        \
    } while (0)
/* A row's K % 4 tail: its first two bytes as one SMLAD with the input pair (x[k], x[k+1]):
 * h = b0 | b1 << 8 (one halfword load), h | h << 8 has b0 in byte 0 and b1 in byte 2, which
 * SXTB16 sign-extends into the pair (b0, b1); a third byte is one multiply-add. */
#define CPR_FC16_TAIL(r, wp)                                                        \
    do {                                                                            \
        if (R > (r)) {                                                              \
            const int8_t *const tw = (wp) + (r) * tail;                             \
            if (tail >= 2) {                                                        \
                const uint32_t h = read2(tw);                                       \
                a##r = cpr_smlad(xt01, cpr_sxtb16(h | (h << 8)), a##r);             \
                if (tail == 3) {                                                    \
                    a##r += x_tail[2] * tw[2];                                      \
                }                                                                   \
            } else {                                                                \
                a##r += x_tail[0] * tw[0];                                          \
            }                                                                       \
        }                                                                           \
    } while (0)

static CPR_ALWAYS_INLINE uint32_t read2(const int8_t *p)
{
    uint16_t v; /* one LDRH: Cortex-M4/M7/M33/M55 allow it unaligned */
#if defined(__GNUC__)
    __builtin_memcpy(&v, p, 2);
#else
    memcpy(&v, p, 2);
#endif
    return v;
}
#define CPR_FC16_OUT(r)                                                          \
    do {                                                                         \
        if (R > (r)) {                                                           \
            int32_t v = cpr_ssat16(cpr_smmulr(a##r, per_channel ? p->multipliers[r] : m)); \
            if (narrow) {                                                        \
                v = v < p->act_min ? p->act_min : v;                             \
                v = v > p->act_max ? p->act_max : v;                             \
            }                                                                    \
            out[r] = (int16_t)v;                                                 \
        }                                                                        \
    } while (0)

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__GNUC__)
#define CPR_FC16_ASM_ROW(wr, a) \
    "sxtb16 %[t], " wr "\n\t" \
    "smlad %[" a "], %[x01], %[t], %[" a "]\n\t" \
    "sxtb16 " wr ", " wr ", ror #8\n\t" \
    "smlad %[" a "], %[x23], " wr ", %[" a "]\n\t"
#define CPR_FC16_ASM_GROUP \
    "ldr %[x01], [%[x]], #4\n\t" \
    "ldr %[x23], [%[x]], #4\n\t" \
    "ldmia %[w]!, {r8, r9, r10, r11}\n\t" \
    CPR_FC16_ASM_ROW("r8", "a0") CPR_FC16_ASM_ROW("r9", "a1") \
    CPR_FC16_ASM_ROW("r10", "a2") CPR_FC16_ASM_ROW("r11", "a3")
#define CPR_FC16_HAVE_ASM 1
#endif

/* R rows (a compile-time constant at every call) from the bias to the stored outputs. */
static CPR_ALWAYS_INLINE const int8_t *rows(const int32_t R, const cpr_fc16_fast_params *p,
                                            const int16_t *x, int32_t groups,
                                            const int16_t *x_tail, int32_t tail,
                                            const int8_t *w, const int64_t *bias, int16_t *out,
                                            const int per_channel, const int narrow)
{
    /* the int64 biases fit in int32 (proved): their low words start the accumulators */
    int32_t a0 = (int32_t)bias[0], a1 = R > 1 ? (int32_t)bias[1] : 0,
            a2 = R > 2 ? (int32_t)bias[2] : 0, a3 = R > 3 ? (int32_t)bias[3] : 0;
#if defined(CPR_FC16_HAVE_ASM)
    if (R == 4 && groups >= 4) {
        const int16_t *const end = x + 16 * (groups >> 2);
        int32_t x01, x23, t;
        __asm volatile("1:\n\t" CPR_FC16_ASM_GROUP CPR_FC16_ASM_GROUP CPR_FC16_ASM_GROUP
                       CPR_FC16_ASM_GROUP
                       "ldr %[t], %[end]\n\t"
                       "cmp %[x], %[t]\n\t"
                       "bne 1b\n\t"
                       : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x),
                         [w] "+r"(w), [x01] "=&r"(x01), [x23] "=&r"(x23), [t] "=&r"(t)
                       : [end] "m"(end)
                       : "r8", "r9", "r10", "r11", "cc", "memory");
        groups &= 3;
    }
#endif
    for (int32_t g = 0; g < groups; ++g, x += 4, w += 4 * R) {
        const uint32_t x01 = cpr_read4((const int8_t *)x), x23 = cpr_read4((const int8_t *)(x + 2));
        CPR_FC16_MAC(0, x01, x23, w);
        CPR_FC16_MAC(1, x01, x23, w);
        CPR_FC16_MAC(2, x01, x23, w);
        CPR_FC16_MAC(3, x01, x23, w);
    }
    if (tail) {
        const uint32_t xt01 = tail >= 2 ? cpr_read4((const int8_t *)x_tail) : 0u;
        CPR_FC16_TAIL(0, w);
        CPR_FC16_TAIL(1, w);
        CPR_FC16_TAIL(2, w);
        CPR_FC16_TAIL(3, w);
        w += R * tail;
    }
    const int32_t m = p->multiplier;
    CPR_FC16_OUT(0);
    CPR_FC16_OUT(1);
    CPR_FC16_OUT(2);
    CPR_FC16_OUT(3);
    return w;
}

static CPR_ALWAYS_INLINE void kernel(const cpr_fc16_fast_params *p, const int16_t *input,
                                     int32_t batches, int32_t in_depth, const int8_t *weights,
                                     const int64_t *bias, int32_t out_depth, int16_t *output,
                                     const int per_channel, const int narrow)
{
    const int32_t groups = in_depth >> 2, tail = in_depth & 3;
    cpr_fc16_fast_params q = *p; /* per-channel multipliers advance with the rows */
    for (int32_t b = 0; b < batches; ++b, input += in_depth, output += out_depth) {
        const int16_t *const x_tail = input + 4 * groups;
        const int8_t *w = weights;
        q.multipliers = p->multipliers;
        int32_t n = 0;
        for (; n + 4 <= out_depth; n += 4) {
            w = rows(4, &q, input, groups, x_tail, tail, w, bias + n, output + n, per_channel, narrow);
            q.multipliers += per_channel ? 4 : 0;
        }
        switch (out_depth - n) { /* the last 1-3 rows: a block of their own */
        case 3:
            rows(3, &q, input, groups, x_tail, tail, w, bias + n, output + n, per_channel, narrow);
            break;
        case 2:
            rows(2, &q, input, groups, x_tail, tail, w, bias + n, output + n, per_channel, narrow);
            break;
        case 1:
            rows(1, &q, input, groups, x_tail, tail, w, bias + n, output + n, per_channel, narrow);
            break;
        default:
            break;
        }
    }
}

/* One entry point per case, so that the linker keeps only the ones a model calls (the code
 * generator calls them directly); cpr_fc_s16_blocked chooses at run time. */
#define CPR_FC16_ENTRY(name, per_channel, narrow)                                              \
    void name(const cpr_fc16_fast_params *p, const int16_t *input, int32_t batches,           \
              int32_t in_depth, const int8_t *weights, const int64_t *bias, int32_t out_depth,  \
              int16_t *output)                                                                 \
    {                                                                                          \
        kernel(p, input, batches, in_depth, weights, bias, out_depth, output, per_channel,     \
               narrow);                                                                        \
    }
CPR_FC16_ENTRY(cpr_fc_s16_blocked_pt, 0, 0)
CPR_FC16_ENTRY(cpr_fc_s16_blocked_pc, 1, 0)
CPR_FC16_ENTRY(cpr_fc_s16_blocked_pt_narrow, 0, 1)
CPR_FC16_ENTRY(cpr_fc_s16_blocked_pc_narrow, 1, 1)

void cpr_fc_s16_blocked(const cpr_fc16_fast_params *p, const int16_t *input, int32_t batches,
                        int32_t in_depth, const int8_t *weights, const int64_t *bias,
                        int32_t out_depth, int16_t *output)
{
    const int narrow = p->act_min > -32768 || p->act_max < 32767;
    void (*const f)(const cpr_fc16_fast_params *, const int16_t *, int32_t, int32_t,
                    const int8_t *, const int64_t *, int32_t, int16_t *) =
        p->per_channel ? (narrow ? cpr_fc_s16_blocked_pc_narrow : cpr_fc_s16_blocked_pc)
                       : (narrow ? cpr_fc_s16_blocked_pt_narrow : cpr_fc_s16_blocked_pt);
    f(p, input, batches, in_depth, weights, bias, out_depth, output);
}
#else
typedef int cpr_fc_s16_blocked_not_selected; /* keeps the translation unit non-empty */
#endif
