/**
 * `-m quota2 [--name NAME] [!] --quota N [--grow] [--no-change] [--packets]`
 * (xtables-addons' libxt_quota2 + xt_quota2, revision 3): a byte or packet
 * counter that counts down to zero (a quota) or up (--grow, accounting),
 * shared by name between rules of both families and readable and writable as
 * /proc/net/xt_quota/NAME. Facts: ../shared/spec/matches-facts.md §13.
 *
 * As upstream v3:
 *  - options once each, only --quota invertible, in libxt_quota2's words
 *    ("quota: ..."); --quota is strtoull base 0: `-1` wraps to 2^64-1, too
 *    large saturates, junk after the number is "invalid value";
 *  - a name longer than 14 bytes is cut to 14 (names sharing 14 bytes share a
 *    counter); a name starting with "." or holding "/" is refused by the
 *    kernel check (EINVAL); no name (or an empty one) is an anonymous counter
 *    private to the rule, without a proc file;
 *  - cost c = 1 with --packets, else the IP length. --grow: counter += c
 *    (unless --no-change), always matches. Countdown: counter >= c takes c
 *    (unless --no-change) and matches (not inverted); otherwise the counter
 *    drops to 0 (unless --no-change) and it does not match (inverted: does);
 *  - iptables-save prints the counter's value now (a restore of that text
 *    starts anonymous counters where they were);
 *  - proc read "N\n"; proc write of at most 22 characters, kernel strtoull /
 *    strtoll (base 0, stops at the first invalid character): "+X" adds,
 *    "-X" subtracts (to 0 rather than below), anything else sets.
 *
 * Counters are unsigned 64-bit, kept as two 32-bit halves so the packet path
 * stays exact to 2^64 without BigInt allocations. A named counter is declared
 * state (key "quota2:NAME"): saved across restarts with its value; an anonymous
 * one lives in its rule and comes back from the saved rule text.
 */
import type { PacketContext } from '../xt/packet.js';
import { XtError, type MatchExtension } from '../xt/extension.js';
import type { SharedSink, StateShared, StateSpec } from '../xt/state.js';

/** xt_quota_mtinfo3's name field: 15 bytes with the NUL. */
export const QUOTA2_NAME_MAX = 14;
const U64_MAX = (1n << 64n) - 1n;

/** A u64 counter as two halves (hi, lo), each 0..2^32-1. */
export class Quota64 {
  hi = 0;
  lo = 0;
  /** Issue 15 (docs/cluster.md "quota2"): the cluster's sink while the counter is shared; null = local only. */
  sink: SharedSink<Quota64> | null = null;
  /** What this gateway's rules consumed (or grew) since `epoch` began: its record's total. */
  own = 0;
  /** This incarnation of the counter (a restart starts a new one, from 0). */
  epoch = '';
  /** The last total seen from each other gateway, by epoch, so a record applies only its difference. */
  seen: Map<string, { epoch: string; total: number }> | null = null;
  /** A --grow rule counts on it: others' totals are added, not taken. */
  grow = false;
  /** Monotonic ms of the last export: a --grow counter (accounting, not a limit) is re-sent at most once a second. */
  sharedAt = -Infinity;
  constructor(v: bigint = 0n) {
    this.set(v);
  }
  get(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }
  set(v: bigint): void {
    const x = BigInt.asUintN(64, v);
    this.hi = Number(x >> 32n);
    this.lo = Number(x & 0xffffffffn);
  }
  /** counter >= c for 0 <= c < 2^32. */
  atLeast(c: number): boolean {
    return this.hi > 0 || this.lo >= c;
  }
  /** counter -= c, only when atLeast(c). */
  take(c: number): void {
    if (this.lo >= c) this.lo -= c;
    else {
      this.hi--;
      this.lo = this.lo + 0x100000000 - c;
    }
  }
  /** counter += c, wrapping at 2^64 as the kernel's u64. */
  add(c: number): void {
    this.lo += c;
    if (this.lo > 0xffffffff) {
      this.lo -= 0x100000000;
      this.hi = (this.hi + 1) >>> 0;
    }
  }
  toString(): string {
    return this.get().toString();
  }
}

export interface Quota2Params {
  /** "" = anonymous. */
  name: string;
  quota: bigint;
  invert: boolean;
  grow: boolean;
  packets: boolean;
  noChange: boolean;
  /** The counter the checked rule uses (what save prints), set by check. */
  live?: Quota64;
}

