/**
 * UDP header (RFC 768).
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |          Source Port          |       Destination Port        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |             Length            |           Checksum            |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Checksum 0 means "none" over IPv4 (not allowed over IPv6, RFC 8200 8.1);
 * a computed 0 is transmitted as 0xffff. The checksum covers `length` bytes,
 * not the view's len (bytes past `length` inside the IP payload are ignored,
 * as the kernel's udp_rcv trims them).
 */
import { type Bytes, View, copyBytes, getU16, setU16 } from './bytes.js';
import { finish, fold, pseudoSum4, pseudoSum6, sum16 } from './checksum.js';
import { DropReason } from './drop.js';

const SRC_PORT = 0;
const DST_PORT = 2;
const LENGTH = 4;
const CHECKSUM = 6;
export const UDP_HLEN = 8;

export class UdpView extends View {
  checkLen(): boolean {
    return this.len >= UDP_HLEN;
  }

  check(): DropReason {
    if (this.len < UDP_HLEN) return DropReason.TRUNCATED_TRANSPORT;
    const l = this.length;
    if (l < UDP_HLEN || l > this.len) return DropReason.BAD_UDP_LENGTH;
    return DropReason.NONE;
  }

  get srcPort(): number {
    return getU16(this.buf, this.off + SRC_PORT);
  }
  set srcPort(v: number) {
    setU16(this.buf, this.off + SRC_PORT, v);
  }
  get dstPort(): number {
    return getU16(this.buf, this.off + DST_PORT);
  }
  set dstPort(v: number) {
    setU16(this.buf, this.off + DST_PORT, v);
  }
  /** Header + data length from the header. */
  get length(): number {
    return getU16(this.buf, this.off + LENGTH);
  }
  set length(v: number) {
    setU16(this.buf, this.off + LENGTH, v);
  }
  get checksum(): number {
    return getU16(this.buf, this.off + CHECKSUM);
  }
  set checksum(v: number) {
    setU16(this.buf, this.off + CHECKSUM, v);
  }
  get payloadOffset(): number {
    return this.off + UDP_HLEN;
  }
  get payloadLength(): number {
    return this.length - UDP_HLEN;
  }

  fillChecksum4(src: number, dst: number): void {
    const l = this.length;
    this.checksum = 0;
    const c = finish(sum16(this.buf, this.off, l, pseudoSum4(src, dst, 17, l)));
    this.checksum = c === 0 ? 0xffff : c;
  }
  /** True if the checksum verifies or is 0 (absent, legal over IPv4). */
  verifyChecksum4(src: number, dst: number): boolean {
    if (this.checksum === 0) return true;
    const l = this.length;
    return fold(sum16(this.buf, this.off, l, pseudoSum4(src, dst, 17, l))) === 0xffff;
  }
  fillChecksum6(buf: Bytes, addrOff: number): void {
    const l = this.length;
    this.checksum = 0;
    const c = finish(sum16(this.buf, this.off, l, pseudoSum6(buf, addrOff, 17, l)));
    this.checksum = c === 0 ? 0xffff : c;
  }
  /** Over IPv6 a 0 checksum is invalid. */
  verifyChecksum6(buf: Bytes, addrOff: number): boolean {
    if (this.checksum === 0) return false;
    const l = this.length;
    return fold(sum16(this.buf, this.off, l, pseudoSum6(buf, addrOff, 17, l))) === 0xffff;
  }
}

export class UdpRepr {
  constructor(
    public srcPort = 0,
    public dstPort = 0,
    public payload: Uint8Array = new Uint8Array(0),
  ) {}

  static parse(v: UdpView): UdpRepr | null {
    if (v.check() !== DropReason.NONE) return null;
    return new UdpRepr(v.srcPort, v.dstPort, copyBytes(v.buf, v.payloadOffset, v.off + v.length));
  }

  bufferLen(): number {
    return UDP_HLEN + this.payload.length;
  }

  /** Writes header and payload; checksum left 0 (fill with fillChecksum4/6). */
  emit(v: UdpView): void {
    v.srcPort = this.srcPort;
    v.dstPort = this.dstPort;
    v.length = this.bufferLen();
    v.checksum = 0;
    v.buf.set(this.payload, v.off + UDP_HLEN);
  }
}
