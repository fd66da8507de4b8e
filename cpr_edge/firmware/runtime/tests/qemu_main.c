/* QEMU bit-exactness harness: runs model_invoke on TEST_COUNT embedded inputs and prints
 * each output as one hex line ("O <hex>" of its bytes), then "DONE". With TEST_FLOAT the
 * inputs are float32 and model_invoke_float runs instead. Exit status 0 on success. */
#include <stdint.h>

#include "model.h"
#include "qemu_test.h"
#include "test_vectors.h" /* generated: TEST_COUNT, test_inputs[TEST_COUNT][MODEL_INPUT_LEN] */

#ifdef TEST_FLOAT
typedef float out_t;
#else
typedef MODEL_OUTPUT_T out_t;
#endif

static char line[4 + 2 * sizeof(out_t) * MODEL_OUTPUT_LEN + 2];

int main(void)
{
    static const char hex[] = "0123456789abcdef";
    out_t out[MODEL_OUTPUT_LEN];
    for (int32_t n = 0; n < TEST_COUNT; ++n) {
#ifdef TEST_FLOAT
        const int rc = model_invoke_float(test_inputs[n], out);
#else
        const int rc = model_invoke(test_inputs[n], out);
#endif
        if (rc != 0) {
            cpr_test_puts("INVOKE FAILED\n");
            return 1;
        }
        const uint8_t *bytes = (const uint8_t *)out;
        int32_t pos = 0;
        line[pos++] = 'O';
        line[pos++] = ' ';
        for (int32_t i = 0; i < (int32_t)sizeof out; ++i) {
            const uint8_t b = bytes[i];
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
