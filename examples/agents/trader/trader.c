/*
 * trader: a noise trader in the market example (see market.c for the protocol).
 *
 * Each tick, while it has orders left, the trader flips a coin (from its own
 * host-served random stream) to bid or ask, picks a limit price within `spread` of the
 * last traded price it heard on #<topic> (at first `fair`), and a quantity of 1 to
 * `max_qty`. It reserves what the order could cost -- cash for a bid, shares for an
 * ask -- and skips the tick if it cannot afford it. Fills and cancels from the market
 * settle the reservation. When its orders are used up it sleeps (LS_IDLE) and wakes
 * only for fills, cancels and prices.
 *
 * Spawn arguments ("key=value" tokens):
 *   market=NAME    the market agent (default "market")
 *   cash=C         starting cash (default 10000)
 *   shares=S       starting shares (default 100)
 *   fair=P         first reference price (default 100)
 *   spread=D       limit price = reference +/- up to D (default 5)
 *   max_qty=Q      largest order (default 5)
 *   orders=K       orders to place, 0 = one every tick for ever (default 0)
 *   topic=NAME     price topic to subscribe to (default "prices"; "none" = do not)
 */
#define LOCKSTEP_DEFAULT_ALLOC
#define LOCKSTEP_DEFAULT_INIT
#include "lockstep.h"

static int configured;
static uint8_t market_storage[LS_MAX_NAME];
static ls_bytes market;
static uint64_t cash, shares;   /* free (not reserved) */
static uint64_t reference;      /* price my limits are drawn around */
static uint64_t spread, max_qty, orders_left;
static int unlimited;
static uint64_t bought, sold;   /* shares, since spawn */

static int configure(const ls_context *ctx) {
    ls_bytes v;
    if (!ls_arg(ctx->args, "market", &v)) v = ls_bytes_of("market");
    if (v.len == 0 || v.len > LS_MAX_NAME) return -1;
    for (uint32_t i = 0; i < v.len; i++) market_storage[i] = v.ptr[i];
    market.ptr = market_storage;
    market.len = v.len;
    cash = ls_arg_u64(ctx->args, "cash", 10000);
    shares = ls_arg_u64(ctx->args, "shares", 100);
    reference = ls_arg_u64(ctx->args, "fair", 100);
    spread = ls_arg_u64(ctx->args, "spread", 5);
    max_qty = ls_arg_u64(ctx->args, "max_qty", 5);
    orders_left = ls_arg_u64(ctx->args, "orders", 0);
    unlimited = orders_left == 0;
    if (max_qty == 0 || reference == 0) return -1;
    if (!ls_arg(ctx->args, "topic", &v)) v = ls_bytes_of("prices");
    if (!ls_bytes_eq_str(v, "none")) ls_send(ls_bytes_of("$subscribe"), v);
    configured = 1;
    return 0;
}

/* Splits s into up to 5 space-separated tokens; returns how many (-1: more). */
static int tokens(ls_bytes s, ls_bytes out[5]) {
    int n = 0;
    uint32_t i = 0;
    while (i < s.len && n < 5) {
        while (i < s.len && s.ptr[i] == ' ') i++;
        uint32_t start = i;
        while (i < s.len && s.ptr[i] != ' ') i++;
        if (i > start) {
            out[n].ptr = s.ptr + start;
            out[n].len = i - start;
            n++;
        }
    }
    return i < s.len ? -1 : n;
}

int32_t agent_receive(int32_t message_ptr) {
    ls_message m;
    ls_bytes t[5];
    uint64_t a, b, c;
    if (ls_message_read(message_ptr, &m) != 0) return LS_ERR_BAD_ARG;
    if (m.kind != LS_KIND_AGENT) return LS_OK;
    int n = tokens(m.payload, t);
    if (n == 2 && ls_bytes_eq_str(t[0], "price") && ls_parse_u64(t[1], &a) == 0 && a > 0) {
        reference = a;
    } else if (n == 5 && ls_bytes_eq_str(t[0], "fill") && ls_parse_u64(t[2], &a) == 0 &&
               ls_parse_u64(t[3], &b) == 0 && ls_parse_u64(t[4], &c) == 0) {
        /* fill <side> <qty a> <price b> <limit c> */
        if (ls_bytes_eq_str(t[1], "buy")) {
            shares += a;
            cash += (c - b) * a; /* reserved at the limit, paid the trade price */
            bought += a;
        } else {
            cash += b * a;
            sold += a;
        }
    } else if (n == 4 && ls_bytes_eq_str(t[0], "cancel") && ls_parse_u64(t[2], &a) == 0 &&
               ls_parse_u64(t[3], &c) == 0) {
        /* cancel <side> <qty a> <limit c>: the reservation comes back */
        if (ls_bytes_eq_str(t[1], "buy")) cash += c * a;
        else shares += a;
    }
    return LS_OK;
}

int32_t agent_step(int32_t context_ptr) {
    ls_context ctx;
    if (ls_context_read(context_ptr, &ctx) != 0) return LS_ERR_BAD_ARG;
    if (!configured && configure(&ctx) != 0) {
        ls_log_str(LS_LOG_ERROR, "bad arguments (market=, fair= and max_qty= must be non-empty/positive)");
        return LS_DONE;
    }
    if (!unlimited && orders_left == 0) return LS_IDLE;
    /* Three draws every tick, whether or not the order is affordable, so the random
     * stream's position does not depend on my balance. */
    int is_bid = ls_random_below(2) == 0;
    uint64_t offset = ls_random_below(2 * spread + 1);
    uint64_t qty = 1 + ls_random_below(max_qty);
    uint64_t price = reference + offset > spread ? reference + offset - spread : 1;
    if (is_bid ? cash < price * qty : shares < qty) return LS_OK; /* cannot afford: skip */
    LS_BUF(msg, 64);
    ls_buf_str(&msg, is_bid ? "bid " : "ask ");
    ls_buf_u64(ls_buf_str(ls_buf_u64(&msg, price), " "), qty);
    if (ls_send(market, ls_buf_view(&msg)) != 0) return LS_OK;
    if (is_bid) cash -= price * qty;
    else shares -= qty;
    if (!unlimited) orders_left--;
    return LS_OK;
}

/* When an operator terminates me: my final position. */
int32_t agent_shutdown(void) {
    LS_BUF(line, 128);
    ls_buf_u64(ls_buf_str(&line, "cash="), cash);
    ls_buf_u64(ls_buf_str(&line, " shares="), shares);
    ls_buf_u64(ls_buf_str(&line, " bought="), bought);
    ls_buf_u64(ls_buf_str(&line, " sold="), sold);
    ls_log_buf(LS_LOG_INFO, &line);
    return LS_OK;
}
