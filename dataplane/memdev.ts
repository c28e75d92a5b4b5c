/**
 * An in-memory PacketDevice for unit tests: the same batch semantics as the
 * TUN/TAP device (dataplane/tun.ts) without a kernel, a namespace or root.
 *
 * - `inject(bytes)` queues a packet as if the kernel had routed it to the
 *   interface; `read(batch)` then returns it at slot start + HEADROOM.
 * - `write(...)` copies accepted packets into `sent` (tests inspect them) or,
 *   for a pair, into the peer's receive queue.
 * - `onReadable(cb)` fires asynchronously (setImmediate) and, like a
 *   level-triggered uv_poll, again on the next turn while packets remain.
 * - What the kernel refuses, this refuses too: a TUN write whose first nibble
 *   is not 4 or 6 (EINVAL), a TAP write shorter than an Ethernet header, a
 *   write when the transmit queue is full (EAGAIN: the rest of the batch is
 *   dropped), a packet larger than the read slot (consumed, counted in
 *   rxErrors).
 *
 * The copies made by inject() and for `sent` are test conveniences; the batch
 * path itself (read into the caller's slots) does not allocate.
 */
import type { DeviceKind, PacketBatch, PacketDevice } from './device.js';
import { HEADROOM } from './device.js';
import type { TunStats } from './tun.js';

const ETH_HLEN = 14;

export interface MemDeviceOptions {
  kind?: DeviceKind;
  /** Packets held for read before inject() refuses more (the kernel's txqueuelen). Default 1000. */
  rxQueueLimit?: number;
  /**
   * Packets `sent` may hold before writes see a full queue (EAGAIN) and drop
   * the rest of their batch. Default: unlimited. takeSent() frees room.
   */
  txQueueLimit?: number;
}

export class MemDevice implements PacketDevice {
  readonly kind: DeviceKind;
  readonly stats: TunStats = { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txDropped: 0, rxErrors: 0, txGsoWrites: 0, txGsoPackets: 0, rxSuperPackets: 0, txSuperWrites: 0 };
  /** Copies of every packet this device accepted for transmission (not kept for a paired device). */
  readonly sent: Buffer[] = [];
  /** Packets inject() refused because the receive queue was full. */
  rxOverruns = 0;
  closed = false;
  /** Set by createMemDevicePair: accepted writes are delivered to the peer instead of `sent`. */
  peer: MemDevice | null = null;

  private readonly rxQueue: Uint8Array[] = [];
  private rxHead = 0;
  private readonly rxQueueLimit: number;
  private readonly txQueueLimit: number;
  private readable: (() => void) | null = null;
  private wakeScheduled: NodeJS.Immediate | null = null;

  constructor(
    readonly name: string,
    opts: MemDeviceOptions = {},
  ) {
    this.kind = opts.kind ?? 'tun';
    this.rxQueueLimit = opts.rxQueueLimit ?? 1000;
    this.txQueueLimit = opts.txQueueLimit ?? Number.POSITIVE_INFINITY;
  }

  /** Packets waiting to be read. */
  get pending(): number {
    return this.rxQueue.length - this.rxHead;
  }

  /**
   * Queues a copy of `bytes` for read(), as if the kernel had delivered it to
   * the interface. Returns false (and counts an overrun) when the queue is full.
   */
  inject(bytes: Uint8Array): boolean {
    if (this.closed) return false;
    if (this.pending >= this.rxQueueLimit) {
      this.rxOverruns++;
      return false;
    }
    this.rxQueue.push(Uint8Array.prototype.slice.call(bytes));
    this.scheduleWake();
    return true;
  }

  /** Returns and forgets everything written so far (frees room under txQueueLimit). */
  takeSent(): Buffer[] {
    return this.sent.splice(0, this.sent.length);
  }

  read(batch: PacketBatch): number {
    let n = 0;
    let bytes = 0;
    const room = batch.slotSize - HEADROOM;
    while (n < batch.capacity && this.rxHead < this.rxQueue.length) {
      const pkt = this.rxQueue[this.rxHead]!;
      this.rxHead++;
      if (pkt.length > room) {
        // the kernel consumes a packet that does not fit the buffer and fails the read
        this.stats.rxErrors++;
        continue;
      }
      const off = n * batch.slotSize + HEADROOM;
      batch.data.set(pkt, off);
      batch.offsets[n] = off;
      batch.lengths[n] = pkt.length;
      bytes += pkt.length;
      n++;
    }
    if (this.rxHead === this.rxQueue.length) {
      this.rxQueue.length = 0;
      this.rxHead = 0;
    }
    this.stats.rxPackets += n;
    this.stats.rxBytes += bytes;
    batch.count = n;
    return n;
  }

  write(data: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number {
    if (count > offsets.length || count > lengths.length) {
      throw new RangeError(`${this.name}: write count ${count} exceeds offsets/lengths`);
    }
    for (let i = 0; i < count; i++) {
      if (offsets[i]! + lengths[i]! > data.length) {
        throw new RangeError(
          `${this.name}: write packet ${i} (offset ${offsets[i]}, length ${lengths[i]}) lies outside data (${data.length} bytes)`,
        );
      }
    }
    if (this.closed) {
      this.stats.txDropped += count;
      return 0;
    }
    let written = 0;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      if (this.peer === null && this.sent.length >= this.txQueueLimit) break; // EAGAIN
      if (!this.acceptable(data, off, len)) continue; // EINVAL: this packet only
      const copy = Buffer.from(data.subarray(off, off + len));
      if (this.peer !== null) {
        if (!this.peer.inject(copy)) continue; // peer's queue full: dropped on the wire
      } else {
        this.sent.push(copy);
      }
      written++;
      bytes += len;
    }
    this.stats.txPackets += written;
    this.stats.txBytes += bytes;
    this.stats.txDropped += count - written;
    return written;
  }

  onReadable(cb: () => void): void {
    if (this.closed) throw new Error(`${this.kind} ${this.name}: onReadable after close`);
    this.readable = cb;
    this.scheduleWake();
  }

  /** Stops wake-ups without closing; onReadable(cb) starts them again. */
  pause(): void {
    this.readable = null;
    if (this.wakeScheduled) clearImmediate(this.wakeScheduled);
    this.wakeScheduled = null;
  }

  close(): void {
    if (this.closed) return;
    this.pause();
    this.closed = true;
    this.rxQueue.length = 0;
    this.rxHead = 0;
  }

  private acceptable(data: Buffer, off: number, len: number): boolean {
    if (this.kind === 'tap') return len >= ETH_HLEN;
    if (len === 0) return false;
    const version = data[off]! >> 4;
    return version === 4 || version === 6;
  }

  private scheduleWake(): void {
    if (this.readable === null || this.wakeScheduled !== null || this.pending === 0) return;
    this.wakeScheduled = setImmediate(() => {
      this.wakeScheduled = null;
      if (this.readable === null || this.pending === 0) return;
      this.readable();
      // level-triggered, like uv_poll: a callee that left packets is woken again
      this.scheduleWake();
    });
  }
}

/** Two devices joined back to back: what one writes, the other reads. */
export function createMemDevicePair(
  names: [string, string] = ['mem0', 'mem1'],
  opts: MemDeviceOptions = {},
): [MemDevice, MemDevice] {
  const a = new MemDevice(names[0], opts);
  const b = new MemDevice(names[1], opts);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
