/**
 * Egress: what happens to a packet after POSTROUTING accepted it. It is
 * fragmented when it must be (ip_finish_output / ip6_finish_output), given
 * its Ethernet header on a TAP link (neighbour cache: the frame waits in the
 * entry's queue while the next hop is being resolved), and queued on its
 * interface's transmit queue; the queues are written once per batch, one
 * write per device.
 *
 * Forwarded packets are transmitted from where they were read (the Ethernet
 * header goes into the headroom in front of them); fragments are cut into a
 * side buffer and copied into the scratch arena.
 *
 * Super-packets (a TCP/UDP packet read with TSO/USO in force, gsoSize != 0;
 * docs/design.md "Offloads"): their segments, not the super-packet, must
 * fit the MTU (ip_exceeds_mtu's skb_gso_validate_network_len). A TUN that
 * takes GSO writes gets the super-packet whole with its gso_size; any other
 * link (TAP, a TUN with offloads off) gets the segments xtr cuts
 * (dataplane/gso.ts), written straight from a side buffer; IPv4 without DF
 * whose segments exceed the MTU is segmented, then each segment fragmented.
 */
import { fragmentIpv4, fragmentIpv6, refragmentIpv4, refragmentIpv6 } from '../dataplane/build.js';
import { gsoHeaderLength, segmentSuperPacket } from '../dataplane/gso.js';
import { ETH_HLEN, writeEthernet } from '../dataplane/ethernet.js';
import { IPV6_MIN_MTU } from '../dataplane/ipv6.js';
import type { Reassembler } from '../dataplane/reassembly.js';
import type { PacketContext } from '../xt/packet.js';
import { RouterDrop, type RouterInterface } from './interfaces.js';
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from './neighbor.js';
import type { RouteTable4, RouteTable6 } from './routing.js';
import type { ScratchArena, TxFlusher } from './scratch.js';

export const MAX_FRAGMENTS = 160;
/** Most segments a super-packet is cut into in software (64 KiB at the smallest MSS Linux sends, 48). */
const MAX_SEGMENTS = 1400;

/** The router's packet clock as egress reads it (neighbour entries age by it). */
export interface PacketClock {
  readonly now: number;
}

export class Egress implements TxFlusher {
  private readonly fragTmp = Buffer.alloc(65536 + MAX_FRAGMENTS * 64);
  private readonly fragOffs = new Uint32Array(MAX_FRAGMENTS);
  private readonly fragLens = new Uint32Array(MAX_FRAGMENTS);
  private readonly nextHop6 = new Uint32Array(4);

  /**
   * The original fragments of the datagram in ctx, if it was reassembled
   * here and they can be sent again as they were (set by keepGeometry,
   * cleared for every new packet).
   */
  private readonly reasmEnds = new Uint32Array(MAX_FRAGMENTS);
  reasmPieces = 0;
  private reasmUnfrag = 0;
  private reasmIdent = 0;

  /**
   * The packet in ctx goes to this next hop instead of the route's (a
   * packet emitted with a gateway, a TEE clone, a destination taken as
   * on-link on a given interface). Cleared for every new packet.
   */
  viaGateway = false;
  gateway4 = 0;
  readonly gateway6 = new Uint32Array(4);

  /** gso_size of the packet in ctx when it is a super-packet (its segments' payload), else 0. */
  gsoSize = 0;
  /** gso_size from the read batch for the packet about to enter the pipeline; the router's resetContext moves it to gsoSize. */
  rxGso = 0;
  /** gso_size of clones of super-packets (services.dup: TEE) by pending slot, taken when the slot runs. */
  private readonly pendingGso = new Uint32Array(256);
  /** Per interface index: gso_size of each queued packet, made on the first super-packet queued there. */
  private readonly txGso: (Uint32Array | undefined)[] = [];
  /** Side buffer for software segmentation (grown once on first use). */
  private segBuf: Buffer = Buffer.alloc(0);
  private readonly segOffs = new Uint32Array(MAX_SEGMENTS);
  private readonly segLens = new Uint32Array(MAX_SEGMENTS);

