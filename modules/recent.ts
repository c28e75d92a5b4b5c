/**
 * `-m recent` (revision 1): named tables of recently seen addresses with a
 * ring of timestamps per address, as mainline xt_recent + libxt_recent.
 * See ../shared/spec/matches-facts.md §15 and docs/compat.md "## recent".
 *
 * Model choices (kernel defaults differ where noted in docs/compat.md):
 *  - table size `ip_list_tot` (default 200) comes from `settings.recent` and
 *    is read when a table is created;
 *  - the timestamp ring: with `ip_pkt_list_tot` not configured (or 0) it is
 *    sized as newer kernels do, per table, from the rules' `--hitcount`: 32
 *    stamps (this machine's kernel without --hitcount), or the next power of
 *    two >= the largest hitcount of the rules using the table; a rule needing
 *    a larger ring empties the table and enlarges it when its rule set goes
 *    live (hitcount up to 65535, as the kernel here). Configured explicitly it
 *    is that fixed size, and a larger `--hitcount` is refused as older kernels
 *    refuse it;
 *  - time is kept in jiffies with HZ = RECENT_HZ (1000), counted from
 *    INITIAL_JIFFIES like Linux so procfs values look like the kernel's;
 *  - a table is declared state (xt/state.ts, key "recent:NAME"): the first
 *    rule creates it (its --mask is the table's mask); the engine registers
 *    its proc view net/xt_recent/NAME, reports its bound (ip_list_tot, LRU
 *    eviction), saves it with the rules and loads it after a restart (stamps
 *    aged by the downtime); the last rule to go removes it. An atomic reload
 *    that keeps the name keeps the contents.
 *
 * The per-packet path allocates nothing except when a new address is
 * inserted (entries evicted or removed are recycled).
 */
import type { Family, PacketContext } from '../xt/packet.js';
import { ipv4ToString } from '../dataplane/addr.js';
import { XtError, type CheckEnv, type MatchExtension } from '../xt/extension.js';
import type { SharedClock, SharedSink, StateShared, StateSpec } from '../xt/state.js';
import { addrToString, parseAddr } from './lib/addresses.js';
import { parseUint } from './lib/numbers.js';
import { x6Check } from './lib/options.js';

export const RECENT_HZ = 1000;
/** Linux starts jiffies 5 minutes before the 32-bit wrap so wrap bugs show early. */
export const INITIAL_JIFFIES = 2 ** 32 - 300 * RECENT_HZ;
export const DEFAULT_IP_LIST_TOT = 200;
/**
 * The ring a table starts with when `ip_pkt_list_tot` is not configured: 32,
 * measured on this machine's kernel (a --set rule, 40 packets, 32 stamps in
 * /proc/net/xt_recent/NAME).
 */
export const DEFAULT_IP_PKT_LIST_TOT = 32;
/** The largest `--hitcount` (the kernel's XT_RECENT_MAX_NSTAMPS - 1 on this machine's 6.x). */
export const MAX_HITCOUNT = 65535;
const NAME_LEN = 200;

export function jiffiesAt(nowMs: number): number {
  return INITIAL_JIFFIES + Math.floor((nowMs * RECENT_HZ) / 1000);
}

const enum Cmd {
  CHECK = 1 << 0,
  SET = 1 << 1,
  UPDATE = 1 << 2,
  REMOVE = 1 << 3,
  TTL = 1 << 4,
  REAP = 1 << 5,
}

/** One remembered address (the kernel's recent_entry). */
export class RecentEntry {
  family: Family = 4;
  readonly addr = new Uint32Array(4);
  ttl = 0;
  /** 1-based slot of the newest stamp (the kernel's `index`; procfs "oldest_pkt"). */
  index = 0;
  nstamps = 0;
  readonly stamps: Float64Array;
  /** LRU neighbours: `older` towards the head (least recently updated). */
  older: RecentEntry | null = null;
  newer: RecentEntry | null = null;
  bucket = 0;
  /** Issue 15: monotonic ms this entry was last exported to the cluster (-Infinity = not since it was inserted). */
  sharedAt = -Infinity;
  constructor(ring: number) {
    this.stamps = new Float64Array(ring);
  }
}

