/*
 * wealth: the Boltzmann wealth model without a grid.
 *
 * N agents named <prefix>0 .. <prefix>N-1 each start with some units of wealth. Every
 * tick an agent with wealth > 0 gives one unit to another agent chosen uniformly at
 * random (from its own host-served random stream) and sends it as the message "1";
 * money in flight arrives at the next tick. An agent at 0 returns LS_IDLE and sleeps
 * until money arrives. Total wealth is conserved; its distribution drifts towards an
 * exponential (Boltzmann-Gibbs) one.
 *
 * Spawn arguments ("key=value" tokens):
 *   n=N          number of agents (required, >= 2)
 *   prefix=P     name prefix (default "w"); my own name must be P<index>
 *   wealth=W     starting wealth (default 1)
 *   work=K       rounds of integer busywork per step before deciding (default 0;
 *                wealth_heavy sets 2000: a stand-in for an agent's own computation)
 *   log_every=T  log my wealth every T ticks (default 0: never)
 *   observe=1    report my wealth as the observation "wealth" every step, after the
 *                units sent to me arrived and before I give (default 0; docs/python.md)
 */
#define LOCKSTEP_DEFAULT_ALLOC
#define LOCKSTEP_DEFAULT_INIT
#define LOCKSTEP_DEFAULT_SHUTDOWN
#include "lockstep.h"

#ifndef WEALTH_DEFAULT_WORK
#define WEALTH_DEFAULT_WORK 0
#endif

static int configured;
static uint8_t prefix_storage[LS_MAX_NAME];
static ls_bytes prefix;
static uint64_t n_agents;
static uint64_t me;       /* my index */
static uint64_t wealth;
static uint64_t work;
static uint64_t log_every;
static uint64_t observe;

/* The busywork's running result. Kept in memory (so part of the agent's state and of
 * its snapshots) so the compiler cannot drop the loop. */
static uint64_t work_acc;

static int configure(const ls_context *ctx) {
    ls_bytes v;
    if (ls_arg(ctx->args, "prefix", &v)) {
        if (v.len == 0 || v.len > LS_MAX_NAME - 20) return -1;
        for (uint32_t i = 0; i < v.len; i++) prefix_storage[i] = v.ptr[i];
        prefix.len = v.len;
    } else {
        prefix_storage[0] = 'w';
        prefix.len = 1;
    }
    prefix.ptr = prefix_storage;
    n_agents = ls_arg_u64(ctx->args, "n", 0);
    wealth = ls_arg_u64(ctx->args, "wealth", 1);
    work = ls_arg_u64(ctx->args, "work", WEALTH_DEFAULT_WORK);
    log_every = ls_arg_u64(ctx->args, "log_every", 0);
    observe = ls_arg_u64(ctx->args, "observe", 0);
    /* My index is the number after the prefix in my name. */
    if (ctx->name.len <= prefix.len) return -1;
    ls_bytes head = {ctx->name.ptr, prefix.len};
    ls_bytes tail = {ctx->name.ptr + prefix.len, ctx->name.len - prefix.len};
    if (!ls_bytes_eq(head, prefix) || ls_parse_u64(tail, &me) != 0) return -1;
    if (n_agents < 2 || me >= n_agents) return -1;
    configured = 1;
    return 0;
}

/* xorshift64* rounds seeded by the tick and my wealth: cheap, branch-free integer work
 * the optimiser cannot fold away. */
static void busywork(int64_t tick) {
    uint64_t x = ((uint64_t)tick << 32) ^ (wealth + 0x9E3779B97F4A7C15ull) ^ work_acc;
    for (uint64_t i = 0; i < work; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x *= 0x2545F4914F6CDD1Dull;
    }
    work_acc = x;
}

int32_t agent_receive(int32_t message_ptr) {
    ls_message m;
    uint64_t amount;
    if (ls_message_read(message_ptr, &m) != 0) return LS_ERR_BAD_ARG;
    if (m.kind == LS_KIND_AGENT && ls_parse_u64(m.payload, &amount) == 0) {
        wealth += amount;
    } else if (m.kind == LS_KIND_UNDELIVERABLE) {
        wealth += 1; /* the unit came back: it never left */
        ls_log_str(LS_LOG_WARN, "a unit was undeliverable (is n= right?)");
    }
    return LS_OK;
}

int32_t agent_step(int32_t context_ptr) {
    ls_context ctx;
    if (ls_context_read(context_ptr, &ctx) != 0) return LS_ERR_BAD_ARG;
    if (!configured && configure(&ctx) != 0) {
        ls_log_str(LS_LOG_ERROR, "bad arguments: need n=N (>= 2) and my name = prefix<index>");
        return LS_DONE;
    }
    if (work) busywork(ctx.tick);
    if (log_every && ctx.tick % (int64_t)log_every == 0) {
        LS_BUF(line, 48);
        ls_buf_u64(ls_buf_str(&line, "wealth="), wealth);
        ls_log_buf(LS_LOG_INFO, &line);
    }
    if (observe) ls_observe("wealth", (double)wealth);
    if (wealth == 0) return LS_IDLE;
    /* Uniform over the n-1 others: draw from [0, n-1) and skip my own index. */
    uint64_t other = ls_random_below(n_agents - 1);
    if (other >= me) other++;
    LS_BUF(dest, LS_MAX_NAME);
    ls_buf_u64(ls_buf_bytes(&dest, prefix), other);
    if (ls_send(ls_buf_view(&dest), ls_bytes_of("1")) == 0) wealth--;
    return wealth > 0 ? LS_OK : LS_IDLE;
}
