/**
 * ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861).
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |     Type      |     Code      |          Checksum             |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  | errors: unused / MTU (type 2) / pointer (type 4)              |
 *  | echo:   Identifier            |        Sequence Number        |
 *  | NS/RS/Redirect: reserved                                      |
 *  | NA:     |R|S|O|  reserved                                     |
 *  | RA:     Cur Hop Limit |M|O|   |      Router Lifetime          |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  | NS/NA/Redirect: Target Address (16 bytes, offset 8)           |
 *  | RA: Reachable Time (offset 8), Retrans Timer (offset 12)      |
 *  | Redirect: Destination Address (16 bytes, offset 24)           |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  | NDP options: RS at 8, RA at 16, NS/NA at 24, Redirect at 40   |
 *
 * NDP option: type (1 byte), length in units of 8 bytes (0 is invalid), value.
 * Link-layer address options (1 source, 2 target) carry a 6-byte Ethernet
 * MAC, exchanged here as a 48-bit number (-1 when absent).
 *
 * The checksum covers the whole message (the view's len) plus the IPv6
 * pseudo-header, so fill/verify take the buffer offset of the addresses.
 */
import { type Bytes, View, copyBytes, getU16, getU32, getU48, getWords128, setU16, setU32, setU48, setWords128 } from './bytes.js';
import { finish, fold, pseudoSum6, pseudoSum6Words, sum16 } from './checksum.js';
import { DropReason } from './drop.js';

const TYPE = 0;
const CODE = 1;
const CHECKSUM = 2;
const REST = 4;
const TARGET = 8;
const REDIRECT_DEST = 24;
const RA_REACHABLE = 8;
const RA_RETRANS = 12;
export const ICMPV6_HLEN = 8;

export const enum Icmpv6Type {
  DEST_UNREACH = 1,
  PACKET_TOO_BIG = 2,
  TIME_EXCEEDED = 3,
  PARAM_PROBLEM = 4,
  ECHO_REQUEST = 128,
  ECHO_REPLY = 129,
  MLD_QUERY = 130,
  MLD_REPORT = 131,
  MLD_DONE = 132,
  ROUTER_SOLICIT = 133,
  ROUTER_ADVERT = 134,
  NEIGHBOR_SOLICIT = 135,
  NEIGHBOR_ADVERT = 136,
  REDIRECT = 137,
  MLD2_REPORT = 143,
}

/** Destination-unreachable codes (RFC 4443 3.1). */
export const enum Icmpv6Unreach {
  NO_ROUTE = 0,
  ADMIN_PROHIBITED = 1,
  BEYOND_SCOPE = 2,
  ADDRESS = 3,
  PORT = 4,
  POLICY_FAIL = 5,
  REJECT_ROUTE = 6,
}

export const enum NdpOpt {
  SOURCE_LL_ADDR = 1,
  TARGET_LL_ADDR = 2,
  PREFIX_INFO = 3,
  REDIRECTED_HEADER = 4,
  MTU = 5,
}

export const NA_FLAG_ROUTER = 0x80;
export const NA_FLAG_SOLICITED = 0x40;
export const NA_FLAG_OVERRIDE = 0x20;
export const RA_FLAG_MANAGED = 0x80;
export const RA_FLAG_OTHER = 0x40;

/** Error messages (types 0..127, RFC 4443 2.1) are never answered with an error. */
export function isIcmpv6Error(type: number): boolean {
  return type < 128;
}

/** Where the NDP options of a message of `type` start (relative), or -1 for non-NDP types. */
export function ndpOptionsStart(type: number): number {
  switch (type) {
    case 133:
      return 8;
    case 134:
      return 16;
    case 135:
    case 136:
      return 24;
    case 137:
      return 40;
    default:
      return -1;
  }
}

export class Icmpv6View extends View {
  checkLen(): boolean {
    return this.len >= ICMPV6_HLEN;
  }

  check(): DropReason {
    return this.len >= ICMPV6_HLEN ? DropReason.NONE : DropReason.TRUNCATED_TRANSPORT;
  }

  /**
   * RFC 4861 validity of an NDP message apart from the IP hop limit (255)
   * and checksum: code 0, long enough for its fixed part, every option of
   * non-zero length and inside the message.
   */
  checkNdp(): boolean {
    const start = ndpOptionsStart(this.type);
    if (start < 0 || this.len < start || this.code !== 0) return false;
    const c = ndpCursor.resetOn(this);
    while (c.next());
    return !c.malformed;
  }