/** A named table (the kernel's recent_table). */
export class RecentTable {
  readonly mask = new Uint32Array(4);
  readonly buckets: RecentEntry[][];
  private readonly hashBits: number;
  count = 0;
  /** LRU list: head = least recently updated. */
  head: RecentEntry | null = null;
  tail: RecentEntry | null = null;
  private free: RecentEntry[] = [];
  /** Stamps per entry (ip_pkt_list_tot, or the size the rules' --hitcount asked for). */
  private ring: number;
  /** Issue 15: the cluster's sink while the table is shared (docs/cluster.md); null = local only. */
  sink: SharedSink<RecentEntry> | null = null;

  constructor(
    readonly name: string,
    mask: Uint32Array,
    /** ip_list_tot: entries before the LRU head is evicted. */
    readonly maxEntries: number,
    ringSize: number,
    /** True when the ring follows the rules' --hitcount (ip_pkt_list_tot not configured). */
    readonly automaticRing = false,
  ) {
    this.ring = ringSize;
    this.mask.set(mask);
    // The kernel sizes its hash as 1 << fls(ip_list_tot).
    let bits = 0;
    while (maxEntries >> bits) bits++;
    this.hashBits = bits;
    this.buckets = Array.from({ length: 1 << bits }, () => []);
  }

  private hash(family: Family, a: Uint32Array): number {
    let h = family === 4 ? Math.imul(a[0] ^ 0x5bd1e995, 0x9e3779b1) : Math.imul(a[0] ^ Math.imul(a[1] ^ Math.imul(a[2] ^ Math.imul(a[3], 0x85ebca6b), 0xc2b2ae35), 0x27d4eb2f), 0x9e3779b1);
    h ^= h >>> 16;
    return (h >>> 0) & ((1 << this.hashBits) - 1);
  }

  /** Entry for (family, addr) whose ttl fits (`ttl` 0 = any). */
  lookup(family: Family, a: Uint32Array, ttl: number): RecentEntry | null {
    const b = this.buckets[this.hash(family, a)];
    for (let i = 0; i < b.length; i++) {
      const e = b[i];
      if (e.family !== family || e.addr[0] !== a[0]) continue;
      if (family === 6 && (e.addr[1] !== a[1] || e.addr[2] !== a[2] || e.addr[3] !== a[3])) continue;
      if (ttl === e.ttl || ttl === 0 || e.ttl === 0) return e;
    }
    return null;
  }

  get ringSize(): number {
    return this.ring;
  }

  /**
   * A rule needs `ring` stamps per entry: as the kernel does, a larger ring
   * empties the table (entries of the old size are not kept) and is used
   * from then on; a smaller one changes nothing.
   */
  ensureRing(ring: number): void {
    if (ring <= this.ring) return;
    this.flush();
    this.free = [];
    this.ring = ring;
  }

  /** recent_entry_init: evicts the LRU head when full; one stamp = now. */
  insert(family: Family, a: Uint32Array, ttl: number, jiffies: number): RecentEntry {
    if (this.count >= this.maxEntries && this.head !== null) this.remove(this.head);
    const e = this.free.pop() ?? new RecentEntry(this.ringSize);
    e.family = family;
    e.addr.set(a);
    if (family === 4) e.addr.fill(0, 1);
    e.ttl = ttl;
    e.stamps[0] = jiffies;
    e.nstamps = 1;
    e.index = 1;
    e.sharedAt = -Infinity;
    e.bucket = this.hash(family, e.addr);
    this.buckets[e.bucket].push(e);
    e.older = this.tail;
    e.newer = null;
    if (this.tail) this.tail.newer = e;
    else this.head = e;
    this.tail = e;
    this.count++;
    return e;
  }

  /** recent_entry_update: next ring slot = now, and to the LRU tail. */
  update(e: RecentEntry, jiffies: number): void {
    e.index %= this.ringSize;
    e.stamps[e.index++] = jiffies;
    if (e.index > e.nstamps) e.nstamps = e.index;
    this.touch(e);
  }

