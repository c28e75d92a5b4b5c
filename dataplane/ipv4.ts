/**
 * IPv4 header (RFC 791).
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |Version|  IHL  |   DSCP    |ECN|          Total Length         |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |         Identification        |Flags|      Fragment Offset    |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  Time to Live |    Protocol   |         Header Checksum       |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                       Source Address                          |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Destination Address                        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Options                    |    Padding    |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Flags (3 bits): reserved (evil bit), DF, MF. Fragment offset in 8-byte units.
 *
 * Invariant: after `check()` returns NONE, every fixed field and the options
 * area are inside the buffer and `totalLength <= len`. Bytes between
 * totalLength and len are link-layer padding and belong to no header.
 *
 * Addresses are unsigned 32-bit numbers (net/netip style); strings only at the edges.
 */
import { type Bytes, View, copyBytes, getU16, getU32, setU16, setU32 } from './bytes.js';
import { checksum, csumReplace2, verifies } from './checksum.js';
import { DropReason } from './drop.js';

const VER_IHL = 0;
const TOS = 1;
const TOTAL_LEN = 2;
const IDENT = 4;
const FLAGS_FRAG = 6;
const TTL = 8;
const PROTO = 9;
const CHECKSUM = 10;
const SRC = 12;
const DST = 16;
export const IPV4_MIN_HLEN = 20;
export const IPV4_MAX_HLEN = 60;

export const IPV4_FLAG_RESERVED = 0x8000;
export const IPV4_FLAG_DF = 0x4000;
export const IPV4_FLAG_MF = 0x2000;
const FRAG_MASK = 0x1fff;

/** IP protocol numbers used across the codec. */
export const enum IpProto {
  HOPOPTS = 0,
  ICMP = 1,
  IGMP = 2,
  IPIP = 4,
  TCP = 6,
  UDP = 17,
  IPV6 = 41,
  ROUTING = 43,
  FRAGMENT = 44,
  GRE = 47,
  ESP = 50,
  AH = 51,
  ICMPV6 = 58,
  NONE = 59,
  DSTOPTS = 60,
  SCTP = 132,
  UDPLITE = 136,
  DCCP = 33,
}

/** IPv4 option numbers (type byte, including the copied flag and class). */
export const enum Ipv4Opt {
  END = 0,
  NOP = 1,
  RR = 7,
  TIMESTAMP = 68,
  SECURITY = 130,
  LSRR = 131,
  SSRR = 137,
  RA = 148,
}

/** Options whose copied flag (RFC 791) is set must appear in every fragment. */
export function ipv4OptionCopied(type: number): boolean {
  return (type & 0x80) !== 0;
}

export class Ipv4View extends View {
  /** The fixed 20 bytes are present (enough to read version and IHL safely). */
  checkLen(): boolean {
    return this.len >= IPV4_MIN_HLEN;
  }

  /**
   * Full header validation as the kernel's ip_rcv does before anything else
   * reads the packet (checksum excluded: see verifyChecksum).
   */
  check(): DropReason {
    const len = this.len;
    if (len < IPV4_MIN_HLEN) return DropReason.TRUNCATED_HEADER;
    const b = this.buf;
    const o = this.off;
    if (b[o] >> 4 !== 4) return DropReason.BAD_VERSION;
    const hlen = (b[o] & 0x0f) << 2;
    if (hlen < IPV4_MIN_HLEN || hlen > len) return DropReason.BAD_IHL;
    const total = getU16(b, o + TOTAL_LEN);
    if (total > len || total < hlen) return DropReason.BAD_TOTAL_LENGTH;
    return DropReason.NONE;
  }

