/**
 * Compiling a checked table into what the packet path runs: per rule one
 * closure for the generic criteria and its match instances, and per chain a
 * classifier that, for a packet, yields the rules that could match in rule
 * order, so 10,000 `-s 10.x.y.z -j DROP` rules cost a hash lookup instead of
 * 10,000 tests.
 *
 * The classifier is a filter, never a decision: every candidate is still
 * evaluated in full, in order, so rule order, counters and side effects of
 * stateful matches are exactly those of a linear scan. A chain is cut into
 * runs of consecutive rules that pin a common field; each run long enough
 * indexes the field that splits it best: an address under one prefix
 * length, the protocol, or a field a match describes (ports, ICMP type) when
 * that match runs before any undescribed match of the rule (a match with
 * side effects, e.g. `recent --set`, is therefore never skipped when a
 * linear scan would have run it). Rules of a run without a value for the
 * field go to its "wildcard" list, merged with the bucket at lookup time;
 * short runs are scanned in order.
 *
 * Nothing here allocates per packet.
 */
import { Verdict, type PacketContext } from '../../xt/packet.js';
import type { IndexedField, MatchInstance, TargetInstance } from '../../xt/extension.js';
import { maskPrefixLength } from '../../dataplane/addr.js';
import type { Chain, Rule, RuleInstances, RuleSpec } from './model.js';
import { runSteps, type Steps } from './slices.js';

export const enum Action {
  NONE = 0,
  ACCEPT = 1,
  DROP = 2,
  RETURN = 3,
  JUMP = 4,
  GOTO = 5,
  TARGET = 6,
}

export class CompiledRule {
  jump: CompiledChain | null = null;
  constructor(
    readonly test: (pkt: PacketContext) => boolean,
    readonly action: Action,
    readonly target: TargetInstance | null,
    /** The model rule: its counters are the rule's counters. */
    readonly rule: Rule,
  ) {}
}

/** Index dimensions; a packet's key for each is computed without allocation. */
const enum Dim {
  SRC4 = 1,
  DST4,
  SRC6,
  DST6,
  PROTO,
  SPORT,
  DPORT,
  ICMP_TYPE,
  ICMP_CODE,
  MARK,
  TTL,
}

const FIELD_DIM: Record<IndexedField, Dim> = {
  sport: Dim.SPORT,
  dport: Dim.DPORT,
  proto: Dim.PROTO,
  icmpType: Dim.ICMP_TYPE,
  icmpCode: Dim.ICMP_CODE,
  mark: Dim.MARK,
  ttl: Dim.TTL,
};

