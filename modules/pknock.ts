/**
 * `-m pknock`: port knocking, xtables-addons' xt_pknock (revision 1) - a
 * per-source state machine opened by a TCP/UDP port sequence or by one UDP
 * packet carrying an HMAC (single packet authorisation, SPA), queried by a
 * `--checkip` rule. See ../shared/spec/matches-facts.md §14, docs/knocking.md
 * and docs/compat.md "## pknock".
 *
 * The rule object is per `--name`, shared by every rule naming it (the knock
 * rule and its --checkip rule), declared state "pknock:NAME": its peer table,
 * the timing values of the first rule that created it (a later rule with
 * --opensecret takes them over, as upstream), the SPA replay cache. The
 * engine shows it as `xtr proc cat net/xt_pknock/NAME` in upstream's line
 * format, saves it with the rules (ages kept across the downtime) and runs
 * the GC as the state tick.
 *
 * Where xtr goes beyond upstream (the man page's promise or the issue):
 *  - IPv4 and IPv6 (upstream: IPv4 only); the SPA message for IPv6 is the
 *    16-byte source address followed by the minute, as for IPv4;
 *  - SPA minutes are wall-clock epoch minutes (services.wallNow), never the
 *    boot-time clock of upstream 3.15-3.27, with an optional ±N-minute skew
 *    window (settings.pknock.spa_window, default 0 = upstream's exact minute)
 *    and a replay cache: an SPA payload (open or close) is accepted once;
 *  - `--time` applies to the final knock too (upstream skips the gap check on
 *    it, so a too-slow sequence still opened until its 65 s GC ran; the man
 *    page says "max time between knocks");
 *  - the peer table is bounded (settings.pknock.max_peers): a new source
 *    evicts the least recently advanced peer that has made only its first
 *    knock, then the least recently advanced one further along; ALLOWED peers
 *    are never evicted - when every slot is ALLOWED the new source is refused.
 *    A flood of spoofed first knocks thus only ever pushes out other first
 *    knocks;
 *  - GC runs every second (upstream: 65 s after the last accepted knock, so
 *    peers of failed SPA attempts lingered for ever);
 *  - events: every open, close, failed and refused knock is services.event
 *    ("pknock.open" ...), rate-limited per rule object; configured actions
 *    (settings.pknock.actions, modules/lib/actions.ts) run on them.
 *
 * The packet path allocates nothing for IPv4 knocks except when a new peer is
 * created (a freed peer is reused); an IPv6 lookup builds its key string.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Family, PacketContext } from '../xt/packet.js';
import { XtError, type CheckEnv, type MatchExtension, type RuleInfo } from '../xt/extension.js';
import type { EventFields, RouterServices } from '../xt/services.js';
import type { SharedSink, StateShared, StateSpec } from '../xt/state.js';
import { ipv4ToString, ipv6ToString } from '../dataplane/addr.js';
import { parseUint } from './lib/numbers.js';
import { parsePortOrService } from './lib/ports.js';
import { ActionRunner, parseActions, type ActionSpec, type PendingAction } from './lib/actions.js';

const TCP = 6;
const UDP = 17;
const UDPLITE = 136;

/** Upstream's limits. */
export const MAX_PORTS = 15;
export const MAX_NAME_LEN = 31;
export const MAX_SECRET_LEN = 31;
/** SPA payload: 64 lower-case hex digits of HMAC-SHA256 and one byte (a newline from clients). */
export const SPA_PAYLOAD_LEN = 65;

/** settings.pknock defaults. */
export const DEFAULT_MAX_PEERS = 16384;
export const DEFAULT_SPA_WINDOW = 0;
export const MAX_SPA_WINDOW = 10;
/** Events per second per rule object (burst twice that); the rest are counted as `suppressed`. */
export const DEFAULT_EVENT_RATE = 50;
const GC_EVERY_MS = 1000;

export const enum Status {
  INIT = 0,
  MATCHING = 1,
  ALLOWED = 2,
}
const STATUS_TEXT = ['INIT', 'MATCHING', 'ALLOWED'];

export interface PknockParams {
  ports: number[];
  /** Seconds (32-bit, as atoi read it); 0 = not given. */
  time: number;
  /** Minutes; 0 = never. */
  autoclose: number;
  name: string;
  opensecret: string | null;
  closesecret: string | null;
  strict: boolean;
  checkip: boolean;
  /** Options given (save prints exactly these, as upstream's option bits). */
  given: { knockports: boolean; time: boolean; autoclose: boolean; name: boolean };
}

/** One source (the kernel's struct peer). */
export class Peer {
  family: Family = 4;
  readonly addr = new Uint32Array(4);
  key: number | string = 0;
  proto = TCP;
  status = Status.INIT;
  count = 0;
  /** Monotonic seconds of the last accepted knock (or creation). */
  timestamp = 0;
  /** Monotonic seconds of the last login (ALLOWED). */
  login = 0;
  /** Wall-clock epoch minute of the last login (SPA rate limit); -1 = none. */
  loginMinute = -1;
  /** Advance order, for eviction. */
  seq = 0;
  /** Creation order: the proc listing shows the newest first, as upstream lists a bucket. */
  born = 0;
}

