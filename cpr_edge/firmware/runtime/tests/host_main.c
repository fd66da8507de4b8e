/* Host test harness: runs the generated model on a batch of inputs.
 * stdin: int8 inputs, MODEL_INPUT_LEN bytes each (or float32 with argument "float");
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
            fputs("model has int8 I/O\n", stderr);
            return 2;
#endif
        } else {
            int8_t in[MODEL_INPUT_LEN], out[MODEL_OUTPUT_LEN];
            if (fread(in, sizeof in, 1, stdin) != 1) {
                break;
            }
            status |= model_invoke(in, out);
            fwrite(out, sizeof out, 1, stdout);
        }
    }
    return status;
}
