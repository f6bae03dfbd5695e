/*
 * pingpong: two agents of this one type play ping/pong.
 *
 * Spawn arguments ("key=value" tokens):
 *   peer=NAME    the other player (required)
 *   rounds=N     how many pings the starter sends / the responder answers (default 3)
 *   start=1      this agent serves first (default 0: it only answers)
 *
 * The starter sends "ping 1" at its first step; whoever receives "ping k" answers
 * "pong k" to its peer; the starter counts the pongs and sends "ping k+1" until it has
 * had `rounds` replies. Each agent returns LS_DONE once its part is played, so a pair
 * finishes on its own. Messages are only recorded in agent_receive and acted on in
 * agent_step, which keeps every send in one place (and in the order the inbox came).
 *
 * examples/agents/pingpong/pingpong.ts is the same agent in AssemblyScript; both make
 * the same sends and logs for the same inputs.
 */
#define LOCKSTEP_DEFAULT_ALLOC
#define LOCKSTEP_DEFAULT_INIT
#define LOCKSTEP_DEFAULT_SHUTDOWN
#include "lockstep.h"

#define MAX_PENDING 16

static int configured;
static uint8_t peer_storage[LS_MAX_NAME];
static ls_bytes peer;
static uint64_t rounds;
static int starter;

static uint64_t pings_sent;    /* starter: last ping number sent */
static uint64_t pongs_seen;    /* starter: replies counted */
static uint64_t pings_served;  /* responder: pongs sent */
static int stop;               /* a send of ours could not be delivered */

/* Pings received since the last step, answered there (in arrival order). */
static uint64_t pending[MAX_PENDING];
static uint32_t n_pending;

static void configure(const ls_context *ctx) {
    ls_bytes v;
    if (ls_arg(ctx->args, "peer", &v) && v.len <= LS_MAX_NAME) {
        for (uint32_t i = 0; i < v.len; i++) peer_storage[i] = v.ptr[i];
        peer.ptr = peer_storage;
        peer.len = v.len;
    }
    rounds = ls_arg_u64(ctx->args, "rounds", 3);
    starter = ls_arg_u64(ctx->args, "start", 0) == 1;
    configured = 1;
}

/* Parses "<word> <k>" into k when the payload starts with word + ' '. */
static int parse_numbered(ls_bytes payload, const char *word, uint64_t *k) {
    uint32_t w = ls_strlen(word);
    if (payload.len <= w + 1 || !ls_bytes_starts_with(payload, word) || payload.ptr[w] != ' ') return 0;
    ls_bytes num = {payload.ptr + w + 1, payload.len - w - 1};
    return ls_parse_u64(num, k) == 0;
}

static void send_numbered(const char *word, uint64_t k) {
    LS_BUF(msg, 32);
    ls_buf_u64(ls_buf_str(ls_buf_str(&msg, word), " "), k);
    ls_send(peer, ls_buf_view(&msg));
    LS_BUF(line, 128);
    ls_buf_bytes(ls_buf_str(ls_buf_bytes(&line, ls_buf_view(&msg)), " -> "), peer);
    ls_log_buf(LS_LOG_INFO, &line);
}

int32_t agent_receive(int32_t message_ptr) {
    ls_message m;
    uint64_t k;
    if (ls_message_read(message_ptr, &m) != 0) return LS_ERR_BAD_ARG;
    if (m.kind == LS_KIND_UNDELIVERABLE) {
        LS_BUF(line, 160);
        ls_buf_bytes(ls_buf_str(ls_buf_bytes(ls_buf_str(&line, "undeliverable to "), m.dest), ": "),
                     m.payload);
        ls_log_buf(LS_LOG_WARN, &line);
        stop = 1;
    } else if (parse_numbered(m.payload, "ping", &k)) {
        if (n_pending < MAX_PENDING) pending[n_pending++] = k;
    } else if (parse_numbered(m.payload, "pong", &k)) {
        if (k == pings_sent) pongs_seen++;
    } else {
        ls_log_str(LS_LOG_WARN, "unexpected message");
    }
    return LS_OK;
}

int32_t agent_step(int32_t context_ptr) {
    ls_context ctx;
    if (ls_context_read(context_ptr, &ctx) != 0) return LS_ERR_BAD_ARG;
    if (!configured) configure(&ctx);
    if (peer.len == 0) {
        ls_log_str(LS_LOG_ERROR, "missing peer=NAME argument");
        return LS_DONE;
    }
    if (stop) return LS_DONE;
    for (uint32_t i = 0; i < n_pending; i++) {
        send_numbered("pong", pending[i]);
        pings_served++;
    }
    n_pending = 0;
    if (starter) {
        if (pings_sent == pongs_seen) { /* the ball is with us */
            if (pings_sent >= rounds) {
                LS_BUF(line, 64);
                ls_buf_u64(ls_buf_str(&line, "done: replies="), pongs_seen);
                ls_log_buf(LS_LOG_INFO, &line);
                return LS_DONE;
            }
            pings_sent++;
            send_numbered("ping", pings_sent);
        }
    } else if (pings_served >= rounds) {
        LS_BUF(line, 64);
        ls_buf_u64(ls_buf_str(&line, "done: served="), pings_served);
        ls_log_buf(LS_LOG_INFO, &line);
        return LS_DONE;
    }
    return LS_IDLE;
}
