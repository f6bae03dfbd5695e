/*
 * flood: a benchmark agent for the orchestrator's routing path.
 *
 * Agents are named <prefix>0 .. <prefix>N-1. Every tick each one sends k small messages
 * (8-byte payload) to its k ring successors (me+1 .. me+k mod N) and counts what it
 * receives; it never idles, so every agent is stepped every tick. Its own work is a few
 * hundred wasm instructions per message, so a tick's time is almost all host overhead.
 *
 * Spawn arguments: n=N (>= 2), k=K (messages per step, default 1), prefix=P (default "f").
 */
#define LOCKSTEP_DEFAULT_ALLOC
#define LOCKSTEP_DEFAULT_INIT
#define LOCKSTEP_DEFAULT_SHUTDOWN
#include "lockstep.h"

static int configured;
static uint8_t prefix_storage[LS_MAX_NAME];
static ls_bytes prefix;
static uint64_t n_agents, me, k, received;

static int configure(const ls_context *ctx) {
    ls_bytes v;
    if (ls_arg(ctx->args, "prefix", &v)) {
        if (v.len == 0 || v.len > LS_MAX_NAME - 20) return -1;
        for (uint32_t i = 0; i < v.len; i++) prefix_storage[i] = v.ptr[i];
        prefix.len = v.len;
    } else {
        prefix_storage[0] = 'f';
        prefix.len = 1;
    }
    prefix.ptr = prefix_storage;
    n_agents = ls_arg_u64(ctx->args, "n", 0);
    k = ls_arg_u64(ctx->args, "k", 1);
    if (ctx->name.len <= prefix.len) return -1;
    ls_bytes tail = {ctx->name.ptr + prefix.len, ctx->name.len - prefix.len};
    if (ls_parse_u64(tail, &me) != 0 || n_agents < 2 || me >= n_agents) return -1;
    configured = 1;
    return 0;
}

int32_t agent_receive(int32_t message_ptr) {
    (void)message_ptr;
    received++;
    return LS_OK;
}

int32_t agent_step(int32_t context_ptr) {
    ls_context ctx;
    if (ls_context_read(context_ptr, &ctx) != 0) return LS_ERR_BAD_ARG;
    if (!configured && configure(&ctx) != 0) {
        ls_log_str(LS_LOG_ERROR, "bad arguments: need n=N (>= 2) and my name = prefix<index>");
        return LS_DONE;
    }
    uint8_t payload[8];
    ls_store_u64(payload, received);
    ls_bytes body = {payload, 8};
    for (uint64_t j = 1; j <= k; j++) {
        LS_BUF(dest, LS_MAX_NAME);
        ls_buf_u64(ls_buf_bytes(&dest, prefix), (me + j) % n_agents);
        ls_send(ls_buf_view(&dest), body);
    }
    return LS_OK;
}
