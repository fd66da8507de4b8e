/* Element-wise int8 op applied through a 256-entry table (TANH, LOGISTIC, ELU, ...).
 * The generator fills the table by running the TFLM interpreter on all 256 inputs. */
#include "cpr_runtime.h"

void cpr_lookup_s8(const int8_t *input, int32_t n, const int8_t table[256], int8_t *output)
{
    for (int32_t i = 0; i < n; ++i) {
        output[i] = table[(uint8_t)(input[i] + 128)];
    }
}