  constructor(
    private readonly buf: Buffer,
    private readonly ctx: PacketContext,
    private readonly interfaces: readonly RouterInterface[],
    private readonly routes4: RouteTable4,
    private readonly routes6: RouteTable6,
    private readonly scratch: ScratchArena,
    private readonly clock: PacketClock,
  ) {}

  /** Sends the packet in ctx to `gw` as its next hop. */
  setGateway4(gw: number): void {
    this.viaGateway = true;
    this.gateway4 = gw;
  }

  /** As setGateway4 for IPv6: the next hop is words[at, at+4). */
  setGateway6(words: Uint32Array, at: number): void {
    this.viaGateway = true;
    const g = this.gateway6;
    g[0] = words[at];
    g[1] = words[at + 1];
    g[2] = words[at + 2];
    g[3] = words[at + 3];
  }

  /** Remembers how the datagram now in ctx came in (its fragments), so it can leave the same way. */
  keepGeometry(reasm: Reassembler): void {
    const pieces = reasm.geometryKept && reasm.pieceCount <= MAX_FRAGMENTS ? reasm.pieceCount : 0;
    for (let k = 0; k < pieces; k++) this.reasmEnds[k] = reasm.pieceEnds[k];
    this.reasmPieces = pieces;
    this.reasmUnfrag = reasm.unfragmentableLength;
    this.reasmIdent = reasm.ident;
  }

  /** Transmits the IPv4 packet in ctx out of `out`; `id` is its route (for the next hop), -1 when viaGateway. */
  transmit4(out: RouterInterface, id: number, drops: Float64Array): void {
    const ctx = this.ctx;
    if (this.gsoSize !== 0) {
      this.transmitSuper(out, id, drops);
      return;
    }
    const o = ctx.l3off;
    const len = ctx.l3len;
    // ip_finish_output: a reassembled datagram always goes through ip_fragment
    if (len > out.mtu || ctx.fragMaxSize !== 0) {
      this.fragmentOut(out, id, drops);
      return;
    }
    if (out.kind !== 'tap') {
      this.queueTx(out, o, len);
      return;
    }
    const nh = this.viaGateway ? this.gateway4 : this.routes4.nextHop(id, ctx.dst4);
    const now = this.clock.now;
    const mac = out.neighbors!.lookup4(nh, now);
    if (mac < 0) {
      if (!out.neighbors!.enqueue4(nh, this.buf, o, len, now)) drops[RouterDrop.NEIGHBOR_FAILED]++;
      return;
    }
    writeEthernet(this.buf, o - ETH_HLEN, mac, out.macValue, ETHERTYPE_IPV4);
    this.queueTx(out, o - ETH_HLEN, len + ETH_HLEN);
  }

  transmit6(out: RouterInterface, id: number, drops: Float64Array): void {
    const ctx = this.ctx;
    if (this.gsoSize !== 0) {
      this.transmitSuper(out, id, drops);
      return;
    }
    const o = ctx.l3off;
    const len = ctx.l3len;
    // __ip6_finish_output: fragments again what came in larger than its fragments
    if (ctx.fragMaxSize !== 0 && len > ctx.fragMaxSize) {
      this.fragmentOut(out, id, drops);
      return;
    }
    if (out.kind !== 'tap') {
      this.queueTx(out, o, len);
      return;
    }
    const nh = this.nextHop6;
    if (this.viaGateway) nh.set(this.gateway6);
    else this.routes6.nextHop(id, ctx.dst6, nh);
    const now = this.clock.now;
    const mac = out.neighbors!.lookup6(nh, now);
    if (mac < 0) {
      if (!out.neighbors!.enqueue6(nh, this.buf, o, len, now)) drops[RouterDrop.NEIGHBOR_FAILED]++;
      return;
    }
    writeEthernet(this.buf, o - ETH_HLEN, mac, out.macValue, ETHERTYPE_IPV6);
    this.queueTx(out, o - ETH_HLEN, len + ETH_HLEN);
  }

