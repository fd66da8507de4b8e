/* FULLY_CONNECTED int8 with the Cortex-M55 M-profile Vector Extension (MVE, Helium).
 *
 * Built when CPR_FC_S8_FAST_MVE is defined (the mve variant, -mcpu=cortex-m55). The code
 * generator gives it the layers the fast kernels may run (cpr_edge.codegen.fc_select: input
 * offset folded into kbias, bounds proved) in its 16-byte layout: blocks of 4 rows (the last
 * 1-3 rows a block of their own), for each chunk of 16 inputs the rows' 16 bytes in turn,
 * then each row's in_depth % 16 tail bytes.
 *
 * Per chunk one VLDRB of 16 input bytes serves the block's rows; per row one VLDRB of 16
 * weight bytes and one VMLADAVA.S8, which multiplies the 16 byte pairs and adds all 16
 * products into a scalar int32 accumulator: 9 instructions per 64 MACs for 4 rows. The tail
 * runs once with tail-predicated loads (VCTP: lanes past the tail read nothing and are 0).
 * Requantisation is vectorised, 4 outputs at a time (see rows()). The accumulation is exact
 * int32, so the result equals TFLM's bit for bit. */
#include "cpr_runtime.h"

#if defined(CPR_FC_S8_FAST_MVE)
#if !(defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1))
#error "the mve FULLY_CONNECTED variant needs a core with MVE (-mcpu=cortex-m55)"
#endif
#include <arm_mve.h>

#include "requant_fast.h" /* CPR_ALWAYS_INLINE */

/* acc r of a block of R rows (R a compile-time constant: the rows the block lacks fold away);
 * one pointer walks the weights, so every load post-increments it */
#define CPR_MVE_MAC(r, xv)                                     \
    do {                                                       \
        if (R > (r)) {                                         \
            a##r = vmladavaq_s8(a##r, (xv), vld1q_s8(w));      \
            w += 16;                                           \
        }                                                      \
    } while (0)
#define CPR_MVE_MAC_TAIL(r, xv, pred)                                   \
    do {                                                                \
        if (R > (r)) {                                                  \
            a##r = vmladavaq_s8(a##r, (xv), vldrbq_z_s8(w, (pred)));    \
            w += tail;                                                  \
        }                                                               \
    } while (0)

/* R rows (a compile-time constant at every call; named accumulators, since GCC keeps an
 * array of them in memory across its own loop over the rows) from kbias to the stored
 * outputs; returns the next block's weights.
 *
 * The requantisation of the block is one vector of 4 lanes (the lanes past R predicated
 * off): VQRDMULH is TFLM's SaturatingRoundingDoublingHighMul itself, then the same rounding
 * as requant_fast.h, v + (v >> 31) + round, and VSHL by the negated shift (an arithmetic
 * right shift); VMAX/VMIN clamp to the activation range (int8 or narrower) and VSTRB.32 stores
 * the 4 low bytes. Here the shifts are stored negated (cpr_edge.codegen.fc_fast). */
