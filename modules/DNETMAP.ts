/**
 * `-j DNETMAP [--prefix net/len] [--reuse] [--ttl s] [--static] [--persistent]`
 * (xtables-addons xt_DNETMAP): dynamic one-to-one bindings of private hosts
 * onto the addresses of a smaller public prefix. In nat POSTROUTING (and
 * OUTPUT) a flow's first packet binds its source to the least recently used
 * address of the prefix and is SNATed to it; in PREROUTING a flow towards a
 * bound public address is DNATed back to its host. The translation itself is
 * conntrack's (services.nat, nf_nat_setup_info): the flow keeps its mapping
 * even after the binding expires.
 *
 * Facts: targets-facts §6. State: one `DNETMAP:bindings` value per rule set
 * (the pre-NAT and post-NAT lookups upstream shares between all prefixes of a
 * namespace) and one value per prefix with its two proc files,
 * `net/xt_DNETMAP/<net>_<len>` and `..._stat`, in upstream's v3 formats and
 * with its write commands. Bindings are saved with the rules and come back
 * after a restart with their TTLs aged by the downtime. Module parameters
 * come from settings.DNETMAP (config `extensions.DNETMAP`): default_ttl,
 * hash_size (checked as upstream does; lookups here are hash maps either way),
 * disable_log, whole_prefix.
 *
 * Choices where upstream's code and its man page differ (docs/compat.md,
 * "DNETMAP"): PREROUTING uses only active (or static) bindings, as the man
 * page says; OUTPUT rewrites the source, as the man page says; a rule
 * without --prefix that would need a new binding continues (upstream
 * crashes). Beyond upstream: IPv6 pools (ip6tables), up to /112.
 */
import { Hook, Verdict, type Family, type PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type CheckEnv, type TargetExtension } from '../xt/extension.js';
import { NatRangeFlag, NatSide, newNatRange } from '../xt/nat.js';
import type { SharedClock, SharedSink, StateShared, StateSpec } from '../xt/state.js';
import { DottedQuad, ipv4FromText, ipv6FromText, maskPrefixLength, prefixMaskWord } from '../dataplane/addr.js';
import { addrToString } from './lib/addresses.js';
import { paramAct } from './lib/param-act.js';
import { strtoumax } from './lib/numbers.js';

export interface DnetmapParams {
  family: Family;
  /** Network address and prefix length; null without --prefix. */
  prefix: { net: number[]; len: number } | null;
  reuse: boolean;
  static: boolean;
  persistent: boolean;
  /** --ttl in seconds (signed 32-bit as upstream stores it); null = default_ttl. */
  ttl: number | null;
}

/** settings.DNETMAP: upstream's module parameters. */
export interface DnetmapSettings {
  readonly defaultTtl: number;
  readonly hashSize: number;
  readonly disableLog: boolean;
  readonly wholePrefix: boolean;
}

/** Largest pool: upstream's /16 (65,536 entries, all made when the prefix is). */
const MAX_ENTRIES_LOG2 = 16;

// ------------------------------------------------------------------ state

type AddrKey = number | string;

/** One address of a prefix: its binding, if any. */
interface Entry {
  readonly prefix: Prefix;
  readonly post: Uint32Array;
  readonly postKey: AddrKey;
  readonly pre: Uint32Array;
  /** null = free (upstream's pre-NAT 0.0.0.0). */
  preKey: AddrKey | null;
  /** Monotonic ms. Active while now < expiry. */
  expiry: number;
  isStatic: boolean;
  /** Issue 15 (cluster): monotonic ms the binding was made (its age decides conflicts). */
  since: number;
  /** The gateway that made the binding; null = this one. */
  owner: string | null;
  /** Monotonic ms of the last cluster record of this entry. */
  sharedAt: number;
}

