/* FULLY_CONNECTED int8, fast DSP kernel: blocks of 4 rows, the last block 1-3 rows.
 *
 * Built when CPR_FC_S8_FAST is defined (dsp_rotate and mve variants); the code generator
 * (cpr_edge.codegen.fc_select) gives it the layers whose bounds it proved and lays their
 * weights out for it (cpr_runtime.h):
 * - The input offset is folded into the bias (kbias), so the input needs no offset: it is
 *   widened once per call into int16 pairs, even and odd bytes of each group of 4
 *   (SXTB16, SXTB16 ROR 8), on the stack.
 * - Each block's weights are group-interleaved: for each group of 4 inputs, the rows' 4
 *   bytes in turn. On the Cortex-M the 4-row loop is inline assembly: per group one LDRD of
 *   the widened input, one LDM of the 4 weight words, 8 SXTB16, 8 SMLAD: 18 instructions per
 *   16 MACs, 4 groups per iteration, the end pointer read from the stack (GCC would not
 *   merge the loads into LDM, and the loop needs 13 registers: with the frame pointer the
 *   stack buffer needs, that is all of them). Rows left over after the last full block (1-3) are a block of their
 *   own, in C, with the same layout: no row-by-row fallback.
 * - Requantisation (requant_fast.h) keeps the per-tensor multiplier, shift and rounding
 *   constant (the output offset folded in) out of the per-output loads.
 * int32 accumulation of the same products is exact, so the result is the reference kernel's
 * (and TFLM's) bit for bit; on the host the intrinsics are emulated (acle_dsp.h). */
#include "cpr_runtime.h"

#if defined(CPR_FC_S8_FAST)
#include "acle_dsp.h"
#include "requant_fast.h"

/* even and odd int16 pairs of the int8 input, one word each per group of 4 */
static void widen(const int8_t *x, int32_t groups, int32_t *wide)
{
    for (int32_t g = 0; g < groups; ++g, x += 4, wide += 2) {
        const uint32_t v = cpr_read4(x);
        wide[0] = cpr_sxtb16(v);
        wide[1] = cpr_sxtb16_ror8(v);
    }
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__GNUC__)
#define CPR_FC_ASM_ROW(wr, a) \
    "sxtb16 %[t], " wr "\n\t" \
    "smlad %[" a "], %[xe], %[t], %[" a "]\n\t" \
    "sxtb16 " wr ", " wr ", ror #8\n\t" \
    "smlad %[" a "], %[xo], " wr ", %[" a "]\n\t"
#define CPR_FC_ASM_GROUP \
    "ldrd %[xe], %[xo], [%[x]], #8\n\t" \
    "ldmia %[w]!, {r8, r9, r10, r11}\n\t" \
    CPR_FC_ASM_ROW("r8", "a0") CPR_FC_ASM_ROW("r9", "a1") \
    CPR_FC_ASM_ROW("r10", "a2") CPR_FC_ASM_ROW("r11", "a3")

/* 4 rows over groups16 * 4 groups of the widened input (groups16 >= 1) */
static CPR_ALWAYS_INLINE const int8_t *block4_asm(const int32_t *wide, int32_t groups16,
                                                  const int8_t *w, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int32_t *x = wide;
    const int32_t *const end = wide + 8 * groups16;
    int32_t xe, xo, t;
    __asm volatile("1:\n\t" CPR_FC_ASM_GROUP CPR_FC_ASM_GROUP CPR_FC_ASM_GROUP CPR_FC_ASM_GROUP
                   "ldr %[t], %[end]\n\t"
                   "cmp %[x], %[t]\n\t"
                   "bne 1b\n\t"
                   : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x),
                     [w] "+r"(w), [xe] "=&r"(xe), [xo] "=&r"(xo), [t] "=&r"(t)
                   : [end] "m"(end)
                   : "r8", "r9", "r10", "r11", "cc", "memory");
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    return w;
}
#define CPR_FC_HAVE_ASM 1
#endif

/* Accumulator r of a block of R rows (R a compile-time constant at every use: the rows the
 * block lacks fold away). Named accumulators, not an array: GCC keeps an array in memory
 * across its own loop over the rows. */
#define CPR_FC_MAC(r, xe, xo, wp)                                \
    do {                                                         \
        if (R > (r)) {                                           \
            const uint32_t wv = cpr_read4((wp) + 4 * (r));       \
            a##r = cpr_smlad((xe), cpr_sxtb16(wv), a##r);        \
            a##r = cpr_smlad((xo), cpr_sxtb16_ror8(wv), a##r);   \
        }                                                        \
    } while (0)
#define CPR_FC_TAIL(r, wp)                                       \
    do {                                                         \
        if (R > (r)) {                                           \
            for (int32_t k = 0; k < tail; ++k) {                 \
                a##r += x_tail[k] * (wp)[(r) * tail + k];        \
            }                                                    \
        }                                                        \
    } while (0)
