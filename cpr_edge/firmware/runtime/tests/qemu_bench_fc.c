/* FULLY_CONNECTED speed on QEMU (run with -icount shift=0, where SysTick counts
 * instructions). Prints "CAL <ticks>" for a loop of CAL_LOOPS * 2 known instructions, then
 * "FC <k> <n> <reps> <ticks>" for BENCH_REPS calls of the selected kernel variant, and
 * "CHECK 0|1" whether its outputs equal the reference kernel's. */
#include <stdint.h>

#include "cpr_runtime.h"
#include "qemu_test.h"

#ifndef BENCH_K
#define BENCH_K 256
#endif
#ifndef BENCH_N
#define BENCH_N 256
#endif
#ifndef BENCH_REPS
#define BENCH_REPS 10
#endif
#define CAL_LOOPS 1000000

static int8_t weights[BENCH_N * BENCH_K];
#if defined(CPR_FC_VARIANT_DSP) || defined(CPR_FC_VARIANT_DSP_ROTATE)
static int8_t weights_dsp[BENCH_N * BENCH_K];
#define KERNEL_WEIGHTS weights_dsp
#else
#define KERNEL_WEIGHTS weights
#endif
static int8_t input[BENCH_K];
static int32_t bias[BENCH_N];
static int32_t mult[BENCH_N], shift[BENCH_N];
static int8_t out[BENCH_N], out_ref[BENCH_N];

int main(void)
{
    uint32_t seed = 12345;
    for (int32_t i = 0; i < BENCH_N * BENCH_K; ++i) {
        seed = seed * 1664525u + 1013904223u;
        weights[i] = (int8_t)(seed >> 24);
    }
    for (int32_t i = 0; i < BENCH_K; ++i) {
        seed = seed * 1664525u + 1013904223u;
        input[i] = (int8_t)(seed >> 24);
    }
    for (int32_t i = 0; i < BENCH_N; ++i) {
        bias[i] = (int32_t)(i * 37) - 4000;
        mult[i] = 1518500250 + i;
        shift[i] = -9;
    }
#if defined(CPR_FC_VARIANT_DSP) || defined(CPR_FC_VARIANT_DSP_ROTATE)
    cpr_fc_dsp_interleave(weights, BENCH_K, BENCH_N, weights_dsp);
#endif
    const cpr_fc_params p = {3, 0, -5, -128, 127, mult, shift, 1};

    cpr_systick_start();
    uint32_t t0 = cpr_systick_now();
    uint32_t n = CAL_LOOPS;
    __asm volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc");
    uint32_t t1 = cpr_systick_now();
    cpr_test_put_uint("CAL ", cpr_systick_elapsed(t0, t1));
    cpr_test_puts("\n");

    cpr_systick_start();
    t0 = cpr_systick_now();
    for (int32_t r = 0; r < BENCH_REPS; ++r) {
        cpr_fully_connected_s8(&p, input, 1, BENCH_K, KERNEL_WEIGHTS, bias, BENCH_N, out);
    }
    t1 = cpr_systick_now();
    cpr_test_put_uint("FC ", BENCH_K);
    cpr_test_put_uint(" ", BENCH_N);
    cpr_test_put_uint(" ", BENCH_REPS);
    cpr_test_put_uint(" ", cpr_systick_elapsed(t0, t1));
    cpr_test_puts("\n");

    cpr_fully_connected_s8_reference(&p, input, 1, BENCH_K, weights, bias, BENCH_N, out_ref);
    int32_t same = 1;
    for (int32_t i = 0; i < BENCH_N; ++i) {
        same &= out[i] == out_ref[i];
    }
    cpr_test_put_uint("CHECK ", (uint32_t)same);
    cpr_test_puts("\n");
    return same ? 0 : 1;
}