/** The rule object of one --name (the kernel's struct xt_pknock_rule). */
export class PknockTable {
  /** Seconds; copied from the creating rule (or a later --opensecret rule). */
  maxTime = 0;
  /** Minutes. */
  autoclose = 0;
  private timingFromSecretRule = false;
  readonly peers = new Map<number | string, Peer>();
  /** Peers by class, oldest-advanced first (Map order): only the first knock so far, further along. */
  readonly fresh = new Set<Peer>();
  readonly progressed = new Set<Peer>();
  allowed = 0;
  private seq = 0;
  private readonly free: Peer[] = [];
  /** SPA payloads already accepted (hex digest) -> the epoch minute after which they can no longer verify. */
  readonly replay = new Map<string, number>();
  /** Issue 15: the cluster's sink while the table is shared (docs/cluster.md "pknock"); null = local only. */
  sink: SharedSink<Peer> | null = null;
  /** Counters shown by `xtr ext pknock`. */
  readonly stats = { opened: 0, closed: 0, failed: 0, refused: 0, evicted: 0, suppressedEvents: 0 };
  /** Token bucket for events. */
  private tokens: number;
  private tokensAt = 0;

  constructor(
    readonly name: string,
    readonly maxPeers: number,
    readonly eventRate: number,
  ) {
    this.tokens = eventRate * 2;
  }

  /** First rule: its timing; a rule with --opensecret overwrites (upstream's add_rule). */
  adopt(p: PknockParams, creating: boolean): void {
    if (creating || p.opensecret !== null) {
      if (!creating && this.timingFromSecretRule && p.opensecret === null) return;
      this.maxTime = p.time;
      this.autoclose = p.autoclose;
      if (p.opensecret !== null) this.timingFromSecretRule = true;
    }
  }

  lookup(key: number | string): Peer | undefined {
    return this.peers.get(key);
  }

  /** Creates a peer, evicting as documented; null when every slot is ALLOWED. */
  create(pkt: PacketContext, key: number | string, nowS: number): Peer | null {
    if (this.peers.size >= this.maxPeers) {
      const victim = first(this.fresh) ?? first(this.progressed);
      if (victim === undefined) return null;
      this.remove(victim);
      this.stats.evicted++;
    }
    const p = this.free.pop() ?? new Peer();
    p.family = pkt.family;
    if (pkt.family === 4) {
      p.addr[0] = pkt.src4;
      p.addr[1] = p.addr[2] = p.addr[3] = 0;
    } else p.addr.set(pkt.src6);
    p.key = key;
    p.proto = pkt.proto === TCP ? TCP : UDP;
    p.status = Status.INIT;
    p.count = 0;
    p.timestamp = nowS;
    p.login = 0;
    p.loginMinute = -1;
    p.seq = p.born = ++this.seq;
    this.peers.set(key, p);
    this.fresh.add(p);
    return p;
  }

  /** The peer made progress (accepted knock): to the young end of its class. */
  advanced(p: Peer): void {
    p.seq = ++this.seq;
    this.fresh.delete(p);
    this.progressed.delete(p);
    if (p.status === Status.ALLOWED) return;
    if (p.count <= 1) this.fresh.add(p);
    else this.progressed.add(p);
  }

  setAllowed(p: Peer, nowS: number, minute: number): void {
    if (p.status !== Status.ALLOWED) this.allowed++;
    p.status = Status.ALLOWED;
    p.login = nowS;
    p.loginMinute = minute;
    this.fresh.delete(p);
    this.progressed.delete(p);
  }

  /** Back to INIT with count 0 (SPA close), login kept. */
  reset(p: Peer): void {
    if (p.status === Status.ALLOWED) this.allowed--;
    p.status = Status.INIT;
    p.count = 0;
    this.fresh.add(p);
  }

  remove(p: Peer): void {
    if (p.status === Status.ALLOWED) this.allowed--;
    this.peers.delete(p.key);
    this.fresh.delete(p);
    this.progressed.delete(p);
    this.free.push(p);
  }

  /** GC: non-ALLOWED peers past max_time, ALLOWED peers past autoclose; calls `closed` for those. */
  gc(nowS: number, closed: (p: Peer) => void, expired: (p: Peer) => void, nowMinute: number): void {
    for (const p of this.peers.values()) {
      if (p.status !== Status.ALLOWED) {
        // A peer closed this minute is kept until the minute is over: its login minute is the SPA rate limit.
        if (p.timestamp + this.maxTime < nowS && p.loginMinute < nowMinute) {
          if (p.status === Status.MATCHING) expired(p);
          this.remove(p);
        }
      } else if (this.autoclose !== 0 && nowS > p.login + this.autoclose * 60) {
        closed(p);
        this.remove(p);
      }
    }
    for (const [k, lastMinute] of this.replay) if (lastMinute < nowMinute) this.replay.delete(k);
  }

