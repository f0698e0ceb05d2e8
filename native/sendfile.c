/*
 * sendfile(2) for blob downloads over plain HTTP (src/http/send-file.ts; issue 18).
 *
 * Node has no sendfile: a download reads every chunk of the file into a buffer, then the socket
 * copies it again. Here the kernel moves the page-cache pages to the socket itself, on the event
 * loop's own thread, without blocking it:
 * - the socket's descriptor is duplicated, and the duplicate is watched for writability with a
 *   libuv poll handle on the loop that runs JavaScript (epoll keeps one registration per
 *   descriptor, so node's own watch on the original, for reading, is untouched);
 * - each time the socket can take bytes, sendfile sends from the file at most STEP bytes (a fast
 *   reader never holds the loop for long), and stops at EAGAIN until the next wake-up;
 * - at the end, an error or a cancel, the poll handle is closed, then the duplicate, and only then
 *   is the JavaScript callback called: (errno or 0, bytes sent), with -1 when the file ended before
 *   the promised length, and -2 when the next bytes to send are not all in the page cache (see
 *   resident below: the caller sends the rest itself). The caller keeps the file open until then.
 *
 *   start(socketFd, fileFd, offset, length, callback) -> job
 *   sent(job) -> bytes sent so far          cancel(job) -> stops at the next step, callback ECANCELED
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

#include "napi-util.h"

#define STEP (2 << 20)
#define SHORT_FILE (-1)
#define NOT_CACHED (-2)
#define AHEAD (8 << 20)

/* read-aheads started since the module was loaded (tests) */
static double reads_ahead = 0;

#ifndef __NR_cachestat
#define __NR_cachestat 451 /* the same number on x86-64 and arm64 (Linux 6.5) */
#endif

struct lr_cachestat_range {
  uint64_t off;
  uint64_t len;
};
struct lr_cachestat {
  uint64_t nr_cache;
  uint64_t nr_dirty;
  uint64_t nr_writeback;
  uint64_t nr_evicted;
  uint64_t nr_recently_evicted;
};

static long page_size(void) {
  static long page = 0;
  if (page == 0) page = sysconf(_SC_PAGESIZE);
  return page;
}

/* cachestat(2): 1 works, 0 not on this kernel (mincore then), -1 not tried yet */
static int cachestat_works = -1;

/*
 * Whether every page of [off, off + len) is in the page cache. sendfile reads a page that is not
 * from the disk, and it would do so on the event loop's thread: such a part of the file is left to
 * the caller's reads instead, which run in libuv's thread pool. cachestat(2) counts the cached pages
 * of a range without touching them; before Linux 6.5, mincore(2) of a mapping of the range.
 */
static bool resident(int fd, off_t off, size_t len) {
  long page = page_size();
  off_t first = off - off % page;
  size_t span = (size_t)(off - first) + len;
  size_t pages = (span + (size_t)page - 1) / (size_t)page;
  if (cachestat_works != 0) {
    struct lr_cachestat_range r = {(uint64_t)first, (uint64_t)span};
    struct lr_cachestat cs;
    if (syscall(__NR_cachestat, fd, &r, &cs, 0) == 0) {
      cachestat_works = 1;
      return cs.nr_cache >= pages;
    }
    if (errno != ENOSYS && errno != EPERM) return false;
    cachestat_works = 0;
  }
  unsigned char vec[(STEP / 4096) + 2];
  if (pages > sizeof vec) return false;
  void *m = mmap(NULL, span, PROT_READ, MAP_SHARED, fd, first);
  if (m == MAP_FAILED) return false;
  bool all = mincore(m, span, vec) == 0;
  for (size_t i = 0; all && i < pages; i++) all = (vec[i] & 1) != 0;
  munmap(m, span);
  return all;
}

typedef struct {
  uv_poll_t poll; /* first: the handle's address is the job's */
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  int sock; /* the duplicate, ours to close */
  int file; /* the caller's */
  off_t off;
  off_t end;
  double sent;
  int err;
  bool finishing; /* the poll handle is closing, or will once the read-ahead is back */
  bool loop_done; /* closed, callback called */
  uv_loop_t *loop;
  uv_work_t work;    /* the read-ahead in the thread pool */
  bool reading;      /* … is in flight */
  bool waiting;      /* the poll is stopped until it is back */
  off_t ahead_from;  /* the window it reads (or read last) */
  off_t ahead_until;
  bool js_done;   /* the JavaScript handle was collected */
} job_t;

