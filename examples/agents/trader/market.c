/*
 * market: a deterministic continuous double auction for the trader example.
 *
 * Traders send "bid <price> <qty>" or "ask <price> <qty>" (integers). The market books
 * each order in arrival order -- the host's canonical delivery order -- and at every
 * step matches the best bid (highest price, then earliest) against the best ask (lowest
 * price, then earliest) while they cross. A trade happens at the price of the order that
 * was booked first, for the smaller quantity, and both sides get a fill:
 *     "fill buy <qty> <price> <limit>"   /   "fill sell <qty> <price> <limit>"
 * Orders still open `ttl` ticks after booking are cancelled, as are orders that do not
 * fit in the book: "cancel buy <qty> <limit>" / "cancel sell <qty> <limit>".
 * After a step with trades the market publishes "price <last>" to #<topic>.
 *
 * Spawn arguments: ttl=T (default 20), topic=NAME (default "prices"; "none" = do not
 * publish).
 */
#define LOCKSTEP_DEFAULT_ALLOC
#define LOCKSTEP_DEFAULT_INIT
#define LOCKSTEP_DEFAULT_SHUTDOWN
#include "lockstep.h"

#define BOOK_SIZE 512 /* orders per side */

typedef struct order {
    uint64_t seq;   /* booking order: time priority */
    int64_t tick;   /* booked at */
    uint64_t price; /* limit */
    uint64_t qty;   /* still open; 0 = free slot */
    uint8_t owner[LS_MAX_NAME];
    uint32_t owner_len;
} order;

static order bids[BOOK_SIZE], asks[BOOK_SIZE];
static uint64_t next_seq = 1;
static int configured;
static uint64_t ttl = 20;
static uint8_t topic_storage[LS_MAX_NAME + 1];
static ls_bytes topic; /* "#name", or empty */

/* Totals since spawn, for the log. */
static uint64_t trades, volume;

static ls_bytes owner_of(const order *o) {
    ls_bytes b = {o->owner, o->owner_len};
    return b;
}

/* "<verb> <side> <qty> [<price>] <limit>" to the order's owner. */
static void notify(const order *o, const char *verb, const char *side, uint64_t qty,
                   uint64_t price, int with_price) {
    LS_BUF(msg, 96);
    ls_buf_str(ls_buf_str(ls_buf_str(ls_buf_str(&msg, verb), " "), side), " ");
    ls_buf_u64(&msg, qty);
    if (with_price) ls_buf_u64(ls_buf_str(&msg, " "), price);
    ls_buf_u64(ls_buf_str(&msg, " "), o->price);
    ls_send(owner_of(o), ls_buf_view(&msg));
}

/* Splits "word a b" into up to 3 space-separated tokens; returns how many. */
static int tokens(ls_bytes s, ls_bytes out[3]) {
    int n = 0;
    uint32_t i = 0;
    while (i < s.len && n < 3) {
        while (i < s.len && s.ptr[i] == ' ') i++;
        uint32_t start = i;
        while (i < s.len && s.ptr[i] != ' ') i++;
        if (i > start) {
            out[n].ptr = s.ptr + start;
            out[n].len = i - start;
            n++;
        }
    }
    return i < s.len ? -1 : n; /* -1: trailing tokens */
}

static void book(ls_bytes owner, int is_bid, uint64_t price, uint64_t qty, int64_t tick) {
    order *side = is_bid ? bids : asks;
    for (uint32_t i = 0; i < BOOK_SIZE; i++) {
        if (side[i].qty != 0) continue;
        order *o = &side[i];
        o->seq = next_seq++;
        o->tick = tick;
        o->price = price;
        o->qty = qty;
        o->owner_len = owner.len;
        for (uint32_t j = 0; j < owner.len; j++) o->owner[j] = owner.ptr[j];
        return;
    }
    /* Book full: refuse the order so the trader gets its reservation back. */
    order tmp = {0, tick, price, qty, {0}, owner.len};
    for (uint32_t j = 0; j < owner.len; j++) tmp.owner[j] = owner.ptr[j];
    notify(&tmp, "cancel", is_bid ? "buy" : "sell", qty, 0, 0);
}

