/* test_on_target.c: unit tests that run on the emulated board and report through
 * semihosting; the exit status is the number of failed checks (0 = all passed).
 *
 * Covers the pieces whose behaviour on the real core matters: CRC and frame parser (same
 * code as the host fuzz build, here compiled for Thumb-2), the RX ring buffer, the stack
 * painting, and the instruction counter's calibration against a loop of known length. */
#include <stdint.h>
#include <string.h>

#include "cortex_m.h"
#include "crc16.h"
#include "frame_parser.h"
#include "platform.h"
#include "ring_buffer.h"
#include "semihosting.h"

static int failures;

static void put_uint(char *buf, uint32_t v)
{
    char tmp[11];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n)
        *buf++ = tmp[--n];
    *buf = 0;
}

static void check(int ok, const char *what)
{
    semihost_write(ok ? "ok   " : "FAIL ");
    semihost_write(what);
    semihost_write("\n");
    if (!ok)
        failures++;
}

static void report(const char *what, uint32_t v)
{
    char num[12];
    put_uint(num, v);
    semihost_write(what);
    semihost_write(num);
    semihost_write("\n");
}

/* ---- frame parser harness ---------------------------------------------------------- */
static struct {
    int frames, errors;
    uint8_t type, seq, err_code;
    uint16_t len;
    uint8_t payload[FRAME_MAX_PAYLOAD];
} seen;

static void on_frame(void *ctx, const frame *f)
{
    seen.frames++;
    seen.type = f->type;
    seen.seq = f->seq;
    seen.len = f->len;
    memcpy(seen.payload, f->payload, f->len);
}

static void on_error(void *ctx, uint8_t code, uint8_t type, uint8_t seq)
{
    seen.errors++;
    seen.err_code = code;
}

static void feed(frame_parser *p, const uint8_t *data, size_t n, uint32_t now)
{
    for (size_t i = 0; i < n; i++)
        frame_parser_feed(p, data[i], now);
}

static void test_crc(void)
{
    check(crc16_update(CRC16_INIT, (const uint8_t *)"123456789", 9) == 0x29B1, "crc16 check value 0x29B1");
    check(crc16_update(CRC16_INIT, 0, 0) == 0xFFFF, "crc16 of nothing is the initial value");
}

