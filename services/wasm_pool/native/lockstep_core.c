/* Lockstep native stepping core: one call steps a whole packed batch (docs/wire.md) on the
 * wasmtime C API of the libwasmtime that the pinned wasmtime wheel ships.
 *
 * The wheel has no headers, so the subset used here is declared below; the Python loader
 * (lockstep_wasm_pool/_core.py) checks every struct size and offset against wasmtime-py's
 * ctypes definitions (ls_layout) before it uses this library.
 *
 * The core owns its agents: one Store per agent, instantiated from an InstancePre made on a
 * linker whose lockstep_v1 host functions are the C functions below. Semantics are those of
 * the Python reference engine (_engine.py), byte for byte; where a fault detail needs
 * wasmtime's trap text formatted (generic traps, instantiation errors) or a log line is not
 * valid UTF-8, the row is listed in the fixups and Python rewrites that row.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdbool.h>

/* ------------------------------------------------------------------ wasmtime subset */
typedef struct wasm_engine_t wasm_engine_t;
typedef struct wasmtime_module wasmtime_module_t;
typedef struct wasmtime_store wasmtime_store_t;
typedef struct wasmtime_context wasmtime_context_t;
typedef struct wasmtime_caller wasmtime_caller_t;
typedef struct wasmtime_linker wasmtime_linker_t;
typedef struct wasmtime_instance_pre wasmtime_instance_pre_t;
typedef struct wasmtime_error wasmtime_error_t;
typedef struct wasm_trap_t wasm_trap_t;
typedef struct wasm_frame_t wasm_frame_t;
typedef struct wasm_valtype_t wasm_valtype_t;
typedef struct wasm_functype_t wasm_functype_t;

typedef struct { size_t size; uint8_t *data; } wasm_byte_vec_t;
typedef struct { size_t size; wasm_valtype_t **data; } wasm_valtype_vec_t;
typedef struct { size_t size; wasm_frame_t **data; } wasm_frame_vec_t;

typedef struct { uint64_t store_id; void *priv; } wasmtime_func_t;
typedef struct { struct { uint64_t store_id; uint32_t p1; } a; uint32_t p2; } wasmtime_memory_t;
typedef struct { uint64_t store_id; uint32_t p1, p2, p3; } wasmtime_global_t;
typedef struct { uint64_t store_id; size_t priv; } wasmtime_instance_t;
typedef union {
  wasmtime_func_t func; wasmtime_global_t global; wasmtime_memory_t memory; void *shared;
  uint8_t pad[24];
} wasmtime_extern_union_t;
typedef struct { uint8_t kind; wasmtime_extern_union_t of; } wasmtime_extern_t;
typedef union {
  int32_t i32; int64_t i64; float f32; double f64; uint8_t v128[16]; uint32_t anyref;
  void *funcref;
} wasmtime_val_raw_t;
typedef union {
  int32_t i32; int64_t i64; float f32; double f64; uint8_t v128[16];
  struct { uint64_t a; uint32_t b, c; void *d; } anyref; wasmtime_func_t funcref;
} wasmtime_valunion_t;
typedef struct { uint8_t kind; wasmtime_valunion_t of; } wasmtime_val_t;

typedef wasm_trap_t *(*wasmtime_func_unchecked_callback_t)(void *, wasmtime_caller_t *,
                                                           wasmtime_val_raw_t *, size_t);

extern wasmtime_store_t *wasmtime_store_new(wasm_engine_t *, void *, void (*)(void *));
extern wasmtime_context_t *wasmtime_store_context(wasmtime_store_t *);
extern void wasmtime_store_limiter(wasmtime_store_t *, int64_t, int64_t, int64_t, int64_t,
                                   int64_t);
extern void wasmtime_store_delete(wasmtime_store_t *);
extern void *wasmtime_context_get_data(const wasmtime_context_t *);
extern wasmtime_error_t *wasmtime_context_set_fuel(wasmtime_context_t *, uint64_t);
extern wasmtime_error_t *wasmtime_context_get_fuel(const wasmtime_context_t *, uint64_t *);
extern wasmtime_context_t *wasmtime_caller_context(wasmtime_caller_t *);
extern bool wasmtime_caller_export_get(wasmtime_caller_t *, const char *, size_t,
                                       wasmtime_extern_t *);
extern wasmtime_linker_t *wasmtime_linker_new(wasm_engine_t *);
extern void wasmtime_linker_delete(wasmtime_linker_t *);
extern wasmtime_error_t *wasmtime_linker_define_func_unchecked(
    wasmtime_linker_t *, const char *, size_t, const char *, size_t, const wasm_functype_t *,
    wasmtime_func_unchecked_callback_t, void *, void (*)(void *));
extern wasmtime_error_t *wasmtime_linker_instantiate_pre(wasmtime_linker_t *,
                                                         const wasmtime_module_t *,
                                                         wasmtime_instance_pre_t **);
extern void wasmtime_instance_pre_delete(wasmtime_instance_pre_t *);
extern wasmtime_error_t *wasmtime_instance_pre_instantiate(const wasmtime_instance_pre_t *,
                                                           wasmtime_context_t *,
                                                           wasmtime_instance_t *,
                                                           wasm_trap_t **);
extern bool wasmtime_instance_export_get(wasmtime_context_t *, const wasmtime_instance_t *,
                                         const char *, size_t, wasmtime_extern_t *);
extern wasmtime_error_t *wasmtime_func_call_unchecked(wasmtime_context_t *,
                                                      const wasmtime_func_t *,
                                                      wasmtime_val_raw_t *, size_t,
                                                      wasm_trap_t **);
extern uint8_t *wasmtime_memory_data(const wasmtime_context_t *, const wasmtime_memory_t *);
extern size_t wasmtime_memory_data_size(const wasmtime_context_t *, const wasmtime_memory_t *);
extern wasmtime_error_t *wasmtime_memory_grow(wasmtime_context_t *, const wasmtime_memory_t *,
                                              uint64_t, uint64_t *);
extern void wasmtime_global_get(wasmtime_context_t *, const wasmtime_global_t *,
                                wasmtime_val_t *);
extern wasmtime_error_t *wasmtime_global_set(wasmtime_context_t *, const wasmtime_global_t *,
                                             const wasmtime_val_t *);
extern wasm_trap_t *wasmtime_trap_new(const char *, size_t);
extern bool wasmtime_trap_code(const wasm_trap_t *, uint8_t *);
extern void wasm_trap_delete(wasm_trap_t *);
extern void wasm_trap_message(const wasm_trap_t *, wasm_byte_vec_t *);
extern void wasm_trap_trace(const wasm_trap_t *, wasm_frame_vec_t *);
extern uint32_t wasm_frame_func_index(const wasm_frame_t *);
extern void wasm_frame_vec_delete(wasm_frame_vec_t *);
extern void wasm_byte_vec_delete(wasm_byte_vec_t *);
extern void wasmtime_error_message(const wasmtime_error_t *, wasm_byte_vec_t *);
extern void wasmtime_error_delete(wasmtime_error_t *);
extern wasm_valtype_t *wasm_valtype_new(uint8_t);
extern void wasm_valtype_vec_new(wasm_valtype_vec_t *, size_t, wasm_valtype_t *const *);
extern wasm_functype_t *wasm_functype_new(wasm_valtype_vec_t *, wasm_valtype_vec_t *);
extern void wasm_functype_delete(wasm_functype_t *);

#define EXTERN_FUNC 0
#define EXTERN_GLOBAL 1
#define EXTERN_MEMORY 3

