/* clock_stm32f1.c: STM32F1 clock set-up at boot (RM0008 3.3.3, 7.2, 7.3): the source
 * started (HSE crystal) and waited for, flash wait states and the prefetch buffer set before
 * the faster clock arrives, PLL source, multiplier and bus/ADC dividers written while SYSCLK
 * is still the HSI, the PLL started and locked, then SYSCLK switched to it.
 *
 * RCC_CFGR and FLASH_ACR are board_config.h words computed and checked from the board
 * definition by cpr_edge.firmware_build.clock. */
#include "cortex_m.h"
#include "platform.h"

#define RCC_BASE 0x40021000u
#define RCC_CR    REG32(RCC_BASE + 0x00u)
#define RCC_CFGR  REG32(RCC_BASE + 0x04u)
#define FLASH_ACR REG32(0x40022000u)

#define CR_HSEON  (1u << 16)
#define CR_HSERDY (1u << 17)
#define CR_PLLON  (1u << 24)
#define CR_PLLRDY (1u << 25)
#define CFGR_SW_PLL   (2u << 0)
#define CFGR_SWS_MASK (3u << 2)
#define CFGR_SWS_PLL  (2u << 2)

void clock_init(void)
{
#if BOARD_CLOCK_FROM_HSE
    RCC_CR |= CR_HSEON;
    while (!(RCC_CR & CR_HSERDY))
        ;
#endif
    FLASH_ACR = BOARD_FLASH_ACR;
    RCC_CFGR = BOARD_RCC_CFGR; /* SW still 00: HSI drives SYSCLK while the PLL starts */
    RCC_CR |= CR_PLLON;
    while (!(RCC_CR & CR_PLLRDY))
        ;
    RCC_CFGR = BOARD_RCC_CFGR | CFGR_SW_PLL;
    while ((RCC_CFGR & CFGR_SWS_MASK) != CFGR_SWS_PLL)
        ;
}
