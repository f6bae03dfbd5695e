/*
 * lockstep.h -- C SDK for Lockstep agents, agent ABI v1 (docs/abi.md).
 *
 * Single header, no libc: it only needs the compiler's freestanding <stdint.h> and
 * <stddef.h>. Build an agent with
 *
 *     lockstep agent build my_agent.c            (or, by hand, without the manifest:)
 *     python -m ziglang cc --target=wasm32-freestanding -O2 -g0 -nostdlib -ffreestanding \
 *         -Wl,--no-entry -Wl,-z,stack-size=65536 -I sdk/c my_agent.c -o my_agent.wasm
 *
 * (the command also embeds a manifest and checks the result against the ABI).
 * What an agent file looks like:
 *
 *     #define LOCKSTEP_DEFAULT_ALLOC        // opt into the SDK's scratch agent_alloc
 *     #define LOCKSTEP_DEFAULT_INIT         // ... and trivial init/receive/shutdown
 *     #define LOCKSTEP_DEFAULT_RECEIVE
 *     #define LOCKSTEP_DEFAULT_SHUTDOWN
 *     #include "lockstep.h"
 *
 *     int32_t agent_step(int32_t ctx_ptr) {
 *         ls_context ctx;
 *         if (ls_context_read(ctx_ptr, &ctx) != 0) return LS_ERR_BAD_ARG;
 *         ls_log_str(LS_LOG_INFO, "hello");
 *         return LS_IDLE;
 *     }
 *
 * The export attributes sit on the prototypes below, so a plain definition of
 * agent_step/agent_receive/... is exported under its ABI name. An agent defines
 * agent_init, agent_step, agent_receive and agent_shutdown itself, or opts into trivial
 * ones (return LS_OK) with LOCKSTEP_DEFAULT_INIT / _RECEIVE / _SHUTDOWN, and into the
 * scratch agent_alloc with LOCKSTEP_DEFAULT_ALLOC (each defined before the #include).
 * The header defines agent_receive_batch: it calls agent_receive once per record, in
 * order, stopping at the first negative result -- the same results as the host calling
 * agent_receive per message (define LOCKSTEP_NO_RECEIVE_BATCH to write your own or to
 * not export it).
 *
 * Host buffers are valid only during the call they are passed to: copy what you keep.
 * Deterministic by construction: the only sources of time and randomness are
 * ls_tick() and ls_random*(), both served by the host.
 */
#ifndef LOCKSTEP_H
#define LOCKSTEP_H

#include <stddef.h>
#include <stdint.h>

#if !defined(__wasm32__)
#error "lockstep.h targets wasm32 (use: zig cc --target=wasm32-freestanding)"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------
 * Constants (docs/abi.md)
 * ------------------------------------------------------------------------------- */

#define LS_ABI_VERSION 1

/* Return codes of agent_init / agent_step / agent_receive / agent_shutdown. */
#define LS_OK 0   /* ok */
#define LS_IDLE 1 /* agent_step only: do not step me again until a message arrives */
#define LS_DONE 2 /* agent_init/agent_step: terminate me */

/* Negative results of the imports (refusals; the agent may go on). */
#define LS_ERR_QUOTA (-1)     /* per-step quota reached (messages, logs, inference) */
#define LS_ERR_TOO_LARGE (-2) /* payload, log line, random request or input too large */
#define LS_ERR_BAD_NAME (-3)  /* destination or model name not valid */
#define LS_ERR_BAD_ARG (-4)   /* other invalid argument */

/* Message kinds (message record byte 4). */
#define LS_KIND_AGENT 0         /* from another agent */
#define LS_KIND_EXTERNAL 1      /* from outside the run (operator / SDK client) */
#define LS_KIND_INFER_RESULT 2  /* inference result; correlation = request id */
#define LS_KIND_INFER_ERROR 3   /* inference error; payload = UTF-8 reason */
#define LS_KIND_UNDELIVERABLE 4 /* one of my sends could not be delivered */

/* Log levels. */
#define LS_LOG_TRACE 0
#define LS_LOG_DEBUG 1
#define LS_LOG_INFO 2
#define LS_LOG_WARN 3
#define LS_LOG_ERROR 4

/* Fixed header sizes of the host buffers. */
#define LS_CONTEXT_HEADER_SIZE 24
#define LS_MESSAGE_HEADER_SIZE 32
#define LS_BATCH_HEADER_SIZE 8