function mix6(a: number, b: number, c: number, d: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ b ^ (h >>> 13), 0xc2b2ae35);
  h = Math.imul(h ^ c ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ d ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

/** Open-addressing int32 -> int32 map (no boxing of keys, no allocation on get). */
class IntMap {
  private readonly keys: Int32Array;
  private readonly vals: Int32Array;
  private readonly used: Uint8Array;
  private readonly mask: number;

  constructor(capacity: number) {
    let size = 8;
    while (size < capacity * 2) size <<= 1;
    this.keys = new Int32Array(size);
    this.vals = new Int32Array(size);
    this.used = new Uint8Array(size);
    this.mask = size - 1;
  }

  private slot(key: number): number {
    return (Math.imul(key, 0x9e3779b1) >>> 7) & this.mask;
  }

  get(key: number): number {
    let s = this.slot(key);
    while (this.used[s] === 1) {
      if (this.keys[s] === key) return this.vals[s];
      s = (s + 1) & this.mask;
    }
    return -1;
  }

  set(key: number, val: number): void {
    let s = this.slot(key);
    while (this.used[s] === 1 && this.keys[s] !== key) s = (s + 1) & this.mask;
    this.used[s] = 1;
    this.keys[s] = key;
    this.vals[s] = val;
  }
}

const EMPTY = new Int32Array(0);

function lowerBound(a: Int32Array, x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** One chain's candidate index. */
class Classifier {
  constructor(
    private readonly dim: Dim,
    /** Mask applied to the packet's address (v4: word 0; v6: four words). */
    private readonly m0: number,
    private readonly m1: number,
    private readonly m2: number,
    private readonly m3: number,
    private readonly map: IntMap,
    private readonly buckets: Int32Array[],
    private readonly wild: Int32Array,
  ) {}

  private key(p: PacketContext): number {
    switch (this.dim) {
      case Dim.SRC4:
        return p.src4 & this.m0;
      case Dim.DST4:
        return p.dst4 & this.m0;
      case Dim.SRC6:
        return mix6(p.src6[0] & this.m0, p.src6[1] & this.m1, p.src6[2] & this.m2, p.src6[3] & this.m3);
      case Dim.DST6:
        return mix6(p.dst6[0] & this.m0, p.dst6[1] & this.m1, p.dst6[2] & this.m2, p.dst6[3] & this.m3);
      case Dim.PROTO:
        return p.proto;
      case Dim.SPORT:
        return p.sport;
      case Dim.DPORT:
        return p.dport;
      case Dim.ICMP_TYPE:
        return p.icmpType;
      case Dim.ICMP_CODE:
        return p.icmpCode;
      case Dim.MARK:
        return p.mark | 0;
      default:
        return p.ttl;
    }
  }

  /** First candidate rule index >= from, or -1. */
  next(p: PacketContext, from: number): number {
    const b = this.map.get(this.key(p));
    const bucket = b < 0 ? EMPTY : this.buckets[b];
    const i = lowerBound(bucket, from);
    const j = lowerBound(this.wild, from);
    const x = i < bucket.length ? bucket[i] : 0x7fffffff;
    const y = j < this.wild.length ? this.wild[j] : 0x7fffffff;
    const r = x < y ? x : y;
    return r === 0x7fffffff ? -1 : r;
  }
}

/**
 * A chain cut into consecutive runs of rules that pin a common field (a blocklist of addresses,
 * then a run of port rules, ...), each run with its own classifier or, when short, scanned in
 * order. Runs cover the chain without gaps.
 */
class SegmentIndex {
  constructor(
    private readonly starts: Int32Array,
    private readonly ends: Int32Array,
    private readonly classifiers: readonly (Classifier | null)[],
  ) {}

  next(p: PacketContext, from: number): number {
    const n = this.starts.length;
    if (from >= this.ends[n - 1]) return -1;
    // The run holding `from`: the last start <= from.
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.starts[mid] <= from) lo = mid;
      else hi = mid - 1;
    }
    for (let s = lo; s < n; s++) {
      if (s > lo) from = this.starts[s];
      const c = this.classifiers[s];
      if (c === null) return from;
      const r = c.next(p, from);
      if (r >= 0) return r;
    }
    return -1;
  }
}

/** Runs of rules sharing a pinned (field, prefix length); rules that pin nothing ride along as wildcards. */
function* segmentChain(pins: readonly Pin[][]): Steps<[number, number][]> {
  const runs: [number, number][] = [];
  const ids = (ps: readonly Pin[]) => new Set(ps.map((q) => q.dim * 256 + q.plen));
  let start = 0;
  let common: Set<number> | null = null;
  for (let i = 0; i < pins.length; i++) {
    if ((i & 255) === 255) yield;
    if (pins[i].length === 0) continue;
    const mine = ids(pins[i]);
    if (common === null) {
      common = mine;
      continue;
    }
    const shared: Set<number> = new Set([...common].filter((x) => mine.has(x)));
    if (shared.size > 0) {
      common = shared;
    } else {
      // A keyed rule that shares no key with the run starts the next run: as a wildcard it would
      // be evaluated for every packet, while one more run costs one more hash lookup.
      runs.push([start, i]);
      start = i;
      common = mine;
    }
  }
  runs.push([start, pins.length]);
  // Neighbouring runs too short to index are scanned as one.
  const merged: [number, number][] = [];
  for (const r of runs) {
    const last = merged[merged.length - 1];
    const short = (x: [number, number]) => x[1] - x[0] < MIN_INDEXED_CHAIN;
    if (last && short(last) && short(r)) last[1] = r[1];
    else merged.push([r[0], r[1]]);
  }
  return merged;
}

