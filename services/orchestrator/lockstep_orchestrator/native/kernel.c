/* Small helpers for the orchestrator's columnar tick path (lockstep_orchestrator._native).
 * Built at first use with `python -m ziglang cc`; a numpy fallback computes the same. */
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
 * srcs[which[i]][starts[i]:+lens[i]]. group_end[g] is one past the last segment of g. */
void ls_group_fnv(const uint8_t *const *srcs, const int32_t *which, const int64_t *starts,
                  const int64_t *lens, const int64_t *group_end, int64_t ngroups,
                  uint64_t *out) {
    int64_t i = 0;
    for (int64_t g = 0; g < ngroups; g++) {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (; i < group_end[g]; i++) {
            const uint8_t *p = srcs[which[i]] + starts[i];
            for (int64_t j = 0; j < lens[i]; j++) {
                h ^= p[j];
                h *= 0x100000001b3ULL;
            }
        }
        out[g] = h;
    }
}
