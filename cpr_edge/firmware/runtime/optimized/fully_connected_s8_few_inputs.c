/* FULLY_CONNECTED int8, fast DSP kernel for layers with few inputs (in_depth <= 8, such as
 * the 5-input first layer of a cartpole controller).
 *
 * Built when CPR_FC_S8_FAST is defined. With so few inputs a row is mostly requantisation,
 * and the blocked kernel's groups of 4 leave a byte tail on every row. Here the input,
 * widened once into int16 pairs (x[2i], x[2i+1]), stays in registers for the whole layer,
 * and each row is one record of int32 words written by the code generator
 * (cpr_edge.codegen.fc_select.few_inputs_layout):
 *     2 * kbias, multiplier, round, shift, then ceil(in_depth / 2) words of int16 pairs of
 *     doubled weights (2 w[2i] low, 2 w[2i + 1] high; an odd last pair padded with 0),
 * so the accumulator comes out as the 2 * acc the requantisation multiplies (2 * 127 and
 * 2 * |kbias| < 2^30 fit), and a row is one run of loads, one SMLAD per 2 MACs and the
 * requantisation of requant_fast.h. Per-tensor and per-channel layers are the same records;
 * the record array must be 4-byte aligned. Exact int32 sums of the same products: bit-exact
 * to TFLM. */
#include "cpr_runtime.h"

#if defined(CPR_FC_S8_FAST)
#include "acle_dsp.h"
#include "requant_fast.h"

typedef int32_t __attribute__((may_alias, aligned(4))) cpr_record_word;

static CPR_ALWAYS_INLINE void kernel(const int32_t P, const cpr_fc_fast_params *p,
                                     const int8_t *input, int32_t batches, int32_t in_depth,
                                     const int8_t *records, int32_t out_depth, int8_t *output,
                                     const int narrow)
{
    for (int32_t b = 0; b < batches; ++b, input += in_depth, output += out_depth) {
        uint32_t xp[4];
        for (int32_t i = 0; i < P; ++i) {
            const int32_t hi = 2 * i + 1 < in_depth ? input[2 * i + 1] : 0;
            xp[i] = ((uint32_t)input[2 * i] & 0xFFFFu) | ((uint32_t)hi << 16);
        }
        const cpr_record_word *r = (const cpr_record_word *)records;
        for (int32_t n = 0; n < out_depth; ++n, r += 4 + P) {
            int32_t acc = r[0]; /* 2 * acc from here on */
            for (int32_t i = 0; i < P; ++i) {
                acc = cpr_smlad(xp[i], (uint32_t)r[4 + i], acc);
            }
            output[n] = cpr_fc_requant_fast2(acc, r[1], r[3], r[2], p->act_min, p->act_max, narrow);
        }
    }
}

/* One entry point per number of input pairs P = ceil(in_depth / 2) and clamp, so that the
 * linker keeps only the ones a model calls (the generator calls them directly);
 * cpr_fc_s8_few_inputs chooses at run time. */
#define CPR_FEW_ENTRY(name, P, narrow)                                                         \
    void name(const cpr_fc_fast_params *p, const int8_t *input, int32_t batches,              \
              int32_t in_depth, const int8_t *weights, const int32_t *kbias, int32_t out_depth, \
              int8_t *output)                                                                  \
    {                                                                                          \
        (void)kbias; /* in the records */                                                      \
        kernel(P, p, input, batches, in_depth, weights, out_depth, output, narrow);            \
    }
CPR_FEW_ENTRY(cpr_fc_s8_few_inputs_1, 1, 0)
CPR_FEW_ENTRY(cpr_fc_s8_few_inputs_2, 2, 0)
CPR_FEW_ENTRY(cpr_fc_s8_few_inputs_3, 3, 0)
CPR_FEW_ENTRY(cpr_fc_s8_few_inputs_4, 4, 0)
CPR_FEW_ENTRY(cpr_fc_s8_few_inputs_1_narrow, 1, 1)
CPR_FEW_ENTRY(cpr_fc_s8_few_inputs_2_narrow, 2, 1)
CPR_FEW_ENTRY(cpr_fc_s8_few_inputs_3_narrow, 3, 1)
CPR_FEW_ENTRY(cpr_fc_s8_few_inputs_4_narrow, 4, 1)

typedef void cpr_few_fn(const cpr_fc_fast_params *, const int8_t *, int32_t, int32_t,
                        const int8_t *, const int32_t *, int32_t, int8_t *);

void cpr_fc_s8_few_inputs(const cpr_fc_fast_params *p, const int8_t *input, int32_t batches,
                          int32_t in_depth, const int8_t *weights, const int32_t *kbias,
                          int32_t out_depth, int8_t *output)
{
    static cpr_few_fn *const plain[4] = {cpr_fc_s8_few_inputs_1, cpr_fc_s8_few_inputs_2,
                                         cpr_fc_s8_few_inputs_3, cpr_fc_s8_few_inputs_4};
    static cpr_few_fn *const narrow[4] = {cpr_fc_s8_few_inputs_1_narrow,
                                          cpr_fc_s8_few_inputs_2_narrow,
                                          cpr_fc_s8_few_inputs_3_narrow,
                                          cpr_fc_s8_few_inputs_4_narrow};
    const int32_t pairs = (in_depth + 1) >> 1;
    if (pairs < 1 || pairs > 4) {
        return; /* in_depth > 8: never generated */
    }
    const int is_narrow = p->act_min > -128 || p->act_max < 127;
    (is_narrow ? narrow : plain)[pairs - 1](p, input, batches, in_depth, weights, kbias,
                                            out_depth, output);
}
#else
typedef int cpr_fc_s8_few_inputs_not_selected; /* keeps the translation unit non-empty */
#endif
