/* frame_parser.c: see frame_parser.h.
 *
 * The parser keeps the bytes of the current candidate frame, starting at a sync byte. When
 * the candidate turns out bad (len > 512, CRC mismatch, stall), the protocol says the search
 * for the next sync resumes at the byte after the failed sync, so a real frame hidden inside
 * garbage is still found: the candidate's first byte is dropped and the rest is examined
 * again from the start. Each failure removes at least one byte, so the work per received
 * byte is bounded by the buffer size (519 bytes). */
#include "frame_parser.h"

#include <string.h>

#include "crc16.h"

void frame_parser_init(frame_parser *p, frame_handler on_frame, frame_error_handler on_error,
                       void *ctx)
{
    memset(p, 0, sizeof(*p));
    p->on_frame = on_frame;
    p->on_error = on_error;
    p->ctx = ctx;
}

/* Removes the first `k` bytes of the candidate, then any bytes before the next sync. */
static void drop_front(frame_parser *p, uint16_t k)
{
    while (k < p->n && p->buf[k] != FRAME_SYNC) {
        k++;
        p->discarded++;
    }
    p->n = (uint16_t)(p->n - k);
    memmove(p->buf, p->buf + k, p->n);
}

static uint16_t header_len(const frame_parser *p) { return (uint16_t)(p->buf[3] | (p->buf[4] << 8)); }

/* Acts on everything the buffer holds now: complete frames, bad lengths, bad CRCs. */
static void process(frame_parser *p)
{
    while (p->n >= FRAME_HEADER_BYTES) {
        uint16_t len = header_len(p);
        uint16_t limit = p->max_len ? p->max_len(p->ctx, p->buf[1]) : FRAME_MAX_PAYLOAD;
        if (len > FRAME_MAX_PAYLOAD || len > limit) {
            p->length_errors++;
            if (p->on_error)
                p->on_error(p->ctx, FRAME_ERR_BAD_LENGTH, p->buf[1], p->buf[2]);
            drop_front(p, 1);
            continue;
        }
        uint16_t total = (uint16_t)(FRAME_HEADER_BYTES + len + FRAME_CRC_BYTES);
        if (p->n < total)
            return; /* wait for more bytes */
        uint16_t body = (uint16_t)(FRAME_HEADER_BYTES + len);
        uint16_t crc_rx = (uint16_t)(p->buf[body] | (p->buf[body + 1] << 8));
        if (crc16_update(CRC16_INIT, p->buf, body) == crc_rx) {
            p->frames++;
            frame f = {p->buf[1], p->buf[2], len, p->buf + FRAME_HEADER_BYTES};
            if (p->on_frame)
                p->on_frame(p->ctx, &f);
            drop_front(p, total);
        } else {
            p->crc_errors++;
            if (p->on_error)
                p->on_error(p->ctx, FRAME_ERR_BAD_CRC, p->buf[1], p->buf[2]);
            drop_front(p, 1);
        }
    }
}

void frame_parser_set_length_limit(frame_parser *p, frame_length_limit max_len)
{
    p->max_len = max_len;
}

void frame_parser_feed(frame_parser *p, uint8_t byte, uint32_t now_ms)
{
    if (p->n == 0 && byte != FRAME_SYNC) {
        p->discarded++;
        return;
    }
    /* process() leaves at most total - 1 <= FRAME_MAX_BYTES - 1 bytes behind */
    p->buf[p->n++] = byte;
    p->last_byte_ms = now_ms;
    process(p);
}

void frame_parser_poll(frame_parser *p, uint32_t now_ms)
{
    if (p->n == 0 || (uint32_t)(now_ms - p->last_byte_ms) <= FRAME_STALL_MS)
        return;
    /* Every byte held is stale: rescan them for complete frames, abandon what stays partial. */
    p->timeouts++;
    while (p->n > 0) {
        drop_front(p, 1);
        process(p);
    }
}

size_t frame_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t seq, const uint8_t *payload,
                    uint16_t len)
{
    size_t total = FRAME_HEADER_BYTES + (size_t)len + FRAME_CRC_BYTES;
    if (len > FRAME_MAX_PAYLOAD || total > cap)
        return 0;
    out[0] = FRAME_SYNC;
    out[1] = type;
    out[2] = seq;
    out[3] = (uint8_t)(len & 0xFFu);
    out[4] = (uint8_t)(len >> 8);
    if (len)
        memmove(out + FRAME_HEADER_BYTES, payload, len);
    uint16_t crc = crc16_update(CRC16_INIT, out, FRAME_HEADER_BYTES + len);
    out[FRAME_HEADER_BYTES + len] = (uint8_t)(crc & 0xFFu);
    out[FRAME_HEADER_BYTES + len + 1] = (uint8_t)(crc >> 8);
    return total;
}
