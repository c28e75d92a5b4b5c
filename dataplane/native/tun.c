/*
 * xtr_tun: the native half of the TUN/TAP packet device (dataplane/tun.ts).
 *
 * Why native at all: Node cannot wrap a TUN fd in a net.Socket, and fs.read on
 * the libuv thread pool costs one thread hop per packet (~100 kpps). Here a
 * non-blocking fd is watched with a uv_poll_t on the main loop and drained in
 * C, so JS crosses into native once per batch, never once per packet.
 *
 * Exports (all synchronous, called on the JS thread):
 *   open(name, tap, multiQueue[, vnetHdr[, offloads]])
 *                                          -> { fd, name, handle, offloads }
 *                                             (offloads: the TUN_F_* bits in force)
 *   readBatch(fd, data, offsets, lengths, capacity, slotSize, headroom[, out[, vnetHdr[, gso[, uring]]]])
 *                                          -> packets read, or -errno when
 *                                             nothing was read and read() failed;
 *                                             gso[i] = gso_size of a super-packet
 *   writeBatch(fd, data, offsets, lengths, count[, out[, mode[, gso[, uring]]]])
 *                                          -> packets the kernel accepted
 *                                             (uring: through io_uring, uring.h;
 *                                             out[4] of a read / out[6] of a write = 1
 *                                             when the device refused it)
 *   uringReady()                           -> 0, or -errno: no io_uring here
 *   gsoRuns / gsoHeader                    -> coalescer test hooks
 *   pollStart(handle, callback)  pollStop(handle)  pollRef(handle, bool)
 *   close(handle)                          -> idempotent
 *   setMtu(name, mtu)  setUp(name, up)     -> ioctl helpers (current netns)
 *
 * `out`, when given, is a Float64Array of at least 3 elements that receives
 * [bytes moved, packets failed (a read: too long for its slot, dropped; a
 * write: refused with an error other than EAGAIN), last errno] and, for a
 * write into one of 5 or more, [3] GSO writes made and [4] packets they carried
 * ([5] super-packets written whole); a read into one of 4 or more gets [3]
 * super-packets read; so the caller can keep byte counters without a
 * per-packet loop in JS.
 *
 * Invariants: no allocation per packet or per batch; buffers are used through
 * the pointers N-API hands out and never retained past the call. A handle
 * owns the fd and the poll watcher; the fd is closed exactly once (by close()
 * or by the GC finalizer of the handle), and always after the watcher has been
 * removed from the loop, as libuv requires.
 */
/* struct ucred (SO_PEERCRED) */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tun_io.h"
#include "workers.h"
#include "uring.h"

/* virtio_net_hdr framing and GSO limits (see the coalescing section below) */
#define VNET_HDR_LEN 10
#define VIRTIO_NET_HDR_F_NEEDS_CSUM_ 1
#define VIRTIO_NET_HDR_GSO_UDP_L4_ 5
#define GSO_MAX_SEGS 64
#define GSO_MAX_IP_LEN 65535

typedef struct tun_handle {
  int fd;                  /* -1 once closed */
  int poll_inited;         /* uv_poll_init succeeded; the uv_poll_t must be uv_close'd */
  int poll_active;
  int closing;             /* uv_close issued; memory freed by on_poll_closed */
  int finalized;           /* the JS external is gone; free when the watcher is closed */
  napi_env env;
  napi_ref callback;       /* strong reference to the JS readable callback */
  napi_async_context async_context;
  /* keeps environment teardown (worker exit) waiting until the watcher is
     closed: the addon may be unloaded right after, and a pending close
     callback would then point into unmapped code */
  napi_async_cleanup_hook_handle cleanup_hook;
  uv_poll_t poll;
} tun_handle;

/* ---------- small N-API helpers ---------- */

#define CHECK(call)                                                          \
  do {                                                                       \
    if ((call) != napi_ok) {                                                 \
      throw_last(env, #call);                                                \
      return NULL;                                                           \
    }                                                                        \
  } while (0)

static void throw_last(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char msg[256];
  snprintf(msg, sizeof msg, "xtr_tun: %s failed: %s", what,
           info && info->error_message ? info->error_message : "unknown N-API error");
  napi_throw_error(env, NULL, msg);
}

/* Throws an Error carrying .code (e.g. "EBUSY") and .errno like Node's own. */
static napi_value throw_errno(napi_env env, const char *syscall, const char *detail, int err) {
  char msg[320];
  snprintf(msg, sizeof msg, "%s %s: %s", syscall, detail ? detail : "", strerror(err));
  napi_value message, error, code, errno_value;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_string_utf8(env, uv_err_name(-err), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, -err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_set_named_property(env, error, "code", code);
  napi_value syscall_value;
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  napi_throw(env, error);
  return NULL;
}

static napi_value make_int(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

static int get_u32(napi_env env, napi_value v, uint32_t *out, const char *name) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_number) {
    char msg[128];
    snprintf(msg, sizeof msg, "xtr_tun: %s must be a number", name);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  napi_get_value_uint32(env, v, out);
  return 1;
}

static int get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len, const char *name) {
  bool ok = false;
  napi_is_buffer(env, v, &ok);
  if (ok) {
    napi_get_buffer_info(env, v, (void **)data, len);
    return 1;
  }
  napi_is_typedarray(env, v, &ok);
  if (ok) {
    napi_typedarray_type type;
    size_t n;
    napi_get_typedarray_info(env, v, &type, &n, (void **)data, NULL, NULL);
    if (type == napi_uint8_array || type == napi_uint8_clamped_array || type == napi_int8_array) {
      *len = n;
      return 1;
    }
  }
  char msg[128];
  snprintf(msg, sizeof msg, "xtr_tun: %s must be a Buffer or Uint8Array", name);
  napi_throw_type_error(env, NULL, msg);
  return 0;
}

static int get_u32_array(napi_env env, napi_value v, uint32_t **data, size_t *len, const char *name) {
  bool ok = false;
  napi_is_typedarray(env, v, &ok);
  if (ok) {
    napi_typedarray_type type;
    napi_get_typedarray_info(env, v, &type, len, (void **)data, NULL, NULL);
    if (type == napi_uint32_array) return 1;
  }
  char msg[128];
  snprintf(msg, sizeof msg, "xtr_tun: %s must be a Uint32Array", name);
  napi_throw_type_error(env, NULL, msg);
  return 0;
}


/* `out` and its element count (0 when absent or not a Float64Array of >= 3) */
static double *get_out_n(napi_env env, napi_value v, size_t *len) {
  *len = 0;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_undefined) return NULL;
  bool ok = false;
  napi_is_typedarray(env, v, &ok);
  if (!ok) return NULL;
  napi_typedarray_type type;
  size_t n;
  void *p;
  napi_get_typedarray_info(env, v, &type, &n, &p, NULL, NULL);
  if (type != napi_float64_array || n < 3) return NULL;
  *len = n;
  return (double *)p;
}

static tun_handle *get_handle(napi_env env, napi_value v) {
  void *p = NULL;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_external || napi_get_value_external(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "xtr_tun: expected a device handle from open()");
    return NULL;
  }
  return (tun_handle *)p;
}

/* ---------- lifetime ---------- */

static void release_cleanup_hook(tun_handle *th) {
  if (th->cleanup_hook) {
    napi_remove_async_cleanup_hook(th->cleanup_hook);
    th->cleanup_hook = NULL;
  }
}

static void on_poll_closed(uv_handle_t *h) {
  tun_handle *th = (tun_handle *)h->data;
  th->poll_inited = 0;
  release_cleanup_hook(th);
  if (th->finalized) free(th);
}

static void drop_callback(tun_handle *th) {
  if (th->callback) {
    napi_delete_reference(th->env, th->callback);
    th->callback = NULL;
  }
  if (th->async_context) {
    napi_async_destroy(th->env, th->async_context);
    th->async_context = NULL;
  }
}

/*
 * Removes the watcher from the loop, then closes the fd (libuv forbids the
 * other order). `release_js` is false where calling back into the runtime for
 * the async context is not safe (GC finalizer, environment teardown).
 * Invariant: the memory is freed only once the watcher is closed and the
 * cleanup hook removed (here when there is no watcher, else in on_poll_closed).
 */
static void handle_close(tun_handle *th, int release_js) {
  if (th->poll_inited && !th->closing) {
    th->closing = 1;
    th->poll_active = 0;
    uv_close((uv_handle_t *)&th->poll, on_poll_closed);
  }
  if (release_js) drop_callback(th);
  if (th->fd >= 0) {
    close(th->fd);
    th->fd = -1;
  }
  if (!th->poll_inited) release_cleanup_hook(th);
}

