/**
 * The neighbour subsystem of one TAP link: ARP (RFC 826) for IPv4, Neighbor
 * Discovery (RFC 4861) for IPv6. It answers requests for the router's own
 * addresses on the link, learns neighbours from what they send, and resolves
 * next hops for the packet path.
 *
 * States follow the kernel's NUD machine (net/core/neighbour.c), with its
 * default timings: INCOMPLETE (multicast/broadcast solicitations every
 * retransMs, up to maxMulticastProbes, packets queued meanwhile), REACHABLE
 * (confirmed within reachableMs), STALE (usable, unconfirmed), DELAY (used
 * while stale: wait delayMs for a confirmation), PROBE (unicast solicitations,
 * up to maxUnicastProbes), FAILED (queued packets given up on). Unused STALE
 * and FAILED entries are forgotten after gcStaleMs.
 *
 * The packet path calls `lookup4/lookup6` (a hash probe over typed arrays,
 * no allocation) and, only on a miss, `enqueue4/enqueue6` (copies the packet:
 * rare, not the fast path). Time is passed in (the batch clock), and `tick`
 * runs the timers; nothing here reads a clock or sets a timer itself.
 *
 * Non-goals: proxy ARP/NDP, gratuitous announcements, DAD for our own
 * addresses, router advertisements, upper-layer reachability hints.
 */
import { getU32, getU48, getWords128, setU16, setU32, setU48, setWords128 } from '../dataplane/bytes.js';
import { ArpView, ARP_LEN, ARP_OP_REPLY, ARP_OP_REQUEST } from '../dataplane/arp.js';
import { fold, sum16, pseudoSum6 } from '../dataplane/checksum.js';
import { ETH_HLEN, writeEthernet } from '../dataplane/ethernet.js';
import { prefixContains4, prefixContains6 } from './routing.js';

export const enum NudState {
  INCOMPLETE = 1,
  REACHABLE = 2,
  STALE = 3,
  DELAY = 4,
  PROBE = 5,
  FAILED = 6,
}
export const NUD_STATE_NAMES = ['', 'INCOMPLETE', 'REACHABLE', 'STALE', 'DELAY', 'PROBE', 'FAILED'] as const;

/** The kernel's defaults (net.ipv4.neigh.default.*). */
export interface NeighborTimers {
  reachableMs: number;
  retransMs: number;
  delayMs: number;
  maxMulticastProbes: number;
  maxUnicastProbes: number;
  gcStaleMs: number;
  /**
   * Packets held per unresolved neighbour; the oldest is dropped beyond. The
   * kernel counts bytes (unres_qlen_bytes, ~100 small packets); 32 keeps a
   * fragmented datagram or a burst of connection attempts together.
   */
  queueLength: number;
  /**
   * Entries per family on one link (the kernel's gc_thresh3): when full, unused
   * STALE and FAILED entries are collected at once, and if none can go a new
   * neighbour is refused ("neighbour table overflow").
   */
  maxEntries: number;
}

export const DEFAULT_NEIGHBOR_TIMERS: NeighborTimers = {
  reachableMs: 30_000,
  retransMs: 1_000,
  delayMs: 5_000,
  maxMulticastProbes: 3,
  maxUnicastProbes: 3,
  gcStaleMs: 60_000,
  queueLength: 32,
  maxEntries: 1024,
};

/** What the cache needs from the router around it. */
export interface NeighborIO {
  /** Sends a complete Ethernet frame on this link; the bytes must be copied before returning. */
  sendFrame(buf: Buffer, off: number, len: number): void;
  /** A queued IP packet (`pkt[0..len)`) whose next hop resolved to `mac`: encapsulate and send it. */
  release(pkt: Buffer, len: number, mac: number): void;
  /** A queued IP packet given up on (resolution failed): the router may answer "host unreachable". */
  unresolved(pkt: Buffer, len: number): void;
}