  /** An event may be reported now (token bucket refilled by the monotonic clock). */
  mayReport(nowMs: number): boolean {
    const cap = this.eventRate * 2;
    this.tokens = Math.min(cap, this.tokens + ((nowMs - this.tokensAt) * this.eventRate) / 1000);
    this.tokensAt = nowMs;
    if (this.tokens < 1) {
      this.stats.suppressedEvents++;
      return false;
    }
    this.tokens--;
    return true;
  }

  /** The procfs text: one line per peer, newest first, as upstream's format (every line ends in a space). */
  read(nowS: number): string {
    const list = [...this.peers.values()].sort((a, b) => b.born - a.born);
    let s = '';
    for (const p of list) {
      s += `src=${addrText(p)} proto=${p.proto === TCP ? 'TCP' : 'UDP'} status=${STATUS_TEXT[p.status]} accepted_knock_count=${p.count} `;
      if (p.status === Status.MATCHING) s += `expir_time=${Math.max(0, p.timestamp + this.maxTime - nowS)} [secs] `;
      if (p.status === Status.ALLOWED && this.autoclose !== 0) s += `autoclose_time=${Math.max(0, p.login + this.autoclose * 60 - nowS)} [secs] `;
      s += '\n';
    }
    return s;
  }
}

function first<T>(s: Set<T>): T | undefined {
  for (const v of s) return v;
  return undefined;
}

function addrText(p: Peer): string {
  return p.family === 4 ? ipv4ToString(p.addr[0]) : ipv6ToString(p.addr);
}

/** The saved picture of a table: peers with their ages, the replay cache. */
interface SavedPeer {
  a: string;
  f: Family;
  p: number;
  s: Status;
  c: number;
  /** Seconds since the last accepted knock / the login, at save time. */
  age: number;
  loginAge: number;
  lm: number;
}
interface SavedTable {
  maxTime: number;
  autoclose: number;
  peers: SavedPeer[];
  replay: [string, number][];
}

function peerKey(family: Family, a: Uint32Array | number): number | string {
  if (family === 4) return a as number;
  const w = a as Uint32Array;
  return `${w[0]}:${w[1]}:${w[2]}:${w[3]}`;
}

/** settings.pknock, checked. */
export interface PknockSettings {
  maxPeers: number;
  spaWindow: number;
  eventRate: number;
  actions: ActionSpec[];
}

