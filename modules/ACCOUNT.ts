/**
 * `-j ACCOUNT --addr NET/MASK --tname NAME` (xtables-addons' libxt_ACCOUNT +
 * xt_ACCOUNT): per-address packet and byte counters for every address of one
 * prefix, in named tables that `scripts/iptaccount` reads (and flushes)
 * through the control socket (`xtr ext account ...`, the command below).
 * Facts: ../shared/spec/targets-facts.md §1; choices in docs/compat.md "## ACCOUNT".
 *
 * Kept from upstream:
 *  - a table is shared by every rule naming it, only with the same net and
 *    mask ("Table NAME found, but IP/netmask mismatch", EINVAL); it and its
 *    counters go when the last rule naming it goes;
 *  - at most 128 tables (the module parameter max_tables_limit, here
 *    settings.ACCOUNT.max_tables_limit), slots reused lowest first, so `-a`
 *    lists them in slot order; names of 1..31 bytes;
 *  - storage by depth (upstream's layout): a prefix of /24../32 has one block
 *    of 256 records, /16../23 up to 256 blocks chosen by the third octet,
 *    /8../15 256×256 blocks by the second and third; blocks are allocated on
 *    the first packet that needs one. A record is four counters (source
 *    packets/bytes, destination packets/bytes), 8 KiB per block as v3's
 *    64-bit counters (kept as doubles: exact to 2^53 bytes, 8 PiB);
 *  - per packet: bytes are the IP length; the source's record counts it as
 *    source if the source is inside the prefix, the destination's as
 *    destination if that is inside (both for a packet between two inside
 *    hosts); /0 counts everything as source traffic of 0.0.0.0; the verdict
 *    is always CONTINUE;
 *  - read returns the addresses with traffic in ascending order; read and
 *    flush swaps the live counters for empty ones in one step.
 *
 * Differs (docs/compat.md): /1../7 are refused (upstream keys them by the
 * last octet alone and mixes hosts); the 0.0.0.0-network quirk (spurious
 * counts at x.0) is not copied; IPv6 is supported, for prefixes /104../128
 * (and /0), the same 2^24-address reach and layout over the low 24 bits.
 *
 * Read-and-flush is atomic with respect to packets without a lock: the packet
 * path and the control command run on Node's one main thread, so a command
 * runs between two packets, never during one; the flush replaces the table's
 * `data` object in one assignment and hands the old one to the reader. A
 * packet is counted either in the data read or in the fresh data, never
 * both, never neither.
 */
import type { Family, PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type CheckEnv, type TargetExtension } from '../xt/extension.js';
import type { ModuleCommand, StateLookup, StateShared, StateSpec } from '../xt/state.js';
import { DottedQuad, ipv4ToString, ipv6FromText, ipv6ToInetNtop, maskPrefixLength, prefixMaskWord } from '../dataplane/addr.js';

/** Upstream's default max_tables_limit. */
export const ACCOUNT_MAX_TABLES = 128;
/** Table names: a 32-byte field with its NUL. */
export const ACCOUNT_NAME_MAX = 31;
/** Counters per record: source packets, source bytes, destination packets, destination bytes. */
const REC = 4;
/** Records per block (one /24's last octet). */
const BLOCK = 256;

export interface AccountParams {
  family: Family;
  /** Network, already masked (IPv4: word 0). */
  net: Uint32Array;
  mask: Uint32Array;
  name: string;
}

/**
 * One table's counters. depth 0: `blocks[0]` only; depth 1: `blocks[octet3]`;
 * depth 2: `blocks[octet2 * 256 + octet3]`. Blocks are allocated when first used.
 */
export class AccountData {
  readonly blocks: (Float64Array | null)[];
  /** Records with any traffic (upstream's itemcount: what a read returns). */
  itemcount = 0;
  /**
   * Issue 15 (docs/cluster.md "ACCOUNT"): while the table is shared, every
   * count is also added to this gateway's running totals (never flushed), and
   * `notify` marks the table changed for the cluster link.
   */
  mirror: AccountData | null = null;
  notify: (() => void) | null = null;
  constructor(readonly depth: 0 | 1 | 2) {
    this.blocks = new Array(depth === 0 ? 1 : depth === 1 ? BLOCK : BLOCK * BLOCK).fill(null);
  }

