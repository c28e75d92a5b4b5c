/*
 * Queue workers (issue 14 item 4; docs/design.md "Queue workers"): one
 * thread per queue of IFF_MULTI_QUEUE TUN/TAP devices, doing the device I/O
 * while the one JS thread runs the pipeline.
 *
 * Why this split: a profile of bulk TCP through xtr (perf, 1 stream, io_uring
 * and offloads on) puts ~75 % of the router's CPU in the kernel under its
 * reads and writes (the 64 KiB copies in and out of the TUN, the receiving
 * stack run inside the write) and ~8-10 % in the JS pipeline. Moving the I/O
 * to one thread per queue spreads the large part over cores, while every
 * packet still meets one rule engine, one conntrack table and one set of
 * counters on one thread: the state of every extension stays exact, with no
 * locks and no cross-worker protocol (the alternative, a pipeline per worker,
 * needs shared or sharded state for recent, quota2, psd, ... and hand-offs;
 * docs/design.md weighs both).
 *
 * Worker k owns queue k of every device in the group and a region of the
 * router's buffer (read slots and scratch). Its loop: poll its queues; read
 * every ready one into its region's slots (tun_read_batch, io_uring as on
 * the JS thread); hand the lot to JS (a thread-safe function call) and
 * wait; JS processes it and records its writes (workersWrite copies the
 * offsets, never the bytes); when JS returns the worker writes them
 * (tun_write_batch, through queue k: the kernel's flow table then steers
 * that flow's packets back to queue k) and reads again. While worker k
 * waits, its region belongs to JS; otherwise to worker k, so a region is
 * never read and written at once. JS processes one batch at a time, and the
 * other workers read and write meanwhile.
 *
 * Exports (JS thread):
 *   workersStart(cfg) -> handle
 *     cfg = { data: Buffer, headroom, devices: [{ fds: number[workers], vnet, mode, uring }],
 *             regions: [{ base, capacity, slotSize, offsets, lengths, gso }] (one per worker),
 *             counts: Int32Array(workers * devices * 2)  per device: [packets in the batch (< 0: the
 *                                                    device failed, -errno), index of its first]
 *             readInfo: Float64Array(workers * devices * 5)  each read's [bytes, failed, errno, supers, uring refused],
 *             txStats: Float64Array(workers * devices * TX_STATS) cumulative write results,
 *             onBatch(worker) }
 *   workersWrite(handle, worker, device, offsets, lengths, count[, gso]) -> count
 *     (only during onBatch of that worker)
 *   workersFlush(handle, worker) -> writes what the worker holds now (during its onBatch)
 *   workersStop(handle)  -> idempotent; joins the threads
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tun_io.h"
#include "workers.h"

#define MAX_WORKERS 64
#define MAX_DEVICES 32
/* Packets one worker's batch may queue per device before the list is written from the JS thread:
   the router's transmit queues hold at most batch*4 + fragments between two flushes. */
#define WLIST_MAX 4096
/* Per worker and device in txStats: accepted, bytes, dropped, GSO writes, their packets,
   super-packets written, io_uring refused, last errno (not EAGAIN). */
#define TX_STATS 8

enum { W_IDLE = 0, W_READY = 1 };

typedef struct group group;

typedef struct {
  uint32_t n;
  uint32_t off[WLIST_MAX], len[WLIST_MAX], gso[WLIST_MAX];
} wlist;

typedef struct {
  group *g;
  uint32_t index;
  pthread_t thread;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int state;
  /* region */
  uint32_t base, capacity, slot_size;
  uint32_t *offsets, *lengths, *gso;
  int uring_read[MAX_DEVICES], uring_write[MAX_DEVICES];
  wlist *out[MAX_DEVICES];
} worker;

