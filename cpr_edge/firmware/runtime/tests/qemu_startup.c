/* Bare-metal start and semihosting I/O for the kernel tests in QEMU (mps2-an386).
 * Deliberately tiny: vector table, .data/.bss set-up, FPU on, main(), exit status via
 * SYS_EXIT_EXTENDED. The real firmware start-up lives in firmware/platform/. */
#include <stddef.h>
#include <stdint.h>

#include "qemu_test.h"

extern uint32_t _data_start, _data_end, _data_load, _bss_start, _bss_end, _stack_top;
int main(void);
void cpr_test_reset(void);

static void fault_handler(void)
{
    cpr_test_puts("FAULT\n");
    cpr_test_exit(3);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))&_stack_top, cpr_test_reset, fault_handler, fault_handler,
    fault_handler, fault_handler, fault_handler, 0, 0, 0, 0, fault_handler, 0, 0,
    fault_handler, fault_handler,
};

void cpr_test_reset(void)
{
    uint32_t *src = &_data_load;
    for (uint32_t *dst = &_data_start; dst < &_data_end;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &_bss_start; dst < &_bss_end;) {
        *dst++ = 0;
    }
#if defined(__ARM_FP)
    /* CPACR: full access to CP10/CP11 before any float instruction runs. */
    *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20);
    __asm volatile("dsb\n isb" ::: "memory");
#endif
    cpr_test_exit(main());
}

static uint32_t semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void cpr_test_puts(const char *s)
{
    semihost(0x04 /* SYS_WRITE0 */, s);
}

void cpr_test_exit(int status)
{
    /* ADP_Stopped_ApplicationExit with the status as subcode */
    const uint32_t block[2] = {0x20026u, (uint32_t)status};
    semihost(0x20 /* SYS_EXIT_EXTENDED */, block);
    for (;;) {
    }
}

/* The compiler may emit calls to these even in freestanding code. */
void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--) {
        *d++ = (uint8_t)c;
    }
    return dst;
}
