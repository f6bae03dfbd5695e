/*
 * villager: an LLM agent of a small town that passes rumours on (model "smollm2").
 *
 * Villagers sit in a ring (peer=NEXT). At its first step a villager with start=1 asks the
 * model for a piece of gossip in its persona and tells it to its peer. A villager that is
 * told something (a kind 0 message) asks the model to pass it on to its own peer, in its
 * persona, up to turns=N times; after that it only logs what it hears. Each request is a
 * chat (system = the persona, user = the instruction) built with the SDK's ls_chat_*
 * helpers; the reply (kind 2, at tick t+L) is logged as "<me> -> <peer>: <text>" and sent.
 *
 * Spawn arguments:
 *   model=NAME       the llm model (default smollm2)
 *   peer=NAME        who I talk to (required)
 *   start=1          start a rumour at my first step
 *   turns=N          rumours I pass on at most (default 2)
 *   max_tokens=N     tokens per reply (default 40)
 *   persona=TEXT...  must come last: everything after "persona=" is the system prompt
 */
#define LOCKSTEP_DEFAULT_ALLOC
#define LOCKSTEP_DEFAULT_INIT
#define LOCKSTEP_DEFAULT_SHUTDOWN
#include "lockstep.h"

#define MAX_TEXT 1024

static int configured;
static uint8_t model[65];
static uint8_t me[LS_MAX_NAME];
static uint32_t me_len;
static uint8_t peer[LS_MAX_NAME];
static uint32_t peer_len;
static uint8_t persona[MAX_TEXT];
static uint32_t persona_len;
static uint64_t turns_left = 2;
static uint32_t max_tokens = 40;
static uint8_t request_storage[4096];

static ls_bytes view(const uint8_t *p, uint32_t n) {
    ls_bytes b = {p, n};
    return b;
}

static void ask(ls_buf *instruction) {
    ls_buf req = {request_storage, 0, sizeof request_storage, 0};
    ls_chat_begin(&req);
    ls_chat_add(&req, "system", view(persona, persona_len));
    ls_chat_add(&req, "user", ls_buf_view(instruction));
    ls_chat_end(&req, max_tokens, 700);
    int64_t id = ls_chat((const char *)model, &req);
    if (id < 0) {
        LS_BUF(line, 64);
        ls_buf_i64(ls_buf_str(&line, "chat request refused: "), id);
        ls_log_buf(LS_LOG_WARN, &line);
    }
}

static void start_rumour(void) {
    LS_BUF(text, 256);
    ls_buf_str(&text, "Tell your neighbour ");
    ls_buf_bytes(&text, view(peer, peer_len));
    ls_buf_str(&text, " one piece of town gossip, in one short sentence.");
    ask(&text);
}

static void pass_on(ls_bytes sender, ls_bytes heard) {
    LS_BUF(text, MAX_TEXT + 256);
    ls_buf_str(&text, "Your neighbour ");
    ls_buf_bytes(&text, sender);
    ls_buf_str(&text, " just told you: \"");
    ls_buf_bytes(&text, heard);
    ls_buf_str(&text, "\" Pass this on to ");
    ls_buf_bytes(&text, view(peer, peer_len));
    ls_buf_str(&text, " in one short sentence, with your own opinion.");
    ask(&text);
}

int32_t agent_receive(int32_t message_ptr) {
    ls_message m;
    ls_bytes reply;
    if (ls_message_read(message_ptr, &m) != 0) return LS_ERR_BAD_ARG;
    if (!configured) return LS_OK;
    if (ls_chat_reply(&m, &reply)) {
        LS_BUF(line, MAX_TEXT + 2 * LS_MAX_NAME + 8);
        ls_buf_bytes(&line, view(me, me_len));
        ls_buf_str(&line, " -> ");
        ls_buf_bytes(&line, view(peer, peer_len));
        ls_buf_str(&line, ": ");
        ls_buf_bytes(&line, reply);
        ls_log_buf(LS_LOG_INFO, &line);
        ls_send(view(peer, peer_len), reply);
    } else if (m.kind == LS_KIND_INFER_ERROR) {
        LS_BUF(line, 512);
        ls_buf_bytes(ls_buf_str(&line, "the model failed: "), m.payload);
        ls_log_buf(LS_LOG_WARN, &line);
    } else if (m.kind == LS_KIND_AGENT || m.kind == LS_KIND_EXTERNAL) {
        ls_bytes heard = m.payload;
        if (heard.len > MAX_TEXT) heard.len = MAX_TEXT;
        if (turns_left > 0) {
            turns_left--;
            pass_on(m.sender, heard);
        } else {
            LS_BUF(line, MAX_TEXT + LS_MAX_NAME + 16);
            ls_buf_bytes(&line, view(me, me_len));
            ls_buf_str(&line, " heard from ");
            ls_buf_bytes(&line, m.sender);
            ls_buf_str(&line, ": ");
            ls_buf_bytes(&line, heard);
            ls_log_buf(LS_LOG_INFO, &line);
        }
    }
    return LS_OK;
}

int32_t agent_step(int32_t context_ptr) {
    ls_context ctx;
    if (ls_context_read(context_ptr, &ctx) != 0) return LS_ERR_BAD_ARG;
    if (configured) return LS_IDLE;
    ls_bytes v;
    if (!ls_arg(ctx.args, "peer", &v) || v.len == 0 || v.len > LS_MAX_NAME) {
        ls_log_str(LS_LOG_ERROR, "missing peer=NAME argument");
        return LS_DONE;
    }
    for (uint32_t i = 0; i < v.len; i++) peer[i] = v.ptr[i];
    peer_len = v.len;
    if (!ls_arg(ctx.args, "model", &v) || v.len == 0 || v.len > 64) v = ls_bytes_of("smollm2");
    for (uint32_t i = 0; i < v.len; i++) model[i] = v.ptr[i];
    model[v.len] = 0;
    me_len = ctx.name.len <= LS_MAX_NAME ? ctx.name.len : LS_MAX_NAME;
    for (uint32_t i = 0; i < me_len; i++) me[i] = ctx.name.ptr[i];
    turns_left = ls_arg_u64(ctx.args, "turns", 2);
    max_tokens = (uint32_t)ls_arg_u64(ctx.args, "max_tokens", 40);
    /* persona= runs to the end of the arguments, spaces included. */
    for (uint32_t i = 0; i + 8 <= ctx.args.len; i++) {
        ls_bytes rest = {ctx.args.ptr + i, ctx.args.len - i};
        if ((i == 0 || ls_arg_is_sep(ctx.args.ptr[i - 1])) && ls_bytes_starts_with(rest, "persona=")) {
            persona_len = rest.len - 8 <= MAX_TEXT ? rest.len - 8 : MAX_TEXT;
            for (uint32_t j = 0; j < persona_len; j++) persona[j] = rest.ptr[8 + j];
            break;
        }
    }
    configured = 1;
    if (ls_arg_u64(ctx.args, "start", 0) == 1) start_rumour();
    return LS_IDLE;
}
