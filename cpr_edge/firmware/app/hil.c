/* hil.c: request handlers of the HIL protocol. Every handler runs only on a frame whose
 * CRC the parser has verified, and checks the payload size before reading it. */
#include "hil.h"

#include <string.h>

#include "cpr_runtime.h"
#include "model.h"
#include "platform.h"
#include "uart.h"

#if MODEL_INPUT_LEN * 4 > FRAME_MAX_PAYLOAD || MODEL_OUTPUT_LEN * 4 + 4 > FRAME_MAX_PAYLOAD
#error "model input/output do not fit in one frame"
#endif

static MODEL_INPUT_T model_in[MODEL_INPUT_LEN];   /* last INFER input, prescaled and quantised */
static MODEL_OUTPUT_T model_out[MODEL_OUTPUT_LEN];
static uint8_t tx_frame[FRAME_MAX_BYTES];

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v) { put_u16(p, (uint16_t)v); put_u16(p + 2, (uint16_t)(v >> 16)); }
static void put_f32(uint8_t *p, float v) { uint32_t u; memcpy(&u, &v, 4); put_u32(p, u); }
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void send(uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t len)
{
    size_t n = frame_encode(tx_frame, sizeof(tx_frame), type, seq, payload, len);
    uart_write(tx_frame, (uint32_t)n);
}

static void send_error(uint8_t code, uint8_t request_type, uint8_t seq)
{
    uint8_t payload[2] = {code, request_type};
    send(MSG_ERROR, seq, payload, 2);
}

static void on_hello(uint8_t seq)
{
    static const char board_id[] = BOARD_ID;
    static const char fw_version[] = FW_VERSION;
    uint8_t p[64 + sizeof(board_id) + sizeof(fw_version)];
    uint8_t *q = p;
    *q++ = HIL_PROTOCOL_VERSION;
    *q++ = BOARD_COUNTER_UNIT;
    put_u16(q, MODEL_INPUT_LEN), q += 2;
    put_u16(q, MODEL_OUTPUT_LEN), q += 2;
    put_u32(q, BOARD_CLOCK_HZ), q += 4;
    put_f32(q, model_input_scale), q += 4;
    put_u32(q, (uint32_t)model_input_zero_point), q += 4;
    put_f32(q, model_output_scale), q += 4;
    put_u32(q, (uint32_t)model_output_zero_point), q += 4;
    memcpy(q, model_sha256, 32), q += 32;
    *q++ = (uint8_t)(sizeof(board_id) - 1);
    memcpy(q, board_id, sizeof(board_id) - 1), q += sizeof(board_id) - 1;
    *q++ = (uint8_t)(sizeof(fw_version) - 1);
    memcpy(q, fw_version, sizeof(fw_version) - 1), q += sizeof(fw_version) - 1;
    send(MSG_HELLO | MSG_REPLY, seq, p, (uint16_t)(q - p));
}

static uint32_t timed_invoke(void)
{
    uint32_t start = counter_read();
    model_invoke(model_in, model_out);
    uint32_t end = counter_read();
    return counter_elapsed(start, end);
}

static void on_infer(hil_state *s, uint8_t seq, const uint8_t *payload)
{
    float obs[MODEL_INPUT_LEN];
    memcpy(obs, payload, sizeof(obs)); /* little-endian float32, as the core */
    for (uint32_t i = 0; i < MODEL_INPUT_LEN; i++) {
        if (!__builtin_isfinite(obs[i])) {
            send_error(ERR_BAD_VALUE, MSG_INFER, seq);
            return;
        }
    }
    model_encode_input(obs, model_in); /* export.json's prescale, then quantisation */
    uint32_t ticks = timed_invoke();
    s->infers++;
    float action[MODEL_OUTPUT_LEN];
    model_decode_output(model_out, action);
    uint8_t p[MODEL_OUTPUT_LEN * 4 + 4];
    for (uint32_t i = 0; i < MODEL_OUTPUT_LEN; i++)
        put_f32(p + 4 * i, action[i]);
    put_u32(p + 4 * MODEL_OUTPUT_LEN, ticks);
    send(MSG_INFER | MSG_REPLY, seq, p, sizeof(p));
}

static void on_bench(uint8_t seq, const uint8_t *payload)
{
    uint32_t n = get_u32(payload);
    if (n < 1 || n > BENCH_MAX_RUNS) {
        send_error(ERR_BAD_VALUE, MSG_BENCH, seq);
        return;
    }
    uint32_t lo = 0xFFFFFFFFu, hi = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t t = timed_invoke();
        lo = t < lo ? t : lo;
        hi = t > hi ? t : hi;
        total += t;
    }
    uint8_t p[20];
    put_u32(p, n);
    put_u32(p + 4, lo);
    put_u32(p + 8, hi);
    put_u32(p + 12, (uint32_t)total);
    put_u32(p + 16, (uint32_t)(total >> 32));
    send(MSG_BENCH | MSG_REPLY, seq, p, sizeof(p));
}

static void on_stats(hil_state *s, uint8_t seq)
{
    const frame_parser *fp = &s->parser;
    uint32_t v[8] = {stack_size(), stack_used(), s->frames_ok, fp->crc_errors,
                     s->framing_errors + fp->length_errors, fp->timeouts, s->overflows,
                     s->infers};
    uint8_t p[32];
    for (int i = 0; i < 8; i++)
        put_u32(p + 4 * i, v[i]);
    send(MSG_STATS | MSG_REPLY, seq, p, sizeof(p));
}

/* Expected payload size of each request type, -1 for a type that is not a request. */
static int32_t request_len(uint8_t type)
{
    switch (type) {
    case MSG_HELLO: case MSG_STATS: case MSG_RESET: return 0;
    case MSG_INFER: return 4 * MODEL_INPUT_LEN;
    case MSG_BENCH: return 4;
    default: return -1;
    }
}

static void on_frame(void *ctx, const frame *f)
{
    hil_state *s = ctx;
    int32_t want = request_len(f->type);
    if (want < 0) {
        s->framing_errors++;
        send_error(ERR_UNKNOWN_TYPE, f->type, f->seq);
        return;
    }
    if (f->len != (uint32_t)want) {
        s->framing_errors++;
        send_error(ERR_BAD_LENGTH, f->type, f->seq);
        return;
    }
    s->frames_ok++;
    switch (f->type) {
    case MSG_HELLO: on_hello(f->seq); break;
    case MSG_INFER: on_infer(s, f->seq, f->payload); break;
    case MSG_BENCH: on_bench(f->seq, f->payload); break;
    case MSG_STATS: on_stats(s, f->seq); break;
    case MSG_RESET:
        send(MSG_RESET | MSG_REPLY, f->seq, 0, 0);
        uart_flush();
        system_reset();
    }
}

static void on_error(void *ctx, uint8_t code, uint8_t type, uint8_t seq)
{
    (void)ctx;
    send_error(code, type, seq);
}

void hil_init(hil_state *s)
{
    memset(s, 0, sizeof(*s));
    frame_parser_init(&s->parser, on_frame, on_error, s);
    /* BENCH before any INFER runs on the all-zero observation (prescaled like any other) */
    const float zeros[MODEL_INPUT_LEN] = {0};
    model_encode_input(zeros, model_in);
}