struct group {
  napi_env env;
  napi_threadsafe_function tsfn;
  napi_ref cfg_ref; /* keeps the buffer and the typed arrays alive */
  uint8_t *data;
  size_t data_len;
  uint32_t headroom;
  uint32_t nworkers, ndevices;
  int fds[MAX_DEVICES][MAX_WORKERS];
  int vnet[MAX_DEVICES];
  uint32_t mode[MAX_DEVICES];
  double *read_info; /* nworkers * ndevices * 5 */
  int32_t *counts;   /* nworkers * ndevices * 2: [packets, index of the first in the region's arrays] */
  double *tx_stats;  /* nworkers * ndevices * TX_STATS */
  atomic_int stop;
  int stop_fd;
  int stopped; /* joined */
  /* freed when both the thread-safe function and the JS handle are gone */
  int tsfn_gone, handle_gone;
  worker w[MAX_WORKERS];
};

#define CHECK(call)                                                                         \
  do {                                                                                      \
    if ((call) != napi_ok) {                                                                \
      napi_throw_error(env, NULL, "xtr_tun: workers: " #call " failed");                    \
      return NULL;                                                                          \
    }                                                                                       \
  } while (0)

/* Writes what worker w holds for device d through its queue of d, adding the results to txStats. */
static void write_list(group *g, worker *w, uint32_t d) {
  wlist *l = w->out[d];
  if (!l || l->n == 0) return;
  double res[7];
  uint32_t ok = tun_write_batch(g->fds[d][w->index], g->data, l->off, l->len, l->gso, l->n, g->mode[d],
                                w->uring_write[d], res);
  double *s = g->tx_stats + ((size_t)w->index * g->ndevices + d) * TX_STATS;
  s[0] += ok;
  s[1] += res[0];
  s[2] += l->n - ok;
  s[3] += res[3];
  s[4] += res[4];
  s[5] += res[5];
  if (res[6] == 1) {
    w->uring_write[d] = 0;
    s[6] = 1;
  }
  if (res[2] != 0 && res[2] != EAGAIN) s[7] = res[2];
  l->n = 0;
}

/* Hands the batch in w's region to JS and waits until JS is done with it. 0, or -1 when stopping. */
static int hand_over(group *g, worker *w) {
  pthread_mutex_lock(&w->mu);
  w->state = W_READY;
  pthread_mutex_unlock(&w->mu);
  if (napi_call_threadsafe_function(g->tsfn, w, napi_tsfn_nonblocking) != napi_ok) return -1;
  pthread_mutex_lock(&w->mu);
  while (w->state == W_READY && !atomic_load(&g->stop)) pthread_cond_wait(&w->cv, &w->mu);
  int ready = w->state == W_READY;
  pthread_mutex_unlock(&w->mu);
  return ready ? -1 : 0;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  group *g = w->g;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the JS thread's business */
  struct pollfd pfd[MAX_DEVICES + 1];
  const uint32_t nd = g->ndevices;
  for (uint32_t d = 0; d < nd; d++) pfd[d] = (struct pollfd){g->fds[d][w->index], POLLIN, 0};
  pfd[nd] = (struct pollfd){g->stop_fd, POLLIN, 0};
  int32_t *counts = g->counts + (size_t)w->index * nd * 2;
  double *info = g->read_info + (size_t)w->index * nd * 5;
  uint32_t next = 0;
  int full = 0; /* the last pass filled the region: read again before polling */
  while (!atomic_load(&g->stop)) {
    if (!full) {
      int r = poll(pfd, nd + 1, 1000);
      if (r < 0 && errno != EINTR) break;
      if (r <= 0) continue;
      if (pfd[nd].revents) break;
    }
    /* One pass: every ready queue is read into the region's free slots (the device after the
       last one served first, so none starves), then the lot goes to JS in one hand-over: a
       bidirectional flow's data and ACKs cost one wake-up of the JS thread, not two. */
    uint32_t used = 0;
    int any = 0;
    full = 0;
    for (uint32_t j = 0; j < nd; j++) {
      uint32_t d = (next + j) % nd;
      counts[d * 2] = 0;
      counts[d * 2 + 1] = (int32_t)used;
      if (pfd[d].fd < 0 || used == w->capacity) continue;
      double res[5];
      int32_t n = tun_read_batch(pfd[d].fd, g->data + w->base + (size_t)used * w->slot_size, w->offsets + used,
                                 w->lengths + used, w->gso + used, w->capacity - used, w->slot_size, g->headroom,
                                 g->vnet[d], w->uring_read[d], res);
      if (res[4] == 1) w->uring_read[d] = 0;
      for (int k = 0; k < 5; k++) info[d * 5 + k] = res[k];
      if (n < 0) pfd[d].fd = -1; /* the device is gone: JS is told once, the queue is not polled again */
      if (n == 0 && res[1] == 0) continue;
      /* n packets may span more than n slots: an io_uring read that found nothing leaves its slot
         empty, and the next device must start after the last slot holding a packet */
      uint32_t at = w->base + used * w->slot_size, span = 0;
      for (int32_t i = 0; i < n; i++) {
        uint32_t s = (w->offsets[used + i] - g->headroom) / w->slot_size + 1;
        if (s > span) span = s;
        w->offsets[used + i] += at;
      }
      counts[d * 2] = n;
      any = 1;
      used += span;
    }
    next = (next + 1) % nd;
    if (!any) continue;
    if (hand_over(g, w) < 0) return NULL;
    for (uint32_t d = 0; d < nd; d++) write_list(g, w, d);
    full = used == w->capacity;
  }
  return NULL;
}

/* On the JS thread: worker `data`'s batches to onBatch, then the worker may write. */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  group *g = context;
  worker *w = data;
  if (env != NULL && !atomic_load(&g->stop)) {
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) == napi_ok) {
      napi_value arg, recv, result;
      napi_create_uint32(env, w->index, &arg);
      napi_get_undefined(env, &recv);
      if (napi_call_function(env, recv, js_cb, 1, &arg, &result) == napi_pending_exception) {
        napi_value err;
        napi_get_and_clear_last_exception(env, &err);
        napi_fatal_exception(env, err);
      }
      napi_close_handle_scope(env, scope);
    }
  }
  pthread_mutex_lock(&w->mu);
  w->state = W_IDLE;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static void stop_group(group *g) {
  if (g->stopped) return;
  atomic_store(&g->stop, 1);
  uint64_t one = 1;
  if (write(g->stop_fd, &one, sizeof one) < 0) { /* poll's 1 s timeout ends the loop anyway */
  }
  for (uint32_t k = 0; k < g->nworkers; k++) {
    worker *w = &g->w[k];
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
  }
  for (uint32_t k = 0; k < g->nworkers; k++)
    if (g->w[k].started) pthread_join(g->w[k].thread, NULL);
  g->stopped = 1;
}