/* Environment teardown (worker termination, embedder shutdown). */
static void on_env_cleanup(napi_async_cleanup_hook_handle hook, void *arg) {
  (void)hook;
  handle_close((tun_handle *)arg, 0);
}

static void finalize_handle(napi_env env, void *data, void *hint) {
  (void)hint;
  tun_handle *th = (tun_handle *)data;
  handle_close(th, 0);
  if (th->callback) {
    napi_delete_reference(env, th->callback);
    th->callback = NULL;
  }
  th->finalized = 1;
  /* with a watcher still closing, on_poll_closed frees the memory */
  if (!th->poll_inited) free(th);
}

/* ---------- open ---------- */

/*
 * TUNSETOFFLOAD probing. The kernel refuses the whole mask (EINVAL) when one
 * bit is unknown to it (TUN_F_USO4/6 arrived in 6.2), and takes TSO only
 * together with TUN_F_CSUM, so the wanted flags are added one at a time, each
 * kept only if the kernel accepts the mask with it; what is returned is what
 * is in force. With nothing accepted the device stays at offload 0: the plain
 * one-packet path.
 */
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif
static uint32_t probe_offloads(int fd, uint32_t want) {
  /* USO4 and USO6 are taken only together (tun_set_offload: "for now USO4 and USO6 should work simultaneously") */
  static const uint32_t order[] = {TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4 | TUN_F_USO6};
  uint32_t have = 0;
  if (!(want & TUN_F_CSUM)) return 0; /* every other offload needs checksum offload */
  for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
    if ((want & order[k]) != order[k]) continue;
    if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)(have | order[k])) == 0) have |= order[k];
  }
  if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)have) != 0) have = 0;
  return have;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ + 1] = {0};
  size_t name_len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &name_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "xtr_tun: open(name, tap, multiQueue): name must be a string");
    return NULL;
  }
  if (name_len >= IFNAMSIZ) {
    napi_throw_range_error(env, NULL, "xtr_tun: interface name longer than 15 bytes");
    return NULL;
  }
  bool tap = false, multi = false, vnet = false;
  if (argc > 1) napi_get_value_bool(env, argv[1], &tap);
  if (argc > 2) napi_get_value_bool(env, argv[2], &multi);
  if (argc > 3) napi_get_value_bool(env, argv[3], &vnet);
  /* offloads to try (TUN_F_* bits); probed one by one below */
  uint32_t want_offloads = 0;
  if (argc > 4) {
    napi_valuetype t;
    napi_typeof(env, argv[4], &t);
    if (t == napi_number) napi_get_value_uint32(env, argv[4], &want_offloads);
  }

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open", "/dev/net/tun", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = (short)((tap ? IFF_TAP : IFF_TUN) | IFF_NO_PI | (multi ? IFF_MULTI_QUEUE : 0) | (vnet ? IFF_VNET_HDR : 0));
  memcpy(ifr.ifr_name, name, name_len);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "ioctl(TUNSETIFF)", name, err);
  }
  if (vnet) {
    int sz = VNET_HDR_LEN; /* the default, set so a queue opened elsewhere cannot change our framing */
    if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) {
      int err = errno;
      close(fd);
      return throw_errno(env, "ioctl(TUNSETVNETHDRSZ)", name, err);
    }
  }

  uint32_t offloads = vnet && want_offloads ? probe_offloads(fd, want_offloads) : 0;

  tun_handle *th = calloc(1, sizeof *th);
  if (!th) {
    close(fd);
    return throw_errno(env, "calloc", "device handle", ENOMEM);
  }
  th->fd = fd;
  th->env = env;

  napi_value result, handle, fd_value, name_value;
  if (napi_create_external(env, th, finalize_handle, NULL, &handle) != napi_ok) {
    close(fd);
    free(th);
    throw_last(env, "napi_create_external");
    return NULL;
  }
  if (napi_add_async_cleanup_hook(env, on_env_cleanup, th, &th->cleanup_hook) != napi_ok) th->cleanup_hook = NULL;
  char actual[IFNAMSIZ + 1] = {0};
  memcpy(actual, ifr.ifr_name, IFNAMSIZ);
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_int32(env, fd, &fd_value));
  CHECK(napi_create_string_utf8(env, actual, NAPI_AUTO_LENGTH, &name_value));
  CHECK(napi_set_named_property(env, result, "fd", fd_value));
  CHECK(napi_set_named_property(env, result, "name", name_value));
  CHECK(napi_set_named_property(env, result, "handle", handle));
  napi_value off_value;
  CHECK(napi_create_uint32(env, offloads, &off_value));
  CHECK(napi_set_named_property(env, result, "offloads", off_value));
  return result;
}

/* ---------- IFF_VNET_HDR and UDP GSO coalescing on write ----------
 *
 * Devices are opened with IFF_VNET_HDR and the legacy 10-byte virtio_net_hdr
 * (the tun default vnet_hdr_sz; the v1 header's num_buffers field means nothing
 * to tun), little-endian as on every host this runs on. Without offloads
 * (TUNSETOFFLOAD not called, or nothing accepted) the device advertises no
 * checksum or segmentation offload and the kernel hands xtr finished packets:
 * a read's header is all zero. A header that is not (NEEDS_CSUM: a partial
 * checksum, with TUN_F_CSUM) is completed in place; a GSO packet is taken
 * only when the caller passes `gso` (the TCP section below), else dropped as
 * failed.
 *
 * The write side is what the header is for. The kernel accepts a
 * VIRTIO_NET_HDR_GSO_UDP_L4 super-packet on any tun fd with IFF_VNET_HDR and
 * segments it itself (software GSO on forward, udp_rcv_segment on local
 * delivery), so a run of consecutive datagrams of one UDP flow costs one
 * write() instead of one per packet. A run is merged only when the segments
 * the kernel cuts are byte-identical to the packets xtr would have written:
 *   - IPv4: IHL 5, DF set, no MF/offset, valid header checksum, total length =
 *     packet length, IDs incrementing by one (inet_gso_segment numbers the
 *     segments id, id+1, ...); the same TOS, TTL, flags, addresses;
 *   - IPv6: next header UDP (no extension headers), payload length = packet
 *     length - 40; the same version/traffic class/flow label, hop limit,
 *     addresses;
 *   - UDP: the same ports, length = IP payload, a checksum that is present
 *     (not 0) and correct, since the kernel writes the correct one;
 *   - payload sizes equal (gso_size) except the last, which may be shorter
 *     and ends the run; at least 2 and at most GSO_MAX_SEGS segments, the
 *     super-packet at most 65535 bytes of IP.
 * These are the conditions under which the kernel's own UDP GRO merges.
 * Coalescing is for TUN (bare IP) only; a TAP write carries a zero header. */


/* One's-complement sum of big-endian 16-bit words, added to `sum` (result
   below 2^17; `p` must start at an even offset from the checksummed start).
   Words are summed little-endian 32 bits at a time into 64 bits and the
   folded result byte-swapped: the one's-complement sum commutes with byte
   order (RFC 1071 2(B)), and this is ~4x the byte loop on a 64 KiB packet. */
static uint32_t csum_add_bytes(uint32_t sum, const uint8_t *p, size_t n) {
  uint64_t acc = 0;
  while (n >= 32) {
    uint32_t w[8];
    memcpy(w, p, 32);
    acc += (uint64_t)w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
    p += 32;
    n -= 32;
  }
  while (n >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    acc += w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    acc += w;
    p += 2;
    n -= 2;
  }
  if (n) acc += p[0]; /* the low byte of a little-endian word = the high byte of the big-endian one */
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  uint32_t be = (uint32_t)(((acc & 0xff) << 8) | (acc >> 8));
  sum += be;
  return (sum & 0xffff) + (sum >> 16);
}

static uint16_t csum_fold32(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)sum;
}

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline void wr16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

/* IP header length (20 or 40) if the packet may head or join a run, else 0. */
static uint32_t gso_candidate(const uint8_t *p, uint32_t len) {
  if (len < 28) return 0;
  uint8_t version = p[0] >> 4;
  uint32_t iphl;
  uint32_t sum;
  if (version == 4) {
    if (p[0] != 0x45 || p[9] != 17 || rd16(p + 2) != len) return 0;
    if ((rd16(p + 6) & 0xbfff) != 0 || !(p[6] & 0x40)) return 0; /* DF only: no MF, no offset, no reserved bit */
    if (csum_fold32(csum_add_bytes(0, p, 20)) != 0xffff) return 0;
    iphl = 20;
    sum = csum_add_bytes(0, p + 12, 8);
  } else if (version == 6) {
    if (len < 48 || p[6] != 17 || rd16(p + 4) != len - 40) return 0;
    iphl = 40;
    sum = csum_add_bytes(0, p + 8, 32);
  } else {
    return 0;
  }
  const uint8_t *u = p + iphl;
  uint32_t ulen = len - iphl;
  if (rd16(u + 4) != ulen || rd16(u + 6) == 0 || ulen == 8) return 0;
  sum += 17 + ulen;
  sum = csum_add_bytes(sum, u, ulen);
  if (csum_fold32(sum) != 0xffff) return 0;
  return iphl;
}