  /** Moves `e` to the LRU tail (most recently updated). */
  touch(e: RecentEntry): void {
    if (this.tail === e) return;
    if (e.older) e.older.newer = e.newer;
    else this.head = e.newer;
    e.newer!.older = e.older;
    e.older = this.tail;
    e.newer = null;
    this.tail!.newer = e;
    this.tail = e;
  }

  remove(e: RecentEntry): void {
    const b = this.buckets[e.bucket];
    b.splice(b.indexOf(e), 1);
    if (e.older) e.older.newer = e.newer;
    else this.head = e.newer;
    if (e.newer) e.newer.older = e.older;
    else this.tail = e.older;
    e.older = e.newer = null;
    this.count--;
    this.free.push(e);
  }

  flush(): void {
    while (this.head !== null) this.remove(this.head);
  }

  /** The procfs read: one line per entry in hash-bucket order, insertion order within a bucket. */
  read(): string {
    let s = '';
    for (const b of this.buckets) {
      for (const e of b) {
        const newest = e.stamps[(e.index - 1) % this.ringSize];
        s += `src=${formatProcAddr(e.family, e.addr)} ttl: ${e.ttl} last_seen: ${newest} oldest_pkt: ${e.index}`;
        for (let i = 0; i < e.nstamps; i++) s += `${i ? ',' : ''} ${e.stamps[i]}`;
        s += '\n';
      }
    }
    return s;
  }

  /**
   * The procfs write: `+ADDR` adds (or refreshes), `-ADDR` removes, `/`
   * flushes; anything else is refused. Only the first 41 bytes count and an
   * address may end at a newline, as in the kernel. Not masked, ttl 0.
   */
  write(data: string, jiffies: number): void {
    const buf = Buffer.from(data).subarray(0, 41).toString('latin1');
    if (buf.length === 0) return;
    const c = buf[0];
    if (c === '/') {
      this.flush();
      return;
    }
    if (c !== '+' && c !== '-') throw new XtError(`xt_recent: Need "+ip", "-ip" or "/" (got ${JSON.stringify(data)})`, 1);
    let text = buf.slice(1);
    const nl = text.indexOf('\n');
    if (nl >= 0) text = text.slice(0, nl);
    const family: Family = text.includes(':') ? 6 : 4;
    const a = parseAddr(text, family);
    if (a === null) throw new XtError(`xt_recent: illegal address written to procfs: ${JSON.stringify(text)}`, 1);
    const e = this.lookup(family, a, 0);
    if (e === null) {
      if (c === '+') {
        // Not `this.sink?.changed(this.insert(...))`: optional chaining skips the argument too, so without a cluster nothing was inserted.
        const added = this.insert(family, a, 0, jiffies);
        this.sink?.changed(added);
      }
    } else if (c === '+') {
      this.update(e, jiffies);
      this.sink?.changed(e);
    } else this.removeShared(e, jiffies);
  }

  /** A removal by a rule or the proc file: shared as a record now (the entry is recycled before the flush). */
  removeShared(e: RecentEntry, jiffies: number): void {
    const clock = this.sink?.clock;
    if (this.sink !== null && clock) this.sink.record(addrToString(e.addr, e.family), { rm: Math.round(wallOf(jiffies, jiffiesAt(clock.now()), clock)) });
    this.remove(e);
  }

  /** The entry at the LRU head is deleted if its newest stamp is older than `time` (one per call). */
  reap(time: number, working: RecentEntry): void {
    const e = this.head;
    if (e === null || e === working) return;
    if (time > e.stamps[(e.index - 1) % this.ringSize]) this.remove(e);
  }
}

/** %pI4 / %pI6: IPv6 uncompressed, eight 4-digit lower-case groups. */
function formatProcAddr(family: Family, a: Uint32Array): string {
  if (family === 4) return ipv4ToString(a[0]);
  const g: string[] = [];
  for (let i = 0; i < 4; i++) g.push((a[i] >>> 16).toString(16).padStart(4, '0'), (a[i] & 0xffff).toString(16).padStart(4, '0'));
  return g.join(':');
}

