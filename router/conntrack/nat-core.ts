/**
 * Conntrack NAT, after the kernel's nf_nat_core + nf_nat_proto: the binding
 * a NAT target asks for (xt/nat.ts NatService.setup, nf_nat_setup_info with
 * get_unique_tuple), the null binding of a flow no nat rule bound, and the
 * rewriting of every packet of a translated flow, both directions, ICMP
 * errors about it included (nat.ts NatHook, nf_nat_manip_pkt and
 * nf_nat_icmp_reply_translation). Bytes are rewritten by dataplane/mangle.ts.
 *
 * Tuple choice (get_unique_tuple):
 *  1. SRC manip without --random/--random-fully: the original tuple when it
 *     is in the range and its reply tuple is free (the source port is kept).
 *     Not done: find_appropriate_src (reusing the mapping of another flow
 *     from the same source address and port) - xtr keeps no by-source index.
 *  2. The address: the only one of the range, else one chosen by a hash of
 *     the source (and, without --persistent, the destination) address, so
 *     a client keeps its address (find_best_ips_proto; the hash is not jhash,
 *     so which address of a range is picked differs from the kernel's).
 *  3. The port (query id): kept when in range and free (or the range is one
 *     port); else nf_nat_l4proto_unique_tuple: from a random offset (DST
 *     manip without --random: from the range's start) over the range, at
 *     most 128 tries, then halving rounds from new random offsets. Without a
 *     port range, SRC keeps the kernel's classes (1-511, 600-1023,
 *     1024-65535) and DST never changes the port. Nothing free: the last
 *     candidate is bound anyway and confirm refuses the flow (insert_failed).
 */
import { Verdict, type PacketContext } from '../../xt/packet.js';
import { ConnStatus } from '../../xt/conn.js';
import { NatRangeFlag, type NatRange, type NatService, type NatSetupOptions, NatSide } from '../../xt/nat.js';
import {
  End,
  IcmpInner,
  setAddress4,
  setAddress6,
  setIcmpQueryId,
  setInnerAddress4,
  setInnerAddress6,
  setInnerIcmpQueryId,
  setInnerPort,
  setPort,
} from '../../dataplane/mangle.js';
import { ConnEntry, CtTuple, P_ICMP, P_ICMPV6, hasPorts } from './entry.js';
import { NatManip, type NatHook } from './nat.js';
import { icmp4IsError, icmp6IsError } from './icmp.js';
import type { Conntrack } from './table.js';

const MAX_ATTEMPTS = 128;
const RANDOM_ALL = NatRangeFlag.PROTO_RANDOM | NatRangeFlag.PROTO_RANDOM_FULLY;

/** Scratch (no allocation per packet). */
const cand = new Uint32Array(4);
/** The manip's original address while a binding is chosen (entry tuples are re-pointed views: entry.ts CtTuple). */
const origScratch = new Uint32Array(4);
const nullAddr = new Uint32Array(4);
/** The other direction's tuple of the packet being rewritten, copied out of the store. */
const otherTuple = new CtTuple();
const inner = new IcmpInner();

function addrIn(family: number, a: Uint32Array, lo: Uint32Array, hi: Uint32Array): boolean {
  const n = family === 4 ? 1 : 4;
  let geLo = true;
  for (let i = 0; i < n; i++) {
    if (a[i] !== lo[i]) {
      geLo = a[i] >>> 0 > lo[i] >>> 0;
      break;
    }
  }
  if (!geLo) return false;
  for (let i = 0; i < n; i++) {
    if (a[i] !== hi[i]) return a[i] >>> 0 < hi[i] >>> 0;
  }
  return true;
}

/** The "port" of the tuple the manip owns: ports for SRC are orig.sport, for DST orig.dport; ICMP: the query id. */
function manipPort(e: ConnEntry, manip: NatManip): number {
  const o = e.orig;
  if (e.proto === P_ICMP || e.proto === P_ICMPV6) return o.sport;
  return manip === NatManip.SRC ? o.sport : o.dport;
}

function isQuery(e: ConnEntry): boolean {
  return (e.proto === P_ICMP && e.family === 4) || (e.proto === P_ICMPV6 && e.family === 6);
}