/* Same flow, fields that GSO copies into every segment equal, next IPv4 ID. */
static int gso_same_flow(const uint8_t *a, const uint8_t *b, uint32_t iphl, uint16_t prev_id) {
  if (iphl == 20) {
    return a[0] == b[0] && a[1] == b[1] && a[6] == b[6] && a[7] == b[7] && a[8] == b[8] &&
           memcmp(a + 12, b + 12, 8) == 0 && memcmp(a + 20, b + 20, 4) == 0 &&
           rd16(b + 4) == (uint16_t)(prev_id + 1);
  }
  return memcmp(a, b, 4) == 0 && a[7] == b[7] && memcmp(a + 8, b + 8, 32) == 0 && memcmp(a + 40, b + 40, 4) == 0;
}

/* How many packets from `i` one GSO write can carry (1 = write it alone). */
static uint32_t gso_run(const uint8_t *data, const uint32_t *offsets, const uint32_t *lengths, const uint32_t *gso,
                        uint32_t i, uint32_t count) {
  const uint8_t *head = data + offsets[i];
  if (gso && gso[i]) return 1; /* already a super-packet */
  uint32_t iphl = gso_candidate(head, lengths[i]);
  if (!iphl) return 1;
  uint32_t hl = iphl + 8;
  uint32_t mss = lengths[i] - hl;
  uint32_t total = lengths[i];
  uint16_t prev_id = rd16(head + 4);
  uint32_t n = 1;
  while (i + n < count && n < GSO_MAX_SEGS) {
    const uint8_t *q = data + offsets[i + n];
    uint32_t qlen = lengths[i + n];
    if (qlen < hl || qlen - hl > mss || qlen - hl == 0) break;
    if (total + (qlen - hl) > GSO_MAX_IP_LEN) break;
    if (gso && gso[i + n]) break;
    if ((q[0] >> 4) != (head[0] >> 4) || gso_candidate(q, qlen) != iphl) break;
    if (!gso_same_flow(head, q, iphl, prev_id)) break;
    prev_id = rd16(q + 4);
    total += qlen - hl;
    n++;
    if (qlen - hl < mss) break; /* a short segment can only be the last */
  }
  return n;
}

/* Writes the vnet header and the super-packet's IP+UDP header for packets
   i..i+n-1 into `out`; returns its length. */
