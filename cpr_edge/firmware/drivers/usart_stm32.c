/* usart_stm32.c: the STM32 USART itself (SR/DR/BRR/CR1 layout of the STM32F1, F2 and F4),
 * shared by both families' ports. Only the clock-enable and pin set-up differs between
 * families; it is in usart_stm32f1.c / usart_stm32f4.c (the board definition's uart.driver
 * names that file, the Makefile adds this one).
 *
 * QEMU's stm32f2xx-usart model (netduinoplus2, stm32vldiscovery) serves both families. */
#include "uart.h"

#include "cortex_m.h"
#include "platform.h"
#include "usart_stm32.h"

#define USART_SR  REG32(BOARD_UART_BASE + 0x00u)
#define USART_DR  REG32(BOARD_UART_BASE + 0x04u)
#define USART_BRR REG32(BOARD_UART_BASE + 0x08u)
#define USART_CR1 REG32(BOARD_UART_BASE + 0x0Cu)

#define SR_ORE  (1u << 3)
#define SR_RXNE (1u << 5)
#define SR_TC   (1u << 6)
#define SR_TXE  (1u << 7)
#define CR1_RE  (1u << 2)
#define CR1_TE  (1u << 3)
#define CR1_RXNEIE (1u << 5)
#define CR1_UE  (1u << 13)

void uart_init(void)
{
    usart_stm32_clock_and_pins();
    /* 16x oversampling: BRR = the divider in 1/16ths, computed from the board definition's
     * USART kernel clock and baud rate (cpr_edge.firmware_build.config) */
    USART_BRR = BOARD_UART_BRR;
    USART_CR1 = CR1_UE | CR1_TE | CR1_RE | CR1_RXNEIE;
    static const uint8_t irqs[] = {BOARD_UART_IRQ_LIST};
    for (uint32_t i = 0; i < sizeof(irqs); i++)
        nvic_enable_irq(irqs[i]);
}

void uart_irq_handler(void)
{
    uint32_t sr;
    /* reading SR then DR clears RXNE and ORE */
    while ((sr = USART_SR) & (SR_RXNE | SR_ORE)) {
        uint8_t byte = (uint8_t)USART_DR;
        if (sr & SR_ORE)
            uart_on_overrun();
        if (sr & SR_RXNE)
            uart_on_rx(byte);
    }
}

void uart_write(const uint8_t *data, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        while (!(USART_SR & SR_TXE))
            ;
        USART_DR = data[i];
    }
}

void uart_flush(void)
{
    while (!(USART_SR & SR_TC))
        ;
}
