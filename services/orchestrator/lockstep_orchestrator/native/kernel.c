/* The orchestrator's tick phases over packed buffers (lockstep_orchestrator._native), one
 * call each. Built at first use with `python -m ziglang cc`; the kernel's numpy forms
 * compute the same bytes (tests/orchestrator/test_kernel.py and tests/determinism run
 * both). Little-endian hosts only, as the packed wire (docs/wire.md). */
#include <stdint.h>
#include <string.h>

/* out = concatenation of srcs[which[i]][starts[i] : starts[i]+lens[i]] for i in 0..n-1. */
int64_t ls_gather(const uint8_t *const *srcs, const int32_t *which, const int64_t *starts,
                  const int64_t *lens, int64_t n, uint8_t *out) {
    uint8_t *o = out;
    for (int64_t i = 0; i < n; i++) {
        int64_t len = lens[i];
        if (len > 0) {
            memcpy(o, srcs[which[i]] + starts[i], (size_t)len);
            o += len;
        }
    }
    return (int64_t)(o - out);
}

/* Walk packed sends (u32 payload length, u16 destination length, destination, payload).
 * Row r has counts[r] sends in buf[offs[r] : offs[r]+lens[r]]. Per send writes the row, the
 * send index (1-based), destination offset/length and payload offset/length.
 * Returns the number of sends, or -(r+1) for the first row whose sends do not tile. */
int64_t ls_parse_sends(const uint8_t *buf, int64_t nrows, const int64_t *offs,
                       const int64_t *lens, const int64_t *counts, int64_t *row,
                       int64_t *idx, int64_t *doff, int64_t *dlen, int64_t *poff,
                       int64_t *plen) {
    int64_t m = 0;
    for (int64_t r = 0; r < nrows; r++) {
        int64_t pos = offs[r], end = offs[r] + lens[r];
        for (int64_t k = 1; k <= counts[r]; k++) {
            if (pos + 6 > end) return -(r + 1);
            const uint8_t *p = buf + pos;
            int64_t pl = (int64_t)p[0] | ((int64_t)p[1] << 8) | ((int64_t)p[2] << 16)
                         | ((int64_t)p[3] << 24);
            int64_t dl = (int64_t)p[4] | ((int64_t)p[5] << 8);
            if (pos + 6 + dl + pl > end) return -(r + 1);
            row[m] = r; idx[m] = k; doff[m] = pos + 6; dlen[m] = dl;
            poff[m] = pos + 6 + dl; plen[m] = pl;
            m++;
            pos += 6 + dl + pl;
        }
        if (pos != end) return -(r + 1);
    }
    return m;
}

/* Per-agent check (docs/determinism.md, "per-agent checks, version 2"): for each group g of
 * segments (contiguous in the arrays, in digest order), FNV-1a 64 over the concatenation of
 * srcs[which[i]][starts[i]:+lens[i]]. group_end[g] is one past the last segment of g.
 * FNV-1a is one multiply per byte in a chain, so four groups are hashed side by side (four
 * independent chains keep the multiplier busy); the result is the same as one at a time. */
#define FNV_OFF 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv_more(uint64_t h, const uint8_t *p, int64_t n) {
    for (int64_t j = 0; j < n; j++) { h ^= p[j]; h *= FNV_PRIME; }
    return h;
}

void ls_group_fnv(const uint8_t *const *srcs, const int32_t *which, const int64_t *starts,
                  const int64_t *lens, const int64_t *group_end, int64_t ngroups,
                  uint64_t *out) {
    int64_t g = 0;
    for (; g + 4 <= ngroups; g += 4) {
        uint64_t h[4];
        int64_t seg[4], end[4], rem[4];
        const uint8_t *p[4];
        for (int l = 0; l < 4; l++) {
            h[l] = FNV_OFF;
            seg[l] = g + l ? group_end[g + l - 1] : 0;
            end[l] = group_end[g + l];
            rem[l] = 0;
            p[l] = NULL;
        }
        for (;;) {
            int active = 0;
            int64_t k = INT64_MAX;
            for (int l = 0; l < 4; l++) {
                while (rem[l] == 0 && seg[l] < end[l]) {
                    p[l] = srcs[which[seg[l]]] + starts[seg[l]];
                    rem[l] = lens[seg[l]];
                    seg[l]++;
                }
                if (rem[l] > 0) {
                    active++;
                    if (rem[l] < k) k = rem[l];
                }
            }
            if (!active) break;
            if (active < 4) { /* the lanes left finish one by one */
                for (int l = 0; l < 4; l++) {
                    h[l] = fnv_more(h[l], p[l], rem[l]);
                    while (seg[l] < end[l]) {
                        h[l] = fnv_more(h[l], srcs[which[seg[l]]] + starts[seg[l]], lens[seg[l]]);
                        seg[l]++;
                    }
                    rem[l] = 0;
                }
                break;
            }
            uint64_t h0 = h[0], h1 = h[1], h2 = h[2], h3 = h[3];
            const uint8_t *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
            for (int64_t j = 0; j < k; j++) {
                h0 = (h0 ^ p0[j]) * FNV_PRIME;
                h1 = (h1 ^ p1[j]) * FNV_PRIME;
                h2 = (h2 ^ p2[j]) * FNV_PRIME;
                h3 = (h3 ^ p3[j]) * FNV_PRIME;
            }
            h[0] = h0; h[1] = h1; h[2] = h2; h[3] = h3;
            for (int l = 0; l < 4; l++) { p[l] += k; rem[l] -= k; }
        }
        for (int l = 0; l < 4; l++) out[g + l] = h[l];
    }
    for (; g < ngroups; g++) {
        uint64_t h = FNV_OFF;
        for (int64_t i = g ? group_end[g - 1] : 0; i < group_end[g]; i++)
            h = fnv_more(h, srcs[which[i]] + starts[i], lens[i]);
        out[g] = h;
    }
}

