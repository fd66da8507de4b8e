/* hil.c: request handlers of the HIL protocol. Every handler runs only on a frame whose
 * CRC the parser has verified, and checks the payload size before reading it. */
#include "hil.h"

#include <string.h>

#include "cpr_runtime.h"
#include "model.h"
#include "platform.h"
#include "uart.h"

#define INFER_REPLY_BYTES (MODEL_OUTPUT_LEN * 4 + 8) /* actions, invoke count, boot id */
#define INFER_FLOAT_BYTES (MODEL_INPUT_LEN * 4)
#define INFER_Q_BYTES (MODEL_INPUT_LEN * (int32_t)sizeof(MODEL_INPUT_T))

#if INFER_FLOAT_BYTES > FRAME_MAX_PAYLOAD || INFER_REPLY_BYTES > FRAME_MAX_PAYLOAD
#error "model input/output do not fit in one frame"
#endif

static MODEL_INPUT_T model_in[MODEL_INPUT_LEN];   /* last INFER input, prescaled and quantised */
static MODEL_OUTPUT_T model_out[MODEL_OUTPUT_LEN];
static uint8_t tx_frame[FRAME_MAX_BYTES];
/* The last INFER / INFER_Q request answered and its reply, for a replay (hil_state.last_*). */
static uint8_t last_request[INFER_FLOAT_BYTES];
static uint8_t last_reply[INFER_REPLY_BYTES];

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

static void on_hello(hil_state *s, uint8_t seq, const uint8_t *payload)
{
    /* The host names this boot: every later reply carries the id, and a reset clears it. */
    uint32_t previous = s->boot_id;
    s->boot_id = get_u32(payload);
    s->last_type = 0; /* a reply cached under another boot id is never replayed */
    static const char board_id[] = BOARD_ID;
    static const char fw_version[] = FW_VERSION;
    uint8_t p[96 + sizeof(board_id) + sizeof(fw_version)];
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
    *q++ = (uint8_t)sizeof(MODEL_INPUT_T); /* INFER_Q element: 1 int8, 2 int16 */
    put_u32(q, s->boot_id), q += 4;
    put_u32(q, previous), q += 4;
    put_u32(q, timebase_ms()), q += 4;
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

/* Runs the model on model_in and answers; the reply is kept for a replay. */
static void infer_and_reply(hil_state *s, uint8_t type, uint8_t seq, const uint8_t *request, uint16_t len)
{
    uint32_t ticks = timed_invoke();
    s->infers++;
    float action[MODEL_OUTPUT_LEN];
    model_decode_output(model_out, action);
    for (uint32_t i = 0; i < MODEL_OUTPUT_LEN; i++)
        put_f32(last_reply + 4 * i, action[i]);
    put_u32(last_reply + 4 * MODEL_OUTPUT_LEN, ticks);
    put_u32(last_reply + 4 * MODEL_OUTPUT_LEN + 4, s->boot_id);
    memcpy(last_request, request, len);
    s->last_type = type;
    s->last_seq = seq;
    send(type | MSG_REPLY, seq, last_reply, sizeof(last_reply));
}

/* The host repeats a request (same type, seq and payload) when it lost the reply: answer it
 * again from the cache, without running the model a second time. */
static int replayed(hil_state *s, uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t len)
{
    if (s->last_type != type || s->last_seq != seq || memcmp(last_request, payload, len) != 0)
        return 0;
    s->replays++;
    send(type | MSG_REPLY, seq, last_reply, sizeof(last_reply));
    return 1;
}

static void on_infer(hil_state *s, uint8_t seq, const uint8_t *payload)
{
    if (replayed(s, MSG_INFER, seq, payload, INFER_FLOAT_BYTES))
        return;
    float obs[MODEL_INPUT_LEN];
    memcpy(obs, payload, sizeof(obs)); /* little-endian float32, as the core */
    for (uint32_t i = 0; i < MODEL_INPUT_LEN; i++) {
        if (!__builtin_isfinite(obs[i])) {
            send_error(ERR_BAD_VALUE, MSG_INFER, seq);
            return;
        }
    }
    model_encode_input(obs, model_in); /* export.json's prescale, then quantisation */
    infer_and_reply(s, MSG_INFER, seq, payload, INFER_FLOAT_BYTES);
}

/* INFER_Q: the observation already prescaled and quantised by the host (every value of the
 * type is a valid model input), little-endian MODEL_INPUT_T as the core. */
static void on_infer_q(hil_state *s, uint8_t seq, const uint8_t *payload)
{
    if (replayed(s, MSG_INFER_Q, seq, payload, INFER_Q_BYTES))
        return;
    memcpy(model_in, payload, INFER_Q_BYTES);
    infer_and_reply(s, MSG_INFER_Q, seq, payload, INFER_Q_BYTES);
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
    uint32_t v[11] = {stack_size(), stack_used(), s->frames_ok, fp->crc_errors,
                      s->framing_errors + fp->length_errors, fp->timeouts, s->overflows,
                      s->infers, s->replays, s->boot_id, timebase_ms()};
    uint8_t p[44];
    for (int i = 0; i < 11; i++)
        put_u32(p + 4 * i, v[i]);
    send(MSG_STATS | MSG_REPLY, seq, p, sizeof(p));
}

/* Expected payload size of each request type, -1 for a type that is not a request. */
static int32_t request_len(uint8_t type)
{
    switch (type) {
    case MSG_HELLO: return 4;
    case MSG_STATS: case MSG_RESET: return 0;
    case MSG_INFER: return INFER_FLOAT_BYTES;
    case MSG_INFER_Q: return INFER_Q_BYTES;
    case MSG_BENCH: return 4;
    default: return -1;
    }
}

/* The parser's header check: a request no longer than its type's size; a type that is not
 * a request carries no payload (its UNKNOWN_TYPE answer needs none). */
static uint16_t request_len_limit(void *ctx, uint8_t type)
{
    (void)ctx;
    const int32_t n = request_len(type);
    return n < 0 ? 0u : (uint16_t)n;
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
    case MSG_HELLO: on_hello(s, f->seq, f->payload); break;
    case MSG_INFER: on_infer(s, f->seq, f->payload); break;
    case MSG_INFER_Q: on_infer_q(s, f->seq, f->payload); break;
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
    frame_parser_set_length_limit(&s->parser, request_len_limit);
    /* BENCH before any INFER runs on the all-zero observation (prescaled like any other) */
    const float zeros[MODEL_INPUT_LEN] = {0};
    model_encode_input(zeros, model_in);
}
