/*
 * A minimal io_uring for batched TUN/TAP reads and writes (dataplane/native/uring.c).
 *
 * Why: on the machines xtr runs on, entering the kernel is the dominant cost
 * of a small packet. Measured on the 2-CPU development VM (PVM guest,
 * kernel 6.18): a 40-byte writev() to a TUN costs ~2.1-2.8 us, the same
 * write as one of 64 IORING_OP_WRITEV entries submitted by one
 * io_uring_enter() ~0.56-0.65 us. One enter per batch instead of one
 * syscall per packet, for reads as for writes.
 *
 * Each entry carries RWF_NOWAIT, so the kernel runs it inline during
 * io_uring_enter, in submission order (packet order is kept), or fails it
 * with EOPNOTSUPP (a device whose driver cannot: the caller then goes back to
 * plain syscalls for that device) - it is never handed to an io-wq worker
 * thread, where order would be lost and the buffers would outlive the call.
 * Every submission is waited for before the call returns, so buffers are
 * never retained.
 *
 * One ring per thread (thread-local), made on first use; no liburing (the
 * three system calls and the ring layout are the kernel's ABI).
 */
#ifndef XTR_URING_H
#define XTR_URING_H

#include <stdint.h>
#include <sys/uio.h>

/* Entries per submission; larger batches are submitted in chunks. */
#define URING_ENTRIES 256

/* 0 when this thread has a ring (made now if need be), else -errno of io_uring_setup/mmap. */
int uring_ready(void);

/* Queues a readv (read = 1) or writev on fd with RWF_NOWAIT; `tag` comes back with its result.
   At most URING_ENTRIES may be queued before uring_run. */
void uring_queue(int read, int fd, const struct iovec *iov, unsigned niov, uint32_t tag);

/* Submits what is queued and waits for all of it; res[tag] = the result (bytes, or -errno).
   Returns 0, or -errno if io_uring_enter itself failed (then nothing queued has run). */
int uring_run(int32_t *res);

#endif
