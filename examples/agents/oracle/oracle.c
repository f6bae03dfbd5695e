/*
 * oracle: asks a model and passes the answer on.
 *
 * Every text message the oracle receives (from an agent or from outside the run) is a
 * prompt: it calls infer(model, prompt) and remembers who asked. When the result
 * arrives (a kind 2 message at tick t+L whose correlation id is the request id) it logs
 * the answer and forwards it to the asker; an error (kind 3) is logged and forwarded as
 * "error: <reason>". A `prompt=` argument makes the oracle ask once by itself at its
 * first step (the answer is only logged). With a text model (char_lm) the answer is
 * UTF-8 text; any other model's output is forwarded as the raw bytes it is.
 *
 * Spawn arguments:
 *   model=NAME        the model to ask (required)
 *   prompt=TEXT...    optional; must come last: everything after "prompt=" is the prompt
 */
#define LOCKSTEP_DEFAULT_ALLOC
#define LOCKSTEP_DEFAULT_INIT
#define LOCKSTEP_DEFAULT_SHUTDOWN
#include "lockstep.h"

#define MAX_OUTSTANDING 64
#define MAX_MODEL 128
#define PREVIEW 200

static int configured;
static uint8_t model_storage[MAX_MODEL + 1]; /* NUL-terminated for ls_infer */

/* Requests in flight: request id -> who asked ("" = myself). */
static struct {
    int64_t id;
    uint8_t asker[LS_MAX_NAME];
    uint32_t asker_len;
} outstanding[MAX_OUTSTANDING];

static void remember(int64_t id, ls_bytes asker) {
    /* Request ids grow 1, 2, 3...; a slot is reused once MAX_OUTSTANDING newer ones exist. */
    uint32_t slot = (uint32_t)(id % MAX_OUTSTANDING);
    outstanding[slot].id = id;
    outstanding[slot].asker_len = asker.len <= LS_MAX_NAME ? asker.len : 0;
    for (uint32_t i = 0; i < outstanding[slot].asker_len; i++) outstanding[slot].asker[i] = asker.ptr[i];
}

static int recall(int64_t id, ls_bytes *asker) {
    uint32_t slot = (uint32_t)(id % MAX_OUTSTANDING);
    if (outstanding[slot].id != id) return 0;
    asker->ptr = outstanding[slot].asker;
    asker->len = outstanding[slot].asker_len;
    outstanding[slot].id = 0;
    return 1;
}

static void ask(ls_bytes prompt, ls_bytes asker) {
    int64_t id = ls_infer((const char *)model_storage, prompt.ptr, prompt.len);
    LS_BUF(line, 96);
    if (id > 0) {
        remember(id, asker);
        ls_buf_i64(ls_buf_str(&line, "asked request #"), id);
        ls_log_buf(LS_LOG_DEBUG, &line);
    } else {
        ls_buf_i64(ls_buf_str(&line, "infer refused with "), id);
        ls_log_buf(LS_LOG_WARN, &line);
        if (asker.len) ls_send(asker, ls_bytes_of("error: request refused"));
    }
}

/* "result #id: <first PREVIEW bytes, non-printable bytes as '.'>" */
static void log_result(int64_t id, ls_bytes answer) {
    LS_BUF(line, PREVIEW + 48);
    ls_buf_str(ls_buf_i64(ls_buf_str(&line, "result #"), id), ": ");
    for (uint32_t i = 0; i < answer.len && i < PREVIEW; i++) {
        uint8_t c = answer.ptr[i];
        if (c < 0x20 || c > 0x7e) c = '.';
        ls_bytes ch = {&c, 1};
        ls_buf_bytes(&line, ch);
    }
    if (answer.len > PREVIEW) ls_buf_str(&line, "...");
    ls_log_buf(LS_LOG_INFO, &line);
}

int32_t agent_receive(int32_t message_ptr) {
    ls_message m;
    ls_bytes asker;
    if (ls_message_read(message_ptr, &m) != 0) return LS_ERR_BAD_ARG;
    if (!configured) { /* no model yet: a message came before my first step */
        ls_log_str(LS_LOG_WARN, "ignored a message that came before my first step");
        return LS_OK;
    }
    switch (m.kind) {
    case LS_KIND_AGENT:
    case LS_KIND_EXTERNAL:
        ask(m.payload, m.sender);
        break;
    case LS_KIND_INFER_RESULT:
        if (!recall(m.correlation, &asker)) break;
        log_result(m.correlation, m.payload);
        if (asker.len) ls_send(asker, m.payload);
        break;
    case LS_KIND_INFER_ERROR: {
        if (!recall(m.correlation, &asker)) break;
        LS_BUF(line, 300);
        ls_buf_bytes(ls_buf_str(ls_buf_i64(ls_buf_str(&line, "request #"), m.correlation),
                                " failed: "), m.payload);
        ls_log_buf(LS_LOG_WARN, &line);
        if (asker.len) {
            LS_BUF(reply, 300);
            ls_buf_bytes(ls_buf_str(&reply, "error: "), m.payload);
            ls_send(asker, ls_buf_view(&reply));
        }
        break;
    }
    default:
        break;
    }
    return LS_OK;
}

int32_t agent_step(int32_t context_ptr) {
    ls_context ctx;
    if (ls_context_read(context_ptr, &ctx) != 0) return LS_ERR_BAD_ARG;
    if (!configured) {
        ls_bytes v;
        if (!ls_arg(ctx.args, "model", &v) || v.len == 0 || v.len > MAX_MODEL) {
            ls_log_str(LS_LOG_ERROR, "missing model=NAME argument");
            return LS_DONE;
        }
        for (uint32_t i = 0; i < v.len; i++) model_storage[i] = v.ptr[i];
        model_storage[v.len] = 0;
        configured = 1;
        /* prompt= runs to the end of the arguments, spaces included. */
        for (uint32_t i = 0; i + 7 <= ctx.args.len; i++) {
            ls_bytes rest = {ctx.args.ptr + i, ctx.args.len - i};
            if ((i == 0 || ls_arg_is_sep(ctx.args.ptr[i - 1])) && ls_bytes_starts_with(rest, "prompt=")) {
                ls_bytes prompt = {rest.ptr + 7, rest.len - 7};
                ls_bytes nobody = {rest.ptr, 0};
                ask(prompt, nobody);
                break;
            }
        }
    }
    return LS_IDLE;
}
