/* cortex_m.h: the few Armv7-M / Armv8-M system registers the platform touches.
 *
 * Written out here instead of pulling in CMSIS-Core, so the firmware builds from this
 * package alone. Addresses are the architectural ones (System Control Space at 0xE000E000),
 * identical on every core we support (M0, M4, M7, M33, M55).
 */
#ifndef CORTEX_M_H
#define CORTEX_M_H

#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(addr))

/* SysTick */
#define SYST_CSR   REG32(0xE000E010u)
#define SYST_RVR   REG32(0xE000E014u)
#define SYST_CVR   REG32(0xE000E018u)
#define SYST_CSR_ENABLE    (1u << 0)
#define SYST_CSR_TICKINT   (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2) /* 1 = processor clock */

/* NVIC: one bit per external interrupt, 32 per word */
#define NVIC_ISER(n) REG32(0xE000E100u + 4u * (n))
#define NVIC_ICER(n) REG32(0xE000E180u + 4u * (n))
#define NVIC_IPR8(irq) (*(volatile uint8_t *)(0xE000E400u + (irq)))

/* System Control Block */
#define SCB_ICSR   REG32(0xE000ED04u)
#define SCB_VTOR   REG32(0xE000ED08u)
#define SCB_AIRCR  REG32(0xE000ED0Cu)
#define SCB_CPACR  REG32(0xE000ED88u)
#define SCB_ICSR_PENDSTSET (1u << 26)
#define SCB_AIRCR_VECTKEY  (0x05FAu << 16)
#define SCB_AIRCR_SYSRESETREQ (1u << 2)

/* Debug: DWT cycle counter (absent in QEMU, where CYCCNT reads 0) */
#define DEMCR      REG32(0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL   REG32(0xE0001000u)
#define DWT_CYCCNT REG32(0xE0001004u)
#define DWT_LAR    REG32(0xE0001FB0u) /* lock access register (Cortex-M7) */
#define DWT_CTRL_CYCCNTENA (1u << 0)

static inline void irq_enable_all(void) { __asm volatile("cpsie i" ::: "memory"); }
static inline void irq_disable_all(void) { __asm volatile("cpsid i" ::: "memory"); }
static inline void wait_for_interrupt(void) { __asm volatile("wfi" ::: "memory"); }
static inline void data_sync_barrier(void) { __asm volatile("dsb 0xF" ::: "memory"); }
static inline void instr_sync_barrier(void) { __asm volatile("isb 0xF" ::: "memory"); }

static inline void nvic_enable_irq(uint32_t irq) { NVIC_ISER(irq >> 5) = 1u << (irq & 31u); }

#endif /* CORTEX_M_H */