export function pknockSettings(settings: Readonly<Record<string, unknown>>): PknockSettings {
  const s = (settings.pknock ?? {}) as Record<string, unknown>;
  const int = (k: string, dflt: number, min: number, max: number): number => {
    const v = s[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new XtError(`settings.pknock.${k}: ${JSON.stringify(v)}: must be an integer ${min}..${max}`, 1);
    return v;
  };
  return {
    maxPeers: int('max_peers', DEFAULT_MAX_PEERS, 1, 1 << 24),
    spaWindow: int('spa_window', DEFAULT_SPA_WINDOW, 0, MAX_SPA_WINDOW),
    eventRate: int('event_rate', DEFAULT_EVENT_RATE, 1, 1_000_000),
    actions: parseActions('pknock', s.actions),
  };
}

/** The state every pknock rule shares: delayed actions (persisted) and their runner. */
interface ActionState {
  pending: PendingAction[];
  runner: ActionRunner | null;
}

const ACTIONS_KEY = 'pknock:*actions';

function actionsSpec(services: RouterServices): StateSpec<ActionState> {
  return {
    key: ACTIONS_KEY,
    create: () => ({ pending: [], runner: null }),
    limit: { max: 4096, eviction: 'none: further delayed actions are dropped and logged', count: (v) => v.pending.length },
    save: (v) => v.pending,
    load: (v, saved) => {
      if (!Array.isArray(saved)) throw new Error('pknock actions: not a list');
      for (const j of saved as PendingAction[]) {
        if (typeof j?.due !== 'number' || !Array.isArray(j.argv) || !j.argv.every((a) => typeof a === 'string') || typeof j.timeout !== 'number') continue;
        v.pending.push({ due: j.due, argv: j.argv, timeout: j.timeout, event: String(j.event ?? 'pknock') });
      }
    },
    tick: { everyMs: 500, run: (v) => v.runner?.due(services.wallNow()) },
  };
}

/** What a rule's check builds: the per-packet function and its context. */
function tableSpec(p: PknockParams, cfg: PknockSettings, services: RouterServices, onGc: (t: PknockTable, peer: Peer, what: 'close' | 'failed', reason: string) => void): StateSpec<PknockTable> {
  return {
    key: `pknock:${p.name}`,
    create: () => new PknockTable(p.name, cfg.maxPeers, cfg.eventRate),
    limit: {
      max: cfg.maxPeers,
      eviction: 'first-knock peers least recently advanced, then half-open ones; ALLOWED never (new sources refused)',
      count: (t) => t.peers.size,
    },
    proc: { path: `net/xt_pknock/${p.name}`, read: (t) => t.read(Math.floor(services.now() / 1000)) },
    save: (t, now): SavedTable => {
      const nowS = Math.floor(now / 1000);
      return {
        maxTime: t.maxTime,
        autoclose: t.autoclose,
        peers: [...t.peers.values()]
          .sort((a, b) => a.born - b.born)
          .map((x) => ({ a: addrText(x), f: x.family, p: x.proto, s: x.status, c: x.count, age: nowS - x.timestamp, loginAge: nowS - x.login, lm: x.loginMinute })),
        replay: [...t.replay],
      };
    },
    load: (t, saved, downtimeMs, now) => {
      const s = saved as SavedTable;
      if (typeof s !== 'object' || s === null || !Array.isArray(s.peers)) throw new Error('pknock: saved table is not {peers: [...]}');
      const nowS = Math.floor(now / 1000);
      const down = Math.floor(downtimeMs / 1000);
      const ctx = new PacketContext4or6();
      for (const x of s.peers) {
        const family: Family = x.f === 6 ? 6 : 4;
        if (!ctx.setSource(family, x.a)) continue;
        const peer = t.create(ctx as unknown as PacketContext, family === 4 ? ctx.src4 : peerKey(6, ctx.src6), nowS - x.age - down);
        if (peer === null) break;
        peer.proto = x.p === TCP ? TCP : UDP;
        peer.count = x.c | 0;
        peer.login = nowS - x.loginAge - down;
        peer.loginMinute = typeof x.lm === 'number' ? x.lm : -1;
        if (x.s === Status.ALLOWED) t.setAllowed(peer, peer.login, peer.loginMinute);
        else {
          peer.status = x.s === Status.MATCHING ? Status.MATCHING : Status.INIT;
          t.advanced(peer);
        }
      }
      if (Array.isArray(s.replay)) for (const [k, m] of s.replay) if (typeof k === 'string' && typeof m === 'number') t.replay.set(k, m);
    },
    shared: sharedPknock,
    tick: {
      everyMs: GC_EVERY_MS,
      run: (t, now) =>
        t.gc(
          Math.floor(now / 1000),
          (peer) => onGc(t, peer, 'close', 'autoclose'),
          (peer) => onGc(t, peer, 'failed', 'expired'),
          Math.floor(services.wallNow() / 60000),
        ),
    },
  };
}

/**
 * Cluster sharing (issue 15, docs/cluster.md "pknock"): a record per source
 * address, `{open: wall ms, proto}` when a knock (or SPA) opened it, `{close:
 * wall ms}` when it closed (closesecret, autoclose). Another gateway applies an
 * open as an ALLOWED peer logged in at that time (its autoclose counts from
 * there), and a close removes an ALLOWED peer logged in no later than it.
 * Knock progress (MATCHING) stays local: a sequence must be knocked on one
 * gateway. A table full of ALLOWED peers refuses the record (counted).
 *
 * The SPA replay cache is shared too: a payload accepted (open or close) on
 * one gateway is refused on every other. Record id `spa:<HMAC hex>`, `{replay:
 * epoch minute}` (the last minute it could verify); the union of the caches
 * (the later minute when both hold it), expired ones ignored.
 */
/** Cluster record ids of replay-cache entries (addresses never start so). */
const SPA_ID = 'spa:';

const sharedPknock: StateShared<PknockTable, Peer> = {
  kind: 'pknock',
  attach(t, sink) {
    t.sink = sink;
  },
  export: () => null,
  apply(t, id, data, _from, clock) {
    if (id.startsWith(SPA_ID)) {
      const digest = id.slice(SPA_ID.length);
      const until = (data as { replay?: unknown } | null)?.replay;
      if (!/^[0-9A-Za-z]{1,64}$/.test(digest) || typeof until !== 'number' || !Number.isInteger(until)) throw new Error(`pknock: ${t.name}: bad replay record ${JSON.stringify(id)}`);
      const nowMinute = Math.floor(clock.wallNow() / 60000);
      if (until < nowMinute) return;
      // No payload verifies beyond the largest window: a record cannot keep an entry longer.
      const key = `${t.name}:${digest}`;
      t.replay.set(key, Math.max(t.replay.get(key) ?? -Infinity, Math.min(until, nowMinute + 2 * MAX_SPA_WINDOW + 1)));
      return;
    }
    const r = data as { open?: unknown; close?: unknown; proto?: unknown };
    const family: Family = id.includes(':') ? 6 : 4;
    const ctx = new PacketContext4or6();
    if (typeof r !== 'object' || r === null || !ctx.setSource(family, id)) throw new Error(`pknock: ${t.name}: bad record for ${JSON.stringify(id)}`);
    const key = family === 4 ? ctx.src4 : peerKey(6, ctx.src6);
    const nowS = Math.floor(clock.now() / 1000);
    const wall = clock.wallNow();
    let peer = t.lookup(key) ?? null;
    if (typeof r.close === 'number') {
      if (peer !== null && peer.status === Status.ALLOWED && peer.login <= nowS - Math.floor((wall - r.close) / 1000)) t.remove(peer);
      return;
    }
    if (typeof r.open !== 'number') throw new Error(`pknock: ${t.name}: record for ${id} is neither open nor close`);
    ctx.proto = r.proto === UDP ? UDP : TCP;
    if (peer === null) peer = t.create(ctx as unknown as PacketContext, key, nowS);
    if (peer === null) throw new Error(`pknock: ${t.name}: table full of ALLOWED peers, ${id} not opened`);
    const loginS = nowS - Math.max(0, Math.round((wall - r.open) / 1000));
    peer.proto = ctx.proto;
    peer.timestamp = loginS;
    t.setAllowed(peer, loginS, Math.floor(r.open / 60000));
  },
};

/** Just enough of a packet to create a peer from a saved address. */
class PacketContext4or6 {
  family: Family = 4;
  proto = TCP;
  src4 = 0;
  readonly src6 = new Uint32Array(4);
  setSource(family: Family, text: string): boolean {
    this.family = family;
    if (family === 4) {
      const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
      if (!m) return false;
      this.src4 = ((+m[1] << 24) | (+m[2] << 16) | (+m[3] << 8) | +m[4]) >>> 0;
      return true;
    }
    const b = ipv6Bytes(text);
    if (!b) return false;
    for (let i = 0; i < 4; i++) this.src6[i] = b.readUInt32BE(i * 4);
    return true;
  }
}

function ipv6Bytes(text: string): Buffer | null {
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const part = (s: string) => (s === '' ? [] : s.split(':'));
  const head = part(halves[0]);
  const tail = halves.length === 2 ? part(halves[1]) : [];
  const fill = 8 - head.length - tail.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
  const groups = [...head, ...Array(halves.length === 2 ? fill : 0).fill('0'), ...tail];
  const b = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(groups[i])) return null;
    b.writeUInt16BE(parseInt(groups[i], 16), i * 2);
  }
  return b;
}

