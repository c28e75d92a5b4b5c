/**
 * Routing: longest-prefix match for IPv4 and IPv6, over one table that holds
 * the router's own addresses (local delivery), the connected networks of its
 * interfaces, static routes and default routes - like the kernel's local and
 * main tables folded into one, where a /32 (/128) local entry always wins.
 *
 * Addresses are integers, as in PacketContext: IPv4 one uint32, IPv6 four
 * big-endian uint32 words. Strings exist only at the edges (config, status).
 *
 * Structure: routes are grouped by prefix length and the groups are kept
 * longest first. A lookup masks the destination once per group and compares
 * it with the group's networks: by a linear scan while a group is small (the
 * usual case: a handful of routes), through an open-addressed hash index once
 * it grows. A lookup returns a route id (an index into typed arrays), never an
 * object, so the packet path allocates nothing.
 *
 * Non-goals: multipath, metrics/preference between equal prefixes (the first
 * added wins: connected before static), policy routing, route cache.
 */

import { DottedQuad, ipv4FromText, ipv4ToString, ipv6FromText, ipv6ToString, prefixMaskWord } from '../dataplane/addr.js';

/** What a route leads to. */
export const enum RouteKind {
  /** An address of the router itself: deliver to the host interface. */
  LOCAL = 0,
  /** A network directly on the egress link: the next hop is the destination itself. */
  CONNECTED = 1,
  /** Via a gateway on the egress link. */
  GATEWAY = 2,
}

export interface Prefix4 {
  readonly family: 4;
  readonly addr: number;
  readonly len: number;
}
export interface Prefix6 {
  readonly family: 6;
  readonly addr: Uint32Array;
  readonly len: number;
}
export type Prefix = Prefix4 | Prefix6;

// ---------------------------------------------------------------- parsing

// The address text is dataplane/addr.ts's, strict as inet_pton (no leading
// zeros); these names stay for config.ts, forward.ts and the tests.
export { ipv4ToString as formatIPv4, ipv6ToString as formatIPv6 } from '../dataplane/addr.js';

/** Dotted quad to uint32, or -1 if `s` is not exactly an IPv4 address. */
export function parseIPv4(s: string): number {
  return ipv4FromText(s, DottedQuad.STRICT);
}

/** RFC 4291 text (with `::` and an embedded dotted quad) to four words, or null. */
export function parseIPv6(s: string): Uint32Array | null {
  return ipv6FromText(s, DottedQuad.STRICT);
}

export function formatPrefix(p: Prefix): string {
  return p.family === 4 ? `${ipv4ToString(p.addr)}/${p.len}` : `${ipv6ToString(p.addr)}/${p.len}`;
}

/**
 * "a.b.c.d/len", "x::y/len" or a bare address (a host prefix). `hostBits`
 * keeps the address as written (an interface address such as 198.51.100.1/24);
 * otherwise the host bits are cleared (a route destination).
 */
export function parsePrefix(s: string, keepHostBits = false): Prefix | null {
  const slash = s.indexOf('/');
  const addrText = slash < 0 ? s : s.slice(0, slash);
  const lenText = slash < 0 ? null : s.slice(slash + 1);
  if (lenText !== null && !/^(0|[1-9][0-9]{0,2})$/.test(lenText)) return null;
  const v4 = parseIPv4(addrText);
  if (v4 >= 0) {
    const len = lenText === null ? 32 : Number(lenText);
    if (len > 32) return null;
    return { family: 4, addr: keepHostBits ? v4 : (v4 & mask4(len)) >>> 0, len };
  }
  const v6 = parseIPv6(addrText);
  if (v6) {
    const len = lenText === null ? 128 : Number(lenText);
    if (len > 128) return null;
    if (!keepHostBits) mask6Into(v6, len, v6);
    return { family: 6, addr: v6, len };
  }
  return null;
}

/** Network mask of a v4 prefix length as uint32. */
export function mask4(len: number): number {
  return prefixMaskWord(len, 0);
}

export function mask6Into(a: ArrayLike<number>, len: number, out: Uint32Array): void {
  for (let i = 0; i < 4; i++) out[i] = (a[i] & prefixMaskWord(len, i)) >>> 0;
}

/** Whether `a` lies in the network of prefix `p` (same family). */
export function prefixContains4(net: number, len: number, a: number): boolean {
  return ((a & mask4(len)) >>> 0) === ((net & mask4(len)) >>> 0);
}
export function prefixContains6(net: ArrayLike<number>, len: number, a: ArrayLike<number>): boolean {
  for (let i = 0; i < 4; i++) {
    const m = prefixMaskWord(len, i);
    if (((a[i] & m) >>> 0) !== ((net[i] & m) >>> 0)) return false;
  }
  return true;
}

// ---------------------------------------------------------------- table

/** A group switches from linear scan to its hash index above this many routes. */
const LINEAR_LIMIT = 12;