/* ------------------------------------------------------------------ layouts */
/* ls_layout(i) -> the i-th fact the loader compares with wasmtime-py's ctypes. */
#define LAYOUT(x) (int64_t)(x)
static const int64_t LAYOUT_FACTS[] = {
  LAYOUT(sizeof(wasmtime_func_t)), LAYOUT(sizeof(wasmtime_memory_t)),
  LAYOUT(sizeof(wasmtime_global_t)), LAYOUT(sizeof(wasmtime_instance_t)),
  LAYOUT(sizeof(wasmtime_extern_t)), LAYOUT(offsetof(wasmtime_extern_t, of)),
  LAYOUT(sizeof(wasmtime_val_raw_t)), LAYOUT(sizeof(wasmtime_val_t)),
  LAYOUT(offsetof(wasmtime_val_t, of)), LAYOUT(sizeof(wasm_byte_vec_t)),
  LAYOUT(sizeof(wasm_frame_vec_t)), LAYOUT(sizeof(wasmtime_extern_union_t)),
};
int64_t ls_layout(int i) {
  if (i < 0 || i >= (int)(sizeof LAYOUT_FACTS / sizeof LAYOUT_FACTS[0])) return -1;
  return LAYOUT_FACTS[i];
}
int ls_version(void) { return 1; }

/* ------------------------------------------------------------------ fault kinds */
enum { FK_TRAP = 1, FK_FUEL = 2, FK_MEMORY = 3, FK_STACK = 4, FK_BADPTR = 5, FK_ERRCODE = 6 };
/* Fixup types (Python rewrites the row). */
enum { FIX_TRAP = 1, FIX_ERROR = 2, FIX_LOGS = 3, FIX_REJECTED = 4 };

typedef struct {
  uint32_t row, type;
  int32_t trap_code;  /* -1 = none */
  uint32_t text_off, text_len;  /* into pool->fixtext */
  uint32_t entry;
} ls_fixup;

/* Settings passed from Python (WasmPoolConfig and wasmtime's trap codes). */
typedef struct {
  uint64_t max_log_bytes, max_infers, max_infer_input, max_random, max_inbox;
  int32_t code_stack_overflow, code_unreachable, code_out_of_fuel, pad;
  int32_t fk[7]; /* fault kind numbers: index by FK_* */
  int32_t pad2;
} ls_settings;

/* ------------------------------------------------------------------ buffers */
typedef struct { uint8_t *p; size_t n, cap; } buf_t;
static int buf_reserve(buf_t *b, size_t more) {
  if (b->n + more <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->n + more) cap *= 2;
  uint8_t *p = realloc(b->p, cap);
  if (!p) return -1;
  b->p = p; b->cap = cap;
  return 0;
}
static void buf_put(buf_t *b, const void *d, size_t n) {
  if (!n) return;
  if (buf_reserve(b, n)) abort();
  memcpy(b->p + b->n, d, n); b->n += n;
}
static void put_u16(buf_t *b, uint16_t v) { buf_put(b, &v, 2); }
static void put_u32(buf_t *b, uint32_t v) { buf_put(b, &v, 4); }
static void put_i32(buf_t *b, int32_t v) { buf_put(b, &v, 4); }
static void put_i64(buf_t *b, int64_t v) { buf_put(b, &v, 8); }

/* ------------------------------------------------------------------ modules, agents */
typedef struct {
  wasmtime_instance_pre_t *pre;
  int has_batch;
  int64_t grow_helper;  /* -1 = none */
  uint32_t n_globals;
  uint32_t *global_index;
  uint8_t *global_kind;
} ls_module;

typedef struct ls_pool ls_pool;

typedef struct ls_agent {
  ls_pool *pool;
  wasmtime_store_t *store;
  wasmtime_context_t *ctx;
  wasmtime_memory_t mem;
  wasmtime_func_t f_alloc, f_init, f_step, f_receive, f_batch, f_shutdown, f_start;
  wasmtime_global_t *globals;
  uint64_t handle, seed, fuel, rand_pos, next_request_id;
  int64_t tick;
  uint32_t pages, max_sends, max_message_bytes, max_logs;
  int32_t module;
  uint16_t name_len; uint32_t args_len;
  uint8_t has_mem, idle, has_start;
  uint8_t key[32];
  uint8_t rblock[64];    /* the last ChaCha20 block of its random stream ... */
  uint64_t rblock_ctr;   /* ... and that block's counter + 1 (0: none yet) */
  uint64_t raw_fuel; uint32_t raw_pages, raw_sends, raw_mb, raw_logs;  /* as requested */
  uint8_t *strings;  /* name || args */
  /* per sequence */
  uint32_t send_count, refused, log_count, infer_count;
  int hfault;  /* a host function's fault kind, 0 = none */
  uint8_t log_bad_utf8;
  /* Where its last step touched memory: prefetch hints only, never dereferenced. */
  const uint8_t *hint_base; uint32_t hint_alloc;
} ls_agent;

struct ls_pool {
  wasm_engine_t *engine;
  wasmtime_linker_t *linker;
  ls_settings s;
  ls_module *modules; size_t n_modules, cap_modules;
  ls_agent **slots; size_t n_slots, cap_slots;   /* slot -> agent (NULL = free) */
  uint32_t *free_slots; size_t n_free, cap_free;
  /* handle -> slot, open addressing; key 0 is stored with a flag */
  uint64_t *hkeys; uint32_t *hvals; uint8_t *hused; size_t hcap, hcount, htomb;
  size_t live;
  buf_t sends, logs, infers, fault, hdetail, out, fixtext, scratch;
  ls_fixup *fix; size_t n_fix, cap_fix;
  uint64_t *marks; size_t cap_marks;
  char err[512];
};

/* ------------------------------------------------------------------ handle map */
static uint64_t mix(uint64_t x) {
  x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33; return x;
}
/* hused: 0 empty, 1 used, 2 tombstone */
static int64_t map_get(ls_pool *p, uint64_t h) {
  if (!p->hcap) return -1;
  size_t m = p->hcap - 1, i = mix(h) & m;
  for (;;) {
    if (p->hused[i] == 0) return -1;
    if (p->hused[i] == 1 && p->hkeys[i] == h) return p->hvals[i];
    i = (i + 1) & m;
  }
}
static void map_put(ls_pool *p, uint64_t h, uint32_t v);
static void map_grow(ls_pool *p) {
  size_t old = p->hcap;
  uint64_t *k = p->hkeys; uint32_t *v = p->hvals; uint8_t *u = p->hused;
  size_t cap = old ? old * 2 : 1024;
  while (p->hcount * 2 >= cap) cap *= 2;
  p->hkeys = calloc(cap, 8); p->hvals = calloc(cap, 4); p->hused = calloc(cap, 1);
  if (!p->hkeys || !p->hvals || !p->hused) abort();
  p->hcap = cap; p->hcount = 0; p->htomb = 0;
  for (size_t i = 0; i < old; i++) if (u[i] == 1) map_put(p, k[i], v[i]);
  free(k); free(v); free(u);
}
static void map_put(ls_pool *p, uint64_t h, uint32_t v) {
  if ((p->hcount + p->htomb + 1) * 2 > p->hcap) map_grow(p);
  size_t m = p->hcap - 1, i = mix(h) & m;
  while (p->hused[i] == 1) i = (i + 1) & m;
  if (p->hused[i] == 2) p->htomb--;
  p->hused[i] = 1; p->hkeys[i] = h; p->hvals[i] = v; p->hcount++;
}
static void map_del(ls_pool *p, uint64_t h) {
  size_t m = p->hcap - 1, i = mix(h) & m;
  for (;;) {
    if (p->hused[i] == 0) return;
    if (p->hused[i] == 1 && p->hkeys[i] == h) {
      p->hused[i] = 2; p->hcount--; p->htomb++; return;
    }
    i = (i + 1) & m;
  }
}

/* ------------------------------------------------------------------ chacha20 */
#define ROTL(a, b) (((a) << (b)) | ((a) >> (32 - (b))))
#define QR(a, b, c, d) \
  a += b; d ^= a; d = ROTL(d, 16); c += d; b ^= c; b = ROTL(b, 12); \
  a += b; d ^= a; d = ROTL(d, 8);  c += d; b ^= c; b = ROTL(b, 7);
