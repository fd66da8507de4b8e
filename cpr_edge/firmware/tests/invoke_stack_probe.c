/* invoke_stack_probe.c: measures, on target, by painting, the stack model_invoke needs and
 * the stack of the HIL firmware's request handling (cpr_edge.firmware_build.stack sizes the
 * HIL image's stack from both).
 *
 * 1. The free stack below the caller is painted, model_invoke runs once on the all-zero
 *    observation with interrupts masked, and the deepest overwritten word gives the bytes
 *    used by the call (the invoke and anything it calls).
 * 2. The stack is painted again and the real request handlers of app/hil.c get one frame of
 *    every request type through the real frame parser, as main.c hands them over: HELLO,
 *    INFER (float observation: prescale, quantise, invoke, dequantise), INFER_Q, its replay,
 *    BENCH, STATS, and the error paths (bad length, unknown type, bad CRC). The replies go
 *    out through the board's UART driver (QEMU runs it with -serial none). The deepest word
 *    overwritten, counted from the top of the stack, is the HIL app's stack with the invoke
 *    at the depth where the firmware calls it; SysTick runs meanwhile, so a tick that lands
 *    during the handling is counted too (the UART interrupt is not: no byte arrives).
 * Prints "invoke_stack_bytes N", "hil_stack_bytes N" and "activation_bytes N" through
 * semihosting, exits 0. */
#include <stdint.h>
#include <string.h>

#include "cortex_m.h"
#include "cpr_runtime.h"
#include "frame_parser.h"
#include "hil.h"
#include "model.h"
#include "platform.h"
#include "semihosting.h"
#include "uart.h"

extern uint32_t __stack_bottom[], __stack_top[];
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

static hil_state hil;
static uint8_t frame_buf[FRAME_MAX_BYTES];

/* One frame of `type` with `len` bytes of `payload`, fed byte by byte; `corrupt` flips a
 * CRC bit. */
static void feed(uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t len, int corrupt)
{
    size_t n = frame_encode(frame_buf, sizeof(frame_buf), type, seq, payload, len);
    if (corrupt)
        frame_buf[n - 1] ^= 1u;
    for (size_t i = 0; i < n; i++)
        frame_parser_feed(&hil.parser, frame_buf[i], timebase_ms());
}

__attribute__((noinline)) static uint32_t measure_hil(void)
{
    uint32_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    volatile uint32_t *p = __stack_bottom;
    while ((uint32_t)(uintptr_t)p < sp - 64u)
        *p++ = PAINT;
    /* zeros: a valid observation and boot id; const, in flash, so that the probe's .bss
     * stays below the HIL image's (whose free RAM is the probe's stack) */
    static const uint8_t payload[MODEL_INPUT_LEN * 4] = {0};
    const uint8_t bench_one[4] = {1, 0, 0, 0};
    const uint16_t infer_len = (uint16_t)(MODEL_INPUT_LEN * 4);
    const uint16_t infer_q_len = (uint16_t)(MODEL_INPUT_LEN * sizeof(MODEL_INPUT_T));
    feed(MSG_HELLO, 1, payload, 4, 0);
    feed(MSG_INFER, 2, payload, infer_len, 0);
    feed(MSG_INFER_Q, 3, payload, infer_q_len, 0);
    feed(MSG_INFER_Q, 3, payload, infer_q_len, 0); /* the same again: replayed */
    feed(MSG_BENCH, 4, bench_one, 4, 0);
    feed(MSG_STATS, 5, payload, 0, 0);
    feed(MSG_INFER, 6, payload, (uint16_t)(infer_len - 1), 0); /* BAD_LENGTH */
    feed(0x09, 7, payload, 0, 0);                              /* UNKNOWN_TYPE */
    feed(MSG_HELLO, 8, payload, 4, 1);                         /* BAD_CRC */
    uart_flush();
    const volatile uint32_t *q = __stack_bottom;
    while (*q == PAINT)
        q++;
    return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)q);
}

int main(void)
{
    irq_disable_all();
    const float zeros[MODEL_INPUT_LEN] = {0};
    model_encode_input(zeros, in);
    put("invoke_stack_bytes ", measure());
    /* as main.c starts the HIL app */
    hil_init(&hil);
    platform_init();
    uart_init();
    irq_enable_all();
    const uint32_t hil_bytes = measure_hil();
    irq_disable_all();
    put("hil_stack_bytes ", hil_bytes);
    put("frames_ok ", hil.frames_ok);
    put("activation_bytes ", MODEL_ACTIVATION_BYTES);
    semihost_exit(0);
}

void uart_on_rx(uint8_t byte) { (void)byte; }
void uart_on_overrun(void) { hil.overflows++; }
