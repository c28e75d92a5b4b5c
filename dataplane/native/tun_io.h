/*
 * The batched TUN/TAP read and write of dataplane/native/tun.c, without
 * N-API: called on the JS thread by readBatch/writeBatch, and on the queue
 * workers' threads (dataplane/native/workers.c).
 */
#ifndef XTR_TUN_IO_H
#define XTR_TUN_IO_H

#include <stdint.h>

/* Reads every packet ready on fd, up to capacity, into slot i at i*slot_size+headroom
   (packets keep their order; offsets[] says where each is). Returns the packets
   read, or -errno when none was read and the read failed. out = [bytes, failed,
   errno, super-packets read, io_uring refused (1)]. */
int32_t tun_read_batch(int fd, uint8_t *data, uint32_t *offsets, uint32_t *lengths, uint32_t *gso,
                       uint32_t capacity, uint32_t slot_size, uint32_t headroom, int vnet, int use_uring,
                       double out[5]);

/* Writes count packets (packet i: data[offsets[i] .. + lengths[i]]); mode 0 plain, 1 virtio
   header, 2 + UDP coalescing, 3 + UDP and TCP coalescing, 4 + TCP coalescing. Returns the
   packets accepted. out = [bytes, failed, errno, GSO writes, packets they carried,
   super-packets written, io_uring refused (1)]. */
uint32_t tun_write_batch(int fd, uint8_t *data, const uint32_t *offsets, const uint32_t *lengths, const uint32_t *gso,
                         uint32_t count, uint32_t mode, int use_uring, double out[7]);

#endif
