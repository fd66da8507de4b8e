/* hil.h: the board side of the HIL protocol (docs/protocol.md): turns validated frames into
 * replies. Frame reception itself is frame_parser.c. */
#ifndef HIL_H
#define HIL_H

#include <stdint.h>

#include "frame_parser.h"

#define HIL_PROTOCOL_VERSION 2u

enum {
    MSG_HELLO = 0x01,
    MSG_INFER = 0x02,   /* float32 raw observation: the board prescales and quantises */
    MSG_BENCH = 0x03,
    MSG_STATS = 0x04,
    MSG_RESET = 0x05,
    MSG_INFER_Q = 0x06, /* MODEL_INPUT_T observation, prescaled and quantised by the host */
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
    uint32_t infers;         /* model invocations for INFER / INFER_Q (replays excluded) */
    uint32_t replays;        /* INFER replies re-sent for a repeated request */
    uint32_t boot_id;        /* set by HELLO; 0 after every boot (.bss) */
    /* the last INFER / INFER_Q answered (its request and reply bytes are in hil.c): replayed,
     * not recomputed, when the host repeats it with the same seq and payload */
    uint8_t last_type;       /* 0: none */
    uint8_t last_seq;
} hil_state;

void hil_init(hil_state *s);

#endif /* HIL_H */