/** One neighbour, as listed by status. */
export interface NeighborEntryInfo {
  readonly family: 4 | 6;
  readonly address: Uint32Array;
  readonly mac: number;
  readonly state: NudState;
  readonly queued: number;
}

/** An IPv4 or IPv6 prefix of the router on this link. */
export interface LinkAddress4 {
  readonly addr: number;
  readonly len: number;
}
export interface LinkAddress6 {
  readonly addr: Uint32Array;
  readonly len: number;
}

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const ETHERTYPE_IPV6 = 0x86dd;
const MAC_BROADCAST = 0xffffffffffff;
const ICMPV6_NS = 135;
const ICMPV6_NA = 136;
const NA_ROUTER = 0x80;
const NA_SOLICITED = 0x40;
const NA_OVERRIDE = 0x20;
const NDP_SLLAO = 1;
const NDP_TLLAO = 2;

class Entry {
  state: NudState = NudState.INCOMPLETE;
  mac = -1;
  /** Last confirmation (reply, solicited NA). */
  confirmed = 0;
  /** Last time the packet path used the entry. */
  used = 0;
  /** Last state change (gc of FAILED, DELAY deadline). */
  updated = 0;
  /** Probes sent in the current INCOMPLETE/PROBE phase. */
  probes = 0;
  nextProbe = 0;
  queue: Buffer[] = [];
  queueLens: number[] = [];
  constructor(readonly family: 4 | 6, readonly address: Uint32Array) {}
}

/**
 * Address -> entry id, open addressing over Int32Array slots. Deletions are
 * rare (garbage collection), so the index is rebuilt then instead of keeping
 * tombstones.
 */
class AddressIndex {
  private slots = new Int32Array(64).fill(-1);
  private mask = 63;
  private used = 0;

  constructor(private readonly words: 1 | 4, private readonly entries: (Entry | null)[]) {}

  find(a0: number, a1: number, a2: number, a3: number): number {
    const slots = this.slots;
    const entries = this.entries;
    let s = hash(a0, a1, a2, a3) & this.mask;
    for (;;) {
      const id = slots[s];
      if (id < 0) return -1;
      const a = entries[id]!.address;
      if (a[0] === a0 && (this.words === 1 || (a[1] === a1 && a[2] === a2 && a[3] === a3))) return id;
      s = (s + 1) & this.mask;
    }
  }

  insert(id: number): void {
    if ((this.used + 1) * 2 > this.slots.length) this.rebuild(this.slots.length * 2);
    this.place(id);
    this.used++;
  }

  rebuild(size = this.slots.length): void {
    this.slots = new Int32Array(size).fill(-1);
    this.mask = size - 1;
    this.used = 0;
    for (let id = 0; id < this.entries.length; id++) {
      if (this.entries[id] !== null) {
        this.place(id);
        this.used++;
      }
    }
  }

  private place(id: number): void {
    const a = this.entries[id]!.address;
    let s = (this.words === 1 ? hash(a[0], 0, 0, 0) : hash(a[0], a[1], a[2], a[3])) & this.mask;
    while (this.slots[s] >= 0) s = (s + 1) & this.mask;
    this.slots[s] = id;
  }
}

function hash(a: number, b: number, c: number, d: number): number {
  let h = Math.imul(a ^ 0x27d4eb2d, 0x165667b1);
  h = Math.imul(h ^ (h >>> 15) ^ b, 0x85ebca77);
  h = Math.imul(h ^ (h >>> 13) ^ c, 0xc2b2ae3d);
  h = Math.imul(h ^ (h >>> 16) ^ d, 0x27d4eb2f);
  return (h ^ (h >>> 15)) >>> 0;
}

/** Counters shown by status. */
export interface NeighborCounters {
  arpRequestsAnswered: number;
  arpRequestsSent: number;
  nsAnswered: number;
  nsSent: number;
  resolutionFailures: number;
  queueDrops: number;
  tableOverflows: number;
}