static void free_group(group *g) {
  for (uint32_t k = 0; k < g->nworkers; k++) {
    for (uint32_t d = 0; d < g->ndevices; d++) free(g->w[k].out[d]);
    pthread_mutex_destroy(&g->w[k].mu);
    pthread_cond_destroy(&g->w[k].cv);
  }
  if (g->stop_fd >= 0) close(g->stop_fd);
  free(g);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  group *g = data;
  stop_group(g);
  if (g->cfg_ref) napi_delete_reference(env, g->cfg_ref);
  g->cfg_ref = NULL;
  g->tsfn_gone = 1;
  if (g->handle_gone) free_group(g);
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  group *g = data;
  g->handle_gone = 1;
  if (g->tsfn_gone) free_group(g);
}

static void env_cleanup(void *arg) { stop_group((group *)arg); }

static int get_prop(napi_env env, napi_value obj, const char *name, napi_value *out) {
  return napi_get_named_property(env, obj, name, out) == napi_ok;
}

static int prop_u32(napi_env env, napi_value obj, const char *name, uint32_t *out) {
  napi_value v;
  return get_prop(env, obj, name, &v) && napi_get_value_uint32(env, v, out) == napi_ok;
}

static int prop_bool(napi_env env, napi_value obj, const char *name) {
  napi_value v;
  bool b = false;
  if (get_prop(env, obj, name, &v)) napi_get_value_bool(env, v, &b);
  return b;
}

