/**
 * Address and port rewriting in place, with every checksum that covers the
 * rewritten bytes updated incrementally (RFC 1624) and the PacketContext kept
 * in step with the bytes. NAT, RAWSNAT/RAWDNAT, NETMAP and DNETMAP all need
 * exactly this, so it lives once here rather than once per target.
 *
 * What a rewrite touches, as the kernel's nf_nat_ipv4/ipv6_manip_pkt and the
 * per-protocol manip_pkt functions do:
 *  - the IPv4 header checksum (IPv6 has none);
 *  - the transport checksum when it covers the pseudo-header (TCP, UDP,
 *    UDP-Lite, DCCP, ICMPv6) and the header holding it is present: never for
 *    a non-first fragment (no transport header: only the addresses change);
 *  - UDP over IPv4 with checksum 0 means "no checksum" and stays 0; a UDP or
 *    UDP-Lite checksum that computes to 0 is written 0xffff (RFC 768); UDP
 *    over IPv6 is always updated (0 is not a valid IPv6 UDP checksum) unless
 *    the caller passes keepZeroUdp (conntrack NAT: the kernel's nf_nat
 *    leaves a zero UDP checksum alone in both families);
 *  - ICMP errors: the packet embedded after the ICMP header is rewritten by
 *    the `Inner` functions (its IP header, IPv4 header checksum, ports or
 *    query id and, when its header is there in full, its transport checksum),
 *    and the outer ICMP/ICMPv6 checksum absorbs every word they change. The
 *    ICMPv6 checksum also covers the outer pseudo-header, so an outer address
 *    change updates it like any other pseudo-header checksum.
 *
 * The embedded transport checksum is updated only when the whole transport
 * header is inside the error (TCP: 20 bytes), as the kernel does: an error
 * carries only the first 8 bytes for sure, and a checksum whose covered data
 * is cut off cannot be made right anyway.
 *
 * Non-goals: SCTP port rewriting (its CRC32c covers the whole packet and no
 * pseudo-header: addresses need nothing, ports would need a recomputation);
 * checksum offload state (xtr always carries complete checksums).
 *
 * Nothing here allocates: the functions work over (ctx) or over an
 * `IcmpInner` the caller allocates once and re-points per packet.
 */
import type { PacketContext } from '../xt/packet.js';
import { type Bytes, getU16, getU32, getWords128, setU16, setWords128 } from './bytes.js';
import { csumReplace16, csumReplace2, csumReplace4 } from './checksum.js';
import { Ipv6ExtInfo, walkIpv6Ext } from './ipv6.js';

/** Which end of the packet a rewrite changes (the kernel's NF_NAT_MANIP_SRC / _DST). */
export const enum End {
  SRC = 0,
  DST = 1,
}

/** How a transport checksum treats 0 (see the module comment). */
const enum ZeroRule {
  /** TCP, DCCP, ICMPv6: 0 is just a value. */
  NONE = 0,
  /** UDP over IPv4: 0 = no checksum (left alone); a computed 0 goes out as 0xffff. */
  UDP4 = 1,
  /** UDP over IPv6, UDP-Lite: always updated; a computed 0 goes out as 0xffff. */
  ALWAYS_FFFF = 2,
}

/** Offset of the transport checksum inside its header, or -1 when it does not cover the pseudo-header. */
function pseudoChecksumOffset(proto: number): number {
  switch (proto) {
    case 6:
      return 16;
    case 17:
    case 136:
    case 33:
      return 6;
    case 58:
      return 2;
    default:
      return -1;
  }
}

/** Transport header bytes that must be present before its checksum is touched (the kernel's hdrsize). */
function headerNeeded(proto: number): number {
  switch (proto) {
    case 6:
      return 20;
    case 33:
      return 12;
    case 17:
    case 136:
    case 1:
    case 58:
      return 8;
    default:
      return 0;
  }
}

/**
 * `keepZeroUdp`: NAT's rule (nf_nat_proto's udp_manip_pkt updates the
 * checksum only `if (udph->check || CHECKSUM_PARTIAL)`, in both families):
 * a zero UDP checksum stays zero also over IPv6. Raw rewrites keep RFC 8200's rule.
 */
