/* usart_stm32f4.c: STM32F4 USART (netduinoplus2 in QEMU: USART1; Nucleo-F446RE: USART2).
 *
 * The board definition gives the RCC enable bits and the GPIO pins in alternate function
 * mode; QEMU does not model RCC or GPIO (writes are ignored), so the emulated board runs
 * exactly the code the real one does. */
#include "uart.h"

#include "cortex_m.h"
#include "platform.h"

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

#define RCC_BASE 0x40023800u
#define RCC_AHB1ENR REG32(RCC_BASE + 0x30u)
#define GPIO_MODER(port) REG32((port) + 0x00u)
#define GPIO_AFR(port, pin) REG32((port) + 0x20u + 4u * ((pin) >> 3))

static void pin_alternate(uint32_t port, uint32_t pin, uint32_t af)
{
    GPIO_MODER(port) = (GPIO_MODER(port) & ~(3u << (2u * pin))) | (2u << (2u * pin));
    uint32_t shift = 4u * (pin & 7u);
    GPIO_AFR(port, pin) = (GPIO_AFR(port, pin) & ~(0xFu << shift)) | (af << shift);
}

void uart_init(void)
{
    RCC_AHB1ENR |= 1u << BOARD_UART_GPIO_RCC_BIT;
    REG32(RCC_BASE + BOARD_UART_RCC_ENR_OFFSET) |= 1u << BOARD_UART_RCC_BIT;
    pin_alternate(BOARD_UART_GPIO_BASE, BOARD_UART_TX_PIN, BOARD_UART_AF);
    pin_alternate(BOARD_UART_GPIO_BASE, BOARD_UART_RX_PIN, BOARD_UART_AF);
    /* 16x oversampling: BRR holds the divider in 1/16ths, rounded to nearest */
    USART_BRR = (BOARD_UART_CLOCK_HZ + BOARD_UART_BAUD / 2u) / BOARD_UART_BAUD;
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
