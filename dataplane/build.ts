/**
 * Packets the router itself originates, built the way the Linux kernel
 * builds them so that tools (traceroute, nmap, hping3, tcpdump) see what they
 * would see from a Linux router: ICMP/ICMPv6 errors (icmp_send,
 * icmp6_send), echo replies, the REJECT --reject-with tcp-reset segment
 * (nf_send_reset / nf_send_reset6), ARP replies, Neighbor Advertisements and
 * Solicitations, and IPv4/IPv6 fragmentation (ip_do_fragment /
 * ip6_fragment).
 *
 * Every builder writes into a caller-given buffer at a caller-given offset
 * and returns the number of bytes written, or 0 when the kernel would send
 * nothing (or `out` is too small). Nothing is allocated per call.
 *
 * The original packet is read through a PacketContext filled by
 * parsePacket. ICMP errors and echo replies may be built in place: every
 * original field is read before anything is written, and the quoted or
 * copied bytes are moved with TypedArray.set, which handles overlap (addresses come from the
 * context's own fields, not from the buffer). With
 * HEADROOM (64) in front of a packet, `outOff = l3off - 28` (ICMPv4 error)
 * or `l3off - 48` (ICMPv6 error) wraps the error around the packet where it
 * lies.
 */
import type { PacketContext } from '../xt/packet.js';
import { type Bytes, getU16, getU32, setU16, setU32, setU48, setWords128 } from './bytes.js';
import { checksum, finish, fold, pseudoSum4, pseudoSum6, pseudoSum6Words, sum16 } from './checksum.js';
import { ETH_HLEN } from './ethernet.js';
import { isIcmpError } from './icmp.js';
import { NA_FLAG_OVERRIDE, NA_FLAG_SOLICITED, writeLinkLayerOption } from './icmpv6.js';
import { IPV4_FLAG_DF, IPV4_FLAG_MF, Ipv4OptionCursor } from './ipv4.js';
import { IPV6_HLEN, IPV6_MIN_MTU, isIpv6Multicast, solicitedNodeMulticast } from './ipv6.js';

/** sysctl net.ipv4.ip_default_ttl / net.ipv6.conf.*.hop_limit defaults. */
export const DEFAULT_TTL = 64;
/** RFC 1812 4.3.2.3: an ICMPv4 error is at most 576 bytes. */
export const ICMP4_ERROR_MAX = 576;
/** RFC 4443 2.4(c): an ICMPv6 error fits the minimum MTU. */
export const ICMP6_ERROR_MAX = IPV6_MIN_MTU;

const IPTOS_TOS_MASK = 0x1e;
const IPTOS_PREC_INTERNETCONTROL = 0xc0;

let ipIdent = (Math.random() * 0x10000) >>> 0;
/** IPv4 identification for packets xtr originates without DF (a rolling counter, like ip_select_ident). */
function nextIdent(): number {
  ipIdent = (ipIdent + 1) & 0xffff;
  return ipIdent;
}

const scratchWords = new Uint32Array(4);

/**
 * Whether an ICMP error may be sent about the packet in ctx (RFC 1122
 * 3.2.2, RFC 1812 4.3.2.7, RFC 4443 2.4(e)), as icmp_send / icmp6_send decide:
 * never about an ICMP error (or an ICMP message too short to tell), a
 * non-first fragment, a multicast or broadcast destination, or a source that
 * is not one host (0.0.0.0, 127/8, class D/E incl. 255.255.255.255; ::,
 * ff00::/8). For IPv6 a multicast destination is allowed for Packet Too Big
 * and for Parameter Problem code 2 (pass `type`/`code` of the error to send).
 *
 * Subnet-directed broadcasts and link-layer broadcasts need routing and L2
 * knowledge the context does not carry: the caller checks those.
 */
export function mayReplyWithIcmpError(ctx: PacketContext, type = -1, code = -1): boolean {
  if (ctx.fragmentOffset !== 0) return false;
  if (ctx.family === 4) {
    if (ctx.proto === 1 && (ctx.icmpType < 0 || ctx.icmpType > 18 || isIcmpError(ctx.icmpType))) return false;
    const d = ctx.dst4;
    if (d >>> 28 >= 0xe) return false; // multicast, class E, limited broadcast
    const s = ctx.src4;
    if (s === 0 || s >>> 24 === 127 || s >>> 28 >= 0xe) return false;
    return true;
  }
  if (ctx.proto === 58 && (ctx.icmpType < 0 || ctx.icmpType < 128)) return false;
  const s = ctx.src6;
  if (isIpv6Multicast(s) || (s[0] | s[1] | s[2] | s[3]) === 0) return false;
  if (isIpv6Multicast(ctx.dst6) && !(type === 2 || (type === 4 && code === 2))) return false;
  return true;
}

