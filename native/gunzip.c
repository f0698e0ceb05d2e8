/*
 * gunzip: gzip decompression for layer hashing, with the CRC-32 of each member computed by
 * carry-less multiplication instead of zlib's table.
 *
 * A v1 push inflates its layer to compute the diff_id and the tarsums, and a gzip member's trailer
 * holds the CRC-32 and the length of what it inflates to. node:zlib's gunzip checks both, which is
 * right (a layer whose trailer does not match is refused, as Go's and Python's gzip readers refuse
 * it), but its zlib computes the CRC with tables at ~1.9 GB/s: on the bench's 2:1 layer that was 7 %
 * of a push's CPU. Here zlib (Node's own, the symbols the node binary exports) parses each member's
 * header and checks its header CRC as always, then inflates with its own check switched off
 * (inflateValidate), and the CRC of the inflated bytes is folded with PCLMULQDQ (Intel's "Fast CRC
 * Computation for Generic Polynomials Using PCLMULQDQ", with the constants of the reflected
 * polynomial 0xEDB88320) while they are still in cache; at the member's end both are compared with
 * its trailer, the last 8 bytes it consumed. Everything else follows node:zlib's Gunzip exactly:
 * after a member another one may follow (zlib reset, as Node's ZlibContext does when bytes remain
 * and the next one is not 0x00); a 0x00 after a member ends the stream and the rest is ignored; a
 * stream that ends inside a member is "unexpected end of file". The work runs on libuv's thread pool,
 * like node:zlib's.
 *
 * JavaScript (src/digest/gunzip-native.ts):
 *   available                   whether this CPU has PCLMULQDQ and SSE4.1
 *   create() -> handle          a gunzip stream
 *   run(handle, input, output, cb)   inflate `input` into `output` on the pool; cb(err, consumed,
 *                               produced, atEnd): err a message (the stream is broken) or null;
 *                               atEnd: the stream may end here (a member ended and none is open)
 *   close(handle)               free zlib's state now (not while a run is pending)
 *   crc32(crc, bytes) -> crc    the CRC-32 as zlib's crc32(), for tests
 */
#include <node_api.h>
#include "napi-util.h"
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define TARGET __attribute__((target("pclmul,sse4.1")))

/* ---- CRC-32 (zlib's, reflected 0xEDB88320) ---- */

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
}

/* The register (already inverted) over p[0..n), a byte at a time. */
static inline uint32_t crc_bytes(uint32_t c, const uint8_t *p, size_t n) {
  while (n--) c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
  return c;
}

#define CLMUL(a, b, imm) _mm_clmulepi64_si128((a), (b), (imm))
#define FOLD(x, k, next) _mm_xor_si128(_mm_xor_si128(CLMUL((x), (k), 0x00), CLMUL((x), (k), 0x11)), (next))

/* The register (already inverted) over n bytes, n >= 64 and a multiple of 16. */
TARGET static uint32_t crc_fold(uint32_t c, const uint8_t *p, size_t n) {
  __m128i x1 = _mm_loadu_si128((const __m128i *)p);
  __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 16));
  __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 32));
  __m128i x4 = _mm_loadu_si128((const __m128i *)(p + 48));
  x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)c));
  p += 64;
  n -= 64;
  __m128i k = _mm_set_epi64x(0x1c6e41596, 0x154442bd4); /* R2, R1: four lanes 512 bits ahead */
  while (n >= 64) {
    x1 = FOLD(x1, k, _mm_loadu_si128((const __m128i *)p));
    x2 = FOLD(x2, k, _mm_loadu_si128((const __m128i *)(p + 16)));
    x3 = FOLD(x3, k, _mm_loadu_si128((const __m128i *)(p + 32)));
    x4 = FOLD(x4, k, _mm_loadu_si128((const __m128i *)(p + 48)));
    p += 64;
    n -= 64;
  }
  k = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0); /* R4, R3: one lane 128 bits ahead */
  x1 = FOLD(x1, k, x2);
  x1 = FOLD(x1, k, x3);
  x1 = FOLD(x1, k, x4);
  while (n >= 16) {
    x1 = FOLD(x1, k, _mm_loadu_si128((const __m128i *)p));
    p += 16;
    n -= 16;
  }
  /* 128 -> 64 bits (R4 times the low half), then 64 -> 32 bits (R5) */
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), CLMUL(k, x1, 0x01));
  const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);
  x2 = _mm_srli_si128(x1, 4);
  x1 = _mm_xor_si128(CLMUL(_mm_and_si128(x1, mask32), _mm_set_epi64x(0, 0x163cd6124), 0x00), x2);
  /* Barrett reduction: u' (high) and P' (low) */
  const __m128i poly = _mm_set_epi64x(0x1f7011641, 0x1db710641);
  x2 = x1;
  x1 = CLMUL(_mm_and_si128(x1, mask32), poly, 0x10);
  x1 = CLMUL(_mm_and_si128(x1, mask32), poly, 0x00);
  return (uint32_t)_mm_extract_epi32(_mm_xor_si128(x1, x2), 1);
}