static void chacha_block(const uint8_t key[32], uint32_t counter, uint8_t out[64]) {
  uint32_t s[16], x[16];
  s[0] = 0x61707865; s[1] = 0x3320646e; s[2] = 0x79622d32; s[3] = 0x6b206574;
  memcpy(&s[4], key, 32);
  s[12] = counter; s[13] = s[14] = s[15] = 0;
  memcpy(x, s, sizeof s);
  for (int i = 0; i < 10; i++) {
    QR(x[0], x[4], x[8], x[12]) QR(x[1], x[5], x[9], x[13])
    QR(x[2], x[6], x[10], x[14]) QR(x[3], x[7], x[11], x[15])
    QR(x[0], x[5], x[10], x[15]) QR(x[1], x[6], x[11], x[12])
    QR(x[2], x[7], x[8], x[13]) QR(x[3], x[4], x[9], x[14])
  }
  for (int i = 0; i < 16; i++) { uint32_t v = x[i] + s[i]; memcpy(out + 4 * i, &v, 4); }
}
static void chacha_stream(const uint8_t key[32], uint64_t pos, uint8_t *dst, size_t n) {
  uint8_t block[64];
  while (n) {
    uint32_t counter = (uint32_t)(pos >> 6);
    size_t skip = pos & 63, take = 64 - skip;
    if (take > n) take = n;
    chacha_block(key, counter, block);
    memcpy(dst, block + skip, take);
    dst += take; pos += take; n -= take;
  }
}
void ls_chacha(const uint8_t *key, uint64_t pos, uint8_t *dst, size_t n) {
  chacha_stream(key, pos, dst, n);
}

/* ------------------------------------------------------------------ text rules */
static bool name_char(uint8_t c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '.' || c == ':' || c == '/' || c == '-';
}
static bool valid_name(const uint8_t *s, size_t n, size_t max) {
  if (n < 1 || n > max) return false;
  for (size_t i = 0; i < n; i++) if (!name_char(s[i])) return false;
  return true;
}
static bool valid_dest(const uint8_t *d, size_t dn, const uint8_t *p, size_t pn) {
  if (dn == 1 && d[0] == '*') return true;
  if (dn >= 1 && d[0] == '#') return valid_name(d + 1, dn - 1, 64);
  if ((dn == 10 && !memcmp(d, "$subscribe", 10)) || (dn == 12 && !memcmp(d, "$unsubscribe", 12)))
    return valid_name(p, pn, 64);
  return valid_name(d, dn, 64);
}
/* Strict UTF-8 as Python decodes it (no surrogates, no overlongs, <= U+10FFFF). */
static bool valid_utf8(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t need; uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; }
    else return false;
    if (i + need >= n) return false;
    for (size_t k = 1; k <= need; k++) {
      uint8_t d = s[i + k];
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += need + 1;
  }
  return true;
}

/* ------------------------------------------------------------------ sequence state */
static const char *ENTRY[] = {"agent_alloc", "agent_init", "agent_step", "agent_receive",
                              "agent_receive_batch", "agent_shutdown", "instantiate"};
enum { E_ALLOC, E_INIT, E_STEP, E_RECEIVE, E_BATCH, E_SHUTDOWN, E_INSTANTIATE };

typedef struct {
  int kind;        /* FK_*, 0 = none */
  int32_t code;    /* ERROR_CODE's return code */
  int entry;
  int fix;         /* FIX_TRAP / FIX_ERROR or 0 */
  int32_t trap_code;
} seqfault;

static seqfault F;  /* one sequence at a time per process (the Python side holds a lock) */

static void set_fault(ls_pool *p, int kind, int entry, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#include <stdarg.h>
static void set_fault(ls_pool *p, int kind, int entry, const char *fmt, ...) {
  char tmp[768];
  va_list ap; va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof tmp) n = sizeof tmp - 1;
  p->fault.n = 0; buf_put(&p->fault, tmp, (size_t)n);
  F.kind = kind; F.entry = entry; F.code = 0; F.fix = 0; F.trap_code = -1;
}

/* A host function faults its agent: remember why, then trap. */
static wasm_trap_t *host_fault(ls_agent *a, const char *fn, const char *what, uint32_t ptr,
                               int32_t len, size_t size) {
  ls_pool *p = a->pool;
  char tmp[256];
  int n = snprintf(tmp, sizeof tmp, "%s: %s [0x%x, +%d) is outside memory (%zu bytes)", fn,
                   what, ptr, len, size);
  p->hdetail.n = 0; buf_put(&p->hdetail, tmp, (size_t)n);
  a->hfault = FK_BADPTR;
  static const char msg[] = "lockstep host function fault";
  return wasmtime_trap_new(msg, sizeof msg - 1);
}

static ls_agent *caller_agent(wasmtime_caller_t *caller, wasmtime_context_t **ctx) {
  *ctx = wasmtime_caller_context(caller);
  return (ls_agent *)wasmtime_context_get_data(*ctx);
}

/* The agent's memory (inside a start function, reached through the caller). */
static bool host_mem(ls_agent *a, wasmtime_caller_t *caller, wasmtime_context_t *ctx,
                     uint8_t **base, size_t *size) {
  if (a->has_mem) {
    *base = wasmtime_memory_data(ctx, &a->mem);
    *size = wasmtime_memory_data_size(ctx, &a->mem);
    return true;
  }
  wasmtime_extern_t item;
  if (!wasmtime_caller_export_get(caller, "memory", 6, &item) || item.kind != EXTERN_MEMORY)
    return false;
  *base = wasmtime_memory_data(ctx, &item.of.memory);
  *size = wasmtime_memory_data_size(ctx, &item.of.memory);
  return true;
}

static wasm_trap_t *no_memory(ls_agent *a) {
  /* Validated modules export their memory; this is unreachable in practice. */
  a->hfault = -1;
  a->pool->hdetail.n = 0;
  buf_put(&a->pool->hdetail, "no memory export reachable", 26);
  static const char msg[] = "lockstep host function fault";
  return wasmtime_trap_new(msg, sizeof msg - 1);
}

#define REFUSE(code) do { a->refused++; args[0].i32 = (code); return NULL; } while (0)
#define REFUSE64(code) do { a->refused++; args[0].i64 = (code); return NULL; } while (0)

static wasm_trap_t *h_send(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args,
                           size_t n) {
  (void)env; (void)n;
  wasmtime_context_t *ctx;
  ls_agent *a = caller_agent(caller, &ctx);
  ls_pool *p = a->pool;
  int32_t dlen = args[1].i32, plen = args[3].i32;
  uint32_t dptr = (uint32_t)args[0].i32, pptr = (uint32_t)args[2].i32;
  if (dlen < 0 || plen < 0) REFUSE(-4);
  if ((uint32_t)plen > a->max_message_bytes) REFUSE(-2);
  if (dlen > 65) REFUSE(-3);
  uint8_t *base; size_t size;
  if (!host_mem(a, caller, ctx, &base, &size)) return no_memory(a);
  if ((uint64_t)dptr + (uint64_t)dlen > size)
    return host_fault(a, "send", "destination", dptr, dlen, size);
  if ((uint64_t)pptr + (uint64_t)plen > size)
    return host_fault(a, "send", "payload", pptr, plen, size);
  if (a->send_count >= a->max_sends) REFUSE(-1);
  if (!valid_dest(base + dptr, (size_t)dlen, base + pptr, (size_t)plen)) REFUSE(-3);
  buf_t *b = &p->sends;
  if (buf_reserve(b, 6 + (size_t)dlen + (size_t)plen)) abort();
  uint32_t pl = (uint32_t)plen; uint16_t dl = (uint16_t)dlen;
  memcpy(b->p + b->n, &pl, 4); memcpy(b->p + b->n + 4, &dl, 2);
  memcpy(b->p + b->n + 6, base + dptr, (size_t)dlen);
  memcpy(b->p + b->n + 6 + dlen, base + pptr, (size_t)plen);
  b->n += 6 + (size_t)dlen + (size_t)plen;
  a->send_count++;
  args[0].i32 = 0;
  return NULL;
}

