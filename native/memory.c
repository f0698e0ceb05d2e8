/*
 * memory.node: gives the C heap's free pages back to the system (issue 18, idle RSS).
 *
 * glibc keeps memory that was freed inside its arenas (one per thread that ever allocated under
 * contention: the libuv pool, V8's platform threads, worker threads) and returns it only from the
 * top of the main arena, past M_TRIM_THRESHOLD. An idle server thus keeps megabytes of freed
 * buffers resident. malloc_trim(0) walks every arena and releases the whole free pages in it
 * (madvise MADV_DONTNEED), which is what src/util/malloc-trim.ts calls once a server goes idle.
 *
 * Exports `available` (false where the C library has no malloc_trim: musl, other systems) and
 * `trim()`, which returns whether any memory was released.
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
  return exports;
}
