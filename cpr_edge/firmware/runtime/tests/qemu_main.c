/* QEMU bit-exactness harness: runs model_invoke on TEST_COUNT embedded inputs and prints
 * each output as one hex line ("O <hex>"), then "DONE". Exit status 0 on success. */
#include <stdint.h>

#include "model.h"
#include "qemu_test.h"
#include "test_vectors.h" /* generated: TEST_COUNT, test_inputs[TEST_COUNT][MODEL_INPUT_LEN] */

static char line[4 + 2 * MODEL_OUTPUT_LEN + 2];

int main(void)
{
    static const char hex[] = "0123456789abcdef";
    int8_t out[MODEL_OUTPUT_LEN];
    for (int32_t n = 0; n < TEST_COUNT; ++n) {
        if (model_invoke(test_inputs[n], out) != 0) {
            cpr_test_puts("INVOKE FAILED\n");
            return 1;
        }
        int32_t pos = 0;
        line[pos++] = 'O';
        line[pos++] = ' ';
        for (int32_t i = 0; i < MODEL_OUTPUT_LEN; ++i) {
            const uint8_t b = (uint8_t)out[i];
            line[pos++] = hex[b >> 4];
            line[pos++] = hex[b & 15];
        }
        line[pos++] = '\n';
        line[pos] = 0;
        cpr_test_puts(line);
    }
    cpr_test_puts("DONE\n");
    return 0;
}
