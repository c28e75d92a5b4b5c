/**
 * The router's status as the control socket and `xtr status` show it:
 * per-interface device counters, drops by reason, neighbour entries, the
 * routing table and ICMP error counts. Built on demand (allocates freely; not
 * on the packet path).
 */
import { DROP_COUNT, DROP_NAMES, type RouterInterface } from './interfaces.js';
import { NUD_STATE_NAMES } from './neighbor.js';
import { formatIPv4, formatIPv6, formatPrefix, type RouteTable4, type RouteTable6 } from './routing.js';

export interface InterfaceStatusEntry {
  name: string;
  index: number;
  kind: 'tun' | 'tap' | 'host';
  mtu: number;
  mac: string | null;
  addresses: string[];
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  txDropped: number;
  drops: Record<string, number>;
  neighbors?: { address: string; mac: string | null; state: string; queued: number }[];
}

export interface RouterStatus {
  uptimeSeconds: number;
  running: boolean;
  interfaces: InterfaceStatusEntry[];
  /** Drops by reason over all interfaces and xtr's own packets. */
  drops: Record<string, number>;
  routes: { to: string; via: string | null; dev: string; kind: 'local' | 'connected' | 'gateway' }[];
  icmpErrorsSent: number;
  icmpRateLimited: number;
  /** Reads that returned packets, by size bucket: "1", "2-3", "4-7", ... (empty buckets left out). */
  readBatches: Record<string, number>;
  /** Queue workers (config `workers` > 1): the links they serve and the hand-overs of each. */
  workers?: { links: string[]; handovers: number[] };
}

/** What status is read from (the Router). */
export interface StatusSource {
  readonly interfaces: readonly RouterInterface[];
  readonly routes4: RouteTable4;
  readonly routes6: RouteTable6;
  /** Drops of packets not from any interface (xtr's own). */
  readonly localDrops: Float64Array;
  readonly icmpErrorsSent: number;
  readonly icmpRateLimited: number;
  readonly readBatches: Float64Array;
  readonly workerStatus?: { links: string[]; handovers: number[] } | null;
}

export function routerStatus(r: StatusSource, running: boolean, uptimeSeconds: number): RouterStatus {
  const totals = new Float64Array(DROP_COUNT);
  const interfaces: InterfaceStatusEntry[] = [];
  for (let i = 1; i < r.interfaces.length; i++) {
    const ri = r.interfaces[i];
    for (let k = 0; k < DROP_COUNT; k++) totals[k] += ri.drops[k];
    const s = ri.device.stats;
    const entry: InterfaceStatusEntry = {
      name: ri.name,
      index: ri.index,
      kind: ri.kind,
      mtu: ri.mtu,
      mac: ri.config?.mac ?? null,
      addresses: ri.config ? [...ri.config.addresses] : [],
      rxPackets: s.rxPackets,
      rxBytes: s.rxBytes,
      txPackets: s.txPackets,
      txBytes: s.txBytes,
      txDropped: s.txDropped,
      drops: ri.dropsByName(),
    };
    if (ri.neighbors) {
      entry.neighbors = ri.neighbors.list().map((e) => ({
        address: e.family === 4 ? formatIPv4(e.address[0]) : formatIPv6(e.address),
        mac: e.mac >= 0 ? macText(e.mac) : null,
        state: NUD_STATE_NAMES[e.state],
        queued: e.queued,
      }));
    }
    interfaces.push(entry);
  }
  for (let k = 0; k < DROP_COUNT; k++) totals[k] += r.localDrops[k];
  const drops: Record<string, number> = {};
  for (let k = 1; k < DROP_COUNT; k++) if (totals[k] && DROP_NAMES[k]) drops[DROP_NAMES[k]] = totals[k];
  const routes: RouterStatus['routes'] = [];
  const kinds = ['local', 'connected', 'gateway'] as const;
  for (const t of [r.routes4, r.routes6]) {
    for (const rt of t.list()) {
      const gw = rt.gateway;
      routes.push({
        to: formatPrefix(rt.prefix),
        via: gw === undefined ? null : typeof gw === 'number' ? formatIPv4(gw) : formatIPv6(gw),
        dev: r.interfaces[rt.ifIndex]?.name ?? '?',
        kind: kinds[rt.kind],
      });
    }
  }
  return {
    uptimeSeconds,
    running,
    interfaces,
    drops,
    routes,
    icmpErrorsSent: r.icmpErrorsSent,
    icmpRateLimited: r.icmpRateLimited,
    readBatches: batchBuckets(r.readBatches),
    ...(r.workerStatus ? { workers: r.workerStatus } : {}),
  };
}

/** Router.readBatches as labelled buckets ("1", "2-3", "4-7", ...), empty ones left out. */
export function batchBuckets(counts: Float64Array): Record<string, number> {
  const out: Record<string, number> = {};
  for (let k = 0; k < counts.length; k++) {
    if (counts[k] === 0) continue;
    out[k === 0 ? '1' : `${2 ** k}-${2 ** (k + 1) - 1}`] = counts[k];
  }
  return out;
}

function macText(mac: number): string {
  const out: string[] = [];
  for (let i = 5; i >= 0; i--) out.push((Math.floor(mac / 2 ** (8 * i)) & 0xff).toString(16).padStart(2, '0'));
  return out.join(':');
}