/* ------------------------------------------------------------------ agent names */
/* An open-addressing table of the agents' names: slots[cap] (cap a power of two, at least
 * twice the agents) hold the sequence (row + 1) of the name that hashes there, 0 = empty.
 * Names are unique (the orchestrator refuses a duplicate at spawn). */
void ls_names_build(const uint8_t *names, const int64_t *off, const int64_t *len, int64_t n,
                    int64_t *slots, int64_t cap) {
    memset(slots, 0, (size_t)cap * sizeof(int64_t));
    uint64_t mask = (uint64_t)cap - 1;
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = fnv_more(FNV_OFF, names + off[i], len[i]) & mask;
        while (slots[h]) h = (h + 1) & mask;
        slots[h] = i + 1;
    }
}

/* out[k] = sequence of the agent named buf[doff[k] : doff[k]+dlen[k]], 0 when none. Names
 * of 0 or more than max_len bytes are never looked up (0), as the numpy fallback.
 * The probes land anywhere in tables of megabytes (100,000 agents: slots 2 MiB, name
 * offsets and lengths 0.8 MiB each), which the pools' stepping has pushed out of the
 * caches, so a lookup waits for memory three times (slot, length and offset, name). The
 * hashes are computed first (out[k] holds the slot index meanwhile); then lookup k
 * prefetches the first slot of lookup k + LOOKAHEAD, from its slot (fetched by then) the
 * length and offset of lookup k + LOOKAHEAD / 2, and from its offset the name of lookup
 * k + LOOKAHEAD / 4 (100,000 lookups with cold caches: 6.9-10.9 -> 2.9-4.0 ms). Prefetches
 * are hints: the result is the same without them. */
#define LOOKAHEAD 16
void ls_names_lookup(const uint8_t *names, const int64_t *off, const int64_t *len,
                     const int64_t *slots, int64_t cap, const uint8_t *buf, const int64_t *doff,
                     const int64_t *dlen, int64_t m, int64_t max_len, int64_t *out) {
    uint64_t mask = (uint64_t)cap - 1;
    for (int64_t k = 0; k < m; k++) {
        int64_t dl = dlen[k];
        out[k] = dl <= 0 || dl > max_len ? -1
                                         : (int64_t)(fnv_more(FNV_OFF, buf + doff[k], dl) & mask);
    }
    for (int64_t k = 0; k < m; k++) {
        if (k + LOOKAHEAD < m && out[k + LOOKAHEAD] >= 0)
            __builtin_prefetch(slots + out[k + LOOKAHEAD], 0, 1);
        if (k + LOOKAHEAD / 2 < m && out[k + LOOKAHEAD / 2] >= 0) {
            int64_t s = slots[out[k + LOOKAHEAD / 2]];
            if (s) {
                __builtin_prefetch(len + s - 1, 0, 1);
                __builtin_prefetch(off + s - 1, 0, 1);
            }
        }
        if (k + LOOKAHEAD / 4 < m && out[k + LOOKAHEAD / 4] >= 0) {
            int64_t s = slots[out[k + LOOKAHEAD / 4]];
            if (s) __builtin_prefetch(names + off[s - 1], 0, 1);
        }
        int64_t h = out[k];
        out[k] = 0;
        if (h < 0) continue;
        int64_t dl = dlen[k];
        const uint8_t *d = buf + doff[k];
        int64_t s;
        while ((s = slots[h]) != 0) {
            if (len[s - 1] == dl && memcmp(names + off[s - 1], d, (size_t)dl) == 0) {
                out[k] = s;
                break;
            }
            h = (int64_t)(((uint64_t)h + 1) & mask);
        }
    }
}

/* ------------------------------------------------------------------ the step block */
static void put_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); } /* little-endian hosts */
static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* ------------------------------------------------------------------ per-agent checks */
/* The per-agent checks of a tick (version 2, docs/determinism.md): the nseg segments
 * data[starts[i]:+lens[i]] of agents seqs[i] (1..maxseq), grouped by sequence (a stable
 * counting sort: an agent's parts in digest order), each group's FNV-1a 64 written as a
 * packed row u32 seq + u64 check, in sequence order. scratch holds maxseq + 2 + 7 * nseg
 * int64. Returns the number of rows, or -1 if a sequence is out of range. */