// ---------------------------------------------------------------------------
// Option parsing: libxt_pknock's old-style parser, its words.

/** C atoi: optional blanks, sign, digits; stops at the first non-digit; the int wraps to 32 bits. */
function atoi(s: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?)(\d*)/.exec(s)!;
  let v = 0;
  for (const c of m[2]) v = (v * 10 + (c.charCodeAt(0) - 48)) % 4294967296;
  if (m[1] === '-') v = (4294967296 - v) % 4294967296;
  return v >>> 0;
}

/** The first `max` bytes of a string's UTF-8 (iptables copies at most that many bytes). */
function truncateBytes(s: string, max: number): string {
  const b = Buffer.from(s, 'utf8');
  return b.length <= max ? s : b.subarray(0, max).toString('utf8');
}

function parsePknock(opts: readonly { name: string; value: string | null; inverted: boolean }[], rule: RuleInfo): PknockParams {
  const E = (msg: string) => new XtError(`xt_pknock: ${msg}`);
  const p: PknockParams = {
    ports: [],
    time: 0,
    autoclose: 0,
    name: '',
    opensecret: null,
    closesecret: null,
    strict: false,
    checkip: false,
    given: { knockports: false, time: false, autoclose: false, name: false },
  };
  const seen = new Set<string>();
  for (const o of opts) {
    if (seen.has(o.name)) throw E(`cannot use --${o.name} twice.\n`);
    seen.add(o.name);
    if (o.inverted) throw E('does not support invert.');
    const v = o.value ?? '';
    switch (o.name) {
      case 'knockports': {
        if (rule.proto === 0) throw E("needs `-p tcp' or `-p udp'");
        if (rule.protoInverted || (rule.proto !== TCP && rule.proto !== UDP)) throw E('only works with TCP and UDP.');
        const words = v.split(',');
        if (words.length > MAX_PORTS) throw new XtError('too many ports specified');
        const proto = rule.proto === TCP ? 'tcp' : 'udp';
        p.ports = words.map((w) => {
          const n = parsePortOrService(w, proto);
          if (n < 0) throw new XtError(`invalid port/service \`${w}' specified`);
          return n;
        });
        p.given.knockports = true;
        break;
      }
      case 'time':
        p.time = atoi(v);
        if (p.time === 0) throw E('--time number must be > 0.\n');
        p.given.time = true;
        break;
      case 'autoclose': {
        const n = parseUint(v, 0xffffffff);
        if (n < 0) throw E(`: Bad value for "--autoclose" option: "${v}"`);
        p.autoclose = n;
        p.given.autoclose = true;
        break;
      }
      case 'name':
        p.name = truncateBytes(v, MAX_NAME_LEN);
        p.given.name = true;
        break;
      case 'opensecret':
        p.opensecret = truncateBytes(v, MAX_SECRET_LEN);
        break;
      case 'closesecret':
        p.closesecret = truncateBytes(v, MAX_SECRET_LEN);
        break;
      case 'strict':
        p.strict = true;
        break;
      case 'checkip':
        p.checkip = true;
        break;
    }
  }
  // libxt_pknock's final check, in its order.
  if (!p.given.name) throw E('--name option is required.\n');
  if (p.given.knockports) {
    if (p.checkip) throw E('cannot specify --knockports with --checkip.\n');
    if (p.opensecret !== null && p.closesecret === null) throw E('--opensecret must go with --closesecret.\n');
    if (p.closesecret !== null && p.opensecret === null) throw E('--closesecret must go with --opensecret.\n');
  }
  if (p.checkip) {
    if (p.opensecret !== null || p.closesecret !== null) throw E('cannot specify --opensecret and --closesecret with --checkip.\n');
    if (p.given.time) throw E('cannot specify --time with --checkip.\n');
    if (p.given.autoclose) throw E('cannot specify --autoclose with --checkip.\n');
  } else if (p.opensecret === null && !p.given.time) throw E('you must specify --time.\n');
  return p;
}

