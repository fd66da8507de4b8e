/* The exception list of the 16x8 ELU island kernels (elu_island_s16.c, elu_island_s16_int.c):
 * the int16 inputs where the kernel's own formula differs from TFLM, sorted, with TFLM's
 * outputs beside them. */
#ifndef CPR_ELU_EXCEPTIONS_H
#define CPR_ELU_EXCEPTIONS_H

#include <stdint.h>

/* Index of q in the sorted keys[0..n), or -1 (binary search). */
static inline int32_t cpr_elu_find_exception(const int16_t *keys, int32_t n, int32_t q)
{
    int32_t lo = 0, hi = n;
    while (lo < hi) {
        const int32_t mid = (lo + hi) >> 1;
        if (keys[mid] < q) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < n && keys[lo] == q ? lo : -1;
}

#endif /* CPR_ELU_EXCEPTIONS_H */