function zeroRule(proto: number, family: 4 | 6, keepZeroUdp = false): ZeroRule {
  if (proto === 17) return family === 4 || keepZeroUdp ? ZeroRule.UDP4 : ZeroRule.ALWAYS_FFFF;
  if (proto === 136) return ZeroRule.ALWAYS_FFFF;
  return ZeroRule.NONE;
}

/** True for protocols whose first four bytes are source and destination port and xtr can rewrite. */
function hasPorts(proto: number): boolean {
  return proto === 6 || proto === 17 || proto === 136 || proto === 33;
}

/** ICMP query types carrying an identifier (echo, timestamp, information, address mask). */
function isIcmp4Query(type: number): boolean {
  return type === 0 || type === 8 || (type >= 13 && type <= 18);
}

function isIcmp6Query(type: number): boolean {
  return type === 128 || type === 129;
}

/**
 * Writes a 16-bit word; when `sink` >= 0 the checksum at buf[sink] covers the
 * word (the outer ICMP checksum of an error) and is updated with it. Every
 * write into an ICMP error's payload goes through here, so no change can be
 * forgotten in the outer checksum.
 */
function put16(b: Bytes, off: number, v: number, sink: number): void {
  if (sink >= 0) setU16(b, sink, csumReplace2(getU16(b, sink), getU16(b, off), v));
  setU16(b, off, v);
}

/** Stores a new checksum value computed by `next` from the old one, honouring the zero rule. */
function putChecksum(b: Bytes, off: number, next: number, rule: ZeroRule, sink: number): void {
  if (rule === ZeroRule.UDP4 && getU16(b, off) === 0) return;
  put16(b, off, rule !== ZeroRule.NONE && next === 0 ? 0xffff : next, sink);
}

/*
 * The workers below act on one IP packet described by numbers (the outer
 * packet from a PacketContext, or the one inside an ICMP error from an
 * IcmpInner): l3off, family, proto, l4off, bytes of transport header present
 * (avail, 0 = none: a non-first fragment), and the sink checksum (-1 = none).
 */

function addr4(b: Bytes, l3off: number, proto: number, l4off: number, avail: number, end: End, addr: number, sink: number): void {
  const at = l3off + (end === End.SRC ? 12 : 16);
  const old = getU32(b, at);
  if (old === addr) return;
  const cs = pseudoChecksumOffset(proto);
  if (cs >= 0 && avail >= headerNeeded(proto)) {
    const off = l4off + cs;
    putChecksum(b, off, csumReplace4(getU16(b, off), old, addr), zeroRule(proto, 4), sink);
  }
  put16(b, l3off + 10, csumReplace4(getU16(b, l3off + 10), old, addr), sink);
  put16(b, at, addr >>> 16, sink);
  put16(b, at + 2, addr & 0xffff, sink);
}

const old6 = new Uint32Array(4);

function addr6(b: Bytes, l3off: number, proto: number, l4off: number, avail: number, end: End, addr: Uint32Array, sink: number, keepZeroUdp = false): void {
  const at = l3off + (end === End.SRC ? 8 : 24);
  getWords128(b, at, old6);
  if (old6[0] === addr[0] && old6[1] === addr[1] && old6[2] === addr[2] && old6[3] === addr[3]) return;
  const cs = pseudoChecksumOffset(proto);
  if (cs >= 0 && avail >= headerNeeded(proto)) {
    const off = l4off + cs;
    putChecksum(b, off, csumReplace16(getU16(b, off), old6, addr), zeroRule(proto, 6, keepZeroUdp), sink);
  }
  if (sink >= 0) setU16(b, sink, csumReplace16(getU16(b, sink), old6, addr));
  setWords128(b, at, addr);
}

