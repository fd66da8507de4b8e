/* TFLM MultiplyByQuantizedMultiplier for an int64 accumulator (16x8 FULLY_CONNECTED with
 * int64 bias). TFLM has one definition of it, with or without TFLITE_SINGLE_ROUNDING: the
 * multiplier is first rounded to 16 bits, then one rounding shift (internal header). */
#ifndef CPR_REQUANT64_H
#define CPR_REQUANT64_H
#include <stdint.h>

static inline int32_t cpr_requantize64(int64_t x, int32_t multiplier, int32_t shift)
{
    const int32_t reduced = multiplier < 0x7FFF0000 ? (multiplier + (1 << 15)) >> 16 : 0x7FFF;
    const int32_t total_shift = 15 - shift;
    const int64_t r = x * (int64_t)reduced + ((int64_t)1 << (total_shift - 1));
    return (int32_t)(r >> total_shift); /* arithmetic shift of int64 (GCC) */
}
#endif
