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
 */
#include <node_api.h>
#if defined(__GLIBC__)
#include <malloc.h>
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
  return exports;
}