  /**
   * Whether a packet larger than `out`'s MTU (IPv4: with DF) gets the
   * frag-needed / packet-too-big error: always, unless it was reassembled
   * here from fragments that each fit (the kernel's ignore_df with
   * frag_max_size no larger than the MTU, ip_exceeds_mtu / ip6_pkt_too_big).
   */
  fragmentsTooBig(out: RouterInterface): boolean {
    // a super-packet: its segments are what must fit (skb_gso_validate_network_len)
    if (this.gsoSize !== 0) return gsoHeaderLength(this.buf, this.ctx.l3off, this.ctx.l3len) + this.gsoSize > out.mtu;
    const fms = this.ctx.fragMaxSize;
    return fms === 0 || fms > out.mtu;
  }

  /**
   * Sends the packet in ctx as fragments, each queued (TAP: behind its
   * neighbour entry). IPv4 with DF clear and larger than the MTU is cut to
   * the MTU (ip_do_fragment). A datagram reassembled here goes out as the
   * fragments it came in when they fit (the kernel's fast path over the
   * fragment list); otherwise IPv4 is cut to min(frag_max_size, MTU) and
   * IPv6 to frag_max_size, raised to the IPv6 minimum MTU (ip6_fragment).
   */
  private fragmentOut(out: RouterInterface, id: number, drops: Float64Array): void {
    const ctx = this.ctx;
    const v4 = ctx.family === 4;
    const fms = ctx.fragMaxSize;
    const b = this.buf;
    const o = ctx.l3off;
    const len = ctx.l3len;
    let count = -1;
    if (v4) {
      const mtu = fms !== 0 && fms < out.mtu ? fms : out.mtu;
      if (this.reasmPieces !== 0) {
        count = refragmentIpv4(b, o, len, mtu, this.reasmEnds, this.reasmPieces, this.fragTmp, 0, this.fragOffs, this.fragLens);
      }
      if (count < 0) count = fragmentIpv4(b, o, len, mtu, this.fragTmp, 0, this.fragOffs, this.fragLens);
    } else {
      const mtu = Math.min(out.mtu, Math.max(fms, IPV6_MIN_MTU));
      if (this.reasmPieces !== 0) {
        count = refragmentIpv6(b, o, len, mtu, this.reasmUnfrag, this.reasmEnds, this.reasmPieces, this.reasmIdent, this.fragTmp, 0, this.fragOffs, this.fragLens);
      }
      if (count < 0) count = fragmentIpv6(b, o, len, mtu, this.reasmIdent, this.fragTmp, 0, this.fragOffs, this.fragLens);
    }
    if (count < 0) {
      drops[RouterDrop.FRAGMENTATION_FAILED]++;
      return;
    }
    let mac = -1;
    if (out.kind === 'tap') {
      const nbr = out.neighbors!;
      const now = this.clock.now;
      if (v4) {
        const nh = this.viaGateway ? this.gateway4 : this.routes4.nextHop(id, ctx.dst4);
        mac = nbr.lookup4(nh, now);
        if (mac < 0) {
          for (let k = 0; k < count; k++) {
            if (!nbr.enqueue4(nh, this.fragTmp, this.fragOffs[k], this.fragLens[k], now)) drops[RouterDrop.NEIGHBOR_FAILED]++;
          }
          return;
        }
      } else {
        const nh = this.nextHop6;
        if (this.viaGateway) nh.set(this.gateway6);
        else this.routes6.nextHop(id, ctx.dst6, nh);
        mac = nbr.lookup6(nh, now);
        if (mac < 0) {
          for (let k = 0; k < count; k++) {
            if (!nbr.enqueue6(nh, this.fragTmp, this.fragOffs[k], this.fragLens[k], now)) drops[RouterDrop.NEIGHBOR_FAILED]++;
          }
          return;
        }
      }
    }
    const ethertype = v4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6;
    const scratch = this.scratch;
    for (let k = 0; k < count; k++) {
      const flen = this.fragLens[k];
      const p = scratch.copyIn(this.fragTmp, this.fragOffs[k], flen);
      if (p < 0) {
        drops[RouterDrop.SCRATCH_FULL]++;
        return;
      }
      if (mac >= 0) {
        writeEthernet(this.buf, p - ETH_HLEN, mac, out.macValue, ethertype);
        this.queueTx(out, p - ETH_HLEN, flen + ETH_HLEN);
      } else {
        this.queueTx(out, p, flen);
      }
    }
  }