  /** The block holding host `low` (the low 24 bits of the address). */
  block(low: number): Float64Array {
    const i = this.depth === 0 ? 0 : this.depth === 1 ? (low >>> 8) & 0xff : (low >>> 8) & 0xffff;
    let b = this.blocks[i];
    if (b === null) b = this.blocks[i] = new Float64Array(BLOCK * REC);
    return b;
  }

  /** Counts `size` bytes for host `low` as source (off 0) or destination (off 2). */
  count(low: number, off: 0 | 2, size: number): void {
    const b = this.block(low);
    const r = (low & 0xff) * REC;
    if (b[r] === 0 && b[r + 2] === 0) this.itemcount++;
    b[r + off] += 1;
    b[r + off + 1] += size;
    const m = this.mirror;
    if (m !== null) {
      m.count(low, off, size);
      this.notify!();
    }
  }

  /** Calls `fn` for every record with traffic, ascending by host (its block and octet). */
  each(fn: (low: number, srcPackets: number, srcBytes: number, dstPackets: number, dstBytes: number) => void): void {
    for (let bi = 0; bi < this.blocks.length; bi++) {
      const b = this.blocks[bi];
      if (b === null) continue;
      for (let k = 0; k < BLOCK; k++) {
        const r = k * REC;
        if (b[r] === 0 && b[r + 2] === 0) continue;
        fn(((bi << 8) | k) >>> 0, b[r], b[r + 1], b[r + 2], b[r + 3]);
      }
    }
  }

  /** Every record with traffic, ascending by host: [low, srcPackets, srcBytes, dstPackets, dstBytes]. */
  entries(): number[][] {
    const out: number[][] = [];
    this.each((low, sp, sb, dp, db) => out.push([low, sp, sb, dp, db]));
    return out;
  }
}

/** A named table: its prefix and the live counters (replaced whole by a flush). */
export class AccountTable {
  data: AccountData;
  readonly depth: 0 | 1 | 2;
  /** Mask of all zeros: every packet is 0.0.0.0's (or ::'s) source traffic. */
  readonly all: boolean;
  constructor(
    readonly name: string,
    readonly family: Family,
    readonly net: Uint32Array,
    readonly mask: Uint32Array,
  ) {
    // Upstream's depth: the leading run of 1 bits (a non-contiguous mask counts up to its first 0).
    let lead = 0;
    const words = family === 4 ? 1 : 4;
    for (let i = 0; i < words && lead === i * 32; i++) lead += Math.clz32(~mask[i] >>> 0);
    const v4lead = family === 4 ? lead : lead - 96;
    this.all = lead === 0;
    this.depth = this.all || v4lead >= 24 ? 0 : v4lead >= 16 ? 1 : 2;
    this.data = new AccountData(this.depth);
  }

  /** Takes the counters out and leaves empty ones (read-and-flush). */
  flush(): AccountData {
    const old = this.data;
    this.data = new AccountData(this.depth);
    this.data.mirror = old.mirror;
    this.data.notify = old.notify;
    return old;
  }

  // ---- cluster mode (issue 15): this gateway's totals and the other gateways' latest ones
  /** This gateway's counts since `epoch` (null: not shared). */
  total: AccountData | null = null;
  epoch = '';
  /** Monotonic ms of the last export (re-exported at most once a second). */
  sharedAt = -Infinity;
  /** The latest totals of every other gateway: [low, srcPackets, srcBytes, dstPackets, dstBytes] rows. */
  readonly remote = new Map<string, { epoch: string; entries: number[][] }>();

  /** The address of record `low` (its block and octet: the last 8, 16 or 24 bits by depth) in the network. */
  address(low: number): string {
    const host = this.depth === 0 ? 0xff : this.depth === 1 ? 0xffff : 0xffffff;
    if (this.family === 4) return ipv4ToString(this.all ? 0 : ((this.net[0] & ~host) | low) >>> 0);
    const w = Uint32Array.from(this.net);
    w[3] = this.all ? 0 : ((w[3] & ~host) | low) >>> 0;
    return ipv6ToInetNtop(w);
  }

  /** Addresses in the table's prefix (the bound `xtr status` shows). */
  get capacity(): number {
    if (this.all) return 1;
    return this.depth === 0 ? BLOCK : this.depth === 1 ? BLOCK * BLOCK : BLOCK * BLOCK * BLOCK;
  }
}

