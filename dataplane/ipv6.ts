/**
 * IPv6 header (RFC 8200) and its extension-header chain.
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |Version| Traffic Class |           Flow Label                  |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |         Payload Length        |  Next Header  |   Hop Limit   |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Source Address (16 bytes, offset 8)        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                 Destination Address (16 bytes, offset 24)     |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Extension headers walked (as the kernel's ipv6_skip_exthdr): Hop-by-Hop
 * (0), Routing (43), Fragment (44), Destination Options (60), each
 * `(hdrlen + 1) * 8` bytes, and AH (51), `(hdrlen + 2) * 4` bytes. The walk
 * stops at any other value (the upper layer, ESP, unknown), at No Next Header
 * (59), or after a Fragment header with a non-zero offset (what follows is
 * not a header).
 *
 * Non-goals: jumbograms (payload length 0 with a Jumbo Payload option) are
 * treated as a 0-byte payload; Hop-by-Hop options are not interpreted.
 *
 * Addresses are four big-endian 32-bit words (Uint32Array(4)) so two
 * addresses compare word by word without strings or allocation.
 */
import { type Bytes, View, getU16, getU32, getWords128, setU16, setU32, setWords128 } from './bytes.js';
import { DropReason } from './drop.js';

const VER_TC_FLOW = 0;
const PAYLOAD_LEN = 4;
const NEXT_HEADER = 6;
const HOP_LIMIT = 7;
export const IPV6_SRC = 8;
export const IPV6_DST = 24;
export const IPV6_HLEN = 40;
/** The minimum link MTU every IPv6 link supports (RFC 8200 5). */
export const IPV6_MIN_MTU = 1280;

export class Ipv6View extends View {
  checkLen(): boolean {
    return this.len >= IPV6_HLEN;
  }

  /** Validation of the fixed header as ipv6_rcv does it. */
  check(): DropReason {
    if (this.len < IPV6_HLEN) return DropReason.TRUNCATED_HEADER;
    if (this.buf[this.off] >> 4 !== 6) return DropReason.BAD_VERSION;
    if (IPV6_HLEN + getU16(this.buf, this.off + PAYLOAD_LEN) > this.len) return DropReason.BAD_TOTAL_LENGTH;
    return DropReason.NONE;
  }

  get version(): number {
    return this.buf[this.off] >> 4;
  }
  get trafficClass(): number {
    return (getU16(this.buf, this.off + VER_TC_FLOW) >> 4) & 0xff;
  }
  set trafficClass(v: number) {
    const w = getU16(this.buf, this.off);
    setU16(this.buf, this.off, (w & 0xf00f) | ((v & 0xff) << 4));
  }
  get flowLabel(): number {
    return getU32(this.buf, this.off) & 0xfffff;
  }
  set flowLabel(v: number) {
    const w = getU32(this.buf, this.off);
    setU32(this.buf, this.off, ((w & 0xfff00000) | (v & 0xfffff)) >>> 0);
  }
  /** Writes version 6 leaving traffic class and flow label alone. */
  setVersion(): void {
    this.buf[this.off] = 0x60 | (this.buf[this.off] & 0x0f);
  }
  get payloadLength(): number {
    return getU16(this.buf, this.off + PAYLOAD_LEN);
  }
  set payloadLength(v: number) {
    setU16(this.buf, this.off + PAYLOAD_LEN, v);
  }
  get nextHeader(): number {
    return this.buf[this.off + NEXT_HEADER];
  }
  set nextHeader(v: number) {
    this.buf[this.off + NEXT_HEADER] = v;
  }
  get hopLimit(): number {
    return this.buf[this.off + HOP_LIMIT];
  }
  set hopLimit(v: number) {
    this.buf[this.off + HOP_LIMIT] = v;
  }
  /** Absolute offsets of the addresses (for checksum helpers and copies). */
  get srcOffset(): number {
    return this.off + IPV6_SRC;
  }
  get dstOffset(): number {
    return this.off + IPV6_DST;
  }
  readSrc(out: Uint32Array): void {
    getWords128(this.buf, this.off + IPV6_SRC, out);
  }
  readDst(out: Uint32Array): void {
    getWords128(this.buf, this.off + IPV6_DST, out);
  }
  writeSrc(w: Uint32Array): void {
    setWords128(this.buf, this.off + IPV6_SRC, w);
  }
  writeDst(w: Uint32Array): void {
    setWords128(this.buf, this.off + IPV6_DST, w);
  }
  /** One 32-bit word (0..3) of the source address. */
  srcWord(i: number): number {
    return getU32(this.buf, this.off + IPV6_SRC + 4 * i);
  }
  dstWord(i: number): number {
    return getU32(this.buf, this.off + IPV6_DST + 4 * i);
  }
  get payloadOffset(): number {
    return this.off + IPV6_HLEN;
  }
  /** Header plus payload according to the payload length field. */
  get totalLength(): number {
    return IPV6_HLEN + this.payloadLength;
  }
}