static CPR_ALWAYS_INLINE const int8_t *rows(const int32_t R, const cpr_fc_fast_params *p,
                                            const int8_t *x, int32_t chunks, int32_t tail,
                                            const int8_t *w, const int32_t *kbias, int8_t *out,
                                            const int per_channel)
{
    int32_t a0 = kbias[0], a1 = R > 1 ? kbias[1] : 0, a2 = R > 2 ? kbias[2] : 0,
            a3 = R > 3 ? kbias[3] : 0;
    if (R == 4 && chunks > 0) {
        /* GCC addresses the four weight loads off two pointers it copies every iteration
         * (12 instructions per 64 MACs); one post-incremented pointer and a low-overhead
         * loop make it 10 (VMLADAVA takes even registers only: constraint Te) */
        __asm volatile("dls lr, %[n]\n\t"
                       "1:\n\t"
                       "vldrb.8 q0, [%[x]], #16\n\t"
                       "vldrb.8 q1, [%[w]], #16\n\t"
                       "vldrb.8 q2, [%[w]], #16\n\t"
                       "vmladava.s8 %[a0], q0, q1\n\t"
                       "vldrb.8 q1, [%[w]], #16\n\t"
                       "vmladava.s8 %[a1], q0, q2\n\t"
                       "vldrb.8 q2, [%[w]], #16\n\t"
                       "vmladava.s8 %[a2], q0, q1\n\t"
                       "vmladava.s8 %[a3], q0, q2\n\t"
                       "le lr, 1b\n\t"
                       : [a0] "+Te"(a0), [a1] "+Te"(a1), [a2] "+Te"(a2), [a3] "+Te"(a3),
                         [x] "+r"(x), [w] "+r"(w)
                       : [n] "r"(chunks)
                       : "lr", "d0", "d1", "d2", "d3", "d4", "d5", "memory");
        chunks = 0;
    }
    for (int32_t c = 0; c < chunks; ++c, x += 16) {
        const int8x16_t xv = vld1q_s8(x);
        CPR_MVE_MAC(0, xv);
        CPR_MVE_MAC(1, xv);
        CPR_MVE_MAC(2, xv);
        CPR_MVE_MAC(3, xv);
    }
    if (tail) {
        const mve_pred16_t pred = vctp8q((uint32_t)tail);
        const int8x16_t xv = vldrbq_z_s8(x, pred);
        CPR_MVE_MAC_TAIL(0, xv, pred);
        CPR_MVE_MAC_TAIL(1, xv, pred);
        CPR_MVE_MAC_TAIL(2, xv, pred);
        CPR_MVE_MAC_TAIL(3, xv, pred);
    }
    int32x4_t v = vdupq_n_s32(a0);
    v = vsetq_lane_s32(a1, v, 1);
    v = vsetq_lane_s32(a2, v, 2);
    v = vsetq_lane_s32(a3, v, 3);
    int32x4_t m, sh, rd;
    if (per_channel) {
        const mve_pred16_t lanes = vctp32q((uint32_t)R);
        m = vldrwq_z_s32(p->multipliers, lanes);
        sh = vldrwq_z_s32(p->shifts, lanes);
        rd = vldrwq_z_s32(p->rounds, lanes);
    } else {
        m = vdupq_n_s32(p->multiplier);
        sh = vdupq_n_s32(p->shift);
        rd = vdupq_n_s32(p->round);
    }
    v = vqrdmulhq_s32(v, m);
    v = vaddq_s32(vaddq_s32(v, vshrq_n_s32(v, 31)), rd);
    v = vshlq_s32(v, sh);
    v = vminq_s32(vmaxq_s32(v, vdupq_n_s32(p->act_min)), vdupq_n_s32(p->act_max));
    if (R == 4) {
        vstrbq_s32(out, v);
    } else {
        vstrbq_p_s32(out, v, vctp32q((uint32_t)R));
    }
    return w;
}

static CPR_ALWAYS_INLINE void kernel(const cpr_fc_fast_params *p, const int8_t *input,
                                     int32_t batches, int32_t in_depth, const int8_t *weights,
                                     const int32_t *kbias, int32_t out_depth, int8_t *output,
                                     const int per_channel)
{
    const int32_t chunks = in_depth >> 4, tail = in_depth & 15;
    cpr_fc_fast_params q = *p; /* per-channel pointers advance with the rows */
    for (int32_t b = 0; b < batches; ++b, input += in_depth, output += out_depth) {
        const int8_t *w = weights;
        q.multipliers = p->multipliers;
        q.shifts = p->shifts;
        q.rounds = p->rounds;
        int32_t n = 0;
        for (; n + 4 <= out_depth; n += 4) {
            w = rows(4, &q, input, chunks, tail, w, kbias + n, output + n, per_channel);
            if (per_channel) {
                q.multipliers += 4;
                q.shifts += 4;
                q.rounds += 4;
            }
        }
        switch (out_depth - n) { /* the last 1-3 rows: a block of their own */
        case 3:
            rows(3, &q, input, chunks, tail, w, kbias + n, output + n, per_channel);
            break;
        case 2:
            rows(2, &q, input, chunks, tail, w, kbias + n, output + n, per_channel);
            break;
        case 1:
            rows(1, &q, input, chunks, tail, w, kbias + n, output + n, per_channel);
            break;
        default:
            break;
        }
    }
}

/* per-tensor and per-channel entry points (the generator calls them directly, the linker
 * keeps what is called); cpr_fc_s8_mve chooses at run time */
void cpr_fc_s8_mve_pt(const cpr_fc_fast_params *p, const int8_t *input, int32_t batches,
                      int32_t in_depth, const int8_t *weights, const int32_t *kbias,
                      int32_t out_depth, int8_t *output)
{
    kernel(p, input, batches, in_depth, weights, kbias, out_depth, output, 0);
}

void cpr_fc_s8_mve_pc(const cpr_fc_fast_params *p, const int8_t *input, int32_t batches,
                      int32_t in_depth, const int8_t *weights, const int32_t *kbias,
                      int32_t out_depth, int8_t *output)
{
    kernel(p, input, batches, in_depth, weights, kbias, out_depth, output, 1);
}

void cpr_fc_s8_mve(const cpr_fc_fast_params *p, const int8_t *input, int32_t batches,
                   int32_t in_depth, const int8_t *weights, const int32_t *kbias,
                   int32_t out_depth, int8_t *output)
{
    (p->per_channel ? cpr_fc_s8_mve_pc : cpr_fc_s8_mve_pt)(p, input, batches, in_depth, weights,
                                                           kbias, out_depth, output);
}
#else
typedef int cpr_fc_s8_mve_not_selected; /* keeps the translation unit non-empty */
#endif
