/* counter.c: the counter that times model_invoke.
 *
 * Real boards: DWT CYCCNT, CPU cycles. QEMU has no DWT (CYCCNT reads 0); there SysTick under
 * -icount shift=S advances one tick per (10^9 / BOARD_CLOCK_HZ) ns of virtual time, and every
 * instruction takes 2^S ns, so instructions = ticks * 10^9 / (BOARD_CLOCK_HZ << S). The
 * result is exact to within one tick (e.g. 40 instructions on mps2-an386 at 25 MHz). */
#include "cortex_m.h"
#include "platform.h"

#if BOARD_COUNTER_UNIT == 0 /* cycles, DWT */

void counter_init(void)
{
    DEMCR |= DEMCR_TRCENA;
    DWT_LAR = 0xC5ACCE55u; /* unlock (needed on Cortex-M7, ignored elsewhere) */
    DWT_CYCCNT = 0;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
}

uint32_t counter_read(void) { return DWT_CYCCNT; }

uint32_t counter_elapsed(uint32_t start, uint32_t end) { return end - start; }

#else /* instructions, SysTick under -icount */

void counter_init(void) {}

uint32_t counter_read(void) { return (uint32_t)timebase_ticks(); }

uint32_t counter_elapsed(uint32_t start, uint32_t end)
{
    uint64_t ticks = (uint32_t)(end - start);
    uint64_t instr = ticks * 1000000000ull / ((uint64_t)BOARD_CLOCK_HZ << BOARD_ICOUNT_SHIFT);
    return instr > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)instr;
}

#endif
