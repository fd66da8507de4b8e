/* startup.c: vector table and reset handler for every supported Cortex-M board.
 *
 * The table has 16 system entries plus BOARD_IRQ_COUNT external ones; every external
 * interrupt goes to default_handler except the board's UART interrupt lines
 * (BOARD_UART_IRQS), which go to uart_irq_handler. On a fault the core stops in a loop
 * (fault_handler) instead of running on with corrupted state. */
#include <stdint.h>

#include "cortex_m.h"
#include "platform.h"

extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_top[];

int main(void);
void uart_irq_handler(void);
void SysTick_Handler(void);
void Reset_Handler(void);

static void default_handler(void) {}

static void fault_handler(void)
{
    for (;;)
        wait_for_interrupt();
}

#define VECTOR_COUNT (16 + BOARD_IRQ_COUNT)

/* GCC's range designators fill the external entries; later designators override. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
__attribute__((section(".vectors"), used))
void (*const vector_table[VECTOR_COUNT])(void) = {
    [0] = (void (*)(void))__stack_top,
    [1] = Reset_Handler,
    [2] = fault_handler, /* NMI */
    [3] = fault_handler, /* HardFault */
    [4] = fault_handler, /* MemManage */
    [5] = fault_handler, /* BusFault */
    [6] = fault_handler, /* UsageFault */
    [7] = fault_handler, /* SecureFault (Armv8-M) */
    [11] = default_handler, /* SVCall */
    [12] = default_handler, /* DebugMonitor */
    [14] = default_handler, /* PendSV */
    [15] = SysTick_Handler,
    [16 ... VECTOR_COUNT - 1] = default_handler,
    BOARD_UART_VECTORS
};
#pragma GCC diagnostic pop

void Reset_Handler(void)
{
    /* Enable the FPU (CP10, CP11 full access) before any floating-point instruction. */
#if defined(__ARM_FP)
    SCB_CPACR |= 0xFu << 20;
    data_sync_barrier();
    instr_sync_barrier();
#endif
#if !defined(__ARM_ARCH_6M__)
    SCB_VTOR = (uint32_t)(uintptr_t)vector_table;
#endif /* ARMv6-M: VTOR is optional and the Cortex-M0 has none; its vectors are at 0, where
        * the linker puts them on every ARMv6-M board (qemu-microbit) */
    /* volatile: keep these loops from being turned into memcpy/memset calls */
    volatile uint32_t *src = __data_load, *dst = __data_start;
    while (dst < __data_end)
        *dst++ = *src++;
    for (volatile uint32_t *p = __bss_start; p < __bss_end;)
        *p++ = 0;
    stack_paint();
    main();
    fault_handler();
}
