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
import type { Conn } from '../xt/conn.js';
import type { PacketContext } from '../xt/packet.js';
import { SCRATCH_HEADROOM } from './interfaces.js';

/** What recycling the arena must do first: write out everything queued for transmission. */
export interface TxFlusher {
  flushAll(): void;
}

export const PENDING_MAX = 256;

/** How a pending packet was emitted (RouterServices.emit / dup); 0 = as the local stack would send it. */
export const enum PendingFlag {
  /** Carries the conntrack entry of the packet it answers (nf_ct_attach): RELATED, not looked up again. */
  ATTACHED = 1,
  /** Untracked: conntrack skips it. */
  UNTRACKED = 2,
  /** A clone (TEE): no hook at all, never cloned again. */
  DUPLICATE = 4,
  /** Sent to pendingGw as its next hop, which must be on-link. */
  GATEWAY = 8,
  /** Leaves by the interface pendingOif. */
  OIF = 16,
  /** Starts with nfmark pendingMark. */
  MARK = 32,
}

export class ScratchArena {
  /** First and one-past-last byte of the arena in `buf` (moved by rebase). */
  start: number;
  end: number;
  /** Next free byte (an allocation goes SCRATCH_HEADROOM after it). */
  pos: number;
  /** True while a batch (or out-of-batch work) is being processed: the packet in ctx may live in the arena. */
  inBatch = false;

  readonly pendingOff = new Uint32Array(PENDING_MAX);
  readonly pendingLen = new Uint32Array(PENDING_MAX);
  /** Per pending packet: PendingFlag bits, nfmark, interface index, gateway (4 words, IPv4 in the first), entry. */
  readonly pendingFlags = new Uint8Array(PENDING_MAX);
  readonly pendingMark = new Uint32Array(PENDING_MAX);
  readonly pendingOif = new Uint32Array(PENDING_MAX);
  readonly pendingGw = new Uint32Array(PENDING_MAX * 4);
  readonly pendingCt: (Conn | null)[] = new Array<Conn | null>(PENDING_MAX).fill(null);
  /** For ATTACHED: whether the emitted packet travels in its flow's reply direction. */
  readonly pendingCtReply = new Uint8Array(PENDING_MAX);
  pendingHead = 0;
  pendingCount = 0;

  /** Set once by the router (the egress side owns the transmit queues). */
  tx: TxFlusher | null = null;

  constructor(
    readonly buf: Buffer,
    start: number,
    private readonly ctx: PacketContext,
    end = buf.length,
  ) {
    this.start = start;
    this.end = end;
    this.pos = start;
  }

  /**
   * Moves the arena to buf[start, end) - another queue worker's region (router/forward.ts) - between
   * batches, when nothing in it is referenced.
   */
  rebase(start: number, end: number): void {
    this.start = start;
    this.end = end;
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
    // a packet of the router's own buffer (a clone) is moved within it: set() of the same buffer may copy it first
    if (bytes === this.buf) this.buf.copyWithin(p, off, off + len);
    else this.buf.set(bytes.subarray(off, off + len), p);
    this.pos = p + len;
    return p;
  }

  /**
   * Queues the packet at buf[off, off+len) for the OUTPUT path, with no
   * emit options (the caller may set them in the returned slot). Returns
   * the slot, or -1 when the queue is full.
   */
  pushPending(off: number, len: number): number {
    if (this.pendingCount === PENDING_MAX) return -1;
    const i = this.pendingCount++;
    this.pendingOff[i] = off;
    this.pendingLen[i] = len;
    this.pendingFlags[i] = 0;
    this.pendingMark[i] = 0;
    this.pendingCt[i] = null;
    return i;
  }

  /** Forgets every pending packet (after an internal error). */
  clearPending(): void {
    for (let i = this.pendingHead; i < this.pendingCount; i++) this.pendingCt[i] = null;
    this.pendingHead = 0;
    this.pendingCount = 0;
  }

  /** End of a batch: nothing in the arena is referenced any more. */
  reset(): void {
    this.pos = this.start;
  }
}
