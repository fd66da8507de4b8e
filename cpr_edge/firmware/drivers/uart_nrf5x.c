/* uart_nrf5x.c: the Nordic UART without EasyDMA, the same register set on the nRF51 (its
 * only UART: micro:bit, TX P0.24 / RX P0.25 to the interface MCU) and the nRF52 (the legacy
 * UART0 sharing ID 2 with UARTE0: nRF52840-DK, TX P0.06 / RX P0.08). QEMU's microbit machine
 * models it (hw/char/nrf51_uart.c): ENABLE must be 4, TXD is only taken after STARTTX, RXD
 * pops a 6-byte receive FIFO and raises RXDRDY again while bytes remain. */
#include "uart.h"

#include "cortex_m.h"
#include "platform.h"

#define UART_TASKS_STARTRX REG32(BOARD_UART_BASE + 0x000u)
#define UART_TASKS_STARTTX REG32(BOARD_UART_BASE + 0x008u)
#define UART_EVENTS_RXDRDY REG32(BOARD_UART_BASE + 0x108u)
#define UART_EVENTS_TXDRDY REG32(BOARD_UART_BASE + 0x11Cu)
#define UART_EVENTS_ERROR  REG32(BOARD_UART_BASE + 0x124u)
#define UART_INTENSET      REG32(BOARD_UART_BASE + 0x304u)
#define UART_ERRORSRC      REG32(BOARD_UART_BASE + 0x480u)
#define UART_ENABLE        REG32(BOARD_UART_BASE + 0x500u)
#define UART_PSELTXD       REG32(BOARD_UART_BASE + 0x50Cu)
#define UART_PSELRXD       REG32(BOARD_UART_BASE + 0x514u)
#define UART_RXD           REG32(BOARD_UART_BASE + 0x518u)
#define UART_TXD           REG32(BOARD_UART_BASE + 0x51Cu)
#define UART_BAUDRATE      REG32(BOARD_UART_BASE + 0x524u)

#define INT_RXDRDY (1u << 2)
#define INT_ERROR  (1u << 9)
#define ERRORSRC_OVERRUN (1u << 0)
#define ENABLE_UART 4u
#define BAUDRATE_115200 0x01D7E000u

static volatile int tx_started;

void uart_init(void)
{
    UART_PSELTXD = BOARD_UART_TX_PIN;
    UART_PSELRXD = BOARD_UART_RX_PIN;
    UART_BAUDRATE = BAUDRATE_115200;
    UART_ENABLE = ENABLE_UART;
    UART_INTENSET = INT_RXDRDY | INT_ERROR;
    UART_TASKS_STARTTX = 1;
    UART_TASKS_STARTRX = 1;
    tx_started = 0;
    static const uint8_t irqs[] = {BOARD_UART_IRQ_LIST};
    for (uint32_t i = 0; i < sizeof(irqs); i++)
        nvic_enable_irq(irqs[i]);
}

void uart_irq_handler(void)
{
    if (UART_EVENTS_ERROR) {
        UART_EVENTS_ERROR = 0;
        uint32_t src = UART_ERRORSRC;
        UART_ERRORSRC = src; /* write 1 to clear */
        if (src & ERRORSRC_OVERRUN)
            uart_on_overrun();
    }
    while (UART_EVENTS_RXDRDY) {
        UART_EVENTS_RXDRDY = 0;
        uart_on_rx((uint8_t)UART_RXD);
    }
}

void uart_write(const uint8_t *data, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (tx_started) {
            while (!UART_EVENTS_TXDRDY)
                ;
        }
        UART_EVENTS_TXDRDY = 0;
        UART_TXD = data[i];
        tx_started = 1;
    }
}

void uart_flush(void)
{
    if (tx_started)
        while (!UART_EVENTS_TXDRDY)
            ;
}
