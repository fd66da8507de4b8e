/* usart_stm32.h: what the shared STM32 USART core (usart_stm32.c) needs from a family's
 * port (usart_stm32f1.c, usart_stm32f4.c). */
#ifndef USART_STM32_H
#define USART_STM32_H

/* Enables the clocks of the USART and of its GPIO port and puts the board's TX pin in
 * alternate-function output and its RX pin in the USART's input, the family's way. */
void usart_stm32_clock_and_pins(void);

#endif /* USART_STM32_H */