static wasm_trap_t *h_log(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args,
                          size_t n) {
  (void)env; (void)n;
  wasmtime_context_t *ctx;
  ls_agent *a = caller_agent(caller, &ctx);
  ls_pool *p = a->pool;
  int32_t level = args[0].i32, len = args[2].i32;
  uint32_t ptr = (uint32_t)args[1].i32;
  if (level < 0 || level > 5 || len < 0) REFUSE(-4);  /* 5: observations (docs/abi.md) */
  if ((uint64_t)len > p->s.max_log_bytes) REFUSE(-2);
  uint8_t *base; size_t size;
  if (!host_mem(a, caller, ctx, &base, &size)) return no_memory(a);
  if ((uint64_t)ptr + (uint64_t)len > size) return host_fault(a, "log", "text", ptr, len, size);
  if (a->log_count >= a->max_logs) REFUSE(-1);
  put_i32(&p->logs, level); put_u32(&p->logs, (uint32_t)len);
  buf_put(&p->logs, base + ptr, (size_t)len);
  if (!valid_utf8(base + ptr, (size_t)len)) a->log_bad_utf8 = 1;
  a->log_count++;
  args[0].i32 = 0;
  return NULL;
}

static wasm_trap_t *h_tick(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args,
                           size_t n) {
  (void)env; (void)n;
  wasmtime_context_t *ctx;
  ls_agent *a = caller_agent(caller, &ctx);
  args[0].i64 = a->tick;
  return NULL;
}

#define RANDOM_STREAM_BYTES (64ULL << 32)
/* chacha_stream over an agent's key, keeping its last block: agents ask for a few bytes at a
 * time, so most requests are served from the block the previous one computed. */
static void agent_random(ls_agent *a, uint64_t pos, uint8_t *dst, size_t n) {
  while (n) {
    uint64_t counter = pos >> 6;
    size_t skip = pos & 63, take = 64 - skip;
    if (take > n) take = n;
    if (a->rblock_ctr != counter + 1) {
      chacha_block(a->key, (uint32_t)counter, a->rblock);
      a->rblock_ctr = counter + 1;
    }
    memcpy(dst, a->rblock + skip, take);
    dst += take; pos += take; n -= take;
  }
}

static wasm_trap_t *h_random(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args,
                             size_t n) {
  (void)env; (void)n;
  wasmtime_context_t *ctx;
  ls_agent *a = caller_agent(caller, &ctx);
  ls_pool *p = a->pool;
  uint32_t ptr = (uint32_t)args[0].i32;
  int32_t len = args[1].i32;
  if (len < 0) REFUSE(-4);
  if ((uint64_t)len > p->s.max_random) REFUSE(-2);
  if (a->rand_pos + (uint64_t)len > RANDOM_STREAM_BYTES) REFUSE(-1);
  uint8_t *base; size_t size;
  if (!host_mem(a, caller, ctx, &base, &size)) return no_memory(a);
  if ((uint64_t)ptr + (uint64_t)len > size) return host_fault(a, "random", "buffer", ptr, len, size);
  if (len) {
    agent_random(a, a->rand_pos, base + ptr, (size_t)len);
    a->rand_pos += (uint64_t)len;
  }
  args[0].i32 = 0;
  return NULL;
}

static wasm_trap_t *h_infer(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args,
                            size_t n) {
  (void)env; (void)n;
  wasmtime_context_t *ctx;
  ls_agent *a = caller_agent(caller, &ctx);
  ls_pool *p = a->pool;
  uint32_t mptr = (uint32_t)args[0].i32, iptr = (uint32_t)args[2].i32;
  int32_t mlen = args[1].i32, ilen = args[3].i32;
  if (mlen < 0 || ilen < 0) REFUSE64(-4);
  if ((uint64_t)ilen > p->s.max_infer_input) REFUSE64(-2);
  if (mlen > 128) REFUSE64(-3);
  uint8_t *base; size_t size;
  if (!host_mem(a, caller, ctx, &base, &size)) return no_memory(a);
  if ((uint64_t)mptr + (uint64_t)mlen > size)
    return host_fault(a, "infer", "model name", mptr, mlen, size);
  if ((uint64_t)iptr + (uint64_t)ilen > size)
    return host_fault(a, "infer", "input", iptr, ilen, size);
  if (a->infer_count >= p->s.max_infers) REFUSE64(-1);
  if (!valid_name(base + mptr, (size_t)mlen, 128)) REFUSE64(-3);
  int64_t id = (int64_t)a->next_request_id++;
  put_i64(&p->infers, id); put_u16(&p->infers, (uint16_t)mlen); put_u16(&p->infers, 0);
  put_u32(&p->infers, (uint32_t)ilen);
  buf_put(&p->infers, base + mptr, (size_t)mlen);
  buf_put(&p->infers, base + iptr, (size_t)ilen);
  a->infer_count++;
  args[0].i64 = id;
  return NULL;
}

