/* fuzz_hil.c: host harness running the HIL firmware itself, built with
 * -fsanitize=address,undefined by cpr_edge.firmware_build.fuzz_hil: app/main.c (the UART receive queue
 * of ring_buffer.h and its interrupt callback, the main loop), the frame parser, the message
 * handlers of app/hil.c and the generated model with its kernels. Only the hardware is
 * replaced: host/cortex_m.h turns WFI into a call to this harness, and this file provides the
 * platform (clock, counter, stack figures, reset) and the UART.
 *
 * stdin is a sequence of records: u8 kind, u16 length (little endian), then
 *   kind 0: `length` bytes arriving while the core sleeps (all at once through uart_on_rx:
 *           more than the queue holds are lost, as on the board);
 *   kind 1: the clock advances by `length` ms;
 *   kind 2: `length` bytes arriving while the core is busy with the next request: delivered
 *           BUSY_BURST at a time from inside the handlers (each invoke counter read and each
 *           transmitted reply), the rest at the next WFI.
 * One record is consumed per WFI (kind 2 records are consumed together with the record after).
 * Every transmitted reply is checked independently: one whole frame (bitwise CRC, length), a
 * reply type with exactly its payload size, or ERROR with a known code; INFER / INFER_Q /
 * STATS replies carry the boot id of the last HELLO (0 after a reset), a HELLO reply names
 * the previous one. A HELLO reply whose boot id is 0x4D000000 | id prints "marker id".
 * The last line holds the counters. Exit status 1 on a violated invariant. */
#undef main /* the build renames app/main.c's main to firmware_main */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame_parser.h"
#include "hil.h"
#include "model.h"
#include "platform.h"
#include "uart.h"

#define BUSY_BURST 256u
#define MARKER_TAG 0x4D000000u

int firmware_main(void);

static uint32_t now_ms;
static jmp_buf reset_point;
static uint8_t busy[65536];
static size_t busy_n, busy_pos;
static uint32_t boot_id; /* what the board's replies must carry */
static unsigned long violations, resets, replies[256], errors[8], infer_replies, stats_replies;
static unsigned long overflows_seen, replays_seen, bench_replies;
static uint32_t boot_overflows, boot_replays; /* the latest STATS figures of this boot */

static void violation(const char *what, const uint8_t *f, uint32_t n)
{
    violations++;
    fprintf(stderr, "violation: %s (reply of %u bytes, type 0x%02x)\n", what, n, n > 1 ? f[1] : 0);
}

