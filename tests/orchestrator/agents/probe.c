/*
 * probe: a test agent for the orchestrator, driven by its spawn arguments:
 *   to=NAME        each step, send "t=<tick> r=<random> n=<received>" to NAME
 *   bcast=1        each step, also send that to "*"
 *   topic=T        each step, also publish it to "#T"
 *   sub=T          subscribe to topic T at the first step
 *   trap_at=K      trap (unreachable) when stepped at tick K
 *   done_at=K      return done when stepped at tick K
 *   idle=1         return idle (wake only on mail)
 *   echo=1         answer every agent message with "re:<payload>" to its sender
 * Every received message is logged at debug level as "<kind> <sender> <payload>".
 */
#define LOCKSTEP_DEFAULT_ALLOC
#define LOCKSTEP_DEFAULT_INIT
#define LOCKSTEP_DEFAULT_SHUTDOWN
#include "lockstep.h"

static uint64_t received;
static int subscribed;
static uint8_t reply_to[16][LS_MAX_NAME];
static uint32_t reply_len[16];
static uint8_t reply_payload[16][64];
static uint32_t reply_plen[16];
static uint32_t n_replies;
static int echo_on = -1;

int32_t agent_receive(int32_t ptr) {
    ls_message m;
    if (ls_message_read(ptr, &m) != 0) return LS_ERR_BAD_ARG;
    received++;
    LS_BUF(line, 256);
    ls_buf_u64(&line, m.kind);
    ls_buf_str(&line, " ");
    ls_buf_bytes(&line, m.sender);
    ls_buf_str(&line, " ");
    ls_buf_bytes(&line, m.payload);
    ls_log_buf(LS_LOG_DEBUG, &line);
    if (m.kind == LS_KIND_AGENT && n_replies < 16 && m.sender.len <= LS_MAX_NAME) {
        uint32_t i = n_replies++;
        for (uint32_t k = 0; k < m.sender.len; k++) reply_to[i][k] = m.sender.ptr[k];
        reply_len[i] = m.sender.len;
        uint32_t p = m.payload.len < 60 ? m.payload.len : 60;
        for (uint32_t k = 0; k < p; k++) reply_payload[i][k] = m.payload.ptr[k];
        reply_plen[i] = p;
    }
    return LS_OK;
}

int32_t agent_step(int32_t ptr) {
    ls_context ctx;
    if (ls_context_read(ptr, &ctx) != 0) return LS_ERR_BAD_ARG;
    if (echo_on < 0) echo_on = (int)ls_arg_u64(ctx.args, "echo", 0);
    if (ls_arg_u64(ctx.args, "trap_at", 0) == (uint64_t)ctx.tick) __builtin_trap();
    if (ls_arg_u64(ctx.args, "done_at", 0) == (uint64_t)ctx.tick) return LS_DONE;
    ls_bytes v;
    if (!subscribed && ls_arg(ctx.args, "sub", &v)) {
        ls_send(ls_bytes_of("$subscribe"), v);
        subscribed = 1;
    }
    LS_BUF(payload, 96);
    ls_buf_str(&payload, "t=");
    ls_buf_i64(&payload, ctx.tick);
    ls_buf_str(&payload, " r=");
    ls_buf_u64(&payload, ls_random_u64() % 1000000);
    ls_buf_str(&payload, " n=");
    ls_buf_u64(&payload, received);
    if (ls_arg(ctx.args, "to", &v)) ls_send(v, ls_buf_view(&payload));
    if (ls_arg_u64(ctx.args, "bcast", 0)) ls_send(ls_bytes_of("*"), ls_buf_view(&payload));
    if (ls_arg(ctx.args, "topic", &v) && v.len < LS_MAX_NAME) {
        LS_BUF(dest, 80);
        ls_buf_str(&dest, "#");
        ls_buf_bytes(&dest, v);
        ls_send(ls_buf_view(&dest), ls_buf_view(&payload));
    }
    if (echo_on) {
        for (uint32_t i = 0; i < n_replies; i++) {
            LS_BUF(re, 80);
            ls_buf_str(&re, "re:");
            ls_bytes orig = {reply_payload[i], reply_plen[i]};
            ls_buf_bytes(&re, orig);
            ls_bytes to = {reply_to[i], reply_len[i]};
            ls_send(to, ls_buf_view(&re));
        }
    }
    n_replies = 0;
    return ls_arg_u64(ctx.args, "idle", 0) ? LS_IDLE : LS_OK;
}
