/* usart_stm32f4.c: STM32F4 port of the USART driver (netduinoplus2 in QEMU: USART1 on
 * PA9/PA10; Nucleo-F446RE: USART2 on PA2/PA3): RCC enable bits and the GPIO pins in
 * alternate function mode (MODER/AFR). The USART itself is usart_stm32.c.
 *
 * QEMU does not model RCC or GPIO (writes are ignored), so the emulated board runs exactly
 * the code the real one does. */
#include "cortex_m.h"
#include "platform.h"
#include "usart_stm32.h"

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

void usart_stm32_clock_and_pins(void)
{
    RCC_AHB1ENR |= 1u << BOARD_UART_GPIO_RCC_BIT;
    REG32(RCC_BASE + BOARD_UART_RCC_ENR_OFFSET) |= 1u << BOARD_UART_RCC_BIT;
    pin_alternate(BOARD_UART_GPIO_BASE, BOARD_UART_TX_PIN, BOARD_UART_AF);
    pin_alternate(BOARD_UART_GPIO_BASE, BOARD_UART_RX_PIN, BOARD_UART_AF);
}