interface Prefix {
  readonly family: Family;
  readonly net: Uint32Array;
  readonly len: number;
  /** "20.0.0.0/26" as upstream's log lines name it. */
  readonly name: string;
  /** Ascending post-NAT address order (the data file's order). */
  readonly entries: Entry[];
  /** Least recently used first; static entries are not in it. */
  readonly lru: Set<Entry>;
  /** In a "no free addresses" episode (logged once). */
  full: boolean;
  persistent: boolean;
  /**
   * Rules deleted while the prefix was persistent: their state references
   * were kept (the prefix outlives them). The next rule deleted while it is
   * not persistent drops them too, so the prefix goes with the last rule as
   * upstream's refcount does.
   */
  kept: number;
  /** Issue 15: the cluster's sink while the prefix is shared (docs/cluster.md); null = local only. */
  sink: SharedSink<Entry> | null;
}

/** The lookups upstream shares between all prefixes of a namespace. */
interface Bindings {
  readonly fwd: Map<AddrKey, Entry>;
  readonly rev: Map<AddrKey, Entry>;
}

function keyOf(family: Family, a: ArrayLike<number>): AddrKey {
  return family === 4 ? a[0] >>> 0 : `${a[0]}:${a[1]}:${a[2]}:${a[3]}`;
}

function addrText(family: Family, a: Uint32Array): string {
  return addrToString(a, family);
}

/** Everything one rule's packet path and the proc files need. */
class Dnetmap {
  constructor(
    readonly bindings: Bindings,
    readonly settings: DnetmapSettings,
    readonly env: Pick<CheckEnv, 'services'>,
  ) {}

  log(line: string, suppressible: boolean): void {
    if (suppressible && this.settings.disableLog) return;
    this.env.services.log(6, `xt_DNETMAP: ${line}`);
  }

  newPrefix(family: Family, net: Uint32Array, len: number, persistent: boolean, now: number): Prefix {
    const bits = family === 4 ? 32 : 128;
    const size = 2 ** (bits - len);
    const p: Prefix = { family, net, len, name: `${addrText(family, net)}/${len}`, entries: [], lru: new Set(), full: false, persistent, kept: 0, sink: null };
    const first = this.settings.wholePrefix ? 0 : 1;
    const last = this.settings.wholePrefix ? size - 1 : size - 2;
    for (let i = first; i <= last; i++) {
      const post = Uint32Array.from(net);
      // The host part fits in the last word (at most 16 bits).
      post[family === 4 ? 0 : 3] = (post[family === 4 ? 0 : 3] + i) >>> 0;
      const e: Entry = { prefix: p, post, postKey: keyOf(family, post), pre: new Uint32Array(4), preKey: null, expiry: now, isStatic: false, since: now, owner: null, sharedAt: -Infinity };
      p.entries.push(e);
      p.lru.add(e);
    }
    this.log(`new prefix ${p.name}`, false);
    return p;
  }

  /** Unhashes a binding (its LRU place is kept). */
  unbind(e: Entry): void {
    if (e.preKey !== null && this.bindings.fwd.get(e.preKey) === e) this.bindings.fwd.delete(e.preKey);
    if (this.bindings.rev.get(e.postKey) === e) this.bindings.rev.delete(e.postKey);
    e.preKey = null;
    e.pre.fill(0);
  }

  /** A new binding made here (`since` = now; shared) or, with `owner`, one applied from the cluster (not echoed). */
  hash(e: Entry, pre: ArrayLike<number>, now: number, owner: string | null = null, notify = owner === null): void {
    for (let i = 0; i < 4; i++) e.pre[i] = pre[i] ?? 0;
    e.preKey = keyOf(e.prefix.family, e.pre);
    this.bindings.fwd.set(e.preKey, e);
    this.bindings.rev.set(e.postKey, e);
    e.since = now;
    e.owner = owner;
    e.sharedAt = -Infinity;
    if (notify) e.prefix.sink?.changed(e);
  }

  timeout(e: Entry): void {
    this.log(`timeout binding ${addrText(e.prefix.family, e.pre)} -> ${addrText(e.prefix.family, e.post)}`, true);
    this.unbind(e);
  }

