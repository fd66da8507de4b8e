/* uart_cmsdk.c: Arm CMSDK APB UART (MPS2 boards: AN386, AN500, AN505).
 *
 * One-byte receive buffer, so the receive interrupt must drain it byte by byte. QEMU
 * requires BAUDDIV >= 16 and otherwise ignores the baud rate. */
#include "uart.h"

#include "cortex_m.h"
#include "platform.h"

#define UART_DATA      REG32(BOARD_UART_BASE + 0x00u)
#define UART_STATE     REG32(BOARD_UART_BASE + 0x04u)
#define UART_CTRL      REG32(BOARD_UART_BASE + 0x08u)
#define UART_INTSTATUS REG32(BOARD_UART_BASE + 0x0Cu) /* write 1 to clear (INTCLEAR) */
#define UART_BAUDDIV   REG32(BOARD_UART_BASE + 0x10u)

#define STATE_TX_FULL    (1u << 0)
#define STATE_RX_FULL    (1u << 1)
#define STATE_RX_OVERRUN (1u << 3)
#define CTRL_TX_EN       (1u << 0)
#define CTRL_RX_EN       (1u << 1)
#define CTRL_RX_INT_EN   (1u << 3)
#define CTRL_RX_OVR_INT_EN (1u << 5)
#define INT_RX           (1u << 1)
#define INT_RX_OVERRUN   (1u << 3)

void uart_init(void)
{
    uint32_t div = BOARD_UART_CLOCK_HZ / BOARD_UART_BAUD;
    UART_BAUDDIV = div < 16u ? 16u : div;
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN | CTRL_RX_OVR_INT_EN;
    static const uint8_t irqs[] = {BOARD_UART_IRQ_LIST};
    for (uint32_t i = 0; i < sizeof(irqs); i++)
        nvic_enable_irq(irqs[i]);
}

void uart_irq_handler(void)
{
    /* Clear first: a byte arriving after the drain below raises the interrupt again. */
    UART_INTSTATUS = INT_RX | INT_RX_OVERRUN;
    if (UART_STATE & STATE_RX_OVERRUN) {
        UART_STATE = STATE_RX_OVERRUN;
        uart_on_overrun();
    }
    while (UART_STATE & STATE_RX_FULL)
        uart_on_rx((uint8_t)UART_DATA);
}

void uart_write(const uint8_t *data, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        while (UART_STATE & STATE_TX_FULL)
            ;
        UART_DATA = data[i];
    }
}

void uart_flush(void)
{
    while (UART_STATE & STATE_TX_FULL)
        ;
}