#define CPR_FC_OUT(r)                                                                      \
    do {                                                                                   \
        if (R > (r)) {                                                                     \
            out[r] = per_channel                                                           \
                         ? cpr_fc_requant_fast(a##r, p->multipliers[r], p->shifts[r],      \
                                               p->rounds[r], p->act_min, p->act_max, narrow) \
                         : cpr_fc_requant_fast(a##r, m, s, rd, p->act_min, p->act_max, narrow); \
        }                                                                                  \
    } while (0)

/* R rows from kbias to the stored int8 outputs; returns the next block's weights. */
static CPR_ALWAYS_INLINE const int8_t *rows(const int32_t R, const cpr_fc_fast_params *p,
                                            const int32_t *wide, int32_t groups,
                                            const int8_t *x_tail, int32_t tail, const int8_t *w,
                                            const int32_t *kbias, int8_t *out,
                                            const int per_channel, const int narrow)
{
    int32_t a0 = kbias[0], a1 = R > 1 ? kbias[1] : 0, a2 = R > 2 ? kbias[2] : 0,
            a3 = R > 3 ? kbias[3] : 0;
#if defined(CPR_FC_HAVE_ASM)
    if (R == 4 && groups >= 4) {
        int32_t acc[4] = {a0, a1, a2, a3};
        w = block4_asm(wide, groups >> 2, w, acc);
        a0 = acc[0];
        a1 = acc[1];
        a2 = acc[2];
        a3 = acc[3];
        wide += 8 * (groups >> 2);
        groups &= 3;
    }
#endif
    for (int32_t g = 0; g < groups; ++g, wide += 2, w += 4 * R) {
        CPR_FC_MAC(0, wide[0], wide[1], w);
        CPR_FC_MAC(1, wide[0], wide[1], w);
        CPR_FC_MAC(2, wide[0], wide[1], w);
        CPR_FC_MAC(3, wide[0], wide[1], w);
    }
    if (tail) {
        CPR_FC_TAIL(0, w);
        CPR_FC_TAIL(1, w);
        CPR_FC_TAIL(2, w);
        CPR_FC_TAIL(3, w);
        w += R * tail;
    }
    const int32_t m = p->multiplier, s = p->shift, rd = p->round;
    CPR_FC_OUT(0);
    CPR_FC_OUT(1);
    CPR_FC_OUT(2);
    CPR_FC_OUT(3);
    return w;
}

static CPR_ALWAYS_INLINE void kernel(const cpr_fc_fast_params *p, const int8_t *input,
                                     int32_t batches, int32_t in_depth, const int8_t *weights,
                                     const int32_t *kbias, int32_t out_depth, int8_t *output,
                                     int32_t *wide, const int per_channel, const int narrow)
{
    const int32_t groups = in_depth >> 2, tail = in_depth & 3;
    cpr_fc_fast_params q = *p; /* per-channel pointers advance with the rows */
    for (int32_t b = 0; b < batches; ++b, input += in_depth, output += out_depth) {
        widen(input, groups, wide);
        const int8_t *const x_tail = input + 4 * groups;
        const int8_t *w = weights;
        q.multipliers = p->multipliers;
        q.shifts = p->shifts;
        q.rounds = p->rounds;
        int32_t n = 0;
        for (; n + 4 <= out_depth; n += 4) {
            w = rows(4, &q, wide, groups, x_tail, tail, w, kbias + n, output + n, per_channel, narrow);
            if (per_channel) {
                q.multipliers += 4;
                q.shifts += 4;
                q.rounds += 4;
            }
        }
        switch (out_depth - n) { /* the last 1-3 rows: a block of their own */
        case 3:
            rows(3, &q, wide, groups, x_tail, tail, w, kbias + n, output + n, per_channel, narrow);
            break;
        case 2:
            rows(2, &q, wide, groups, x_tail, tail, w, kbias + n, output + n, per_channel, narrow);
            break;
        case 1:
            rows(1, &q, wide, groups, x_tail, tail, w, kbias + n, output + n, per_channel, narrow);
            break;
        default:
            break;
        }
    }
}

/* One entry point per case, so that the linker keeps only the ones a model calls (the code
 * generator calls them directly); cpr_fc_s8_blocked chooses at run time. */
#define CPR_FC_BLOCKED_ENTRY(name, per_channel, narrow)                                        \
    void name(const cpr_fc_fast_params *p, const int8_t *input, int32_t batches,              \
              int32_t in_depth, const int8_t *weights, const int32_t *kbias, int32_t out_depth, \
              int8_t *output)                                                                  \
    {                                                                                          \
        int32_t wide[2 * (in_depth >> 2) + 1]; /* in_depth <= 1024: at most 2 KB */            \
        kernel(p, input, batches, in_depth, weights, kbias, out_depth, output, wide,          \
               per_channel, narrow);                                                          \
    }
CPR_FC_BLOCKED_ENTRY(cpr_fc_s8_blocked_pt, 0, 0)
CPR_FC_BLOCKED_ENTRY(cpr_fc_s8_blocked_pc, 1, 0)
CPR_FC_BLOCKED_ENTRY(cpr_fc_s8_blocked_pt_narrow, 0, 1)
CPR_FC_BLOCKED_ENTRY(cpr_fc_s8_blocked_pc_narrow, 1, 1)

void cpr_fc_s8_blocked(const cpr_fc_fast_params *p, const int8_t *input, int32_t batches,
                       int32_t in_depth, const int8_t *weights, const int32_t *kbias,
                       int32_t out_depth, int8_t *output)
{
    const int narrow = p->act_min > -128 || p->act_max < 127;
    void (*const f)(const cpr_fc_fast_params *, const int8_t *, int32_t, int32_t,
                    const int8_t *, const int32_t *, int32_t, int8_t *) =
        p->per_channel ? (narrow ? cpr_fc_s8_blocked_pc_narrow : cpr_fc_s8_blocked_pc)
                       : (narrow ? cpr_fc_s8_blocked_pt_narrow : cpr_fc_s8_blocked_pt);
    f(p, input, batches, in_depth, weights, kbias, out_depth, output);
}
#else
typedef int cpr_fc_s8_blocked_not_selected; /* keeps the translation unit non-empty */
#endif