  refresh(e: Entry, ttlMs: number, now: number): void {
    if (ttlMs < 0 || e.isStatic) return;
    e.expiry = now + ttlMs;
    e.prefix.lru.delete(e);
    e.prefix.lru.add(e);
    // The new expiry goes to the cluster (at most once a second per binding, see export).
    e.prefix.sink?.changed(e);
  }

  /** A new binding of `src` from P's LRU head, or null when P is full. */
  allocate(p: Prefix, src: ArrayLike<number>, ttlMs: number, now: number): Entry | null {
    const head = p.lru.values().next().value as Entry | undefined;
    if (head === undefined || (head.preKey !== null && now < head.expiry)) {
      if (!p.full) {
        p.full = true;
        this.log(`ip ${addrText(p.family, Uint32Array.from(src))} - no free adresses in prefix ${p.name}`, true);
      }
      return null;
    }
    p.full = false;
    if (head.preKey !== null) this.timeout(head);
    this.hash(head, src, now);
    head.expiry = now + ttlMs;
    p.lru.delete(head);
    p.lru.add(head);
    this.log(`add binding ${addrText(p.family, head.pre)} -> ${addrText(p.family, head.post)}`, true);
    return head;
  }

  contains(p: Prefix, a: ArrayLike<number>): boolean {
    const words = p.family === 4 ? 1 : 4;
    for (let i = 0; i < words; i++) if (((a[i] & prefixMaskWord(p.len, i)) >>> 0) !== p.net[i]) return false;
    return true;
  }

  /** The entry of P for post-NAT address `a` (usable or not), or undefined. */
  entryOf(p: Prefix, a: ArrayLike<number>): Entry | undefined {
    if (!this.contains(p, a)) return undefined;
    const k = keyOf(p.family, a);
    return p.entries.find((e) => e.postKey === k);
  }

  // ------------------------------------------------------------ proc files

  readData(p: Prefix, now: number): string {
    const out: string[] = [];
    const dflt = this.settings.defaultTtl * 1000;
    for (const e of p.entries) {
      const pair = `${addrText(p.family, e.pre)} -> ${addrText(p.family, e.post)}`;
      if (e.isStatic) out.push(`${pair} --- ttl: S lasthit: S\n`);
      else out.push(`${pair} --- ttl: ${Math.trunc((e.expiry - now) / 1000)} lasthit: ${Math.trunc((e.expiry - dflt) / 1000)}\n`);
    }
    return out.join('');
  }

  readStat(p: Prefix, now: number): string {
    let used = 0;
    let statics = 0;
    let sum = 0;
    for (const e of p.entries) {
      if (e.isStatic) statics++;
      else if (e.preKey !== null && e.expiry >= now) {
        used++;
        sum += e.expiry - now;
      }
    }
    const mean = used === 0 ? 0 : Math.trunc(sum / (used * 1000));
    return `${used} ${statics} ${p.entries.length} ${mean} ${p.persistent ? 'persistent' : ''}\n`;
  }

