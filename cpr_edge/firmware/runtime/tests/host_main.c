/* Host test harness: runs the generated model on a batch of inputs.
 * stdin: integer inputs (MODEL_INPUT_T: int8, or int16 for a 16x8 model), MODEL_INPUT_LEN
 * elements each (or float32 with argument "float");
 * stdout: the outputs, same layout. Exit status 0 when every invoke returned 0. */
#include <stdio.h>
#include <string.h>

#include "model.h"

int main(int argc, char **argv)
{
    const int use_float = argc > 1 && strcmp(argv[1], "float") == 0;
    int status = 0;
    for (;;) {
        if (use_float) {
#if MODEL_FLOAT_IO
            float in[MODEL_INPUT_LEN], out[MODEL_OUTPUT_LEN];
            if (fread(in, sizeof in, 1, stdin) != 1) {
                break;
            }
            status |= model_invoke_float(in, out);
            fwrite(out, sizeof out, 1, stdout);
#else
            fputs("model has integer I/O\n", stderr);
            return 2;
#endif
        } else {
            MODEL_INPUT_T in[MODEL_INPUT_LEN];
            MODEL_OUTPUT_T out[MODEL_OUTPUT_LEN];
            if (fread(in, sizeof in, 1, stdin) != 1) {
                break;
            }
            status |= model_invoke(in, out);
            fwrite(out, sizeof out, 1, stdout);
        }
    }
    return status;
}
