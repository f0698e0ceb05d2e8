/*
 * What the native modules (sha256x2.c, gunzip.c) share: argument checks that throw a TypeError,
 * and the export of their functions. Each module includes it and is compiled on its own.
 */
#ifndef LR_NAPI_UTIL_H
#define LR_NAPI_UTIL_H

#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline int throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return 0;
}

/* A Uint8Array argument's bytes (a TypeError for anything else). */
static inline int bytes_of(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  void *d;
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return throw_type(env, "a Uint8Array was expected");
  if (napi_get_typedarray_info(env, v, &type, len, &d, &ab, &off) != napi_ok || type != napi_uint8_array)
    return throw_type(env, "a Uint8Array was expected");
  *data = d;
  return 1;
}

/* The call's first n arguments (a TypeError when fewer were given). */
static inline int args_of(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n) return throw_type(env, "missing arguments");
  return 1;
}

typedef struct {
  const char *name;
  napi_callback fn;
} lr_export_t;

/* `available` and the module's functions on `exports`. */
static inline napi_value export_all(napi_env env, napi_value exports, int available, const lr_export_t *fns, size_t n) {
  napi_value v;
  napi_get_boolean(env, available, &v);
  napi_set_named_property(env, exports, "available", v);
  for (size_t i = 0; i < n; i++) {
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &v);
    napi_set_named_property(env, exports, fns[i].name, v);
  }
  return exports;
}

#endif
