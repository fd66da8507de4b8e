/* Whole-model speed on QEMU (-icount shift=0): prints "CAL <ticks>" for 2 * CAL_LOOPS known
 * instructions, then "MODEL <reps> <ticks>" for BENCH_REPS calls of model_invoke. */
#include <stdint.h>

#include "model.h"
#include "qemu_test.h"

#ifndef BENCH_REPS
#define BENCH_REPS 100
#endif
#define CAL_LOOPS 1000000

int main(void)
{
    /* MODEL_INPUT_T / MODEL_OUTPUT_T: int8_t, or int16_t for a 16x8 model */
    static MODEL_INPUT_T in[MODEL_INPUT_LEN];
    static MODEL_OUTPUT_T out[MODEL_OUTPUT_LEN];
    for (int32_t i = 0; i < MODEL_INPUT_LEN; ++i) {
        in[i] = (MODEL_INPUT_T)(i * 37 - 60);
    }
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
        model_invoke(in, out);
    }
    t1 = cpr_systick_now();
    cpr_test_put_uint("MODEL ", BENCH_REPS);
    cpr_test_put_uint(" ", cpr_systick_elapsed(t0, t1));
    cpr_test_puts("\n");
    return 0;
}
