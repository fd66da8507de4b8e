/* main.c: HIL firmware. Bytes arrive by interrupt into a ring buffer; the main loop feeds
 * them to the frame parser, which calls the request handlers (hil.c); with nothing to do the
 * core sleeps in WFI until the next interrupt (UART byte or the 10 ms SysTick). */
#include "cortex_m.h"
#include "hil.h"
#include "platform.h"
#include "ring_buffer.h"
#include "uart.h"

static ring_buffer rx_queue;
static hil_state hil;

void uart_on_rx(uint8_t byte)
{
    if (!ring_push(&rx_queue, byte))
        hil.overflows++;
}

void uart_on_overrun(void) { hil.overflows++; }

int main(void)
{
    ring_init(&rx_queue);
    hil_init(&hil);
    platform_init();
    uart_init();
    irq_enable_all();
    for (;;) {
        uint8_t byte;
        while (ring_pop(&rx_queue, &byte))
            frame_parser_feed(&hil.parser, byte, timebase_ms());
        frame_parser_poll(&hil.parser, timebase_ms());
        /* Sleep only if nothing arrived since the check; WFI wakes on a pending interrupt
         * even with interrupts masked, and the ISR runs once they are unmasked. */
        irq_disable_all();
        if (ring_count(&rx_queue) == 0)
            wait_for_interrupt();
        irq_enable_all();
    }
}
