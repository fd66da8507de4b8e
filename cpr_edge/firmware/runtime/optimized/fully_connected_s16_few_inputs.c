/* FULLY_CONNECTED 16x8, fast DSP kernel for layers with few inputs (in_depth <= 8, such as
 * the 5-input first layer of a cartpole controller): the 16x8 counterpart of
 * fully_connected_s8_few_inputs.c.
 *
 * Built when CPR_FC_S16_FAST is defined, for layers whose bounds the code generator proved
 * (fc_select.fast16_constants, as for cpr_fc_s16_blocked: int32 accumulation exact, TFLM's
 * int64 requantisation = SMMULR(acc, M)). With so few inputs the blocked kernel spends a row
 * mostly on its K % 4 tail and block set-up (5 x 216: 5.9 instructions/MAC). Here the input,
 * already int16, is held as P = ceil(in_depth / 2) words of pairs (x[2i], x[2i+1]) (an odd
 * last one padded with 0) in registers for the whole layer, and each row is one record of
 * int32 words written by the generator (fc_select.few16_layout):
 *     bias, M, then P words of int16 weight pairs (w[2i] low, w[2i+1] high; 0-padded),
 * so a row is a run of loads, P SMLADs, SMMULR, SSAT #16 and the store. The record array
 * must be 4-byte aligned. Same products summed exactly in int32: bit-exact to TFLM
 * (tests/test_kernel_fully_connected_s16_few_inputs.py). */
#include "cpr_runtime.h"

#if defined(CPR_FC_S16_FAST)
#include "acle_dsp.h"
#include "requant_fast.h"

typedef int32_t __attribute__((may_alias, aligned(4))) cpr_record16_word;

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && defined(__GNUC__)
/* The row loop in assembly: GCC loads a record word by word and keeps fewer values in
 * registers. The record goes into r8 (bias, then the accumulator), r9 (M) and r10.. (the
 * weight pairs): LDM needs its registers ascending, r8-r12 and lr keep r7 (the frame
 * pointer of unoptimised Thumb code) out of it. */
#define CPR_FEW16_SMLAD(i, wr) "smlad r8, %[x" i "], " wr ", r8\n\t"
#define CPR_FEW16_OUT "smmulr r8, r8, r9\n\t" "ssat r8, #16, r8\n\t" \
    "strh r8, [%[o]], #2\n\t" "cmp %[o], %[end]\n\t" "bne 1b\n\t"
#define CPR_FEW16_OPERANDS [r] "+r"(r), [o] "+r"(o)
#define CPR_FEW16_INPUTS [end] "r"(end)
#define CPR_FEW16_HAVE_ASM 1
#endif