int64_t ls_agent_checks(const uint8_t *data, int64_t nseg, const int64_t *seqs,
                        const int64_t *starts, const int64_t *lens, int64_t maxseq,
                        int64_t *scratch, uint8_t *out) {
    int64_t *first = scratch;          /* maxseq + 2: where each sequence's run starts */
    int64_t *ost = first + maxseq + 2; /* nseg: starts in group order */
    int64_t *oln = ost + nseg;         /* nseg: lengths in group order */
    int64_t *gend = oln + nseg;        /* per group: the end of its segments */
    int64_t *gseq = gend + nseg;       /* per group: its sequence */
    uint64_t *check = (uint64_t *)(gseq + nseg);
    int32_t *which = (int32_t *)(check + nseg); /* nseg int32: one source */
    memset(first, 0, (size_t)(maxseq + 2) * sizeof(int64_t));
    memset(which, 0, (size_t)nseg * sizeof(int32_t));
    for (int64_t i = 0; i < nseg; i++) {
        int64_t q = seqs[i];
        if (q < 1 || q > maxseq) return -1;
        first[q + 1]++;
    }
    int64_t ng = 0;
    for (int64_t q = 1; q <= maxseq; q++) {
        if (first[q + 1]) gseq[ng++] = q;
        first[q + 1] += first[q];
    }
    for (int64_t i = 0; i < nseg; i++) {
        int64_t at = first[seqs[i]]++;
        ost[at] = starts[i];
        oln[at] = lens[i];
    }
    for (int64_t g = 0; g < ng; g++) gend[g] = first[gseq[g]]; /* now each run's end */
    const uint8_t *srcs[1] = {data};
    ls_group_fnv(srcs, which, ost, oln, gend, ng, check);
    for (int64_t g = 0; g < ng; g++) {
        put_u32(out + 12 * g, (uint32_t)gseq[g]);
        put_u64(out + 12 * g + 4, check[g]);
    }
    return ng;
}


/* Result rows as the pools write them (lockstep.batch.RESULT_ROW, 64 bytes). */
typedef struct {
    uint64_t handle; int32_t code; uint32_t fault_kind; uint64_t fuel; uint32_t send_count;
    uint32_t refused; uint64_t off; uint32_t sends_len, logs_len, infers_len, fault_len;
    uint16_t log_count, infer_count; uint32_t reserved;
} ls_result_row;
_Static_assert(sizeof(ls_result_row) == 64, "RESULT_ROW is 64 bytes");

/* The tick's step block of the digest input (docs/determinism.md, "Ticks"): "STEP" u32 n;
 * per agent in step order u64 seq, lp(inbox batch) (u32 0 when it got no mail); then per
 * agent its result: "step" u64 seq i64 code u64 fuel u32 send_count, lp(sends), u32
 * refused, then its extra event bytes (xbuf, xlen[i] each, rows in order).
 * rows[i] is agent i's result row, living in bufs[which[i]] (its sends at rows[i].off);
 * its inbox records are records[rec_off[i] : +blen[i]], cnt[i] of them.
 * With out == NULL only the size is returned. Otherwise writes the block and, per agent,
 * where its inbox part (seg_start/seg_len[i]) and result part ([n + i]) lie in it. */
int64_t ls_step_block(int64_t n, const ls_result_row *rows, const int32_t *which,
                      const uint8_t *const *bufs, const int64_t *cnt, const int64_t *blen,
                      const uint8_t *records, const int64_t *rec_off, const uint8_t *xbuf,
                      const int64_t *xlen, uint8_t *out, int64_t *seg_start,
                      int64_t *seg_len) {
    int64_t size = 8;
    for (int64_t i = 0; i < n; i++)
        size += (cnt[i] > 0 ? 20 + blen[i] : 12) + 40 + (int64_t)rows[i].sends_len + xlen[i];
    if (out == NULL) return size;
    memcpy(out, "STEP", 4);
    put_u32(out + 4, (uint32_t)n);
    uint8_t *o = out + 8;
    for (int64_t i = 0; i < n; i++) {
        uint8_t *start = o;
        put_u64(o, rows[i].handle);
        if (cnt[i] > 0) {
            put_u32(o + 8, (uint32_t)(blen[i] + 8));
            put_u32(o + 12, (uint32_t)(blen[i] + 8));
            put_u32(o + 16, (uint32_t)cnt[i]);
            memcpy(o + 20, records + rec_off[i], (size_t)blen[i]);
            o += 20 + blen[i];
        } else {
            put_u32(o + 8, 0);
            o += 12;
        }
        seg_start[i] = start - out;
        seg_len[i] = o - start;
    }
    const uint8_t *x = xbuf;
    for (int64_t i = 0; i < n; i++) {
        const ls_result_row *r = &rows[i];
        uint8_t *start = o;
        memcpy(o, "step", 4);
        put_u64(o + 4, r->handle);
        put_u64(o + 12, (uint64_t)(int64_t)r->code);
        put_u64(o + 20, r->fuel);
        put_u32(o + 28, r->send_count);
        put_u32(o + 32, r->sends_len);
        memcpy(o + 36, bufs[which[i]] + r->off, r->sends_len);
        o += 36 + r->sends_len;
        put_u32(o, r->refused);
        o += 4;
        if (xlen[i] > 0) {
            memcpy(o, x, (size_t)xlen[i]);
            x += xlen[i];
            o += xlen[i];
        }
        seg_start[n + i] = start - out;
        seg_len[n + i] = o - start;
    }
    return o - out;
}