export class NeighborCache {
  private readonly entries4: (Entry | null)[] = [];
  private readonly entries6: (Entry | null)[] = [];
  private readonly index4 = new AddressIndex(1, this.entries4);
  private readonly index6 = new AddressIndex(4, this.entries6);
  /** Frames the cache builds itself (ARP, NS, NA): one preallocated buffer. */
  private readonly frame = Buffer.alloc(ETH_HLEN + 40 + 32 + 16);
  private readonly arp = new ArpView();
  private readonly tmp6 = new Uint32Array(4);
  private readonly tmp6b = new Uint32Array(4);
  readonly counters: NeighborCounters = {
    arpRequestsAnswered: 0,
    arpRequestsSent: 0,
    nsAnswered: 0,
    nsSent: 0,
    resolutionFailures: 0,
    queueDrops: 0,
    tableOverflows: 0,
  };
  private live4 = 0;
  private live6 = 0;

  constructor(
    /** This link's MAC (xtr's side) as a 48-bit number. */
    readonly mac: number,
    private readonly v4: readonly LinkAddress4[],
    private readonly v6: readonly LinkAddress6[],
    private readonly io: NeighborIO,
    readonly timers: NeighborTimers = DEFAULT_NEIGHBOR_TIMERS,
  ) {}

  // ------------------------------------------------------------ packet path

  /**
   * The MAC for IPv4 next hop `addr`, or -1 (then call enqueue4). Using a
   * STALE entry starts the DELAY timer, as the kernel does.
   */
  lookup4(addr: number, now: number): number {
    const id = this.index4.find(addr, 0, 0, 0);
    if (id < 0) return -1;
    return this.use(this.entries4[id]!, now);
  }

  lookup6(addr: Uint32Array, now: number): number {
    const id = this.index6.find(addr[0], addr[1], addr[2], addr[3]);
    if (id < 0) return -1;
    return this.use(this.entries6[id]!, now);
  }

  private use(e: Entry, now: number): number {
    const s = e.state;
    if (s === NudState.REACHABLE) {
      e.used = now;
      return e.mac;
    }
    if (s === NudState.STALE) {
      e.state = NudState.DELAY;
      e.updated = now;
      e.used = now;
      return e.mac;
    }
    if (s === NudState.DELAY || s === NudState.PROBE) {
      e.used = now;
      return e.mac;
    }
    return -1;
  }

  /**
   * Holds a copy of an IP packet until `addr` resolves, starting resolution if
   * it is not under way. Returns false if the packet was not kept (the table
   * is full of neighbours in use).
   */
  enqueue4(addr: number, pkt: Uint8Array, off: number, len: number, now: number): boolean {
    let id = this.index4.find(addr, 0, 0, 0);
    if (id < 0) id = this.create(4, Uint32Array.of(addr), now);
    if (id < 0) return false;
    return this.enqueue(this.entries4[id]!, pkt, off, len, now);
  }

  enqueue6(addr: Uint32Array, pkt: Uint8Array, off: number, len: number, now: number): boolean {
    let id = this.index6.find(addr[0], addr[1], addr[2], addr[3]);
    if (id < 0) id = this.create(6, Uint32Array.from(addr), now);
    if (id < 0) return false;
    return this.enqueue(this.entries6[id]!, pkt, off, len, now);
  }

  private enqueue(e: Entry, pkt: Uint8Array, off: number, len: number, now: number): boolean {
    e.used = now;
    if (e.state === NudState.FAILED) {
      // a new packet for a failed neighbour restarts resolution (neigh_event_send)
      e.state = NudState.INCOMPLETE;
      e.probes = 0;
      e.nextProbe = now;
      e.updated = now;
    }
    if (e.queue.length >= this.timers.queueLength) {
      e.queue.shift();
      e.queueLens.shift();
      this.counters.queueDrops++;
    }
    const copy = Buffer.allocUnsafe(len);
    copy.set(pkt.subarray(off, off + len));
    e.queue.push(copy);
    e.queueLens.push(len);
    if (e.probes === 0 && e.nextProbe <= now) this.probe(e, now, false);
    return true;
  }