/** The kernel's simple_strtoull prefix: base from the prefix (0x/0), digits until the first that does not fit. */
function kstrtoull(s: string): bigint {
  let i = 0;
  let base = 10n;
  if (s[0] === '0') {
    if ((s[1] === 'x' || s[1] === 'X') && /[0-9a-fA-F]/.test(s[2] ?? '')) {
      base = 16n;
      i = 2;
    } else base = 8n;
  }
  let v = 0n;
  for (; i < s.length; i++) {
    const d = parseInt(s[i], 16);
    if (Number.isNaN(d) || BigInt(d) >= base) break;
    v = (v * base + BigInt(d)) & U64_MAX;
  }
  return v;
}

/** simple_strtoll: an optional leading "-", then kstrtoull. */
function kstrtoll(s: string): bigint {
  return s[0] === '-' ? -BigInt.asIntN(64, kstrtoull(s.slice(1))) : BigInt.asIntN(64, kstrtoull(s));
}

/** The v3 proc write: at most 22 characters; "+X" adds, "-X" subtracts, anything else sets. */
export function quotaProcWrite(q: Quota64, data: string): void {
  const s = Buffer.from(data, 'utf8').subarray(0, 22).toString('latin1');
  const cur = q.get();
  if (s[0] === '+') {
    const x = kstrtoll(s.slice(1));
    if (x > 0n || -x < cur) q.set(cur + x);
    else q.set(0n);
  } else if (s[0] === '-') {
    const x = kstrtoll(s.slice(1));
    if (x < 0n || x < cur) q.set(cur - x);
    else q.set(0n);
  } else q.set(kstrtoull(s));
}

/** glibc strtoull with base 0 as libxt_quota2 reads --quota: leading space, sign (negation wraps), saturation; null = junk after it. */
function parseQuota(s: string): bigint | null {
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)?(.*)$/s.exec(s)!;
  const [, sign, digits, rest] = m;
  if (digits === undefined) return s === '' ? 0n : null;
  if (rest !== '') return null;
  let v = BigInt(digits.length > 1 && digits[0] === '0' && !/[xX]/.test(digits) ? `0o${digits.slice(1)}` : digits);
  if (v > U64_MAX) v = U64_MAX;
  else if (sign === '-') v = BigInt.asUintN(64, -v);
  return v;
}

function consumed(q: Quota64, c: number): void {
  q.own += c;
  q.sink!.changed(q);
}

/**
 * Cluster sharing: each gateway publishes its own running total (consumed by a
 * countdown, grown by --grow) per counter incarnation; another gateway applies
 * the difference from the total it saw last (subtracted from a countdown,
 * floored at 0; added to a --grow counter). A countdown goes at every flush (it
 * is a limit); a --grow counter at most once a second (it is accounting). Totals make records idempotent and
 * let the outbox keep only the latest. Proc writes stay local.
 */
const sharedQuota: StateShared<Quota64, Quota64> = {
  kind: 'quota2',
  perGateway: true,
  attach(q, sink) {
    q.sink = sink;
    if (sink && q.epoch === '') q.epoch = `${Date.now().toString(36)}${Math.floor(Math.random() * 2 ** 32).toString(36)}`;
    if (sink && q.seen === null) q.seen = new Map();
  },
  export(q, _item, clock) {
    if (q.grow) {
      const now = clock.now();
      if (now - q.sharedAt < 1000) return undefined;
      q.sharedAt = now;
    }
    return { id: 'total', data: { epoch: q.epoch, total: q.own } };
  },
  apply(q, _id, data, from) {
    const r = data as { epoch?: unknown; total?: unknown; grow?: unknown };
    if (typeof r !== 'object' || r === null || typeof r.epoch !== 'string' || typeof r.total !== 'number' || !(r.total >= 0)) throw new XtError('quota2: bad cluster record', 1);
    const seen = (q.seen ??= new Map());
    const prev = seen.get(from);
    const base = prev && prev.epoch === r.epoch ? prev.total : 0;
    const delta = r.total - base;
    if (delta <= 0) return;
    seen.set(from, { epoch: r.epoch, total: r.total });
    if (q.grow) q.set(q.get() + BigInt(delta));
    else {
      const cur = q.get();
      q.set(cur > BigInt(delta) ? cur - BigInt(delta) : 0n);
    }
  },
};