  get type(): number {
    return this.buf[this.off + TYPE];
  }
  set type(v: number) {
    this.buf[this.off + TYPE] = v;
  }
  get code(): number {
    return this.buf[this.off + CODE];
  }
  set code(v: number) {
    this.buf[this.off + CODE] = v;
  }
  get checksum(): number {
    return getU16(this.buf, this.off + CHECKSUM);
  }
  set checksum(v: number) {
    setU16(this.buf, this.off + CHECKSUM, v);
  }
  /** The 32 bits after the checksum (MTU, pointer, ident/seq, NA flags...). */
  get rest(): number {
    return getU32(this.buf, this.off + REST);
  }
  set rest(v: number) {
    setU32(this.buf, this.off + REST, v);
  }
  /** Packet Too Big MTU. */
  get mtu(): number {
    return this.rest;
  }
  set mtu(v: number) {
    this.rest = v;
  }
  /** Parameter Problem pointer. */
  get pointer(): number {
    return this.rest;
  }
  set pointer(v: number) {
    this.rest = v;
  }
  get ident(): number {
    return getU16(this.buf, this.off + REST);
  }
  set ident(v: number) {
    setU16(this.buf, this.off + REST, v);
  }
  get seq(): number {
    return getU16(this.buf, this.off + REST + 2);
  }
  set seq(v: number) {
    setU16(this.buf, this.off + REST + 2, v);
  }
  /** NA flags (R/S/O) or RA flags (M/O), per type. */
  get ndpFlags(): number {
    return this.buf[this.off + (this.type === 134 ? REST + 1 : REST)];
  }
  set ndpFlags(v: number) {
    this.buf[this.off + (this.type === 134 ? REST + 1 : REST)] = v;
  }
  /** RA current hop limit. */
  get raHopLimit(): number {
    return this.buf[this.off + REST];
  }
  set raHopLimit(v: number) {
    this.buf[this.off + REST] = v;
  }
  get raRouterLifetime(): number {
    return getU16(this.buf, this.off + REST + 2);
  }
  set raRouterLifetime(v: number) {
    setU16(this.buf, this.off + REST + 2, v);
  }
  get raReachableTime(): number {
    return getU32(this.buf, this.off + RA_REACHABLE);
  }
  set raReachableTime(v: number) {
    setU32(this.buf, this.off + RA_REACHABLE, v);
  }
  get raRetransTimer(): number {
    return getU32(this.buf, this.off + RA_RETRANS);
  }
  set raRetransTimer(v: number) {
    setU32(this.buf, this.off + RA_RETRANS, v);
  }
  /** Absolute offset of the NS/NA/Redirect target address. */
  get targetOffset(): number {
    return this.off + TARGET;
  }
  readTarget(out: Uint32Array): void {
    getWords128(this.buf, this.off + TARGET, out);
  }
  writeTarget(w: Uint32Array): void {
    setWords128(this.buf, this.off + TARGET, w);
  }
  readRedirectDestination(out: Uint32Array): void {
    getWords128(this.buf, this.off + REDIRECT_DEST, out);
  }
  get dataOffset(): number {
    return this.off + ICMPV6_HLEN;
  }
  get dataLength(): number {
    return this.len - ICMPV6_HLEN;
  }

  /** Absolute offset of the first NDP option of `type`, or -1. */
  findNdpOption(type: number): number {
    const c = ndpCursor.resetOn(this);
    while (c.next()) if (c.type === type) return c.offset;
    return -1;
  }

  /** The Source Link-Layer Address option's MAC, or -1. */
  sourceLinkLayer(): number {
    return this.lladdr(NdpOpt.SOURCE_LL_ADDR);
  }

  /** The Target Link-Layer Address option's MAC, or -1. */
  targetLinkLayer(): number {
    return this.lladdr(NdpOpt.TARGET_LL_ADDR);
  }

  private lladdr(type: number): number {
    const o = this.findNdpOption(type);
    return o >= 0 && this.buf[o + 1] === 1 ? getU48(this.buf, o + 2) : -1;
  }

  /** `addrOff`: absolute offset of the IPv6 source address (destination follows). */
  fillChecksum(buf: Bytes, addrOff: number): void {
    this.checksum = 0;
    this.checksum = finish(sum16(this.buf, this.off, this.len, pseudoSum6(buf, addrOff, 58, this.len)));
  }
  verifyChecksum(buf: Bytes, addrOff: number): boolean {
    return fold(sum16(this.buf, this.off, this.len, pseudoSum6(buf, addrOff, 58, this.len))) === 0xffff;
  }
  fillChecksumWords(src: Uint32Array, dst: Uint32Array): void {
    this.checksum = 0;
    this.checksum = finish(sum16(this.buf, this.off, this.len, pseudoSum6Words(src, dst, 58, this.len)));
  }
}

/**
 * Allocation-free walk over NDP options. `malformed` is set on a zero length
 * or an option running past the message (RFC 4861 says: discard the packet).
 */
export class NdpOptionCursor {
  buf: Bytes = new Uint8Array(0);
  pos = 0;
  end = 0;
  type = 0;
  /** Option length in bytes (8 * the length field). */
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