function saveText(p: PknockParams, secrets: boolean): string {
  let s = '';
  if (p.given.knockports) s += ` --knockports ${p.ports.join(',')} `;
  if (p.given.time) s += ` --time ${p.time} `;
  if (p.given.autoclose) s += ` --autoclose ${p.autoclose} `;
  if (p.given.name) s += ` --name ${p.name} `;
  if (p.opensecret !== null) s += secrets ? ` --opensecret ${quote(p.opensecret)} ` : ' --opensecret ';
  if (p.closesecret !== null) s += secrets ? ` --closesecret ${quote(p.closesecret)} ` : ' --closesecret ';
  if (p.strict) s += ' --strict ';
  if (p.checkip) s += ' --checkip ';
  return s;
}

/** A secret as one iptables-restore word (double quotes when it has blanks or quotes). */
function quote(s: string): string {
  return /^[^\s"'\\]+$/.test(s) ? s : `"${s.replace(/(["\\])/g, '\\$1')}"`;
}

// ---------------------------------------------------------------------------
// The packet path.

/** The SPA message: source address (network order, 4 or 16 bytes) || minute as u32 little-endian. */
function spaMessage(family: Family, src: Uint32Array | number, minute: number, msg: Buffer): Buffer {
  if (family === 4) {
    msg.writeUInt32BE((src as number) >>> 0, 0);
    msg.writeUInt32LE(minute >>> 0, 4);
    return msg.subarray(0, 8);
  }
  for (let i = 0; i < 4; i++) msg.writeUInt32BE((src as Uint32Array)[i] >>> 0, i * 4);
  msg.writeUInt32LE(minute >>> 0, 16);
  return msg;
}

/** HMAC-SHA256(secret, source address || minute as u32 little-endian) as lower-case hex (tests, tools). */
export function spaDigest(secret: string, family: Family, src: Uint32Array | number, minute: number): string {
  return createHmac('sha256', secret).update(spaMessage(family, src, minute, Buffer.alloc(20))).digest('hex');
}

/** 64 lower-case hex digits at `off` into 32 bytes of `out`; false if any is not [0-9a-f] (upstream compares the lower-case text). */
function unhexLower(buf: Buffer, off: number, out: Buffer): boolean {
  for (let i = 0; i < 32; i++) {
    const hi = HEX_VALUE[buf[off + 2 * i]];
    const lo = HEX_VALUE[buf[off + 2 * i + 1]];
    if ((hi | lo) < 0) return false;
    out[i] = (hi << 4) | lo;
  }
  return true;
}

const HEX_VALUE = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX_VALUE[48 + c] = c;
for (let c = 0; c < 6; c++) HEX_VALUE[97 + c] = 10 + c;

interface Runtime {
  readonly p: PknockParams;
  readonly t: PknockTable;
  readonly cfg: PknockSettings;
  readonly services: RouterServices;
  readonly actions: ActionState;
  /** Scratch: the payload's digest bytes and the message, so verifying allocates only the HMAC object. */
  readonly claimed: Buffer;
  readonly msg: Buffer;
}

function report(rt: Runtime, pkt: PacketContext, peer: Peer | null, what: string, extra: Record<string, string | number | boolean>): void {
  const { t } = rt;
  if (what === 'open') t.stats.opened++;
  else if (what === 'close') t.stats.closed++;
  else if (what === 'failed') t.stats.failed++;
  else if (what === 'refused') t.stats.refused++;
  if (!t.mayReport(pkt.now)) return;
  const ip = peer ? addrText(peer) : pkt.family === 4 ? ipv4ToString(pkt.src4) : ipv6ToString(pkt.src6);
  const fields: EventFields = {
    name: t.name,
    ip,
    family: pkt.family,
    proto: pkt.proto === TCP ? 'tcp' : 'udp',
    port: pkt.dport,
    ...(peer ? { knocks: peer.count } : {}),
    ...extra,
    ...(t.stats.suppressedEvents ? { suppressed: t.stats.suppressedEvents } : {}),
  };
  rt.services.event(`pknock.${what}`, fields);
  rt.actions.runner?.onEvent(rt.cfg.actions, what, fields);
}

/** Whether the UDP payload is a valid SPA packet for `secret`; sets `minuteOut[0]` to the minute it was made for. */
function spaValid(rt: Runtime, pkt: PacketContext, secret: string, minuteOut: number[]): boolean {
  if (pkt.proto !== UDP && pkt.proto !== UDPLITE) return false;
  const payloadLen = pkt.l3len - (pkt.l4off - pkt.l3off) - 8;
  if (payloadLen !== SPA_PAYLOAD_LEN) return false;
  if (pkt.l4len < 8 + SPA_PAYLOAD_LEN) return false;
  if (!unhexLower(pkt.buf, pkt.l4off + 8, rt.claimed)) return false;
  const now = Math.floor(rt.services.wallNow() / 60000);
  const w = rt.cfg.spaWindow;
  const src = pkt.family === 4 ? pkt.src4 : pkt.src6;
  // The current minute first, then outwards: the common case costs one HMAC.
  for (let d = 0; d <= w; d++) {
    for (let side = 0; side < (d === 0 ? 1 : 2); side++) {
      const m = side === 0 ? now - d : now + d;
      const digest = createHmac('sha256', secret).update(spaMessage(pkt.family, src, m, rt.msg)).digest();
      if (timingSafeEqual(digest, rt.claimed)) {
        minuteOut[0] = m;
        return true;
      }
    }
  }
  return false;
}

/** A payload already used, or remember it (until no window can accept it any more). */
function replayed(rt: Runtime, pkt: PacketContext, minute: number): boolean {
  const key = `${rt.p.name}:${pkt.buf.toString('latin1', pkt.l4off + 8, pkt.l4off + 8 + 64)}`;
  if (rt.t.replay.has(key)) return true;
  rt.t.replay.set(key, minute + rt.cfg.spaWindow);
  // Issue 15: refused on every gateway of the cluster (docs/cluster.md "pknock").
  rt.t.sink?.record(SPA_ID + key.slice(rt.p.name.length + 1), { replay: minute + rt.cfg.spaWindow });
  return false;
}

function knock(rt: Runtime, pkt: PacketContext): boolean {
  const { p, t } = rt;
  if (pkt.isFragment && pkt.fragmentOffset !== 0) return false;
  if (pkt.l4len < 4) {
    pkt.hotdrop = true;
    return false;
  }
  const proto = pkt.proto;
  if (proto !== TCP && proto !== UDP && proto !== UDPLITE) return false;
  const nowS = Math.floor(pkt.now / 1000);
  const key = pkt.family === 4 ? pkt.src4 : peerKey(6, pkt.src6);
  let peer = t.lookup(key) ?? null;
  let result = false;

  if (p.checkip) {
    result = peer !== null && peer.status === Status.ALLOWED;
  } else if (peer !== null && peer.status === Status.ALLOWED) {
    result = true;
    if (p.closesecret !== null && (proto === UDP || proto === UDPLITE)) {
      const minute = [0];
      if (spaValid(rt, pkt, p.closesecret, minute)) {
        if (replayed(rt, pkt, minute[0])) {
          report(rt, pkt, peer, 'refused', { reason: 'replay', secret: 'close' });
        } else {
          t.sink?.record(addrText(peer), { close: rt.services.wallNow() });
          t.reset(peer);
          report(rt, pkt, peer, 'close', { reason: 'closesecret' });
          return false;
        }
      }
    }
  } else {
    const dport = pkt.dport;
    if (peer === null) {
      if (p.ports.length === 0 || dport !== p.ports[0]) return false;
      peer = t.create(pkt, key, nowS);
      if (peer === null) {
        report(rt, pkt, null, 'refused', { reason: 'table-full' });
        return false;
      }
    }
    if (dport !== p.ports[peer.count]) {
      if (p.strict) {
        report(rt, pkt, peer, 'failed', { reason: 'wrong-port', strict: true });
        t.remove(peer);
      } else if (peer.count > 0) report(rt, pkt, peer, 'failed', { reason: 'wrong-port', strict: false });
      return false;
    }
    if (p.opensecret !== null) {
      if (proto !== UDP && proto !== UDPLITE) return false;
      const minuteNow = Math.floor(rt.services.wallNow() / 60000);
      if (peer.loginMinute === minuteNow) {
        report(rt, pkt, peer, 'refused', { reason: 'rate-limit' });
        return false;
      }
      const minute = [0];
      if (!spaValid(rt, pkt, p.opensecret, minute)) {
        report(rt, pkt, peer, 'failed', { reason: 'bad-hmac' });
        return false;
      }
      if (replayed(rt, pkt, minute[0])) {
        report(rt, pkt, peer, 'refused', { reason: 'replay' });
        return false;
      }
    }
    // The man page's "max time between knocks", the final knock included (upstream skips it there).
    if (p.time !== 0 && peer.count > 0 && nowS > peer.timestamp + p.time) {
      report(rt, pkt, peer, 'failed', { reason: 'too-slow' });
      t.remove(peer);
      return false;
    }
    peer.count++;
    peer.timestamp = nowS;
    if (peer.count === p.ports.length) {
      t.setAllowed(peer, nowS, Math.floor(rt.services.wallNow() / 60000));
      t.sink?.record(addrText(peer), { open: rt.services.wallNow(), proto: peer.proto });
      report(rt, pkt, peer, 'open', { mode: p.opensecret !== null ? 'spa' : 'sequence' });
    } else {
      peer.status = Status.MATCHING;
      t.advanced(peer);
    }
    return false;
  }

  if (result && peer !== null && t.autoclose !== 0 && nowS > peer.login + t.autoclose * 60) {
    const sameMinute = (proto === UDP || proto === UDPLITE) && Math.floor(nowS / 60) === Math.floor(peer.login / 60);
    if (!sameMinute) {
      report(rt, pkt, peer, 'close', { reason: 'autoclose' });
      t.sink?.record(addrText(peer), { close: rt.services.wallNow() });
      t.remove(peer);
      return false;
    }
  }
  return result;
}

const pknock: MatchExtension<PknockParams> = {
  kind: 'match',
  name: 'pknock',
  revision: 1,
  families: [4, 6],
  options: [
    { name: 'knockports', arg: 'required', invertible: true },
    { name: 'time', arg: 'required', invertible: true },
    { name: 'autoclose', arg: 'required', invertible: true },
    { name: 'name', arg: 'required', invertible: true },
    { name: 'opensecret', arg: 'required', invertible: true },
    { name: 'closesecret', arg: 'required', invertible: true },
    { name: 'strict', arg: 'none', invertible: true },
    { name: 'checkip', arg: 'none', invertible: true },
  ],
  parse: parsePknock,
  check(p: PknockParams, env: CheckEnv) {
    const kernel = (msg: string) => new XtError(`xt_pknock: ${msg}`, 1, 'EINVAL');
    // xt_pknock's checkentry, its order and words.
    if (p.opensecret !== null && p.ports.length !== 1) throw kernel('--opensecret must have just one knock port');
    if (p.opensecret !== null && p.opensecret === p.closesecret) throw kernel('opensecret & closesecret cannot be equal.');
    // procfs cannot create such a file, so upstream's add_rule fails.
    if (p.name === '' || p.name.includes('/') || p.name === '.' || p.name === '..') throw kernel('add_rule() error in checkentry() function.');
    const cfg = pknockSettings(env.settings);
    const services = env.services;
    const actions = env.state.declare(actionsSpec(services));
    actions.runner ??= new ActionRunner('pknock', services, actions.pending);
    let rt: Runtime | null = null;
    // What the GC tick removes is reported as the packet path reports (a sequence that ran out of time is a failed knock).
    const onGc = (t: PknockTable, peer: Peer, what: 'close' | 'failed', reason: string) => {
      t.stats[what === 'close' ? 'closed' : 'failed']++;
      if (!t.mayReport(services.now())) return;
      const fields: EventFields = { name: t.name, ip: addrText(peer), family: peer.family, proto: peer.proto === TCP ? 'tcp' : 'udp', knocks: peer.count, reason };
      services.event(`pknock.${what}`, fields);
      actions.runner?.onEvent(cfg.actions, what, fields);
    };
    const spec = tableSpec(p, cfg, services, onGc);
    let created = false;
    const t = env.state.declare({ ...spec, create: () => ((created = true), spec.create()) });
    if (created) t.adopt(p, true);
    rt = { p, t, cfg, services, actions, claimed: Buffer.alloc(32), msg: Buffer.alloc(20) };
    const runtime = rt;
    return {
      match: (pkt: PacketContext) => knock(runtime, pkt),
      activate: () => {
        if (!created) t.adopt(p, false);
      },
      destroy: () => {
        env.state.release(spec.key);
        env.state.release(ACTIONS_KEY);
      },
    };
  },
  save: (p) => saveText(p, false),
  persistSave: (p) => saveText(p, true),
  print(p) {
    let s = ' pknock';
    if (p.given.knockports) s += ` knockports ${p.ports.join(',')}`;
    if (p.given.time) s += ` time ${p.time}`;
    if (p.given.autoclose) s += ` autoclose ${p.autoclose}`;
    if (p.given.name) s += ` name ${p.name}`;
    if (p.opensecret !== null) s += ' opensecret';
    if (p.closesecret !== null) s += ' closesecret';
    if (p.strict) s += ' strict';
    if (p.checkip) s += ' checkip';
    return s + ' ';
  },
  commands: [
    {
      name: 'pknock',
      usage: '[NAME]',
      run(args, state) {
        const keys = args.length ? args.map((n) => `pknock:${n}`) : state.keys('pknock:').filter((k) => k !== ACTIONS_KEY);
        let out = '';
        for (const k of keys) {
          const t = state.get<PknockTable>(k);
          if (!t) throw new XtError(`pknock: no rule object named ${k.slice(7)}`);
          out += `${t.name}: peers ${t.peers.size}/${t.maxPeers} allowed ${t.allowed} max_time ${t.maxTime} autoclose ${t.autoclose} ` +
            `opened ${t.stats.opened} closed ${t.stats.closed} failed ${t.stats.failed} refused ${t.stats.refused} evicted ${t.stats.evicted} ` +
            `replay_cache ${t.replay.size} events_suppressed ${t.stats.suppressedEvents}\n`;
        }
        const a = state.get<ActionState>(ACTIONS_KEY);
        if (a?.runner) out += `actions: pending ${a.pending.length} running ${a.runner.running} started ${a.runner.started} dropped ${a.runner.dropped}\n`;
        return out;
      },
    },
  ],
};

export default pknock;
