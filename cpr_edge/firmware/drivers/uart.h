/* uart.h: the serial port of the HIL link, one implementation per UART kind
 * (uart_cmsdk.c, usart_stm32f4.c, uart_nrf5x.c; the board definition picks one).
 *
 * Reception is interrupt driven: uart_irq_handler() hands every received byte to
 * uart_on_rx() and every byte lost in hardware to uart_on_overrun(), both provided by the
 * application. Transmission is blocking (replies are short and sent from the main loop). */
#ifndef UART_H
#define UART_H

#include <stdint.h>

void uart_init(void);
void uart_write(const uint8_t *data, uint32_t n);
void uart_flush(void); /* returns once the last byte has left the transmitter */
void uart_irq_handler(void);

/* provided by the application; called in interrupt context */
void uart_on_rx(uint8_t byte);
void uart_on_overrun(void);

#endif /* UART_H */