  get version(): number {
    return this.buf[this.off + VER_IHL] >> 4;
  }
  /** Header length in bytes (IHL * 4). */
  get headerLength(): number {
    return (this.buf[this.off + VER_IHL] & 0x0f) << 2;
  }
  set headerLength(bytes: number) {
    this.buf[this.off + VER_IHL] = 0x40 | ((bytes >> 2) & 0x0f);
  }
  get tos(): number {
    return this.buf[this.off + TOS];
  }
  set tos(v: number) {
    this.buf[this.off + TOS] = v;
  }
  get dscp(): number {
    return this.buf[this.off + TOS] >> 2;
  }
  get ecn(): number {
    return this.buf[this.off + TOS] & 3;
  }
  get totalLength(): number {
    return getU16(this.buf, this.off + TOTAL_LEN);
  }
  set totalLength(v: number) {
    setU16(this.buf, this.off + TOTAL_LEN, v);
  }
  get ident(): number {
    return getU16(this.buf, this.off + IDENT);
  }
  set ident(v: number) {
    setU16(this.buf, this.off + IDENT, v);
  }
  /** The flags+fragment-offset word as on the wire. */
  get flagsFrag(): number {
    return getU16(this.buf, this.off + FLAGS_FRAG);
  }
  set flagsFrag(v: number) {
    setU16(this.buf, this.off + FLAGS_FRAG, v);
  }
  get dontFragment(): boolean {
    return (this.flagsFrag & IPV4_FLAG_DF) !== 0;
  }
  set dontFragment(on: boolean) {
    this.flagsFrag = on ? this.flagsFrag | IPV4_FLAG_DF : this.flagsFrag & ~IPV4_FLAG_DF;
  }
  get moreFragments(): boolean {
    return (this.flagsFrag & IPV4_FLAG_MF) !== 0;
  }
  set moreFragments(on: boolean) {
    this.flagsFrag = on ? this.flagsFrag | IPV4_FLAG_MF : this.flagsFrag & ~IPV4_FLAG_MF;
  }
  /** Fragment offset in 8-byte units. */
  get fragmentOffset(): number {
    return this.flagsFrag & FRAG_MASK;
  }
  set fragmentOffset(units: number) {
    this.flagsFrag = (this.flagsFrag & ~FRAG_MASK) | (units & FRAG_MASK);
  }
  /** True for any fragment (MF set or non-zero offset). */
  get isFragment(): boolean {
    return (this.flagsFrag & (IPV4_FLAG_MF | FRAG_MASK)) !== 0;
  }
  get ttl(): number {
    return this.buf[this.off + TTL];
  }
  set ttl(v: number) {
    this.buf[this.off + TTL] = v;
  }
  get protocol(): number {
    return this.buf[this.off + PROTO];
  }
  set protocol(v: number) {
    this.buf[this.off + PROTO] = v;
  }
  get checksum(): number {
    return getU16(this.buf, this.off + CHECKSUM);
  }
  set checksum(v: number) {
    setU16(this.buf, this.off + CHECKSUM, v);
  }
  get src(): number {
    return getU32(this.buf, this.off + SRC);
  }
  set src(v: number) {
    setU32(this.buf, this.off + SRC, v);
  }
  get dst(): number {
    return getU32(this.buf, this.off + DST);
  }
  set dst(v: number) {
    setU32(this.buf, this.off + DST, v);
  }
  /** Absolute offset of the options (right after the fixed header). */
  get optionsOffset(): number {
    return this.off + IPV4_MIN_HLEN;
  }
  get optionsLength(): number {
    return this.headerLength - IPV4_MIN_HLEN;
  }
  /** Absolute offset of the payload. */
  get payloadOffset(): number {
    return this.off + this.headerLength;
  }
  /** Payload bytes according to the header (total length - header length). */
  get payloadLength(): number {
    return this.totalLength - this.headerLength;
  }

  verifyChecksum(): boolean {
    return verifies(this.buf, this.off, this.headerLength);
  }

  fillChecksum(): void {
    this.checksum = 0;
    this.checksum = checksum(this.buf, this.off, this.headerLength);
  }

  /** Decrements TTL and patches the checksum incrementally (RFC 1624), as ip_decrease_ttl. */
  decrementTtl(): void {
    const o = this.off + TTL;
    const oldWord = getU16(this.buf, o);
    this.buf[o] = (this.buf[o] - 1) & 0xff;
    this.checksum = csumReplace2(this.checksum, oldWord, getU16(this.buf, o));
  }

  /** Rewrites the source address keeping the header checksum right. */
  setSrcUpdatingChecksum(v: number): void {
    const old = this.src;
    this.src = v;
    this.checksum = csumReplace4Ip(this.checksum, old, v);
  }