  write(p: Prefix, data: string, now: number): void {
    const nl = data.indexOf('\n');
    // Upstream considers 33 bytes (an IPv4 pair); an IPv6 pair needs more.
    const cmd = (nl < 0 ? data : data.slice(0, nl)).slice(0, p.family === 4 ? 33 : 128);
    const invalid = () => {
      this.log('Error! Invalid option passed via procfs.', false);
      return new XtError(`xt_DNETMAP: Error! Invalid option passed via procfs. (got ${JSON.stringify(cmd)})`, 1, 'EINVAL');
    };
    if (cmd === 'flush') {
      this.log(`flushing prefix ${p.name}`, false);
      for (const e of p.entries) {
        this.unbind(e);
        if (e.isStatic) {
          e.isStatic = false;
          p.lru.add(e);
        }
        e.expiry = now - 1;
      }
      return;
    }
    if (cmd === '+persistent' || cmd === '-persistent') {
      const want = cmd[0] === '+';
      if (p.persistent === want) this.log(`prefix ${p.name} is ${want ? 'persistent' : 'not persistent'} already - doing nothing`, false);
      else this.log(`prefix ${p.name} is now ${want ? 'persistent' : 'non-persistent'}`, false);
      p.persistent = want;
      return;
    }
    if (cmd[0] === '+') {
      const parts = p.family === 4 ? cmd.slice(1).split(':') : splitV6Pair(cmd.slice(1));
      if (parts === null || parts.length !== 2) throw invalid();
      const pre = parseNumeric(p.family, parts[0]);
      const post = parseNumeric(p.family, parts[1]);
      if (pre === null || post === null) throw invalid();
      if (this.contains(p, pre)) {
        this.log("add static binding operation failed - prenat ip can't belong to postnat prefix", false);
        throw invalid();
      }
      const e = this.entryOf(p, post);
      if (e === undefined) {
        this.log('add static binding operation failed - postnat ip must belong to postnat prefix', false);
        throw invalid();
      }
      // Re-adding over a static entry: idempotent (upstream corrupts its list).
      if (e.preKey !== null) this.timeout(e);
      this.hash(e, pre, now);
      e.isStatic = true;
      p.lru.delete(e);
      this.log(`adding static binding ${addrText(p.family, e.pre)}:${addrText(p.family, e.post)}`, false);
      return;
    }
    if (cmd[0] === '-') {
      const a = parseNumeric(p.family, cmd.slice(1));
      if (a === null) throw invalid();
      const k = keyOf(p.family, a);
      const e = this.bindings.rev.get(k) ?? this.bindings.fwd.get(k);
      if (e === undefined) throw invalid();
      this.log(`remove binding ${addrText(p.family, e.pre)} -> ${addrText(p.family, e.post)}`, true);
      if (e.isStatic) {
        e.isStatic = false;
        // Upstream appends it to the LRU of the file written to; an entry
        // lives in its own prefix's LRU here (a list cannot hold another prefix's entry).
        e.prefix.lru.add(e);
      }
      this.unbind(e);
      e.expiry = now - 1;
      return;
    }
    throw invalid();
  }

  // ------------------------------------------------------------ persistence

  save(p: Prefix, now: number): SavedPrefix {
    const entries: SavedEntry[] = [];
    for (const e of p.entries) {
      if (e.preKey === null && !e.isStatic) continue;
      entries.push({ post: addrText(p.family, e.post), pre: e.preKey === null ? null : addrText(p.family, e.pre), left: e.expiry - now, static: e.isStatic, age: now - e.since, owner: e.owner });
    }
    return { persistent: p.persistent, lru: [...p.lru].map((e) => addrText(p.family, e.post)), entries };
  }

  load(p: Prefix, saved: unknown, downtimeMs: number, now: number): void {
    const s = saved as SavedPrefix;
    if (typeof s !== 'object' || s === null || !Array.isArray(s.entries) || !Array.isArray(s.lru)) throw new Error(`DNETMAP ${p.name}: saved state is not a prefix picture`);
    const find = (text: unknown): Entry => {
      const a = typeof text === 'string' ? parseNumeric(p.family, text) : null;
      const e = a === null ? undefined : this.entryOf(p, a);
      if (e === undefined) throw new Error(`DNETMAP ${p.name}: saved address ${JSON.stringify(text)} is not in the prefix`);
      return e;
    };
    p.persistent = s.persistent === true;
    for (const row of s.entries) {
      const e = find(row.post);
      const left = Number(row.left);
      e.expiry = now + (Number.isFinite(left) ? left : 0) - downtimeMs;
      e.isStatic = row.static === true;
      if (row.pre !== null) {
        const pre = parseNumeric(p.family, String(row.pre));
        if (pre === null) throw new Error(`DNETMAP ${p.name}: saved address ${JSON.stringify(row.pre)} is not an address`);
        // Its age is aged like the expiry; the gateway that made it is kept (it decides conflicts).
        const age = Number(row.age);
        this.hash(e, pre, now - (Number.isFinite(age) ? age : 0) - downtimeMs, typeof row.owner === 'string' ? row.owner : null);
      }
    }
    // LRU order as saved (entries not named keep theirs, before them).
    const named = s.lru.map(find);
    for (const e of named) p.lru.delete(e);
    for (const e of p.entries) if (e.isStatic) p.lru.delete(e);
    for (const e of named) if (!e.isStatic) p.lru.add(e);
  }