static uint32_t gso_header(uint8_t *out, const uint8_t *data, const uint32_t *offsets, const uint32_t *lengths,
                           uint32_t i, uint32_t n) {
  const uint8_t *head = data + offsets[i];
  uint32_t iphl = (head[0] >> 4) == 4 ? 20 : 40;
  uint32_t hl = iphl + 8;
  uint32_t payload = 0;
  for (uint32_t k = 0; k < n; k++) payload += lengths[i + k] - hl;
  uint32_t mss = lengths[i] - hl;
  uint8_t *h = out + VNET_HDR_LEN;
  memcpy(h, head, hl);
  uint32_t ulen = 8 + payload;
  uint32_t sum;
  if (iphl == 20) {
    wr16(h + 2, (uint16_t)(iphl + ulen));
    wr16(h + 10, 0);
    wr16(h + 10, (uint16_t)~csum_fold32(csum_add_bytes(0, h, 20)));
    sum = csum_add_bytes(0, h + 12, 8);
  } else {
    wr16(h + 4, (uint16_t)ulen);
    sum = csum_add_bytes(0, h + 8, 32);
  }
  wr16(h + iphl + 4, (uint16_t)ulen);
  /* CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum (with the
     super-packet's length); __udp_gso_segment adjusts it per segment */
  wr16(h + iphl + 6, csum_fold32(sum + 17 + ulen));
  out[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM_;
  out[1] = VIRTIO_NET_HDR_GSO_UDP_L4_;
  /* little-endian u16s: hdr_len, gso_size, csum_start, csum_offset */
  out[2] = (uint8_t)hl;
  out[3] = (uint8_t)(hl >> 8);
  out[4] = (uint8_t)mss;
  out[5] = (uint8_t)(mss >> 8);
  out[6] = (uint8_t)iphl;
  out[7] = 0;
  out[8] = 6;
  out[9] = 0;
  return VNET_HDR_LEN + hl;
}

/* Completes a NEEDS_CSUM checksum of a packet read with a vnet header. */
static int vnet_complete_csum(const uint8_t *vh, uint8_t *pkt, size_t len) {
  if (vh[1] != 0) return 0; /* GSO: never sent to a device without offloads */
  if (!(vh[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM_)) return 1;
  uint32_t start = vh[6] | ((uint32_t)vh[7] << 8);
  uint32_t off = vh[8] | ((uint32_t)vh[9] << 8);
  if ((size_t)start + off + 2 > len) return 0;
  uint8_t *field = pkt + start + off;
  uint16_t c = (uint16_t)~csum_fold32(csum_add_bytes(0, pkt + start, len - start));
  wr16(field, c ? c : 0xffff);
  return 1;
}


/* ---------- TCP: super-packets read and written, segment runs coalesced ----------
 *
 * With TUNSETOFFLOAD TUN_F_CSUM|TSO4|TSO6 (and USO4|USO6) in force the kernel
 * hands xtr what its stack would have handed a TSO NIC: a super-packet of up
 * to 64 KiB with one IP/TCP (or UDP) header, gso_size the payload of each
 * segment, and a partial checksum. On read the header is checked against
 * the packet; its L4 checksum field is left partial, the pseudo-header sum
 * with the super-packet's full length (the kernel's CHECKSUM_PARTIAL: the
 * router's PacketContext says so in csumPartial); gso[i] keeps its gso_size
 * (0 = not GSO: such a packet's checksum is completed, as it leaves whole).
 *
 * On write, a packet with gso[i] != 0 leaves as one GSO write of its type
 * (TCPV4/TCPV6/UDP_L4) with NEEDS_CSUM: the checksum field is set to the
 * pseudo-header sum, which the kernel completes per segment it cuts
 * (tcp_gso_segment / __udp_gso_segment adjust it for each segment's length).
 *
 * Coalescing (write modes 3 and 4) merges consecutive TCP segments of one flow into
 * one TCPV4/TCPV6 write when the segments the kernel cuts (tcp_gso_segment:
 * the head's headers copied, seq advanced by gso_size, IPv4 IDs incremented,
 * PSH/FIN only on the last, CWR only on the first) are byte-identical to
 * the packets as they stand:
 *   - IP as for UDP (IPv4: IHL 5, no MF/offset, equal TOS/TTL/flags/
 *     addresses, valid header checksum, IDs +1; IPv6: no extension
 *     headers, equal first word/hop limit/addresses);
 *   - TCP: equal ports, ack, window, urgent pointer and option bytes (the
 *     kernel's tcp_gro_receive also wants the options equal), flags ACK or
 *     ACK|PSH only, PSH only on the last; seq of each = seq of the previous +
 *     its payload; a correct checksum on each (the kernel writes correct ones);
 *   - payload sizes equal (gso_size) but the last, which may be shorter
 *     and ends the run; 2..GSO_MAX_SEGS segments; at most 65535 bytes of IP.
 * These are the conditions of wireguard-go's tcpGRO and of the kernel's GRO.
 */
#define VIRTIO_NET_HDR_GSO_TCPV4_ 1
#define VIRTIO_NET_HDR_GSO_TCPV6_ 4
#define VIRTIO_NET_HDR_GSO_ECN_ 0x80

static inline uint32_t rd32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Pseudo-header sum (unfolded, < 2^18) for an IPv4 or IPv6 packet `p` with `l4len` bytes of L4. */
static uint32_t pseudo_sum(const uint8_t *p, uint32_t proto, uint32_t l4len) {
  if ((p[0] >> 4) == 4) return csum_add_bytes(0, p + 12, 8) + proto + l4len;
  return csum_add_bytes(0, p + 8, 32) + proto + l4len;
}

/*
 * A packet read with a GSO virtio header: checks the header against the
 * bytes, sets the L4 checksum field to the partial (pseudo-header) sum, and
 * returns its gso_size; when it turns out to be a single segment, completes
 * the checksum and returns 0; -1 to drop it.
 */
static int32_t vnet_accept_gso(const uint8_t *vh, uint8_t *p, size_t len) {
  uint8_t type = vh[1] & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN_;
  uint32_t gso_size = vh[4] | ((uint32_t)vh[5] << 8);
  uint32_t iphl, proto;
  if (len < 28) return -1;
  if ((p[0] >> 4) == 4) {
    iphl = (uint32_t)(p[0] & 15) * 4;
    if (iphl < 20 || rd16(p + 2) != len || (rd16(p + 6) & 0x3fff) != 0) return -1;
    proto = p[9];
    if (type == VIRTIO_NET_HDR_GSO_TCPV6_) return -1;
  } else if ((p[0] >> 4) == 6) {
    iphl = 40;
    if (len < 48 || rd16(p + 4) != len - 40) return -1;
    proto = p[6]; /* extension headers: not produced by the kernel's TCP/UDP, not taken */
    if (type == VIRTIO_NET_HDR_GSO_TCPV4_) return -1;
  } else {
    return -1;
  }
  uint32_t csum_at, l4hl;
  if (type == VIRTIO_NET_HDR_GSO_TCPV4_ || type == VIRTIO_NET_HDR_GSO_TCPV6_) {
    if (proto != 6 || len < iphl + 20) return -1;
    l4hl = (uint32_t)(p[iphl + 12] >> 4) * 4;
    csum_at = iphl + 16;
  } else if (type == VIRTIO_NET_HDR_GSO_UDP_L4_) {
    if (proto != 17 || len < iphl + 8 || rd16(p + iphl + 4) != len - iphl) return -1;
    l4hl = 8;
    csum_at = iphl + 6;
  } else {
    return -1;
  }
  if (l4hl < 8 || iphl + l4hl > len || gso_size == 0) return -1;
  uint32_t l4len = (uint32_t)len - iphl;
  uint32_t sum = pseudo_sum(p, proto, l4len);
  if (l4len - l4hl > gso_size) {
    /* A super-packet keeps a partial checksum (the kernel's CHECKSUM_PARTIAL):
       the field holds the folded pseudo-header sum. Nothing on its way needs
       the full one: a GSO write sets the field again from the header as it
       then is (super_prepare) and the kernel completes each segment's; the
       software segmenter (dataplane/gso.ts) computes each segment's whole.
       Summing 64 KiB here was about 9 % of xtr's CPU in bulk TCP (perf). */
    wr16(p + csum_at, csum_fold32(sum));
    return (int32_t)gso_size;
  }
  /* one segment after all: written as an ordinary packet, so complete it */
  wr16(p + csum_at, 0);
  uint16_t c = (uint16_t)~csum_fold32(csum_add_bytes(sum, p + iphl, l4len));
  if (proto == 17 && c == 0) c = 0xffff;
  wr16(p + csum_at, c);
  return 0;
}

/* Header lengths (IP in *iphl, IP+TCP returned) if the TCP packet may head or join a run, else 0. */
static uint32_t tcp_candidate(const uint8_t *p, uint32_t len, uint32_t *iphl_out) {
  if (len < 40) return 0;
  uint8_t version = p[0] >> 4;
  uint32_t iphl;
  if (version == 4) {
    if (p[0] != 0x45 || p[9] != 6 || rd16(p + 2) != len) return 0;
    if ((rd16(p + 6) & 0xbfff) != 0) return 0; /* no MF, no offset, no reserved bit; DF either way */
    if (csum_fold32(csum_add_bytes(0, p, 20)) != 0xffff) return 0;
    iphl = 20;
  } else if (version == 6) {
    if (len < 60 || p[6] != 6 || rd16(p + 4) != len - 40) return 0;
    iphl = 40;
  } else {
    return 0;
  }
  const uint8_t *t = p + iphl;
  uint32_t thl = (uint32_t)(t[12] >> 4) * 4;
  if (thl < 20 || iphl + thl >= len) return 0; /* a segment without payload is never merged */
  uint8_t flags = t[13];
  if ((flags & (uint8_t)~0x08) != 0x10 || (t[12] & 0x0f) != 0) return 0; /* ACK or ACK|PSH, no reserved/AE bit */
  uint32_t l4len = len - iphl;
  if (csum_fold32(csum_add_bytes(pseudo_sum(p, 6, l4len), t, l4len)) != 0xffff) return 0;
  *iphl_out = iphl;
  return iphl + thl;
}

/* Same flow and every field tcp_gso_segment copies equal; b directly follows a (seq, IPv4 ID). */
static int tcp_same_flow(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t iphl, uint32_t hl) {
  if (iphl == 20) {
    if (!(a[1] == b[1] && a[6] == b[6] && a[7] == b[7] && a[8] == b[8] && memcmp(a + 12, b + 12, 8) == 0 &&
          rd16(b + 4) == (uint16_t)(rd16(a + 4) + 1)))
      return 0;
  } else if (!(memcmp(a, b, 4) == 0 && a[7] == b[7] && memcmp(a + 8, b + 8, 32) == 0)) {
    return 0;
  }
  const uint8_t *ta = a + iphl, *tb = b + iphl;
  if (memcmp(ta, tb, 4) != 0) return 0; /* ports */
  if (rd32(tb + 4) != rd32(ta + 4) + (alen - hl)) return 0; /* contiguous */
  if (memcmp(ta + 8, tb + 8, 4) != 0 || memcmp(ta + 12, tb + 12, 1) != 0) return 0; /* ack, data offset */
  if (ta[13] & 0x08) return 0; /* a PSH segment ends the run */
  if (memcmp(ta + 14, tb + 14, 2) != 0 || memcmp(ta + 18, tb + 18, hl - iphl - 18) != 0) return 0; /* window, urgent, options */
  return 1;
}

/* How many TCP segments from `i` one GSO write can carry (1 = write it alone). */
static uint32_t tcp_run(const uint8_t *data, const uint32_t *offsets, const uint32_t *lengths, const uint32_t *gso,
                        uint32_t i, uint32_t count) {
  if (gso && gso[i]) return 1;
  const uint8_t *head = data + offsets[i];
  uint32_t iphl;
  uint32_t hl = tcp_candidate(head, lengths[i], &iphl);
  if (!hl || (head[iphl + 13] & 0x08)) return 1;
  uint32_t mss = lengths[i] - hl;
  uint32_t total = lengths[i];
  const uint8_t *prev = head;
  uint32_t prev_len = lengths[i];
  uint32_t n = 1;
  while (i + n < count && n < GSO_MAX_SEGS) {
    const uint8_t *q = data + offsets[i + n];
    uint32_t qlen = lengths[i + n];
    if (gso && gso[i + n]) break;
    if (qlen <= hl || qlen - hl > mss) break;
    if (total + (qlen - hl) > GSO_MAX_IP_LEN) break;
    if ((q[0] >> 4) != (head[0] >> 4)) break;
    uint32_t qiphl;
    if (tcp_candidate(q, qlen, &qiphl) != hl) break;
    if (!tcp_same_flow(prev, prev_len, q, iphl, hl)) break;
    total += qlen - hl;
    n++;
    prev = q;
    prev_len = qlen;
    if (qlen - hl < mss || (q[iphl + 13] & 0x08)) break; /* a short or PSH segment can only be the last */
  }
  return n;
}

/* Fills the 10-byte virtio header for a GSO write of `p` (headers `hl` long, IP `iphl`). */
static void vnet_gso_fill(uint8_t *vh, const uint8_t *p, uint32_t iphl, uint32_t hl, uint32_t gso_size) {
  int udp = ((p[0] >> 4) == 4 ? p[9] : p[6]) == 17;
  vh[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM_;
  vh[1] = udp ? VIRTIO_NET_HDR_GSO_UDP_L4_ : (p[0] >> 4) == 4 ? VIRTIO_NET_HDR_GSO_TCPV4_ : VIRTIO_NET_HDR_GSO_TCPV6_;
  vh[2] = (uint8_t)hl;
  vh[3] = (uint8_t)(hl >> 8);
  vh[4] = (uint8_t)gso_size;
  vh[5] = (uint8_t)(gso_size >> 8);
  vh[6] = (uint8_t)iphl;
  vh[7] = (uint8_t)(iphl >> 8);
  vh[8] = udp ? 6 : 16;
  vh[9] = 0;
}

/* Writes the vnet header and the super-packet's IP+TCP header for TCP segments
   i..i+n-1 (one tcp_run) into `out`; returns its length. */
static uint32_t tcp_gso_header(uint8_t *out, const uint8_t *data, const uint32_t *offsets, const uint32_t *lengths,
                               uint32_t i, uint32_t n) {
  const uint8_t *head = data + offsets[i];
  uint32_t iphl = (head[0] >> 4) == 4 ? 20 : 40;
  uint32_t hl = iphl + (uint32_t)(head[iphl + 12] >> 4) * 4;
  uint32_t payload = 0;
  for (uint32_t k = 0; k < n; k++) payload += lengths[i + k] - hl;
  uint8_t *h = out + VNET_HDR_LEN;
  memcpy(h, head, hl);
  uint32_t l4len = hl - iphl + payload;
  if (iphl == 20) {
    wr16(h + 2, (uint16_t)(hl + payload));
    wr16(h + 10, 0);
    wr16(h + 10, (uint16_t)~csum_fold32(csum_add_bytes(0, h, 20)));
  } else {
    wr16(h + 4, (uint16_t)l4len);
  }
  /* PSH, if any, was on the last segment; tcp_gso_segment puts it back there only */
  h[iphl + 13] |= data[offsets[i + n - 1] + iphl + 13] & 0x08;
  wr16(h + iphl + 16, csum_fold32(pseudo_sum(h, 6, l4len)));
  vnet_gso_fill(out, h, iphl, hl, lengths[i] - hl);
  return VNET_HDR_LEN + hl;
}

/* A super-packet in place (gso_size from its read): the checksum field becomes
   the pseudo-header sum and `vh` its GSO header. Returns 0 if it is not one
   (then it is written as it is). */
static int super_prepare(uint8_t *vh, uint8_t *p, uint32_t len, uint32_t gso_size) {
  uint32_t iphl, proto;
  if (len < 28) return 0;
  if ((p[0] >> 4) == 4) {
    iphl = (uint32_t)(p[0] & 15) * 4;
    proto = p[9];
  } else if ((p[0] >> 4) == 6) {
    iphl = 40;
    proto = p[6];
  } else {
    return 0;
  }
  uint32_t hl;
  if (proto == 6 && len >= iphl + 20) {
    hl = iphl + (uint32_t)(p[iphl + 12] >> 4) * 4;
  } else if (proto == 17 && len >= iphl + 8) {
    hl = iphl + 8;
  } else {
    return 0;
  }
  if (hl > len || len - hl <= gso_size) return 0;
  wr16(p + iphl + (proto == 6 ? 16 : 6), csum_fold32(pseudo_sum(p, proto, len - iphl)));
  vnet_gso_fill(vh, p, iphl, hl, gso_size);
  return 1;
}

/* ---------- batched I/O ---------- */

/* A packet of r bytes (virtio header stripped) just read into p: -1 to drop it
   (truncated, a GSO packet without gso[] to report it, a malformed header),
   else its gso_size (0: an ordinary packet, its checksum completed). */
static int32_t read_accept(int vnet, const uint8_t *vh, uint8_t *p, ssize_t r, size_t room, int have_gso) {
  if (r < 0 || r > (ssize_t)room) return -1;
  if (!vnet) return 0;
  if (vh[1] != 0) return have_gso ? vnet_accept_gso(vh, p, (size_t)r) : -1;
  if (vh[0] && !vnet_complete_csum(vh, p, (size_t)r)) return -1;
  return 0;
}

/* Where a read batch's packets are recorded (js_read_batch). */
typedef struct read_tally {
  uint32_t *offsets, *lengths, *gso;
  uint32_t n;
  double bytes, failed, supers;
} read_tally;

/* Takes the packet of r bytes (virtio header stripped) read into slot offset
   `off`: recorded as packet t->n, or counted as failed. */
static void read_take(read_tally *t, int vnet, const uint8_t *vh, uint8_t *data, uint32_t off, ssize_t r, size_t room) {
  int32_t g = read_accept(vnet, vh, data + off, r, room, t->gso != NULL);
  if (g < 0) {
    t->failed++;
    return;
  }
  if (t->gso) t->gso[t->n] = (uint32_t)g;
  if (g > 0) t->supers++;
  t->offsets[t->n] = off;
  t->lengths[t->n] = (uint32_t)r;
  t->bytes += (double)r;
  t->n++;
}

/* Reads every packet ready on fd, up to `capacity`, into the slots of data
   (napi-free: called by js_read_batch on the JS thread and by the queue
   workers, workers.c). Returns the packets read, or -errno when none was read
   and the read failed; out = [bytes, failed, errno, super-packets read,
   io_uring refused (1)]. gso may be NULL (super-packets then fail). */
int32_t tun_read_batch(int fd, uint8_t *data, uint32_t *offsets, uint32_t *lengths, uint32_t *gso,
                       uint32_t capacity, uint32_t slot_size, uint32_t headroom, int vnet, int use_uring,
                       double out[5]) {
  read_tally tally = {offsets, lengths, gso, 0, 0, 0, 0}; /* the packets read */
  uint32_t slot = 0; /* next slot to read into: a packet that fails leaves its slot for the next */
  double refused = 0;
  int last_err = 0;
  const size_t room = slot_size - headroom;
  const ssize_t hdr = vnet ? VNET_HDR_LEN : 0;
  /* The kernel silently truncates a packet longer than the buffer. One spare
     byte after the slot tells a truncated packet (read returns room + 1) from
     one that fits exactly; a truncated packet is dropped and counted. */

  if (use_uring && uring_ready() == 0) {
    /* Rounds of reads into consecutive slots, 8 at first and twice as many
       each round while every one found a packet; a round with "nothing
       ready" (EAGAIN) in it is the last. Slots of reads that found nothing
       stay unused, so packets keep their order but not always adjacent slots
       (offsets[] says where each is). */
    static __thread struct iovec riov[URING_ENTRIES][3];
    static __thread uint8_t rvh[URING_ENTRIES][VNET_HDR_LEN];
    static __thread unsigned char rspare[URING_ENTRIES];
    static __thread int32_t rres[URING_ENTRIES];
    uint32_t want = 8;
    int done = 0;
    while (!done && slot < capacity) {
      uint32_t m = capacity - slot;
      if (m > want) m = want;
      if (m > URING_ENTRIES) m = URING_ENTRIES;
      for (uint32_t k = 0; k < m; k++) {
        struct iovec *v = riov[k];
        uint32_t off = (slot + k) * slot_size + headroom;
        unsigned niv = 0;
        if (vnet) v[niv++] = (struct iovec){rvh[k], VNET_HDR_LEN};
        v[niv++] = (struct iovec){data + off, room};
        v[niv++] = (struct iovec){&rspare[k], 1};
        rres[k] = -EAGAIN;
        uring_queue(1, (int)fd, v, niv, k);
      }
      if (uring_run(rres) < 0) break; /* the ring failed: the plain loop below reads on */
      for (uint32_t k = 0; k < m; k++) {
        ssize_t r = rres[k];
        uint32_t off = (slot + k) * slot_size + headroom;
        if (r < 0) {
          if (r == -EAGAIN) {
            done = 1;
          } else if (r == -EOPNOTSUPP) {
            refused = 1; /* this device cannot run reads inline: plain reads from now on */
            done = 1;
          } else if (r == -EFAULT || r == -EINVAL) {
            last_err = (int)-r;
            tally.failed++;
          } else {
            last_err = (int)-r;
            done = 1;
          }
          continue;
        }
        read_take(&tally, vnet, rvh[k], data, off, r - hdr, room);
      }
      slot += m;
      want *= 2;
    }
    if (done && !refused) goto read_done;
  }

  {
    unsigned char spare;
    uint8_t vh[VNET_HDR_LEN];
    /* with IFF_VNET_HDR the header goes to a scratch in front of the slot */
    struct iovec iov[3] = {{vh, VNET_HDR_LEN}, {NULL, room}, {&spare, 1}};
    struct iovec *iv = vnet ? iov : iov + 1;
    const int niv = vnet ? 3 : 2;
    while (slot < capacity) {
      uint32_t off = slot * slot_size + headroom;
      iov[1].iov_base = data + off;
      ssize_t r = readv((int)fd, iv, niv);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        last_err = errno;
        /* EFAULT/EINVAL fail this one packet, which the kernel has consumed;
           keep draining. Anything else (EBADFD: device gone) ends the batch. */
        if (last_err == EFAULT || last_err == EINVAL) {
          tally.failed++;
          continue;
        }
        break;
      }
      uint32_t before = tally.n;
      read_take(&tally, vnet, vh, data, off, r - hdr, room);
      if (tally.n != before) slot++;
    }
  }
read_done:
  out[0] = tally.bytes;
  out[1] = tally.failed;
  out[2] = last_err;
  out[3] = tally.supers;
  out[4] = refused;
  if (tally.n == 0 && last_err != 0 && last_err != EFAULT && last_err != EINVAL) return -last_err;
  return (int32_t)tally.n;
}

static napi_value js_read_batch(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7) {
    napi_throw_type_error(env, NULL, "xtr_tun: readBatch(fd, data, offsets, lengths, capacity, slotSize, headroom[, out])");
    return NULL;
  }
  uint32_t fd, capacity, slot_size, headroom;
  uint8_t *data;
  size_t data_len, offsets_len, lengths_len;
  uint32_t *offsets, *lengths;
  if (!get_u32(env, argv[0], &fd, "fd") || !get_bytes(env, argv[1], &data, &data_len, "data") ||
      !get_u32_array(env, argv[2], &offsets, &offsets_len, "offsets") ||
      !get_u32_array(env, argv[3], &lengths, &lengths_len, "lengths") ||
      !get_u32(env, argv[4], &capacity, "capacity") || !get_u32(env, argv[5], &slot_size, "slotSize") ||
      !get_u32(env, argv[6], &headroom, "headroom"))
    return NULL;
  size_t out_len = 0;
  double *out = argc > 7 ? get_out_n(env, argv[7], &out_len) : NULL;
  bool vnet = false;
  if (argc > 8) napi_get_value_bool(env, argv[8], &vnet);
  /* gso (optional Uint32Array, one per slot): gso_size of each packet read, 0 = not a super-packet.
     Without it a GSO packet is dropped as failed (the device was opened without offloads). */
  uint32_t *gso = NULL;
  size_t gso_len = 0;
  if (argc > 9) {
    napi_valuetype t;
    napi_typeof(env, argv[9], &t);
    if (t != napi_undefined && !get_u32_array(env, argv[9], &gso, &gso_len, "gso")) return NULL;
    if (gso && gso_len < capacity) {
      napi_throw_range_error(env, NULL, "xtr_tun: readBatch: gso shorter than capacity");
      return NULL;
    }
  }
  if (headroom >= slot_size || (uint64_t)capacity * slot_size > data_len || capacity > offsets_len ||
      capacity > lengths_len) {
    napi_throw_range_error(env, NULL,
                           "xtr_tun: readBatch: capacity*slotSize exceeds data, capacity exceeds offsets/lengths, "
                           "or headroom >= slotSize");
    return NULL;
  }

  /* uring (optional bool): read through this thread's io_uring, one enter per round of reads */
  bool use_uring = false;
  if (argc > 10) napi_get_value_bool(env, argv[10], &use_uring);

  double res[5];
  int32_t n = tun_read_batch((int)fd, data, offsets, lengths, gso, capacity, slot_size, headroom, vnet, use_uring, res);
  if (out)
    for (size_t k = 0; k < out_len && k < 5; k++) out[k] = res[k];
  return make_int(env, n);
}

/* How a batch of writes went (tun_write_batch). */
typedef struct write_tally {
  uint32_t written;
  double bytes, failed, refused, gso_writes, gso_packets, super_writes;
  int last_err;
} write_tally;

static const uint8_t zero_hdr[VNET_HDR_LEN];

/* One write on the io_uring path: packets first..first+n-1 as a coalesced run, a super-packet or
   one plain packet, from niov iovecs at iov_at. */
enum { W_PLAIN, W_SUPER, W_RUN };
typedef struct {
  uint32_t first, n, iov_at, niov, kind;
  double bytes;
} wop_t;

/* Submits the nops writes queued on the ring and takes their results in order, as the plain loop
   of tun_write_batch would have: a write the ring cannot run inline (EOPNOTSUPP) is made again as
   a syscall, a coalesced run the kernel refuses is written one packet per syscall. */
static void uring_settle(int fd, uint8_t *data, const uint32_t *offsets, const uint32_t *lengths, const wop_t *ops,
                         uint32_t nops, const struct iovec *wiov, int32_t *wres, write_tally *t) {
  for (uint32_t k = 0; k < nops; k++) wres[k] = -EAGAIN;
  int rr = uring_run(wres);
  if (rr < 0)
    for (uint32_t k = 0; k < nops; k++) wres[k] = -EOPNOTSUPP; /* the ring failed: each write again as a syscall */
  for (uint32_t k = 0; k < nops; k++) {
    const wop_t *op = &ops[k];
    ssize_t r = wres[k];
    if (r == -EOPNOTSUPP) {
      t->refused = 1;
      do r = writev((int)fd, &wiov[op->iov_at], (int)op->niov);
      while (r < 0 && errno == EINTR);
      if (r < 0) r = -errno;
    }
    if (r >= 0) {
      t->written += op->n;
      t->bytes += op->bytes;
      if (op->kind == W_RUN) {
        t->gso_writes++;
        t->gso_packets += op->n;
      } else if (op->kind == W_SUPER) {
        t->super_writes++;
      }
      continue;
    }
    t->last_err = (int)-r;
    if (r == -EAGAIN) continue; /* queue full: not written, not an error of the device */
    if (op->kind == W_RUN && r != -EBADF && r != -EBADFD) {
      /* the kernel refused the coalesced run: its packets one per write */
      for (uint32_t q = op->first; q < op->first + op->n; q++) {
        struct iovec one[2] = {{(void *)zero_hdr, VNET_HDR_LEN}, {data + offsets[q], lengths[q]}};
        ssize_t w;
        do w = writev((int)fd, one, 2);
        while (w < 0 && errno == EINTR);
        if (w >= 0) {
          t->written++;
          t->bytes += (double)lengths[q];
        } else {
          t->last_err = errno;
          if (errno != EAGAIN) t->failed++;
        }
      }
      continue;
    }
    t->failed += op->n;
  }
}

/* Writes count packets to fd (napi-free, as tun_read_batch): mode as
   js_write_batch's; returns the packets the kernel accepted; out = [bytes,
   failed, errno, GSO writes, packets they carried, super-packets written,
   io_uring refused (1)]. */
uint32_t tun_write_batch(int fd, uint8_t *data, const uint32_t *offsets, const uint32_t *lengths, const uint32_t *gso,
                         uint32_t count, uint32_t mode, int use_uring, double out[7]) {
  if (mode == 0) gso = NULL;
  write_tally t = {0};
  uint8_t gso_hdr[VNET_HDR_LEN + 100];
  uint8_t super_hdr[VNET_HDR_LEN];
  struct iovec iov[GSO_MAX_SEGS + 1];
  int coalesce_udp = mode == 2 || mode == 3;
  int coalesce_tcp = mode == 3 || mode == 4;

  if (use_uring && uring_ready() == 0) {
    /* The same writes as the loop below makes (the same runs, super-packets
       and plain packets, in order), queued on the ring and submitted by one
       io_uring_enter per chunk of up to URING_ENTRIES writes. Results are
       then taken in order: a coalesced run the kernel refuses is written
       again one packet per syscall, as the loop below does; a write the
       ring cannot run inline (EOPNOTSUPP) is made again as a plain syscall. */
#define WIOV_MAX (URING_ENTRIES * 2 + GSO_MAX_SEGS + 1)
    static __thread wop_t wops[URING_ENTRIES];
    static __thread struct iovec wiov[WIOV_MAX];
    static __thread uint8_t whdr[URING_ENTRIES][VNET_HDR_LEN + 100];
    static __thread int32_t wres[URING_ENTRIES];
    uint32_t nops = 0, iov_used = 0;
    for (uint32_t i = 0;;) {
      uint32_t n = 1, tcp = 0;
      if (i < count && (coalesce_udp || coalesce_tcp)) {
        n = coalesce_udp ? gso_run(data, offsets, lengths, gso, i, count) : 1;
        if (n == 1 && coalesce_tcp) {
          n = tcp_run(data, offsets, lengths, gso, i, count);
          tcp = n > 1;
        }
      }
      if (i == count || nops == URING_ENTRIES || iov_used + n + 1 > WIOV_MAX) {
        uring_settle(fd, data, offsets, lengths, wops, nops, wiov, wres, &t);
        nops = 0;
        iov_used = 0;
        if (i == count) break;
      }
      wop_t *op = &wops[nops];
      struct iovec *v = &wiov[iov_used];
      op->first = i;
      op->iov_at = iov_used;
      if (gso && gso[i] && super_prepare(whdr[nops], data + offsets[i], lengths[i], gso[i])) {
        v[0] = (struct iovec){whdr[nops], VNET_HDR_LEN};
        v[1] = (struct iovec){data + offsets[i], lengths[i]};
        op->kind = W_SUPER;
        op->n = 1;
        op->niov = 2;
        op->bytes = (double)lengths[i];
      } else if (n > 1) {
        uint32_t hl_total = tcp ? tcp_gso_header(whdr[nops], data, offsets, lengths, i, n)
                                : gso_header(whdr[nops], data, offsets, lengths, i, n);
        uint32_t hl = hl_total - VNET_HDR_LEN;
        v[0] = (struct iovec){whdr[nops], hl_total};
        double run_bytes = 0;
        for (uint32_t k = 0; k < n; k++) {
          v[k + 1] = (struct iovec){data + offsets[i + k] + hl, lengths[i + k] - hl};
          run_bytes += lengths[i + k];
        }
        op->kind = W_RUN;
        op->n = n;
        op->niov = n + 1;
        op->bytes = run_bytes;
      } else {
        if (mode == 0) {
          v[0] = (struct iovec){data + offsets[i], lengths[i]};
          op->niov = 1;
        } else {
          v[0] = (struct iovec){(void *)zero_hdr, VNET_HDR_LEN};
          v[1] = (struct iovec){data + offsets[i], lengths[i]};
          op->niov = 2;
        }
        op->kind = W_PLAIN;
        op->n = 1;
        op->bytes = (double)lengths[i];
      }
      uring_queue(0, (int)fd, v, op->niov, nops);
      iov_used += op->niov;
      nops++;
      i += op->n;
    }
#undef WIOV_MAX
    goto write_done;
  }

  for (uint32_t i = 0; i < count;) {
    uint32_t n = 1, tcp = 0;
    if (coalesce_udp || coalesce_tcp) {
      n = coalesce_udp ? gso_run(data, offsets, lengths, gso, i, count) : 1;
      if (n == 1 && coalesce_tcp) {
        n = tcp_run(data, offsets, lengths, gso, i, count);
        tcp = n > 1;
      }
    }
    ssize_t r;
    if (gso && gso[i] && super_prepare(super_hdr, data + offsets[i], lengths[i], gso[i])) {
      iov[0].iov_base = super_hdr;
      iov[0].iov_len = VNET_HDR_LEN;
      iov[1].iov_base = data + offsets[i];
      iov[1].iov_len = lengths[i];
      r = writev((int)fd, iov, 2);
      if (r < 0 && errno == EINTR) continue;
      if (r >= 0) {
        t.written++;
        t.bytes += (double)lengths[i];
        t.super_writes++;
        i++;
        continue;
      }
      t.last_err = errno;
      if (errno == EAGAIN) break;
      t.failed++;
      if (errno == EBADF || errno == EBADFD) break;
      i++;
      continue;
    }
    if (n > 1) {
      uint32_t hl_total = tcp ? tcp_gso_header(gso_hdr, data, offsets, lengths, i, n)
                              : gso_header(gso_hdr, data, offsets, lengths, i, n);
      uint32_t hl = hl_total - VNET_HDR_LEN;
      iov[0].iov_base = gso_hdr;
      iov[0].iov_len = hl_total;
      double run_bytes = 0;
      for (uint32_t k = 0; k < n; k++) {
        iov[k + 1].iov_base = data + offsets[i + k] + hl;
        iov[k + 1].iov_len = lengths[i + k] - hl;
        run_bytes += lengths[i + k];
      }
      r = writev((int)fd, iov, (int)n + 1);
      if (r >= 0) {
        t.written += n;
        t.bytes += run_bytes;
        t.gso_writes++;
        t.gso_packets += n;
        i += n;
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        t.last_err = errno;
        break;
      }
      if (errno == EBADF || errno == EBADFD) {
        t.last_err = errno;
        t.failed += n;
        break;
      }
      /* the kernel refused the super-packet: send this run, and the rest of
         the batch, one packet per write as before */
      coalesce_udp = 0;
      coalesce_tcp = 0;
      continue;
    }
    if (mode == 0) {
      r = write((int)fd, data + offsets[i], lengths[i]);
    } else {
      iov[0].iov_base = (void *)zero_hdr;
      iov[0].iov_len = VNET_HDR_LEN;
      iov[1].iov_base = data + offsets[i];
      iov[1].iov_len = lengths[i];
      r = writev((int)fd, iov, 2);
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      t.last_err = errno;
      /* a full queue will stay full for the rest of this batch */
      if (errno == EAGAIN) break;
      /* a malformed packet (EINVAL) or a link that is down (EIO) drops this
         packet only; a dead device (EBADF/EBADFD) ends the batch */
      t.failed++;
      if (errno == EBADF || errno == EBADFD) break;
      i++;
      continue;
    }
    t.written++;
    t.bytes += (double)lengths[i];
    i++;
  }
write_done:
  out[0] = t.bytes;
  out[1] = t.failed;
  out[2] = t.last_err;
  out[3] = t.gso_writes;
  out[4] = t.gso_packets;
  out[5] = t.super_writes;
  out[6] = t.refused;
  return t.written;
}

static napi_value js_write_batch(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) {
    napi_throw_type_error(env, NULL, "xtr_tun: writeBatch(fd, data, offsets, lengths, count[, out[, mode[, gso]]])");
    return NULL;
  }
  uint32_t fd, count;
  uint8_t *data;
  size_t data_len, offsets_len, lengths_len;
  uint32_t *offsets, *lengths;
  if (!get_u32(env, argv[0], &fd, "fd") || !get_bytes(env, argv[1], &data, &data_len, "data") ||
      !get_u32_array(env, argv[2], &offsets, &offsets_len, "offsets") ||
      !get_u32_array(env, argv[3], &lengths, &lengths_len, "lengths") || !get_u32(env, argv[4], &count, "count"))
    return NULL;
  size_t out_len = 0;
  double *out = argc > 5 ? get_out_n(env, argv[5], &out_len) : NULL;
  /* mode: 0 plain fd, 1 IFF_VNET_HDR (zero header per packet), 2 IFF_VNET_HDR + UDP GSO coalescing */
  uint32_t mode = 0;
  if (argc > 6 && !get_u32(env, argv[6], &mode, "mode")) return NULL;
  /* mode 3: mode 2 plus TCP segment coalescing; mode 4: IFF_VNET_HDR + TCP coalescing only. gso (optional Uint32Array):
     gso_size per packet, != 0 for a super-packet (written as one GSO write
     in modes 1..3) */
  uint32_t *gso = NULL;
  size_t gso_len = 0;
  if (argc > 7) {
    napi_valuetype t;
    napi_typeof(env, argv[7], &t);
    if (t != napi_undefined && !get_u32_array(env, argv[7], &gso, &gso_len, "gso")) return NULL;
    if (gso && gso_len < count) {
      napi_throw_range_error(env, NULL, "xtr_tun: writeBatch: gso shorter than count");
      return NULL;
    }
  }
  if (count > offsets_len || count > lengths_len) {
    napi_throw_range_error(env, NULL, "xtr_tun: writeBatch: count exceeds offsets/lengths");
    return NULL;
  }
  /* validate every packet before the first write so a bad batch has no side effect */
  for (uint32_t i = 0; i < count; i++) {
    if ((uint64_t)offsets[i] + lengths[i] > data_len) {
      char msg[160];
      snprintf(msg, sizeof msg, "xtr_tun: writeBatch: packet %u (offset %u, length %u) lies outside data (%zu bytes)",
               i, offsets[i], lengths[i], data_len);
      napi_throw_range_error(env, NULL, msg);
      return NULL;
    }
  }

  /* uring (optional bool): write through this thread's io_uring, one enter per batch */
  bool use_uring = false;
  if (argc > 8) napi_get_value_bool(env, argv[8], &use_uring);

  double res[7];
  uint32_t written = tun_write_batch((int)fd, data, offsets, lengths, gso, count, mode, use_uring, res);
  if (out)
    for (size_t k = 0; k < out_len && k < 7; k++) out[k] = res[k];
  return make_int(env, written);
}

