/* usart_stm32f1.c: STM32F1 port of the USART driver (stm32vldiscovery in QEMU and the Blue
 * Pill: USART1 on PA9 TX / PA10 RX, the default mapping). The F1 has no alternate-function
 * number per pin: a pin is given to the peripheral by its 4-bit CNF/MODE field in GPIOx_CRL
 * (pins 0-7) or GPIOx_CRH (pins 8-15), and the GPIO ports are clocked from APB2 (RM0008
 * 7.3.7, 9.2.1-9.2.2, table 24/25). The USART itself is usart_stm32.c.
 *
 * QEMU's stm32vldiscovery does not model RCC, GPIO or AFIO (writes are ignored), so the
 * emulated board runs exactly the code the real one does. AFIO's clock is not needed: the
 * default USART1 mapping involves no remap register. */
#include "cortex_m.h"
#include "platform.h"
#include "usart_stm32.h"

#define RCC_BASE 0x40021000u
#define RCC_APB2ENR REG32(RCC_BASE + 0x18u)
#define GPIO_CR(port, pin) REG32((port) + 4u * ((pin) >> 3)) /* CRL, CRH */
#define GPIO_ODR(port) REG32((port) + 0x0Cu)

#define PIN_AF_PUSH_PULL_50MHZ 0xBu /* CNF 10, MODE 11 */
#define PIN_INPUT_PULL 0x8u         /* CNF 10, MODE 00; ODR picks up (1) or down (0) */

static void pin_config(uint32_t port, uint32_t pin, uint32_t cnf_mode)
{
    uint32_t shift = 4u * (pin & 7u);
    GPIO_CR(port, pin) = (GPIO_CR(port, pin) & ~(0xFu << shift)) | (cnf_mode << shift);
}

void usart_stm32_clock_and_pins(void)
{
    RCC_APB2ENR |= 1u << BOARD_UART_GPIO_RCC_BIT;
    REG32(RCC_BASE + BOARD_UART_RCC_ENR_OFFSET) |= 1u << BOARD_UART_RCC_BIT;
    pin_config(BOARD_UART_GPIO_BASE, BOARD_UART_TX_PIN, PIN_AF_PUSH_PULL_50MHZ);
    /* RX with the pull-up: an unconnected line idles high instead of reading noise */
    GPIO_ODR(BOARD_UART_GPIO_BASE) |= 1u << BOARD_UART_RX_PIN;
    pin_config(BOARD_UART_GPIO_BASE, BOARD_UART_RX_PIN, PIN_INPUT_PULL);
}