/**
 * Gateway mode (docs/gateway.md "NAT"): the kernel of the gateway's
 * namespace owns some addresses, and only replies whose destination port is
 * in `lo..hi` (and ICMP) are diverted into xtr before the kernel's `local`
 * rule; a source translation to such an address takes its port (ICMP query
 * id) from that range.
 */
export interface HostNatPorts {
  lo: number;
  hi: number;
  owns(family: number, addr: Uint32Array): boolean;
}

export class NatCore implements NatService, NatHook {
  /** Set in gateway mode only. */
  hostPorts: HostNatPorts | null = null;
  private readonly hostRange: NatRange = { flags: 0, minAddr: new Uint32Array(4), maxAddr: new Uint32Array(4), minPort: 0, maxPort: 0, basePort: 0 };

  constructor(
    private readonly ct: Conntrack,
    private readonly random: () => number,
  ) {}

  // ------------------------------------------------------------ binding

  setup(pkt: PacketContext, side: NatSide, range: NatRange, opts?: NatSetupOptions): number {
    const e = pkt.ct;
    if (e === null || !(e instanceof ConnEntry)) return Verdict.DROP;
    const manip = side === NatSide.SRC ? NatManip.SRC : NatManip.DST;
    if ((e.status & ConnStatus.CONFIRMED) !== 0) return Verdict.ACCEPT;
    const done = manip === NatManip.SRC ? ConnStatus.SRC_NAT_DONE : ConnStatus.DST_NAT_DONE;
    if ((e.status & done) !== 0) return Verdict.ACCEPT;
    this.bind(e, manip, range, pkt.now);
    if (opts?.masqIface !== undefined) e.masqIface = opts.masqIface;
    return Verdict.ACCEPT;
  }

  forgetInterface(name: string): number {
    return this.ct.forgetMasquerade(name);
  }

  nullBinding(pkt: PacketContext, e: ConnEntry, manip: NatManip): void {
    // alloc_null_binding: the range is the address the tuple has now (no port range).
    const r = e.repl;
    const t = nullAddr;
    t.set(manip === NatManip.SRC ? r.dst : r.src);
    if (!this.ct.natTaken(e, manip, t, -1, pkt.now)) {
      this.ct.setBinding(e, manip, t, -1, pkt.now, true);
      return;
    }
    nullRange.flags = NatRangeFlag.MAP_IPS;
    nullRange.minAddr.set(t);
    nullRange.maxAddr.set(t);
    this.bind(e, manip, nullRange, pkt.now);
  }

  /** get_unique_tuple + nf_nat_setup_info's binding. */
  private bind(e: ConnEntry, manip: NatManip, r: NatRange, now: number): void {
    if (this.hostPorts !== null && manip === NatManip.SRC) r = this.hostRangeFor(e, r);
    const ct = this.ct;
    const family = e.family;
    const flags = r.flags;
    const origAddr = origScratch;
    origAddr.set(manip === NatManip.SRC ? e.orig.src : e.orig.dst);
    const origPort = manipPort(e, manip);
    const ported = hasPorts(e.proto) || isQuery(e);
    const protoSpec = (flags & NatRangeFlag.PROTO_SPECIFIED) !== 0 && ported;
    // 1. keep the original tuple
    if (manip === NatManip.SRC && (flags & RANDOM_ALL) === 0) {
      const addrOk = (flags & NatRangeFlag.MAP_IPS) === 0 || addrIn(family, origAddr, r.minAddr, r.maxAddr);
      const portOk = !protoSpec || (origPort >= r.minPort && origPort <= r.maxPort);
      if (addrOk && portOk && !ct.natTaken(e, manip, origAddr, origPort, now)) {
        ct.setBinding(e, manip, origAddr, origPort, now, true);
        return;
      }
    }
    // 2. the address
    cand.set(origAddr);
    if ((flags & NatRangeFlag.MAP_IPS) !== 0) this.pickAddress(e, manip, r, cand);
    // 3. the port
    if ((flags & RANDOM_ALL) === 0) {
      if (protoSpec) {
        if ((flags & NatRangeFlag.PROTO_OFFSET) === 0 && origPort >= r.minPort && origPort <= r.maxPort && (r.minPort === r.maxPort || !ct.natTaken(e, manip, cand, origPort, now))) {
          ct.setBinding(e, manip, cand, origPort, now, true);
          return;
        }
      } else if (!ct.natTaken(e, manip, cand, origPort, now)) {
        ct.setBinding(e, manip, cand, origPort, now, true);
        return;
      }
    }
    ct.setBinding(e, manip, cand, this.uniquePort(e, manip, r, cand, origPort, now), now, true);
  }

