/* hil.h: the board side of the HIL protocol (docs/protocol.md): turns validated frames into
 * replies. Frame reception itself is frame_parser.c. */
#ifndef HIL_H
#define HIL_H

#include <stdint.h>

#include "frame_parser.h"

#define HIL_PROTOCOL_VERSION 1u

enum {
    MSG_HELLO = 0x01,
    MSG_INFER = 0x02,
    MSG_BENCH = 0x03,
    MSG_STATS = 0x04,
    MSG_RESET = 0x05,
    MSG_ERROR = 0x7F,
    MSG_REPLY = 0x80,
};

enum {
    ERR_BAD_CRC = 1,
    ERR_BAD_LENGTH = 2,
    ERR_UNKNOWN_TYPE = 3,
    ERR_BAD_VALUE = 4,
};

#define BENCH_MAX_RUNS 100000u

typedef struct {
    frame_parser parser;
    uint32_t frames_ok;      /* requests acted upon */
    uint32_t framing_errors; /* bad length, unknown type, wrong payload size */
    volatile uint32_t overflows; /* received bytes lost (queue full or UART overrun); ISR */
    uint32_t infers;
} hil_state;

void hil_init(hil_state *s);

#endif /* HIL_H */