/* Test hooks for the coalescer: gsoRuns(data, offsets, lengths, count, runs)
   fills runs[] with the packet count of each write and returns how many
   writes; gsoHeader(data, offsets, lengths, start, n, out) writes the vnet
   header and super-packet header for packets start..start+n-1 into out and
   returns its length. */
static napi_value js_gso_runs(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool tcp = false; /* 6th argument: TCP coalescing too (write mode 3) */
  if (argc > 5) napi_get_value_bool(env, argv[5], &tcp);
  uint32_t count;
  uint8_t *data;
  size_t data_len, offsets_len, lengths_len, runs_len;
  uint32_t *offsets, *lengths, *runs;
  if (argc < 5 || !get_bytes(env, argv[0], &data, &data_len, "data") ||
      !get_u32_array(env, argv[1], &offsets, &offsets_len, "offsets") ||
      !get_u32_array(env, argv[2], &lengths, &lengths_len, "lengths") || !get_u32(env, argv[3], &count, "count") ||
      !get_u32_array(env, argv[4], &runs, &runs_len, "runs"))
    return NULL;
  if (count > offsets_len || count > lengths_len || count > runs_len) {
    napi_throw_range_error(env, NULL, "xtr_tun: gsoRuns: count exceeds offsets/lengths/runs");
    return NULL;
  }
  for (uint32_t i = 0; i < count; i++) {
    if ((uint64_t)offsets[i] + lengths[i] > data_len) {
      napi_throw_range_error(env, NULL, "xtr_tun: gsoRuns: a packet lies outside data");
      return NULL;
    }
  }
  uint32_t w = 0;
  for (uint32_t i = 0; i < count; w++) {
    uint32_t n = gso_run(data, offsets, lengths, NULL, i, count);
    if (tcp && n == 1) n = tcp_run(data, offsets, lengths, NULL, i, count);
    runs[w] = n;
    i += n;
  }
  return make_int(env, w);
}