static void *prop_typed(napi_env env, napi_value obj, const char *name, napi_typedarray_type want, size_t *len) {
  napi_value v;
  bool is = false;
  if (!get_prop(env, obj, name, &v) || napi_is_typedarray(env, v, &is) != napi_ok || !is) return NULL;
  napi_typedarray_type t;
  void *p;
  if (napi_get_typedarray_info(env, v, &t, len, &p, NULL, NULL) != napi_ok || t != want) return NULL;
  return p;
}

static napi_value fail(napi_env env, group *g, const char *msg) {
  if (g) free_group(g);
  napi_throw_error(env, NULL, msg);
  return NULL;
}

/* workersStart failing after the thread-safe function exists: the threads started so far are
   joined, and the function's finalizer frees the group (no JS handle will). */
static napi_value abort_start(napi_env env, group *g, const char *msg) {
  g->handle_gone = 1;
  stop_group(g);
  napi_remove_env_cleanup_hook(env, env_cleanup, g);
  napi_release_threadsafe_function(g->tsfn, napi_tsfn_abort);
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value js_workers_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value cfg;
  CHECK(napi_get_cb_info(env, info, &argc, &cfg, NULL, NULL));
  if (argc < 1) return fail(env, NULL, "xtr_tun: workersStart(cfg)");
  group *g = calloc(1, sizeof *g);
  if (!g) return fail(env, NULL, "xtr_tun: workersStart: out of memory");
  g->env = env;
  g->stop_fd = -1;
  for (uint32_t k = 0; k < MAX_WORKERS; k++) {
    pthread_mutex_init(&g->w[k].mu, NULL);
    pthread_cond_init(&g->w[k].cv, NULL);
  }
  napi_value v, devices, regions, fn;
  void *data;
  if (!get_prop(env, cfg, "data", &v) || napi_get_buffer_info(env, v, &data, &g->data_len) != napi_ok)
    return fail(env, g, "xtr_tun: workersStart: data must be a Buffer");
  g->data = data;
  if (!prop_u32(env, cfg, "headroom", &g->headroom)) return fail(env, g, "xtr_tun: workersStart: headroom");
  uint32_t nd = 0, nw = 0;
  if (!get_prop(env, cfg, "devices", &devices) || napi_get_array_length(env, devices, &nd) != napi_ok || nd == 0 ||
      nd > MAX_DEVICES)
    return fail(env, g, "xtr_tun: workersStart: devices must be an array of 1 to 32");
  if (!get_prop(env, cfg, "regions", &regions) || napi_get_array_length(env, regions, &nw) != napi_ok || nw == 0 ||
      nw > MAX_WORKERS)
    return fail(env, g, "xtr_tun: workersStart: regions must be an array of 1 to 64 (one per worker)");
  g->nworkers = nw;
  g->ndevices = nd;
  for (uint32_t d = 0; d < nd; d++) {
    napi_value dev, fds;
    uint32_t nf = 0;
    if (napi_get_element(env, devices, d, &dev) != napi_ok || !get_prop(env, dev, "fds", &fds) ||
        napi_get_array_length(env, fds, &nf) != napi_ok || nf != nw)
      return fail(env, g, "xtr_tun: workersStart: each device needs one fd per worker");
    for (uint32_t k = 0; k < nw; k++) {
      napi_value f;
      int32_t fd;
      if (napi_get_element(env, fds, k, &f) != napi_ok || napi_get_value_int32(env, f, &fd) != napi_ok || fd < 0)
        return fail(env, g, "xtr_tun: workersStart: bad fd");
      g->fds[d][k] = fd;
    }
    g->vnet[d] = prop_bool(env, dev, "vnet");
    if (!prop_u32(env, dev, "mode", &g->mode[d]) || g->mode[d] > 4) return fail(env, g, "xtr_tun: workersStart: device mode");
    int uring = prop_bool(env, dev, "uring");
    for (uint32_t k = 0; k < nw; k++) g->w[k].uring_read[d] = g->w[k].uring_write[d] = uring;
  }
  for (uint32_t k = 0; k < nw; k++) {
    worker *w = &g->w[k];
    napi_value r;
    size_t ol = 0, ll = 0, gl = 0;
    w->g = g;
    w->index = k;
    if (napi_get_element(env, regions, k, &r) != napi_ok || !prop_u32(env, r, "base", &w->base) ||
        !prop_u32(env, r, "capacity", &w->capacity) || !prop_u32(env, r, "slotSize", &w->slot_size))
      return fail(env, g, "xtr_tun: workersStart: region needs base, capacity, slotSize");
    w->offsets = prop_typed(env, r, "offsets", napi_uint32_array, &ol);
    w->lengths = prop_typed(env, r, "lengths", napi_uint32_array, &ll);
    w->gso = prop_typed(env, r, "gso", napi_uint32_array, &gl);
    if (!w->offsets || !w->lengths || !w->gso || ol < w->capacity || ll < w->capacity || gl < w->capacity)
      return fail(env, g, "xtr_tun: workersStart: region offsets/lengths/gso must be Uint32Arrays of capacity");
    if (g->headroom >= w->slot_size || (uint64_t)w->base + (uint64_t)w->capacity * w->slot_size > g->data_len)
      return fail(env, g, "xtr_tun: workersStart: a region lies outside data");
    for (uint32_t d = 0; d < nd; d++) {
      w->out[d] = calloc(1, sizeof(wlist));
      if (!w->out[d]) return fail(env, g, "xtr_tun: workersStart: out of memory");
    }
  }
  size_t il = 0, tl = 0, cl = 0;
  g->read_info = prop_typed(env, cfg, "readInfo", napi_float64_array, &il);
  g->tx_stats = prop_typed(env, cfg, "txStats", napi_float64_array, &tl);
  g->counts = prop_typed(env, cfg, "counts", napi_int32_array, &cl);
  if (!g->read_info || il < (size_t)nw * nd * 5 || !g->tx_stats || tl < (size_t)nw * nd * TX_STATS || !g->counts ||
      cl < (size_t)nw * nd * 2)
    return fail(env, g, "xtr_tun: workersStart: readInfo/txStats/counts too short");
  if (!get_prop(env, cfg, "onBatch", &fn)) return fail(env, g, "xtr_tun: workersStart: onBatch");
  g->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (g->stop_fd < 0) return fail(env, g, "xtr_tun: workersStart: eventfd failed");
  napi_value name;
  CHECK(napi_create_string_utf8(env, "xtr:workers", NAPI_AUTO_LENGTH, &name));
  if (napi_create_threadsafe_function(env, fn, NULL, name, 0, 1, g, tsfn_finalize, g, call_js, &g->tsfn) != napi_ok)
    return fail(env, g, "xtr_tun: workersStart: onBatch must be a function");
  /* from here on the group is freed by tsfn_finalize */
  napi_create_reference(env, cfg, 1, &g->cfg_ref);
  napi_add_env_cleanup_hook(env, env_cleanup, g);
  for (uint32_t k = 0; k < nw; k++) {
    if (pthread_create(&g->w[k].thread, NULL, worker_main, &g->w[k]) != 0)
      return abort_start(env, g, "xtr_tun: workersStart: pthread_create failed");
    g->w[k].started = 1;
    char name[16];
    snprintf(name, sizeof name, "xtr-queue-%u", k % MAX_WORKERS); /* ps -T, top -H and bench:tcp tell the workers apart */
    pthread_setname_np(g->w[k].thread, name);
  }
  napi_value handle;
  if (napi_create_external(env, g, handle_finalize, NULL, &handle) != napi_ok)
    return abort_start(env, g, "xtr_tun: workersStart: napi_create_external failed");
  return handle;
}