  /**
   * Gateway mode: a SRC binding whose address the gateway's kernel owns gets
   * its ports from the reserved range (intersected with the rule's
   * --to-ports, the reserved range alone when they do not meet), so the
   * replies match the policy rules that divert them into xtr.
   */
  private hostRangeFor(e: ConnEntry, r: NatRange): NatRange {
    const hp = this.hostPorts!;
    if (!hasPorts(e.proto) && !isQuery(e)) return r;
    cand.set(e.orig.src);
    if ((r.flags & NatRangeFlag.MAP_IPS) !== 0) this.pickAddress(e, NatManip.SRC, r, cand);
    if (!hp.owns(e.family, cand)) return r;
    const h = this.hostRange;
    h.flags = r.flags | NatRangeFlag.PROTO_SPECIFIED;
    h.minAddr.set(r.minAddr);
    h.maxAddr.set(r.maxAddr);
    h.basePort = r.basePort;
    let lo = hp.lo;
    let hi = hp.hi;
    if ((r.flags & NatRangeFlag.PROTO_SPECIFIED) !== 0) {
      const a = Math.max(lo, Math.min(r.minPort, r.maxPort));
      const b = Math.min(hi, Math.max(r.minPort, r.maxPort));
      if (a <= b) {
        lo = a;
        hi = b;
      }
      // Offsets (NETMAP-like port maps) make no sense in a narrowed range.
    }
    h.flags &= ~NatRangeFlag.PROTO_OFFSET;
    h.minPort = lo;
    h.maxPort = hi;
    return h;
  }

  /** find_best_ips_proto: one address of the range, chosen by a hash of the source (and destination) address. */
  private pickAddress(e: ConnEntry, manip: NatManip, r: NatRange, out: Uint32Array): void {
    const family = e.family;
    const n = family === 4 ? 1 : 4;
    let same = true;
    for (let i = 0; i < n; i++) if (r.minAddr[i] !== r.maxAddr[i]) same = false;
    out.set(r.minAddr);
    if (same) return;
    // Only the last word that differs varies, as the kernel's loop over the address words does.
    let h = 0x9e3779b9;
    const o = e.orig;
    for (let i = 0; i < n; i++) h = Math.imul(h ^ o.src[i], 0x85ebca6b);
    if ((r.flags & NatRangeFlag.PERSISTENT) === 0) h = Math.imul(h ^ o.dst[n - 1], 0xc2b2ae35);
    h = (h ^ (h >>> 13)) >>> 0;
    let full = false;
    for (let i = 0; i < n; i++) {
      const lo = r.minAddr[i] >>> 0;
      const hi = full ? 0xffffffff : r.maxAddr[i] >>> 0;
      const dist = hi - lo;
      const v = lo + Math.floor(((h >>> 0) / 0x100000000) * (dist + 1));
      out[i] = v >>> 0;
      if (v !== hi) full = true;
      h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
    }
  }