// ---- persistence across restarts (run by the engine through the table's StateSpec) ----

export interface RecentEntrySnapshot {
  family: Family;
  addr: string;
  ttl: number;
  index: number;
  /** Stamp ages in milliseconds before the save, in ring storage order. */
  ages: number[];
}
/** What a table saves: its ring and its entries with stamps as ages, so the downtime can age them. */
export interface RecentTableSnapshot {
  name: string;
  /** Stamps per entry when saved. */
  ring?: number;
  /** Entries from LRU head (oldest) to tail. */
  entries: RecentEntrySnapshot[];
}

function snapshotTable(t: RecentTable, jiffiesNow: number): RecentTableSnapshot {
  const entries: RecentEntrySnapshot[] = [];
  for (let e = t.head; e !== null; e = e.newer) {
    entries.push({
      family: e.family,
      addr: addrToString(e.addr, e.family),
      ttl: e.ttl,
      index: e.index,
      ages: Array.from(e.stamps.subarray(0, e.nstamps), (s) => ((jiffiesNow - s) * 1000) / RECENT_HZ),
    });
  }
  return { name: t.name, ring: t.ringSize, entries };
}

/** The saved picture of table `name`, checked before anything changes; throws XtError naming what is wrong. */
function checkSnapshot(saved: unknown, name: string): RecentTableSnapshot {
  const bad = (why: string) => new XtError(`xt_recent: ${name}: saved state ${why}`, 1);
  if (typeof saved !== 'object' || saved === null || !Array.isArray((saved as RecentTableSnapshot).entries)) throw bad('is not a recent table snapshot');
  const snap = saved as RecentTableSnapshot;
  snap.entries.forEach((e, i) => {
    const ok =
      typeof e === 'object' && e !== null && (e.family === 4 || e.family === 6) && typeof e.addr === 'string' && parseAddr(e.addr, e.family) !== null &&
      Number.isInteger(e.ttl) && Number.isInteger(e.index) && Array.isArray(e.ages) && e.ages.every((a) => typeof a === 'number' && Number.isFinite(a));
    if (!ok) throw bad(`entry ${i}: not {family, addr, ttl, index, ages}`);
  });
  return snap;
}

function applySnapshot(t: RecentTable, snap: RecentTableSnapshot, jiffiesNow: number, downtimeMs: number): void {
  t.flush();
  // The saved ring was sized for rules that used the table: take it over, so that those rules
  // coming back find it big enough and do not empty the table again.
  if (t.automaticRing && typeof snap.ring === 'number' && Number.isInteger(snap.ring) && snap.ring <= MAX_HITCOUNT + 1) t.ensureRing(snap.ring);
  for (const s of snap.entries) {
    const a = parseAddr(s.addr, s.family);
    if (a === null || s.ages.length === 0) continue;
    const e = t.insert(s.family, a, s.ttl & 0xff, 0);
    // Keep the newest min(ring, n) stamps if the ring size changed.
    const ages = s.ages.slice(0, t.ringSize);
    e.nstamps = ages.length;
    for (let i = 0; i < ages.length; i++) e.stamps[i] = jiffiesNow - Math.round(((ages[i] + downtimeMs) * RECENT_HZ) / 1000);
    e.index = Math.min(Math.max(1, s.index), ages.length);
  }
}

/**
 * The declared state of table `name`: created by the first rule naming it
 * (with that rule's mask and the ring it needs), bounded by ip_list_tot.
 */
function tableSpec(p: RecentParams, listTot: number, ring: number, automaticRing: boolean, env: CheckEnv): StateSpec<RecentTable> {
  return {
    key: `recent:${p.name}`,
    create: () => new RecentTable(p.name, p.mask, listTot, ring, automaticRing),
    limit: { max: listTot, eviction: 'least recently updated entry (LRU head)', count: (t) => t.count },
    proc: {
      path: `net/xt_recent/${p.name}`,
      read: (t) => t.read(),
      write: (t, data) => t.write(data, jiffiesAt(env.services.now())),
    },
    save: (t, now) => snapshotTable(t, jiffiesAt(now)),
    load: (t, saved, downtimeMs, now) => applySnapshot(t, checkSnapshot(saved, p.name), jiffiesAt(now), downtimeMs),
    shared: sharedRecent,
  };
}