static group *get_group(napi_env env, napi_value v) {
  group *g = NULL;
  if (napi_get_value_external(env, v, (void **)&g) != napi_ok || !g) {
    napi_throw_type_error(env, NULL, "xtr_tun: not a workers handle");
    return NULL;
  }
  return g;
}

/* Worker `v` of g, when it is handing a batch to JS (the only time JS may queue or flush its
   writes); else NULL with an error thrown naming `what`. */
static worker *held_worker(napi_env env, group *g, napi_value v, const char *what) {
  uint32_t k;
  char msg[96];
  if (napi_get_value_uint32(env, v, &k) != napi_ok || k >= g->nworkers) {
    snprintf(msg, sizeof msg, "xtr_tun: %s: worker out of range", what);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  worker *w = &g->w[k];
  if (g->stopped || w->state != W_READY) {
    snprintf(msg, sizeof msg, "xtr_tun: %s: the worker is not handing a batch to JS", what);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  return w;
}

static napi_value js_workers_write(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6) {
    napi_throw_type_error(env, NULL, "xtr_tun: workersWrite(handle, worker, device, offsets, lengths, count[, gso])");
    return NULL;
  }
  group *g = get_group(env, argv[0]);
  if (!g) return NULL;
  worker *w = held_worker(env, g, argv[1], "workersWrite");
  if (!w) return NULL;
  uint32_t d, count;
  if (napi_get_value_uint32(env, argv[2], &d) != napi_ok || napi_get_value_uint32(env, argv[5], &count) != napi_ok ||
      d >= g->ndevices) {
    napi_throw_range_error(env, NULL, "xtr_tun: workersWrite: device out of range");
    return NULL;
  }
  napi_typedarray_type t;
  size_t ol = 0, ll = 0, gl = 0;
  void *po, *pl, *pg = NULL;
  if (napi_get_typedarray_info(env, argv[3], &t, &ol, &po, NULL, NULL) != napi_ok || t != napi_uint32_array ||
      napi_get_typedarray_info(env, argv[4], &t, &ll, &pl, NULL, NULL) != napi_ok || t != napi_uint32_array ||
      count > ol || count > ll) {
    napi_throw_range_error(env, NULL, "xtr_tun: workersWrite: offsets/lengths must be Uint32Arrays of count");
    return NULL;
  }
  if (argc > 6) {
    napi_valuetype vt;
    napi_typeof(env, argv[6], &vt);
    if (vt != napi_undefined &&
        (napi_get_typedarray_info(env, argv[6], &t, &gl, &pg, NULL, NULL) != napi_ok || t != napi_uint32_array ||
         gl < count)) {
      napi_throw_range_error(env, NULL, "xtr_tun: workersWrite: gso must be a Uint32Array of count");
      return NULL;
    }
  }
  const uint32_t *off = po, *len = pl, *gso = pg;
  for (uint32_t i = 0; i < count; i++) {
    if ((uint64_t)off[i] + len[i] > g->data_len) {
      napi_throw_range_error(env, NULL, "xtr_tun: workersWrite: a packet lies outside data");
      return NULL;
    }
  }
  wlist *l = w->out[d];
  for (uint32_t i = 0; i < count; i++) {
    /* a full list is written from this thread now (the worker waits: its queue is free) */
    if (l->n == WLIST_MAX) write_list(g, w, d);
    l->off[l->n] = off[i];
    l->len[l->n] = len[i];
    l->gso[l->n] = gso ? gso[i] : 0;
    l->n++;
  }
  napi_value r;
  CHECK(napi_create_uint32(env, count, &r));
  return r;
}

/* workersFlush(handle, worker): writes what the worker holds now, from the JS thread (the router
   recycles its scratch mid-batch: packets there must be out before it is reused). */
static napi_value js_workers_flush(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  group *g = argc > 1 ? get_group(env, argv[0]) : NULL;
  if (!g) return NULL;
  worker *w = held_worker(env, g, argv[1], "workersFlush");
  if (!w) return NULL;
  for (uint32_t d = 0; d < g->ndevices; d++) write_list(g, w, d);
  return NULL;
}

static napi_value js_workers_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  group *g = argc > 0 ? get_group(env, argv[0]) : NULL;
  if (!g) return NULL;
  if (!g->stopped) {
    stop_group(g);
    napi_remove_env_cleanup_hook(env, env_cleanup, g);
    napi_release_threadsafe_function(g->tsfn, napi_tsfn_release);
  }
  return NULL;
}

void workers_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"workersStart", NULL, js_workers_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"workersWrite", NULL, js_workers_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"workersFlush", NULL, js_workers_flush, NULL, NULL, NULL, napi_enumerable, NULL},
      {"workersStop", NULL, js_workers_stop, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