const quota2: MatchExtension<Quota2Params> = {
  kind: 'match',
  name: 'quota2',
  revision: 3,
  families: [4, 6],
  // libxt_quota2 says which options may be inverted itself, in its words: all pass the rule parser.
  options: [
    { name: 'name', arg: 'required', invertible: true },
    { name: 'quota', arg: 'required', invertible: true },
    { name: 'grow', arg: 'none', invertible: true },
    { name: 'no-change', arg: 'none', invertible: true },
    { name: 'packets', arg: 'none', invertible: true },
  ],
  parse(opts) {
    const p: Quota2Params = { name: '', quota: 0n, invert: false, grow: false, packets: false, noChange: false };
    const seen = new Set<string>();
    for (const o of opts) {
      if (seen.has(o.name)) throw new XtError(`quota: "--${o.name}" option may only be specified once`);
      seen.add(o.name);
      if (o.inverted && o.name !== 'quota') throw new XtError(`quota: "--${o.name}" option cannot be inverted`);
      const v = o.value ?? '';
      if (o.name === 'name') p.name = Buffer.from(v).subarray(0, QUOTA2_NAME_MAX).toString();
      else if (o.name === 'quota') {
        const q = parseQuota(v);
        if (q === null) throw new XtError('quota match: invalid value for --quota');
        p.quota = q;
        p.invert = o.inverted;
      } else if (o.name === 'grow') p.grow = true;
      else if (o.name === 'no-change') p.noChange = true;
      else p.packets = true;
    }
    return p;
  },
  check(p, env) {
    let counter: Quota64;
    let key: string | null = null;
    if (p.name === '') counter = new Quota64(p.live ? p.live.get() : p.quota);
    else {
      if (p.name.startsWith('.') || p.name.includes('/')) throw new XtError('xt_quota.3: illegal name', 1, 'EINVAL');
      const initial = p.quota;
      const spec: StateSpec<Quota64> = {
        key: `quota2:${p.name}`,
        create: () => new Quota64(initial),
        proc: {
          path: `net/xt_quota/${p.name}`,
          read: (q) => `${q.toString()}\n`,
          write: (q, data) => quotaProcWrite(q, data),
        },
        // Shared (cluster mode): the other gateways' totals already applied are saved too, so a restart does not apply them twice.
        save: (q) => (q.seen && q.seen.size ? { value: q.toString(), seen: Object.fromEntries(q.seen) } : q.toString()),
        load: (q, saved) => {
          const obj = typeof saved === 'object' && saved !== null ? (saved as { value?: unknown; seen?: unknown }) : null;
          const value = obj ? obj.value : saved;
          if (typeof value !== 'string' || !/^[0-9]+$/.test(value) || BigInt(value) > U64_MAX) throw new XtError(`quota2: ${p.name}: saved value ${JSON.stringify(saved)} is not a u64`, 1);
          q.set(BigInt(value));
          if (obj && typeof obj.seen === 'object' && obj.seen !== null) {
            q.seen = new Map();
            for (const [gw, v] of Object.entries(obj.seen as Record<string, { epoch?: unknown; total?: unknown }>)) {
              if (typeof v?.epoch === 'string' && typeof v.total === 'number') q.seen.set(gw, { epoch: v.epoch, total: v.total });
            }
          }
        },
        shared: sharedQuota,
      };
      key = spec.key;
      counter = env.state.declare(spec);
    }
    p.live = counter;
    const { grow, packets, noChange, invert } = p;
    if (grow) counter.grow = true;
    let released = false;
    return {
      match(pkt: PacketContext): boolean {
        const c = packets ? 1 : pkt.l3len;
        if (grow) {
          if (!noChange) {
            counter.add(c);
            if (counter.sink !== null) consumed(counter, c);
          }
          return true;
        }
        if (counter.atLeast(c)) {
          if (!noChange) {
            counter.take(c);
            if (counter.sink !== null) consumed(counter, c);
          }
          return !invert;
        }
        if (!noChange) {
          // Shared: the rest the exhaustion throws away counts as consumed, so every gateway reaches 0.
          if (counter.sink !== null && (counter.hi !== 0 || counter.lo !== 0)) consumed(counter, counter.hi * 0x100000000 + counter.lo);
          counter.hi = counter.lo = 0;
        }
        return invert;
      },
      destroy() {
        if (released || key === null) return;
        released = true;
        env.state.release(key);
      },
    };
  },
  save(p) {
    let s = '';
    if (p.grow) s += ' --grow ';
    if (p.noChange) s += ' --no-change ';
    if (p.packets) s += ' --packets ';
    if (p.name !== '') s += ` --name ${p.name} `;
    if (p.invert) s += ' !';
    s += ` --quota ${p.live ? p.live.toString() : p.quota.toString()} `;
    return s;
  },
  print(p) {
    return ` -m quota${quota2.save(p)}`;
  },
};

export default quota2;