  /** nf_nat_l4proto_unique_tuple; returns the port (query id) chosen, -1 to keep it. */
  private uniquePort(e: ConnEntry, manip: NatManip, r: NatRange, addr: Uint32Array, origPort: number, now: number): number {
    const flags = r.flags;
    let min: number;
    let size: number;
    if (isQuery(e)) {
      if ((flags & NatRangeFlag.PROTO_SPECIFIED) === 0) {
        min = 0;
        size = 65536;
      } else {
        min = r.minPort;
        size = r.maxPort - r.minPort + 1;
      }
    } else if (hasPorts(e.proto)) {
      if ((flags & NatRangeFlag.PROTO_SPECIFIED) === 0) {
        if (manip === NatManip.DST) return -1;
        if (origPort < 1024) {
          if (origPort < 512) {
            min = 1;
            size = 511;
          } else {
            min = 600;
            size = 1023 - 600 + 1;
          }
        } else {
          min = 1024;
          size = 65535 - 1024 + 1;
        }
      } else {
        let lo = r.minPort;
        let hi = r.maxPort;
        if (hi < lo) [lo, hi] = [hi, lo];
        min = lo;
        size = hi - lo + 1;
      }
    } else {
      return -1;
    }
    let off: number;
    if ((flags & NatRangeFlag.PROTO_OFFSET) !== 0) off = (origPort - r.basePort) & 0xffff;
    else if ((flags & RANDOM_ALL) !== 0 || manip !== NatManip.DST) off = this.random() & 0xffff;
    else off = 0;
    let attempts = Math.min(size, MAX_ATTEMPTS);
    let port = min;
    for (let round = 0; round < 32; round++) {
      for (let i = 0; i < attempts; i++, off++) {
        port = min + (off % size);
        if (!this.ct.natTaken(e, manip, addr, port, now)) return port;
      }
      if (attempts >= size || attempts < 16) break;
      attempts >>= 1;
      off = this.random() & 0xffff;
    }
    return port;
  }

  // ------------------------------------------------------------ rewriting

  translate(pkt: PacketContext, e: ConnEntry, manip: NatManip, reply: boolean): number {
    const other = otherTuple.load(e.store, 2 * e.slot + (reply ? 0 : 1));
    const family = pkt.family;
    if (pkt.ctState === 8 /* RELATED */ && this.isError(pkt)) return this.translateError(pkt, e, manip, reply);
    if (manip === NatManip.SRC) {
      if (family === 4) setAddress4(pkt, End.SRC, other.dst[0]);
      else setAddress6(pkt, End.SRC, other.dst, true);
      if (hasPorts(e.proto)) setPort(pkt, End.SRC, other.dport, true);
    } else {
      if (family === 4) setAddress4(pkt, End.DST, other.src[0]);
      else setAddress6(pkt, End.DST, other.src, true);
      if (hasPorts(e.proto)) setPort(pkt, End.DST, other.sport, true);
    }
    if (isQuery(e)) setIcmpQueryId(pkt, other.sport);
    return Verdict.ACCEPT;
  }

  private isError(pkt: PacketContext): boolean {
    if (pkt.family === 4) return pkt.proto === P_ICMP && icmp4IsError(pkt.icmpType);
    return pkt.proto === P_ICMPV6 && icmp6IsError(pkt.icmpType);
  }

  /**
   * nf_nat_icmp_reply_translation: the embedded packet gets the opposite
   * manip from the other direction's tuple (it must look like the packet its
   * sender saw), the outer header this hook's manip as a reply would.
   */
  private translateError(pkt: PacketContext, e: ConnEntry, manip: NatManip, reply: boolean): number {
    const other = otherTuple.load(e.store, 2 * e.slot + (reply ? 0 : 1));
    if (!inner.locate(pkt)) return Verdict.DROP;
    const v4 = pkt.family === 4;
    if (manip === NatManip.DST) {
      // inner: SRC manip to other.src / other.sport
      if (v4) setInnerAddress4(inner, End.SRC, other.src[0]);
      else setInnerAddress6(inner, End.SRC, other.src, true);
      if (hasPorts(e.proto)) setInnerPort(inner, End.SRC, other.sport, true);
    } else {
      if (v4) setInnerAddress4(inner, End.DST, other.dst[0]);
      else setInnerAddress6(inner, End.DST, other.dst, true);
      if (hasPorts(e.proto)) setInnerPort(inner, End.DST, other.dport, true);
    }
    if (isQuery(e)) setInnerIcmpQueryId(inner, other.sport);
    // outer: as a reply to the embedded packet
    if (manip === NatManip.SRC) {
      if (v4) setAddress4(pkt, End.SRC, other.dst[0]);
      else setAddress6(pkt, End.SRC, other.dst);
    } else {
      if (v4) setAddress4(pkt, End.DST, other.src[0]);
      else setAddress6(pkt, End.DST, other.src);
    }
    return Verdict.ACCEPT;
  }
}

const nullRange: NatRange = { flags: 0, minAddr: new Uint32Array(4), maxAddr: new Uint32Array(4), minPort: 0, maxPort: 0, basePort: 0 };
