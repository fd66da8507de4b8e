/* system.c: platform bring-up and reset. */
#include "cortex_m.h"
#include "platform.h"

void platform_init(void)
{
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
