/*
 * sha256x2: SHA-256 of two streams at once over the same bytes, with the x86 SHA extensions.
 *
 * A v1 layer is hashed twice over the same bytes on each side of its gzip (its address and its
 * payload checksum over the gzip; its diff_id and its tarsum over the tar). One SHA-256 stream is
 * bound by the latency of sha256rnds2, each round depending on the one before: two independent
 * streams interleaved in one loop fill the gaps (measured on this project's AMD EPYC VMs: 1.49 GB/s
 * for one stream, 2.7 GB/s for two together). src/digest/sha256.ts loads this module when it was
 * built (scripts/build-native.mjs) and the CPU has the extensions; otherwise it uses node:crypto.
 *
 * A context is a 112-byte Uint8Array owned by JavaScript:
 *   0..31   the state, 8 little-endian uint32 words (H0..H7)
 *   32..39  bytes hashed so far (uint64)
 *   40..43  bytes waiting in the partial block (uint32, < 64)
 *   48..111 the partial block
 */
#include <node_api.h>
#include "napi-util.h"
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define CTX_SIZE 112
#define TARGET __attribute__((target("sha,sse4.1,ssse3")))

typedef struct {
  uint32_t h[8];
  uint64_t total;
  uint32_t plen;
  uint32_t pad;
  uint8_t partial[64];
} ctx_t;

_Static_assert(sizeof(ctx_t) == CTX_SIZE, "context layout");

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
    0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
    0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
    0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
    0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
    0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* The state in the order sha256rnds2 takes it: ABEF and CDGH. */
TARGET static inline void load_state(const uint32_t s[8], __m128i *abef, __m128i *cdgh) {
  __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&s[0]), 0xB1);
  __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&s[4]), 0x1B);
  *abef = _mm_alignr_epi8(dcba, efgh, 8);
  *cdgh = _mm_blend_epi16(efgh, dcba, 0xF0);
}

TARGET static inline void store_state(uint32_t s[8], __m128i abef, __m128i cdgh) {
  __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
  __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
  _mm_storeu_si128((__m128i *)&s[0], _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128((__m128i *)&s[4], _mm_alignr_epi8(dchg, feba, 8));
}

#define BSWAP_MASK _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL)
/* W[g] for g >= 4: the message schedule, four words at a time. */
#define SCHEDULE(W, g) \
  _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(W[(g) - 4], W[(g) - 3]), _mm_alignr_epi8(W[(g) - 1], W[(g) - 2], 4)), W[(g) - 1])

/* n blocks of 64 bytes from p into s. */
TARGET static void blocks1(uint32_t s[8], const uint8_t *p, size_t n) {
  const __m128i mask = BSWAP_MASK;
  __m128i st0, st1;
  load_state(s, &st0, &st1);
  while (n--) {
    __m128i save0 = st0, save1 = st1, W[16];
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
      W[g] = g < 4 ? _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), mask) : SCHEDULE(W, g);
      __m128i m = _mm_add_epi32(W[g], _mm_loadu_si128((const __m128i *)&K[4 * g]));
      st1 = _mm_sha256rnds2_epu32(st1, st0, m);
      st0 = _mm_sha256rnds2_epu32(st0, st1, _mm_shuffle_epi32(m, 0x0E));
    }
    st0 = _mm_add_epi32(st0, save0);
    st1 = _mm_add_epi32(st1, save1);
    p += 64;
  }
  store_state(s, st0, st1);
}

/* n blocks from pa into sa and n blocks from pb into sb, the two streams' rounds interleaved. */
TARGET static void blocks2(uint32_t sa[8], const uint8_t *pa, uint32_t sb[8], const uint8_t *pb, size_t n) {
  const __m128i mask = BSWAP_MASK;
  __m128i a0, a1, b0, b1;
  load_state(sa, &a0, &a1);
  load_state(sb, &b0, &b1);
  while (n--) {
    __m128i sa0 = a0, sa1 = a1, sb0 = b0, sb1 = b1, WA[16], WB[16];
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
      if (g < 4) {
        WA[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 16 * g)), mask);
        WB[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 16 * g)), mask);
      } else {
        WA[g] = SCHEDULE(WA, g);
        WB[g] = SCHEDULE(WB, g);
      }
      __m128i k = _mm_loadu_si128((const __m128i *)&K[4 * g]);
      __m128i ma = _mm_add_epi32(WA[g], k), mb = _mm_add_epi32(WB[g], k);
      a1 = _mm_sha256rnds2_epu32(a1, a0, ma);
      b1 = _mm_sha256rnds2_epu32(b1, b0, mb);
      a0 = _mm_sha256rnds2_epu32(a0, a1, _mm_shuffle_epi32(ma, 0x0E));
      b0 = _mm_sha256rnds2_epu32(b0, b1, _mm_shuffle_epi32(mb, 0x0E));
    }
    a0 = _mm_add_epi32(a0, sa0);
    a1 = _mm_add_epi32(a1, sa1);
    b0 = _mm_add_epi32(b0, sb0);
    b1 = _mm_add_epi32(b1, sb1);
    pa += 64;
    pb += 64;
  }
  store_state(sa, a0, a1);
  store_state(sb, b0, b1);
}