/* zlib's crc32(crc, p, n). */
TARGET static uint32_t crc32_fast(uint32_t crc, const uint8_t *p, size_t n) {
  uint32_t c = ~crc;
  if (n >= 64) {
    size_t m = n & ~(size_t)15;
    c = crc_fold(c, p, m);
    p += m;
    n -= m;
  }
  return ~crc_bytes(c, p, n);
}

/* ---- the stream ---- */

enum { PH_HEADER, PH_DATA, PH_END, PH_FINISHED };

typedef struct {
  z_stream s;
  gz_header head;
  int inited;
  int phase;
  uint32_t crc, isize;
  /* the last 8 input bytes consumed: at a member's end, its trailer */
  uint8_t tail[8];
  const char *err;
  int busy;
  /* the pending run */
  napi_async_work work;
  napi_ref self_ref, cb_ref, in_ref, out_ref;
  uint8_t *in, *out;
  size_t in_len, out_len, consumed, produced;
} gz_t;

static void note_consumed(gz_t *g, const uint8_t *from, const uint8_t *to) {
  size_t n = (size_t)(to - from);
  if (n >= 8) {
    memcpy(g->tail, to - 8, 8);
  } else if (n > 0) {
    memmove(g->tail, g->tail + n, 8 - n);
    memcpy(g->tail + 8 - n, from, n);
  }
}

static int start_member(gz_t *g) {
  /* header checks (its CRC too, when it has one) on; the data's check is ours */
  if (inflateValidate(&g->s, 1) != Z_OK || inflateGetHeader(&g->s, &g->head) != Z_OK) return 0;
  g->crc = 0;
  g->isize = 0;
  g->phase = PH_HEADER;
  return 1;
}

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static const char *zmsg(z_stream *s, int r) {
  if (s->msg) return s->msg;
  return r == Z_MEM_ERROR ? "Out of memory" : r == Z_NEED_DICT ? "Missing dictionary" : "Zlib error";
}

/* Inflate what the run was given, as far as its output allows. */
static void run_loop(gz_t *g) {
  z_stream *s = &g->s;
  for (;;) {
    if (g->phase == PH_FINISHED) {
      /* after a 0x00 padding byte: the stream has ended, the rest is ignored */
      s->next_in += s->avail_in;
      s->avail_in = 0;
      return;
    }
    if (g->phase == PH_END) {
      if (s->avail_in == 0) return;
      if (s->next_in[0] == 0) {
        g->phase = PH_FINISHED;
        continue;
      }
      /* another member (or garbage, which its header check refuses) */
      if (inflateReset(s) != Z_OK || !start_member(g)) {
        g->err = "Zlib error";
        return;
      }
    }
    if (g->phase == PH_HEADER) {
      const uint8_t *in0 = s->next_in;
      int r = inflate(s, Z_BLOCK);
      note_consumed(g, in0, s->next_in);
      if (g->head.done == 1) {
        if (inflateValidate(s, 0) != Z_OK) {
          g->err = "Zlib error";
          return;
        }
        g->phase = PH_DATA;
        continue;
      }
      if (r != Z_OK && r != Z_BUF_ERROR) {
        g->err = zmsg(s, r);
        return;
      }
      return; /* the header continues in the next input */
    }
    /* PH_DATA */
    if (s->avail_out == 0) return;
    uint8_t *out0 = s->next_out;
    const uint8_t *in0 = s->next_in;
    int r = inflate(s, Z_NO_FLUSH);
    size_t produced = (size_t)(s->next_out - out0);
    g->crc = crc32_fast(g->crc, out0, produced);
    g->isize += (uint32_t)produced;
    note_consumed(g, in0, s->next_in);
    if (r == Z_STREAM_END) {
      if (le32(g->tail) != g->crc) {
        g->err = "incorrect data check";
        return;
      }
      if (le32(g->tail + 4) != g->isize) {
        g->err = "incorrect length check";
        return;
      }
      g->phase = PH_END;
      continue;
    }
    if (r != Z_OK && r != Z_BUF_ERROR) {
      g->err = zmsg(s, r);
      return;
    }
    if (s->avail_in == 0 || s->avail_out == 0 || (produced == 0 && s->next_in == in0)) return;
  }
}

static void execute(napi_env env, void *data) {
  (void)env;
  gz_t *g = data;
  g->s.next_in = g->in;
  g->s.avail_in = (uInt)g->in_len;
  g->s.next_out = g->out;
  g->s.avail_out = (uInt)g->out_len;
  if (!g->err) run_loop(g);
  g->consumed = g->in_len - g->s.avail_in;
  g->produced = g->out_len - g->s.avail_out;
  g->s.next_in = NULL;
  g->s.next_out = NULL;
}

static void unref(napi_env env, napi_ref *r) {
  if (*r) napi_delete_reference(env, *r);
  *r = NULL;
}

