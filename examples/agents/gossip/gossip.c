/*
 * gossip: a rumour spreads; each agent passes it on exactly once.
 *
 * N agents named <prefix>0 .. <prefix>N-1. The origin starts the rumour at its first
 * step; every agent, the first time it hears the rumour, forwards it (at its next step)
 * to k distinct peers chosen at random among the N-1 others, then only listens. Every
 * agent is idle between messages, so a run ends by itself once the rumour has died out.
 * The rumour reaches most, but usually not all, agents: how many depends on k and on
 * the random streams, which the run seed fixes.
 *
 * Spawn arguments ("key=value" tokens):
 *   n=N         number of agents (required, >= 2)
 *   prefix=P    name prefix (default "g"); my own name must be P<index>
 *   k=K         peers to tell (default 3, at most N-1 and 64)
 *   origin=1    start the rumour (default 0)
 *   rumour=R    the rumour, one token (default "the-cake-is-a-lie"), origin only
 */
#define LOCKSTEP_DEFAULT_ALLOC
#define LOCKSTEP_DEFAULT_INIT
#include "lockstep.h"

#define MAX_K 64
#define MAX_RUMOUR 1024

static int configured;
static uint8_t prefix_storage[LS_MAX_NAME];
static ls_bytes prefix;
static uint64_t n_agents, me, k;

static uint8_t rumour_storage[MAX_RUMOUR];
static ls_bytes rumour;
static int heard;      /* I know the rumour */
static int told;       /* I have passed it on */
static uint64_t repeats; /* times I heard it again */

static void keep_rumour(ls_bytes r) {
    uint32_t n = r.len < MAX_RUMOUR ? r.len : MAX_RUMOUR;
    for (uint32_t i = 0; i < n; i++) rumour_storage[i] = r.ptr[i];
    rumour.ptr = rumour_storage;
    rumour.len = n;
    heard = 1;
}

static int configure(const ls_context *ctx) {
    ls_bytes v;
    if (ls_arg(ctx->args, "prefix", &v)) {
        if (v.len == 0 || v.len > LS_MAX_NAME - 20) return -1;
        for (uint32_t i = 0; i < v.len; i++) prefix_storage[i] = v.ptr[i];
        prefix.len = v.len;
    } else {
        prefix_storage[0] = 'g';
        prefix.len = 1;
    }
    prefix.ptr = prefix_storage;
    n_agents = ls_arg_u64(ctx->args, "n", 0);
    k = ls_arg_u64(ctx->args, "k", 3);
    if (ctx->name.len <= prefix.len) return -1;
    ls_bytes head = {ctx->name.ptr, prefix.len};
    ls_bytes tail = {ctx->name.ptr + prefix.len, ctx->name.len - prefix.len};
    if (!ls_bytes_eq(head, prefix) || ls_parse_u64(tail, &me) != 0) return -1;
    if (n_agents < 2 || me >= n_agents) return -1;
    if (k > n_agents - 1) k = n_agents - 1;
    if (k > MAX_K) k = MAX_K;
    if (ls_arg_u64(ctx->args, "origin", 0) == 1) {
        if (!ls_arg(ctx->args, "rumour", &v)) v = ls_bytes_of("the-cake-is-a-lie");
        keep_rumour(v);
        ls_log_str(LS_LOG_INFO, "I start the rumour");
    }
    configured = 1;
    return 0;
}

/* Sends the rumour to k distinct peers: draws uniformly among the others and redraws
 * a peer already chosen (k is small, so this ends quickly). */
static void tell_peers(void) {
    uint64_t chosen[MAX_K];
    uint64_t n = 0;
    while (n < k) {
        uint64_t peer = ls_random_below(n_agents - 1);
        if (peer >= me) peer++;
        int dup = 0;
        for (uint64_t i = 0; i < n; i++) dup |= chosen[i] == peer;
        if (dup) continue;
        chosen[n++] = peer;
        LS_BUF(dest, LS_MAX_NAME);
        ls_buf_u64(ls_buf_bytes(&dest, prefix), peer);
        ls_send(ls_buf_view(&dest), rumour);
    }
    told = 1;
}

int32_t agent_receive(int32_t message_ptr) {
    ls_message m;
    if (ls_message_read(message_ptr, &m) != 0) return LS_ERR_BAD_ARG;
    if (m.kind != LS_KIND_AGENT && m.kind != LS_KIND_EXTERNAL) return LS_OK;
    if (heard) {
        repeats++;
        return LS_OK;
    }
    keep_rumour(m.payload);
    LS_BUF(line, 128);
    ls_buf_str(&line, "heard it from ");
    ls_buf_bytes(&line, m.sender.len ? m.sender : ls_bytes_of("outside"));
    ls_buf_str(&line, " at tick ");
    ls_buf_i64(&line, lockstep_tick());
    ls_log_buf(LS_LOG_INFO, &line);
    return LS_OK;
}

int32_t agent_step(int32_t context_ptr) {
    ls_context ctx;
    if (ls_context_read(context_ptr, &ctx) != 0) return LS_ERR_BAD_ARG;
    if (!configured && configure(&ctx) != 0) {
        ls_log_str(LS_LOG_ERROR, "bad arguments: need n=N (>= 2) and my name = prefix<index>");
        return LS_DONE;
    }
    if (heard && !told) tell_peers();
    return LS_IDLE;
}

/* Called when an operator terminates me: report how often the rumour came back. */
int32_t agent_shutdown(void) {
    if (!heard) {
        ls_log_str(LS_LOG_INFO, "never heard the rumour");
        return LS_OK;
    }
    LS_BUF(line, 64);
    ls_buf_u64(ls_buf_str(&line, "knew the rumour; heard it again "), repeats);
    ls_buf_str(&line, " times");
    ls_log_buf(LS_LOG_INFO, &line);
    return LS_OK;
}