/** The table slots of one router (upstream's per-namespace table array): name per slot, null = free. */
export interface AccountSlots {
  readonly slots: (string | null)[];
}

const SLOTS_KEY = 'ACCOUNT';
const tableKey = (name: string) => `ACCOUNT:${name}`;

/** What a table saves: its prefix (checked on load) and the records with traffic. */
interface AccountSnapshot {
  family: Family;
  net: string;
  mask: string;
  entries: number[][];
}

function maskText(t: { family: Family; mask: Uint32Array }): string {
  return t.family === 4 ? ipv4ToString(t.mask[0]) : ipv6ToInetNtop(t.mask);
}

function netText(t: { family: Family; net: Uint32Array }): string {
  return t.family === 4 ? ipv4ToString(t.net[0]) : ipv6ToInetNtop(t.net);
}

function snapshot(t: AccountTable): AccountSnapshot {
  return { family: t.family, net: netText(t), mask: maskText(t), entries: t.data.entries() };
}

function loadSnapshot(t: AccountTable, saved: unknown): void {
  const s = saved as AccountSnapshot;
  if (typeof s !== 'object' || s === null || !Array.isArray(s.entries)) throw new XtError(`ACCOUNT: ${t.name}: saved state is not a table snapshot`, 1);
  if (s.family !== t.family || s.net !== netText(t) || s.mask !== maskText(t)) {
    throw new XtError(`ACCOUNT: ${t.name}: saved for ${s.net}/${s.mask}, the rules now say ${netText(t)}/${maskText(t)}`, 1);
  }
  const max = t.capacity;
  for (const e of s.entries) {
    if (!Array.isArray(e) || e.length !== 5 || !e.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0) || e[0] >= max) {
      throw new XtError(`ACCOUNT: ${t.name}: saved entry ${JSON.stringify(e)} is not [host, srcPackets, srcBytes, dstPackets, dstBytes]`, 1);
    }
  }
  const data = new AccountData(t.depth);
  for (const [low, sp, sb, dp, db] of s.entries) {
    if (sp === 0 && dp === 0) continue;
    const b = data.block(low);
    const r = (low & 0xff) * REC;
    b[r] = sp;
    b[r + 1] = sb;
    b[r + 2] = dp;
    b[r + 3] = db;
    data.itemcount++;
  }
  t.data = data;
}

function maxTables(env: CheckEnv): number {
  const s = (env.settings.ACCOUNT ?? {}) as { max_tables_limit?: unknown };
  const n = s.max_tables_limit ?? ACCOUNT_MAX_TABLES;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65536) {
    throw new XtError(`settings.ACCOUNT.max_tables_limit: ${JSON.stringify(n)}: must be an integer 1..65536`, 1);
  }
  return n;
}

// ---- option parsing (libxt_ACCOUNT is an old-style parser: its own words, `!` ignored)

/** One number of libxtables' xtables_strtoui with base 0 (leading space, 0x hex, 0 octal), at most `max`; null if not. */
function xtNumber(s: string, max: number): number | null {
  const m = /^[ \t\n\v\f\r]*\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return null;
  const v = Number(m[1].length > 1 && m[1][0] === '0' && !/[xX]/.test(m[1]) ? `0o${m[1].slice(1)}` : m[1]);
  return v <= max ? v : null;
}

/**
 * xtables_numeric_to_ipaddr (and _ipmask): 1..4 dot-separated base-0 numbers
 * of 0..255, missing ones 0 ("10.1" is 10.1.0.0, "010.1.0.0" is 8.1.0.0); a
 * mask needs all four.
 */
function xtIpv4(s: string, mask: boolean): number | null {
  const parts = s.split('.');
  if (parts.length > 4 || (mask && parts.length !== 4)) return null;
  let v = 0;
  for (let i = 0; i < 4; i++) {
    const n = i < parts.length ? xtNumber(parts[i], 255) : 0;
    if (n === null) return null;
    v = v * 256 + n;
  }
  return v >>> 0;
}

