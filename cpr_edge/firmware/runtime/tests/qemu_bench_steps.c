/* Per-step speed of a generated model on QEMU (-icount shift=0). benchmarks/kernel_speed.py
 * --per-op compiles model.c with CPR_BENCH_MARK(k) placed before each step k of model_invoke
 * and CPR_BENCH_MARK(BENCH_STEPS) before its return; each mark adds the SysTick ticks since
 * the previous mark to the step that just ended. Prints "CAL <ticks>" for 2 * CAL_LOOPS known
 * instructions, "EMPTY <reps> <ticks>" for BENCH_REPS pairs of marks with nothing between
 * (the cost of one mark, subtracted by the script), then "STEP <k> <reps> <ticks>" per step. */
#include <stdint.h>

#include "model.h"
#include "qemu_test.h"

#ifndef BENCH_REPS
#define BENCH_REPS 100
#endif
#ifndef BENCH_STEPS
#error "BENCH_STEPS: the number of steps of model_invoke"
#endif
#define CAL_LOOPS 1000000

uint32_t cpr_bench_ticks[BENCH_STEPS + 1];
uint32_t cpr_bench_last;

int main(void)
{
    static MODEL_INPUT_T in[MODEL_INPUT_LEN];
    static MODEL_OUTPUT_T out[MODEL_OUTPUT_LEN];
    for (int32_t i = 0; i < MODEL_INPUT_LEN; ++i) {
        in[i] = (MODEL_INPUT_T)(i * 37 - 60); /* the inputs of qemu_bench_model.c */
    }
    cpr_systick_start();
    uint32_t t0 = cpr_systick_now();
    uint32_t n = CAL_LOOPS;
    __asm volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc");
    uint32_t t1 = cpr_systick_now();
    cpr_test_put_uint("CAL ", cpr_systick_elapsed(t0, t1));
    cpr_test_puts("\n");
    cpr_systick_start();
    for (int32_t r = 0; r < BENCH_REPS; ++r) {
        CPR_BENCH_MARK(0);
        CPR_BENCH_MARK(BENCH_STEPS + 1); /* into cpr_bench_ticks[BENCH_STEPS] */
    }
    cpr_test_put_uint("EMPTY ", BENCH_REPS);
    cpr_test_put_uint(" ", cpr_bench_ticks[BENCH_STEPS]);
    cpr_test_puts("\n");
    for (int32_t k = 0; k < BENCH_STEPS; ++k) {
        cpr_bench_ticks[k] = 0;
    }
    for (int32_t r = 0; r < BENCH_REPS; ++r) {
        model_invoke(in, out);
    }
    for (int32_t k = 0; k < BENCH_STEPS; ++k) {
        cpr_test_put_uint("STEP ", (uint32_t)k);
        cpr_test_put_uint(" ", BENCH_REPS);
        cpr_test_put_uint(" ", cpr_bench_ticks[k]);
        cpr_test_puts("\n");
    }
    return 0;
}