/** Routes of one prefix length. */
class Group {
  count = 0;
  /** Masked networks: 1 word per route (v4) or 4 (v6). */
  nets: Uint32Array;
  ids: Int32Array;
  /** Open-addressed index: slot -> position in nets/ids, -1 empty; null while linear. */
  index: Int32Array | null = null;
  indexMask = 0;
  readonly m0: number;
  readonly m1: number;
  readonly m2: number;
  readonly m3: number;

  constructor(readonly len: number, readonly words: 1 | 4) {
    this.nets = new Uint32Array(4 * words);
    this.ids = new Int32Array(4);
    if (words === 1) {
      this.m0 = mask4(len);
      this.m1 = this.m2 = this.m3 = 0;
    } else {
      this.m0 = prefixMaskWord(len, 0);
      this.m1 = prefixMaskWord(len, 1);
      this.m2 = prefixMaskWord(len, 2);
      this.m3 = prefixMaskWord(len, 3);
    }
  }

  /** Position of the masked network, or -1. */
  find(w0: number, w1: number, w2: number, w3: number): number {
    const nets = this.nets;
    if (this.index === null) {
      if (this.words === 1) {
        for (let i = 0; i < this.count; i++) if (nets[i] === w0) return i;
      } else {
        for (let i = 0, o = 0; i < this.count; i++, o += 4) {
          if (nets[o] === w0 && nets[o + 1] === w1 && nets[o + 2] === w2 && nets[o + 3] === w3) return i;
        }
      }
      return -1;
    }
    const idx = this.index;
    let slot = hashWords(w0, w1, w2, w3) & this.indexMask;
    for (;;) {
      const i = idx[slot];
      if (i < 0) return -1;
      if (this.words === 1) {
        if (nets[i] === w0) return i;
      } else {
        const o = i * 4;
        if (nets[o] === w0 && nets[o + 1] === w1 && nets[o + 2] === w2 && nets[o + 3] === w3) return i;
      }
      slot = (slot + 1) & this.indexMask;
    }
  }

  add(w0: number, w1: number, w2: number, w3: number, id: number): void {
    if (this.count === this.ids.length) {
      const nets = new Uint32Array(this.nets.length * 2);
      nets.set(this.nets);
      this.nets = nets;
      const ids = new Int32Array(this.ids.length * 2);
      ids.set(this.ids);
      this.ids = ids;
    }
    const i = this.count++;
    if (this.words === 1) this.nets[i] = w0;
    else {
      const o = i * 4;
      this.nets[o] = w0;
      this.nets[o + 1] = w1;
      this.nets[o + 2] = w2;
      this.nets[o + 3] = w3;
    }
    this.ids[i] = id;
    if (this.count > LINEAR_LIMIT) this.rebuildIndexIfNeeded();
  }

  private rebuildIndexIfNeeded(): void {
    if (this.index !== null && this.count * 2 <= this.index.length) {
      this.insertIndex(this.count - 1);
      return;
    }
    let size = 64;
    while (size < this.count * 4) size *= 2;
    this.index = new Int32Array(size).fill(-1);
    this.indexMask = size - 1;
    for (let i = 0; i < this.count; i++) this.insertIndex(i);
  }

  private insertIndex(i: number): void {
    const n = this.nets;
    const h =
      this.words === 1 ? hashWords(n[i], 0, 0, 0) : hashWords(n[4 * i], n[4 * i + 1], n[4 * i + 2], n[4 * i + 3]);
    let slot = h & this.indexMask;
    const idx = this.index!;
    while (idx[slot] >= 0) slot = (slot + 1) & this.indexMask;
    idx[slot] = i;
  }
}