static napi_value js_gso_header(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool tcp = false; /* 7th argument: a TCP run */
  if (argc > 6) napi_get_value_bool(env, argv[6], &tcp);
  uint32_t start, n;
  uint8_t *data, *outb;
  size_t data_len, offsets_len, lengths_len, out_len;
  uint32_t *offsets, *lengths;
  if (argc < 6 || !get_bytes(env, argv[0], &data, &data_len, "data") ||
      !get_u32_array(env, argv[1], &offsets, &offsets_len, "offsets") ||
      !get_u32_array(env, argv[2], &lengths, &lengths_len, "lengths") || !get_u32(env, argv[3], &start, "start") ||
      !get_u32(env, argv[4], &n, "n") || !get_bytes(env, argv[5], &outb, &out_len, "out"))
    return NULL;
  if (n < 2 || (uint64_t)start + n > offsets_len || (uint64_t)start + n > lengths_len ||
      out_len < VNET_HDR_LEN + (tcp ? 100 : 48) || (tcp ? tcp_run(data, offsets, lengths, NULL, start, start + n) : gso_run(data, offsets, lengths, NULL, start, start + n)) != n) {
    napi_throw_range_error(env, NULL, "xtr_tun: gsoHeader: packets start..start+n-1 are not one run");
    return NULL;
  }
  return make_int(env, tcp ? tcp_gso_header(outb, data, offsets, lengths, start, n) : gso_header(outb, data, offsets, lengths, start, n));
}