/* Fill c's partial block from p; returns the bytes taken (the block is hashed once full). */
static size_t fill(ctx_t *c, const uint8_t *p, size_t n) {
  if (c->plen == 0) return 0;
  size_t take = 64 - c->plen;
  if (take > n) take = n;
  memcpy(c->partial + c->plen, p, take);
  c->plen += (uint32_t)take;
  if (c->plen == 64) {
    blocks1(c->h, c->partial, 1);
    c->plen = 0;
  }
  return take;
}

/* The rest of p after fill: whole blocks, then the tail into the partial block (empty then). */
static void rest(ctx_t *c, const uint8_t *p, size_t n) {
  size_t whole = n / 64;
  if (whole) blocks1(c->h, p, whole);
  size_t tail = n - whole * 64;
  if (tail) {
    memcpy(c->partial, p + whole * 64, tail);
    c->plen = (uint32_t)tail;
  }
}

static void update1(ctx_t *c, const uint8_t *p, size_t n) {
  if (n == 0) return; /* p may be NULL then (a detached or empty buffer) */
  size_t off = fill(c, p, n);
  if (off < n) rest(c, p + off, n - off);
  c->total += n;
}

static void update2(ctx_t *a, ctx_t *b, const uint8_t *p, size_t n) {
  if (n == 0) return;
  size_t oa = fill(a, p, n), ob = fill(b, p, n);
  size_t na = oa < n ? (n - oa) / 64 : 0, nb = ob < n ? (n - ob) / 64 : 0;
  size_t both = na < nb ? na : nb;
  if (both) {
    blocks2(a->h, p + oa, b->h, p + ob, both);
    oa += both * 64;
    ob += both * 64;
  }
  if (oa < n) rest(a, p + oa, n - oa);
  if (ob < n) rest(b, p + ob, n - ob);
  a->total += n;
  b->total += n;
}

static void final1(ctx_t *c, uint8_t out[32]) {
  uint64_t bits = c->total * 8;
  uint8_t pad[72] = {0x80};
  size_t padlen = (c->plen < 56 ? 56 : 120) - c->plen;
  for (int i = 0; i < 8; i++) pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
  uint64_t total = c->total;
  update1(c, pad, padlen + 8);
  c->total = total;
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(c->h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
    out[4 * i + 3] = (uint8_t)c->h[i];
  }
}

/* ---- N-API ---- */

/* A context argument; `fresh`: about to be initialised (its contents are not looked at). */
static ctx_t *ctx_of(napi_env env, napi_value v, int fresh) {
  uint8_t *d;
  size_t len;
  if (!bytes_of(env, v, &d, &len)) return NULL;
  if (len != CTX_SIZE || ((uintptr_t)d & 7) != 0) {
    throw_type(env, "not a sha256x2 context");
    return NULL;
  }
  ctx_t *c = (ctx_t *)d;
  if (!fresh && c->plen >= 64) {
    throw_type(env, "a corrupt sha256x2 context");
    return NULL;
  }
  return c;
}

/* update(ctx, bytes) and final(ctx, out): a context, then a byte array. */
static ctx_t *ctx_and_bytes(napi_env env, napi_callback_info info, uint8_t **p, size_t *n) {
  napi_value argv[2];
  if (!args_of(env, info, 2, argv)) return NULL;
  ctx_t *c = ctx_of(env, argv[0], 0);
  return c && bytes_of(env, argv[1], p, n) ? c : NULL;
}

static napi_value js_init(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  ctx_t *c = ctx_of(env, argv[0], 1);
  if (!c) return NULL;
  memset(c, 0, sizeof *c);
  memcpy(c->h, H0, sizeof H0);
  return NULL;
}

static napi_value js_update(napi_env env, napi_callback_info info) {
  uint8_t *p;
  size_t n;
  ctx_t *c = ctx_and_bytes(env, info, &p, &n);
  if (c) update1(c, p, n);
  return NULL;
}

static napi_value js_update2(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!args_of(env, info, 3, argv)) return NULL;
  ctx_t *a = ctx_of(env, argv[0], 0);
  ctx_t *b = a ? ctx_of(env, argv[1], 0) : NULL;
  uint8_t *p;
  size_t n;
  if (!b || !bytes_of(env, argv[2], &p, &n)) return NULL;
  if (a == b) {
    throw_type(env, "two distinct contexts were expected");
    return NULL;
  }
  update2(a, b, p, n);
  return NULL;
}

static napi_value js_final(napi_env env, napi_callback_info info) {
  uint8_t *out;
  size_t n;
  ctx_t *c = ctx_and_bytes(env, info, &out, &n);
  if (!c) return NULL;
  if (n < 32) {
    throw_type(env, "a 32-byte output was expected");
    return NULL;
  }
  final1(c, out);
  return NULL;
}

NAPI_MODULE_INIT() {
  __builtin_cpu_init();
  int ok = __builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("ssse3");
  napi_value v;
  napi_create_uint32(env, CTX_SIZE, &v);
  napi_set_named_property(env, exports, "contextSize", v);
  static const lr_export_t fns[] = {{"init", js_init}, {"update", js_update}, {"update2", js_update2}, {"final", js_final}};
  return export_all(env, exports, ok, fns, sizeof fns / sizeof fns[0]);
}
