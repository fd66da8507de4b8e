/* invoke_stack_probe.c: measures the stack model_invoke needs, on target, by painting.
 *
 * The free stack below the caller is painted, model_invoke runs once on the all-zero
 * observation, and the deepest overwritten word gives the bytes used by the call (the
 * invoke and anything it calls; interrupts are masked so no handler frame is counted).
 * Prints "invoke_stack_bytes N" and "activation_bytes N" through semihosting, exits 0. */
#include <stdint.h>

#include "cortex_m.h"
#include "cpr_runtime.h"
#include "model.h"
#include "platform.h"
#include "semihosting.h"

extern uint32_t __stack_bottom[];
#define PAINT 0x5A5AA5A5u

/* the model's I/O types: int16_t for a 16x8 model, whose buffers are twice as wide */
static MODEL_INPUT_T in[MODEL_INPUT_LEN];
static MODEL_OUTPUT_T out[MODEL_OUTPUT_LEN];

static void put(const char *label, uint32_t v)
{
    char buf[12];
    int n = 0;
    char tmp[11];
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    int i = 0;
    while (n)
        buf[i++] = tmp[--n];
    buf[i] = 0;
    semihost_write(label);
    semihost_write(buf);
    semihost_write("\n");
}

/* noinline: its frame is the caller's frame of model_invoke, as in hil.c's timed_invoke */
__attribute__((noinline)) static uint32_t measure(void)
{
    uint32_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    volatile uint32_t *p = __stack_bottom;
    while ((uint32_t)(uintptr_t)p < sp - 64u)
        *p++ = PAINT;
    model_invoke(in, out);
    const volatile uint32_t *q = __stack_bottom;
    while (*q == PAINT)
        q++;
    return sp - (uint32_t)(uintptr_t)q;
}

int main(void)
{
    irq_disable_all();
    const float zeros[MODEL_INPUT_LEN] = {0};
    cpr_quantize_f32_s8(zeros, MODEL_INPUT_LEN, model_input_scale, model_input_zero_point, in);
    put("invoke_stack_bytes ", measure());
    put("activation_bytes ", MODEL_ACTIVATION_BYTES);
    semihost_exit(0);
}

void uart_on_rx(uint8_t byte) { (void)byte; }
void uart_on_overrun(void) {}