/** Where an extension-header walk ended and what it saw on the way. */
export class Ipv6ExtInfo {
  /** Protocol of what follows the last walked header (TCP, ICMPv6, 59, ESP, unknown...). */
  upperProto = 0;
  /** Absolute offset of the upper-layer header (or of the fragment data for non-first fragments). */
  upperOffset = 0;
  /** Absolute offset of the byte holding upperProto (6 in the base header or 0 in the last extension header). */
  nextHeaderOffset = 0;
  /** Absolute offset of the Fragment header, or -1. */
  fragmentHeaderOffset = -1;
  /** Fragment offset in 8-byte units (0 if not a fragment). */
  fragmentOffset = 0;
  moreFragments = false;
  fragmentIdent = 0;
  /** True if any Fragment header was seen (even an atomic one with offset 0 and no MF). */
  hasFragmentHeader = false;
  /** The chain ran past the end of the packet (a header did not fit). */
  overflow = false;
  /** A Hop-by-Hop header appeared other than first (RFC 8200 4.1: must be first). */
  hopByHopMisplaced = false;
  /** Number of extension headers walked. */
  count = 0;

  reset(): void {
    this.upperProto = 0;
    this.upperOffset = 0;
    this.nextHeaderOffset = 0;
    this.fragmentHeaderOffset = -1;
    this.fragmentOffset = 0;
    this.moreFragments = false;
    this.fragmentIdent = 0;
    this.hasFragmentHeader = false;
    this.overflow = false;
    this.hopByHopMisplaced = false;
    this.count = 0;
  }

  /** True if the packet is a fragment in the usual sense (offset != 0 or MF). */
  get isFragment(): boolean {
    return this.fragmentOffset !== 0 || this.moreFragments;
  }
}

/** True for the next-header values the walker steps over. */
export function isIpv6ExtHeader(nh: number): boolean {
  return nh === 0 || nh === 43 || nh === 44 || nh === 60 || nh === 51;
}

/**
 * Walks the extension headers of the IPv6 packet at buf[l3off, l3off+l3len)
 * (l3len = 40 + payload length; the fixed header must have passed check()).
 * Results go into `out`; returns false if the chain overflowed the packet.
 */
export function walkIpv6Ext(buf: Bytes, l3off: number, l3len: number, out: Ipv6ExtInfo): boolean {
  out.reset();
  const end = l3off + l3len;
  let nhOff = l3off + NEXT_HEADER;
  let nh = buf[nhOff];
  let pos = l3off + IPV6_HLEN;
  for (;;) {
    if (!isIpv6ExtHeader(nh)) break;
    if (nh === 0 && out.count > 0) out.hopByHopMisplaced = true;
    // Every extension header is at least 8 bytes (AH: 12); its first two bytes are next-header and length.
    if (pos + 8 > end) {
      out.overflow = true;
      break;
    }
    let hlen: number;
    if (nh === 44) {
      hlen = 8;
      const fo = getU16(buf, pos + 2);
      out.hasFragmentHeader = true;
      out.fragmentHeaderOffset = pos;
      out.fragmentOffset = fo >> 3;
      out.moreFragments = (fo & 1) !== 0;
      out.fragmentIdent = getU32(buf, pos + 4);
    } else if (nh === 51) {
      hlen = (buf[pos + 1] + 2) << 2;
    } else {
      hlen = (buf[pos + 1] + 1) << 3;
    }
    if (pos + hlen > end) {
      out.overflow = true;
      break;
    }
    out.count++;
    nhOff = pos;
    nh = buf[pos];
    pos += hlen;
    // After a non-first fragment the bytes are payload data, not headers.
    if (out.fragmentHeaderOffset === nhOff && out.fragmentOffset !== 0) break;
  }
  out.upperProto = nh;
  out.upperOffset = pos;
  out.nextHeaderOffset = nhOff;
  return !out.overflow;
}

export class Ipv6Repr {
  constructor(
    public src = new Uint32Array(4),
    public dst = new Uint32Array(4),
    public nextHeader = 0,
    public payloadLength = 0,
    public hopLimit = 64,
    public trafficClass = 0,
    public flowLabel = 0,
  ) {}

  static parse(v: Ipv6View): Ipv6Repr | null {
    if (v.check() !== DropReason.NONE) return null;
    const r = new Ipv6Repr();
    v.readSrc(r.src);
    v.readDst(r.dst);
    r.nextHeader = v.nextHeader;
    r.payloadLength = v.payloadLength;
    r.hopLimit = v.hopLimit;
    r.trafficClass = v.trafficClass;
    r.flowLabel = v.flowLabel;
    return r;
  }

  bufferLen(): number {
    return IPV6_HLEN + this.payloadLength;
  }

  emit(v: Ipv6View): void {
    setU32(v.buf, v.off, (0x60000000 | ((this.trafficClass & 0xff) << 20) | (this.flowLabel & 0xfffff)) >>> 0);
    v.payloadLength = this.payloadLength;
    v.nextHeader = this.nextHeader;
    v.hopLimit = this.hopLimit;
    v.writeSrc(this.src);
    v.writeDst(this.dst);
  }
}

/** ff00::/8 */
export function isIpv6Multicast(w: Uint32Array): boolean {
  return w[0] >>> 24 === 0xff;
}

/** The solicited-node multicast address ff02::1:ffXX:XXXX for `target` (RFC 4291 2.7.1). */
export function solicitedNodeMulticast(target: Uint32Array, out = new Uint32Array(4)): Uint32Array {
  out[0] = 0xff020000;
  out[1] = 0;
  out[2] = 1;
  out[3] = (0xff000000 | (target[3] & 0xffffff)) >>> 0;
  return out;
}