/* ------------------------------------------------------------------ routing */
/* The tick's sends routed in one pass (docs/determinism.md, "Routing"), the common case
 * here and the rest left to the kernel's general path. nrows result rows in canonical
 * order; row r is from agent sender_of_row[r], its counts[r] packed sends tile
 * big[offs[r] : +lens[r]]. For each send k (m in all, in order) writes its sender, index
 * (1-based), destination and payload offset/length, the live agent it names (target; 0
 * when the destination is not the name, of 1..max_len bytes, of a live agent: broadcast,
 * topic, subscription, unknown or gone) and its arrival number, arrival0 + k.
 * If no inbox can fill up this tick (each agent's waiting count plus the direct sends to it
 * plus twice the number of general sends stays under max_inbox), the direct sends to live
 * agents are delivered: their message records (docs/abi.md, "Message record": kind 0, the
 * sender's name, this tick) back to back in rec, in send order, their count and bytes
 * added to inbox_n / inbox_bytes, and their mail columns written compacted (ftarget,
 * fsender, fidx, farrival, foff, flen); the other sends' indices go to general. Otherwise
 * every send is general and nothing is delivered (the kernel then routes them one at a
 * time, in order).
 * Names: the table of ls_names_build (slots, cap). Live: state not terminated, and not
 * faulted unless a restart is pending (restart_at >= 0). scratch holds n + 1 int64.
 * Returns m, or -(r + 1) for the first row whose sends do not tile. out[0] = delivered
 * count, out[1] = general count, out[2] = 1 when exact, out[3] = payload bytes, out[4] =
 * record bytes. */
int64_t ls_route(const uint8_t *big, int64_t nrows, const int64_t *sender_of_row,
                 const int64_t *offs, const int64_t *lens, const int64_t *counts,
                 const uint8_t *names, const int64_t *name_off, const int64_t *name_len,
                 const int64_t *slots, int64_t cap, int64_t max_len, const int8_t *state,
                 const int64_t *restart_at, int64_t terminated, int64_t faulted, int64_t n,
                 int64_t *inbox_n, int64_t *inbox_bytes, int64_t arrival0, int64_t tick,
                 int64_t max_inbox, int64_t *scratch, int64_t *sender, int64_t *idx,
                 int64_t *doff, int64_t *dlen, int64_t *poff, int64_t *plen, int64_t *target,
                 int64_t *arrival, int64_t *ftarget, int64_t *fsender, int64_t *fidx,
                 int64_t *farrival, int64_t *foff, int64_t *flen, int64_t *general,
                 uint8_t *rec, int64_t *out) {
    int64_t m = ls_parse_sends(big, nrows, offs, lens, counts, sender, idx, doff, dlen, poff,
                               plen);
    if (m < 0) return m;
    for (int64_t k = 0; k < m; k++) sender[k] = sender_of_row[sender[k]]; /* row -> agent */
    int64_t payload = 0;
    for (int64_t k = 0; k < m; k++) payload += plen[k];
    ls_names_lookup(names, name_off, name_len, slots, cap, big, doff, dlen, m, max_len, target);
    int64_t *fast_n = scratch; /* direct sends per target sequence */
    memset(fast_n, 0, (size_t)(n + 1) * sizeof(int64_t));
    int64_t g = 0;
    for (int64_t k = 0; k < m; k++) {
        arrival[k] = arrival0 + k;
        if (k + LOOKAHEAD < m && target[k + LOOKAHEAD] > 0) { /* random rows: see above */
            __builtin_prefetch(state + target[k + LOOKAHEAD] - 1, 0, 1);
            __builtin_prefetch(fast_n + target[k + LOOKAHEAD], 1, 1);
        }
        int64_t q = target[k];
        if (q > 0) {
            int64_t st = state[q - 1];
            if (st == terminated || (st == faulted && restart_at[q - 1] < 0)) q = target[k] = 0;
        }
        if (q > 0) fast_n[q]++;
        else g++;
    }
    int64_t most = 0;
    for (int64_t q = 1; q <= n; q++)
        if (inbox_n[q - 1] + fast_n[q] > most) most = inbox_n[q - 1] + fast_n[q];
    out[3] = payload;
    if (n > 0 && most + 2 * g >= max_inbox) {
        for (int64_t k = 0; k < m; k++) general[k] = k;
        out[0] = 0; out[1] = m; out[2] = 1; out[4] = 0;
        return m;
    }
    int64_t f = 0, gi = 0;
    uint8_t *o = rec;
    for (int64_t k = 0; k < m; k++) {
        if (k + LOOKAHEAD < m && target[k + LOOKAHEAD] > 0) {
            __builtin_prefetch(inbox_n + target[k + LOOKAHEAD] - 1, 1, 1);
            __builtin_prefetch(inbox_bytes + target[k + LOOKAHEAD] - 1, 1, 1);
        }
        int64_t q = target[k];
        if (q == 0) {
            general[gi++] = k;
            continue;
        }
        int64_t s = sender[k] - 1, sl = name_len[s], dl = dlen[k], pl = plen[k];
        int64_t total = 32 + sl + dl + pl;
        put_u32(o, (uint32_t)total);
        o[4] = 0; /* kind: agent */
        o[5] = 0;
        put_u16(o + 6, (uint16_t)sl);
        put_u64(o + 8, (uint64_t)tick);
        put_u64(o + 16, 0); /* correlation */
        put_u32(o + 24, (uint32_t)pl);
        put_u16(o + 28, (uint16_t)dl);
        put_u16(o + 30, 0);
        memcpy(o + 32, names + name_off[s], (size_t)sl);
        memcpy(o + 32 + sl, big + doff[k], (size_t)dl);
        memcpy(o + 32 + sl + dl, big + poff[k], (size_t)pl);
        ftarget[f] = q; fsender[f] = sender[k]; fidx[f] = idx[k]; farrival[f] = arrival[k];
        foff[f] = o - rec; flen[f] = total;
        inbox_n[q - 1] += 1;
        inbox_bytes[q - 1] += total;
        o += total;
        f++;
    }
    out[0] = f; out[1] = gi; out[2] = 0; out[4] = o - rec;
    return m;
}