  /** A frame the neighbour cache built (ARP, NDP), copied into scratch and queued on `ri`. */
  sendFrame(ri: RouterInterface, b: Uint8Array, off: number, len: number): void {
    const p = this.scratch.copyIn(b, off, len);
    if (p < 0) return;
    this.queueTx(ri, p, len);
  }

  /** A packet that waited for its next hop's MAC, now resolved: framed and queued on `ri`. */
  sendResolved(ri: RouterInterface, pkt: Uint8Array, len: number, mac: number): void {
    const p = this.scratch.copyIn(pkt, 0, len);
    if (p < 0) {
      ri.drops[RouterDrop.SCRATCH_FULL]++;
      return;
    }
    writeEthernet(this.buf, p - ETH_HLEN, mac, ri.macValue, pkt[0] >> 4 === 6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
    this.queueTx(ri, p - ETH_HLEN, len + ETH_HLEN);
  }

  /** A clone of the packet in ctx waits in pending slot `slot`: it keeps ctx's gso_size (an skb clone keeps its gso info). */
  cloneToPending(slot: number): void {
    if (slot < this.pendingGso.length) this.pendingGso[slot] = this.gsoSize;
  }

  /**
   * Before pending slot `slot` (at off, len) runs: hands its gso_size, if it
   * is a clone of a super-packet, to the next resetContext. Checked against
   * the bytes, so a value left by a slot that never ran cannot stick to an
   * ICMP error or a reset (not TCP/UDP, or no longer than one segment).
   */
  takePending(slot: number, off: number, len: number): void {
    if (slot >= this.pendingGso.length) return;
    const g = this.pendingGso[slot];
    this.pendingGso[slot] = 0;
    if (g === 0) return;
    const hl = gsoHeaderLength(this.buf, off, len);
    if (hl !== 0 && len - hl > g) this.rxGso = g;
  }

  /** Queues a packet of the router's buffer on `ri`; `gso` != 0 marks a super-packet the device writes whole. */
  queueTx(ri: RouterInterface, off: number, len: number, gso = 0): void {
    if (ri.txCount === ri.txOffsets.length) this.flush(ri);
    const i = ri.txCount++;
    ri.txOffsets[i] = off;
    ri.txLengths[i] = len;
    let g = this.txGso[ri.index];
    if (g === undefined && gso !== 0) g = this.txGso[ri.index] = new Uint32Array(ri.txOffsets.length);
    if (g !== undefined) g[i] = gso;
  }

  /** The packet in ctx delivered to the host interface (or, in gateway mode, back into its TUN): no MTU, no fragmentation. */
  queueLocal(ri: RouterInterface, drops: Float64Array): void {
    const ctx = this.ctx;
    if (this.gsoSize !== 0 && ri.device.gsoWrites !== true) this.writeSegments(ri, -1, drops, false);
    else this.queueTx(ri, ctx.l3off, ctx.l3len, this.gsoSize);
  }

  /**
   * A super-packet out of `out`: whole when the device takes GSO writes and
   * its segments fit, else cut here (the forward path has already answered
   * DF/IPv6 super-packets whose segments do not fit with frag-needed/too-big).
   */
  private transmitSuper(out: RouterInterface, id: number, drops: Float64Array): void {
    const ctx = this.ctx;
    const hl = gsoHeaderLength(this.buf, ctx.l3off, ctx.l3len);
    const fits = hl !== 0 && hl + this.gsoSize <= out.mtu;
    if (fits && out.kind !== 'tap' && out.device.gsoWrites === true) {
      this.queueTx(out, ctx.l3off, ctx.l3len, this.gsoSize);
      return;
    }
    this.writeSegments(out, id, drops, !fits);
  }

  /**
   * Cuts the super-packet in ctx into its segments and sends them on `out`
   * in order after what is queued there: written straight from the side
   * buffer (TAP: framed, or queued behind an unresolved neighbour), or, when
   * `fragment`, each copied into scratch and sent through transmit4/6 so it
   * is fragmented to the MTU.
   */
  private writeSegments(out: RouterInterface, id: number, drops: Float64Array, fragment: boolean): void {
    const ctx = this.ctx;
    const g = this.gsoSize;
    const v4 = ctx.family === 4;
    const tap = out.kind === 'tap';
    const room = tap ? ETH_HLEN : 0;
    if (this.segBuf.length === 0) this.segBuf = Buffer.alloc(65536 + MAX_SEGMENTS * (room + 128) + 4096);
    const seg = this.segBuf;
    const offs = this.segOffs;
    const lens = this.segLens;
    const count = segmentSuperPacket(this.buf, ctx.l3off, ctx.l3len, g, seg, 0, ETH_HLEN, offs, lens);
    if (count < 0) {
      drops[RouterDrop.FRAGMENTATION_FAILED]++;
      return;
    }
    if (fragment) {
      const o = ctx.l3off;
      const len = ctx.l3len;
      this.gsoSize = 0;
      for (let k = 0; k < count; k++) {
        const p = this.scratch.copyIn(seg, offs[k], lens[k]);
        if (p < 0) {
          drops[RouterDrop.SCRATCH_FULL]++;
          break;
        }
        ctx.l3off = p;
        ctx.l3len = lens[k];
        if (v4) this.transmit4(out, id, drops);
        else this.transmit6(out, id, drops);
      }
      ctx.l3off = o;
      ctx.l3len = len;
      this.gsoSize = g;
      return;
    }
    if (tap) {
      const nbr = out.neighbors!;
      const now = this.clock.now;
      let mac: number;
      let nh4 = 0;
      const nh6 = this.nextHop6;
      if (v4) {
        nh4 = this.viaGateway ? this.gateway4 : this.routes4.nextHop(id, ctx.dst4);
        mac = nbr.lookup4(nh4, now);
      } else {
        if (this.viaGateway) nh6.set(this.gateway6);
        else this.routes6.nextHop(id, ctx.dst6, nh6);
        mac = nbr.lookup6(nh6, now);
      }
      if (mac < 0) {
        for (let k = 0; k < count; k++) {
          const ok = v4 ? nbr.enqueue4(nh4, seg, offs[k], lens[k], now) : nbr.enqueue6(nh6, seg, offs[k], lens[k], now);
          if (!ok) drops[RouterDrop.NEIGHBOR_FAILED]++;
        }
        return;
      }
      const ethertype = v4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6;
      for (let k = 0; k < count; k++) {
        offs[k] -= ETH_HLEN;
        lens[k] += ETH_HLEN;
        writeEthernet(seg, offs[k], mac, out.macValue, ethertype);
      }
    }
    this.flush(out);
    const n = out.device.write(seg, offs, lens, count);
    out.txPackets += n;
    for (let k = 0; k < n; k++) out.txBytes += lens[k];
  }

  private flush(ri: RouterInterface): void {
    const count = ri.txCount;
    if (count === 0) return;
    ri.txCount = 0;
    const n = ri.device.write(this.buf, ri.txOffsets, ri.txLengths, count, this.txGso[ri.index]);
    ri.txPackets += n;
    if (n === count) {
      let bytes = 0;
      for (let i = 0; i < count; i++) bytes += ri.txLengths[i];
      ri.txBytes += bytes;
    }
  }

  flushAll(): void {
    const ifs = this.interfaces;
    for (let i = 1; i < ifs.length; i++) if (ifs[i].txCount !== 0) this.flush(ifs[i]);
  }
}