  resetOn(v: Icmpv6View): this {
    const start = ndpOptionsStart(v.type);
    if (start < 0 || start > v.len) return this.reset(v.buf, v.off, 0);
    return this.reset(v.buf, v.off + start, v.len - start);
  }

  next(): boolean {
    if (this.pos >= this.end) return false;
    if (this.pos + 2 > this.end) {
      this.malformed = true;
      return false;
    }
    const l = this.buf[this.pos + 1] << 3;
    if (l === 0 || this.pos + l > this.end) {
      this.malformed = true;
      return false;
    }
    this.type = this.buf[this.pos];
    this.length = l;
    this.offset = this.pos;
    this.pos += l;
    return true;
  }
}

const ndpCursor = new NdpOptionCursor();

/** Generic ICMPv6 message: type, code, the 32-bit word after the checksum, data. */
export class Icmpv6Repr {
  constructor(
    public type = 0,
    public code = 0,
    public rest = 0,
    public data: Uint8Array = new Uint8Array(0),
  ) {}

  static parse(v: Icmpv6View): Icmpv6Repr | null {
    if (v.check() !== DropReason.NONE) return null;
    return new Icmpv6Repr(v.type, v.code, v.rest, copyBytes(v.buf, v.dataOffset, v.off + v.len));
  }

  bufferLen(): number {
    return ICMPV6_HLEN + this.data.length;
  }

  /** Writes the message; the checksum needs the IPv6 addresses: call fillChecksum afterwards. */
  emit(v: Icmpv6View): void {
    v.type = this.type;
    v.code = this.code;
    v.rest = this.rest;
    v.checksum = 0;
    v.buf.set(this.data, v.off + ICMPV6_HLEN);
  }
}

/**
 * Neighbor Discovery messages the router sends and reads: RS, RA, NS, NA,
 * with the link-layer address options (other options, e.g. prefix
 * information, are not represented).
 */
export class NdpRepr {
  constructor(
    public type: number = Icmpv6Type.NEIGHBOR_SOLICIT,
    /** NA: R/S/O flags; RA: M/O flags. */
    public flags = 0,
    /** NS/NA target. */
    public target = new Uint32Array(4),
    /** -1 = option absent. */
    public sourceLinkLayer = -1,
    public targetLinkLayer = -1,
    public raHopLimit = 0,
    public raRouterLifetime = 0,
    public raReachableTime = 0,
    public raRetransTimer = 0,
  ) {}

  static parse(v: Icmpv6View): NdpRepr | null {
    const t = v.type;
    if (t < 133 || t > 136 || !v.checkNdp()) return null;
    const r = new NdpRepr(t);
    if (t === 135 || t === 136) v.readTarget(r.target);
    if (t === 136 || t === 134) r.flags = v.ndpFlags;
    if (t === 134) {
      r.raHopLimit = v.raHopLimit;
      r.raRouterLifetime = v.raRouterLifetime;
      r.raReachableTime = v.raReachableTime;
      r.raRetransTimer = v.raRetransTimer;
    }
    r.sourceLinkLayer = v.sourceLinkLayer();
    r.targetLinkLayer = v.targetLinkLayer();
    return r;
  }

  bufferLen(): number {
    return ndpOptionsStart(this.type) + (this.sourceLinkLayer >= 0 ? 8 : 0) + (this.targetLinkLayer >= 0 ? 8 : 0);
  }

  /** Writes the message (view len must be bufferLen()); checksum left 0: call fillChecksum. */
  emit(v: Icmpv6View): void {
    const b = v.buf;
    const o = v.off;
    const start = ndpOptionsStart(this.type);
    b.fill(0, o, o + start);
    v.type = this.type;
    v.code = 0;
    if (this.type === 135 || this.type === 136) v.writeTarget(this.target);
    if (this.type === 136) v.ndpFlags = this.flags;
    if (this.type === 134) {
      v.raHopLimit = this.raHopLimit;
      v.ndpFlags = this.flags;
      v.raRouterLifetime = this.raRouterLifetime;
      v.raReachableTime = this.raReachableTime;
      v.raRetransTimer = this.raRetransTimer;
    }
    let p = o + start;
    if (this.sourceLinkLayer >= 0) p += writeLinkLayerOption(b, p, NdpOpt.SOURCE_LL_ADDR, this.sourceLinkLayer);
    if (this.targetLinkLayer >= 0) writeLinkLayerOption(b, p, NdpOpt.TARGET_LL_ADDR, this.targetLinkLayer);
  }
}

/** Writes an 8-byte link-layer address option; returns 8. */
export function writeLinkLayerOption(b: Bytes, off: number, type: number, mac: number): number {
  b[off] = type;
  b[off + 1] = 1;
  setU48(b, off + 2, mac);
  return 8;
}
