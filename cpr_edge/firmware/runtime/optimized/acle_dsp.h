/* The DSP-extension intrinsics the optimized kernels use.
 * On a core with the DSP extension (__ARM_FEATURE_DSP: Cortex-M4/M7/M33) they are the ACLE
 * intrinsics of <arm_acle.h>; elsewhere (host builds, for testing the algorithm) they are
 * emulated in plain C with the same results. Internal header. */
#ifndef CPR_ACLE_DSP_H
#define CPR_ACLE_DSP_H
#include <stdint.h>
#include <string.h>

#if defined(__arm__) && !(defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP)
#error "the DSP FULLY_CONNECTED variants need a core with the DSP extension (Cortex-M4/M7/M33)"
#endif

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define cpr_sxtb16(x) __sxtb16((int32_t)(x))
#define cpr_sxtab16(a, x) __sxtab16((int32_t)(a), (int32_t)(x))
#define cpr_smlad(a, b, acc) __smlad((int32_t)(a), (int32_t)(b), (acc))
#define cpr_smlald(a, b, acc) __smlald((int32_t)(a), (int32_t)(b), (acc))
#else
/* two signed bytes (0 and 2) sign-extended into two halfwords */
static inline int32_t cpr_sxtb16(uint32_t x)
{
    const uint32_t lo = (uint32_t)(int32_t)(int8_t)(x & 0xFF) & 0xFFFFu;
    const uint32_t hi = (uint32_t)(int32_t)(int8_t)((x >> 16) & 0xFF) & 0xFFFFu;
    return (int32_t)(lo | (hi << 16));
}
/* halfword-wise a + sxtb16(x), each lane wrapping at 16 bits */
static inline int32_t cpr_sxtab16(uint32_t a, uint32_t x)
{
    const uint32_t e = (uint32_t)cpr_sxtb16(x);
    const uint32_t lo = ((a & 0xFFFFu) + (e & 0xFFFFu)) & 0xFFFFu;
    const uint32_t hi = ((a >> 16) + (e >> 16)) & 0xFFFFu;
    return (int32_t)(lo | (hi << 16));
}
/* acc + a.lo * b.lo + a.hi * b.hi (signed halfwords), wrapping like SMLAD */
static inline int32_t cpr_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    const int32_t p0 = (int32_t)(int16_t)(a & 0xFFFF) * (int32_t)(int16_t)(b & 0xFFFF);
    const int32_t p1 = (int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)p0 + (uint32_t)p1);
}
/* acc + a.lo * b.lo + a.hi * b.hi into a 64-bit accumulator, like SMLALD */
static inline int64_t cpr_smlald(uint32_t a, uint32_t b, int64_t acc)
{
    const int32_t p0 = (int32_t)(int16_t)(a & 0xFFFF) * (int32_t)(int16_t)(b & 0xFFFF);
    const int32_t p1 = (int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b >> 16);
    return acc + p0 + p1;
}
#endif

static inline uint32_t cpr_ror(uint32_t x, uint32_t r)
{
    return (x >> r) | (x << (32u - r));
}

/* Odd bytes (1 and 3): SXTB16 of the word rotated right by 8. The rotate variant uses the
 * instruction's own ROR #8 operand form; the plain DSP variant rotates first (ACLE only
 * exposes SXTB16 without rotation). */
#if defined(CPR_FC_VARIANT_DSP_ROTATE) && defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static inline int32_t cpr_sxtb16_ror8(uint32_t x)
{
    int32_t r;
    __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline int32_t cpr_sxtab16_ror8(uint32_t a, uint32_t x)
{
    int32_t r;
    __asm("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
#else
#define cpr_sxtb16_ror8(x) cpr_sxtb16(cpr_ror((x), 8))
#define cpr_sxtab16_ror8(a, x) cpr_sxtab16((a), cpr_ror((x), 8))
#endif

/* four bytes from any address (Cortex-M4/M7/M33 allow unaligned LDR); the builtin keeps
 * it a single load even in -ffreestanding builds, where plain memcpy is a library call */
static inline uint32_t cpr_read4(const int8_t *p)
{
    uint32_t v;
#if defined(__GNUC__)
    __builtin_memcpy(&v, p, 4);
#else
    memcpy(&v, p, 4);
#endif
    return v;
}
#endif