// ---- cluster sharing (issue 15, docs/cluster.md "recent") ----

/**
 * A record per address: its stamps as wall-clock ms (oldest first) and ttl, or
 * `rm` (wall ms) for a removal. Conflict rule: the union of both gateways'
 * stamps, newest `ring` kept (two stamps within STAMP_SAME_MS are one: a
 * gateway's own stamps come back inside the others' records); a removal wins
 * over an entry whose newest stamp is not later than the removal.
 */
export interface RecentRecord {
  ttl?: number;
  stamps?: number[];
  rm?: number;
}
const STAMP_SAME_MS = 2;
/**
 * A new address is exported at the next flush; an address already exported is
 * re-exported (with its newer stamps) at most this often, so a source that
 * updates its entry on every packet costs one record a second, not one per
 * flush. Its last stamps still go out: the entry stays dirty until exported.
 */
export const RECENT_REEXPORT_MS = 1000;

function wallOf(jiffies: number, jiffiesNow: number, clock: SharedClock): number {
  return clock.wallNow() - ((jiffiesNow - jiffies) * 1000) / RECENT_HZ;
}

function jiffiesOfWall(wall: number, jiffiesNow: number, clock: SharedClock): number {
  return jiffiesNow - Math.round(((clock.wallNow() - wall) * RECENT_HZ) / 1000);
}

const sharedRecent: StateShared<RecentTable, RecentEntry> = {
  kind: 'recent',
  attach(t, sink) {
    t.sink = sink;
  },
  export(t, e, clock) {
    // The entry may have been removed (and recycled for another address) since it changed.
    if (t.lookup(e.family, e.addr, 0) !== e || e.nstamps === 0) return null;
    const now = clock.now();
    if (now - e.sharedAt < RECENT_REEXPORT_MS) return undefined;
    e.sharedAt = now;
    const jnow = jiffiesAt(now);
    // wall = offset + jiffies (HZ 1000: one jiffy is one ms).
    const offset = clock.wallNow() - jnow;
    const stamps: number[] = [];
    const ring = t.ringSize;
    // Oldest first: the ring from the slot after the newest.
    for (let k = 0; k < e.nstamps; k++) {
      const slot = e.nstamps < ring ? k : (e.index + k) % ring;
      stamps.push(Math.round(offset + e.stamps[slot]));
    }
    return { id: addrToString(e.addr, e.family), data: { ttl: e.ttl, stamps } satisfies RecentRecord };
  },
  apply(t, id, data, _from, clock) {
    const family: Family = id.includes(':') ? 6 : 4;
    const a = parseAddr(id, family);
    const r = data as RecentRecord;
    if (a === null || typeof r !== 'object' || r === null) throw new XtError(`recent: ${t.name}: bad record for ${JSON.stringify(id)}`, 1);
    const jnow = jiffiesAt(clock.now());
    const e = t.lookup(family, a, 0);
    if (typeof r.rm === 'number') {
      if (e === null) return;
      const newest = e.stamps[(e.index - 1) % t.ringSize];
      if (newest <= jiffiesOfWall(r.rm, jnow, clock)) t.remove(e);
      return;
    }
    if (!Array.isArray(r.stamps) || r.stamps.length === 0 || !r.stamps.every((x) => typeof x === 'number' && Number.isFinite(x))) {
      throw new XtError(`recent: ${t.name}: record for ${id} has no stamps`, 1);
    }
    const incoming = r.stamps.map((w) => jiffiesOfWall(w, jnow, clock));
    const ttl = typeof r.ttl === 'number' ? r.ttl & 0xff : 0;
    const merged: number[] = [];
    if (e !== null) for (let i = 0; i < e.nstamps; i++) merged.push(e.stamps[i]);
    for (const s of incoming) if (!merged.some((m) => Math.abs(m - s) <= STAMP_SAME_MS)) merged.push(s);
    merged.sort((x, y) => x - y);
    const keep = merged.slice(-t.ringSize);
    const entry = e ?? t.insert(family, a, ttl, keep[0]);
    // Oldest first into slots 0..n-1: the newest is slot n-1 (index n), as if updated in order.
    for (let i = 0; i < keep.length; i++) entry.stamps[i] = keep[i];
    entry.nstamps = keep.length;
    entry.index = keep.length;
    t.touch(entry);
  },
};