static void release(job_t *job) {
  if (job->loop_done && job->js_done) free(job);
}

static void on_closed(uv_handle_t *h) {
  job_t *job = (job_t *)h;
  napi_env env = job->env;
  close(job->sock);
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value cb, recv, argv[2];
    if (napi_get_reference_value(env, job->callback, &cb) == napi_ok && cb != NULL) {
      napi_get_global(env, &recv);
      napi_create_int32(env, job->err, &argv[0]);
      napi_create_double(env, job->sent, &argv[1]);
      if (napi_make_callback(env, job->async, recv, cb, 2, argv, NULL) == napi_pending_exception) {
        napi_value e;
        napi_get_and_clear_last_exception(env, &e);
        napi_fatal_exception(env, e);
      }
    }
    napi_close_handle_scope(env, scope);
  }
  napi_async_destroy(env, job->async);
  napi_delete_reference(env, job->callback);
  job->loop_done = true;
  release(job);
}

static void finish(job_t *job, int err) {
  if (job->finishing) return;
  job->finishing = true;
  job->err = err;
  uv_poll_stop(&job->poll);
  /* a read-ahead in flight still uses the job: the handle is closed when it is back */
  if (!job->reading) uv_close((uv_handle_t *)&job->poll, on_closed);
}

static void on_writable(uv_poll_t *h, int status, int events);

/*
 * Read-ahead of a window the page cache does not hold, in libuv's thread pool, where the server's
 * file reads run: readahead(2) submits its reads, then its pages are mapped with MAP_POPULATE, which
 * waits for them (nothing is copied), and unmapped. The mapping is never touched, so a window past
 * the end of a file that shrank is harmless.
 */
static void read_ahead(uv_work_t *w) {
  job_t *job = w->data;
  size_t len = (size_t)(job->ahead_until - job->ahead_from);
  /* the reads submitted at once, in large requests (a fault's own read-ahead is 128 KiB at a time
     on many systems), then waited for: the population finds the pages locked until they are read */
  readahead(job->file, job->ahead_from, len);
  void *m = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, job->file, job->ahead_from);
  if (m != MAP_FAILED) munmap(m, len);
}

static void read_ahead_back(uv_work_t *w, int status);

static void start_read_ahead(job_t *job, off_t from) {
  from -= from % page_size();
  off_t until = from + AHEAD;
  if (until > job->end) until = job->end;
  if (until <= from) return;
  job->ahead_from = from;
  job->ahead_until = until;
  job->work.data = job;
  if (uv_queue_work(job->loop, &job->work, read_ahead, read_ahead_back) == 0) {
    job->reading = true;
    reads_ahead++;
  }
}

/* the window at the job's offset read ahead, or, when that cannot be queued, the rest left to the caller */
static void read_ahead_or_leave(job_t *job) {
  start_read_ahead(job, job->off);
  if (!job->reading) finish(job, NOT_CACHED);
}

static size_t step_at(const job_t *job) {
  size_t want = (size_t)(job->end - job->off);
  return want > STEP ? STEP : want;
}

static void read_ahead_back(uv_work_t *w, int status) {
  (void)status;
  job_t *job = w->data;
  job->reading = false;
  if (job->finishing) {
    uv_close((uv_handle_t *)&job->poll, on_closed);
    return;
  }
  if (!job->waiting) return;
  if (resident(job->file, job->off, step_at(job))) {
    job->waiting = false;
    int r = uv_poll_start(&job->poll, UV_WRITABLE, on_writable);
    if (r != 0) finish(job, -r);
  } else if (job->off < job->ahead_from || job->off >= job->ahead_until) {
    /* the window read was not the one the sends stopped at */
    read_ahead_or_leave(job);
  } else {
    /* read and gone again (the page cache under pressure): the caller reads the rest */
    finish(job, NOT_CACHED);
  }
}

