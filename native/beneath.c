/*
 * beneath.node: opens a file of a directory tree without leaving the tree, whatever the tree does
 * meanwhile (src/util/open-beneath.ts, for `legacy-registry import` of a local tree).
 *
 * The importer resolves an object's path (realpath) and checks that it lies inside the tree; opened
 * by that path afterwards, a directory on the way that someone swapped for a symbolic link since
 * (to /etc, to another tenant's tree) would be followed, and a file outside the tree imported.
 * Opened here instead, relative to a descriptor of the tree's root, with the path already free of
 * links: no link is followed at all, and nothing outside the root is reached.
 *
 * Exports `available` (false off Linux), `openRoot(path)`: a descriptor of the directory (O_PATH)
 * or -errno, and `openBeneath(rootFd, relative, flags, walk)`: the file at `relative` below the
 * root opened with `flags` (read-only ones: O_RDONLY, O_NONBLOCK, O_NOFOLLOW, O_DIRECTORY, O_PATH),
 * or -errno: ELOOP when a symbolic link is on the way, EXDEV when the path would leave the root.
 * Each descriptor is O_CLOEXEC.
 *
 * openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS (Linux 5.6) does it
 * in one call; where the kernel has no openat2 (ENOSYS) or a seccomp filter refuses it (EPERM), and
 * when `walk` is true (tests of that path), the path is walked one component at a time: each
 * directory opened with O_PATH | O_NOFOLLOW | O_DIRECTORY relative to the one before, checked with
 * fstat to be a directory (a link is refused), the last component opened with O_NOFOLLOW and checked
 * not to be a link. Neither follows a link or '..', so a swap anywhere on the path makes the open
 * fail instead of leaving the tree.
 */
#define _GNU_SOURCE /* O_PATH */
#include "napi-util.h"
#include <limits.h>
#if defined(__linux__)
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437 /* the same number on every architecture since 5.6 */
#endif
#ifndef RESOLVE_NO_MAGICLINKS
#define RESOLVE_NO_MAGICLINKS 0x02
#endif
#ifndef RESOLVE_NO_SYMLINKS
#define RESOLVE_NO_SYMLINKS 0x04
#endif
#ifndef RESOLVE_BENEATH
#define RESOLVE_BENEATH 0x08
#endif

struct lr_open_how {
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};

/* 1: openat2 works, 0: it does not here (ENOSYS, EPERM), -1: not tried yet. Threads may race on it harmlessly. */
static volatile int have_openat2 = -1;

/* The flags a caller may pass: reading only, never creating or truncating. */
#define ALLOWED (O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_DIRECTORY | O_PATH)

static int open_walk(int root, const char *rel, int flags) {
  char buf[PATH_MAX];
  size_t len = strlen(rel);
  if (len >= sizeof buf) return -ENAMETOOLONG;
  memcpy(buf, rel, len + 1);
  int dir = root;
  char *p = buf;
  for (;;) {
    while (*p == '/') p++;
    char *end = strchr(p, '/');
    char *next = end;
    if (end != NULL) {
      *end = '\0';
      next = end + 1;
      while (*next == '/') next++;
      if (*next == '\0') next = NULL; /* a trailing slash: this is the last component */
    }
    const char *name = *p == '\0' ? "." : p;
    if (strcmp(name, "..") == 0) {
      if (dir != root) close(dir);
      return -EXDEV;
    }
    if (next == NULL) {
      int fd = openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC);
      int err = errno;
      if (dir != root) close(dir);
      if (fd < 0) return -err;
      struct stat st;
      /* O_PATH | O_NOFOLLOW opens a link itself rather than failing: refused here */
      if (fstat(fd, &st) != 0 || S_ISLNK(st.st_mode)) {
        close(fd);
        return -ELOOP;
      }
      return fd;
    }
    int fd = openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int err = errno;
    if (fd < 0) {
      struct stat st;
      /* O_DIRECTORY | O_NOFOLLOW on a link fails with ENOTDIR: a link there is told apart (ELOOP) */
      if (err == ENOTDIR && fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
      if (dir != root) close(dir);
      return -err;
    }
    if (dir != root) close(dir);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode)) {
      int link = S_ISLNK(st.st_mode);
      close(fd);
      return link ? -ELOOP : -ENOTDIR;
    }
    dir = fd;
    p = next;
  }
}

static int open_beneath(int root, const char *rel, int flags, int walk) {
  if (!walk && have_openat2 != 0) {
    struct lr_open_how how = {
        .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
        .mode = 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    for (int tries = 0; tries < 16; tries++) {
      long fd = syscall(SYS_openat2, root, *rel ? rel : ".", &how, sizeof how);
      if (fd >= 0) {
        have_openat2 = 1;
        return (int)fd;
      }
      /* EAGAIN: a rename elsewhere raced the lookup (the kernel asks to try again) */
      if (errno == EAGAIN) continue;
      if (errno == ENOSYS || errno == EPERM) {
        have_openat2 = 0;
        break;
      }
      have_openat2 = 1;
      return -errno;
    }
    if (have_openat2 != 0) return -EAGAIN;
  }
  return open_walk(root, rel, flags);
}
#endif

static napi_value js_open_root(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  char path[PATH_MAX];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len >= sizeof path - 1) {
    throw_type(env, "a path (shorter than PATH_MAX) was expected");
    return NULL;
  }
  int r = -1;
#if defined(__linux__)
  r = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (r < 0) r = -errno;
#endif
  napi_value v;
  napi_create_int32(env, r, &v);
  return v;
}

static napi_value js_open_beneath(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args_of(env, info, 4, argv)) return NULL;
  int32_t root = -1;
  int32_t flags = 0;
  bool walk = false;
  char rel[PATH_MAX];
  size_t len = 0;
  if (napi_get_value_int32(env, argv[0], &root) != napi_ok || root < 0) {
    throw_type(env, "a directory descriptor was expected");
    return NULL;
  }
  if (napi_get_value_string_utf8(env, argv[1], rel, sizeof rel, &len) != napi_ok) {
    throw_type(env, "a relative path was expected");
    return NULL;
  }
  if (napi_get_value_int32(env, argv[2], &flags) != napi_ok || napi_get_value_bool(env, argv[3], &walk) != napi_ok) {
    throw_type(env, "flags (a number) and walk (a boolean) were expected");
    return NULL;
  }
  int r = -1;
#if defined(__linux__)
  if (len >= sizeof rel - 1)
    r = -ENAMETOOLONG;
  else if (rel[0] == '/')
    r = -EXDEV;
  else if ((flags & ~ALLOWED) != 0)
    r = -EINVAL;
  else
    r = open_beneath(root, rel, flags, walk);
#endif
  napi_value v;
  napi_create_int32(env, r, &v);
  return v;
}

NAPI_MODULE_INIT() {
  static const lr_export_t fns[] = {
      {"openRoot", js_open_root},
      {"openBeneath", js_open_beneath},
  };
#if defined(__linux__)
  const int available = 1;
#else
  const int available = 0;
#endif
  return export_all(env, exports, available, fns, sizeof fns / sizeof fns[0]);
}