function port(b: Bytes, family: 4 | 6, proto: number, l4off: number, avail: number, end: End, value: number, sink: number, keepZeroUdp = false): boolean {
  if (!hasPorts(proto) || avail < 4) return false;
  const at = l4off + (end === End.SRC ? 0 : 2);
  const old = getU16(b, at);
  if (old === value) return true;
  const cs = pseudoChecksumOffset(proto);
  if (avail >= headerNeeded(proto)) {
    const off = l4off + cs;
    putChecksum(b, off, csumReplace2(getU16(b, off), old, value), zeroRule(proto, family, keepZeroUdp), sink);
  }
  put16(b, at, value, sink);
  return true;
}

function queryId(b: Bytes, family: 4 | 6, proto: number, l4off: number, avail: number, id: number, sink: number): boolean {
  if (avail < 8) return false;
  const type = b[l4off];
  if (family === 4 ? proto !== 1 || !isIcmp4Query(type) : proto !== 58 || !isIcmp6Query(type)) return false;
  const old = getU16(b, l4off + 4);
  if (old === id) return true;
  put16(b, l4off + 2, csumReplace2(getU16(b, l4off + 2), old, id), sink);
  put16(b, l4off + 4, id, sink);
  return true;
}

/** Transport bytes the outer packet has for rewriting (0 for a non-first fragment: no header). */
function outerAvail(ctx: PacketContext): number {
  return ctx.fragmentOffset !== 0 ? 0 : ctx.l4len;
}

/**
 * Rewrites the IPv4 source or destination address of the packet in `ctx`
 * (SNAT/DNAT, RAWSNAT/RAWDNAT, NETMAP): IP header checksum, the transport
 * checksum over the pseudo-header when the header is there, ICMP errors'
 * outer checksum needs nothing (ICMPv4 has no pseudo-header). `addr` is an
 * unsigned 32-bit number. ctx.src4/dst4 follow.
 */
export function setAddress4(ctx: PacketContext, end: End, addr: number): void {
  addr4(ctx.buf, ctx.l3off, ctx.proto, ctx.l4off, outerAvail(ctx), end, addr >>> 0, -1);
  if (end === End.SRC) ctx.src4 = addr >>> 0;
  else ctx.dst4 = addr >>> 0;
}

/**
 * Rewrites the IPv6 source or destination address of the packet in `ctx`:
 * the transport checksum over the pseudo-header (TCP, UDP, UDP-Lite, DCCP,
 * ICMPv6 including errors) when the header is there. ctx.src6/dst6 follow
 * (copied; `addr` may be any array, even ctx's other address).
 */
export function setAddress6(ctx: PacketContext, end: End, addr: Uint32Array, keepZeroUdp = false): void {
  addr6(ctx.buf, ctx.l3off, ctx.proto, ctx.l4off, outerAvail(ctx), end, addr, -1, keepZeroUdp);
  (end === End.SRC ? ctx.src6 : ctx.dst6).set(addr);
}

/**
 * Rewrites the source or destination port (TCP, UDP, UDP-Lite, DCCP) and the
 * transport checksum. Returns false, changing nothing, when the packet has no
 * ports xtr can rewrite (another protocol, SCTP, a non-first fragment, a
 * header cut short). ctx.sport/dport follow.
 */
export function setPort(ctx: PacketContext, end: End, value: number, keepZeroUdp = false): boolean {
  if (!port(ctx.buf, ctx.family, ctx.proto, ctx.l4off, outerAvail(ctx), end, value & 0xffff, -1, keepZeroUdp)) return false;
  if (end === End.SRC) ctx.sport = value & 0xffff;
  else ctx.dport = value & 0xffff;
  return true;
}

/**
 * Rewrites the identifier of an ICMP/ICMPv6 query (echo request/reply; for
 * IPv4 also timestamp, information and address mask) and its checksum: the
 * "port" NAT translates for queries. False, changing nothing, for anything else.
 */
export function setIcmpQueryId(ctx: PacketContext, id: number): boolean {
  return queryId(ctx.buf, ctx.family, ctx.proto, ctx.l4off, outerAvail(ctx), id & 0xffff, -1);
}

const innerExt = new Ipv6ExtInfo();

/**
 * The packet embedded in an ICMP/ICMPv6 error, located once per packet by
 * `locate(ctx)` and then rewritten with the `setInner*` functions. Allocate
 * one per processing loop and re-point it; its fields are absolute offsets
 * into the same buffer as the outer packet.
 */