  /** A new INCOMPLETE entry's id, or -1 when the table is full (counted). */
  private create(family: 4 | 6, address: Uint32Array, now: number): number {
    if ((family === 4 ? this.live4 : this.live6) >= this.timers.maxEntries && !this.forcedGc(family)) {
      this.counters.tableOverflows++;
      return -1;
    }
    if (family === 4) this.live4++;
    else this.live6++;
    const e = new Entry(family, address);
    e.updated = now;
    e.nextProbe = now;
    const entries = family === 4 ? this.entries4 : this.entries6;
    let id = entries.indexOf(null);
    if (id < 0) {
      id = entries.length;
      entries.push(e);
    } else {
      entries[id] = e;
    }
    (family === 4 ? this.index4 : this.index6).insert(id);
    return id;
  }

  /** neigh_forced_gc: drops every unused STALE and FAILED entry; true if room was made. */
  private forcedGc(family: 4 | 6): boolean {
    const entries = family === 4 ? this.entries4 : this.entries6;
    let removed = 0;
    for (let id = 0; id < entries.length; id++) {
      const e = entries[id];
      if (e !== null && (e.state === NudState.STALE || e.state === NudState.FAILED) && e.queue.length === 0) {
        entries[id] = null;
        removed++;
      }
    }
    if (removed === 0) return false;
    if (family === 4) this.live4 -= removed;
    else this.live6 -= removed;
    (family === 4 ? this.index4 : this.index6).rebuild();
    return true;
  }

  // ------------------------------------------------------------ timers

  /** Runs the NUD timers; call every few hundred milliseconds with the monotonic clock. */
  tick(now: number): void {
    this.tickFamily(this.entries4, this.index4, now);
    this.tickFamily(this.entries6, this.index6, now);
  }

  private tickFamily(entries: (Entry | null)[], index: AddressIndex, now: number): void {
    const t = this.timers;
    let removed = false;
    for (let id = 0; id < entries.length; id++) {
      const e = entries[id];
      if (e === null) continue;
      switch (e.state) {
        case NudState.INCOMPLETE:
          if (now >= e.nextProbe) {
            if (e.probes >= t.maxMulticastProbes) this.fail(e, now);
            else this.probe(e, now, false);
          }
          break;
        case NudState.REACHABLE:
          if (now - e.confirmed >= t.reachableMs) {
            e.state = NudState.STALE;
            e.updated = now;
          }
          break;
        case NudState.DELAY:
          if (now - e.confirmed < t.reachableMs && e.confirmed >= e.updated) {
            e.state = NudState.REACHABLE;
            e.updated = now;
          } else if (now - e.updated >= t.delayMs) {
            e.state = NudState.PROBE;
            e.updated = now;
            e.probes = 0;
            this.probe(e, now, true);
          }
          break;
        case NudState.PROBE:
          if (now >= e.nextProbe) {
            if (e.probes >= t.maxUnicastProbes) this.fail(e, now);
            else this.probe(e, now, true);
          }
          break;
        case NudState.STALE:
        case NudState.FAILED:
          if (now - Math.max(e.used, e.updated) >= t.gcStaleMs) {
            entries[id] = null;
            if (e.family === 4) this.live4--;
            else this.live6--;
            removed = true;
          }
          break;
      }
    }
    if (removed) index.rebuild();
  }

  private fail(e: Entry, now: number): void {
    e.state = NudState.FAILED;
    e.updated = now;
    e.mac = -1;
    this.counters.resolutionFailures++;
    const q = e.queue;
    const lens = e.queueLens;
    e.queue = [];
    e.queueLens = [];
    for (let i = 0; i < q.length; i++) this.io.unresolved(q[i], lens[i]);
  }