/* Default limits (per agent; the operator may set others at spawn). */
#define LS_MAX_PAYLOAD 65536
#define LS_MAX_LOG_LINE 4096
#define LS_MAX_NAME 64

/* ---------------------------------------------------------------------------------
 * Exports (the ABI names; prototypes carry the export attribute)
 * ------------------------------------------------------------------------------- */

#define LS_EXPORT(name) __attribute__((export_name(#name)))
#define LS_IMPORT(name) __attribute__((import_module("lockstep_v1"), import_name(#name)))

LS_EXPORT(agent_alloc) int32_t agent_alloc(int32_t size);
LS_EXPORT(agent_init) int32_t agent_init(void);
LS_EXPORT(agent_step) int32_t agent_step(int32_t context_ptr);
LS_EXPORT(agent_receive) int32_t agent_receive(int32_t message_ptr);
LS_EXPORT(agent_shutdown) int32_t agent_shutdown(void);
#ifndef LOCKSTEP_NO_RECEIVE_BATCH
LS_EXPORT(agent_receive_batch) int32_t agent_receive_batch(int32_t batch_ptr);
#endif

/* ---------------------------------------------------------------------------------
 * Imports, module lockstep_v1 (raw; the ls_* helpers below are friendlier)
 * ------------------------------------------------------------------------------- */

LS_IMPORT(send)
int32_t lockstep_send(const void *dest, int32_t dest_len, const void *payload, int32_t payload_len);
LS_IMPORT(log) int32_t lockstep_log(int32_t level, const void *ptr, int32_t len);
LS_IMPORT(tick) int64_t lockstep_tick(void);
LS_IMPORT(random) int32_t lockstep_random(void *ptr, int32_t len);
LS_IMPORT(infer)
int64_t lockstep_infer(const void *model, int32_t model_len, const void *input, int32_t input_len);

/* ---------------------------------------------------------------------------------
 * Byte slices and small string helpers (no libc)
 * ------------------------------------------------------------------------------- */

/* A view of bytes inside some buffer; never NUL-terminated. */
typedef struct ls_bytes {
    const uint8_t *ptr;
    uint32_t len;
} ls_bytes;

static inline uint32_t ls_strlen(const char *s) {
    uint32_t n = 0;
    while (s[n] != 0) n++;
    return n;
}

static inline ls_bytes ls_bytes_of(const char *s) {
    ls_bytes b = {(const uint8_t *)s, ls_strlen(s)};
    return b;
}

static inline int ls_bytes_eq(ls_bytes a, ls_bytes b) {
    if (a.len != b.len) return 0;
    for (uint32_t i = 0; i < a.len; i++)
        if (a.ptr[i] != b.ptr[i]) return 0;
    return 1;
}

/* 1 when the bytes equal the NUL-terminated string s. */
static inline int ls_bytes_eq_str(ls_bytes a, const char *s) { return ls_bytes_eq(a, ls_bytes_of(s)); }

static inline int ls_bytes_starts_with(ls_bytes a, const char *prefix) {
    ls_bytes p = ls_bytes_of(prefix);
    if (p.len > a.len) return 0;
    a.len = p.len;
    return ls_bytes_eq(a, p);
}

/* Parses an unsigned decimal (digits only, at most 19 of them). 0 ok, -1 not a number. */
static inline int ls_parse_u64(ls_bytes s, uint64_t *out) {
    if (s.len == 0 || s.len > 19) return -1;
    uint64_t v = 0;
    for (uint32_t i = 0; i < s.len; i++) {
        uint8_t c = s.ptr[i];
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (uint64_t)(c - '0');
    }
    *out = v;
    return 0;
}

/* Little-endian loads and stores by bytes: alignment-free and endian-explicit. */
static inline uint16_t ls_load_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ls_load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t ls_load_u64(const uint8_t *p) {
    return (uint64_t)ls_load_u32(p) | ((uint64_t)ls_load_u32(p + 4) << 32);
}
static inline void ls_store_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void ls_store_u64(uint8_t *p, uint64_t v) {
    ls_store_u32(p, (uint32_t)v);
    ls_store_u32(p + 4, (uint32_t)(v >> 32));
}

/* A pointer the host passed in (an i32 offset in linear memory). */
static inline const uint8_t *ls_ptr(int32_t offset) { return (const uint8_t *)(uintptr_t)(uint32_t)offset; }