static void test_parser(void)
{
    static frame_parser p;
    static uint8_t buf[FRAME_MAX_BYTES * 2];
    uint8_t payload[8] = {1, 2, 3, 4, 5, 6, 7, 8};

    memset(&seen, 0, sizeof(seen));
    frame_parser_init(&p, on_frame, on_error, 0);
    size_t n = frame_encode(buf, sizeof(buf), 0x02, 7, payload, 8);
    check(n == 15, "encode: 5 + 8 + 2 bytes");
    feed(&p, buf, n, 0);
    check(seen.frames == 1 && seen.type == 0x02 && seen.seq == 7 && seen.len == 8 &&
              memcmp(seen.payload, payload, 8) == 0, "a valid frame is delivered intact");

    /* garbage (including stray syncs) before a frame */
    memset(&seen, 0, sizeof(seen));
    const uint8_t junk[] = {0x00, 0xA5, 0xFF, 0x13};
    feed(&p, junk, sizeof(junk), 0);
    feed(&p, buf, n, 0);
    frame_parser_poll(&p, 1000);
    check(seen.frames == 1, "resynchronises after garbage containing a sync byte");

    /* corrupt CRC: error, no frame; the next good frame still gets through */
    memset(&seen, 0, sizeof(seen));
    buf[7] ^= 0x40;
    feed(&p, buf, n, 2000);
    check(seen.frames == 0 && seen.errors == 1 && seen.err_code == FRAME_ERR_BAD_CRC,
          "a corrupted frame is reported BAD_CRC and not delivered");
    buf[7] ^= 0x40;
    feed(&p, buf, n, 2000);
    check(seen.frames == 1, "the next frame after a bad CRC is delivered");

    /* oversized length */
    memset(&seen, 0, sizeof(seen));
    const uint8_t big[] = {0xA5, 0x02, 1, 0x01, 0x02}; /* len 513 */
    feed(&p, big, sizeof(big), 3000);
    check(seen.errors == 1 && seen.err_code == FRAME_ERR_BAD_LENGTH, "len > 512 is BAD_LENGTH");
    feed(&p, buf, n, 3000);
    check(seen.frames == 1, "a frame right after a bad length is delivered");

    /* truncated frame: abandoned after the stall time, then a frame hidden inside is found */
    memset(&seen, 0, sizeof(seen));
    const uint8_t head[] = {0xA5, 0x01, 9, 0x40, 0x00}; /* promises 64 bytes */
    feed(&p, head, sizeof(head), 4000);
    feed(&p, buf, n, 4000);
    check(seen.frames == 0, "a frame inside an unfinished candidate waits");
    frame_parser_poll(&p, 4000 + FRAME_STALL_MS);
    check(seen.frames == 0 && p.timeouts == 0, "no timeout at exactly the stall time");
    frame_parser_poll(&p, 4000 + FRAME_STALL_MS + 1);
    check(p.timeouts == 1 && seen.frames == 1 && p.n == 0,
          "stall: candidate abandoned, the hidden frame recovered");

    /* maximum payload */
    static uint8_t maxp[FRAME_MAX_PAYLOAD];
    for (unsigned i = 0; i < sizeof(maxp); i++)
        maxp[i] = (uint8_t)(i * 7u);
    memset(&seen, 0, sizeof(seen));
    n = frame_encode(buf, sizeof(buf), 0x02, 200, maxp, FRAME_MAX_PAYLOAD);
    check(n == FRAME_MAX_BYTES, "encode: maximum frame is 519 bytes");
    feed(&p, buf, n, 5000);
    check(seen.frames == 1 && seen.len == FRAME_MAX_PAYLOAD &&
              memcmp(seen.payload, maxp, sizeof(maxp)) == 0, "a 512-byte payload is delivered");
    check(frame_encode(buf, sizeof(buf), 1, 1, maxp, FRAME_MAX_PAYLOAD + 1) == 0,
          "encode refuses a payload over 512 bytes");
}

static void test_ring(void)
{
    static ring_buffer r;
    ring_init(&r);
    uint32_t pushed = 0;
    while (ring_push(&r, (uint8_t)pushed))
        pushed++;
    check(pushed == RING_BUFFER_SIZE, "ring holds exactly its size");
    uint8_t b;
    int in_order = 1;
    for (uint32_t i = 0; i < pushed; i++)
        in_order &= ring_pop(&r, &b) && b == (uint8_t)i;
    check(in_order && !ring_pop(&r, &b), "ring returns bytes in order, then reports empty");
}

static void test_stack(void)
{
    uint32_t used = stack_used();
    report("stack_size ", stack_size());
    report("stack_used ", used);
    check(used > 0 && used < stack_size(), "stack high-water mark is within the stack");
}

/* 2 instructions per iteration (subs, bne): the counter must report ~2 per iteration. */
static void test_counter(void)
{
    const uint32_t iterations = 200000;
    uint32_t start = counter_read();
    register uint32_t r0 __asm("r0") = iterations;
#if defined(__ARM_ARCH_6M__)
    /* GCC hands ARMv6-M inline assembly to gas in divided syntax, where the 16-bit SUB sets the flags */
    __asm volatile("1: sub %0, #1\n bne 1b" : "+r"(r0) :: "cc");
#else
    __asm volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(r0) :: "cc");
#endif
    uint32_t elapsed = counter_elapsed(start, counter_read());
    report("loop_counter ", elapsed);
#if BOARD_COUNTER_UNIT == 1
    uint32_t expected = 2u * iterations;
    check(elapsed > expected - expected / 50u && elapsed < expected + expected / 50u,
          "instruction counter: a 2-instruction loop counts 2 per iteration (+-2%)");
#else
    check(elapsed >= 2u * iterations, "cycle counter runs");
#endif
}

int main(void)
{
    platform_init();
    irq_enable_all();
    test_crc();
    test_parser();
    test_ring();
    test_stack();
    test_counter();
    report("failures ", (uint32_t)failures);
    semihost_exit(failures);
}

/* the UART driver is linked but unused here */
void uart_on_rx(uint8_t byte) {}
void uart_on_overrun(void) {}
