/**
 * The scratch arena and the pending queue: where the router puts packets it
 * builds (ICMP errors, fragments, neighbour messages, packets extensions
 * emit) and the queue of those that still have to run through the OUTPUT
 * path.
 *
 * The arena is the tail of the router's one buffer, after the read slots. It
 * is a bump allocator reset after every batch; when it fills up mid-batch it
 * is recycled after flushing the transmit queues, unless a packet still to be
 * processed lives in it (a pending one, or the packet in the pipeline).
 *
 * Pending packets are kept as offsets into the arena plus what they were
 * emitted with, and run in FIFO order right after the packet that caused them.
 */
import type { PacketContext } from '../xt/packet.js';
import { SCRATCH_HEADROOM } from './interfaces.js';

/** What recycling the arena must do first: write out everything queued for transmission. */
export interface TxFlusher {
  flushAll(): void;
}

export const PENDING_MAX = 256;

export class ScratchArena {
  /** First and one-past-last byte of the arena in `buf`. */
  readonly start: number;
  readonly end: number;
  /** Next free byte (an allocation goes SCRATCH_HEADROOM after it). */
  pos: number;
  /** True while a batch (or out-of-batch work) is being processed: the packet in ctx may live in the arena. */
  inBatch = false;

  readonly pendingOff = new Uint32Array(PENDING_MAX);
  readonly pendingLen = new Uint32Array(PENDING_MAX);
  pendingHead = 0;
  pendingCount = 0;

  /** Set once by the router (the egress side owns the transmit queues). */
  tx: TxFlusher | null = null;

  constructor(
    readonly buf: Buffer,
    start: number,
    private readonly ctx: PacketContext,
  ) {
    this.start = start;
    this.end = buf.length;
    this.pos = start;
  }

  /**
   * Offset in the arena where `len` bytes (plus SCRATCH_HEADROOM in front)
   * fit, or -1. The caller advances `pos` past what it actually wrote.
   */
  alloc(len: number): number {
    let p = this.pos + SCRATCH_HEADROOM;
    if (p + len <= this.end) return p;
    if (this.pendingCount !== 0 || (this.inBatch && this.ctx.l3off >= this.start)) return -1;
    this.tx!.flushAll();
    this.pos = this.start;
    p = this.start + SCRATCH_HEADROOM;
    return p + len <= this.end ? p : -1;
  }

  /** Copies bytes into the arena; returns their offset or -1 when there is no room. */
  copyIn(bytes: Uint8Array, off: number, len: number): number {
    const p = this.alloc(len);
    if (p < 0) return -1;
    this.buf.set(bytes.subarray(off, off + len), p);
    this.pos = p + len;
    return p;
  }

  /** Queues the packet at buf[off, off+len) for the OUTPUT path; false when the queue is full. */
  pushPending(off: number, len: number): boolean {
    if (this.pendingCount === PENDING_MAX) return false;
    this.pendingOff[this.pendingCount] = off;
    this.pendingLen[this.pendingCount] = len;
    this.pendingCount++;
    return true;
  }

  /** Forgets every pending packet (after an internal error). */
  clearPending(): void {
    this.pendingHead = 0;
    this.pendingCount = 0;
  }

  /** End of a batch: nothing in the arena is referenced any more. */
  reset(): void {
    this.pos = this.start;
  }
}