function* buildIndex(rules: readonly Rule[]): Steps<SegmentIndex | null> {
  if (!classifierEnabled || rules.length < MIN_INDEXED_CHAIN) return null;
  const pins: Pin[][] = [];
  for (const r of rules) {
    pins.push(rulePins(r));
    if ((pins.length & 255) === 0) yield;
  }
  const runs = yield* segmentChain(pins);
  const classifiers: (Classifier | null)[] = [];
  for (const [a, b] of runs) classifiers.push(yield* buildClassifier(pins, a, b));
  if (classifiers.every((c) => c === null)) return null;
  return new SegmentIndex(Int32Array.from(runs.map((r) => r[0])), Int32Array.from(runs.map((r) => r[1])), classifiers);
}

export class CompiledChain {
  rules: CompiledRule[] = [];
  classifier: SegmentIndex | null = null;
  constructor(
    readonly model: Chain,
    /** Verdict of the built-in chain's policy; -1 for user chains. */
    readonly policy: number,
  ) {}

  /** First rule index >= from that could match, or -1. */
  next(p: PacketContext, from: number): number {
    if (this.classifier !== null) return this.classifier.next(p, from);
    return from < this.rules.length ? from : -1;
  }
}

/** Describes what a rule pins down, per dimension: key value (and mask for addresses). */
interface Pin {
  dim: Dim;
  /** For addresses: prefix length; else 0. */
  plen: number;
  key: number;
}

function v6Mask(plen: number, word: number): number {
  const b = Math.max(0, Math.min(32, plen - 32 * word));
  return b === 0 ? 0 : (0xffffffff << (32 - b)) | 0;
}

function pinsOf(spec: RuleSpec, describable: readonly (readonly { field: IndexedField; min: number; max: number; inverted: boolean }[])[]): Pin[] {
  const pins: Pin[] = [];
  const addrPin = (a: RuleSpec['src'], inv: boolean, d4: Dim, d6: Dim) => {
    if (!a || inv) return;
    const plen = maskPrefixLength(a.mask);
    if (plen <= 0) return;
    if (a.family === 4) pins.push({ dim: d4, plen, key: a.addr[0] | 0 });
    else pins.push({ dim: d6, plen, key: mix6(a.addr[0] | 0, a.addr[1] | 0, a.addr[2] | 0, a.addr[3] | 0) });
  };
  addrPin(spec.src, spec.srcInv, Dim.SRC4, Dim.SRC6);
  addrPin(spec.dst, spec.dstInv, Dim.DST4, Dim.DST6);
  if (spec.proto !== 0 && !spec.protoInv) pins.push({ dim: Dim.PROTO, plen: 0, key: spec.proto });
  for (const ranges of describable) {
    for (const r of ranges) {
      if (r.inverted || r.min !== r.max) continue;
      pins.push({ dim: FIELD_DIM[r.field], plen: 0, key: r.min | 0 });
    }
  }
  // Cached for the rule's lifetime: kept at its length, not push's capacity (see parse.ts).
  return pins.slice();
}

const MIN_INDEXED_CHAIN = 8;

/** Per-rule work kept across recompilations: a rule object (and its checked instances) never changes. */
const pinCache = new WeakMap<Rule, Pin[]>();
const testCache = new WeakMap<RuleInstances, (pkt: PacketContext) => boolean>();

let classifierEnabled = true;
let classifiersBuilt = 0;

/** How many chain classifiers have been built in this process (tests check the index is really used). */
export function classifierCount(): number {
  return classifiersBuilt;
}

/**
 * Turns the classifier off (plain in-order scan) for chains compiled from now
 * on: the reference the tests compare the classifier against, and the
 * baseline the benchmark can show.
 */
export function setClassifierEnabled(on: boolean): void {
  classifierEnabled = on;
}

function rulePins(rule: Rule): Pin[] {
  let pins = pinCache.get(rule);
  if (pins) return pins;
  const spec = rule.spec;
  // Only matches that run before the first undescribed one may narrow the candidates.
  const described: { field: IndexedField; min: number; max: number; inverted: boolean }[][] = [];
  for (const m of spec.matches) {
    const d = m.ext.describe?.(m.params) ?? null;
    if (d === null) break;
    described.push(d.slice());
  }
  pins = pinsOf(spec, described);
  pinCache.set(rule, pins);
  return pins;
}

