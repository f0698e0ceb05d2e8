/*
 * memory.node: gives the C heap's free pages back to the system (issue 18, idle RSS).
 *
 * glibc keeps memory that was freed inside its arenas (one per thread that ever allocated under
 * contention: the libuv pool, V8's platform threads, worker threads) and returns it only from the
 * top of the main arena, past M_TRIM_THRESHOLD. An idle server thus keeps megabytes of freed
 * buffers resident. malloc_trim(0) walks every arena and releases the whole free pages in it
 * (madvise MADV_DONTNEED), which is what src/util/malloc-trim.ts calls once a server goes idle.
 *
 * Exports `available` (false where the C library has no malloc_trim: musl, other systems),
 * `trim()`, which returns whether any memory was released, and `retain(trim, mmap)`, which sets
 * M_TRIM_THRESHOLD and M_MMAP_THRESHOLD (mallopt) so that a busy server keeps the buffers it frees
 * for its next ones instead of giving them back after every request body: on this project's VMs a
 * page given back and taken again costs a fault and the host's zeroing (~2.7 ms per MiB), and with
 * glibc's defaults (128 KiB) a 256 MiB upload faulted 2,400–12,000 pages in the server. The idle
 * trim above gives it all back once the server rests.
 *
 * `mapTextInPages()` makes the executable's own mappings count only the pages the process uses.
 * Kernels that keep files in large folios (6.x with ext4, read_ahead_kb 8192 here) map a read of
 * node's 94 MiB binary 2 MiB at a time: an idle server's resident file pages were 60 MiB, 52 of
 * them /usr/bin/node, against an anonymous footprint of 28 MiB (2026-12-06). For each mapping of the
 * executable that is not writable and holds no copied-on-write page (smaps' Anonymous and Swap
 * both 0 kB: the text and read-only data, never the relocated RELRO pages), it asks for small pages
 * (MADV_NOHUGEPAGE) and drops the mapping's pages (MADV_DONTNEED): they are the file's bytes
 * unchanged, still in the page cache, and each is mapped again, alone, when next used. Measured by
 * hand on an idle server: 106 MiB VmRSS before, 51 MiB after, 74.6 MiB after 1,500 requests and
 * the idle trim (file pages 40 MiB). Returns the bytes of the mappings so advised (0 off Linux).
 */
#include <node_api.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

static napi_value js_trim(napi_env env, napi_callback_info info) {
  (void)info;
  int released = 0;
#if defined(__GLIBC__)
  released = malloc_trim(0);
#endif
  napi_value v;
  napi_get_boolean(env, released != 0, &v);
  return v;
}

static napi_value js_retain(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int64_t trim = 0, mmap = 0;
  int ok = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == 2 &&
      napi_get_value_int64(env, argv[0], &trim) == napi_ok && napi_get_value_int64(env, argv[1], &mmap) == napi_ok &&
      trim > 0 && mmap > 0 && trim <= 1073741824 && mmap <= 33554432) {
#if defined(__GLIBC__)
    ok = mallopt(M_TRIM_THRESHOLD, (int)trim) == 1 && mallopt(M_MMAP_THRESHOLD, (int)mmap) == 1;
#endif
  }
  napi_value v;
  napi_get_boolean(env, ok, &v);
  return v;
}

static napi_value js_map_text(napi_env env, napi_callback_info info) {
  (void)info;
  double advised = 0;
#if defined(__linux__) && defined(MADV_NOHUGEPAGE)
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  FILE *f = n > 0 ? fopen("/proc/self/smaps", "r") : NULL;
  if (f) {
    exe[n] = 0;
    enum { MAX_RANGES = 64 };
    unsigned long ranges[MAX_RANGES][2];
    int count = 0, candidate = 0;
    long anon = -1, swap = -1;
    unsigned long start = 0, end = 0;
    char line[PATH_MAX + 256];
    while (fgets(line, sizeof line, f)) {
      char c = line[0];
      if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
        /* a mapping: "start-end perms offset dev inode   path" */
        char perms[8] = {0};
        int at = 0;
        candidate = 0;
        anon = swap = -1;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &start, &end, perms, &at) >= 3 && at > 0) {
          char *path = line + at;
          path[strcspn(path, "\n")] = 0;
          candidate = strcmp(path, exe) == 0 && perms[1] != 'w' && perms[3] == 'p';
        }
      } else if (candidate && strncmp(line, "Anonymous:", 10) == 0) {
        if (sscanf(line + 10, "%ld", &anon) != 1) candidate = 0;
      } else if (candidate && strncmp(line, "Swap:", 5) == 0) {
        /* a copied-on-write page swapped out is no longer counted in Anonymous: it must be 0 too */
        if (sscanf(line + 5, "%ld", &swap) != 1) candidate = 0;
        else if (anon == 0 && swap == 0 && count < MAX_RANGES) {
          ranges[count][0] = start;
          ranges[count][1] = end;
          count++;
        }
        candidate = 0;
      }
    }
    fclose(f);
    /* after reading: the advice splits mappings, which must not happen under the reading */
    for (int i = 0; i < count; i++) {
      void *p = (void *)ranges[i][0];
      size_t len = ranges[i][1] - ranges[i][0];
      if (madvise(p, len, MADV_NOHUGEPAGE) == 0 && madvise(p, len, MADV_DONTNEED) == 0) advised += (double)len;
    }
  }
#endif
  napi_value v;
  napi_create_double(env, advised, &v);
  return v;
}

NAPI_MODULE_INIT() {
  napi_value v;
#if defined(__GLIBC__)
  napi_get_boolean(env, 1, &v);
#else
  napi_get_boolean(env, 0, &v);
#endif
  napi_set_named_property(env, exports, "available", v);
  napi_create_function(env, "trim", NAPI_AUTO_LENGTH, js_trim, NULL, &v);
  napi_set_named_property(env, exports, "trim", v);
  napi_create_function(env, "retain", NAPI_AUTO_LENGTH, js_retain, NULL, &v);
  napi_set_named_property(env, exports, "retain", v);
  napi_create_function(env, "mapTextInPages", NAPI_AUTO_LENGTH, js_map_text, NULL, &v);
  napi_set_named_property(env, exports, "mapTextInPages", v);
  return exports;
}
