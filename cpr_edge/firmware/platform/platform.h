/* platform.h: what the application needs from the board, whatever the board.
 *
 * The board's facts (clock, UART, counter kind, ...) arrive as macros from the generated
 * board_config.h (written by cpr_edge.firmware_build from the board definition YAML). */
#ifndef PLATFORM_H
#define PLATFORM_H

#include <stdint.h>

#include "board_config.h"

/* ---- time base (timebase.c): SysTick, free running at the core clock ------------------ */
void timebase_init(void);
uint64_t timebase_ticks(void);  /* core-clock ticks since boot */
uint32_t timebase_ms(void);     /* milliseconds since boot (wraps after 49 days) */

/* ---- invoke counter (counter.c) -------------------------------------------------------
 * BOARD_COUNTER_UNIT 0: CPU cycles from DWT CYCCNT (real boards).
 * BOARD_COUNTER_UNIT 1: instructions (QEMU -icount): SysTick ticks x instructions per tick. */
void counter_init(void);
uint32_t counter_read(void);                 /* raw reading */
uint32_t counter_elapsed(uint32_t start, uint32_t end); /* in the unit HELLO announces */

/* ---- stack (stack.c): painted at boot, high-water mark by scanning -------------------- */
void stack_paint(void);            /* fills the unused stack below the caller with a pattern */
uint32_t stack_size(void);         /* bytes reserved for the stack by the linker script */
uint32_t stack_used(void);         /* high-water mark in bytes since the last paint */

/* ---- system ----------------------------------------------------------------------------- */
/* Clock tree of the board definition (clock_stm32f4.c, clock_stm32f1.c), on boards with
 * BOARD_CLOCK_SETUP 1; the others run at the clock they start on. */
void clock_init(void);
void platform_init(void);          /* FPU is on already; clock tree, time base, counter */
void system_reset(void) __attribute__((noreturn)); /* SYSRESETREQ */

#endif /* PLATFORM_H */
