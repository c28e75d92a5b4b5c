/**
 * The `offloads` section of the router config (issue 14): one switch per
 * TUN offload, applied to every TUN interface (docs/design.md "Offloads").
 *
 *   offloads: { csum: true, tso: true, uso: false, gro: true, uring: true }
 *
 * csum/tso/uso are asked of the kernel with TUNSETOFFLOAD at open and each
 * is kept only if this kernel takes it (`xtr status` shows what is in
 * force); gro is xtr's own TCP coalescing of writes; uring batches each
 * device's reads and writes through io_uring (one system call per batch,
 * kept only where io_uring works and the device runs them inline). `false`
 * for all is the plain one-packet, one-syscall path of earlier versions.
 */
import type { OffloadRequest, TunOffloads } from '../dataplane/tun.js';

export interface OffloadsConfig extends Required<OffloadRequest> {}

/** Defaults: what passed test/offload-tcp.test.ts on this platform (see docs/design.md). */
export const DEFAULT_OFFLOADS: OffloadsConfig = { csum: true, tso: true, uso: false, gro: true, uring: true };

const KEYS = ['csum', 'tso', 'uso', 'gro', 'uring'] as const;

export class OffloadsConfigError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

export function validateOffloads(v: unknown): OffloadsConfig {
  if (v === undefined) return { ...DEFAULT_OFFLOADS };
  if (v === false) return { csum: false, tso: false, uso: false, gro: false, uring: false };
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new OffloadsConfigError('offloads', `${JSON.stringify(v)} must be a mapping of ${KEYS.join('/')} to true or false (or false for none)`);
  }
  const out: OffloadsConfig = { ...DEFAULT_OFFLOADS };
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    const key = KEYS.find((name) => name === k);
    if (key === undefined) throw new OffloadsConfigError(`offloads.${k}`, `unknown key (expected ${KEYS.join(', ')})`);
    if (typeof val !== 'boolean') throw new OffloadsConfigError(`offloads.${k}`, `${JSON.stringify(val)} must be true or false`);
    out[key] = val;
  }
  if ((out.tso || out.uso) && !out.csum) {
    throw new OffloadsConfigError('offloads', 'tso and uso need csum: the kernel takes segmentation offloads only with checksum offload');
  }
  return out;
}

/** The flags of TunOffloads, in the order `xtr status` and /metrics show them. */
export const OFFLOAD_FLAGS = ['csum', 'tso4', 'tso6', 'uso', 'gsoWrites', 'gro', 'uring'] as const;

/** What `xtr status` and /metrics show per interface: the offloads in force and their counters. */
export interface OffloadStatus extends TunOffloads {
  rxSuperPackets: number;
  txSuperWrites: number;
  /** GSO writes from coalesced runs (UDP and TCP) and the packets they carried. */
  txGsoWrites: number;
  txGsoPackets: number;
}

interface OffloadingDevice {
  offloads: Omit<OffloadStatus, 'rxSuperPackets' | 'txSuperWrites' | 'txGsoWrites' | 'txGsoPackets'>;
  stats: { rxSuperPackets: number; txSuperWrites: number; txGsoWrites: number; txGsoPackets: number };
}

export function offloadStatus(dev: object | null | undefined): OffloadStatus | undefined {
  if (!dev || !('offloads' in dev) || !('stats' in dev)) return undefined;
  const d = dev as OffloadingDevice;
  const o = d.offloads;
  const s = d.stats;
  return {
    csum: o.csum,
    tso4: o.tso4,
    tso6: o.tso6,
    uso: o.uso,
    gsoWrites: o.gsoWrites,
    gro: o.gro,
    uring: o.uring,
    rxSuperPackets: s.rxSuperPackets ?? 0,
    txSuperWrites: s.txSuperWrites ?? 0,
    txGsoWrites: s.txGsoWrites ?? 0,
    txGsoPackets: s.txGsoPackets ?? 0,
  };
}

/** One word list for the status table: the offloads in force, or "none". */
export function formatOffloads(o: OffloadStatus | undefined): string {
  if (!o) return '-';
  const on = OFFLOAD_FLAGS.filter((k) => o[k]).map((k) => (k === 'gsoWrites' ? 'gso-tx' : k));
  return on.length ? on.join(',') : 'none';
}