  release(p: Prefix): void {
    for (const e of p.entries) this.unbind(e);
  }
}

interface SavedEntry {
  post: string;
  pre: string | null;
  /** ms left until expiry when saved (negative: expired). */
  left: number;
  static: boolean;
  /** ms since the binding was made, when saved (issue 15; absent in older pictures). */
  age?: number;
  /** The gateway that made it (null = this one). */
  owner?: string | null;
}

interface SavedPrefix {
  persistent: boolean;
  lru: string[];
  entries: SavedEntry[];
}

function parseNumeric(family: Family, s: string): Uint32Array | null {
  if (family === 4) {
    const a = ipv4FromText(s, DottedQuad.STRICT);
    return a < 0 ? null : Uint32Array.of(a, 0, 0, 0);
  }
  return ipv6FromText(s, DottedQuad.STRICT);
}

/** "+PRE:POST" for IPv6 is written "+[PRE]:[POST]" (colons are the addresses' own). */
function splitV6Pair(s: string): string[] | null {
  const m = /^\[([^\]]+)\]:\[([^\]]+)\]$/.exec(s);
  return m === null ? null : [m[1], m[2]];
}

// ------------------------------------------------------------------ options

function settingsOf(env: CheckEnv): DnetmapSettings {
  const s = (env.settings.DNETMAP ?? {}) as Record<string, unknown>;
  const int = (key: string, dflt: number, min: number, max: number): number => {
    const v = s[key];
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new XtError(`settings.DNETMAP.${key}: ${JSON.stringify(v)}: must be an integer ${min}..${max}`, 1);
    }
    return v;
  };
  const defaultTtl = int('default_ttl', 600, 0, 0x7fffffff);
  let hashSize = int('hash_size', 256, 0, 0x7fffffff);
  if (hashSize === 0 || (hashSize & (hashSize - 1)) !== 0) {
    // Upstream's load-time words; the lookups here are hash maps, the size only checked.
    env.services.log(4, 'xt_DNETMAP: bad hash_size parameter value - using defaults');
    hashSize = 256;
  }
  return { defaultTtl, hashSize, disableLog: int('disable_log', 0, 0, 1) === 1, wholePrefix: int('whole_prefix', 1, 0, 1) === 1 };
}

/** libxt_DNETMAP's parse_prefix, its words; IPv6 (xtr only) the same way with /112 as the largest pool. */
function parsePrefix(family: Family, arg: string): { net: number[]; len: number } {
  const bits = family === 4 ? 32 : 128;
  const minLen = bits - MAX_ENTRIES_LOG2;
  const slash = arg.indexOf('/');
  const addrPart = slash < 0 ? arg : arg.slice(0, slash);
  const addr = parseNumeric(family, addrPart);
  if (addr === null) throw new XtError(`Bad IP address "${addrPart}"\n`);
  let len = bits;
  if (slash >= 0) {
    const m = arg.slice(slash + 1);
    const bad = () => new XtError(`Bad netmask "${m}"\n`);
    if (family === 4 && m.includes('.')) {
      const mask = ipv4FromText(m, DottedQuad.LEADING_ZEROS);
      if (mask < 0) throw bad();
      const l = maskPrefixLength([mask], 1);
      // Upstream reads an uninitialised length for dotted masks; a non-contiguous mask counts its leading ones.
      len = l >= 0 ? l : Math.clz32(~mask >>> 0);
      if (mask === 0) throw new XtError('Netmask needed\n');
    } else {
      const n = strtoumax(m, 0, 0);
      if (m === '' || n.end !== m.length || n.minus || n.overflow || n.value > BigInt(bits)) throw bad();
      len = Number(n.value);
      if (len === 0) throw new XtError('Netmask needed\n');
    }
    if (len < minLen) throw new XtError(`Max netmask size is /${minLen}\n`);
  }
  const net: number[] = [0, 0, 0, 0];
  for (let i = 0; i < (family === 4 ? 1 : 4); i++) {
    const mw = prefixMaskWord(len, i);
    if ((addr[i] & ~mw) >>> 0 !== 0) throw new XtError(`Bad network address "${arg}"\n`);
    net[i] = addr[i];
  }
  return { net, len };
}