/** xtables_ipparse_any / xtables_ip6parse_any for one word, without name resolution (xtr resolves no names in rules). */
function parseNet(text: string, family: Family): { net: Uint32Array; mask: Uint32Array } {
  const slash = text.indexOf('/');
  const host = slash < 0 ? text : text.slice(0, slash);
  const m = slash < 0 ? null : text.slice(slash + 1);
  const width = family === 4 ? 32 : 128;
  const words = family === 4 ? 1 : 4;
  const mask = new Uint32Array(4);
  if (m === null) for (let i = 0; i < words; i++) mask[i] = 0xffffffff;
  else {
    let ok = false;
    if (family === 4 && m.includes('.')) {
      const a = xtIpv4(m, true);
      if (a !== null) {
        mask[0] = a;
        ok = true;
      }
    } else if (family === 6 && m.includes(':')) {
      const w = ipv6FromText(m, DottedQuad.LEADING_ZEROS);
      if (w) {
        mask.set(w);
        ok = true;
      }
    } else {
      const bits = family === 4 ? xtNumber(m, width) : /^[0-9]+$/.test(m) && Number(m) <= width ? Number(m) : null;
      if (bits !== null) {
        for (let i = 0; i < words; i++) mask[i] = prefixMaskWord(bits, i);
        ok = true;
      }
    }
    if (!ok) throw new XtError(`invalid mask \`${m}' specified`);
  }
  const net = new Uint32Array(4);
  // A zero mask forces the address to 0 without looking at it, as libxtables does.
  if (mask.every((w) => w === 0)) return { net, mask };
  let parsed: Uint32Array | null = null;
  if (family === 4) {
    const a = host === '' ? null : xtIpv4(host, false);
    parsed = a !== null ? Uint32Array.of(a, 0, 0, 0) : null;
  } else parsed = ipv6FromText(host, DottedQuad.LEADING_ZEROS);
  if (parsed === null) throw new XtError(`host/network \`${host}' not found`);
  for (let i = 0; i < 4; i++) net[i] = (parsed[i] & mask[i]) >>> 0;
  return { net, mask };
}

function formatAddrMask(p: AccountParams): string {
  const len = maskPrefixLength(p.mask, p.family === 4 ? 1 : 4);
  const full = p.family === 4 ? 32 : 128;
  if (len === full) return netText(p);
  return `${netText(p)}/${len >= 0 ? len : maskText(p)}`;
}

// ---- the control command scripts/iptaccount uses

function tableOf(state: StateLookup, name: string): AccountTable {
  const t = state.get<AccountTable>(tableKey(name));
  if (!t) throw new XtError(`ACCOUNT: table ${JSON.stringify(name)} not found`, 1);
  return t;
}

/** The fleet's sums: this gateway's totals (its live counters when not shared) plus every other gateway's latest. */
function fleetListing(t: AccountTable): string {
  const sum = new Map<number, number[]>();
  const add = (row: readonly number[]) => {
    const cur = sum.get(row[0]);
    if (cur) for (let i = 1; i < 5; i++) cur[i] += row[i];
    else sum.set(row[0], row.slice(0, 5));
  };
  (t.total ?? t.data).each((low, sp, sb, dp, db) => add([low, sp, sb, dp, db]));
  for (const r of t.remote.values()) for (const row of r.entries) add(row);
  return [...sum.values()]
    .sort((a, b) => a[0] - b[0])
    .map((r) => `${t.address(r[0])} ${r[1]} ${r[2]} ${r[3]} ${r[4]}\n`)
    .join('');
}

const ACCOUNT_REEXPORT_MS = 1000;

/**
 * Cluster sharing: one record per table per gateway, `{epoch, entries}` with
 * this gateway's running totals since its counters started (a read-flush does
 * not reset them); re-sent at most once a second. Others keep the latest of
 * each gateway apart from their own counters; `read-fleet` sums them.
 */
const sharedAccount: StateShared<AccountTable, AccountTable> = {
  kind: 'account',
  perGateway: true,
  attach(t, sink) {
    if (sink) {
      if (t.total === null) {
        t.total = new AccountData(t.depth);
        t.epoch = `${Date.now().toString(36)}${Math.floor(Math.random() * 2 ** 32).toString(36)}`;
      }
      t.data.mirror = t.total;
      t.data.notify = () => sink.changed(t);
    } else {
      t.data.mirror = null;
      t.data.notify = null;
    }
  },
  export(t, _item, clock) {
    if (t.total === null) return null;
    const now = clock.now();
    if (now - t.sharedAt < ACCOUNT_REEXPORT_MS) return undefined;
    t.sharedAt = now;
    return { id: 'totals', data: { epoch: t.epoch, entries: t.total.entries() } };
  },
  apply(t, _id, data, from) {
    const r = data as { epoch?: unknown; entries?: unknown };
    const cap = t.capacity;
    const ok =
      typeof r === 'object' && r !== null && typeof r.epoch === 'string' && Array.isArray(r.entries) &&
      r.entries.every((e) => Array.isArray(e) && e.length === 5 && e.every((x) => typeof x === 'number' && x >= 0 && Number.isFinite(x)) && Number.isInteger(e[0]) && e[0] < Math.max(cap, 256));
    if (!ok) throw new XtError(`ACCOUNT: ${t.name}: bad cluster record`, 1);
    t.remote.set(from, { epoch: r.epoch as string, entries: r.entries as number[][] });
  },
};