  /** Sends one solicitation: broadcast/multicast while INCOMPLETE, unicast to the known MAC in PROBE. */
  private probe(e: Entry, now: number, unicast: boolean): void {
    e.probes++;
    e.nextProbe = now + this.timers.retransMs;
    const dstMac = unicast && e.mac >= 0 ? e.mac : -1;
    if (e.family === 4) this.sendArpRequest(e.address[0], dstMac);
    else this.sendNs(e.address, dstMac);
  }

  // ------------------------------------------------------------ learning

  private learn(e: Entry, mac: number, confirmed: boolean, override: boolean, now: number): void {
    const changed = e.mac !== mac;
    if (e.state === NudState.INCOMPLETE || e.state === NudState.FAILED) {
      e.mac = mac;
      e.state = confirmed ? NudState.REACHABLE : NudState.STALE;
      e.confirmed = confirmed ? now : e.confirmed;
      e.updated = now;
      e.probes = 0;
      this.flush(e);
      return;
    }
    if (changed && !override) {
      // RFC 4861 7.2.5: a solicited NA without O for a different MAC only makes a REACHABLE entry STALE
      if (e.state === NudState.REACHABLE) {
        e.state = NudState.STALE;
        e.updated = now;
      }
      return;
    }
    e.mac = mac;
    if (confirmed) {
      e.state = NudState.REACHABLE;
      e.confirmed = now;
      e.probes = 0;
      e.updated = now;
    } else if (changed) {
      e.state = NudState.STALE;
      e.updated = now;
    }
    // same MAC, unconfirmed (a request from the neighbour): state and timers stay, as neigh_update keeps them
  }

  private flush(e: Entry): void {
    const q = e.queue;
    const lens = e.queueLens;
    if (q.length === 0) return;
    e.queue = [];
    e.queueLens = [];
    for (let i = 0; i < q.length; i++) this.io.release(q[i], lens[i], e.mac);
  }

  private onLink4(a: number): boolean {
    for (const p of this.v4) if (prefixContains4(p.addr, p.len, a)) return true;
    return false;
  }

  private isOwn4(a: number): boolean {
    for (const p of this.v4) if (p.addr === a) return true;
    return false;
  }

  private isOwn6(a: Uint32Array): boolean {
    for (const p of this.v6) {
      const w = p.addr;
      if (w[0] === a[0] && w[1] === a[1] && w[2] === a[2] && w[3] === a[3]) return true;
    }
    return false;
  }

  // ------------------------------------------------------------ ARP

  /**
   * Handles an ARP frame's payload (`buf[off..off+len)` after the Ethernet
   * header). Returns false if it was malformed (a counted drop for the caller).
   */
  handleArp(buf: Buffer, off: number, len: number, now: number): boolean {
    const arp = this.arp.point(buf, off, len);
    if (arp.check() !== 0) return false;
    const op = arp.oper;
    const spa = arp.spa;
    const sha = arp.sha;
    const tpa = arp.tpa;
    const forUs = this.isOwn4(tpa);
    // learn the sender (not from DAD probes with sender 0.0.0.0, nor from multicast MACs)
    if (spa !== 0 && sha >= 0 && Math.floor(sha / 2 ** 40) % 2 === 0 && this.onLink4(spa)) {
      let id = this.index4.find(spa, 0, 0, 0);
      if (id < 0 && forUs && op === ARP_OP_REQUEST) id = this.create(4, Uint32Array.of(spa), now);
      if (id >= 0) this.learn(this.entries4[id]!, sha, op === ARP_OP_REPLY && forUs, true, now);
    }
    if (op === ARP_OP_REQUEST && forUs) {
      this.counters.arpRequestsAnswered++;
      this.writeArp(ARP_OP_REPLY, sha, tpa, sha, spa);
    }
    return true;
  }