/** The best single-field classifier for rules [start, end) (indices stay chain-absolute), or null. */
function* buildClassifier(pinsOfChain: readonly Pin[][], start: number, end: number): Steps<Classifier | null> {
  if (end - start < MIN_INDEXED_CHAIN) return null;
  const pinsPerRule = pinsOfChain.slice(start, end);
  // Score each (dimension, prefix length): rules indexed minus the largest bucket.
  const groups = new Map<number, { dim: Dim; plen: number; byKey: Map<number, number[]>; count: number }>();
  for (let idx = 0; idx < pinsPerRule.length; idx++) {
    const pins = pinsPerRule[idx];
    if ((idx & 255) === 255) yield;
    for (const p of pins) {
      const id = p.dim * 256 + p.plen;
      // A rule counts once per (dimension, prefix length); pins are few, so a small linear check.
      if (pins.indexOf(p) !== pins.findIndex((q) => q.dim === p.dim && q.plen === p.plen)) continue;
      let g = groups.get(id);
      if (!g) groups.set(id, (g = { dim: p.dim, plen: p.plen, byKey: new Map(), count: 0 }));
      const list = g.byKey.get(p.key) ?? [];
      list.push(start + idx);
      g.byKey.set(p.key, list);
      g.count++;
    }
  }
  let best: { dim: Dim; plen: number; byKey: Map<number, number[]>; count: number } | null = null;
  let bestScore = 0;
  for (const g of groups.values()) {
    let largest = 0;
    for (const l of g.byKey.values()) largest = Math.max(largest, l.length);
    const score = g.count - largest;
    if (score > bestScore) {
      best = g;
      bestScore = score;
    }
  }
  if (!best || bestScore < MIN_INDEXED_CHAIN / 2) return null;
  const indexed = new Set<number>();
  const map = new IntMap(best.byKey.size);
  const buckets: Int32Array[] = [];
  let n = 0;
  for (const [key, list] of best.byKey) {
    if ((++n & 255) === 0) yield;
    map.set(key, buckets.length);
    buckets.push(Int32Array.from(list));
    for (const i of list) indexed.add(i);
  }
  const wild: number[] = [];
  for (let i = start; i < end; i++) if (!indexed.has(i)) wild.push(i);
  let m = [0, 0, 0, 0];
  if (best.dim === Dim.SRC4 || best.dim === Dim.DST4) m = [v6Mask(best.plen, 0), 0, 0, 0];
  else if (best.dim === Dim.SRC6 || best.dim === Dim.DST6) m = [0, 1, 2, 3].map((w) => v6Mask(best!.plen, w));
  classifiersBuilt++;
  return new Classifier(best.dim, m[0], m[1], m[2], m[3], map, buckets, Int32Array.from(wild));
}

/** The test of a rule without -i/-o (never called: inOn/outOn are false), shared rather than a closure per rule. */
const NO_IFACE_TEST = (n: string): boolean => n === '';

function ifaceTest(name: string): (ifName: string) => boolean {
  if (name === '') return NO_IFACE_TEST;
  if (name.endsWith('+')) {
    const prefix = name.slice(0, -1);
    return (n) => n.startsWith(prefix);
  }
  return (n) => n === name;
}

/** Address words of a rule without -s/-d; only read (four fresh arrays per such rule were an eighth of what a restore allocates). */
const NO_WORDS: Readonly<Uint32Array> = new Uint32Array(4);

