/* clock_stm32f4.c: STM32F4 clock set-up at boot, in the order RM0390 (STM32F446) 5.1.4
 * and 6.3 prescribe for running above 168 MHz: power interface clocked, regulator voltage
 * scale set while the PLL is off, PLL configured and started, over-drive enabled and
 * switched to while the PLL locks, flash wait states (and the ART accelerator: prefetch,
 * instruction and data caches) raised before the faster clock arrives, bus dividers set,
 * then SYSCLK switched to the PLL.
 *
 * Every number (PLLCFGR, dividers, FLASH_ACR, VOS) is a board_config.h word computed and
 * checked from the board definition by cpr_edge.firmware_build.clock. */
#include "cortex_m.h"
#include "platform.h"

#define RCC_BASE 0x40023800u
#define RCC_CR      REG32(RCC_BASE + 0x00u)
#define RCC_PLLCFGR REG32(RCC_BASE + 0x04u)
#define RCC_CFGR    REG32(RCC_BASE + 0x08u)
#define RCC_APB1ENR REG32(RCC_BASE + 0x40u)
#define PWR_CR      REG32(0x40007000u)
#define PWR_CSR     REG32(0x40007004u)
#define FLASH_ACR   REG32(0x40023C00u)

#define CR_HSEON  (1u << 16)
#define CR_HSERDY (1u << 17)
#define CR_PLLON  (1u << 24)
#define CR_PLLRDY (1u << 25)
#define APB1ENR_PWREN (1u << 28)
#define PWR_CR_VOS_MASK (3u << 14)
#define PWR_CR_ODEN   (1u << 16)
#define PWR_CR_ODSWEN (1u << 17)
#define PWR_CSR_ODRDY   (1u << 16)
#define PWR_CSR_ODSWRDY (1u << 17)
#define CFGR_SW_MASK  (3u << 0)
#define CFGR_SW_PLL   (2u << 0)
#define CFGR_SWS_MASK (3u << 2)
#define CFGR_SWS_PLL  (2u << 2)
#define CFGR_DIVIDER_MASK ((0xFu << 4) | (7u << 10) | (7u << 13)) /* HPRE, PPRE1, PPRE2 */
#define ACR_LATENCY_MASK 0xFu

void clock_init(void)
{
#if BOARD_CLOCK_FROM_HSE
    RCC_CR |= CR_HSEON;
    while (!(RCC_CR & CR_HSERDY))
        ;
#endif
    RCC_APB1ENR |= APB1ENR_PWREN;
    (void)RCC_APB1ENR; /* read back: the enable takes effect before PWR is touched */
    PWR_CR = (PWR_CR & ~PWR_CR_VOS_MASK) | BOARD_PWR_CR_VOS;
    RCC_PLLCFGR = BOARD_RCC_PLLCFGR;
    RCC_CR |= CR_PLLON;
#if BOARD_CLOCK_OVERDRIVE
    PWR_CR |= PWR_CR_ODEN;
    while (!(PWR_CSR & PWR_CSR_ODRDY))
        ;
    PWR_CR |= PWR_CR_ODSWEN;
    while (!(PWR_CSR & PWR_CSR_ODSWRDY))
        ;
#endif
    while (!(RCC_CR & CR_PLLRDY))
        ;
    FLASH_ACR = BOARD_FLASH_ACR;
    while ((FLASH_ACR & ACR_LATENCY_MASK) != (BOARD_FLASH_ACR & ACR_LATENCY_MASK))
        ;
    RCC_CFGR = (RCC_CFGR & ~CFGR_DIVIDER_MASK) | BOARD_RCC_CFGR_DIVIDERS;
    RCC_CFGR = (RCC_CFGR & ~CFGR_SW_MASK) | CFGR_SW_PLL;
    while ((RCC_CFGR & CFGR_SWS_MASK) != CFGR_SWS_PLL)
        ;
}