// ---- the match ----

export interface RecentParams {
  family: Family;
  name: string;
  /** Command bits (Cmd). */
  checkSet: number;
  invert: boolean;
  seconds: number;
  hitCount: number;
  rdest: boolean;
  mask: Uint32Array;
}

const COMMANDS = ['set', 'rcheck', 'update', 'remove'];
const CMD_BITS: Record<string, number> = { set: Cmd.SET, rcheck: Cmd.CHECK, update: Cmd.UPDATE, remove: Cmd.REMOVE };

/** `ip_pkt_list_tot` null = not configured (or 0): the ring follows the rules' --hitcount. */
function settingsOf(env: CheckEnv): { listTot: number; pktListTot: number | null } {
  const s = (env.settings.recent ?? {}) as { ip_list_tot?: unknown; ip_pkt_list_tot?: unknown };
  const listTot = s.ip_list_tot ?? DEFAULT_IP_LIST_TOT;
  const pktListTot = s.ip_pkt_list_tot ?? 0;
  if (typeof listTot !== 'number' || !Number.isInteger(listTot) || listTot < 1 || listTot > 1 << 20) {
    throw new XtError(`settings.recent.ip_list_tot: ${JSON.stringify(listTot)}: must be an integer 1..${1 << 20}`, 1);
  }
  if (typeof pktListTot !== 'number' || !Number.isInteger(pktListTot) || pktListTot < 0 || pktListTot > 255) {
    throw new XtError(`settings.recent.ip_pkt_list_tot: ${JSON.stringify(pktListTot)}: must be an integer 1..255 (0 or absent: sized by --hitcount)`, 1);
  }
  return { listTot, pktListTot: pktListTot === 0 ? null : pktListTot };
}

/** The ring a rule with this --hitcount needs when the ring is automatic. */
function ringFor(hitCount: number): number {
  if (hitCount <= DEFAULT_IP_PKT_LIST_TOT) return DEFAULT_IP_PKT_LIST_TOT;
  let ring = 1;
  while (ring < hitCount) ring *= 2;
  return ring;
}

function maskText(p: RecentParams): string {
  return p.family === 4 ? ipv4ToString(p.mask[0]) : addrToString(p.mask, 6);
}