static void complete(napi_env env, napi_status status, void *data) {
  gz_t *g = data;
  napi_value cb, argv[4], undef;
  napi_get_reference_value(env, g->cb_ref, &cb);
  unref(env, &g->cb_ref);
  unref(env, &g->in_ref);
  unref(env, &g->out_ref);
  napi_delete_async_work(env, g->work);
  g->work = NULL;
  g->busy = 0;
  if (status != napi_ok && !g->err) g->err = "gunzip: the run was cancelled";
  if (g->err)
    napi_create_string_utf8(env, g->err, NAPI_AUTO_LENGTH, &argv[0]);
  else
    napi_get_null(env, &argv[0]);
  napi_create_double(env, (double)g->consumed, &argv[1]);
  napi_create_double(env, (double)g->produced, &argv[2]);
  napi_get_boolean(env, !g->err && (g->phase == PH_END || g->phase == PH_FINISHED), &argv[3]);
  napi_get_undefined(env, &undef);
  /* the handle may be collected once nothing runs on it */
  unref(env, &g->self_ref);
  napi_call_function(env, undef, cb, 4, argv, NULL);
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  gz_t *g = data;
  if (g->inited) inflateEnd(&g->s);
  free(g);
}

static gz_t *handle_of(napi_env env, napi_value v) {
  void *p = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok || !p) {
    throw_type(env, "not a gunzip handle");
    return NULL;
  }
  return p;
}

static napi_value js_create(napi_env env, napi_callback_info info) {
  (void)info;
  gz_t *g = calloc(1, sizeof *g);
  if (!g) {
    napi_throw_error(env, NULL, "gunzip: out of memory");
    return NULL;
  }
  /* gzip only (15 + 16), as node:zlib's Gunzip */
  if (inflateInit2(&g->s, 15 + 16) != Z_OK) {
    free(g);
    napi_throw_error(env, NULL, "gunzip: inflateInit2 failed");
    return NULL;
  }
  g->inited = 1;
  if (!start_member(g)) {
    inflateEnd(&g->s);
    free(g);
    napi_throw_error(env, NULL, "gunzip: this zlib has no inflateValidate");
    return NULL;
  }
  napi_value h;
  if (napi_create_external(env, g, finalize, NULL, &h) != napi_ok) {
    inflateEnd(&g->s);
    free(g);
    return NULL;
  }
  return h;
}

static napi_value js_run(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args_of(env, info, 4, argv)) return NULL;
  gz_t *g = handle_of(env, argv[0]);
  if (!g) return NULL;
  if (g->busy || !g->inited) {
    napi_throw_error(env, NULL, g->busy ? "gunzip: a run is pending" : "gunzip: closed");
    return NULL;
  }
  napi_valuetype t;
  if (!bytes_of(env, argv[1], &g->in, &g->in_len) || !bytes_of(env, argv[2], &g->out, &g->out_len)) return NULL;
  if (napi_typeof(env, argv[3], &t) != napi_ok || t != napi_function) {
    throw_type(env, "a callback was expected");
    return NULL;
  }
  if (g->in_len > UINT32_MAX || g->out_len > UINT32_MAX) {
    throw_type(env, "gunzip: a buffer over 4 GiB");
    return NULL;
  }
  napi_value name;
  napi_create_string_utf8(env, "legacy-registry:gunzip", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[0], 1, &g->self_ref);
  napi_create_reference(env, argv[1], 1, &g->in_ref);
  napi_create_reference(env, argv[2], 1, &g->out_ref);
  napi_create_reference(env, argv[3], 1, &g->cb_ref);
  if (napi_create_async_work(env, NULL, name, execute, complete, g, &g->work) != napi_ok || napi_queue_async_work(env, g->work) != napi_ok) {
    unref(env, &g->self_ref);
    unref(env, &g->in_ref);
    unref(env, &g->out_ref);
    unref(env, &g->cb_ref);
    napi_throw_error(env, NULL, "gunzip: could not queue the run");
    return NULL;
  }
  g->busy = 1;
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  gz_t *g = handle_of(env, argv[0]);
  if (!g || g->busy) return NULL; /* a pending run keeps it; the finalizer frees it */
  if (g->inited) inflateEnd(&g->s);
  g->inited = 0;
  return NULL;
}

static napi_value js_crc32(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint32_t crc;
  uint8_t *p;
  size_t n;
  if (!args_of(env, info, 2, argv)) return NULL;
  if (napi_get_value_uint32(env, argv[0], &crc) != napi_ok) {
    throw_type(env, "a CRC was expected");
    return NULL;
  }
  if (!bytes_of(env, argv[1], &p, &n)) return NULL;
  napi_value v;
  napi_create_uint32(env, crc32_fast(crc, p, n), &v);
  return v;
}

NAPI_MODULE_INIT() {
  __builtin_cpu_init();
  int ok = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  pthread_once(&table_once, table_init);
  static const lr_export_t fns[] = {{"create", js_create}, {"run", js_run}, {"close", js_close}, {"crc32", js_crc32}};
  return export_all(env, exports, ok, fns, sizeof fns / sizeof fns[0]);
}