static CPR_ALWAYS_INLINE void kernel(const int32_t P, const cpr_fc16_fast_params *p,
                                     const int16_t *input, int32_t batches, int32_t in_depth,
                                     const int8_t *records, int32_t out_depth, int16_t *output,
                                     const int narrow)
{
    for (int32_t b = 0; b < batches; ++b, input += in_depth, output += out_depth) {
        uint32_t xp[4];
        for (int32_t i = 0; i < P; ++i) {
            const int32_t hi = 2 * i + 1 < in_depth ? input[2 * i + 1] : 0;
            xp[i] = ((uint32_t)input[2 * i] & 0xFFFFu) | ((uint32_t)hi << 16);
        }
        const cpr_record16_word *r = (const cpr_record16_word *)records;
#if defined(CPR_FEW16_HAVE_ASM)
        if (!narrow && out_depth > 0) {
            int16_t *o = output;
            int16_t *const end = output + out_depth;
            /* per row: LDM of the record, P SMLAD, SMMULR, SSAT, STRH, loop: P + 6 */
            if (P == 1) {
                __asm volatile("1:\n\t" "ldmia %[r]!, {r8, r9, r10}\n\t" CPR_FEW16_SMLAD("0", "r10")
                               CPR_FEW16_OUT : CPR_FEW16_OPERANDS : [x0] "r"(xp[0]), CPR_FEW16_INPUTS
                               : "r8", "r9", "r10", "cc", "memory");
            } else if (P == 2) {
                __asm volatile("1:\n\t" "ldmia %[r]!, {r8, r9, r10, r11}\n\t" CPR_FEW16_SMLAD("0", "r10")
                               CPR_FEW16_SMLAD("1", "r11") CPR_FEW16_OUT
                               : CPR_FEW16_OPERANDS : [x0] "r"(xp[0]), [x1] "r"(xp[1]), CPR_FEW16_INPUTS
                               : "r8", "r9", "r10", "r11", "cc", "memory");
            } else if (P == 3) {
                __asm volatile("1:\n\t" "ldmia %[r]!, {r8, r9, r10, r11, r12}\n\t"
                               CPR_FEW16_SMLAD("0", "r10") CPR_FEW16_SMLAD("1", "r11")
                               CPR_FEW16_SMLAD("2", "r12") CPR_FEW16_OUT
                               : CPR_FEW16_OPERANDS
                               : [x0] "r"(xp[0]), [x1] "r"(xp[1]), [x2] "r"(xp[2]), CPR_FEW16_INPUTS
                               : "r8", "r9", "r10", "r11", "r12", "cc", "memory");
            } else {
                __asm volatile("1:\n\t" "ldmia %[r]!, {r8, r9, r10, r11, r12, lr}\n\t"
                               CPR_FEW16_SMLAD("0", "r10") CPR_FEW16_SMLAD("1", "r11")
                               CPR_FEW16_SMLAD("2", "r12") CPR_FEW16_SMLAD("3", "lr") CPR_FEW16_OUT
                               : CPR_FEW16_OPERANDS
                               : [x0] "r"(xp[0]), [x1] "r"(xp[1]), [x2] "r"(xp[2]), [x3] "r"(xp[3]),
                                 CPR_FEW16_INPUTS
                               : "r8", "r9", "r10", "r11", "r12", "lr", "cc", "memory");
            }
            continue;
        }
#endif
        for (int32_t n = 0; n < out_depth; ++n, r += 2 + P) {
            int32_t acc = r[0];
            for (int32_t i = 0; i < P; ++i) {
                acc = cpr_smlad(xp[i], (uint32_t)r[2 + i], acc);
            }
            int32_t v = cpr_ssat16(cpr_smmulr(acc, r[1]));
            if (narrow) {
                v = v < p->act_min ? p->act_min : v;
                v = v > p->act_max ? p->act_max : v;
            }
            output[n] = (int16_t)v;
        }
    }
}

/* One entry point per number of input pairs P and clamp, so that the linker keeps only the
 * ones a model calls (the generator calls them directly). */
#define CPR_FEW16_ENTRY(name, P, narrow)                                                       \
    void name(const cpr_fc16_fast_params *p, const int16_t *input, int32_t batches,           \
              int32_t in_depth, const int8_t *weights, const int64_t *bias, int32_t out_depth, \
              int16_t *output)                                                                 \
    {                                                                                          \
        (void)bias; /* in the records */                                                       \
        kernel(P, p, input, batches, in_depth, weights, out_depth, output, narrow);            \
    }
CPR_FEW16_ENTRY(cpr_fc_s16_few_inputs_1, 1, 0)
CPR_FEW16_ENTRY(cpr_fc_s16_few_inputs_2, 2, 0)
CPR_FEW16_ENTRY(cpr_fc_s16_few_inputs_3, 3, 0)
CPR_FEW16_ENTRY(cpr_fc_s16_few_inputs_4, 4, 0)
CPR_FEW16_ENTRY(cpr_fc_s16_few_inputs_1_narrow, 1, 1)
CPR_FEW16_ENTRY(cpr_fc_s16_few_inputs_2_narrow, 2, 1)
CPR_FEW16_ENTRY(cpr_fc_s16_few_inputs_3_narrow, 3, 1)
CPR_FEW16_ENTRY(cpr_fc_s16_few_inputs_4_narrow, 4, 1)
#else
typedef int cpr_fc_s16_few_inputs_not_selected; /* keeps the translation unit non-empty */
#endif