/** The generic criteria (struct ipt_ip) plus the rule's matches, as one predicate. */
export function compileTest(spec: RuleSpec, matches: readonly MatchInstance[]): (pkt: PacketContext) => boolean {
  const ms = matches.slice();
  const n = ms.length;
  const fam = spec.family;
  const hasSrc = spec.src !== null && maskPrefixLength(spec.src.mask) !== 0;
  const hasDst = spec.dst !== null && maskPrefixLength(spec.dst.mask) !== 0;
  const s = spec.src?.addr ?? NO_WORDS;
  const sm = spec.src?.mask ?? NO_WORDS;
  const d = spec.dst?.addr ?? NO_WORDS;
  const dm = spec.dst?.mask ?? NO_WORDS;
  // Under "!" an address test still runs with mask 0 (it matches nothing then), as the kernel's FWINV does.
  const srcOn = hasSrc || spec.srcInv;
  const dstOn = hasDst || spec.dstInv;
  const srcInv = spec.srcInv;
  const dstInv = spec.dstInv;
  const s0 = s[0] | 0, sm0 = sm[0] | 0, d0 = d[0] | 0, dm0 = dm[0] | 0;
  const s1 = (s[1] ?? 0) | 0, s2 = (s[2] ?? 0) | 0, s3 = (s[3] ?? 0) | 0;
  const sm1 = (sm[1] ?? 0) | 0, sm2 = (sm[2] ?? 0) | 0, sm3 = (sm[3] ?? 0) | 0;
  const d1 = (d[1] ?? 0) | 0, d2 = (d[2] ?? 0) | 0, d3 = (d[3] ?? 0) | 0;
  const dm1 = (dm[1] ?? 0) | 0, dm2 = (dm[2] ?? 0) | 0, dm3 = (dm[3] ?? 0) | 0;
  const proto = spec.proto;
  const protoInv = spec.protoInv;
  const frag = spec.frag;
  const fragInv = spec.fragInv;
  const inOn = spec.inIf !== '';
  const outOn = spec.outIf !== '';
  const inTest = ifaceTest(spec.inIf);
  const outTest = ifaceTest(spec.outIf);
  const inInv = spec.inInv;
  const outInv = spec.outInv;

  return (p: PacketContext): boolean => {
    if (fam === 4) {
      if (srcOn && (((p.src4 & sm0) | 0) === s0) === srcInv) return false;
      if (dstOn && (((p.dst4 & dm0) | 0) === d0) === dstInv) return false;
    } else {
      if (srcOn) {
        const w = p.src6;
        const eq = (w[0] & sm0) === s0 && (w[1] & sm1) === s1 && (w[2] & sm2) === s2 && (w[3] & sm3) === s3;
        if (eq === srcInv) return false;
      }
      if (dstOn) {
        const w = p.dst6;
        const eq = (w[0] & dm0) === d0 && (w[1] & dm1) === d1 && (w[2] & dm2) === d2 && (w[3] & dm3) === d3;
        if (eq === dstInv) return false;
      }
    }
    if (inOn && inTest(p.inIf === null ? '' : p.inIf.name) === inInv) return false;
    if (outOn && outTest(p.outIf === null ? '' : p.outIf.name) === outInv) return false;
    if (proto !== 0 && (p.proto === proto) === protoInv) return false;
    if (frag && (p.fragmentOffset !== 0) === fragInv) return false;
    for (let k = 0; k < n; k++) if (!ms[k].match(p)) return false;
    return true;
  };
}

/** Compiles one chain's rules (jumps are linked by the caller once every chain exists). */
export function compileChain(chain: Chain): CompiledChain {
  return runSteps(compileChainSteps(chain, (r) => r.instances!));
}

/**
 * compileChain as steps (slices.ts), with each rule's instances from `instOf`
 * (a transaction compiles before its new instances are attached at the swap).
 */
export function* compileChainSteps(chain: Chain, instOf: (rule: Rule) => RuleInstances): Steps<CompiledChain> {
  const policy = chain.policy === null ? -1 : chain.policy === 'ACCEPT' ? Verdict.ACCEPT : Verdict.DROP;
  const cc = new CompiledChain(chain, policy);
  for (const rule of chain.rules) {
    const inst = instOf(rule);
    const t = rule.spec.target;
    let action: Action;
    switch (t.kind) {
      case 'none':
        action = Action.NONE;
        break;
      case 'verdict':
        action = t.verdict === 'ACCEPT' ? Action.ACCEPT : t.verdict === 'RETURN' ? Action.RETURN : Action.DROP;
        break;
      case 'jump':
        action = t.goto ? Action.GOTO : Action.JUMP;
        break;
      case 'ext':
        action = Action.TARGET;
        break;
    }
    let test = testCache.get(inst);
    if (!test) {
      test = compileTest(rule.spec, inst.matches);
      testCache.set(inst, test);
    }
    cc.rules.push(new CompiledRule(test, action, inst.target, rule));
    if ((cc.rules.length & 255) === 0) yield;
  }
  cc.classifier = yield* buildIndex(chain.rules);
  return cc;
}