function listing(t: AccountTable, data: AccountData): string {
  const lines: string[] = [];
  data.each((low, sp, sb, dp, db) => lines.push(`${t.address(low)} ${sp} ${sb} ${dp} ${db}\n`));
  return lines.join('');
}

/**
 * `xtr ext account names` - table names in slot order, one a line;
 * `xtr ext account read NAME` - one line per address with traffic:
 *   "ADDR SRC_PACKETS SRC_BYTES DST_PACKETS DST_BYTES", ascending;
 * `xtr ext account read-flush NAME` - the same, and the counters start again from zero;
 * `xtr ext account read-fleet NAME` - cluster mode (docs/cluster.md): the same lines summed over
 *   every gateway of the cluster (each one's running totals, which read-flush does not reset);
 * `xtr ext account handles` - upstream's kernel read handles in use: always 0
 *   (a read here is one synchronous call, it holds nothing between calls).
 */
export const accountCommand: ModuleCommand = {
  name: 'account',
  usage: 'names | read NAME | read-flush NAME | read-fleet NAME | handles',
  run(args, state) {
    const [sub, name, ...rest] = args;
    if (sub === 'names' && name === undefined) {
      const slots = state.get<AccountSlots>(SLOTS_KEY);
      return (slots?.slots ?? []).filter((n): n is string => n !== null).map((n) => `${n}\n`).join('');
    }
    if (sub === 'handles' && name === undefined) return '0\n';
    if ((sub === 'read' || sub === 'read-flush') && name !== undefined && rest.length === 0) {
      const t = tableOf(state, name);
      return listing(t, sub === 'read-flush' ? t.flush() : t.data);
    }
    // Issue 15: cluster mode's fleet-wide sums (docs/cluster.md "ACCOUNT").
    if (sub === 'read-fleet' && name !== undefined && rest.length === 0) return fleetListing(tableOf(state, name));
    throw new XtError(`bad arguments ${JSON.stringify(args.join(' '))}`);
  },
};