static uint16_t crc_bitwise(const uint8_t *d, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(d[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void deliver(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        uart_on_rx(d[i]); /* the UART interrupt of main.c */
}

/* The interrupt firing while the core works on a request. */
static void busy_interrupts(void)
{
    size_t k = busy_n - busy_pos < BUSY_BURST ? busy_n - busy_pos : BUSY_BURST;
    deliver(busy + busy_pos, k);
    busy_pos += k;
}

static int read_exact(uint8_t *dst, size_t n)
{
    return fread(dst, 1, n, stdin) == n;
}

static void finish(void)
{
    printf("counters violations %lu resets %lu hello %lu infer %lu bench %lu stats %lu reset %lu "
           "bad_crc %lu bad_length %lu unknown_type %lu bad_value %lu overflows %lu replays %lu\n",
           violations, resets, replies[MSG_HELLO | MSG_REPLY], infer_replies, bench_replies,
           stats_replies, replies[MSG_RESET | MSG_REPLY], errors[1], errors[2], errors[3],
           errors[4], overflows_seen + boot_overflows, replays_seen + boot_replays);
    fflush(stdout);
    exit(violations ? 1 : 0);
}

void host_wait_for_interrupt(void)
{
    static uint8_t chunk[65536];
    if (busy_pos < busy_n) { /* what arrived during the last request and is not in yet */
        deliver(busy + busy_pos, busy_n - busy_pos);
        busy_pos = busy_n;
        return;
    }
    for (;;) {
        uint8_t head[3];
        if (!read_exact(head, 3))
            finish();
        size_t len = (size_t)head[1] | (size_t)head[2] << 8;
        if (head[0] == 1) {
            now_ms += (uint32_t)len;
            return;
        }
        if (!read_exact(head[0] == 2 ? busy : chunk, len)) {
            fprintf(stderr, "truncated record\n");
            exit(2);
        }
        if (head[0] == 2) {
            busy_n = len, busy_pos = 0;
            continue; /* armed: the next record's request will be busy */
        }
        deliver(chunk, len);
        return;
    }
}

/* ---- platform.h on the host ---------------------------------------------------------- */
void timebase_init(void) {}
uint64_t timebase_ticks(void) { return (uint64_t)now_ms * (BOARD_CLOCK_HZ / 1000u); }
uint32_t timebase_ms(void) { return now_ms; }
void counter_init(void) {}
uint32_t counter_read(void)
{
    static uint32_t t;
    busy_interrupts();
    return t += 1000u;
}
uint32_t counter_elapsed(uint32_t start, uint32_t end) { return end - start; }
void stack_paint(void) {}
uint32_t stack_size(void) { return 8192u; }
uint32_t stack_used(void) { return 1024u; }
void platform_init(void) {}

void system_reset(void)
{
    resets++;
    boot_id = 0; /* .bss cleared by the reset */
    overflows_seen += boot_overflows, replays_seen += boot_replays;
    boot_overflows = boot_replays = 0;
    longjmp(reset_point, 1);
}

/* ---- uart.h on the host: every reply checked ------------------------------------------ */
void uart_init(void) {}
void uart_flush(void) {}
void uart_irq_handler(void) {}

static void check_reply(const uint8_t *f, uint32_t n)
{
    if (n < FRAME_HEADER_BYTES + FRAME_CRC_BYTES || f[0] != FRAME_SYNC)
        return violation("not a frame", f, n);
    uint32_t len = (uint32_t)f[3] | (uint32_t)f[4] << 8;
    if (len > FRAME_MAX_PAYLOAD || n != len + FRAME_HEADER_BYTES + FRAME_CRC_BYTES)
        return violation("length field", f, n);
    if (crc_bitwise(f, n - 2) != (uint16_t)(f[n - 2] | f[n - 1] << 8))
        return violation("CRC", f, n);
    const uint8_t *p = f + FRAME_HEADER_BYTES;
    uint8_t type = f[1];
    replies[type]++;
    switch (type) {
    case MSG_ERROR:
        if (len != 2 || p[0] < 1 || p[0] > 4)
            return violation("ERROR payload", f, n);
        errors[p[0]]++;
        return;
    case MSG_HELLO | MSG_REPLY: {
        if (len < 73 || len != 73u + p[71] + p[72 + p[71]])
            return violation("HELLO reply size", f, n);
        if (p[0] != HIL_PROTOCOL_VERSION || p[58] != sizeof(MODEL_INPUT_T))
            return violation("HELLO protocol or element size", f, n);
        if (le32(p + 63) != boot_id)
            return violation("HELLO previous boot id", f, n);
        boot_id = le32(p + 59);
        if ((boot_id & 0xFF000000u) == MARKER_TAG)
            printf("marker %u\n", boot_id & 0x00FFFFFFu);
        return;
    }
    case MSG_INFER | MSG_REPLY:
    case MSG_INFER_Q | MSG_REPLY:
        if (len != 4u * MODEL_OUTPUT_LEN + 8u)
            return violation("INFER reply size", f, n);
        if (le32(p + len - 4) != boot_id)
            return violation("INFER reply boot id", f, n);
        infer_replies++;
        return;
    case MSG_BENCH | MSG_REPLY:
        if (len != 20 || le32(p) < 1 || le32(p) > BENCH_MAX_RUNS || le32(p + 4) > le32(p + 8))
            return violation("BENCH reply", f, n);
        bench_replies++;
        return;
    case MSG_STATS | MSG_REPLY:
        if (len != 44 || le32(p + 36) != boot_id)
            return violation("STATS reply size or boot id", f, n);
        boot_overflows = le32(p + 24), boot_replays = le32(p + 32);
        stats_replies++;
        return;
    case MSG_RESET | MSG_REPLY:
        if (len != 0)
            return violation("RESET reply size", f, n);
        return;
    default:
        return violation("unknown reply type", f, n);
    }
}

void uart_write(const uint8_t *data, uint32_t n)
{
    check_reply(data, n); /* hil.c sends each reply in one call */
    busy_interrupts();
}

int main(void)
{
    setjmp(reset_point); /* a RESET request comes back here: the firmware boots again */
    firmware_main();
    return 3; /* the main loop never returns */
}