export class IcmpInner {
  buf: Bytes = new Uint8Array(0);
  family: 4 | 6 = 4;
  /** Offset of the embedded IP header. */
  l3off = 0;
  /** Embedded transport protocol (after IPv6 extension headers). */
  proto = 0;
  /** Offset of the embedded transport header. */
  l4off = 0;
  /** Bytes of the embedded transport header present (0 if a non-first fragment or not reached). */
  l4avail = 0;
  /** Offset of the outer ICMP/ICMPv6 checksum, which covers everything embedded. */
  outerChecksumOffset = 0;

  /**
   * Points at the packet embedded in the ICMP error in `ctx`. False when
   * `ctx` is not an ICMP error with an embedded IP header of its own family
   * that fits (then nothing may be rewritten inside).
   */
  locate(ctx: PacketContext): boolean {
    const b = ctx.buf;
    if (ctx.fragmentOffset !== 0 || ctx.l4len < 8) return false;
    const type = b[ctx.l4off];
    const start = ctx.l4off + 8;
    const end = ctx.l4off + ctx.l4len;
    if (ctx.family === 4) {
      if (ctx.proto !== 1 || !(type === 3 || type === 4 || type === 5 || type === 11 || type === 12)) return false;
      if (end - start < 20 || b[start] >> 4 !== 4) return false;
      const hlen = (b[start] & 0x0f) << 2;
      if (hlen < 20 || hlen > end - start) return false;
      this.proto = b[start + 9];
      this.l4off = start + hlen;
      this.l4avail = (getU16(b, start + 6) & 0x1fff) !== 0 ? 0 : end - this.l4off;
    } else {
      if (ctx.proto !== 58 || type < 1 || type > 4) return false;
      if (end - start < 40 || b[start] >> 4 !== 6) return false;
      // The error may cut the embedded packet short: walk only what is there.
      const l3len = Math.min(end - start, 40 + getU16(b, start + 4));
      walkIpv6Ext(b, start, l3len, innerExt);
      this.proto = innerExt.upperProto;
      this.l4off = innerExt.upperOffset;
      this.l4avail = innerExt.overflow || innerExt.fragmentOffset !== 0 ? 0 : end - this.l4off;
    }
    this.buf = b;
    this.family = ctx.family;
    this.l3off = start;
    this.outerChecksumOffset = ctx.l4off + 2;
    return true;
  }
}

/**
 * Rewrites an address of the IPv4 packet inside an ICMP error (NAT
 * translating an error about a translated flow): the embedded address, its
 * header checksum, its transport checksum if whole, and the outer ICMP checksum.
 */
export function setInnerAddress4(inner: IcmpInner, end: End, addr: number): void {
  addr4(inner.buf, inner.l3off, inner.proto, inner.l4off, inner.l4avail, end, addr >>> 0, inner.outerChecksumOffset);
}

/** As setInnerAddress4 for the IPv6 packet inside an ICMPv6 error. */
export function setInnerAddress6(inner: IcmpInner, end: End, addr: Uint32Array, keepZeroUdp = false): void {
  addr6(inner.buf, inner.l3off, inner.proto, inner.l4off, inner.l4avail, end, addr, inner.outerChecksumOffset, keepZeroUdp);
}

/** Rewrites a port of the packet inside an ICMP error (and the checksums covering it); false if it has none. */
export function setInnerPort(inner: IcmpInner, end: End, value: number, keepZeroUdp = false): boolean {
  return port(inner.buf, inner.family, inner.proto, inner.l4off, inner.l4avail, end, value & 0xffff, inner.outerChecksumOffset, keepZeroUdp);
}

/** Rewrites the query id of an ICMP echo (etc.) inside an ICMP error; false if it is not one. */
export function setInnerIcmpQueryId(inner: IcmpInner, id: number): boolean {
  return queryId(inner.buf, inner.family, inner.proto, inner.l4off, inner.l4avail, id & 0xffff, inner.outerChecksumOffset);
}