  private sendArpRequest(target: number, dstMac: number): void {
    this.counters.arpRequestsSent++;
    let src = 0;
    for (const p of this.v4) {
      if (prefixContains4(p.addr, p.len, target)) {
        src = p.addr;
        break;
      }
    }
    if (src === 0 && this.v4.length > 0) src = this.v4[0].addr;
    this.writeArp(ARP_OP_REQUEST, dstMac >= 0 ? dstMac : MAC_BROADCAST, src, 0, target);
  }

  private writeArp(op: number, ethDst: number, spa: number, tha: number, tpa: number): void {
    const f = this.frame;
    writeEthernet(f, 0, ethDst, this.mac, ETHERTYPE_ARP);
    const o = ETH_HLEN;
    setU16(f, o, 1);
    setU16(f, o + 2, ETHERTYPE_IPV4);
    f[o + 4] = 6;
    f[o + 5] = 4;
    setU16(f, o + 6, op);
    setU48(f, o + 8, this.mac);
    setU32(f, o + 14, spa);
    setU48(f, o + 18, tha);
    setU32(f, o + 24, tpa);
    // pad to the Ethernet minimum of 60 bytes (without FCS)
    f.fill(0, o + ARP_LEN, 60);
    this.io.sendFrame(f, 0, 60);
  }

  // ------------------------------------------------------------ NDP

  /**
   * Handles an ICMPv6 NS or NA already recognised by the caller: `l3off` is
   * the IPv6 header, `l4off`/`l4len` the ICMPv6 message. Returns false if the
   * message is invalid per RFC 4861 7.1.1/7.1.2 (hop limit 255, checksum,
   * code 0, options), which the caller counts as a drop.
   */
  handleNdp(buf: Buffer, l3off: number, l4off: number, l4len: number, ethSrc: number, now: number): boolean {
    const type = buf[l4off];
    if (buf[l3off + 7] !== 255 || l4len < 24 || buf[l4off + 1] !== 0) return false;
    if (fold(sum16(buf, l4off, l4len, pseudoSum6(buf, l3off + 8, 58, l4len))) !== 0xffff) return false;
    // options: walk once, validating lengths and picking the link-layer address
    let lladdr = -1;
    for (let p = l4off + 24; p < l4off + l4len; ) {
      if (p + 2 > l4off + l4len) return false;
      const olen = buf[p + 1] * 8;
      if (olen === 0 || p + olen > l4off + l4len) return false;
      const ot = buf[p];
      if (olen === 8 && ((type === ICMPV6_NS && ot === NDP_SLLAO) || (type === ICMPV6_NA && ot === NDP_TLLAO))) {
        lladdr = getU48(buf, p + 2);
      }
      p += olen;
    }
    const target = this.tmp6;
    getWords128(buf, l4off + 8, target);
    if (target[0] >>> 24 === 0xff) return false;
    const src = this.tmp6b;
    getWords128(buf, l3off + 8, src);
    const srcUnspecified = (src[0] | src[1] | src[2] | src[3]) === 0;

    if (type === ICMPV6_NS) {
      if (srcUnspecified && lladdr >= 0) return false;
      if (!this.isOwn6(target)) return true;
      if (!srcUnspecified && lladdr >= 0) {
        let id = this.index6.find(src[0], src[1], src[2], src[3]);
        if (id < 0) id = this.create(6, Uint32Array.from(src), now);
        if (id >= 0) this.learn(this.entries6[id]!, lladdr, false, true, now);
      }
      this.counters.nsAnswered++;
      // to the soliciting node, or to all nodes (ff02::1) answering a DAD probe
      const dstMac = srcUnspecified ? 0x333300000001 : lladdr >= 0 ? lladdr : ethSrc;
      if (srcUnspecified) {
        src[0] = 0xff020000;
        src[1] = 0;
        src[2] = 0;
        src[3] = 1;
      }
      this.writeNdp(ICMPV6_NA, dstMac, target, src, target, NA_ROUTER | NA_OVERRIDE | (srcUnspecified ? 0 : NA_SOLICITED));
      return true;
    }
    if (type === ICMPV6_NA) {
      const flags = buf[l4off + 4];
      const dst0 = getU32(buf, l3off + 24);
      if (flags & NA_SOLICITED && dst0 >>> 24 === 0xff) return false;
      const id = this.index6.find(target[0], target[1], target[2], target[3]);
      if (id < 0) return true; // unsolicited: the kernel creates no entry either
      const e = this.entries6[id]!;
      const mac = lladdr >= 0 ? lladdr : e.mac >= 0 ? e.mac : ethSrc;
      this.learn(e, mac, (flags & NA_SOLICITED) !== 0, (flags & NA_OVERRIDE) !== 0 || e.mac < 0, now);
      return true;
    }
    return true;
  }

