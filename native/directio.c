/*
 * directio.node: page-aligned buffers for writes and reads with O_DIRECT (src/storage/direct-io.ts).
 *
 * A big blob written through the page cache is copied into pages the kernel allocates for it. On
 * this project's VMs free memory is handed back to the host (free page reporting), so each such
 * page is faulted in and zeroed by the host first: the copy into a fresh page cache cost 0.7-3.3 s
 * of the server's system time per GiB of upload, against 0.1-0.2 s when it reuses pages (measured
 * 2026-12-06 with perf: `copy_folio_from_iter_atomic` 40 % of a slow upload's samples, 4 % of a fast
 * one's). Written with O_DIRECT, the bytes go from a buffer the server keeps to the disk: no page
 * cache, no copy into it, no write-back afterwards. O_DIRECT needs the buffer's address aligned to
 * the device (512 bytes here; 4096 always suffices), which a JavaScript Buffer does not promise.
 *
 * Exports `available` (false off Linux), `alignedBuffer(size)`: an ArrayBuffer of `size` bytes (a
 * multiple of 4096, at most 64 MiB) mapped on its own, page aligned, unmapped when collected; and
 * `discard(arrayBuffer)`: gives its pages back (madvise MADV_DONTNEED; the bytes read as zero
 * afterwards), for an idle server's buffers that are kept for the next upload; and `cached(fd,
 * position)`: whether the page of the file at `position` is in the page cache (mincore of a one-page
 * read-only mapping: no read, no readahead), so a download reads a big blob that is not there with
 * O_DIRECT into those buffers instead of faulting in a fresh page cache for it; true when it cannot
 * tell (the caller then reads through the page cache as before).
 */
#include "napi-util.h"
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#define ALIGN 4096
#define MAX_SIZE (64u << 20)

#if defined(__linux__)
static void unmap(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}
#endif

static napi_value js_aligned(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  int64_t size = 0;
  if (napi_get_value_int64(env, argv[0], &size) != napi_ok || size <= 0 || size > MAX_SIZE || size % ALIGN != 0) {
    throw_type(env, "size must be a positive multiple of 4096, at most 64 MiB");
    return NULL;
  }
#if defined(__linux__)
  void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    napi_throw_error(env, "ENOMEM", "mmap of an aligned buffer failed");
    return NULL;
  }
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, (size_t)size, unmap, (void *)(uintptr_t)size, &ab) != napi_ok) {
    munmap(p, (size_t)size);
    napi_throw_error(env, NULL, "napi_create_external_arraybuffer failed");
    return NULL;
  }
  return ab;
#else
  napi_throw_error(env, NULL, "aligned buffers need Linux");
  return NULL;
#endif
}

static napi_value js_discard(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  bool is = false;
  void *data = NULL;
  size_t len = 0;
  if (napi_is_arraybuffer(env, argv[0], &is) != napi_ok || !is || napi_get_arraybuffer_info(env, argv[0], &data, &len) != napi_ok) {
    throw_type(env, "an ArrayBuffer was expected");
    return NULL;
  }
  int ok = 0;
#if defined(__linux__)
  /* only whole pages of a buffer this module mapped: its address and size are page multiples */
  if (((uintptr_t)data % ALIGN) == 0 && len % ALIGN == 0 && len > 0) ok = madvise(data, len, MADV_DONTNEED) == 0;
#endif
  napi_value v;
  napi_get_boolean(env, ok, &v);
  return v;
}

static napi_value js_cached(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!args_of(env, info, 2, argv)) return NULL;
  int32_t fd = -1;
  int64_t position = -1;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 || napi_get_value_int64(env, argv[1], &position) != napi_ok || position < 0) {
    throw_type(env, "a file descriptor and a position were expected");
    return NULL;
  }
  int cached = 1;
#if defined(__linux__)
  long page = sysconf(_SC_PAGESIZE);
  if (page > 0) {
    off_t at = (off_t)(position - position % page);
    void *p = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, fd, at);
    if (p != MAP_FAILED) {
      unsigned char vec = 1;
      if (mincore(p, (size_t)page, &vec) == 0) cached = vec & 1;
      munmap(p, (size_t)page);
    }
  }
#endif
  napi_value v;
  napi_get_boolean(env, cached, &v);
  return v;
}

NAPI_MODULE_INIT() {
  static const lr_export_t fns[] = {{"alignedBuffer", js_aligned}, {"discard", js_discard}, {"cached", js_cached}};
#if defined(__linux__)
  int available = 1;
#else
  int available = 0;
#endif
  return export_all(env, exports, available, fns, sizeof fns / sizeof fns[0]);
}