static int define(ls_pool *p, const char *name, int nparams, uint8_t result,
                  wasmtime_func_unchecked_callback_t cb) {
  wasm_valtype_t *ps[4], *rs[1];
  for (int i = 0; i < nparams; i++) ps[i] = wasm_valtype_new(0 /* WASM_I32 */);
  rs[0] = wasm_valtype_new(result);
  wasm_valtype_vec_t pv, rv;
  wasm_valtype_vec_new(&pv, (size_t)nparams, ps);
  wasm_valtype_vec_new(&rv, 1, rs);
  wasm_functype_t *ty = wasm_functype_new(&pv, &rv);
  wasmtime_error_t *err = wasmtime_linker_define_func_unchecked(
      p->linker, "lockstep_v1", 11, name, strlen(name), ty, cb, p, NULL);
  wasm_functype_delete(ty);
  if (err) {
    wasm_byte_vec_t m; wasmtime_error_message(err, &m);
    snprintf(p->err, sizeof p->err, "define %s: %.*s", name, (int)m.size, (char *)m.data);
    wasm_byte_vec_delete(&m); wasmtime_error_delete(err);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ pool */
const char *ls_error(ls_pool *p) { return p->err; }

ls_pool *ls_pool_new(wasm_engine_t *engine, const ls_settings *s) {
  ls_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->engine = engine;
  p->s = *s;
  p->linker = wasmtime_linker_new(engine);
  if (define(p, "send", 4, 0, h_send) || define(p, "log", 3, 0, h_log) ||
      define(p, "tick", 0, 1 /* WASM_I64 */, h_tick) || define(p, "random", 2, 0, h_random) ||
      define(p, "infer", 4, 1, h_infer)) {
    return p;  /* ls_error says why; the caller frees */
  }
  return p;
}

int ls_module_add(ls_pool *p, const wasmtime_module_t *module, int has_batch,
                  int64_t grow_helper, uint32_t n_globals, const uint32_t *global_index,
                  const uint8_t *global_kind) {
  if (p->n_modules == p->cap_modules) {
    size_t cap = p->cap_modules ? p->cap_modules * 2 : 16;
    ls_module *m = realloc(p->modules, cap * sizeof *m);
    if (!m) return -1;
    p->modules = m; p->cap_modules = cap;
  }
  wasmtime_instance_pre_t *pre = NULL;
  wasmtime_error_t *err = wasmtime_linker_instantiate_pre(p->linker, module, &pre);
  if (err) {
    wasm_byte_vec_t m; wasmtime_error_message(err, &m);
    snprintf(p->err, sizeof p->err, "%.*s", (int)m.size, (char *)m.data);
    wasm_byte_vec_delete(&m); wasmtime_error_delete(err);
    return -1;
  }
  ls_module *md = &p->modules[p->n_modules];
  md->pre = pre; md->has_batch = has_batch; md->grow_helper = grow_helper;
  md->n_globals = n_globals;
  md->global_index = malloc((n_globals ? n_globals : 1) * sizeof(uint32_t));
  memcpy(md->global_index, global_index, n_globals * sizeof(uint32_t));
  md->global_kind = malloc(n_globals ? n_globals : 1);
  memcpy(md->global_kind, global_kind, n_globals);
  return (int)p->n_modules++;
}

static void agent_free(ls_agent *a) {
  if (!a) return;
  if (a->store) wasmtime_store_delete(a->store);
  free(a->globals); free(a->strings); free(a);
}

static void drop_slot(ls_pool *p, uint32_t slot) {
  ls_agent *a = p->slots[slot];
  if (!a) return;
  map_del(p, a->handle);
  agent_free(a);
  p->slots[slot] = NULL;
  if (p->n_free == p->cap_free) {
    p->cap_free = p->cap_free ? p->cap_free * 2 : 1024;
    p->free_slots = realloc(p->free_slots, p->cap_free * sizeof(uint32_t));
    if (!p->free_slots) abort();
  }
  p->free_slots[p->n_free++] = slot;
  p->live--;
}

static void insert_agent(ls_pool *p, ls_agent *a) {
  uint32_t slot;
  if (p->n_free) slot = p->free_slots[--p->n_free];
  else {
    if (p->n_slots == p->cap_slots) {
      p->cap_slots = p->cap_slots ? p->cap_slots * 2 : 1024;
      p->slots = realloc(p->slots, p->cap_slots * sizeof *p->slots);
      if (!p->slots) abort();
    }
    slot = (uint32_t)p->n_slots++;
  }
  p->slots[slot] = a;
  map_put(p, a->handle, slot);
  p->live++;
}

void ls_reset(ls_pool *p) {
  for (size_t i = 0; i < p->n_slots; i++) if (p->slots[i]) drop_slot(p, (uint32_t)i);
}

void ls_pool_free(ls_pool *p) {
  if (!p) return;
  ls_reset(p);
  for (size_t i = 0; i < p->n_modules; i++) {
    wasmtime_instance_pre_delete(p->modules[i].pre); free(p->modules[i].global_index);
    free(p->modules[i].global_kind);
  }
  if (p->linker) wasmtime_linker_delete(p->linker);
  free(p->modules); free(p->slots); free(p->free_slots); free(p->hkeys); free(p->hvals);
  free(p->hused); free(p->marks); free(p->fix);
  free(p->sends.p); free(p->logs.p); free(p->infers.p); free(p->fault.p); free(p->hdetail.p);
  free(p->out.p); free(p->fixtext.p); free(p->scratch.p);
  free(p);
}

size_t ls_live(ls_pool *p) { return p->live; }

/* ------------------------------------------------------------------ call sequences */
static void begin(ls_pool *p, ls_agent *a, int64_t tick) {
  a->tick = tick;
  a->send_count = a->refused = a->log_count = a->infer_count = 0;
  a->hfault = 0; a->log_bad_utf8 = 0;
  p->sends.n = p->logs.n = p->infers.n = 0;
  F.kind = 0;
  wasmtime_error_t *err = wasmtime_context_set_fuel(a->ctx, a->fuel);
  if (err) wasmtime_error_delete(err);
}

static void vec_text(buf_t *b, const uint8_t *d, size_t n) { b->n = 0; buf_put(b, d, n); }

/* Turn a failed call (error or trap) into the sequence's fault. */
static void call_fault(ls_pool *p, ls_agent *a, wasmtime_error_t *err, wasm_trap_t *trap,
                       int entry) {
  if (a->hfault) {
    F.kind = a->hfault > 0 ? a->hfault : FK_TRAP;
    if (a->hfault < 0) F.kind = -1;  /* ABI violation: mapped in Python via fk[0] */
    F.entry = entry; F.code = 0; F.fix = 0; F.trap_code = -1;
    vec_text(&p->fault, p->hdetail.p, p->hdetail.n);
    if (err) wasmtime_error_delete(err);
    if (trap) wasm_trap_delete(trap);
    return;
  }
  if (trap) {
    uint8_t code8; int32_t code = wasmtime_trap_code(trap, &code8) ? code8 : -1;
    const char *en = ENTRY[entry];
    if (code == p->s.code_out_of_fuel) {
      set_fault(p, FK_FUEL, entry, "fuel budget of %llu for this tick exhausted in %s",
                (unsigned long long)a->fuel, en);
    } else if (code == p->s.code_unreachable && p->modules[a->module].grow_helper >= 0 &&
               ({ wasm_frame_vec_t fv; wasm_trap_trace(trap, &fv);
                  bool hit = fv.size && wasm_frame_func_index(fv.data[0]) ==
                                            (uint32_t)p->modules[a->module].grow_helper;
                  wasm_frame_vec_delete(&fv); hit; })) {
      size_t pages = a->has_mem ? wasmtime_memory_data_size(a->ctx, &a->mem) / 65536 : 0;
      set_fault(p, FK_MEMORY, entry, "memory.grow failed in %s: memory is %zu pages and the "
                "agent's limit is %u pages", en, pages, a->pages);
    } else if (code == p->s.code_stack_overflow) {
      set_fault(p, FK_STACK, entry, "wasm call stack overflowed in %s", en);
    } else {
      wasm_byte_vec_t m; wasm_trap_message(trap, &m);
      F.kind = FK_TRAP; F.entry = entry; F.code = 0; F.fix = FIX_TRAP; F.trap_code = code;
      vec_text(&p->fault, m.data, m.size ? m.size - 1 : 0);  /* chop the trailing NUL */
      wasm_byte_vec_delete(&m);
    }
    wasm_trap_delete(trap);
    if (err) wasmtime_error_delete(err);
    return;
  }
  wasm_byte_vec_t m; wasmtime_error_message(err, &m);
  F.kind = FK_TRAP; F.entry = entry; F.code = 0; F.fix = FIX_ERROR; F.trap_code = -1;
  vec_text(&p->fault, m.data, m.size);
  wasm_byte_vec_delete(&m);
  wasmtime_error_delete(err);
}

/* Call an export of type (i32?) -> i32; false on fault. */
static bool call(ls_pool *p, ls_agent *a, const wasmtime_func_t *f, int nargs, int32_t arg,
                 int entry, int32_t *out) {
  wasmtime_val_raw_t v[1];
  v[0].i64 = 0;
  if (nargs) v[0].i32 = arg;
  wasm_trap_t *trap = NULL;
  wasmtime_error_t *err = wasmtime_func_call_unchecked(a->ctx, f, v, 1, &trap);
  if (err || trap) { call_fault(p, a, err, trap, entry); return false; }
  *out = v[0].i32;
  return true;
}

static bool entry_code(ls_pool *p, ls_agent *a, const wasmtime_func_t *f, int nargs,
                       int32_t arg, int entry, int32_t *code) {
  int32_t c;
  if (!call(p, a, f, nargs, arg, entry, &c)) return false;
  if (c < 0) {
    set_fault(p, FK_ERRCODE, entry, "%s returned %d", ENTRY[entry], c);
    F.code = c;
    *code = c;
    return false;
  }
  *code = c <= 2 ? c : 0;
  return true;
}

/* agent_alloc a buffer of head (hn bytes) || data (n bytes), write it, call `f` with it. */
static bool entry_buffer(ls_pool *p, ls_agent *a, const wasmtime_func_t *f, const uint8_t *head,
                         size_t hn, const uint8_t *data, size_t n, int entry, int32_t *code) {
  size_t total = hn + n;
  int32_t r;
  if (!call(p, a, &a->f_alloc, 1, (int32_t)total, E_ALLOC, &r)) return false;
  uint32_t ptr = (uint32_t)r;
  size_t size = wasmtime_memory_data_size(a->ctx, &a->mem);
  if ((uint64_t)ptr + total > size) {
    set_fault(p, FK_BADPTR, E_ALLOC, "agent_alloc(%zu) returned 0x%x, which does not leave "
              "%zu bytes inside memory (%zu bytes) for %s", total, ptr, total, size,
              ENTRY[entry]);
    return false;
  }
  uint8_t *base = wasmtime_memory_data(a->ctx, &a->mem);
  a->hint_base = base; a->hint_alloc = ptr;
  if (hn) memcpy(base + ptr, head, hn);
  if (n) memcpy(base + ptr + hn, data, n);
  return entry_code(p, a, f, 1, (int32_t)ptr, entry, code);
}

/* ------------------------------------------------------------------ results */
typedef struct {
  uint64_t handle; int32_t code; uint32_t fault_kind; uint64_t fuel;
  uint32_t send_count, refused; uint64_t off;
  uint32_t sends_len, logs_len, infers_len, fault_len;
  uint16_t log_count, infer_count; uint32_t reserved;
} result_row;
_Static_assert(sizeof(result_row) == 64, "result row");

static void out_begin(ls_pool *p, uint32_t n) {
  p->out.n = 0;
  size_t head = 16 + 64 * (size_t)n;
  if (buf_reserve(&p->out, head)) abort();
  memset(p->out.p, 0, head);
  memcpy(p->out.p, "LSRS", 4);
  uint16_t v = 1; memcpy(p->out.p + 4, &v, 2);
  memcpy(p->out.p + 8, &n, 4);
  p->out.n = head;
  p->n_fix = 0; p->fixtext.n = 0;
}

static void add_fix(ls_pool *p, uint32_t row, uint32_t type, int32_t trap_code,
                    const uint8_t *text, size_t n, uint32_t entry, uint64_t fuel) {
  (void)fuel;
  if (p->n_fix == p->cap_fix) {
    p->cap_fix = p->cap_fix ? p->cap_fix * 2 : 64;
    p->fix = realloc(p->fix, p->cap_fix * sizeof *p->fix);
    if (!p->fix) abort();
  }
  ls_fixup *f = &p->fix[p->n_fix++];
  f->row = row; f->type = type; f->trap_code = trap_code; f->entry = entry;
  f->text_off = (uint32_t)p->fixtext.n; f->text_len = (uint32_t)n;
  buf_put(&p->fixtext, text, n);
}

static int32_t fault_number(ls_pool *p, int kind) {
  if (kind < 0) return p->s.fk[0];
  return p->s.fk[kind];
}

/* Write row `i` for the sequence that just ran on `a` (code: last entry point's code). */
static void finish(ls_pool *p, ls_agent *a, uint32_t i, int32_t code) {
  uint64_t left = 0;
  wasmtime_error_t *err = wasmtime_context_get_fuel(a->ctx, &left);
  if (err) { wasmtime_error_delete(err); left = 0; }
  bool faulted = F.kind != 0;
  size_t data_start = p->out.n;
  if (!faulted) buf_put(&p->out, p->sends.p, p->sends.n);
  buf_put(&p->out, p->logs.p, p->logs.n);
  if (!faulted) buf_put(&p->out, p->infers.p, p->infers.n);
  size_t fault_len = 0;
  if (faulted) {
    const char *en = ENTRY[F.entry];
    uint16_t el = (uint16_t)strlen(en);
    put_u16(&p->out, el); buf_put(&p->out, en, el); buf_put(&p->out, p->fault.p, p->fault.n);
    fault_len = 2 + el + p->fault.n;
    if (F.fix) add_fix(p, i, (uint32_t)F.fix, F.trap_code, p->fault.p, p->fault.n,
                       (uint32_t)F.entry, a->fuel);
  }
  if (a->log_bad_utf8) add_fix(p, i, FIX_LOGS, -1, NULL, 0, 0, 0);
  result_row *r = (result_row *)(p->out.p + 16 + 64 * (size_t)i);
  r->handle = a->handle;
  r->code = faulted ? F.code : code;
  r->fault_kind = faulted ? (uint32_t)fault_number(p, F.kind) : 0;
  r->fuel = a->fuel - left;
  r->send_count = faulted ? 0 : a->send_count;
  r->refused = a->refused;
  r->off = data_start;
  r->sends_len = faulted ? 0 : (uint32_t)p->sends.n;
  r->logs_len = (uint32_t)p->logs.n;
  r->infers_len = faulted ? 0 : (uint32_t)p->infers.n;
  r->fault_len = (uint32_t)fault_len;
  r->log_count = (uint16_t)a->log_count;
  r->infer_count = faulted ? 0 : (uint16_t)a->infer_count;
}

const uint8_t *ls_out(ls_pool *p, size_t *len) { *len = p->out.n; return p->out.p; }
const ls_fixup *ls_fixups(ls_pool *p, size_t *n) { *n = p->n_fix; return p->fix; }
const uint8_t *ls_fixtext(ls_pool *p) { return p->fixtext.p; }

/* ------------------------------------------------------------------ create */
static ls_agent *new_agent(ls_pool *p, uint64_t handle, int32_t module, uint64_t fuel,
                           uint32_t pages, uint32_t sends, uint32_t mb, uint32_t logs,
                           const uint8_t *key, uint64_t seed, const uint8_t *name,
                           uint16_t nlen, const uint8_t *args, uint32_t alen) {
  ls_agent *a = calloc(1, sizeof *a);
  if (!a) abort();
  a->pool = p; a->handle = handle; a->module = module; a->fuel = fuel; a->pages = pages;
  a->max_sends = sends; a->max_message_bytes = mb; a->max_logs = logs; a->seed = seed;
  memcpy(a->key, key, 32);
  a->next_request_id = 1;
  a->name_len = nlen; a->args_len = alen;
  a->strings = malloc((size_t)nlen + alen + 1);
  if (!a->strings) abort();
  memcpy(a->strings, name, nlen);
  if (alen) memcpy(a->strings + nlen, args, alen);
  a->store = wasmtime_store_new(p->engine, a, NULL);
  a->ctx = wasmtime_store_context(a->store);
  wasmtime_store_limiter(a->store, (int64_t)pages * 65536, -1, 1, -1, 1);
  return a;
}

static bool get_func(ls_agent *a, wasmtime_instance_t *inst, const char *name,
                     wasmtime_func_t *out) {
  wasmtime_extern_t item;
  if (!wasmtime_instance_export_get(a->ctx, inst, name, strlen(name), &item) ||
      item.kind != EXTERN_FUNC) return false;
  *out = item.of.func;
  return true;
}

/* Instantiate and bind the exports; false on fault (F says why). */
static bool instantiate(ls_pool *p, ls_agent *a) {
  ls_module *m = &p->modules[a->module];
  wasmtime_instance_t inst;
  wasm_trap_t *trap = NULL;
  wasmtime_error_t *err = wasmtime_instance_pre_instantiate(m->pre, a->ctx, &inst, &trap);
  if (err || trap) { call_fault(p, a, err, trap, E_INSTANTIATE); return false; }
  wasmtime_extern_t item;
  if (!wasmtime_instance_export_get(a->ctx, &inst, "memory", 6, &item) ||
      item.kind != EXTERN_MEMORY) abort();  /* checked at load */
  a->mem = item.of.memory; a->has_mem = 1;
  if (!get_func(a, &inst, "agent_alloc", &a->f_alloc) ||
      !get_func(a, &inst, "agent_init", &a->f_init) ||
      !get_func(a, &inst, "agent_step", &a->f_step) ||
      !get_func(a, &inst, "agent_receive", &a->f_receive) ||
      !get_func(a, &inst, "agent_shutdown", &a->f_shutdown)) abort();
  if (m->has_batch && !get_func(a, &inst, "agent_receive_batch", &a->f_batch)) abort();
  /* The load-time rewrite turned a start section into this export (docs/pool.md). */
  a->has_start = get_func(a, &inst, "__lockstep_start", &a->f_start);
  if (m->n_globals) {
    a->globals = malloc(m->n_globals * sizeof *a->globals);
    for (uint32_t g = 0; g < m->n_globals; g++) {
      char name[48];
      int n = snprintf(name, sizeof name, "__lockstep_global_%u", m->global_index[g]);
      if (!wasmtime_instance_export_get(a->ctx, &inst, name, (size_t)n, &item) ||
          item.kind != EXTERN_GLOBAL) abort();
      a->globals[g] = item.of.global;
    }
  }
  return true;
}

typedef struct {
  uint64_t handle, fuel; uint32_t pages, sends, message_bytes, logs; uint64_t off;
  uint16_t name_len, module_len; uint32_t args_len;
} create_row;
_Static_assert(sizeof(create_row) == 48, "create row");

/* Create the agents of a validated create request (Python resolved modules, limits and
 * random keys). modules[i] < 0: the module was rejected (Python writes the fault). */
int ls_create(ls_pool *p, const uint8_t *buf, size_t len, const int32_t *modules,
              const uint64_t *fuel, const uint32_t *pages, const uint32_t *sends,
              const uint32_t *mb, const uint32_t *logs, const uint8_t *keys) {
  (void)len;
  uint32_t n; memcpy(&n, buf + 8, 4);
  int64_t tick; memcpy(&tick, buf + 16, 8);
  uint64_t seed; memcpy(&seed, buf + 24, 8);
  const create_row *rows = (const create_row *)(buf + 32);
  out_begin(p, n);
  for (uint32_t i = 0; i < n; i++) {
    create_row row; memcpy(&row, &rows[i], sizeof row);
    if (modules[i] < 0) {
      result_row *r = (result_row *)(p->out.p + 16 + 64 * (size_t)i);
      r->handle = row.handle; r->off = p->out.n;
      add_fix(p, i, FIX_REJECTED, -1, NULL, 0, 0, 0);
      continue;
    }
    const uint8_t *s = buf + row.off;
    ls_agent *a = new_agent(p, row.handle, modules[i], fuel[i], pages[i], sends[i], mb[i],
                            logs[i], keys + 32 * (size_t)i, seed, s, row.name_len,
                            s + row.name_len + row.module_len, row.args_len);
    a->raw_fuel = row.fuel; a->raw_pages = row.pages; a->raw_sends = row.sends;
    a->raw_mb = row.message_bytes; a->raw_logs = row.logs;
    begin(p, a, tick);
    int32_t code = 0;
    bool ok = instantiate(p, a);
    /* Instantiation ran no wasm code; what it cost depends on how the engine initialises
     * memory (copy-on-write image or not), so it is never charged: the budget starts here
     * (and a failed instantiation used no fuel). */
    wasmtime_error_t *err = wasmtime_context_set_fuel(a->ctx, a->fuel);
    if (err) wasmtime_error_delete(err);
    if (ok && a->has_start) {
      int32_t ignored;
      ok = call(p, a, &a->f_start, 0, 0, E_INSTANTIATE, &ignored);
    }
    ok = ok && entry_code(p, a, &a->f_init, 0, 0, E_INIT, &code);
    if (ok && code == 1) code = 0;
    finish(p, a, i, ok ? code : 0);
    if (ok) insert_agent(p, a);
    else agent_free(a);
  }
  return 0;
}

/* ------------------------------------------------------------------ step */
typedef struct { uint64_t handle, off; uint32_t len, count; } step_row;
_Static_assert(sizeof(step_row) == 24, "step row");

/* Validate a step request; 0 ok, 1 layout (Python's parse_step names it), 2 unknown handle
 * (*bad = row), 3 duplicate handle. On 0, slots[i] holds each row's slot. */
static uint64_t mark_gen;
static int step_check(ls_pool *p, const uint8_t *buf, size_t len, uint32_t *slots,
                      uint32_t *bad) {
  if (len < 24 || memcmp(buf, "LSSQ", 4)) return 1;
  uint16_t ver; memcpy(&ver, buf + 4, 2);
  if (ver != 1) return 1;
  uint32_t n; memcpy(&n, buf + 8, 4);
  if ((uint64_t)24 + (uint64_t)n * 24 > len) return 1;
  uint64_t pos = 24 + (uint64_t)n * 24;
  const uint8_t *table = buf + 24;
  for (uint32_t i = 0; i < n; i++) {
    step_row r; memcpy(&r, table + 24 * (size_t)i, sizeof r);
    if (r.off != pos) return 1;
    if ((uint64_t)r.len + 8 > p->s.max_inbox) return 1;
    uint64_t end = pos + r.len;
    if (end > len) return 1;
    uint64_t q = pos;
    for (uint32_t k = 0; k < r.count; k++) {
      if (q + 32 > end) return 1;
      uint32_t total; uint16_t sl, dl; uint32_t pl;
      memcpy(&total, buf + q, 4); memcpy(&sl, buf + q + 6, 2); memcpy(&pl, buf + q + 24, 4);
      memcpy(&dl, buf + q + 28, 2);
      if ((uint64_t)total != 32ULL + sl + dl + pl) return 1;
      if (q + total > end) return 1;
      q += total;
    }
    if (q != end) return 1;
    pos = end;
  }
  if (pos != len) return 1;
  if (p->cap_marks < p->n_slots) {
    size_t cap = p->n_slots + 1024;
    p->marks = realloc(p->marks, cap * 8);
    if (!p->marks) abort();
    memset(p->marks + p->cap_marks, 0, (cap - p->cap_marks) * 8);
    p->cap_marks = cap;
  }
  mark_gen++;
  int status = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t h; memcpy(&h, table + 24 * (size_t)i, 8);
    int64_t s = map_get(p, h);
    if (s < 0) { if (!status) { status = 2; *bad = i; } continue; }
    if (p->marks[s] == mark_gen) return 3;
    p->marks[s] = mark_gen;
    slots[i] = (uint32_t)s;
  }
  return status;
}

/* With thousands of agents each step starts with cache and TLB misses on the agent's own
 * record, its store and its linear memory (at 10,000 wealth agents about a third of the
 * step). Stepping agent i, warm up agent i + 2's record, agent i + 1's store and the
 * memory around the buffer agent_alloc gave it last time: the SDK's C agents keep the
 * top of their stack, their static data and that scratch buffer within a KiB or so of
 * it (stack first, then data, then the heap). Hints only: a prefetch never faults, so a
 * stale base after memory.grow costs nothing but a wasted prefetch. Only in big pools:
 * where the agents' state still fits the caches (1,000 small agents) the prefetches'
 * own page walks cost more than they save (0.20 -> 0.33 us per step measured). */
#define PREFETCH_MIN_AGENTS 4096
#define PF(addr) __builtin_prefetch((const void *)(addr), 0, 3)
static void prefetch_ahead(ls_pool *p, const uint32_t *slots, uint32_t i, uint32_t n) {
  if (i + 2 < n) {
    uintptr_t b = (uintptr_t)p->slots[slots[i + 2]];
    for (uintptr_t k = 0; k < sizeof(ls_agent); k += 64) PF(b + k);
  }
  if (i + 1 < n) {
    const ls_agent *b = p->slots[slots[i + 1]];
    for (uintptr_t k = 0; k < 512; k += 64) PF((uintptr_t)b->ctx + k);
    if (b->hint_base) {
      uintptr_t h = (uintptr_t)b->hint_base + b->hint_alloc;
      for (uintptr_t k = 0; k < 1536; k += 64) PF(h - 1024 + k);
    }
  }
}

/* Step a whole packed batch. Returns 0 (results via ls_out) or the check status. */
int ls_step(ls_pool *p, const uint8_t *buf, size_t len, uint32_t *bad) {
  uint32_t n = 0;
  if (len >= 12) memcpy(&n, buf + 8, 4);
  if (buf_reserve(&p->scratch, (size_t)n * 4 + 4)) abort();
  uint32_t *slots = (uint32_t *)p->scratch.p;
  int st = step_check(p, buf, len, slots, bad);
  if (st) return st;
  int64_t tick; memcpy(&tick, buf + 16, 8);
  const uint8_t *table = buf + 24;
  out_begin(p, n);
  bool prefetch = p->live >= PREFETCH_MIN_AGENTS;
  uint8_t ctxbuf[24];
  for (uint32_t i = 0; i < n; i++) {
    step_row r; memcpy(&r, table + 24 * (size_t)i, sizeof r);
    ls_agent *a = p->slots[slots[i]];
    if (prefetch) prefetch_ahead(p, slots, i, n);
    begin(p, a, tick);
    int32_t code = 0;
    bool ok = true;
    if (r.count) {
      if (p->modules[a->module].has_batch) {
        uint32_t head[2] = {8 + r.len, r.count};
        ok = entry_buffer(p, a, &a->f_batch, (const uint8_t *)head, 8, buf + r.off, r.len,
                          E_BATCH, &code);
      } else {
        uint64_t q = r.off;
        for (uint32_t k = 0; ok && k < r.count; k++) {
          uint32_t total; memcpy(&total, buf + q, 4);
          ok = entry_buffer(p, a, &a->f_receive, NULL, 0, buf + q, total, E_RECEIVE, &code);
          q += total;
        }
      }
    }
    if (ok) {
      uint32_t total = 24 + a->name_len + a->args_len;
      uint16_t ver = 1, nl = a->name_len;
      memcpy(ctxbuf, &total, 4); memcpy(ctxbuf + 4, &ver, 2); memcpy(ctxbuf + 6, &nl, 2);
      memcpy(ctxbuf + 8, &tick, 8); memcpy(ctxbuf + 16, &r.count, 4);
      memcpy(ctxbuf + 20, &a->args_len, 4);
      ok = entry_buffer(p, a, &a->f_step, ctxbuf, 24, a->strings,
                        (size_t)a->name_len + a->args_len, E_STEP, &code);
      if (ok) a->idle = code == 1;
    }
    finish(p, a, i, ok ? code : 0);
    if (!ok) drop_slot(p, slots[i]);
  }
  return 0;
}

/* ------------------------------------------------------------------ destroy */
/* Handles already validated (live, unique). */
int ls_destroy(ls_pool *p, const uint64_t *handles, uint32_t n, int shutdown, int64_t tick) {
  out_begin(p, shutdown ? n : 0);
  for (uint32_t i = 0; i < n; i++) {
    int64_t s = map_get(p, handles[i]);
    if (s < 0) continue;
    ls_agent *a = p->slots[s];
    if (shutdown) {
      begin(p, a, tick);
      int32_t code = 0;
      bool ok = entry_code(p, a, &a->f_shutdown, 0, 0, E_SHUTDOWN, &code);
      finish(p, a, i, ok ? code : 0);
    }
    drop_slot(p, (uint32_t)s);
  }
  return 0;
}

/* ------------------------------------------------------------------ queries, snapshots */
int ls_lookup(ls_pool *p, const uint64_t *handles, size_t n, int64_t *out) {
  int found = 0;
  for (size_t i = 0; i < n; i++) { out[i] = map_get(p, handles[i]); found += out[i] >= 0; }
  return found;
}

size_t ls_handles(ls_pool *p, uint64_t *out) {
  size_t k = 0;
  for (size_t i = 0; i < p->n_slots; i++) if (p->slots[i]) out[k++] = p->slots[i]->handle;
  return k;
}

typedef struct {
  uint64_t fuel, seed, rand_pos, next_request_id;
  uint32_t pages, sends, message_bytes, logs;
  uint64_t raw_fuel; uint32_t raw_pages, raw_sends, raw_mb, raw_logs;
  int32_t module; uint32_t name_len, args_len, n_globals;
  uint64_t mem_size;
  const uint8_t *strings;
  const uint8_t *mem;
  uint32_t idle, pad;
} ls_info;

int ls_agent_info(ls_pool *p, uint64_t handle, ls_info *out, uint8_t *globals_bits) {
  int64_t s = map_get(p, handle);
  if (s < 0) return -1;
  ls_agent *a = p->slots[s];
  out->fuel = a->fuel; out->seed = a->seed; out->rand_pos = a->rand_pos;
  out->next_request_id = a->next_request_id; out->pages = a->pages;
  out->sends = a->max_sends; out->message_bytes = a->max_message_bytes;
  out->logs = a->max_logs; out->module = a->module;
  out->raw_fuel = a->raw_fuel; out->raw_pages = a->raw_pages; out->raw_sends = a->raw_sends;
  out->raw_mb = a->raw_mb; out->raw_logs = a->raw_logs; out->name_len = a->name_len;
  out->args_len = a->args_len; out->idle = a->idle; out->strings = a->strings;
  ls_module *m = &p->modules[a->module];
  out->n_globals = m->n_globals;
  out->mem = wasmtime_memory_data(a->ctx, &a->mem);
  out->mem_size = wasmtime_memory_data_size(a->ctx, &a->mem);
  if (globals_bits) {
    for (uint32_t g = 0; g < m->n_globals; g++) {
      wasmtime_val_t v; memset(&v, 0, sizeof v);
      wasmtime_global_get(a->ctx, &a->globals[g], &v);
      memcpy(globals_bits + 8 * g, &v.of, 8);
    }
  }
  return 0;
}

/* Recreate one agent from a validated snapshot. 0 ok; 1 instantiation faulted (results
 * buffer of one row via ls_out); 2 memory smaller than the module's initial (*size). */
int ls_restore(ls_pool *p, uint64_t handle, int32_t module, uint64_t fuel, uint32_t pages,
               uint32_t sends, uint32_t mb, uint32_t logs, const uint8_t *key, uint64_t seed,
               const uint8_t *name, uint16_t nlen, const uint8_t *args, uint32_t alen,
               const uint8_t *mem, uint64_t mem_len, const uint8_t *gbits, uint64_t rand_pos, uint64_t next_request_id,
               int idle, const uint64_t *raw, uint64_t *size_out) {
  ls_agent *a = new_agent(p, handle, module, fuel, pages, sends, mb, logs, key, seed, name,
                          nlen, args, alen);
  a->raw_fuel = raw[0]; a->raw_pages = (uint32_t)raw[1]; a->raw_sends = (uint32_t)raw[2];
  a->raw_mb = (uint32_t)raw[3]; a->raw_logs = (uint32_t)raw[4];
  begin(p, a, 0);
  if (!instantiate(p, a)) {
    out_begin(p, 1);
    finish(p, a, 0, 0);
    agent_free(a);
    return 1;
  }
  size_t size = wasmtime_memory_data_size(a->ctx, &a->mem);
  if (size > mem_len) { *size_out = size; agent_free(a); return 2; }
  if (size < mem_len) {
    uint64_t prev;
    wasmtime_error_t *err = wasmtime_memory_grow(a->ctx, &a->mem, (mem_len - size) / 65536,
                                                 &prev);
    if (err) { wasmtime_error_delete(err); *size_out = size; agent_free(a); return 3; }
  }
  memcpy(wasmtime_memory_data(a->ctx, &a->mem), mem, mem_len);
  ls_module *m = &p->modules[module];
  const uint8_t *kinds = m->global_kind;
  for (uint32_t g = 0; g < m->n_globals; g++) {
    wasmtime_val_t v; memset(&v, 0, sizeof v);
    v.kind = kinds[g];
    memcpy(&v.of, gbits + 8 * g, (kinds[g] == 0 || kinds[g] == 2) ? 4 : 8);
    wasmtime_error_t *err = wasmtime_global_set(a->ctx, &a->globals[g], &v);
    if (err) { wasmtime_error_delete(err); agent_free(a); return 4; }
  }
  a->rand_pos = rand_pos; a->next_request_id = next_request_id; a->idle = (uint8_t)idle;
  insert_agent(p, a);
  return 0;
}
