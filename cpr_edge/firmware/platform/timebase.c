/* timebase.c: 64-bit time from SysTick at the core clock, wrapping every 10 ms.
 *
 * The 10 ms interrupt also wakes the idle loop from WFI often enough to notice a stalled
 * frame (protocol rule: 50 ms). Under QEMU -icount the SysTick counts virtual time, which
 * advances one nanosecond per instruction (shift=0), so ticks measure instructions. */
#include "cortex_m.h"
#include "platform.h"

#define TICKS_PER_WRAP (BOARD_CLOCK_HZ / 100u)
#if TICKS_PER_WRAP > 0x1000000u
#error "SysTick reload exceeds 24 bits"
#endif

static volatile uint32_t systick_wraps;

void SysTick_Handler(void) { systick_wraps++; }

void timebase_init(void)
{
    SYST_RVR = TICKS_PER_WRAP - 1u;
    SYST_CVR = 0;
    SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE;
}

uint64_t timebase_ticks(void)
{
    uint32_t wraps, value, pending;
    do {
        wraps = systick_wraps;
        value = SYST_CVR;
        pending = SCB_ICSR & SCB_ICSR_PENDSTSET;
    } while (wraps != systick_wraps);
    /* The counter wrapped but its interrupt has not run yet: count that wrap here. */
    if (pending && value > TICKS_PER_WRAP / 2u)
        wraps++;
    return (uint64_t)wraps * TICKS_PER_WRAP + (TICKS_PER_WRAP - 1u - value);
}

uint32_t timebase_ms(void)
{
    return (uint32_t)(timebase_ticks() / (BOARD_CLOCK_HZ / 1000u));
}