/* ---------- readiness ---------- */

static void on_poll(uv_poll_t *poll, int status, int events) {
  (void)status;
  (void)events;
  tun_handle *th = (tun_handle *)poll->data;
  if (th->closing || !th->callback) return;
  napi_env env = th->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, result;
  if (napi_get_reference_value(env, th->callback, &fn) == napi_ok && fn) {
    napi_get_global(env, &recv); /* make_callback wants an object receiver */
    /* make_callback drains nextTicks and microtasks afterwards, as for any I/O callback */
    napi_status s = napi_make_callback(env, th->async_context, recv, fn, 0, NULL, &result);
    if (s == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

static napi_value js_poll_start(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_handle *th = argc > 0 ? get_handle(env, argv[0]) : NULL;
  if (!th) return NULL;
  napi_valuetype t = napi_undefined;
  if (argc > 1) napi_typeof(env, argv[1], &t);
  if (t != napi_function) {
    napi_throw_type_error(env, NULL, "xtr_tun: pollStart(handle, callback): callback must be a function");
    return NULL;
  }
  if (th->fd < 0 || th->closing) return throw_errno(env, "pollStart", "device", EBADF);
  if (th->callback) napi_delete_reference(env, th->callback);
  CHECK(napi_create_reference(env, argv[1], 1, &th->callback));
  if (!th->async_context) {
    napi_value resource_name;
    CHECK(napi_create_string_utf8(env, "xtr:tun", NAPI_AUTO_LENGTH, &resource_name));
    CHECK(napi_async_init(env, NULL, resource_name, &th->async_context));
  }
  if (!th->poll_inited) {
    uv_loop_t *loop = NULL;
    CHECK(napi_get_uv_event_loop(env, &loop));
    int r = uv_poll_init(loop, &th->poll, th->fd);
    if (r < 0) return throw_errno(env, "uv_poll_init", "device", -r);
    th->poll.data = th;
    th->poll_inited = 1;
  }
  if (!th->poll_active) {
    int r = uv_poll_start(&th->poll, UV_READABLE, on_poll);
    if (r < 0) return throw_errno(env, "uv_poll_start", "device", -r);
    th->poll_active = 1;
  }
  return NULL;
}

static napi_value js_poll_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_handle *th = argc > 0 ? get_handle(env, argv[0]) : NULL;
  if (!th) return NULL;
  if (th->poll_inited && th->poll_active && !th->closing) uv_poll_stop(&th->poll);
  th->poll_active = 0;
  return NULL;
}

static napi_value js_poll_ref(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_handle *th = argc > 0 ? get_handle(env, argv[0]) : NULL;
  if (!th) return NULL;
  bool ref = true;
  if (argc > 1) napi_get_value_bool(env, argv[1], &ref);
  if (th->poll_inited && !th->closing) {
    if (ref)
      uv_ref((uv_handle_t *)&th->poll);
    else
      uv_unref((uv_handle_t *)&th->poll);
  }
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  tun_handle *th = argc > 0 ? get_handle(env, argv[0]) : NULL;
  if (!th) return NULL;
  handle_close(th, 1);
  return NULL;
}

/* ---------- link helpers (act in the calling process's network namespace) ---------- */

static int ifreq_for(napi_env env, napi_value v, struct ifreq *ifr) {
  memset(ifr, 0, sizeof *ifr);
  size_t len = 0;
  char name[IFNAMSIZ + 1] = {0};
  if (napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok || len == 0 || len >= IFNAMSIZ) {
    napi_throw_type_error(env, NULL, "xtr_tun: interface name must be a string of 1..15 bytes");
    return 0;
  }
  memcpy(ifr->ifr_name, name, len);
  return 1;
}

static napi_value js_set_mtu(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct ifreq ifr;
  uint32_t mtu;
  if (argc < 2 || !ifreq_for(env, argv[0], &ifr) || !get_u32(env, argv[1], &mtu, "mtu")) return NULL;
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return throw_errno(env, "socket", "AF_INET", errno);
  ifr.ifr_mtu = (int)mtu;
  int r = ioctl(s, SIOCSIFMTU, &ifr);
  int err = errno;
  close(s);
  if (r < 0) return throw_errno(env, "ioctl(SIOCSIFMTU)", ifr.ifr_name, err);
  return NULL;
}

static napi_value js_set_up(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct ifreq ifr;
  bool up = true;
  if (argc < 1 || !ifreq_for(env, argv[0], &ifr)) return NULL;
  if (argc > 1) napi_get_value_bool(env, argv[1], &up);
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return throw_errno(env, "socket", "AF_INET", errno);
  int r = ioctl(s, SIOCGIFFLAGS, &ifr);
  if (r == 0) {
    if (up)
      ifr.ifr_flags |= IFF_UP;
    else
      ifr.ifr_flags &= ~IFF_UP;
    r = ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  int err = errno;
  close(s);
  if (r < 0) return throw_errno(env, "ioctl(SIOCSIFFLAGS)", ifr.ifr_name, err);
  return NULL;
}

/* ---------- control socket peers ---------- */

/*
 * peerCred(fd) -> {pid, uid, gid}: the kernel's SO_PEERCRED of a connected
 * Unix socket (the control socket's audit, router/audit.ts). Node has no
 * getsockopt; one syscall here replaces a child process per connection.
 */
static napi_value js_peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "peerCred(fd): fd must be a non-negative integer");
    return NULL;
  }
  struct ucred cr;
  socklen_t len = sizeof cr;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) return throw_errno(env, "getsockopt(SO_PEERCRED)", NULL, errno);
  napi_value out, v;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_int32(env, cr.pid, &v));
  CHECK(napi_set_named_property(env, out, "pid", v));
  CHECK(napi_create_uint32(env, cr.uid, &v));
  CHECK(napi_set_named_property(env, out, "uid", v));
  CHECK(napi_create_uint32(env, cr.gid, &v));
  CHECK(napi_set_named_property(env, out, "gid", v));
  return out;
}

/* ---------- module ---------- */

/* uringReady() -> 0 when this thread has an io_uring for batched reads and writes, else -errno
   (io_uring_setup refused: an old kernel, io_uring_disabled, or a seccomp profile) */
static napi_value js_uring_ready(napi_env env, napi_callback_info info) {
  return make_int(env, uring_ready());
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readBatch", NULL, js_read_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writeBatch", NULL, js_write_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"gsoRuns", NULL, js_gso_runs, NULL, NULL, NULL, napi_enumerable, NULL},
      {"gsoHeader", NULL, js_gso_header, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pollStart", NULL, js_poll_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pollStop", NULL, js_poll_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pollRef", NULL, js_poll_ref, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setMtu", NULL, js_set_mtu, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setUp", NULL, js_set_up, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerCred", NULL, js_peer_cred, NULL, NULL, NULL, napi_enumerable, NULL},
      {"uringReady", NULL, js_uring_ready, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) {
    throw_last(env, "napi_define_properties");
    return NULL;
  }
  workers_init(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
