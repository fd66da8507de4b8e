/* system.c: platform bring-up and reset. */
#include "cortex_m.h"
#include "platform.h"

void platform_init(void)
{
#if BOARD_CLOCK_SETUP
    clock_init(); /* first: the time base and the UART divider assume BOARD_CLOCK_HZ */
#endif
    timebase_init();
    counter_init();
}

void system_reset(void)
{
    data_sync_barrier();
    SCB_AIRCR = SCB_AIRCR_VECTKEY | SCB_AIRCR_SYSRESETREQ;
    data_sync_barrier();
    for (;;)
        ;
}