/** strtol(s, &end, 10) then the int32 store: the value and whether the whole word was a number. */
function strtolTtl(s: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?)([0-9]*)/.exec(s)!;
  if (m[2] === '') return 0;
  let v = BigInt(m[2]);
  if (m[1] === '-') v = -v;
  const LONG_MAX = (1n << 63n) - 1n;
  if (v > LONG_MAX) v = LONG_MAX;
  if (v < -LONG_MAX - 1n) v = -LONG_MAX - 1n;
  return Number(BigInt.asIntN(32, v));
}

function prefixText(p: DnetmapParams): string {
  return p.prefix === null ? '' : `${addrToString(Uint32Array.from(p.prefix.net), p.family)}/${p.prefix.len}`;
}

function saveText(p: DnetmapParams): string {
  let s = '';
  if (p.prefix !== null) s += ` --prefix ${prefixText(p)}`;
  if (p.reuse) s += ' --reuse';
  if (p.static) s += ' --static';
  if (p.persistent) s += ' --persistent';
  if (p.ttl !== null) s += ` --ttl ${p.ttl}`;
  return s;
}

const DNETMAP: TargetExtension<DnetmapParams> = {
  kind: 'target',
  name: 'DNETMAP',
  families: [4, 6],
  tables: ['nat'],
  hooks: [Hook.PREROUTING, Hook.POSTROUTING, Hook.OUTPUT],
  options: [
    { name: 'prefix', arg: 'required', invertible: true },
    { name: 'reuse', arg: 'none', invertible: true },
    { name: 'ttl', arg: 'required', invertible: true },
    { name: 'static', arg: 'none', invertible: true },
    { name: 'persistent', arg: 'none', invertible: true },
  ],
  needsConntrack: () => true,
  parse(opts, rule) {
    const p: DnetmapParams = { family: rule.family, prefix: null, reuse: false, static: false, persistent: false, ttl: null };
    paramAct('DNETMAP', opts, {}, (name, value) => {
      if (name === 'prefix') p.prefix = parsePrefix(rule.family, value);
      else if (name === 'reuse') p.reuse = true;
      else if (name === 'static') p.static = true;
      else if (name === 'persistent') p.persistent = true;
      // Trailing junk: libxt_DNETMAP's parse reports failure, which iptables 1.8 ignores (the number read stays).
      else if (name === 'ttl') p.ttl = strtolTtl(value);
    });
    return p;
  },
  check(p, env) {
    const settings = settingsOf(env);
    const bindingsSpec: StateSpec<Bindings> = {
      key: `DNETMAP:bindings/${p.family}`,
      create: () => ({ fwd: new Map(), rev: new Map() }),
    };
    const bindings = env.state.declare(bindingsSpec);
    const dn = new Dnetmap(bindings, settings, env);
    const services = env.services;
    let prefix: Prefix | null = null;
    const held: string[] = [bindingsSpec.key];
    if (p.prefix !== null) {
      const net = Uint32Array.from(p.prefix.net);
      const len = p.prefix.len;
      const file = `${addrToString(net, p.family)}_${len}`;
      const dataSpec: StateSpec<Prefix> = {
        key: `DNETMAP:${file}`,
        create: () => dn.newPrefix(p.family, net, len, p.persistent, services.now()),
        release: (v) => dn.release(v),
        limit: { max: 2 ** ((p.family === 4 ? 32 : 128) - len), eviction: 'least recently used expired binding', count: (v) => countBound(v) },
        proc: {
          path: `net/xt_DNETMAP/${file}`,
          read: (v) => dn.readData(v, services.now()),
          write: (v, data) => dn.write(v, data, services.now()),
        },
        save: (v, now) => dn.save(v, now),
        load: (v, saved, downtime, now) => dn.load(v, saved, downtime, now),
        shared: sharedDnetmap(dn),
      };
      const pfx = env.state.declare(dataSpec);
      prefix = pfx;
      held.push(dataSpec.key);
      const statSpec: StateSpec<Prefix> = {
        key: `DNETMAP:${file}_stat`,
        create: () => pfx,
        proc: { path: `net/xt_DNETMAP/${file}_stat`, read: (v) => dn.readStat(v, services.now()) },
      };
      env.state.declare(statSpec);
      held.push(statSpec.key);
    }
    const defaultTtlMs = settings.defaultTtl * 1000;
    const ttlMs = p.ttl === null ? defaultTtlMs : p.ttl * 1000;
    const range = newNatRange();
    range.flags = NatRangeFlag.MAP_IPS;
    const family = p.family;
    const words = family === 4 ? 1 : 4;
    const scratch = new Uint32Array(4);

    const apply = (pkt: PacketContext, side: NatSide, to: Uint32Array): number => {
      const nat = services.nat;
      if (nat === undefined) return Verdict.DROP;
      for (let i = 0; i < 4; i++) range.minAddr[i] = range.maxAddr[i] = i < words ? to[i] : 0;
      return nat.setup(pkt, side, range);
    };

    return {
      target(pkt: PacketContext): number {
        const now = pkt.now;
        if (pkt.hook === Hook.PREROUTING) {
          const e = bindings.rev.get(family === 4 ? pkt.dst4 >>> 0 : keyOf(6, pkt.dst6));
          if (e === undefined || (prefix !== null && e.prefix !== prefix)) return XT_CONTINUE;
          // The man page: only bound (active or static) addresses are DNATed.
          if (!e.isStatic && !(now < e.expiry)) return XT_CONTINUE;
          dn.refresh(e, ttlMs, now);
          return apply(pkt, NatSide.DST, e.pre);
        }
        // POSTROUTING and OUTPUT: the source is mapped (OUTPUT as the man page says, see compat).
        if (family === 4) scratch[0] = pkt.src4;
        else scratch.set(pkt.src6);
        let e = bindings.fwd.get(keyOf(family, scratch));
        if (e !== undefined && !p.reuse && !e.isStatic && !(now < e.expiry) && e.prefix !== prefix) {
          dn.timeout(e);
          e = undefined;
          if (prefix === null) return XT_CONTINUE;
          const got = dn.allocate(prefix, scratch, ttlMs, now);
          if (got === null) return XT_CONTINUE;
          return apply(pkt, NatSide.SRC, got.post);
        }
        if (e === undefined) {
          if (p.static || prefix === null) return XT_CONTINUE;
          const got = dn.allocate(prefix, scratch, ttlMs, now);
          if (got === null) return XT_CONTINUE;
          return apply(pkt, NatSide.SRC, got.post);
        }
        dn.refresh(e, ttlMs, now);
        return apply(pkt, NatSide.SRC, e.post);
      },
      destroy() {
        // A persistent prefix outlives its last rule: its references stay taken.
        if (prefix !== null && prefix.persistent) {
          prefix.kept++;
          return;
        }
        const times = 1 + (prefix?.kept ?? 0);
        if (prefix !== null) prefix.kept = 0;
        for (let n = 0; n < times; n++) for (let i = held.length - 1; i >= 0; i--) env.state.release(held[i]);
      },
    };
  },
  save: saveText,
  print: (p) => ` -j DNETMAP${saveText(p)}`,
};