function hashWords(a: number, b: number, c: number, d: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ b, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ c, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ d, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A route as given to `add` and as reported by `list`. */
export interface RouteSpec {
  readonly prefix: Prefix;
  readonly kind: RouteKind;
  /** Egress interface index (InterfaceRef.index); for LOCAL the host interface. */
  readonly ifIndex: number;
  /** Gateway (GATEWAY only): a uint32 for v4, four words for v6. */
  readonly gateway?: number | Uint32Array;
}

/**
 * The routing table of one family. Route ids are dense from 0; per-route data
 * lives in typed arrays read by the packet path through the getters below.
 */
abstract class RouteTableBase {
  protected groups: Group[] = [];
  protected specs: RouteSpec[] = [];
  /** Route id -> RouteKind. */
  kind = new Uint8Array(8);
  /** Route id -> egress interface index. */
  ifIndex = new Int32Array(8);

  get size(): number {
    return this.specs.length;
  }

  /** Every route in insertion order (for status and tests). */
  list(): readonly RouteSpec[] {
    return this.specs;
  }

  protected groupFor(len: number, words: 1 | 4): Group {
    for (const g of this.groups) if (g.len === len) return g;
    const g = new Group(len, words);
    this.groups.push(g);
    this.groups.sort((a, b) => b.len - a.len);
    return g;
  }

  protected newId(spec: RouteSpec): number {
    const id = this.specs.length;
    this.specs.push(spec);
    if (id >= this.kind.length) {
      const k = new Uint8Array(this.kind.length * 2);
      k.set(this.kind);
      this.kind = k;
      const f = new Int32Array(this.ifIndex.length * 2);
      f.set(this.ifIndex);
      this.ifIndex = f;
      this.growGateways(this.kind.length);
    }
    this.kind[id] = spec.kind;
    this.ifIndex[id] = spec.ifIndex;
    return id;
  }

  protected abstract growGateways(n: number): void;

  /**
   * Takes over `other`'s routes in one step: a config reload (router/reload.ts) builds the new
   * table aside and swaps it in between two packets, so no packet sees a half-built table.
   * Subclasses add their per-route arrays.
   */
  adopt(other: this): void {
    this.groups = other.groups;
    this.specs = other.specs;
    this.kind = other.kind;
    this.ifIndex = other.ifIndex;
  }
}

export class RouteTable4 extends RouteTableBase {
  /** Route id -> gateway (GATEWAY routes), else 0. */
  gateway = new Uint32Array(8);
  /**
   * Route id -> the subnet broadcast address of a CONNECTED route of length
   * 30 or less (the kernel's local broadcast route), else 0: such packets are
   * not forwarded.
   */
  broadcast = new Uint32Array(8);

  /**
   * Adds a route; returns its id, or -1 if the same prefix is already present
   * (the earlier route is kept, as connected routes precede static ones).
   */
  add(spec: RouteSpec): number {
    if (spec.prefix.family !== 4) throw new Error('RouteTable4.add: not an IPv4 prefix');
    const len = spec.prefix.len;
    const net = (spec.prefix.addr & mask4(len)) >>> 0;
    const g = this.groupFor(len, 1);
    if (g.find(net, 0, 0, 0) >= 0) return -1;
    const id = this.newId({ ...spec, prefix: { family: 4, addr: net, len } });
    this.gateway[id] = typeof spec.gateway === 'number' ? spec.gateway : 0;
    this.broadcast[id] = spec.kind === RouteKind.CONNECTED && len <= 30 ? (net | ~mask4(len)) >>> 0 : 0;
    g.add(net, 0, 0, 0, id);
    return id;
  }

  /** Longest-prefix match: route id, or -1 for no route. */
  lookup(dst: number): number {
    const groups = this.groups;
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      const p = g.find((dst & g.m0) >>> 0, 0, 0, 0);
      if (p >= 0) return g.ids[p];
    }
    return -1;
  }

  /** The address to resolve on the link for `dst` via route `id`. */
  nextHop(id: number, dst: number): number {
    return this.kind[id] === RouteKind.GATEWAY ? this.gateway[id] : dst;
  }

  override adopt(other: this): void {
    super.adopt(other);
    this.gateway = other.gateway;
    this.broadcast = other.broadcast;
  }

  protected growGateways(n: number): void {
    const g = new Uint32Array(n);
    g.set(this.gateway);
    this.gateway = g;
    const b = new Uint32Array(n);
    b.set(this.broadcast);
    this.broadcast = b;
  }
}

export class RouteTable6 extends RouteTableBase {
  /** Route id -> gateway words at [4*id .. 4*id+3] (GATEWAY routes). */
  gateway = new Uint32Array(8 * 4);

  add(spec: RouteSpec): number {
    if (spec.prefix.family !== 6) throw new Error('RouteTable6.add: not an IPv6 prefix');
    const len = spec.prefix.len;
    const net = new Uint32Array(4);
    mask6Into(spec.prefix.addr, len, net);
    const g = this.groupFor(len, 4);
    if (g.find(net[0], net[1], net[2], net[3]) >= 0) return -1;
    const id = this.newId({ ...spec, prefix: { family: 6, addr: net, len } });
    if (spec.gateway instanceof Uint32Array) this.gateway.set(spec.gateway, id * 4);
    g.add(net[0], net[1], net[2], net[3], id);
    return id;
  }

  lookup(dst: Uint32Array): number {
    const groups = this.groups;
    const d0 = dst[0];
    const d1 = dst[1];
    const d2 = dst[2];
    const d3 = dst[3];
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      const p = g.find((d0 & g.m0) >>> 0, (d1 & g.m1) >>> 0, (d2 & g.m2) >>> 0, (d3 & g.m3) >>> 0);
      if (p >= 0) return g.ids[p];
    }
    return -1;
  }

  /** Writes the address to resolve on the link for `dst` via route `id` into `out`. */
  nextHop(id: number, dst: Uint32Array, out: Uint32Array): void {
    if (this.kind[id] === RouteKind.GATEWAY) {
      const o = id * 4;
      out[0] = this.gateway[o];
      out[1] = this.gateway[o + 1];
      out[2] = this.gateway[o + 2];
      out[3] = this.gateway[o + 3];
    } else {
      out[0] = dst[0];
      out[1] = dst[1];
      out[2] = dst[2];
      out[3] = dst[3];
    }
  }

  override adopt(other: this): void {
    super.adopt(other);
    this.gateway = other.gateway;
  }

  protected growGateways(n: number): void {
    const g = new Uint32Array(n * 4);
    g.set(this.gateway);
    this.gateway = g;
  }
}
