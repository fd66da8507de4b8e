/* frame_parser.h: receiver for the HIL frame format of docs/protocol.md.
 *
 *   sync(0xA5) type seq len(u16 LE) payload[len] crc(u16 LE, CRC-16/CCITT-FALSE of the rest)
 *
 * Pure C with no hardware access, so the very same code is fuzzed on the host under
 * ASan/UBSan (benchmarks/fuzz_frame_parser.py) and unit-tested on target.
 * Bytes go in one at a time; complete, CRC-checked frames and receive errors come out
 * through two callbacks. Nothing is reported as a frame before its CRC has been verified.
 */
#ifndef FRAME_PARSER_H
#define FRAME_PARSER_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_SYNC 0xA5u
#define FRAME_HEADER_BYTES 5u
#define FRAME_CRC_BYTES 2u
#define FRAME_MAX_PAYLOAD 512u
#define FRAME_MAX_BYTES (FRAME_HEADER_BYTES + FRAME_MAX_PAYLOAD + FRAME_CRC_BYTES)
#define FRAME_STALL_MS 50u

/* Receive errors reported through on_error (the same numbers as the protocol's ERROR codes). */
#define FRAME_ERR_BAD_CRC 1u
#define FRAME_ERR_BAD_LENGTH 2u

typedef struct {
    uint8_t type;
    uint8_t seq;
    uint16_t len;
    const uint8_t *payload; /* valid only during the on_frame call */
} frame;

typedef void (*frame_handler)(void *ctx, const frame *f);
/* The longest payload the receiver accepts for a frame type (at most FRAME_MAX_PAYLOAD). */
typedef uint16_t (*frame_length_limit)(void *ctx, uint8_t type);
typedef void (*frame_error_handler)(void *ctx, uint8_t code, uint8_t type, uint8_t seq);

typedef struct {
    uint8_t buf[FRAME_MAX_BYTES]; /* the candidate frame, buf[0] == FRAME_SYNC when n > 0 */
    uint16_t n;                   /* bytes held in buf */
    uint32_t last_byte_ms;        /* arrival time of buf[n - 1] */
    frame_handler on_frame;
    frame_error_handler on_error;
    frame_length_limit max_len; /* NULL: FRAME_MAX_PAYLOAD for every type */
    void *ctx;
    /* counters */
    uint32_t frames;     /* frames that passed the CRC */
    uint32_t crc_errors; /* complete frames with a bad CRC */
    uint32_t length_errors; /* headers whose len exceeds the type's limit */
    uint32_t timeouts;   /* candidate frames abandoned after FRAME_STALL_MS of silence */
    uint32_t discarded;  /* bytes dropped while searching for a sync */
} frame_parser;

void frame_parser_init(frame_parser *p, frame_handler on_frame, frame_error_handler on_error,
                       void *ctx);

/* A header whose len exceeds max_len(ctx, type) is refused as soon as it is complete
 * (BAD_LENGTH), as one over FRAME_MAX_PAYLOAD is: a header damaged in transit (a lost byte
 * shifts the payload into len) would otherwise hold the candidate open and swallow the frames
 * that follow, up to 519 bytes of them. */
void frame_parser_set_length_limit(frame_parser *p, frame_length_limit max_len);

/* Feeds one received byte; may call on_frame / on_error (several times, after a resync). */
void frame_parser_feed(frame_parser *p, uint8_t byte, uint32_t now_ms);

/* Abandons a candidate frame whose bytes stopped arriving more than FRAME_STALL_MS ago. */
void frame_parser_poll(frame_parser *p, uint32_t now_ms);

/* Writes a complete frame into out (capacity cap). Returns its size, or 0 if it does not fit
 * or len exceeds FRAME_MAX_PAYLOAD. */
size_t frame_encode(uint8_t *out, size_t cap, uint8_t type, uint8_t seq, const uint8_t *payload,
                    uint16_t len);

#endif /* FRAME_PARSER_H */
