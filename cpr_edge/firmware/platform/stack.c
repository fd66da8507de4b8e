/* stack.c: stack high-water mark by painting.
 *
 * At boot every word of the stack below the live frames is filled with STACK_PAINT; the
 * deepest word that no longer holds it marks the most stack ever used. The scan starts at
 * the bottom (__stack_bottom, from the linker script) and stops at the first changed word. */
#include "platform.h"

#define STACK_PAINT 0xC5AC5AC5u

extern uint32_t __stack_bottom[], __stack_top[];

__attribute__((noinline)) void stack_paint(void)
{
    uint32_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    volatile uint32_t *p = __stack_bottom;
    /* leave 16 bytes below our own frame untouched */
    while ((uint32_t)(uintptr_t)p < sp - 16u)
        *p++ = STACK_PAINT;
}

uint32_t stack_size(void)
{
    return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)__stack_bottom);
}

uint32_t stack_used(void)
{
    const volatile uint32_t *p = __stack_bottom;
    while (p < __stack_top && *p == STACK_PAINT)
        p++;
    return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)p);
}
