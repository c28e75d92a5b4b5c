/* A minimal io_uring for batched TUN/TAP I/O: why and how in uring.h. */
#define _GNU_SOURCE
#include "uring.h"

#include <errno.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct ring {
  int fd;    /* -1: not made yet */
  int error; /* -errno once making it failed: not retried */
  unsigned *sq_tail, *sq_mask, *sq_array;
  unsigned *cq_head, *cq_tail, *cq_mask;
  struct io_uring_sqe *sqes;
  struct io_uring_cqe *cqes;
  unsigned queued;
} ring;

static __thread ring R = {.fd = -1};

static int ring_make(void) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  int fd = (int)syscall(__NR_io_uring_setup, URING_ENTRIES, &p);
  if (fd < 0) return -errno;
  size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single && cq_len > sq_len) sq_len = cq_len;
  uint8_t *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
  if (sq == MAP_FAILED) {
    int e = -errno;
    close(fd);
    return e;
  }
  uint8_t *cq = single ? sq : mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_CQ_RING);
  struct io_uring_sqe *sqes = cq == MAP_FAILED ? MAP_FAILED
                                                : mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                                                       MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
  if (cq == MAP_FAILED || sqes == MAP_FAILED) {
    int e = -errno;
    munmap(sq, sq_len);
    if (!single && cq != MAP_FAILED) munmap(cq, cq_len);
    close(fd);
    return e;
  }
  R.sq_tail = (unsigned *)(sq + p.sq_off.tail);
  R.sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
  R.sq_array = (unsigned *)(sq + p.sq_off.array);
  R.cq_head = (unsigned *)(cq + p.cq_off.head);
  R.cq_tail = (unsigned *)(cq + p.cq_off.tail);
  R.cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
  R.cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
  R.sqes = sqes;
  R.queued = 0;
  R.fd = fd;
  /* The ring lives as long as its thread: the kernel frees it when the
     thread's process exits; a worker thread that ends leaves one ring fd. */
  return 0;
}

int uring_ready(void) {
  if (R.fd >= 0) return 0;
  if (R.error) return R.error;
  int r = ring_make();
  if (r < 0) R.error = r;
  return r;
}

void uring_queue(int read, int fd, const struct iovec *iov, unsigned niov, uint32_t tag) {
  unsigned tail = *R.sq_tail + R.queued;
  unsigned idx = tail & *R.sq_mask;
  struct io_uring_sqe *e = &R.sqes[idx];
  memset(e, 0, sizeof *e);
  e->opcode = read ? IORING_OP_READV : IORING_OP_WRITEV;
  e->fd = fd;
  e->addr = (uint64_t)(uintptr_t)iov;
  e->len = niov;
  e->off = (uint64_t)-1; /* the file position: none for a character device */
  e->rw_flags = RWF_NOWAIT;
  e->user_data = tag;
  R.sq_array[idx] = idx;
  R.queued++;
}

static unsigned reap(int32_t *res) {
  unsigned got = 0;
  unsigned head = *R.cq_head;
  unsigned tail = __atomic_load_n(R.cq_tail, __ATOMIC_ACQUIRE);
  for (; head != tail; head++, got++) {
    struct io_uring_cqe *c = &R.cqes[head & *R.cq_mask];
    res[c->user_data] = c->res;
  }
  __atomic_store_n(R.cq_head, head, __ATOMIC_RELEASE);
  return got;
}

int uring_run(int32_t *res) {
  unsigned n = R.queued;
  if (n == 0) return 0;
  R.queued = 0;
  __atomic_store_n(R.sq_tail, *R.sq_tail + n, __ATOMIC_RELEASE);
  /* Submit: the kernel runs each entry as it takes it (RWF_NOWAIT), so the
     results are normally all there when this returns. */
  unsigned taken = 0;
  while (taken < n) {
    int r = (int)syscall(__NR_io_uring_enter, R.fd, n - taken, 0, 0, NULL, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = r < 0 ? -errno : -EAGAIN;
      /* withdraw what the kernel did not take, so the next call starts clean */
      __atomic_store_n(R.sq_tail, *R.sq_tail - (n - taken), __ATOMIC_RELEASE);
      if (taken == 0) return e;
      n = taken; /* what was taken still completes; the caller presets the rest */
      break;
    }
    taken += (unsigned)r;
  }
  unsigned reaped = reap(res);
  while (reaped < n) {
    int r = (int)syscall(__NR_io_uring_enter, R.fd, 0, n - reaped, IORING_ENTER_GETEVENTS, NULL, 0);
    if (r < 0 && errno != EINTR) return -errno;
    reaped += reap(res);
  }
  return 0;
}
