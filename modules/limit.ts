/**
 * `-m limit --limit N/unit --limit-burst B`: a token bucket per rule, with
 * the kernel's xt_limit integer arithmetic (credits per jiffy, 32-bit
 * credit counters) so rates, bursts and refusals ("Overflow, try lower")
 * come out exactly as on Linux with HZ = LIMIT_HZ.
 */
import type { PacketContext } from '../xt/packet.js';
import { XtError, type MatchExtension } from '../xt/extension.js';
import { parseUint } from './lib/numbers.js';
import { x6Check } from './lib/options.js';

/** Tick rate the bucket refills at (see docs/compat.md: xtr's jiffies are milliseconds). */
export const LIMIT_HZ = 1000;
const XT_LIMIT_SCALE = 10000;
/** The largest power of two ≤ 0xFFFFFFFF / (HZ·86400): credits one jiffy is worth. */
const CREDITS_PER_JIFFY = (() => {
  const max = Math.floor(0xffffffff / (LIMIT_HZ * 60 * 60 * 24));
  let p = 1;
  while (p * 2 <= max) p *= 2;
  return p;
})();

/** The kernel's user2credits, in u32 arithmetic (including its wrap-around). */
export function user2credits(user: number): number {
  user >>>= 0;
  if (user > Math.floor(0xffffffff / (LIMIT_HZ * CREDITS_PER_JIFFY))) {
    return Math.imul(Math.floor(user / XT_LIMIT_SCALE), LIMIT_HZ * CREDITS_PER_JIFFY) >>> 0;
  }
  return Math.floor((user * LIMIT_HZ * CREDITS_PER_JIFFY) / XT_LIMIT_SCALE) >>> 0;
}

/** libxt_limit's parse_rate: the average period in 1/10000 s, or 0 if unparsable. */
export function parseRate(rate: string): number {
  let mult = 1;
  const slash = rate.indexOf('/');
  if (slash >= 0) {
    const unit = rate.slice(slash + 1).toLowerCase();
    if (unit.length === 0) return 0;
    if ('second'.startsWith(unit)) mult = 1;
    else if ('minute'.startsWith(unit)) mult = 60;
    else if ('hour'.startsWith(unit)) mult = 3600;
    else if ('day'.startsWith(unit)) mult = 86400;
    else return 0;
  }
  // atoi: leading digits only, anything after them ignored.
  const m = /^\s*\+?([0-9]+)/.exec(rate);
  const r = m ? Number(m[1]) % 0x100000000 : 0;
  if (r === 0) return 0;
  const avg = Math.floor((XT_LIMIT_SCALE * mult) / r);
  if (avg === 0) throw new XtError(`Rate too fast "${rate}"`);
  return avg;
}

const RATES: readonly (readonly [string, number])[] = [
  ['day', XT_LIMIT_SCALE * 86400],
  ['hour', XT_LIMIT_SCALE * 3600],
  ['min', XT_LIMIT_SCALE * 60],
  ['sec', XT_LIMIT_SCALE],
];

/** libxt_limit's print_rate: the coarsest unit that still shows the rate as an integer. */
export function printRate(period: number): string {
  let i = 1;
  for (; i < RATES.length; i++) {
    const mult = RATES[i][1];
    if (period > mult || Math.floor(mult / period) < mult % period) break;
  }
  return `${Math.floor(RATES[i - 1][1] / period)}/${RATES[i - 1][0]}`;
}

export interface LimitParams {
  avg: number;
  burst: number;
}

/** Per-rule bucket state (the kernel's xt_limit_priv plus the rule's cap and cost). */
export class LimitBucket {
  /** Jiffies at the last packet. */
  prev: number;
  credit: number;
  readonly cap: number;
  readonly cost: number;
  constructor(p: LimitParams, nowMs: number) {
    this.prev = Math.floor((nowMs * LIMIT_HZ) / 1000);
    this.credit = user2credits(Math.imul(p.avg, p.burst) >>> 0);
    this.cap = this.credit;
    this.cost = user2credits(p.avg);
  }
  /** One packet at time nowMs: true if it is within the rate. */
  take(nowMs: number): boolean {
    const now = Math.floor((nowMs * LIMIT_HZ) / 1000);
    const elapsed = now - this.prev;
    this.prev = now;
    // The kernel adds into a 32-bit credit counter: very long idle times wrap.
    let c = (this.credit + ((elapsed * CREDITS_PER_JIFFY) % 0x100000000)) % 0x100000000;
    if (c > this.cap) c = this.cap;
    if (c >= this.cost) {
      this.credit = c - this.cost;
      return true;
    }
    this.credit = c;
    return false;
  }
}

const limit: MatchExtension<LimitParams> = {
  kind: 'match',
  name: 'limit',
  families: [4, 6],
  options: [
    { name: 'limit', arg: 'required' },
    { name: 'limit-burst', arg: 'required' },
  ],
  parse(opts) {
    const given = x6Check('limit', opts, [{ name: 'limit' }, { name: 'limit-burst' }]);
    const p: LimitParams = { avg: Math.floor((XT_LIMIT_SCALE * 3600) / 3), burst: 5 };
    const l = given.get('limit');
    if (l) {
      const v = l.value ?? '';
      const avg = parseRate(v);
      if (avg === 0) throw new XtError(`bad rate "${v}"'`);
      p.avg = avg;
    }
    const b = given.get('limit-burst');
    if (b) {
      const v = b.value ?? '';
      const n = parseUint(v, 10000);
      if (n < 0) throw new XtError('limit: bad value for option "--limit-burst", or out of range (0-10000).\n');
      p.burst = n;
    }
    return p;
  },
  check(p, env) {
    // xt_limit's checkentry: a zero burst, or a burst whose credits overflow 32 bits, is
    // ERANGE ("iptables: Numerical result out of range."); the message is its kernel log line.
    if (p.burst === 0 || user2credits(Math.imul(p.avg, p.burst) >>> 0) < user2credits(p.avg)) {
      throw new XtError(`xt_limit: Overflow, try lower: ${p.avg}/${p.burst}`, 1, 'ERANGE');
    }
    const bucket = new LimitBucket(p, env.services.now());
    return { match: (pkt: PacketContext) => bucket.take(pkt.now) };
  },
  save(p) {
    return ` --limit ${printRate(p.avg)}${p.burst !== 5 ? ` --limit-burst ${p.burst}` : ''}`;
  },
  print(p) {
    return ` limit: avg ${printRate(p.avg)} burst ${p.burst}`;
  },
};

export default limit;