/* ------------------------------------------------------------------ delivery */
/* Delivery of the waiting mail to the agents stepped this tick (docs/determinism.md,
 * "Delivery"): m rows, visited in canonical order (order[k], or row k when order is NULL);
 * row r waits for agent target[r] (a sequence), its record is buf[off[r]:+length[r]].
 * pos[seq-1] is the agent's position in the step order (-1: not stepped); n agents step.
 * Each stepped agent gets its rows in canonical order while they fit in max_bytes together
 * with the 8-byte batch header (always at least one). Writes per position the count and the
 * bytes delivered, the delivered rows in delivery order (rows_out, returns how many), their
 * records back to back (records), and the rows left waiting in row order (rest, *n_rest).
 * scratch holds 2n + 1 int64 and tmp m. */
int64_t ls_deliver(int64_t m, const int64_t *order, const int64_t *target, const int64_t *off,
                   const int64_t *length, const uint8_t *buf, const int64_t *pos, int64_t n,
                   int64_t max_bytes, int64_t *cnt, int64_t *blen, int64_t *scratch,
                   int64_t *tmp, int64_t *rows_out, uint8_t *records, uint8_t *delivered,
                   int64_t *rest, int64_t *n_rest) {
    int64_t *start = scratch, *cursor = scratch + n + 1;
    memset(cnt, 0, (size_t)n * sizeof(int64_t));
    memset(blen, 0, (size_t)n * sizeof(int64_t));
    memset(delivered, 0, (size_t)m);
    /* Rows name their targets in any order: prefetch the rows ahead (as ls_names_lookup). */
#define ROW_AHEAD(k) (order ? order[(k) + LOOKAHEAD] : (k) + LOOKAHEAD)
    for (int64_t k = 0; k < m; k++) {
        if (k + LOOKAHEAD < m) __builtin_prefetch(pos + target[ROW_AHEAD(k)] - 1, 0, 1);
        int64_t r = order ? order[k] : k, p = pos[target[r] - 1];
        if (p >= 0) cnt[p]++;
    }
    start[0] = 0;
    for (int64_t p = 0; p < n; p++) {
        start[p + 1] = start[p] + cnt[p];
        cursor[p] = start[p];
    }
    for (int64_t k = 0; k < m; k++) {
        if (k + LOOKAHEAD < m) __builtin_prefetch(pos + target[ROW_AHEAD(k)] - 1, 0, 1);
        int64_t r = order ? order[k] : k, p = pos[target[r] - 1];
        if (p >= 0) tmp[cursor[p]++] = r;
    }
#undef ROW_AHEAD
    int64_t d = 0;
    uint8_t *o = records;
    for (int64_t p = 0; p < n; p++) {
        int64_t bytes = 0, got = 0;
        for (int64_t k = start[p]; k < start[p + 1]; k++) {
            if (k + LOOKAHEAD < start[n]) { /* tmp holds start[n] rows */
                int64_t ahead = tmp[k + LOOKAHEAD];
                __builtin_prefetch(buf + off[ahead], 0, 1);
                __builtin_prefetch(length + ahead, 0, 1);
            }
            int64_t r = tmp[k];
            if (got > 0 && bytes + length[r] + 8 > max_bytes) break;
            bytes += length[r];
            got++;
            delivered[r] = 1;
            rows_out[d++] = r;
            memcpy(o, buf + off[r], (size_t)length[r]);
            o += length[r];
        }
        cnt[p] = got;
        blen[p] = bytes;
    }
    int64_t q = 0;
    for (int64_t r = 0; r < m; r++)
        if (!delivered[r]) rest[q++] = r;
    *n_rest = q;
    return d;
}

/* ------------------------------------------------------------------ step requests */
/* The tick's step requests (docs/wire.md, "Step batch"), one per pool that has agents to
 * step, agents in step order: header "LSSQ" u16 1 u16 0 u32 k u32 0 i64 tick, k rows
 * {u64 seq, u64 offset of its records in the request, u32 bytes, u32 count}, the records.
 * Agent i of the step order (sequence seqs[i]) lives in pool pool_of[i] (< npools); its
 * records are records[rec_off[i] : +blen[i]], cnt[i] of them. Writes the requests back to
 * back into out (pool p's at req_off[p], req_len[p] bytes, 0 when it has none), and the step
 * positions of each pool's agents in step order: members[member_start[p] : member_start[p+1]].
 * scratch holds npools int64. Returns the bytes written. */