// ------------------------------------------------------------------ cluster (issue 15)

/** A binding's record: pre-NAT address, wall ms it was made and expires, the gateway that made it. */
interface DnetmapRecord {
  pre: string;
  since: number;
  until: number;
  by: string;
}

/** A binding's expiry refreshed by traffic is re-sent at most this often. */
export const DNETMAP_REEXPORT_MS = 1000;

/**
 * Cluster sharing (docs/cluster.md "DNETMAP"): one record per post-NAT
 * address of the prefix with its active dynamic binding. Conflict rule: of
 * two active bindings that claim the same post-NAT address (for different
 * hosts) or the same host (on different addresses), the EARLIER one (`since`)
 * wins, ties by the lower gateway id; the loser is unbound (its flows keep
 * their conntrack mapping). The same binding merges: the later expiry. Static
 * bindings (proc writes) are local and win over records; removals and
 * flushes through the proc file are local.
 */
function sharedDnetmap(dn: Dnetmap): StateShared<Prefix, Entry> {
  const wallOf = (mono: number, clock: SharedClock) => Math.round(clock.wallNow() - (clock.now() - mono));
  const monoOf = (wall: number, clock: SharedClock) => clock.now() - (clock.wallNow() - wall);
  /** Whether binding (sinceA, byA) was made before (sinceB, byB): wall ms, ties by gateway id. */
  const earlier = (sinceA: number, byA: string, sinceB: number, byB: string) => sinceA < sinceB || (sinceA === sinceB && byA < byB);
  let self = '';
  return {
    kind: 'dnetmap',
    attach(p, sink) {
      p.sink = sink;
      if (sink?.gateway !== undefined) self = sink.gateway;
    },
    export(p, e, clock) {
      const now = clock.now();
      if (e.preKey === null || e.isStatic || !(now < e.expiry)) return null;
      if (now - e.sharedAt < DNETMAP_REEXPORT_MS) return undefined;
      e.sharedAt = now;
      const data: DnetmapRecord = { pre: addrText(p.family, e.pre), since: wallOf(e.since, clock), until: wallOf(e.expiry, clock), by: e.owner ?? self };
      return { id: addrText(p.family, e.post), data };
    },
    apply(p, id, data, _from, clock) {
      const r = data as DnetmapRecord;
      const post = parseNumeric(p.family, id);
      const e = post === null ? undefined : dn.entryOf(p, post);
      const pre = typeof r === 'object' && r !== null && typeof r.pre === 'string' ? parseNumeric(p.family, r.pre) : null;
      if (e === undefined || pre === null || dn.contains(p, pre) || !Number.isFinite(r.since) || !Number.isFinite(r.until) || typeof r.by !== 'string') {
        throw new XtError(`DNETMAP ${p.name}: bad cluster record for ${JSON.stringify(id)}`, 1);
      }
      const now = clock.now();
      const until = monoOf(r.until, clock);
      if (!(now < until) || e.isStatic) return;
      const preKey = keyOf(p.family, pre);
      const active = (x: Entry) => x.isStatic || (x.preKey !== null && now < x.expiry);
      const wins = (x: Entry) => x.isStatic || earlier(wallOf(x.since, clock), x.owner ?? self, r.since, r.by);
      if (e.preKey === preKey) {
        // The same binding: the later expiry; the earlier making (and its gateway) is kept.
        if (until > e.expiry) e.expiry = until;
        if (!wins(e)) {
          e.since = monoOf(r.since, clock);
          e.owner = r.by === self ? null : r.by;
        }
        p.lru.delete(e);
        p.lru.add(e);
        return;
      }
      const other = dn.bindings.fwd.get(preKey);
      for (const x of [e, other]) if (x !== undefined && x.preKey !== null && active(x) && wins(x)) return;
      for (const x of [e, other]) {
        if (x === undefined || x.preKey === null) continue;
        if (active(x)) dn.log(`cluster: binding ${addrText(x.prefix.family, x.pre)} -> ${addrText(x.prefix.family, x.post)} yields to ${r.pre} -> ${id} of ${r.by} (earlier)`, true);
        dn.unbind(x);
      }
      // Not echoed (a binding of our own coming back from the bucket is not re-sent either).
      dn.hash(e, pre, monoOf(r.since, clock), r.by === self ? null : r.by, false);
      e.expiry = until;
      p.lru.delete(e);
      p.lru.add(e);
    },
  };
}

function countBound(p: Prefix): number {
  let n = 0;
  for (const e of p.entries) if (e.preKey !== null) n++;
  return n;
}

export default DNETMAP;
