/* The step mark of qemu_bench_steps.c, force-included (-include) into the model.c that
 * benchmarks/kernel_speed.py --per-op instruments: SysTick ticks since the previous mark go
 * to the step that just ended (mark k ends step k - 1). */
#ifndef CPR_QEMU_BENCH_STEPS_H
#define CPR_QEMU_BENCH_STEPS_H
#include <stdint.h>

extern uint32_t cpr_bench_ticks[];
extern uint32_t cpr_bench_last;

#define CPR_BENCH_MARK(k)                                                    \
    do {                                                                     \
        const uint32_t now_ = *(volatile uint32_t *)0xE000E018;              \
        if ((k) > 0) {                                                       \
            cpr_bench_ticks[(k) - 1] += (cpr_bench_last - now_) & 0xFFFFFFu; \
        }                                                                    \
        cpr_bench_last = now_;                                               \
    } while (0)
#endif