  setDstUpdatingChecksum(v: number): void {
    const old = this.dst;
    this.dst = v;
    this.checksum = csumReplace4Ip(this.checksum, old, v);
  }
}

function csumReplace4Ip(check: number, from: number, to: number): number {
  return csumReplace2(csumReplace2(check, from >>> 16, to >>> 16), from & 0xffff, to & 0xffff);
}

/**
 * Walks IPv4 options in buf[off, off+len). Allocation-free cursor: call
 * `next()` until it returns false; `malformed` says whether the walk stopped
 * at a bad length rather than at END or the end of the area.
 */
export class Ipv4OptionCursor {
  buf: Bytes = new Uint8Array(0);
  pos = 0;
  end = 0;
  /** Current option: type byte, total length (1 for END/NOP), absolute offset. */
  type = 0;
  length = 0;
  offset = 0;
  malformed = false;

  reset(buf: Bytes, off: number, len: number): this {
    this.buf = buf;
    this.pos = off;
    this.end = off + len;
    this.malformed = false;
    return this;
  }

  /** Resets onto the options of a checked IPv4 header. */
  resetOn(v: Ipv4View): this {
    return this.reset(v.buf, v.optionsOffset, v.optionsLength);
  }

  next(): boolean {
    if (this.pos >= this.end) return false;
    const t = this.buf[this.pos];
    this.type = t;
    this.offset = this.pos;
    if (t === Ipv4Opt.END) {
      this.length = 1;
      this.pos = this.end;
      return false;
    }
    if (t === Ipv4Opt.NOP) {
      this.length = 1;
      this.pos++;
      return true;
    }
    if (this.pos + 1 >= this.end) {
      this.malformed = true;
      return false;
    }
    const l = this.buf[this.pos + 1];
    if (l < 2 || this.pos + l > this.end) {
      this.malformed = true;
      return false;
    }
    this.length = l;
    this.pos += l;
    return true;
  }
}

export class Ipv4Repr {
  constructor(
    public src = 0,
    public dst = 0,
    public protocol = 0,
    /** Payload length in bytes (total length - header length). */
    public payloadLength = 0,
    public ttl = 64,
    public tos = 0,
    public ident = 0,
    public dontFragment = false,
    public moreFragments = false,
    /** In 8-byte units. */
    public fragmentOffset = 0,
    /** Raw options bytes (a multiple of 4 long, at most 40). */
    public options: Uint8Array = new Uint8Array(0),
  ) {}

  /** Parses a view that passed check(); null if it did not. */
  static parse(v: Ipv4View): Ipv4Repr | null {
    if (v.check() !== DropReason.NONE) return null;
    return new Ipv4Repr(
      v.src,
      v.dst,
      v.protocol,
      v.payloadLength,
      v.ttl,
      v.tos,
      v.ident,
      v.dontFragment,
      v.moreFragments,
      v.fragmentOffset,
      copyBytes(v.buf, v.optionsOffset, v.optionsOffset + v.optionsLength),
    );
  }

  headerLen(): number {
    return IPV4_MIN_HLEN + ((this.options.length + 3) & ~3);
  }

  bufferLen(): number {
    return this.headerLen() + this.payloadLength;
  }

  /** Writes the header (checksum filled); the payload is the caller's. */
  emit(v: Ipv4View): void {
    const b = v.buf;
    const o = v.off;
    const hlen = this.headerLen();
    v.headerLength = hlen;
    v.tos = this.tos;
    v.totalLength = hlen + this.payloadLength;
    v.ident = this.ident;
    v.flagsFrag =
      (this.dontFragment ? IPV4_FLAG_DF : 0) | (this.moreFragments ? IPV4_FLAG_MF : 0) | (this.fragmentOffset & FRAG_MASK);
    v.ttl = this.ttl;
    v.protocol = this.protocol;
    v.src = this.src;
    v.dst = this.dst;
    b.set(this.options, o + IPV4_MIN_HLEN);
    b.fill(0, o + IPV4_MIN_HLEN + this.options.length, o + hlen);
    v.fillChecksum();
  }
}

/** Class D (224.0.0.0/4). */
export function isIpv4Multicast(a: number): boolean {
  return a >>> 28 === 0xe;
}
