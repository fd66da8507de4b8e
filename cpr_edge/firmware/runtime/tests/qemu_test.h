/* Semihosting helpers of the QEMU kernel-test images. */
#ifndef CPR_QEMU_TEST_H
#define CPR_QEMU_TEST_H
#include <stdint.h>

void cpr_test_puts(const char *s);
void cpr_test_exit(int status) __attribute__((noreturn));

/* SysTick as an instruction counter: under `qemu -icount shift=0` it ticks once every
 * 40 instructions on mps2-an386 (25 MHz nominal clock); see benchmarks/kernel_speed.py. */
static inline void cpr_systick_start(void)
{
    *(volatile uint32_t *)0xE000E010 = 0;          /* CSR: stop */
    *(volatile uint32_t *)0xE000E014 = 0xFFFFFFu;  /* RVR: full 24-bit range */
    *(volatile uint32_t *)0xE000E018 = 0;          /* CVR: reload on next tick */
    *(volatile uint32_t *)0xE000E010 = 5;          /* CSR: enable, processor clock */
}

static inline uint32_t cpr_systick_now(void)
{
    return *(volatile uint32_t *)0xE000E018;
}

/* Ticks between two cpr_systick_now() readings: SysTick counts down, 24 bits. */
static inline uint32_t cpr_systick_elapsed(uint32_t start, uint32_t end)
{
    return (start - end) & 0xFFFFFFu;
}

/* Prints tag, then v in decimal (no libc printf in these images). */
static inline void cpr_test_put_uint(const char *tag, uint32_t v)
{
    char buf[16];
    int32_t i = 15;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i > 0);
    cpr_test_puts(tag);
    cpr_test_puts(&buf[i]);
}
#endif