/* ---------------------------------------------------------------------------------
 * Host buffers: context, message record, batch
 * ------------------------------------------------------------------------------- */

/* The context given to agent_step. */
typedef struct ls_context {
    uint16_t abi_version;   /* 1 */
    int64_t tick;           /* current tick */
    uint32_t message_count; /* messages delivered to me this tick */
    ls_bytes name;          /* my agent name */
    ls_bytes args;          /* spawn arguments (opaque bytes) */
} ls_context;

/* Parses the context buffer at ptr. 0 ok, LS_ERR_BAD_ARG if the lengths disagree. */
static inline int ls_context_read(int32_t ptr, ls_context *ctx) {
    const uint8_t *p = ls_ptr(ptr);
    uint32_t total = ls_load_u32(p);
    if (total < LS_CONTEXT_HEADER_SIZE) return LS_ERR_BAD_ARG;
    uint32_t n = ls_load_u16(p + 6);
    uint32_t a = ls_load_u32(p + 20);
    if ((uint64_t)LS_CONTEXT_HEADER_SIZE + n + a != total) return LS_ERR_BAD_ARG;
    ctx->abi_version = ls_load_u16(p + 4);
    ctx->tick = (int64_t)ls_load_u64(p + 8);
    ctx->message_count = ls_load_u32(p + 16);
    ctx->name.ptr = p + LS_CONTEXT_HEADER_SIZE;
    ctx->name.len = n;
    ctx->args.ptr = p + LS_CONTEXT_HEADER_SIZE + n;
    ctx->args.len = a;
    return 0;
}

/* One message record (agent_receive, or one record of a batch). */
typedef struct ls_message {
    uint8_t kind;        /* LS_KIND_* */
    int64_t sent_tick;   /* tick at which it was sent */
    int64_t correlation; /* request id for LS_KIND_INFER_*, else 0 */
    ls_bytes sender;     /* agent name; empty if external; model name for kinds 2 and 3 */
    ls_bytes dest;       /* destination as the sender wrote it: my name, "*" or "#topic" */
    ls_bytes payload;
    uint32_t size;       /* total record length in bytes */
} ls_message;

/* Parses a message record at ptr. 0 ok, LS_ERR_BAD_ARG if the lengths disagree. */
static inline int ls_message_read(int32_t ptr, ls_message *msg) {
    const uint8_t *p = ls_ptr(ptr);
    uint32_t total = ls_load_u32(p);
    if (total < LS_MESSAGE_HEADER_SIZE) return LS_ERR_BAD_ARG;
    uint32_t s = ls_load_u16(p + 6);
    uint32_t pl = ls_load_u32(p + 24);
    uint32_t d = ls_load_u16(p + 28);
    if ((uint64_t)LS_MESSAGE_HEADER_SIZE + s + d + pl != total) return LS_ERR_BAD_ARG;
    msg->kind = p[4];
    msg->sent_tick = (int64_t)ls_load_u64(p + 8);
    msg->correlation = (int64_t)ls_load_u64(p + 16);
    msg->sender.ptr = p + LS_MESSAGE_HEADER_SIZE;
    msg->sender.len = s;
    msg->dest.ptr = msg->sender.ptr + s;
    msg->dest.len = d;
    msg->payload.ptr = msg->dest.ptr + d;
    msg->payload.len = pl;
    msg->size = total;
    return 0;
}

/* Iterator over the records of a batch buffer (agent_receive_batch). */
typedef struct ls_batch {
    const uint8_t *next; /* next record */
    const uint8_t *end;  /* one past the buffer */
    uint32_t remaining;  /* records not yet returned */
} ls_batch;

/* Opens the batch buffer at ptr. 0 ok, LS_ERR_BAD_ARG if its header is inconsistent. */
static inline int ls_batch_open(int32_t ptr, ls_batch *b) {
    const uint8_t *p = ls_ptr(ptr);
    uint32_t total = ls_load_u32(p);
    if (total < LS_BATCH_HEADER_SIZE) return LS_ERR_BAD_ARG;
    b->next = p + LS_BATCH_HEADER_SIZE;
    b->end = p + total;
    b->remaining = ls_load_u32(p + 4);
    return 0;
}

