/* fuzz_frame_parser.c: host harness feeding a byte stream to the firmware's frame parser,
 * built with -fsanitize=address,undefined by cpr_edge.firmware_build.fuzz.
 *
 * stdin is a sequence of records: u8 kind, u16 length (little endian), then
 *   kind 0: `length` bytes fed to the parser one by one (the clock does not move);
 *   kind 1: the clock advances by `length` ms, then the parser is polled.
 * Every delivered frame is checked independently (bitwise CRC, length bound); frames of
 * type 0x42 are markers whose payload is a u32 id, printed one per line as "marker ID".
 * The last line holds the counters. Exit status 1 on a violated invariant. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame_parser.h"

#define MARKER_TYPE 0x42

static unsigned long delivered, errors_reported, violations;

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

static void on_frame(void *ctx, const frame *f)
{
    const frame_parser *p = ctx;
    delivered++;
    /* the frame bytes are still at the start of the parser's buffer */
    size_t body = FRAME_HEADER_BYTES + f->len;
    uint16_t crc_rx = (uint16_t)(p->buf[body] | (p->buf[body + 1] << 8));
    if (f->len > FRAME_MAX_PAYLOAD || p->buf[0] != FRAME_SYNC || f->payload != p->buf + 5 ||
        crc_bitwise(p->buf, body) != crc_rx) {
        violations++;
        fprintf(stderr, "invalid frame delivered (len %u)\n", f->len);
    }
    if (f->type == MARKER_TYPE && f->len == 4) {
        unsigned id = (unsigned)f->payload[0] | (unsigned)f->payload[1] << 8 |
                      (unsigned)f->payload[2] << 16 | (unsigned)f->payload[3] << 24;
        printf("marker %u\n", id);
    }
}

static void on_error(void *ctx, uint8_t code, uint8_t type, uint8_t seq)
{
    errors_reported++;
    if (code != FRAME_ERR_BAD_CRC && code != FRAME_ERR_BAD_LENGTH)
        violations++;
}

int main(void)
{
    static frame_parser p;
    static uint8_t chunk[65536];
    uint32_t now = 0;
    frame_parser_init(&p, on_frame, on_error, &p);
    for (;;) {
        uint8_t head[3];
        if (fread(head, 1, 3, stdin) != 3)
            break;
        size_t len = (size_t)head[1] | (size_t)head[2] << 8;
        if (head[0] == 0) {
            if (fread(chunk, 1, len, stdin) != len) {
                fprintf(stderr, "truncated record\n");
                return 2;
            }
            for (size_t i = 0; i < len; i++) {
                frame_parser_feed(&p, chunk[i], now);
                if (p.n > FRAME_MAX_BYTES || (p.n > 0 && p.buf[0] != FRAME_SYNC))
                    violations++;
            }
        } else {
            now += (uint32_t)len;
            frame_parser_poll(&p, now);
        }
    }
    printf("counters delivered %lu errors %lu crc %u length %u timeouts %u discarded %u violations %lu\n",
           delivered, errors_reported, p.crc_errors, p.length_errors, p.timeouts, p.discarded,
           violations);
    return violations ? 1 : 0;
}
