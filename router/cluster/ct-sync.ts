/**
 * Conntrack failover for cluster mode (issue 15 item 3, docs/cluster.md
 * "Conntrack failover"), after conntrackd's FT-FW mode:
 *
 *  - the table tells this module of events (table.ts CtEvents: a confirmed
 *    entry's birth, its TCP state changes, ASSURED, its death), never of
 *    packets. A flow is synced once it is ASSURED or TCP ESTABLISHED, and
 *    from then on every event of it is sent, its death included;
 *  - transport is the cluster link (link.ts) with no second connection: this
 *    module attaches to it as the shared state `conntrack` of kind
 *    `conntrack` (enable it with `shared: [..., conntrack]`). A changed flow
 *    is coalesced in the link's dirty set and exported at the next flush
 *    (`flushMs`), batched with everything else, to the KV bucket under
 *    `conntrack.<orig tuple>`: the latest record of a flow wins, a death is
 *    a record with null data (kept until the bucket's retentionS);
 *  - every REFRESH_MS the flows already sent are sent again (coalesced like
 *    any change): a record carries the time its flow had left, and a busy
 *    flow's timeout is refreshed by packets, not by events (conntrackd
 *    refreshes its caches the same way);
 *  - the other gateways keep the records in an "external cache" (bounded by
 *    their conntrack max; a gateway catches up from the bucket when it
 *    starts) and do not touch their table until `commit()` (`xtr cluster
 *    commit`, what keepalived's notify script runs on becoming MASTER, as
 *    with `conntrackd -c`) imports them (table.ts importEntry: confirmed,
 *    TCP marked "be liberal", duplicates and clashes refused).
 */
import type { StateSpec, SharedClock, SharedSink, StateShared } from '../../xt/state.js';
import type { Conntrack, CtEvents, CtExport } from '../conntrack/table.js';
import { ConnStatus } from '../../xt/conn.js';
import type { ClusterLink } from './link.js';

/** The state key and kind the link carries conntrack under. */
export const CT_KEY = 'conntrack';
export const CT_KIND = 'conntrack';

const TCP_ESTABLISHED = 3;
/** Re-send period of synced flows: well under the shortest TCP timeout an established flow gets (300 s with data in flight). */
export const REFRESH_MS = 30_000;

interface Cached {
  readonly data: CtExport;
  readonly from: string;
  /** Wall ms the exporting gateway built the record. */
  readonly at: number;
}

interface WireRecord {
  at: number;
  e: CtExport;
}

export interface CtSyncStatus {
  /** Records sent (births/updates) and deaths sent. */
  readonly exported: number;
  readonly deaths: number;
  /** External cache: flows of other gateways held for a commit. */
  readonly cached: number;
  readonly cacheDropped: number;
  readonly lastCommit: { readonly at: number; readonly imported: number; readonly exists: number; readonly expired: number; readonly refused: number } | null;
}

