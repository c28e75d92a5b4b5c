/**
 * ICMP for IPv4 (RFC 792, RFC 1191 for the next-hop MTU).
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |     Type      |     Code      |          Checksum             |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  Rest of header: echo ident/seq | gateway | unused/next-hop MTU
 *  |  | pointer (param problem)                                    |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  Data: echo payload, or the quoted IP header + leading bytes  |
 *
 * The checksum covers the whole ICMP message (the view's len) with no
 * pseudo-header.
 */
import { View, copyBytes, getU16, getU32, setU16, setU32 } from './bytes.js';
import { checksum, verifies } from './checksum.js';
import { DropReason } from './drop.js';

const TYPE = 0;
const CODE = 1;
const CHECKSUM = 2;
const REST = 4;
export const ICMP_HLEN = 8;

export const enum IcmpType {
  ECHO_REPLY = 0,
  DEST_UNREACH = 3,
  SOURCE_QUENCH = 4,
  REDIRECT = 5,
  ECHO_REQUEST = 8,
  ROUTER_ADVERT = 9,
  ROUTER_SOLICIT = 10,
  TIME_EXCEEDED = 11,
  PARAM_PROBLEM = 12,
  TIMESTAMP = 13,
  TIMESTAMP_REPLY = 14,
  INFO_REQUEST = 15,
  INFO_REPLY = 16,
  ADDRESS = 17,
  ADDRESS_REPLY = 18,
}

/** Destination-unreachable codes (RFC 792, RFC 1812). */
export const enum IcmpUnreach {
  NET = 0,
  HOST = 1,
  PROTOCOL = 2,
  PORT = 3,
  FRAG_NEEDED = 4,
  SRC_ROUTE_FAILED = 5,
  NET_UNKNOWN = 6,
  HOST_UNKNOWN = 7,
  HOST_ISOLATED = 8,
  NET_PROHIBITED = 9,
  HOST_PROHIBITED = 10,
  NET_TOS = 11,
  HOST_TOS = 12,
  ADMIN_PROHIBITED = 13,
  HOST_PRECEDENCE = 14,
  PRECEDENCE_CUTOFF = 15,
}

/** Types that report an error about another packet (never answered with an error, RFC 1122 3.2.2). */
export function isIcmpError(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

export class IcmpView extends View {
  checkLen(): boolean {
    return this.len >= ICMP_HLEN;
  }

  check(): DropReason {
    return this.len >= ICMP_HLEN ? DropReason.NONE : DropReason.TRUNCATED_TRANSPORT;
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
  /** The 4 "rest of header" bytes as one word. */
  get rest(): number {
    return getU32(this.buf, this.off + REST);
  }
  set rest(v: number) {
    setU32(this.buf, this.off + REST, v);
  }
  /** Echo identifier (types 0/8, also timestamp/info). */
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
  /** Redirect gateway address. */
  get gateway(): number {
    return getU32(this.buf, this.off + REST);
  }
  set gateway(v: number) {
    setU32(this.buf, this.off + REST, v);
  }
  /** Next-hop MTU of a fragmentation-needed message (RFC 1191). */
  get nextHopMtu(): number {
    return getU16(this.buf, this.off + REST + 2);
  }
  set nextHopMtu(v: number) {
    setU16(this.buf, this.off + REST + 2, v);
  }
  /** Parameter-problem pointer (octet offset into the quoted header). */
  get pointer(): number {
    return this.buf[this.off + REST];
  }
  set pointer(v: number) {
    this.buf[this.off + REST] = v;
  }
  get dataOffset(): number {
    return this.off + ICMP_HLEN;
  }
  get dataLength(): number {
    return this.len - ICMP_HLEN;
  }

  verifyChecksum(): boolean {
    return verifies(this.buf, this.off, this.len);
  }
  fillChecksum(): void {
    this.checksum = 0;
    this.checksum = checksum(this.buf, this.off, this.len);
  }
}

export class IcmpRepr {
  constructor(
    public type = 0,
    public code = 0,
    /** The rest-of-header word (ident<<16|seq, gateway, MTU, pointer<<24). */
    public rest = 0,
    public data: Uint8Array = new Uint8Array(0),
  ) {}

  static parse(v: IcmpView): IcmpRepr | null {
    if (v.check() !== DropReason.NONE) return null;
    return new IcmpRepr(v.type, v.code, v.rest, copyBytes(v.buf, v.dataOffset, v.off + v.len));
  }

  bufferLen(): number {
    return ICMP_HLEN + this.data.length;
  }

  /** Writes the message with its checksum; the view's len must be bufferLen(). */
  emit(v: IcmpView): void {
    v.type = this.type;
    v.code = this.code;
    v.rest = this.rest;
    v.buf.set(this.data, v.off + ICMP_HLEN);
    v.fillChecksum();
  }
}