static void on_writable(uv_poll_t *h, int status, int events) {
  (void)events;
  job_t *job = (job_t *)h;
  if (job->finishing) return;
  if (status < 0) {
    finish(job, -status);
    return;
  }
  /* a blob being read in from the disk: the next window is read while this one is sent */
  if (job->ahead_until > 0 && !job->reading && job->ahead_until < job->end && job->off + AHEAD / 2 >= job->ahead_until)
    start_read_ahead(job, job->ahead_until);
  size_t budget = STEP;
  while (budget > 0 && job->off < job->end) {
    size_t want = (size_t)(job->end - job->off);
    if (want > budget) want = budget;
    if (!resident(job->file, job->off, want)) {
      /* sendfile would read the disk on this thread: the thread pool reads it first */
      uv_poll_stop(&job->poll);
      job->waiting = true;
      if (!job->reading) read_ahead_or_leave(job);
      return;
    }
    ssize_t n = sendfile(job->sock, job->file, &job->off, want);
    if (n > 0) {
      job->sent += (double)n;
      budget -= (size_t)n;
    } else if (n == 0) {
      finish(job, SHORT_FILE);
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    } else {
      finish(job, errno);
      return;
    }
  }
  if (job->off >= job->end) finish(job, 0);
}

static void on_refused(uv_handle_t *h) {
  job_t *job = (job_t *)h;
  close(job->sock);
  free(job);
}

static void on_collected(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  job_t *job = data;
  job->js_done = true;
  release(job);
}

static int int_of(napi_env env, napi_value v, int64_t *out) {
  if (napi_get_value_int64(env, v, out) != napi_ok) return throw_type(env, "a number was expected");
  return 1;
}

static job_t *job_of(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    throw_type(env, "a sendfile job was expected");
    return NULL;
  }
  return data;
}

static napi_value start(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!args_of(env, info, 5, argv)) return NULL;
  int64_t sock, file, off, len;
  if (!int_of(env, argv[0], &sock) || !int_of(env, argv[1], &file) || !int_of(env, argv[2], &off) || !int_of(env, argv[3], &len)) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[4], &t);
  if (t != napi_function) {
    throw_type(env, "a callback was expected");
    return NULL;
  }
  if (sock < 0 || file < 0 || off < 0 || len < 0 || sock > 0x7fffffff || file > 0x7fffffff) {
    throw_type(env, "descriptors, offset and length must not be negative");
    return NULL;
  }
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    napi_throw_error(env, NULL, "no event loop");
    return NULL;
  }
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  job->env = env;
  job->loop = loop;
  job->file = (int)file;
  job->off = (off_t)off;
  job->end = (off_t)(off + len);
  job->sock = fcntl((int)sock, F_DUPFD_CLOEXEC, 0);
  if (job->sock < 0) {
    int e = errno;
    free(job);
    napi_throw_error(env, "EBADF", e == EBADF ? "bad socket descriptor" : "the socket could not be duplicated");
    return NULL;
  }
  int r = uv_poll_init(loop, &job->poll, job->sock);
  if (r != 0) {
    close(job->sock);
    free(job);
    napi_throw_error(env, NULL, uv_strerror(r));
    return NULL;
  }
  r = uv_poll_start(&job->poll, UV_WRITABLE, on_writable);
  if (r != 0) {
    /* an initialised handle leaves the loop only through uv_close */
    uv_close((uv_handle_t *)&job->poll, on_refused);
    napi_throw_error(env, NULL, uv_strerror(r));
    return NULL;
  }
  napi_value resource, name, ext;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "lr.sendfile", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &job->async);
  napi_create_reference(env, argv[4], 1, &job->callback);
  napi_create_external(env, job, on_collected, NULL, &ext);
  return ext;
}

static napi_value sent(napi_env env, napi_callback_info info) {
  napi_value argv[1], v;
  if (!args_of(env, info, 1, argv)) return NULL;
  job_t *job = job_of(env, argv[0]);
  if (job == NULL) return NULL;
  napi_create_double(env, job->sent, &v);
  return v;
}

static napi_value readsAhead(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_double(env, reads_ahead, &v);
  return v;
}

static napi_value cancel(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!args_of(env, info, 1, argv)) return NULL;
  job_t *job = job_of(env, argv[0]);
  if (job == NULL) return NULL;
  if (!job->loop_done) finish(job, ECANCELED);
  return NULL;
}

NAPI_MODULE_INIT() {
  static const lr_export_t fns[] = {{"start", start}, {"sent", sent}, {"cancel", cancel}, {"readsAhead", readsAhead}};
  return export_all(env, exports, 1, fns, sizeof fns / sizeof fns[0]);
}