export class ConntrackSync implements CtEvents {
  private sink: SharedSink<number> | null = null;
  /** gen + 1 of each slot whose flow was published (0 = not published): a death is sent only for those. */
  private published = new Uint32Array(0);
  private readonly cache = new Map<string, Cached>();
  private exported = 0;
  private deaths = 0;
  private cacheDropped = 0;
  private lastCommit: CtSyncStatus['lastCommit'] = null;
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly ct: Conntrack,
    private readonly clock: SharedClock,
  ) {}

  /** Attaches to the link (when `conntrack` is among its shared kinds) and to the table's events. */
  start(link: ClusterLink): boolean {
    if (!link.config.shared.includes(CT_KIND)) return false;
    // The link only reads `shared` of a spec: conntrack is not an extension's state.
    const spec = { shared: this.shared() } as unknown as StateSpec<unknown>;
    link.attach(CT_KEY, spec, this);
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    this.timer.unref();
    return true;
  }

  private shared(): StateShared<ConntrackSync, number> {
    return {
      kind: CT_KIND,
      attach: (_v, sink) => {
        this.sink = sink;
        this.ct.events = sink ? this : null;
      },
      export: (_v, slot) => this.exportSlot(slot),
      apply: (_v, id, data, from) => this.cacheRecord(id, data, from),
    };
  }

  // ---- the active side: table events -> the link

  private qualifies(slot: number): boolean {
    const st = this.ct.store;
    return (st.status[slot] & ConnStatus.ASSURED) !== 0 || (st.proto[slot] === 6 && st.tcpState[slot] === TCP_ESTABLISHED) || this.isPublished(slot);
  }

  private isPublished(slot: number): boolean {
    return slot < this.published.length && this.published[slot] === this.ct.store.gen[slot] + 1;
  }

  changed(slot: number): void {
    if (this.sink !== null && this.qualifies(slot)) this.sink.changed(slot);
  }

  destroyed(slot: number): void {
    if (this.sink === null || !this.isPublished(slot)) return;
    this.published[slot] = 0;
    this.deaths++;
    this.sink.record(flowId(this.ct.store.family[slot], this.ct.store.proto[slot], this.ct.store.addr, this.ct.store.ports, slot), null);
  }

  /** Marks every flow already sent as changed (the periodic refresh; tests call it). */
  refresh(): void {
    const sink = this.sink;
    if (sink === null) return;
    const st = this.ct.store;
    const n = Math.min(this.published.length, st.allocated);
    for (let s = 0; s < n; s++) {
      if (this.published[s] !== 0 && this.published[s] === st.gen[s] + 1 && (st.status[s] & ConnStatus.CONFIRMED) !== 0) sink.changed(s);
    }
  }

  private exportSlot(slot: number): { id: string; data: unknown } | null {
    const st = this.ct.store;
    if ((st.status[slot] & ConnStatus.CONFIRMED) === 0 || !this.qualifies(slot)) return null;
    const e = this.ct.exportEntry(slot, this.clock.now());
    if (e === null) return null;
    if (slot >= this.published.length) {
      const n = new Uint32Array(Math.max(st.allocated, slot + 1));
      n.set(this.published);
      this.published = n;
    }
    this.published[slot] = st.gen[slot] + 1;
    this.exported++;
    const rec: WireRecord = { at: this.clock.wallNow(), e };
    return { id: flowId(st.family[slot], st.proto[slot], st.addr, st.ports, slot), data: rec };
  }

  // ---- the standby side: the link -> the external cache -> commit

  private cacheRecord(id: string, data: unknown, from: string): void {
    if (data === null) {
      this.cache.delete(id);
      return;
    }
    const r = data as WireRecord;
    if (typeof r !== 'object' || typeof r.at !== 'number' || typeof r.e !== 'object' || r.e === null) throw new Error('not a conntrack record');
    if (!this.cache.has(id) && this.cache.size >= this.ct.max) {
      this.cacheDropped++;
      return;
    }
    this.cache.set(id, { data: r.e, from, at: r.at });
  }

  /**
   * Imports the external cache into the table (keepalived notify MASTER:
   * `xtr cluster commit`). Each entry expires what it had left when exported
   * minus the record's age (wall clocks of the gateways: keep them in NTP
   * step); an entry already past that is skipped.
   */
  commit(): { imported: number; exists: number; expired: number; refused: number } {
    const now = this.clock.now();
    const wall = this.clock.wallNow();
    let imported = 0;
    let exists = 0;
    let expired = 0;
    let refused = 0;
    for (const c of this.cache.values()) {
      const left = c.data.x - Math.max(0, wall - c.at);
      if (left <= 0) {
        expired++;
        continue;
      }
      const r = this.ct.importEntry({ ...c.data, x: left }, now);
      if (r === 'ok') imported++;
      else if (r === 'exists') exists++;
      else refused++;
    }
    this.lastCommit = { at: wall, imported, exists, expired, refused };
    return { imported, exists, expired, refused };
  }

  /** The external cache as `conntrack -L`-like lines (xtr cluster conntrack). */
  cacheLines(): string {
    let out = '';
    for (const [id, c] of this.cache) out += `${id} from=${c.from} state=${c.data.ts} left=${Math.round(c.data.x / 1000)}s\n`;
    return out;
  }

  status(): CtSyncStatus {
    return { exported: this.exported, deaths: this.deaths, cached: this.cache.size, cacheDropped: this.cacheDropped, lastCommit: this.lastCommit };
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.ct.events = null;
    this.sink = null;
  }
}

/** The bucket item id of a flow: family, protocol and its original tuple (hex words, ports). */
function flowId(family: number, proto: number, addr: Uint32Array, ports: Int32Array, slot: number): string {
  const o = slot * 16;
  const hex = (i: number) => (addr[o + i] >>> 0).toString(16);
  const words = family === 6 ? [0, 1, 2, 3] : [0];
  const src = words.map(hex).join('_');
  const dst = words.map((i) => hex(4 + i)).join('_');
  const p = ports[2 * slot] >>> 0;
  return `${family}-${proto}-${src}-${dst}-${p >>> 16}-${p & 0xffff}`;
}

/** `xtr cluster commit|conntrack` (the appliance's `cluster` command hands them here). */
export function ctSyncCommand(sync: ConntrackSync | null, args: readonly string[]): { status: number; stdout: string; stderr: string } {
  if (sync === null) return { status: 1, stdout: '', stderr: 'xtr cluster: conntrack is not among cluster.shared (docs/cluster.md "Conntrack failover")\n' };
  if (args[0] === 'commit' && args.length === 1) {
    const r = sync.commit();
    return { status: 0, stdout: `committed: ${r.imported} imported, ${r.exists} already in the table, ${r.expired} expired, ${r.refused} refused\n`, stderr: '' };
  }
  if (args[0] === 'conntrack' && args.length === 1) {
    const s = sync.status();
    return { status: 0, stdout: `external cache: ${s.cached} flows (dropped ${s.cacheDropped}); sent ${s.exported} records, ${s.deaths} deaths\n${sync.cacheLines()}`, stderr: '' };
  }
  return { status: 2, stdout: '', stderr: 'usage: xtr cluster status [--json] | commit | conntrack\n' };
}