/**
 * ICMPv4 error about the packet in ctx (dest-unreachable any code,
 * time-exceeded, parameter problem, source quench), quoting the original IP
 * header and as much data as fits in `maxLen` (576) bytes, like icmp_send.
 * `info`: next-hop MTU for dest-unreachable code 4, pointer for parameter
 * problem, else 0. `src`: the address the error comes from. The IP header
 * has no options, TOS = (original TOS & 0x1e) | 0xc0, TTL 64, DF clear.
 */
export function buildIcmp4Error(
  out: Bytes,
  outOff: number,
  ctx: PacketContext,
  type: number,
  code: number,
  info: number,
  src: number,
  maxLen = ICMP4_ERROR_MAX,
): number {
  const b = ctx.buf;
  const o = ctx.l3off;
  const tos = (b[o + 1] & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL;
  const dst = ctx.src4;
  const quote = Math.min(ctx.l3len, maxLen - 28);
  const total = 28 + quote;
  if (quote < 0 || outOff < 0 || outOff + total > out.length) return 0;
  // Quote first: in place, the original may start right after the new headers.
  out.set(b.subarray(o, o + quote), outOff + 28);
  writeIpv4Header(out, outOff, tos, total, nextIdent(), 0, DEFAULT_TTL, 1, src, dst);
  const i = outOff + 20;
  out[i] = type;
  out[i + 1] = code;
  setU16(out, i + 2, 0);
  let rest = 0;
  if (type === 3 && code === 4) rest = info & 0xffff;
  else if (type === 12) rest = (info & 0xff) << 24;
  setU32(out, i + 4, rest);
  setU16(out, i + 2, checksum(out, i, 8 + quote));
  return total;
}

/**
 * ICMPv6 error about the packet in ctx (dest-unreachable codes,
 * packet-too-big with `info` = MTU, time-exceeded, parameter problem with
 * `info` = pointer), quoting as much of the original as fits in 1280 bytes
 * (icmp6_send). `src`: the router's address (4 words). Hop limit 64, traffic
 * class and flow label 0.
 */
export function buildIcmp6Error(
  out: Bytes,
  outOff: number,
  ctx: PacketContext,
  type: number,
  code: number,
  info: number,
  src: Uint32Array,
  maxLen = ICMP6_ERROR_MAX,
): number {
  const b = ctx.buf;
  const o = ctx.l3off;
  const quote = Math.min(ctx.l3len, maxLen - 48);
  const total = 48 + quote;
  if (quote < 0 || outOff < 0 || outOff + total > out.length) return 0;
  out.set(b.subarray(o, o + quote), outOff + 48);
  writeIpv6Header(out, outOff, 8 + quote, 58, DEFAULT_TTL, src, ctx.src6);
  const i = outOff + 40;
  out[i] = type;
  out[i + 1] = code;
  setU16(out, i + 2, 0);
  setU32(out, i + 4, type === 2 || type === 4 ? info >>> 0 : 0);
  setU16(out, i + 2, finish(sum16(out, i, 8 + quote, pseudoSum6(out, outOff + 8, 58, 8 + quote))));
  return total;
}

/**
 * Echo reply to the echo request in ctx (ICMP type 8 or ICMPv6 type 128),
 * as icmp_echo / icmpv6_echo_reply answer: same identifier, sequence and
 * data; addresses swapped (`src` given: the address that was pinged, which
 * for a multicast/broadcast ping is the router's own); IPv4 options and IPv6
 * extension headers are not echoed. Returns 0 if ctx is not an echo request.
 */
export function buildEchoReply(out: Bytes, outOff: number, ctx: PacketContext, src4 = ctx.dst4, src6: Uint32Array = ctx.dst6): number {
  const b = ctx.buf;
  const l4 = ctx.l4off;
  const icmpLen = ctx.l4len;
  if (ctx.fragmentOffset !== 0 || ctx.isFragment || icmpLen < 8) return 0;
  if (ctx.family === 4) {
    if (ctx.proto !== 1 || b[l4] !== 8) return 0;
    const total = 20 + icmpLen;
    if (outOff < 0 || outOff + total > out.length) return 0;
    const tos = b[ctx.l3off + 1];
    const dst = ctx.src4;
    out.set(b.subarray(l4, l4 + icmpLen), outOff + 20);
    writeIpv4Header(out, outOff, tos, total, nextIdent(), 0, DEFAULT_TTL, 1, src4, dst);
    const i = outOff + 20;
    out[i] = 0;
    out[i + 1] = 0;
    setU16(out, i + 2, 0);
    setU16(out, i + 2, checksum(out, i, icmpLen));
    return total;
  }
  if (ctx.proto !== 58 || b[l4] !== 128) return 0;
  const total = 40 + icmpLen;
  if (outOff < 0 || outOff + total > out.length) return 0;
  // icmpv6_echo_reply reflects the request's traffic class.
  const tc = (getU16(b, ctx.l3off) >> 4) & 0xff;
  out.set(b.subarray(l4, l4 + icmpLen), outOff + 40);
  writeIpv6Header(out, outOff, icmpLen, 58, DEFAULT_TTL, src6, ctx.src6);
  setU16(out, outOff, 0x6000 | (tc << 4));
  const i = outOff + 40;
  out[i] = 129;
  out[i + 1] = 0;
  setU16(out, i + 2, 0);
  setU16(out, i + 2, finish(sum16(out, i, icmpLen, pseudoSum6(out, outOff + 8, 58, icmpLen))));
  return total;
}

/**
 * The RST that `REJECT --reject-with tcp-reset` sends in reply to the TCP
 * segment in ctx (nf_send_reset, nf_send_reset6): ports swapped; if the
 * segment had ACK, seq = its ack and no ACK flag; otherwise seq 0 and
 * ack = seq + SYN + FIN + payload length with ACK set; window 0, no options.
 * IPv4: TOS 0, ID 0, DF, TTL 64. IPv6: traffic class and flow 0, hop limit 64.
 * Returns 0 where the kernel sends nothing: a non-first fragment, a segment
 * that is itself a RST, a bad TCP checksum, a multicast/broadcast address.
 */
export function buildTcpReset(out: Bytes, outOff: number, ctx: PacketContext): number {
  if (ctx.proto !== 6 || ctx.fragmentOffset !== 0) return 0;
  const b = ctx.buf;
  const t = ctx.l4off;
  const tl = ctx.l4len;
  if (tl < 20) return 0;
  const doff = (b[t + 12] >> 4) << 2;
  if (doff < 20 || doff > tl) return 0;
  const flags = b[t + 13];
  if (flags & 0x04) return 0;
  const family = ctx.family;
  const iphl = family === 4 ? 20 : 40;
  const total = iphl + 20;
  if (outOff < 0 || outOff + total > out.length) return 0;
  if (family === 4) {
    if (ctx.dst4 >>> 28 >= 0xe || ctx.src4 >>> 28 >= 0xe) return 0;
    if (ctx.isFragment) return 0; // a first fragment: its checksum cannot be verified (the kernel sees it reassembled)
    if (fold(sum16(b, t, tl, pseudoSum4(ctx.src4, ctx.dst4, 6, tl))) !== 0xffff) return 0;
  } else {
    if (isIpv6Multicast(ctx.dst6) || isIpv6Multicast(ctx.src6)) return 0;
    if (ctx.isFragment) return 0;
    if (fold(sum16(b, t, tl, pseudoSum6Words(ctx.src6, ctx.dst6, 6, tl))) !== 0xffff) return 0;
  }
  const sport = getU16(b, t);
  const dport = getU16(b, t + 2);
  const oseq = getU32(b, t + 4);
  const oack = getU32(b, t + 8);
  const payload = tl - doff;
  let seq = 0;
  let ack = 0;
  let nflags = 0x04;
  if (flags & 0x10) {
    seq = oack;
  } else {
    ack = (oseq + (flags & 0x02 ? 1 : 0) + (flags & 0x01 ? 1 : 0) + payload) >>> 0;
    nflags |= 0x10;
  }
  let sum: number;
  if (family === 4) {
    const s = ctx.dst4;
    const d = ctx.src4;
    writeIpv4Header(out, outOff, 0, total, 0, IPV4_FLAG_DF, DEFAULT_TTL, 6, s, d);
    sum = pseudoSum4(s, d, 6, 20);
  } else {
    writeIpv6Header(out, outOff, 20, 6, DEFAULT_TTL, ctx.dst6, ctx.src6);
    sum = pseudoSum6(out, outOff + 8, 6, 20);
  }
  const i = outOff + iphl;
  setU16(out, i, dport);
  setU16(out, i + 2, sport);
  setU32(out, i + 4, seq);
  setU32(out, i + 8, ack);
  out[i + 12] = 5 << 4;
  out[i + 13] = nflags;
  setU16(out, i + 14, 0);
  setU16(out, i + 16, 0);
  setU16(out, i + 18, 0);
  setU16(out, i + 16, finish(sum16(out, i, 20, sum)));
  return total;
}

/**
 * Ethernet + ARP reply to the request at arpBuf[arpOff] (the ARP header, 28
 * bytes, already checked): "tpa is at ourMac", sent unicast to the asker.
 * Returns 42 (no padding to 60: TAP does not need it).
 */
export function buildArpReply(out: Bytes, outOff: number, arpBuf: Bytes, arpOff: number, ourMac: number): number {
  if (outOff < 0 || outOff + 42 > out.length) return 0;
  const sha = getU16(arpBuf, arpOff + 8) * 0x100000000 + getU32(arpBuf, arpOff + 10);
  const spa = getU32(arpBuf, arpOff + 14);
  const tpa = getU32(arpBuf, arpOff + 24);
  setU48(out, outOff, sha);
  setU48(out, outOff + 6, ourMac);
  setU16(out, outOff + 12, 0x0806);
  const a = outOff + ETH_HLEN;
  setU16(out, a, 1);
  setU16(out, a + 2, 0x0800);
  out[a + 4] = 6;
  out[a + 5] = 4;
  setU16(out, a + 6, 2);
  setU48(out, a + 8, ourMac);
  setU32(out, a + 14, tpa);
  setU48(out, a + 18, sha);
  setU32(out, a + 24, spa);
  return 42;
}

/**
 * Ethernet + IPv6 + Neighbor Advertisement for `target` with a Target
 * Link-Layer Address option (ourMac). `flags` defaults to solicited +
 * override (the answer to an NS for one of our addresses); add
 * NA_FLAG_ROUTER when answering as a router. For an NS from :: (DAD) send
 * to ff02::1 / 33:33:00:00:00:01 without the solicited flag (RFC 4861 7.2.4).
 * Hop limit 255. Returns 86.
 */
export function buildNeighborAdvert(
  out: Bytes,
  outOff: number,
  ourMac: number,
  dstMac: number,
  src: Uint32Array,
  dst: Uint32Array,
  target: Uint32Array,
  flags = NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
): number {
  const icmpLen = 32;
  if (outOff < 0 || outOff + ETH_HLEN + 40 + icmpLen > out.length) return 0;
  setU48(out, outOff, dstMac);
  setU48(out, outOff + 6, ourMac);
  setU16(out, outOff + 12, 0x86dd);
  const l3 = outOff + ETH_HLEN;
  writeIpv6Header(out, l3, icmpLen, 58, 255, src, dst);
  const i = l3 + 40;
  out[i] = 136;
  out[i + 1] = 0;
  setU16(out, i + 2, 0);
  setU32(out, i + 4, (flags & 0xe0) << 24);
  setWords128(out, i + 8, target);
  writeLinkLayerOption(out, i + 24, 2, ourMac);
  setU16(out, i + 2, finish(sum16(out, i, icmpLen, pseudoSum6(out, l3 + 8, 58, icmpLen))));
  return ETH_HLEN + 40 + icmpLen;
}

/**
 * Ethernet + IPv6 + Neighbor Solicitation for `target`, sent to its
 * solicited-node multicast group (ff02::1:ffXX:XXXX, MAC 33:33:ff:XX:XX:XX)
 * with a Source Link-Layer Address option. Hop limit 255. Returns 86.
 */
export function buildNeighborSolicit(out: Bytes, outOff: number, ourMac: number, src: Uint32Array, target: Uint32Array): number {
  const icmpLen = 32;
  if (outOff < 0 || outOff + ETH_HLEN + 40 + icmpLen > out.length) return 0;
  const group = solicitedNodeMulticast(target, scratchWords);
  setU16(out, outOff, 0x3333);
  setU32(out, outOff + 2, group[3]);
  setU48(out, outOff + 6, ourMac);
  setU16(out, outOff + 12, 0x86dd);
  const l3 = outOff + ETH_HLEN;
  writeIpv6Header(out, l3, icmpLen, 58, 255, src, group);
  const i = l3 + 40;
  out[i] = 135;
  out[i + 1] = 0;
  setU16(out, i + 2, 0);
  setU32(out, i + 4, 0);
  setWords128(out, i + 8, target);
  writeLinkLayerOption(out, i + 24, 1, ourMac);
  setU16(out, i + 2, finish(sum16(out, i, icmpLen, pseudoSum6(out, l3 + 8, 58, icmpLen))));
  return ETH_HLEN + 40 + icmpLen;
}

/**
 * Splits the IPv4 packet at buf[l3off, l3off+l3len) into fragments of at
 * most `mtu` bytes, written one after another into `out` from `outOff`;
 * fragment k is out[offsets[k], offsets[k] + lengths[k]). Like
 * ip_do_fragment: every fragment carries the same header length; the first
 * keeps all options, later ones keep options with the copied flag and have
 * the others overwritten with NOPs (ip_options_fragment); data is cut on
 * 8-byte boundaries; offsets and MF continue those of an already fragmented
 * original; each header checksum is recomputed.
 *
 * Returns the number of fragments, or -1 if the header leaves no room for 8
 * data bytes, the header is invalid, more than offsets.length fragments are
 * needed, or `out` is too small. The caller decides about DF (send
 * frag-needed instead). `out` must not overlap the original.
 */
export function fragmentIpv4(
  buf: Bytes,
  l3off: number,
  l3len: number,
  mtu: number,
  out: Bytes,
  outOff: number,
  offsets: Uint32Array,
  lengths: Uint32Array,
): number {
  return writeIpv4Fragments(buf, l3off, l3len, mtu, null, 0, out, outOff, offsets, lengths);
}

/**
 * Fragments a datagram that was reassembled from fragments along the
 * boundaries those fragments had (ip_do_fragment's fast path, which sends
 * the reassembled skb's fragment list as it came): piece k carries the data
 * up to `ends[k]` bytes after the header (`ends` ascending, the last one the
 * whole data length). Headers as fragmentIpv4 writes them, but DF is
 * cleared as the fast path clears it.
 *
 * Returns the number of fragments, -1 as fragmentIpv4, or -2 when a piece
 * is larger than `mtu` allows or a non-last piece is not a multiple of 8
 * bytes (the kernel then takes its slow path: fragmentIpv4).
 */
export function refragmentIpv4(
  buf: Bytes,
  l3off: number,
  l3len: number,
  mtu: number,
  ends: Uint32Array,
  count: number,
  out: Bytes,
  outOff: number,
  offsets: Uint32Array,
  lengths: Uint32Array,
): number {
  if (count < 1) return -1;
  return writeIpv4Fragments(buf, l3off, l3len, mtu, ends, count, out, outOff, offsets, lengths);
}

function writeIpv4Fragments(
  buf: Bytes,
  l3off: number,
  l3len: number,
  mtu: number,
  ends: Uint32Array | null,
  pieces: number,
  out: Bytes,
  outOff: number,
  offsets: Uint32Array,
  lengths: Uint32Array,
): number {
  if (l3len < 20) return -1;
  const hlen = (buf[l3off] & 0x0f) << 2;
  if (hlen < 20 || hlen > l3len) return -1;
  const chunk = (mtu - hlen) & ~7;
  if (chunk < 8) return -1;
  const dataLen = l3len - hlen;
  const origFf = getU16(buf, l3off + 6);
  const origOffset = origFf & 0x1fff;
  const origMf = (origFf & IPV4_FLAG_MF) !== 0;
  let keepFlags = origFf & ~(IPV4_FLAG_MF | 0x1fff);
  let count: number;
  if (ends === null) {
    count = Math.max(1, Math.ceil(dataLen / chunk));
  } else {
    count = pieces;
    if (ends[count - 1] !== dataLen) return -1;
    let prev = 0;
    for (let k = 0; k < count; k++) {
      const n = ends[k] - prev;
      if (n <= 0 || n > mtu - hlen || (k < count - 1 && (n & 7) !== 0)) return -2;
      prev = ends[k];
    }
    keepFlags = 0;
  }
  if (count > offsets.length || count > lengths.length) return -1;
  if (outOff < 0 || outOff + dataLen + count * hlen > out.length) return -1;
  let p = outOff;
  let start = 0;
  for (let k = 0; k < count; k++) {
    const stop = ends === null ? Math.min(start + chunk, dataLen) : ends[k];
    const n = stop - start;
    const last = k === count - 1;
    out.set(buf.subarray(l3off, l3off + hlen), p);
    if (k === 1) noopUncopiedOptions(out, p, hlen);
    else if (k > 1) out.set(out.subarray(offsets[1], offsets[1] + hlen), p);
    out.set(buf.subarray(l3off + hlen + start, l3off + hlen + stop), p + hlen);
    setU16(out, p + 2, hlen + n);
    setU16(out, p + 6, keepFlags | (last && !origMf ? 0 : IPV4_FLAG_MF) | ((origOffset + start / 8) & 0x1fff));
    setU16(out, p + 10, 0);
    setU16(out, p + 10, checksum(out, p, hlen));
    offsets[k] = p;
    lengths[k] = hlen + n;
    p += hlen + n;
    start = stop;
  }
  return count;
}

const optCursor = new Ipv4OptionCursor();

/** Overwrites options without the copied flag with NOP, as ip_options_fragment does. */
function noopUncopiedOptions(b: Bytes, l3: number, hlen: number): void {
  const c = optCursor.reset(b, l3 + 20, hlen - 20);
  while (c.next()) {
    if (c.length > 1 && (c.type & 0x80) === 0) b.fill(1, c.offset, c.offset + c.length);
  }
}

/**
 * The length of the unfragmentable part of the IPv6 packet at
 * buf[l3off, l3off+l3len) as ip6_find_1stfragopt sees it: the IPv6 header
 * and the Hop-by-Hop, Routing and Destination Options headers before the
 * first Destination Options header that follows a Routing header (or before
 * the upper layer). -1 if the packet already has a Fragment header or a
 * header runs past its end. `nhOut[0]` receives the offset (from l3off) of
 * the byte naming what follows the unfragmentable part.
 */
export function ipv6UnfragmentableLength(buf: Bytes, l3off: number, l3len: number, nhOut: Int32Array): number {
  const end = l3off + l3len;
  let nhOff = l3off + 6;
  let pos = l3off + IPV6_HLEN;
  let routing = false;
  for (;;) {
    const nh = buf[nhOff];
    if (nh === 44) return -1;
    if (nh !== 0 && nh !== 43 && (nh !== 60 || routing)) break;
    if (pos + 8 > end) return -1;
    const hl = (buf[pos + 1] + 1) << 3;
    if (pos + hl > end) return -1;
    if (nh === 43) routing = true;
    nhOff = pos;
    pos += hl;
  }
  nhOut[0] = nhOff - l3off;
  return pos - l3off;
}

const unfragNh = new Int32Array(1);

/**
 * Splits the IPv6 packet at buf[l3off, l3off+l3len) into fragments of at
 * most `mtu` bytes (ip6_fragment): the unfragmentable part (see
 * ipv6UnfragmentableLength) is repeated, a Fragment header with `ident` is
 * inserted after it, and the rest is cut on 8-byte boundaries. Returns the
 * number of fragments or -1 (packet already fragmented, no room, too many
 * fragments, `out` too small). `out` must not overlap the original.
 */
export function fragmentIpv6(
  buf: Bytes,
  l3off: number,
  l3len: number,
  mtu: number,
  ident: number,
  out: Bytes,
  outOff: number,
  offsets: Uint32Array,
  lengths: Uint32Array,
): number {
  return writeIpv6Fragments(buf, l3off, l3len, mtu, ident, -1, null, 0, out, outOff, offsets, lengths);
}

/**
 * Fragments a reassembled IPv6 datagram along its original fragments'
 * boundaries (ip6_fragment's fast path): piece k carries the fragmentable
 * data up to `ends[k]` bytes after the unfragmentable part. Returns the
 * number of fragments, -1 as fragmentIpv6, or -2 when the datagram's
 * unfragmentable part is not `unfragLen` bytes (the original fragments
 * split it elsewhere), a piece does not fit `mtu`, or a non-last piece is
 * not a multiple of 8 (the kernel then takes its slow path: fragmentIpv6).
 */
export function refragmentIpv6(
  buf: Bytes,
  l3off: number,
  l3len: number,
  mtu: number,
  unfragLen: number,
  ends: Uint32Array,
  count: number,
  ident: number,
  out: Bytes,
  outOff: number,
  offsets: Uint32Array,
  lengths: Uint32Array,
): number {
  if (count < 1) return -1;
  return writeIpv6Fragments(buf, l3off, l3len, mtu, ident, unfragLen, ends, count, out, outOff, offsets, lengths);
}

function writeIpv6Fragments(
  buf: Bytes,
  l3off: number,
  l3len: number,
  mtu: number,
  ident: number,
  wantUnfrag: number,
  ends: Uint32Array | null,
  pieces: number,
  out: Bytes,
  outOff: number,
  offsets: Uint32Array,
  lengths: Uint32Array,
): number {
  if (l3len < IPV6_HLEN || IPV6_HLEN + getU16(buf, l3off + 4) !== l3len) return -1;
  const unfragLen = ipv6UnfragmentableLength(buf, l3off, l3len, unfragNh);
  if (unfragLen < 0) return -1;
  const unfragEnd = l3off + unfragLen;
  const nhRel = unfragNh[0];
  const nextProto = buf[l3off + nhRel];
  const fragData = l3len - unfragLen;
  const room = mtu - unfragLen - 8;
  const chunk = room & ~7;
  if (chunk < 8) return -1;
  let count: number;
  if (ends === null) {
    count = Math.max(1, Math.ceil(fragData / chunk));
  } else {
    if (unfragLen !== wantUnfrag) return -2;
    count = pieces;
    if (ends[count - 1] !== fragData) return -1;
    let prev = 0;
    for (let k = 0; k < count; k++) {
      const n = ends[k] - prev;
      if (n <= 0 || n > room || (k < count - 1 && (n & 7) !== 0)) return -2;
      prev = ends[k];
    }
  }
  if (count > offsets.length || count > lengths.length) return -1;
  if (outOff < 0 || outOff + fragData + count * (unfragLen + 8) > out.length) return -1;
  let p = outOff;
  let start = 0;
  for (let k = 0; k < count; k++) {
    const stop = ends === null ? Math.min(start + chunk, fragData) : ends[k];
    const n = stop - start;
    const last = k === count - 1;
    out.set(buf.subarray(l3off, unfragEnd), p);
    out[p + nhRel] = 44;
    setU16(out, p + 4, unfragLen - IPV6_HLEN + 8 + n);
    const f = p + unfragLen;
    out[f] = nextProto;
    out[f + 1] = 0;
    setU16(out, f + 2, (start & 0xfff8) | (last ? 0 : 1));
    setU32(out, f + 4, ident);
    out.set(buf.subarray(unfragEnd + start, unfragEnd + stop), f + 8);
    offsets[k] = p;
    lengths[k] = unfragLen + 8 + n;
    p += unfragLen + 8 + n;
    start = stop;
  }
  return count;
}

/** Writes a 20-byte IPv4 header with its checksum. */
export function writeIpv4Header(
  out: Bytes,
  o: number,
  tos: number,
  total: number,
  ident: number,
  flagsFrag: number,
  ttl: number,
  proto: number,
  src: number,
  dst: number,
): void {
  out[o] = 0x45;
  out[o + 1] = tos;
  setU16(out, o + 2, total);
  setU16(out, o + 4, ident);
  setU16(out, o + 6, flagsFrag);
  out[o + 8] = ttl;
  out[o + 9] = proto;
  setU16(out, o + 10, 0);
  setU32(out, o + 12, src);
  setU32(out, o + 16, dst);
  setU16(out, o + 10, checksum(out, o, 20));
}

/** Writes a 40-byte IPv6 header (traffic class and flow label 0). */
export function writeIpv6Header(
  out: Bytes,
  o: number,
  payloadLen: number,
  nextHeader: number,
  hopLimit: number,
  src: Uint32Array,
  dst: Uint32Array,
): void {
  setU32(out, o, 0x60000000);
  setU16(out, o + 4, payloadLen);
  out[o + 6] = nextHeader;
  out[o + 7] = hopLimit;
  setWords128(out, o + 8, src);
  setWords128(out, o + 24, dst);
}