const recent: MatchExtension<RecentParams> = {
  kind: 'match',
  name: 'recent',
  revision: 1,
  families: [4, 6],
  options: [
    { name: 'seconds', arg: 'required' },
    { name: 'reap', arg: 'none' },
    { name: 'hitcount', arg: 'required' },
    { name: 'set', arg: 'none', invertible: true },
    { name: 'rcheck', arg: 'none', invertible: true },
    { name: 'update', arg: 'none', invertible: true },
    { name: 'remove', arg: 'none', invertible: true },
    { name: 'rttl', arg: 'none' },
    { name: 'name', arg: 'required' },
    { name: 'rsource', arg: 'none' },
    { name: 'rdest', arg: 'none' },
    { name: 'mask', arg: 'required' },
  ],
  parse(opts, rule) {
    const others = (n: string) => COMMANDS.filter((c) => c !== n);
    x6Check('recent', opts, [
      { name: 'seconds' },
      { name: 'reap', also: ['seconds'] },
      { name: 'hitcount' },
      { name: 'set', excl: others('set') },
      { name: 'rcheck', excl: others('rcheck') },
      { name: 'update', excl: others('update') },
      { name: 'remove', excl: others('remove') },
      { name: 'rttl', excl: ['set', 'remove'] },
      { name: 'name' },
      { name: 'rsource', multi: true },
      { name: 'rdest', multi: true },
      { name: 'mask' },
    ]);
    const p: RecentParams = {
      family: rule.family,
      name: 'DEFAULT',
      checkSet: 0,
      invert: false,
      seconds: 0,
      hitCount: 0,
      rdest: false,
      mask: new Uint32Array([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff]),
    };
    for (const o of opts) {
      const v = o.value ?? '';
      if (CMD_BITS[o.name] !== undefined) {
        p.checkSet |= CMD_BITS[o.name];
        p.invert = o.inverted;
      } else if (o.name === 'seconds' || o.name === 'hitcount') {
        const n = parseUint(v);
        const min = o.name === 'seconds' ? 1 : 0;
        if (n < min) throw new XtError(`recent: bad value for option "--${o.name}", or out of range (${min}-4294967295).\n`);
        if (o.name === 'seconds') p.seconds = n;
        else p.hitCount = n;
      } else if (o.name === 'reap') p.checkSet |= Cmd.REAP;
      else if (o.name === 'rttl') p.checkSet |= Cmd.TTL;
      else if (o.name === 'name') p.name = Buffer.from(v).subarray(0, NAME_LEN - 1).toString();
      else if (o.name === 'rsource') p.rdest = false;
      else if (o.name === 'rdest') p.rdest = true;
      else if (o.name === 'mask') {
        const m = parseAddr(v, rule.family);
        if (!m) throw new XtError(`host/network \`${v}' not found`);
        p.mask = m;
      }
    }
    if ((p.checkSet & (Cmd.SET | Cmd.CHECK | Cmd.UPDATE | Cmd.REMOVE)) === 0) {
      throw new XtError("recent: you must specify one of `--set', `--rcheck' `--update' or `--remove'");
    }
    return p;
  },
  check(p, env) {
    // Refusals are EINVAL in the kernel; the message is what xtr puts in place of dmesg.
    const einval = (why: string) => new XtError(`xt_recent: ${why}`, 1);
    const { listTot, pktListTot } = settingsOf(env);
    const cmds = p.checkSet & (Cmd.SET | Cmd.CHECK | Cmd.UPDATE | Cmd.REMOVE);
    // The kernel's recent_mt_check, in its order.
    if (cmds !== Cmd.SET && cmds !== Cmd.CHECK && cmds !== Cmd.UPDATE && cmds !== Cmd.REMOVE) throw einval('exactly one of --set, --rcheck, --update, --remove is needed');
    if ((cmds === Cmd.SET || cmds === Cmd.REMOVE) && (p.seconds || p.hitCount || (p.checkSet & (Cmd.REAP | Cmd.TTL)))) {
      throw einval('--set and --remove take no --seconds, --hitcount, --rttl or --reap');
    }
    if ((p.checkSet & Cmd.REAP) && !p.seconds) throw einval('--reap needs --seconds');
    // A configured ring is fixed, as in older kernels; else the ring grows to fit, up to the newer kernels' limit.
    if (pktListTot !== null && p.hitCount > pktListTot) throw einval(`hitcount (${p.hitCount}) is larger than packets to be remembered (${pktListTot})`);
    if (pktListTot === null && p.hitCount > MAX_HITCOUNT) throw einval(`hitcount (${p.hitCount}) is larger than allowed maximum (${MAX_HITCOUNT})`);
    if (p.name === '' || p.name === '.' || p.name === '..' || p.name.includes('/')) throw einval(`invalid table name ${JSON.stringify(p.name)}`);
    const ring = pktListTot ?? ringFor(p.hitCount);

    const spec = tableSpec(p, listTot, ring, pktListTot === null, env);
    const table = env.state.declare(spec);

    const family = p.family;
    const checkSet = p.checkSet;
    const invert = p.invert;
    const windowJiffies = p.seconds * RECENT_HZ;
    const hitCount = p.hitCount;
    const rdest = p.rdest;
    const useTtl = (checkSet & Cmd.TTL) !== 0;
    const addr = new Uint32Array(4);
    const tmask = table.mask;
    let released = false;
    return {
      // Enlarging the ring empties the table: only once the rule set is live (not for a dry run or a refused change).
      activate() {
        table.ensureRing(ring);
      },
      match(pkt: PacketContext): boolean {
        if (family === 4) {
          addr[0] = ((rdest ? pkt.dst4 : pkt.src4) & tmask[0]) >>> 0;
          addr[1] = addr[2] = addr[3] = 0;
        } else {
          const w = rdest ? pkt.dst6 : pkt.src6;
          addr[0] = (w[0] & tmask[0]) >>> 0;
          addr[1] = (w[1] & tmask[1]) >>> 0;
          addr[2] = (w[2] & tmask[2]) >>> 0;
          addr[3] = (w[3] & tmask[3]) >>> 0;
        }
        // The TTL as received: a forwarded packet was already decremented.
        let ttl = pkt.ttl;
        if (pkt.outIf !== null && !pkt.locallyGenerated) ttl = (ttl + 1) & 0xff;
        const now = jiffiesAt(pkt.now);
        let ret = invert;
        const e = table.lookup(family, addr, useTtl ? ttl : 0);
        if (e === null) {
          if ((checkSet & Cmd.SET) === 0) return ret;
          const added = table.insert(family, addr, ttl, now);
          if (table.sink !== null) table.sink.changed(added);
          return !ret;
        }
        if (checkSet & Cmd.SET) ret = !ret;
        else if (checkSet & Cmd.REMOVE) {
          table.removeShared(e, now);
          return !ret;
        } else {
          const time = now - windowJiffies;
          let hits = 0;
          const stamps = e.stamps;
          for (let i = 0; i < e.nstamps; i++) {
            if (windowJiffies !== 0 && time > stamps[i]) continue;
            if (hitCount === 0 || ++hits >= hitCount) {
              ret = !ret;
              break;
            }
          }
          if (checkSet & Cmd.REAP) table.reap(time, e);
        }
        if ((checkSet & Cmd.SET) !== 0 || ((checkSet & Cmd.UPDATE) !== 0 && ret)) {
          // --reap may have removed nothing but the head; `e` itself is never reaped.
          table.update(e, now);
          e.ttl = ttl;
          if (table.sink !== null) table.sink.changed(e);
        }
        return ret;
      },
      destroy() {
        if (released) return;
        released = true;
        env.state.release(spec.key);
      },
    };
  },
  save(p) {
    let s = p.invert ? ' !' : '';
    if (p.checkSet & Cmd.SET) s += ' --set';
    if (p.checkSet & Cmd.CHECK) s += ' --rcheck';
    if (p.checkSet & Cmd.UPDATE) s += ' --update';
    if (p.checkSet & Cmd.REMOVE) s += ' --remove';
    if (p.seconds) s += ` --seconds ${p.seconds}`;
    if (p.checkSet & Cmd.REAP) s += ' --reap';
    if (p.hitCount) s += ` --hitcount ${p.hitCount}`;
    if (p.checkSet & Cmd.TTL) s += ' --rttl';
    s += ` --name ${p.name}`;
    s += ` --mask ${maskText(p)}`;
    s += p.rdest ? ' --rdest' : ' --rsource';
    return s;
  },
  print(p) {
    let s = p.invert ? ' !' : '';
    s += ' recent:';
    if (p.checkSet & Cmd.SET) s += ' SET';
    if (p.checkSet & Cmd.CHECK) s += ' CHECK';
    if (p.checkSet & Cmd.UPDATE) s += ' UPDATE';
    if (p.checkSet & Cmd.REMOVE) s += ' REMOVE';
    if (p.seconds) s += ` seconds: ${p.seconds}`;
    if (p.checkSet & Cmd.REAP) s += ' reap';
    if (p.hitCount) s += ` hit_count: ${p.hitCount}`;
    if (p.checkSet & Cmd.TTL) s += ' TTL-Match';
    s += ` name: ${p.name}`;
    s += p.rdest ? ' side: dest' : ' side: source';
    s += ` mask: ${maskText(p)}`;
    return s;
  },
};

export default recent;