int64_t ls_pack_steps(int64_t n, int64_t npools, const int64_t *seqs, const int32_t *pool_of,
                      const int64_t *cnt, const int64_t *blen, const int64_t *rec_off,
                      const uint8_t *records, int64_t tick, uint8_t *out, int64_t *req_off,
                      int64_t *req_len, int64_t *members, int64_t *member_start,
                      int64_t *scratch) {
    int64_t *bytes = scratch;
    for (int64_t p = 0; p <= npools; p++) member_start[p] = 0;
    for (int64_t p = 0; p < npools; p++) bytes[p] = 0;
    for (int64_t i = 0; i < n; i++) {
        member_start[pool_of[i] + 1]++;
        bytes[pool_of[i]] += blen[i];
    }
    for (int64_t p = 0; p < npools; p++) member_start[p + 1] += member_start[p];
    int64_t pos = 0;
    for (int64_t p = 0; p < npools; p++) {
        int64_t k = member_start[p + 1] - member_start[p];
        req_off[p] = pos;
        req_len[p] = k ? 24 + 24 * k + bytes[p] : 0;
        pos += req_len[p];
        bytes[p] = member_start[p]; /* from here: the next member slot of pool p */
    }
    for (int64_t i = 0; i < n; i++) members[bytes[pool_of[i]]++] = i;
    for (int64_t p = 0; p < npools; p++) {
        int64_t k = member_start[p + 1] - member_start[p];
        if (!k) continue;
        uint8_t *h = out + req_off[p];
        memcpy(h, "LSSQ", 4);
        put_u16(h + 4, 1); /* version */
        put_u16(h + 6, 0);
        put_u32(h + 8, (uint32_t)k);
        put_u32(h + 12, 0);
        put_u64(h + 16, (uint64_t)tick);
        uint8_t *row = h + 24, *data = h + 24 + 24 * k;
        for (int64_t j = member_start[p]; j < member_start[p + 1]; j++) {
            int64_t i = members[j];
            put_u64(row, (uint64_t)seqs[i]);
            put_u64(row + 8, (uint64_t)(data - h));
            put_u32(row + 16, (uint32_t)blen[i]);
            put_u32(row + 20, (uint32_t)cnt[i]);
            memcpy(data, records + rec_off[i], (size_t)blen[i]);
            data += blen[i];
            row += 24;
        }
    }
    return pos;
}

/* Delivery and the step requests in one call: the n agents stepped this tick (sel[i] is
 * the row of the i-th in step order, of nseq agents in all) get their waiting mail
 * (ls_deliver over the m rows, order as there), their inbox counts and bytes go down and
 * their received counts up by what they got, and the per-pool requests are packed
 * (ls_pack_steps; agent row a lives in pool[a] < npools). records receives the delivered
 * records (at most the mail's bytes), delivered m bytes of scratch, out the requests (at
 * most 24 npools + 24 n + the mail's bytes). scratch holds nseq + 5n + 1 + 2m + npools
 * int64. Writes cnt and blen per step position, the rows left waiting (rest), the requests'
 * places (req_off, req_len, members, member_start as ls_pack_steps), and info[0] = the
 * messages delivered, info[1] = their bytes, info[2] = the rows left. Returns the bytes of
 * the requests. */
int64_t ls_deliver_pack(int64_t m, const int64_t *order, const int64_t *target,
                        const int64_t *off, const int64_t *length, const uint8_t *buf,
                        int64_t n, const int64_t *sel, int64_t nseq, const int32_t *pool,
                        int64_t npools, int64_t max_bytes, int64_t tick, int64_t *inbox_n,
                        int64_t *inbox_bytes, int64_t *received, int64_t *scratch, int64_t *cnt,
                        int64_t *blen, int64_t *rest, uint8_t *records, uint8_t *delivered,
                        uint8_t *out, int64_t *req_off, int64_t *req_len, int64_t *members,
                        int64_t *member_start, int64_t *info) {
    int64_t *pos = scratch;              /* nseq: step position of each agent row, or -1 */
    int64_t *dscratch = pos + nseq;      /* 2n + 1: ls_deliver's */
    int64_t *tmp = dscratch + 2 * n + 1; /* m */
    int64_t *rows_out = tmp + m;         /* m */
    int64_t *seqs = rows_out + m;        /* n */
    int64_t *rec_off = seqs + n;         /* n */
    int32_t *pool_of = (int32_t *)(rec_off + n); /* n int32, in n int64 */
    int64_t *pscratch = rec_off + 2 * n; /* npools: ls_pack_steps' */
    for (int64_t q = 0; q < nseq; q++) pos[q] = -1;
    for (int64_t i = 0; i < n; i++) pos[sel[i]] = i;
    ls_deliver(m, order, target, off, length, buf, pos, n, max_bytes, cnt, blen, dscratch, tmp,
               rows_out, records, delivered, rest, &info[2]);
    int64_t messages = 0, bytes = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t a = sel[i];
        inbox_n[a] -= cnt[i];
        inbox_bytes[a] -= blen[i];
        received[a] += cnt[i];
        messages += cnt[i];
        seqs[i] = a + 1;
        pool_of[i] = pool[a];
        rec_off[i] = bytes;
        bytes += blen[i];
    }
    info[0] = messages;
    info[1] = bytes;
    return ls_pack_steps(n, npools, seqs, pool_of, cnt, blen, rec_off, records, tick, out,
                         req_off, req_len, members, member_start, pscratch);
}

