/**
 * Queue workers (issue 14 item 4; docs/design.md "Queue workers"): one native
 * thread per queue of IFF_MULTI_QUEUE TUN/TAP devices does the devices' reads
 * and writes; the JS thread runs the pipeline on each batch a worker reads.
 *
 * Worker k reads queue k of every device into region k of the router's
 * buffer and hands what it read to `onBatch(k)` on the JS thread (count()
 * and first() say where each device's packets are), then waits. During onBatch, write() of any device in the group records the
 * packets for worker k (deferWrites: offsets only, the bytes stay where they
 * are) instead of writing them; when onBatch returns, worker k writes them
 * through its queues and reads on. The kernel picks a queue by flow hash and
 * remembers which queue last wrote a flow (tun_flow_update), so both
 * directions of a flow settle on one worker; which worker it is does not
 * matter for correctness, since every batch meets the same pipeline state.
 *
 * Device counters: reads are counted before onBatch; writes after it, by the
 * worker (txStats); fold() adds what the workers counted since the last fold
 * to each device's stats (the router calls it before reporting, and stop()).
 */
import { constants as osConstants } from 'node:os';
import { HEADROOM } from './device.js';
import { errnoError, loadTunAddon, type TunDevice } from './tun.js';

/** Per worker and device in txStats (dataplane/native/workers.c TX_STATS). */
const TX_STATS = 8;
/** txStats' first six figures, in order: the device counters they add to. */
const TX_COUNTERS = ['txPackets', 'txBytes', 'txDropped', 'txGsoWrites', 'txGsoPackets', 'txSuperWrites'] as const;
const EAGAIN = osConstants.errno.EAGAIN;

/** A worker's part of the buffer: its read slots (and, after them, the router's scratch for its batches). */
export interface WorkerRegion {
  base: number;
  capacity: number;
  slotSize: number;
  offsets: Uint32Array;
  lengths: Uint32Array;
  gso: Uint32Array;
}

export class QueueWorkers {
  /** The worker whose batch is being processed, or -1. */
  current = -1;
  /** Hand-overs per worker (`xtr status`). */
  readonly batches: number[] = [];
  private handle: object | null = null;
  private readonly readInfo: Float64Array;
  /** Per worker and device: [packets in the batch handed over, index of the first]. */
  private readonly counts: Int32Array;
  private readonly txStats: Float64Array;
  private readonly folded: Float64Array;
  private readonly native = loadTunAddon();

  /**
   * `devices[d].queueFds[k]` is worker k's queue of device d; every device has one queue per region.
   * `onBatch(k)` processes what worker k read: count(k, d) packets of device d from index first(k, d)
   * of regions[k]'s arrays (their offsets are absolute in data).
   */
  constructor(
    readonly devices: readonly TunDevice[],
    readonly regions: readonly WorkerRegion[],
    readonly data: Buffer,
    private readonly onBatch: (worker: number) => void,
  ) {
    for (const d of devices) {
      if (d.queueFds.length !== regions.length) throw new Error(`queue workers: device ${d.name} has ${d.queueFds.length} queues for ${regions.length} workers`);
    }
    this.readInfo = new Float64Array(regions.length * devices.length * 5);
    this.counts = new Int32Array(regions.length * devices.length * 2);
    this.txStats = new Float64Array(regions.length * devices.length * TX_STATS);
    this.folded = new Float64Array(this.txStats.length);
    for (let k = 0; k < regions.length; k++) this.batches.push(0);
  }

  start(): void {
    if (this.handle) return;
    this.handle = this.native.workersStart({
      data: this.data,
      headroom: HEADROOM,
      devices: this.devices.map((d) => ({ fds: [...d.queueFds], ...d.queueIo, uring: d.offloads.uring })),
      regions: this.regions.map((r) => ({ ...r })),
      counts: this.counts,
      readInfo: this.readInfo,
      txStats: this.txStats,
      onBatch: (k: number) => this.batch(k),
    });
    // during a worker's batch a device's writes go to that worker; otherwise (timers, the host
    // side, out-of-batch work) the device writes them itself, through queue 0
    this.devices.forEach((dev, d) => {
      dev.deferWrites = (data, offsets, lengths, count, gso) =>
        this.current < 0 || data !== this.data ? -1 : this.native.workersWrite(this.handle!, this.current, d, offsets, lengths, count, gso);
    });
  }

  /** Writes what the current worker holds now, from this thread (before the router reuses scratch space). */
  flushCurrent(): void {
    if (this.handle && this.current >= 0) this.native.workersFlush(this.handle, this.current);
  }

  /** Stops and joins the worker threads (idempotent); the devices write for themselves again. */
  stop(): void {
    if (!this.handle) return;
    this.native.workersStop(this.handle);
    this.handle = null;
    this.current = -1;
    for (const d of this.devices) d.deferWrites = null;
    this.fold();
  }

  /** Adds what the workers wrote since the last fold to the devices' counters. */
  fold(): void {
    const nd = this.devices.length;
    const tx = this.txStats;
    const folded = this.folded;
    for (let k = 0; k < this.regions.length; k++) {
      for (let d = 0; d < nd; d++) {
        const at = (k * nd + d) * TX_STATS;
        const dev = this.devices[d];
        for (let i = 0; i < TX_COUNTERS.length; i++) {
          dev.stats[TX_COUNTERS[i]] += tx[at + i] - folded[at + i];
          folded[at + i] = tx[at + i];
        }
        if (tx[at + 6] === 1) dev.offloads.uring = false;
        const err = tx[at + 7];
        if (err !== folded[at + 7]) {
          folded[at + 7] = err;
          if (err !== 0 && err !== EAGAIN) dev.lastError = errnoError('write', -err, dev.name);
        }
      }
    }
  }

  /** Packets of device d in worker k's batch (during onBatch). */
  count(k: number, d: number): number {
    return this.counts[(k * this.devices.length + d) * 2];
  }

  /** Index of the first of them in the region's offsets/lengths/gso. */
  first(k: number, d: number): number {
    return this.counts[(k * this.devices.length + d) * 2 + 1];
  }

  private batch(k: number): void {
    const nd = this.devices.length;
    for (let d = 0; d < nd; d++) {
      const n = this.count(k, d);
      const dev = this.devices[d];
      const s = dev.stats;
      const at = (k * nd + d) * 5;
      const info = this.readInfo;
      if (n < 0) {
        // the device is gone: the worker no longer polls this queue
        s.rxErrors++;
        dev.lastError = errnoError('read', n, dev.name);
        continue;
      }
      s.rxPackets += n;
      s.rxBytes += info[at];
      s.rxErrors += info[at + 1];
      s.rxSuperPackets += info[at + 3];
      if (info[at + 4] === 1) dev.offloads.uring = false;
    }
    this.batches[k]++;
    this.current = k;
    try {
      this.onBatch(k);
    } finally {
      this.current = -1;
    }
  }
}
