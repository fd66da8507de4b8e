/* host/cortex_m.h: host stand-in for platform/cortex_m.h, used only by the HIL fuzz harness
 * (tests/fuzz_hil.c). It comes first on the include path, so app/main.c compiles on the host
 * unchanged: masking interrupts does nothing (the harness runs the "interrupt" itself, between
 * main-loop steps), and WFI hands control to the harness, which delivers the next bytes of
 * the fuzz stream through uart_on_rx as the UART interrupt would. */
#ifndef CORTEX_M_H
#define CORTEX_M_H

#include <stdint.h>

void host_wait_for_interrupt(void); /* tests/fuzz_hil.c */

static inline void irq_enable_all(void) {}
static inline void irq_disable_all(void) {}
static inline void wait_for_interrupt(void) { host_wait_for_interrupt(); }

#endif /* CORTEX_M_H */