/* The pools' result rows back in step order: pool b (b-th of the pools asked) answered
 * rows[b] (count[b] of them) for the step positions members[lo[b] : hi[b]]. Copies each row
 * to table[position], and sets which[position] = b and local[position] = its row in b.
 * Returns -1 when all match the request, else the first b whose row count or sequences
 * differ. With size != NULL the rows' data must also tile each buffer (docs/wire.md): row
 * data back to back from the end of the table (rows[b] is head bytes into a buffer of
 * size[b] bytes) to the end of the buffer; else nbufs + b is returned for the first b
 * whose data does not (lockstep.batch.parse_results then says where). */
int64_t ls_take_results(int64_t nbufs, const ls_result_row *const *rows, const int64_t *count,
                        const int64_t *members, const int64_t *lo, const int64_t *hi,
                        const int64_t *seqs, ls_result_row *table, int32_t *which,
                        int64_t *local, const int64_t *size, int64_t head) {
    for (int64_t b = 0; b < nbufs; b++) {
        int64_t k = hi[b] - lo[b];
        if (count[b] != k) return b;
        uint64_t expect = (uint64_t)(head + k * (int64_t)sizeof(ls_result_row));
        for (int64_t j = 0; j < k; j++) {
            const ls_result_row *r = &rows[b][j];
            int64_t i = members[lo[b] + j];
            if ((int64_t)r->handle != seqs[i]) return b;
            if (size != NULL) {
                if (r->off != expect) return nbufs + b;
                expect += (uint64_t)r->sends_len + r->logs_len + r->infers_len + r->fault_len;
            }
            table[i] = *r;
            which[i] = (int32_t)b;
            local[i] = j;
        }
        if (size != NULL && expect != (uint64_t)size[b]) return nbufs + b;
    }
    return -1;
}

/* ------------------------------------------------------------------ step results */
/* Fold n step results (rows in step order; agent i is row sel[i] of the world's columns)
 * into the world: fuel and steps added, and the plain rows' state moved (to idle after
 * code 1 while running, back to running after another code while idle). A row is special
 * when its events need the kernel's Python path (it faulted, is done: code 2, logged, or
 * called inference): its index goes to special[] and its state is left to that path.
 * Returns the number of special rows; *fuel_sum gets the fuel of all. */
int64_t ls_absorb(int64_t n, const ls_result_row *rows, const int64_t *sel, int8_t *state,
                  int64_t *fuel, int64_t *steps, int64_t running, int64_t idle,
                  int64_t *special, int64_t *fuel_sum) {
    int64_t k = 0, total = 0;
    for (int64_t i = 0; i < n; i++) {
        const ls_result_row *r = &rows[i];
        int64_t a = sel[i], f = (int64_t)r->fuel;
        fuel[a] += f;
        steps[a] += 1;
        total += f;
        if (r->fault_kind != 0 || r->code == 2 || r->log_count != 0 || r->infer_count != 0) {
            special[k++] = i;
        } else if (r->code == 1) {
            if (state[a] == running) state[a] = (int8_t)idle;
        } else if (state[a] == idle) {
            state[a] = (int8_t)running;
        }
    }
    *fuel_sum = total;
    return k;
}

/* ------------------------------------------------------------------ after the step */
/* The pools' step results taken and folded in one call: ls_take_results (with the tiling
 * check) then ls_absorb over the table in step order. out[0] = -1 or what take_results
 * returned (nothing was folded then), out[1] = the special rows, out[2] = the fuel, out[3]
 * = the sends of rows that did not fault, out[4] = the sends' bytes of all rows. */
void ls_take_absorb(int64_t nbufs, const ls_result_row *const *rows, const int64_t *count,
                    const int64_t *members, const int64_t *lo, const int64_t *hi,
                    const int64_t *seqs, ls_result_row *table, int32_t *which, int64_t *local,
                    const int64_t *size, int64_t head, const int64_t *sel, int8_t *state,
                    int64_t *fuel, int64_t *steps, int64_t running, int64_t idle,
                    int64_t *special, int64_t *out) {
    int64_t n = hi[nbufs - 1];
    out[0] = ls_take_results(nbufs, rows, count, members, lo, hi, seqs, table, which, local,
                             size, head);
    out[1] = out[2] = out[3] = out[4] = 0;
    if (out[0] >= 0) return;
    out[1] = ls_absorb(n, table, sel, state, fuel, steps, running, idle, special, &out[2]);
    for (int64_t i = 0; i < n; i++) {
        if (table[i].fault_kind == 0) out[3] += table[i].send_count;
        out[4] += table[i].sends_len;
    }
}

/* The rest of a tick whose only routed rows are its step results (one per agent stepped):
 * the step block (ls_step_block into block, its segments into seg), then the rows' sends
 * routed (ls_route) in canonical order, which is sequence order here; the counts of sends
 * are added to sent[seq - 1]. The pools' buffers are copied back to back into big (their
 * total size) when there are several, and routed from there; bigout gets the buffer the
 * sends' offsets refer to (at most 64 buffers: INT64_MIN otherwise). scratch holds nseq + 1
 * + 4n int64; route_cols are ls_route's 15 output columns and out its out. Returns what
 * ls_route returned. */