/* Gives the address of the next record in *record_ptr: 1 got one, 0 no more,
 * LS_ERR_BAD_ARG if a record overruns the buffer. */
static inline int ls_batch_next(ls_batch *b, int32_t *record_ptr) {
    if (b->remaining == 0) return 0;
    if ((size_t)(b->end - b->next) < LS_MESSAGE_HEADER_SIZE) return LS_ERR_BAD_ARG;
    uint32_t len = ls_load_u32(b->next);
    if (len < LS_MESSAGE_HEADER_SIZE || len > (size_t)(b->end - b->next)) return LS_ERR_BAD_ARG;
    *record_ptr = (int32_t)(uintptr_t)b->next;
    b->next += len;
    b->remaining--;
    return 1;
}

/* ---------------------------------------------------------------------------------
 * Spawn arguments: "key=value" tokens separated by spaces, tabs, newlines or commas
 * (the convention of the examples; args are opaque bytes to the host).
 * ------------------------------------------------------------------------------- */

/* 1 for the bytes that separate argument tokens. */
/* 1 for the bytes that separate argument tokens. */
static inline int ls_arg_is_sep(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ','; }

/* Finds key in args; 1 and *value set if present (the last one wins), else 0. */
static inline int ls_arg(ls_bytes args, const char *key, ls_bytes *value) {
    ls_bytes k = ls_bytes_of(key);
    int found = 0;
    uint32_t i = 0;
    while (i < args.len) {
        while (i < args.len && ls_arg_is_sep(args.ptr[i])) i++;
        uint32_t start = i;
        while (i < args.len && !ls_arg_is_sep(args.ptr[i])) i++;
        ls_bytes tok = {args.ptr + start, i - start};
        if (tok.len > k.len && tok.ptr[k.len] == '=') {
            ls_bytes name = {tok.ptr, k.len};
            if (ls_bytes_eq(name, k)) {
                value->ptr = tok.ptr + k.len + 1;
                value->len = tok.len - k.len - 1;
                found = 1;
            }
        }
    }
    return found;
}

/* The unsigned number under key, or dflt when it is absent or not a number. */
static inline uint64_t ls_arg_u64(ls_bytes args, const char *key, uint64_t dflt) {
    ls_bytes v;
    uint64_t out;
    if (!ls_arg(args, key, &v) || ls_parse_u64(v, &out) != 0) return dflt;
    return out;
}

/* ---------------------------------------------------------------------------------
 * A fixed-capacity text builder (for names, payloads and log lines)
 * ------------------------------------------------------------------------------- */

typedef struct ls_buf {
    uint8_t *data;
    uint32_t len;
    uint32_t cap;
    int overflow; /* 1 once something did not fit (the text is then truncated) */
} ls_buf;

