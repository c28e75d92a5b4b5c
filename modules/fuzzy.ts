/**
 * `-m fuzzy [--lower-limit N] [--upper-limit N]` (xtables-addons xt_fuzzy,
 * revision 1): a per-rule Takagi-Sugeno rate controller that *matches* the
 * packets it wants rejected, with upstream's integer arithmetic exactly
 * (matches-facts.md §5):
 *
 *  - the rate is estimated only when more than HZ/10 jiffies have passed
 *    since the last estimate, from the packets counted since (the current
 *    one included): rate = HZ * packets / elapsed, 32-bit unsigned;
 *  - acceptance = high * 1/100 + low, the "1/100" being a C macro, so
 *    (high * 1) / 100 + low: 100 at or below the lower limit, 1 (not 0) at
 *    or above the upper limit, floor(100 (upper - rate) / (upper - lower))
 *    between;
 *  - below 100 one random byte r decides: r <= floor(255 * acceptance / 100)
 *    passes (no match), otherwise the packet matches;
 *  - a clock that went backwards (32-bit jiffies wrap) resets the counters
 *    without an estimate.
 *
 * xtr's jiffies are the packet clock's milliseconds (HZ = 1000, low 32
 * bits). The kernel's first packet meets previous_time = 0 with jiffies far
 * from 0, so it always estimates (rate ~ 0, acceptance 100); xtr's clock may
 * start near 0, so a fresh rule's first packet is made to estimate the same
 * way rather than leave the initial acceptance of 0 in force.
 */
import type { PacketContext } from '../xt/packet.js';
import { type MatchExtension, type ParsedOption, XtError } from '../xt/extension.js';
import { parseUint } from './lib/numbers.js';

const HZ = 1000;
const FUZZY_MIN_RATE = 3;
const FUZZY_MAX_RATE = 10_000_000;

export interface FuzzyParams {
  readonly lower: number;
  readonly upper: number;
}

/** mf_high / mf_low of upstream: membership in "high" and "low" rate, 0..100. */
function mfHigh(rate: number, lo: number, hi: number): number {
  if (rate >= hi) return 100;
  if (rate <= lo) return 0;
  return Math.floor((100 * (rate - lo)) / (hi - lo));
}
function mfLow(rate: number, lo: number, hi: number): number {
  if (rate <= lo) return 100;
  if (rate >= hi) return 0;
  return Math.floor((100 * (hi - rate)) / (hi - lo));
}

/** The acceptance rate (percent) for an estimated rate: exported for the tests' table. */
export function acceptanceRate(rate: number, lo: number, hi: number): number {
  return Math.floor(mfHigh(rate, lo, hi) / 100) + mfLow(rate, lo, hi);
}

/** One rule's controller: the state upstream keeps in its matchinfo. */
export class FuzzyController {
  packetsTotal = 0;
  bytesTotal = 0;
  previousTime = 0;
  meanRate = 0;
  acceptance = 0;
  private fresh = true;

  constructor(
    readonly lower: number,
    readonly upper: number,
  ) {}

  /** One packet at jiffies `now` (32-bit); `randomByte` is drawn only when the acceptance is below 100. True = match (reject it). */
  step(now: number, l3len: number, randomByte: () => number): boolean {
    this.bytesTotal = (this.bytesTotal + l3len) >>> 0;
    this.packetsTotal = (this.packetsTotal + 1) >>> 0;
    const present = now >>> 0;
    let amount: number;
    if (this.fresh) {
      this.fresh = false;
      amount = 0xffffffff; // "a very long time since jiffies 0", as the kernel's first packet sees it
    } else if (present >= this.previousTime) {
      amount = present - this.previousTime;
    } else {
      amount = 0;
      this.previousTime = present;
      this.bytesTotal = this.packetsTotal = 0;
    }
    if (amount > Math.floor(HZ / 10)) {
      this.meanRate = Math.floor((Math.imul(HZ, this.packetsTotal) >>> 0) / amount);
      this.previousTime = present;
      this.bytesTotal = this.packetsTotal = 0;
      this.acceptance = acceptanceRate(this.meanRate, this.lower, this.upper) & 0xff;
    }
    if (this.acceptance < 100) return randomByte() > Math.floor((255 * this.acceptance) / 100);
    return false;
  }
}

function limitOption(o: ParsedOption, seen: boolean, what: 'lower' | 'upper'): number {
  if (o.inverted) throw new XtError(`Can't specify ! --${what}-limit`);
  if (seen) throw new XtError(`Can't specify --${what}-limit twice`);
  const n = parseUint(o.value ?? '', FUZZY_MAX_RATE);
  if (n < 1) throw new XtError(`BAD --${what}-limit`);
  return n;
}

const fuzzy: MatchExtension<FuzzyParams> = {
  kind: 'match',
  name: 'fuzzy',
  revision: 1,
  families: [4, 6],
  // `!` is taken so that fuzzy's own "Can't specify !" is the message.
  options: [
    { name: 'lower-limit', arg: 'required', invertible: true },
    { name: 'upper-limit', arg: 'required', invertible: true },
  ],
  parse(opts) {
    let lower = 1000;
    let upper = 2000;
    let haveLower = false;
    let haveUpper = false;
    for (const o of opts) {
      if (o.name === 'lower-limit') {
        lower = limitOption(o, haveLower, 'lower');
        haveLower = true;
      } else {
        upper = limitOption(o, haveUpper, 'upper');
        haveUpper = true;
      }
    }
    return { lower, upper };
  },
  check(p, env) {
    if (p.lower < FUZZY_MIN_RATE || p.upper > FUZZY_MAX_RATE || p.lower >= p.upper) {
      throw new XtError('xt_fuzzy: bad values, please check.', 1, 'EDOM');
    }
    const controller = new FuzzyController(p.lower, p.upper);
    const services = env.services;
    const randomByte = () => services.random() & 0xff;
    return {
      match: (pkt: PacketContext) => controller.step(Math.floor(pkt.now), pkt.l3len, randomByte),
    };
  },
  save(p) {
    return ` --lower-limit ${p.lower}  --upper-limit ${p.upper} `;
  },
  print(p) {
    return ` -m fuzzy --lower-limit ${p.lower}  --upper-limit ${p.upper} `;
  },
};

export default fuzzy;