const ACCOUNT: TargetExtension<AccountParams> = {
  kind: 'target',
  name: 'ACCOUNT',
  families: [4, 6],
  // Upstream's parser ignores `!` before its options: invertible here so the rule parser lets it through.
  options: [
    { name: 'addr', arg: 'required', invertible: true },
    { name: 'tname', arg: 'required', invertible: true },
  ],
  commands: [accountCommand],
  parse(opts, rule) {
    let addr: { net: Uint32Array; mask: Uint32Array } | null = null;
    let name: string | null = null;
    for (const o of opts) {
      const v = o.value ?? '';
      if (o.name === 'addr') {
        if (addr) throw new XtError("Can't specify --addr twice");
        addr = parseNet(v, rule.family);
      } else {
        if (name !== null) throw new XtError("Can't specify --tname twice");
        if (Buffer.byteLength(v) > ACCOUNT_NAME_MAX) throw new XtError(`Maximum table name length ${ACCOUNT_NAME_MAX} for --tname`);
        name = v;
      }
    }
    if (!addr || name === null) throw new XtError('ACCOUNT: needs --addr and --tname');
    return { family: rule.family, net: addr.net, mask: addr.mask, name };
  },
  check(p, env) {
    const einval = (line: string) => new XtError(line, 1, 'EINVAL');
    // Upstream's userspace lets an empty name through and the kernel then takes it for a free slot: refused here.
    if (p.name === '') throw einval('ACCOUNT: an empty --tname cannot name a table');
    let lead = 0;
    const words = p.family === 4 ? 1 : 4;
    for (let i = 0; i < words && lead === i * 32; i++) lead += Math.clz32(~p.mask[i] >>> 0);
    const hostReach = p.family === 4 ? 8 : 104;
    if (lead !== 0 && lead < hostReach) {
      throw einval(`ACCOUNT: --addr ${formatAddrMask(p)}: the largest prefix a table can count is /${hostReach} (2^24 addresses), or /0 for one total`);
    }
    const limit = maxTables(env);
    // Addresses the prefix holds (its leading run, as the storage): the bound `xtr status` shows.
    const capacity = lead === 0 ? 1 : 2 ** ((p.family === 4 ? 32 : 128) - lead);
    const slotsSpec: StateSpec<AccountSlots> = { key: SLOTS_KEY, create: () => ({ slots: [] }) };
    const slots = env.state.declare(slotsSpec);
    const key = tableKey(p.name);
    const spec: StateSpec<AccountTable> = {
      key,
      create: () => {
        let slot = slots.slots.indexOf(null);
        if (slot < 0) slot = slots.slots.length;
        if (slot >= limit) throw einval(`ACCOUNT: No free table slot found (max: ${limit}). Use max_tables_limit module parameter.`);
        slots.slots[slot] = p.name;
        return new AccountTable(p.name, p.family, Uint32Array.from(p.net), Uint32Array.from(p.mask));
      },
      release: () => {
        const slot = slots.slots.indexOf(p.name);
        if (slot >= 0) slots.slots[slot] = null;
        while (slots.slots.length > 0 && slots.slots[slots.slots.length - 1] === null) slots.slots.pop();
      },
      limit: { max: capacity, eviction: 'none: every address of the prefix has its record', count: (t) => t.data.itemcount },
      save: (t) => snapshot(t),
      load: (t, saved) => loadSnapshot(t, saved),
      shared: sharedAccount,
    };
    let table: AccountTable;
    try {
      table = env.state.declare(spec);
    } catch (e) {
      env.state.release(SLOTS_KEY);
      throw e;
    }
    const same = table.family === p.family && table.net.every((w, i) => w === p.net[i]) && table.mask.every((w, i) => w === p.mask[i]);
    if (!same) {
      env.state.release(key);
      env.state.release(SLOTS_KEY);
      throw einval(`ACCOUNT: Table ${p.name} found, but IP/netmask mismatch. IP/netmask found: ${netText(table)}/${maskText(table)}\nACCOUNT: Table insert problem. Aborting`);
    }
    let released = false;
    const destroy = () => {
      if (released) return;
      released = true;
      env.state.release(key);
      env.state.release(SLOTS_KEY);
    };
    const net = table.net;
    const mask = table.mask;
    if (table.all) {
      return {
        target(pkt: PacketContext): number {
          table.data.count(0, 0, pkt.l3len);
          return XT_CONTINUE;
        },
        destroy,
      };
    }
    if (p.family === 4) {
      const n0 = net[0];
      const m0 = mask[0];
      return {
        target(pkt: PacketContext): number {
          const data = table.data;
          const size = pkt.l3len;
          const src = pkt.src4;
          const dst = pkt.dst4;
          if (((src & m0) >>> 0) === n0) data.count(src & 0xffffff, 0, size);
          if (((dst & m0) >>> 0) === n0) data.count(dst & 0xffffff, 2, size);
          return XT_CONTINUE;
        },
        destroy,
      };
    }
    const [n0, n1, n2, n3] = net;
    const [m0, m1, m2, m3] = mask;
    const inside = (a: Uint32Array) => ((a[0] & m0) >>> 0) === n0 && ((a[1] & m1) >>> 0) === n1 && ((a[2] & m2) >>> 0) === n2 && ((a[3] & m3) >>> 0) === n3;
    return {
      target(pkt: PacketContext): number {
        const data = table.data;
        const size = pkt.l3len;
        if (inside(pkt.src6)) data.count(pkt.src6[3] & 0xffffff, 0, size);
        if (inside(pkt.dst6)) data.count(pkt.dst6[3] & 0xffffff, 2, size);
        return XT_CONTINUE;
      },
      destroy,
    };
  },
  save(p) {
    return ` --addr ${formatAddrMask(p)}  --tname ${p.name}`;
  },
  print(p) {
    return ` ACCOUNT addr ${formatAddrMask(p)} tname ${p.name}`;
  },
};

export default ACCOUNT;