int32_t agent_receive(int32_t message_ptr) {
    ls_message m;
    ls_bytes tok[3];
    uint64_t price, qty;
    if (ls_message_read(message_ptr, &m) != 0) return LS_ERR_BAD_ARG;
    if (m.kind != LS_KIND_AGENT || m.sender.len == 0 || m.sender.len > LS_MAX_NAME) return LS_OK;
    int is_bid = 0;
    if (tokens(m.payload, tok) == 3 && ((is_bid = ls_bytes_eq_str(tok[0], "bid")) || ls_bytes_eq_str(tok[0], "ask")) &&
        ls_parse_u64(tok[1], &price) == 0 && ls_parse_u64(tok[2], &qty) == 0 && price > 0 && qty > 0) {
        book(m.sender, is_bid, price, qty, m.sent_tick);
    } else {
        ls_log_str(LS_LOG_WARN, "ignored a malformed order");
    }
    return LS_OK;
}

/* Index of the best open order on a side, or -1. Ties on price go to the lower seq. */
static int best(const order *side, int is_bid) {
    int at = -1;
    for (int i = 0; i < BOOK_SIZE; i++) {
        const order *o = &side[i];
        if (o->qty == 0) continue;
        if (at < 0) {
            at = i;
            continue;
        }
        const order *b = &side[at];
        int better = is_bid ? o->price > b->price : o->price < b->price;
        if (better || (o->price == b->price && o->seq < b->seq)) at = i;
    }
    return at;
}

int32_t agent_step(int32_t context_ptr) {
    ls_context ctx;
    if (ls_context_read(context_ptr, &ctx) != 0) return LS_ERR_BAD_ARG;
    if (!configured) {
        ls_bytes v;
        ttl = ls_arg_u64(ctx.args, "ttl", 20);
        if (!ls_arg(ctx.args, "topic", &v)) v = ls_bytes_of("prices");
        if (!ls_bytes_eq_str(v, "none") && v.len > 0 && v.len <= LS_MAX_NAME) {
            topic_storage[0] = '#';
            for (uint32_t i = 0; i < v.len; i++) topic_storage[i + 1] = v.ptr[i];
            topic.ptr = topic_storage;
            topic.len = v.len + 1;
        }
        configured = 1;
    }
    uint64_t n = 0, vol = 0, last = 0;
    for (;;) {
        int b = best(bids, 1), a = best(asks, 0);
        if (b < 0 || a < 0 || bids[b].price < asks[a].price) break;
        order *bid = &bids[b], *ask = &asks[a];
        uint64_t price = bid->seq < ask->seq ? bid->price : ask->price;
        uint64_t qty = bid->qty < ask->qty ? bid->qty : ask->qty;
        notify(bid, "fill", "buy", qty, price, 1);
        notify(ask, "fill", "sell", qty, price, 1);
        bid->qty -= qty;
        ask->qty -= qty;
        n++;
        vol += qty;
        last = price;
    }
    /* Expire what is still open after ttl ticks (the book's slots are scanned in index
     * order, which is deterministic). */
    uint64_t open = 0;
    for (int s = 0; s < 2; s++) {
        order *side = s == 0 ? bids : asks;
        for (int i = 0; i < BOOK_SIZE; i++) {
            order *o = &side[i];
            if (o->qty == 0) continue;
            if (ctx.tick - o->tick >= (int64_t)ttl) {
                notify(o, "cancel", s == 0 ? "buy" : "sell", o->qty, 0, 0);
                o->qty = 0;
            } else {
                open++;
            }
        }
    }
    if (n) {
        trades += n;
        volume += vol;
        LS_BUF(line, 128);
        ls_buf_u64(ls_buf_str(&line, "trades="), n);
        ls_buf_u64(ls_buf_str(&line, " volume="), vol);
        ls_buf_u64(ls_buf_str(&line, " last="), last);
        ls_buf_u64(ls_buf_str(&line, " open="), open);
        ls_log_buf(LS_LOG_INFO, &line);
        if (topic.len) {
            LS_BUF(msg, 32);
            ls_buf_u64(ls_buf_str(&msg, "price "), last);
            ls_send(topic, ls_buf_view(&msg));
        }
    }
    /* Open orders need the expiry check every tick; an empty book can sleep. */
    return open ? LS_OK : LS_IDLE;
}