/* Declares `ls_buf name` over a local array of `size` bytes. */
#define LS_BUF(name, size)                                                                    \
    uint8_t name##_storage_[size];                                                            \
    ls_buf name = {name##_storage_, 0, (uint32_t)(size), 0}

static inline ls_buf *ls_buf_bytes(ls_buf *b, ls_bytes s) {
    for (uint32_t i = 0; i < s.len; i++) {
        if (b->len >= b->cap) {
            b->overflow = 1;
            break;
        }
        b->data[b->len++] = s.ptr[i];
    }
    return b;
}
static inline ls_buf *ls_buf_str(ls_buf *b, const char *s) { return ls_buf_bytes(b, ls_bytes_of(s)); }
static inline ls_buf *ls_buf_u64(ls_buf *b, uint64_t v) {
    uint8_t tmp[20];
    uint32_t n = 0;
    do {
        tmp[n++] = (uint8_t)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    uint8_t out[20];
    for (uint32_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    ls_bytes s = {out, n};
    return ls_buf_bytes(b, s);
}
static inline ls_buf *ls_buf_i64(ls_buf *b, int64_t v) {
    if (v < 0) {
        ls_buf_str(b, "-");
        return ls_buf_u64(b, (uint64_t)0 - (uint64_t)v);
    }
    return ls_buf_u64(b, (uint64_t)v);
}
static inline ls_bytes ls_buf_view(const ls_buf *b) {
    ls_bytes s = {b->data, b->len};
    return s;
}

/* ---------------------------------------------------------------------------------
 * Host calls
 * ------------------------------------------------------------------------------- */

/* Sends payload to dest (an agent name, "*" or "#topic"); delivered at tick t+1.
 * 0 queued, < 0 refused (LS_ERR_*). */
static inline int32_t ls_send(ls_bytes dest, ls_bytes payload) {
    return lockstep_send(dest.ptr, (int32_t)dest.len, payload.ptr, (int32_t)payload.len);
}
static inline int32_t ls_send_str(const char *dest, const char *payload) {
    return ls_send(ls_bytes_of(dest), ls_bytes_of(payload));
}
static inline int32_t ls_send_buf(const ls_buf *dest, const ls_buf *payload) {
    return ls_send(ls_buf_view(dest), ls_buf_view(payload));
}
static inline int32_t ls_subscribe(const char *topic) { return ls_send_str("$subscribe", topic); }
static inline int32_t ls_unsubscribe(const char *topic) { return ls_send_str("$unsubscribe", topic); }

/* Appends a line to the run's log at level LS_LOG_*. */
static inline int32_t ls_log(int32_t level, ls_bytes text) { return lockstep_log(level, text.ptr, (int32_t)text.len); }
static inline int32_t ls_log_str(int32_t level, const char *text) { return ls_log(level, ls_bytes_of(text)); }
static inline int32_t ls_log_buf(int32_t level, const ls_buf *text) { return ls_log(level, ls_buf_view(text)); }

/* Observations (docs/abi.md, "Observations"): named numeric values an agent reports per
 * step, collected per tick like a Mesa DataCollector's agent variables. An observation
 * line is a log line at the reserved level LS_LOG_OBSERVE whose text is "key=value"
 * tokens separated by single spaces: keys of [A-Za-z0-9_.:/-], 1 to 64 bytes; integers in
 * decimal, doubles as "x" and the 16 hex digits of their IEEE-754 bits (exact). It enters
 * the digest like any log line and counts towards the logs-per-step quota.
 *
 *     ls_observe("wealth", (double)wealth);               one value per line
 *     LS_BUF(line, 128);                                  several values in one line
 *     ls_obs_i64(&line, "wealth", wealth);
 *     ls_obs_f64(&line, "share", share);
 *     ls_observe_buf(&line);
 *
 * A pool that does not accept level 5 yet refuses the line with LS_ERR_BAD_ARG (the agent
 * goes on; nothing is recorded). */
#define LS_LOG_OBSERVE 5

static inline ls_buf *ls_buf_hex64(ls_buf *b, uint64_t v) {
    uint8_t out[16];
    for (int i = 15; i >= 0; i--) {
        uint8_t d = (uint8_t)(v & 15u);
        out[i] = (uint8_t)(d < 10 ? '0' + d : 'a' + d - 10);
        v >>= 4;
    }
    ls_bytes s = {out, 16};
    return ls_buf_bytes(b, s);
}
static inline ls_buf *ls_obs_key_(ls_buf *line, const char *key) {
    if (line->len) ls_buf_str(line, " ");
    return ls_buf_str(ls_buf_str(line, key), "=");
}
/* Appends "key=<integer>" to an observation line. */
static inline ls_buf *ls_obs_i64(ls_buf *line, const char *key, int64_t value) {
    return ls_buf_i64(ls_obs_key_(line, key), value);
}
/* Appends "key=x<16 hex digits>" (the exact bits of `value`) to an observation line. */
static inline ls_buf *ls_obs_f64(ls_buf *line, const char *key, double value) {
    union { double d; uint64_t u; } bits;
    bits.d = value;
    return ls_buf_hex64(ls_buf_str(ls_obs_key_(line, key), "x"), bits.u);
}
/* Reports an observation line built with ls_obs_*; 0 recorded, < 0 refused. */
static inline int32_t ls_observe_buf(const ls_buf *line) {
    if (line->overflow) return LS_ERR_TOO_LARGE;
    return ls_log_buf(LS_LOG_OBSERVE, line);
}
/* Reports one named value (a double, exact). */
static inline int32_t ls_observe(const char *key, double value) {
    LS_BUF(line, LS_MAX_NAME + 20);
    return ls_observe_buf(ls_obs_f64(&line, key, value));
}
/* Reports one named integer value. */
static inline int32_t ls_observe_i64(const char *key, int64_t value) {
    LS_BUF(line, LS_MAX_NAME + 24);
    return ls_observe_buf(ls_obs_i64(&line, key, value));
}

/* The current logical tick. */
static inline int64_t ls_tick(void) { return lockstep_tick(); }

/* Fills len bytes from my deterministic random stream. 0 ok, < 0 refused. */
static inline int32_t ls_random(void *ptr, int32_t len) { return lockstep_random(ptr, len); }

/* The next 8 bytes of my random stream as a little-endian u64 (0 if refused). */
static inline uint64_t ls_random_u64(void) {
    uint8_t b[8];
    if (lockstep_random(b, 8) != 0) return 0;
    return ls_load_u64(b);
}

/* A uniform number in [0, n) by rejection sampling on ls_random_u64 (n > 0):
 * draws x until x >= (2^64 - n) mod n, returns x mod n (0 if the host refuses). Other
 * SDKs do the same, so the same stream gives the same numbers in every language. */
static inline uint64_t ls_random_below(uint64_t n) {
    if (n <= 1) return 0;
    uint64_t threshold = ((uint64_t)0 - n) % n;
    for (;;) {
        uint8_t b[8];
        if (lockstep_random(b, 8) != 0) return 0; /* refused: do not spin */
        uint64_t x = ls_load_u64(b);
        if (x >= threshold) return x % n;
    }
}

/* Asks model for an inference on input. > 0 a request id: the result arrives as a
 * message of kind LS_KIND_INFER_RESULT (or _ERROR) with that correlation id at tick
 * t+L. < 0 refused. */
static inline int64_t ls_infer(const char *model, const void *input, uint32_t input_len) {
    ls_bytes m = ls_bytes_of(model);
    return lockstep_infer(m.ptr, (int32_t)m.len, input, (int32_t)input_len);
}
static inline int64_t ls_infer_str(const char *model, const char *prompt) {
    return ls_infer(model, prompt, ls_strlen(prompt));
}

/* ---------------------------------------------------------------------------------
 * Chat requests for llm models (e.g. "smollm2"; docs/inference.md "Agent calls")
 *
 *     LS_BUF(req, 2048);
 *     ls_chat_begin(&req);
 *     ls_chat_add(&req, "system", ls_bytes_of("You are Ada, the baker."));
 *     ls_chat_add(&req, "user", heard);
 *     ls_chat_end(&req, 32, 700);            // max_tokens 32, temperature 0.700
 *     int64_t id = ls_chat("smollm2", &req); // the reply: kind LS_KIND_INFER_RESULT
 *
 * The request is the JSON object {"messages": [{"role", "content"}...], "max_tokens",
 * "temperature"}; the reply payload is the generated UTF-8 text. A request whose buffer
 * overflowed is refused (LS_ERR_TOO_LARGE) rather than sent truncated.
 * ------------------------------------------------------------------------------- */

/* Appends s as a JSON string literal (quotes, backslashes and control bytes escaped). */
static inline ls_buf *ls_buf_json_str(ls_buf *b, ls_bytes s) {
    static const char hex[] = "0123456789abcdef";
    ls_buf_str(b, "\"");
    for (uint32_t i = 0; i < s.len; i++) {
        uint8_t c = s.ptr[i];
        if (c == '"' || c == '\\') {
            uint8_t e[2] = {'\\', c};
            ls_bytes v = {e, 2};
            ls_buf_bytes(b, v);
        } else if (c == '\n') {
            ls_buf_str(b, "\\n");
        } else if (c < 0x20) {
            uint8_t e[6] = {'\\', 'u', '0', '0', (uint8_t)hex[c >> 4], (uint8_t)hex[c & 15]};
            ls_bytes v = {e, 6};
            ls_buf_bytes(b, v);
        } else {
            ls_bytes v = {&s.ptr[i], 1};
            ls_buf_bytes(b, v);
        }
    }
    return ls_buf_str(b, "\"");
}

/* Starts a chat request in b (clears it). */
static inline ls_buf *ls_chat_begin(ls_buf *b) {
    b->len = 0;
    b->overflow = 0;
    return ls_buf_str(b, "{\"messages\":[");
}

/* Adds one message; role is "system", "user" or "assistant". */
static inline ls_buf *ls_chat_add(ls_buf *b, const char *role, ls_bytes content) {
    if (b->len > 0 && b->data[b->len - 1] == '}') ls_buf_str(b, ",");
    ls_buf_str(ls_buf_str(ls_buf_str(b, "{\"role\":\""), role), "\",\"content\":");
    return ls_buf_str(ls_buf_json_str(b, content), "}");
}

/* Closes the request: max_tokens (0 = the service's default) and the temperature in
 * thousandths (700 = 0.7; 0 = greedy; a negative value = the service's default). */
static inline ls_buf *ls_chat_end(ls_buf *b, uint32_t max_tokens, int32_t temperature_milli) {
    ls_buf_str(b, "]");
    if (max_tokens) ls_buf_u64(ls_buf_str(b, ",\"max_tokens\":"), max_tokens);
    if (temperature_milli >= 0) {
        uint32_t t = (uint32_t)temperature_milli;
        ls_buf_u64(ls_buf_str(b, ",\"temperature\":"), t / 1000);
        uint8_t frac[4] = {'.', (uint8_t)('0' + t / 100 % 10), (uint8_t)('0' + t / 10 % 10),
                           (uint8_t)('0' + t % 10)};
        ls_bytes v = {frac, 4};
        ls_buf_bytes(b, v);
    }
    return ls_buf_str(b, "}");
}

/* Sends a finished chat request to model: > 0 request id, < 0 refused. */
static inline int64_t ls_chat(const char *model, const ls_buf *request) {
    if (request->overflow) return LS_ERR_TOO_LARGE;
    return ls_infer(model, request->data, request->len);
}

/* The reply text of an inference result message: 1 and *text set for kind
 * LS_KIND_INFER_RESULT, 0 otherwise (an LS_KIND_INFER_ERROR payload is the reason). */
static inline int ls_chat_reply(const ls_message *m, ls_bytes *text) {
    if (m->kind != LS_KIND_INFER_RESULT) return 0;
    *text = m->payload;
    return 1;
}

/* ---------------------------------------------------------------------------------
 * Default exports
 * ------------------------------------------------------------------------------- */

/* Opt-in trivial exports for agents that have nothing to do there. They are weak so
 * that an agent made of several files may include this header in each of them. */
#ifdef LOCKSTEP_DEFAULT_INIT
__attribute__((weak)) int32_t agent_init(void) { return LS_OK; }
#endif
#ifdef LOCKSTEP_DEFAULT_RECEIVE
__attribute__((weak)) int32_t agent_receive(int32_t message_ptr) {
    (void)message_ptr;
    return LS_OK;
}
#endif
#ifdef LOCKSTEP_DEFAULT_SHUTDOWN
__attribute__((weak)) int32_t agent_shutdown(void) { return LS_OK; }
#endif

#ifndef LOCKSTEP_NO_RECEIVE_BATCH
/* The whole inbox in one call: agent_receive per record, in order; stops at the first
 * negative result and returns it (the agent then faults, as with per-message calls). */
__attribute__((weak)) int32_t agent_receive_batch(int32_t batch_ptr) {
    ls_batch b;
    int32_t rec;
    int rc;
    if (ls_batch_open(batch_ptr, &b) != 0) return LS_ERR_BAD_ARG;
    while ((rc = ls_batch_next(&b, &rec)) == 1) {
        int32_t r = agent_receive(rec);
        if (r < 0) return r;
    }
    return rc < 0 ? rc : LS_OK;
}
#endif

#ifdef LOCKSTEP_DEFAULT_ALLOC
/* agent_alloc over a scratch area that starts after the static data (__heap_base, set
 * by the linker) and is reused by every call: the host's buffers live only for one
 * call. Memory grows when a buffer does not fit; a buffer that cannot fit returns -1,
 * which the host reports as BAD_POINTER. Do not use the heap for anything else when
 * this is on (keep agent state in static variables). */
extern uint8_t __heap_base;
__attribute__((weak)) int32_t agent_alloc(int32_t size) {
    if (size < 0) return -1;
    uint64_t base = ((uint64_t)(uintptr_t)&__heap_base + 15u) & ~(uint64_t)15u;
    uint64_t end = base + (uint64_t)(uint32_t)size;
    if (end > ((uint64_t)1 << 32)) return -1; /* past the 4 GiB address space */
    uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) * 65536u;
    if (end > have) {
        uint64_t pages = (end - have + 65535u) / 65536u;
        if (__builtin_wasm_memory_grow(0, (size_t)pages) == (size_t)-1) return -1;
    }
    return (int32_t)(uint32_t)base;
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* LOCKSTEP_H */