int64_t ls_block_route(int64_t n, const ls_result_row *table, const int32_t *which,
                       int64_t nbufs, const uint8_t *const *bufs, const int64_t *size,
                       const int64_t *cnt, const int64_t *blen, const uint8_t *records,
                       const int64_t *rec_off, const uint8_t *xbuf, const int64_t *xlen,
                       uint8_t *block, int64_t *seg, uint8_t *big, const uint8_t **bigout,
                       const uint8_t *names, const int64_t *name_off, const int64_t *name_len,
                       const int64_t *slots, int64_t cap, int64_t max_len, const int8_t *state,
                       const int64_t *restart_at, int64_t terminated, int64_t faulted,
                       int64_t nseq, int64_t *inbox_n, int64_t *inbox_bytes, int64_t *sent,
                       int64_t arrival0, int64_t tick, int64_t max_inbox, int64_t *scratch,
                       int64_t *const *route_cols, uint8_t *rec, int64_t *out) {
    ls_step_block(n, table, which, bufs, cnt, blen, records, rec_off, xbuf, xlen, block, seg,
                  seg + 2 * n);
    int64_t base[64];
    const uint8_t *src = bufs[0];
    base[0] = 0;
    if (nbufs > 1) {
        if (nbufs > 64) return INT64_MIN;
        int64_t at = 0;
        for (int64_t b = 0; b < nbufs; b++) {
            base[b] = at;
            memcpy(big + at, bufs[b], (size_t)size[b]);
            at += size[b];
        }
        src = big;
    }
    *bigout = src;
    /* the routed rows in sequence order: a counting sort of the step positions */
    int64_t *first = scratch, *sender = first + nseq + 1, *off = sender + n;
    int64_t *slen = off + n, *counts = slen + n;
    memset(first, 0, (size_t)(nseq + 1) * sizeof(int64_t));
    int64_t nrows = 0;
    for (int64_t i = 0; i < n; i++)
        if (table[i].fault_kind == 0 && table[i].send_count > 0) {
            first[table[i].handle]++;
            nrows++;
        }
    int64_t acc = 0;
    for (int64_t q = 1; q <= nseq; q++) {
        int64_t c = first[q];
        first[q] = acc;
        acc += c;
    }
    for (int64_t i = 0; i < n; i++) {
        const ls_result_row *r = &table[i];
        if (r->fault_kind != 0 || r->send_count == 0) continue;
        int64_t q = (int64_t)r->handle, o = first[q]++;
        sender[o] = q;
        off[o] = base[which[i]] + (int64_t)r->off;
        slen[o] = r->sends_len;
        counts[o] = r->send_count;
        sent[q - 1] += r->send_count;
    }
    int64_t *const *c = route_cols;
    return ls_route(src, nrows, sender, off, slen, counts, names, name_off, name_len, slots, cap,
                    max_len, state, restart_at, terminated, faulted, nseq, inbox_n, inbox_bytes,
                    arrival0, tick, max_inbox, first, c[0], c[1], c[2], c[3], c[4], c[5], c[6],
                    c[7], c[8], c[9], c[10], c[11], c[12], c[13], c[14], rec, out);
}

/* ------------------------------------------------------------------ sends to route */
/* The result rows whose sends are routed this tick, in canonical order (sender sequence,
 * then source, then row within the source; docs/determinism.md, "Routing"). Source s has
 * k[s] rows: row j is tables[s][rows[s][j]], from agent seqs[s][j] (1..nseq), its sends at
 * base[s] + row.off in the concatenated result buffers. Rows that faulted or sent nothing
 * are left out. Writes per routed row the sender, the sends' offset, length and count, adds
 * the counts to sent[seq - 1], and returns the number of rows; *repeated is set when a
 * sender has more than one row. scratch holds nseq + 1 int64. */
int64_t ls_send_rows(int64_t nsrc, const int64_t *const *seqs,
                     const ls_result_row *const *tables, const int64_t *const *rows,
                     const int64_t *k, const int64_t *base, int64_t nseq, int64_t *scratch,
                     int64_t *sender, int64_t *off, int64_t *slen, int64_t *count,
                     int64_t *sent, int64_t *repeated) {
    int64_t *start = scratch;
    memset(start, 0, (size_t)(nseq + 1) * sizeof(int64_t));
    int64_t m = 0;
    for (int64_t s = 0; s < nsrc; s++)
        for (int64_t j = 0; j < k[s]; j++) {
            const ls_result_row *r = &tables[s][rows[s][j]];
            if (r->fault_kind == 0 && r->send_count > 0) {
                start[seqs[s][j]]++; /* counts in start[seq], seq >= 1 */
                m++;
            }
        }
    *repeated = 0;
    int64_t acc = 0;
    for (int64_t q = 1; q <= nseq; q++) {
        int64_t c = start[q];
        if (c > 1) *repeated = 1;
        start[q] = acc; /* first output slot of sender q */
        acc += c;
    }
    for (int64_t s = 0; s < nsrc; s++)
        for (int64_t j = 0; j < k[s]; j++) {
            const ls_result_row *r = &tables[s][rows[s][j]];
            if (r->fault_kind != 0 || r->send_count == 0) continue;
            int64_t q = seqs[s][j], o = start[q]++;
            sender[o] = q;
            off[o] = base[s] + (int64_t)r->off;
            slen[o] = r->sends_len;
            count[o] = r->send_count;
            sent[q - 1] += r->send_count;
        }
    return m;
}