  private sendNs(target: Uint32Array, dstMac: number): void {
    this.counters.nsSent++;
    const dst = this.tmp6b;
    if (dstMac >= 0) {
      dst.set(target);
    } else {
      // solicited-node multicast ff02::1:ffXX:XXXX
      dst[0] = 0xff020000;
      dst[1] = 0;
      dst[2] = 1;
      dst[3] = (0xff000000 | (target[3] & 0xffffff)) >>> 0;
    }
    const mac = dstMac >= 0 ? dstMac : 0x3333 * 0x100000000 + dst[3];
    let src: Uint32Array | null = null;
    for (const p of this.v6) {
      if (prefixContains6(p.addr, p.len, target)) {
        src = p.addr;
        break;
      }
    }
    if (src === null) {
      if (this.v6.length === 0) return;
      src = this.v6[0].addr;
    }
    this.writeNdp(ICMPV6_NS, mac, src, dst, target, 0);
  }

  /** Builds Ethernet + IPv6 (hop limit 255) + NS/NA with our link-layer address option, and sends it. */
  private writeNdp(type: number, ethDst: number, src: Uint32Array, dst: Uint32Array, target: Uint32Array, flags: number): void {
    const f = this.frame;
    writeEthernet(f, 0, ethDst, this.mac, ETHERTYPE_IPV6);
    const ip = ETH_HLEN;
    const icmpLen = 32;
    setU32(f, ip, 0x60000000);
    setU16(f, ip + 4, icmpLen);
    f[ip + 6] = 58;
    f[ip + 7] = 255;
    setWords128(f, ip + 8, src);
    setWords128(f, ip + 24, dst);
    const m = ip + 40;
    f[m] = type;
    f[m + 1] = 0;
    setU16(f, m + 2, 0);
    setU32(f, m + 4, type === ICMPV6_NA ? flags << 24 : 0);
    setWords128(f, m + 8, target);
    f[m + 24] = type === ICMPV6_NA ? NDP_TLLAO : NDP_SLLAO;
    f[m + 25] = 1;
    setU48(f, m + 26, this.mac);
    const sum = sum16(f, m, icmpLen, pseudoSum6(f, ip + 8, 58, icmpLen));
    setU16(f, m + 2, ~fold(sum) & 0xffff);
    this.io.sendFrame(f, 0, ETH_HLEN + 40 + icmpLen);
  }

  // ------------------------------------------------------------ status

  list(): NeighborEntryInfo[] {
    const out: NeighborEntryInfo[] = [];
    for (const e of [...this.entries4, ...this.entries6]) {
      if (e) out.push({ family: e.family, address: e.address, mac: e.mac, state: e.state, queued: e.queue.length });
    }
    return out;
  }
}

/** Whether a destination MAC is for this station: its own, broadcast, or a multicast group. */
export function frameIsForUs(dstMac: number, ownMac: number): boolean {
  return dstMac === ownMac || Math.floor(dstMac / 2 ** 40) % 2 === 1;
}

/** Ethernet multicast MAC for an IPv6 multicast destination (33:33 + low 32 bits). */
export function ipv6MulticastMac(lastWord: number): number {
  return 0x3333 * 0x100000000 + (lastWord >>> 0);
}

export { ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6 };
