/**
 * TCP header (RFC 9293) and its options.
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |          Source Port          |       Destination Port        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                        Sequence Number                        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Acknowledgment Number                      |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  Data |       |C|E|U|A|P|R|S|F|                               |
 *  | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
 *  |       |       |R|E|G|K|H|T|N|N|                               |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |           Checksum            |         Urgent Pointer        |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Options (data offset * 4 - 20 bytes)       |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * The view's `len` is the whole segment (header + data) as bounded by the IP
 * length, because the checksum covers it all.
 */
import { type Bytes, View, copyBytes, getU16, getU32, setU16, setU32 } from './bytes.js';
import { finish, fold, pseudoSum4, pseudoSum6, sum16 } from './checksum.js';
import { DropReason } from './drop.js';

const SRC_PORT = 0;
const DST_PORT = 2;
const SEQ = 4;
const ACK = 8;
const DATA_OFF = 12;
const FLAGS = 13;
const WINDOW = 14;
const CHECKSUM = 16;
const URGENT = 18;
export const TCP_MIN_HLEN = 20;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

export const enum TcpOpt {
  END = 0,
  NOP = 1,
  MSS = 2,
  WSCALE = 3,
  SACK_PERMITTED = 4,
  SACK = 5,
  TIMESTAMP = 8,
}

export class TcpView extends View {
  /** The fixed 20 bytes are present. */
  checkLen(): boolean {
    return this.len >= TCP_MIN_HLEN;
  }

  /** Fixed header present and the data offset within 5..len/4. */
  check(): DropReason {
    if (this.len < TCP_MIN_HLEN) return DropReason.TRUNCATED_TRANSPORT;
    const hl = this.headerLength;
    if (hl < TCP_MIN_HLEN || hl > this.len) return DropReason.BAD_TCP_DATA_OFFSET;
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
  get seq(): number {
    return getU32(this.buf, this.off + SEQ);
  }
  set seq(v: number) {
    setU32(this.buf, this.off + SEQ, v);
  }
  get ack(): number {
    return getU32(this.buf, this.off + ACK);
  }
  set ack(v: number) {
    setU32(this.buf, this.off + ACK, v);
  }
  /** Header length in bytes (data offset * 4). */
  get headerLength(): number {
    return (this.buf[this.off + DATA_OFF] >> 4) << 2;
  }
  set headerLength(bytes: number) {
    const o = this.off + DATA_OFF;
    this.buf[o] = (((bytes >> 2) & 0x0f) << 4) | (this.buf[o] & 0x0f);
  }
  /** The flags byte (CWR..FIN); the NS bit is in byte 12 and not included. */
  get flags(): number {
    return this.buf[this.off + FLAGS];
  }
  set flags(v: number) {
    this.buf[this.off + FLAGS] = v;
  }
  /** The 4 reserved bits + NS of byte 12 (rejected as non-zero by some matches). */
  get reserved(): number {
    return this.buf[this.off + DATA_OFF] & 0x0f;
  }
  get window(): number {
    return getU16(this.buf, this.off + WINDOW);
  }
  set window(v: number) {
    setU16(this.buf, this.off + WINDOW, v);
  }
  get checksum(): number {
    return getU16(this.buf, this.off + CHECKSUM);
  }
  set checksum(v: number) {
    setU16(this.buf, this.off + CHECKSUM, v);
  }
  get urgent(): number {
    return getU16(this.buf, this.off + URGENT);
  }
  set urgent(v: number) {
    setU16(this.buf, this.off + URGENT, v);
  }
  get optionsOffset(): number {
    return this.off + TCP_MIN_HLEN;
  }
  get optionsLength(): number {
    return this.headerLength - TCP_MIN_HLEN;
  }
  get payloadOffset(): number {
    return this.off + this.headerLength;
  }
  get payloadLength(): number {
    return this.len - this.headerLength;
  }

  /** Fills the checksum over the whole segment (len bytes) with an IPv4 pseudo-header. */
  fillChecksum4(src: number, dst: number): void {
    this.checksum = 0;
    this.checksum = finish(sum16(this.buf, this.off, this.len, pseudoSum4(src, dst, 6, this.len)));
  }
  verifyChecksum4(src: number, dst: number): boolean {
    return fold(sum16(this.buf, this.off, this.len, pseudoSum4(src, dst, 6, this.len))) === 0xffff;
  }
  /** IPv6 variant: `addrOff` is the absolute offset of the source address in the IPv6 header (dst follows). */
  fillChecksum6(buf: Bytes, addrOff: number): void {
    this.checksum = 0;
    this.checksum = finish(sum16(this.buf, this.off, this.len, pseudoSum6(buf, addrOff, 6, this.len)));
  }
  verifyChecksum6(buf: Bytes, addrOff: number): boolean {
    return fold(sum16(this.buf, this.off, this.len, pseudoSum6(buf, addrOff, 6, this.len))) === 0xffff;
  }

  /** Absolute offset of the first option of `kind`, or -1 (walks like tcp_parse_options). */
  findOption(kind: number): number {
    const c = optionCursor.resetOn(this);
    while (c.next()) if (c.kind === kind) return c.offset;
    return -1;
  }

  /** The MSS option value, or -1 if absent or malformed. */
  mss(): number {
    const o = this.findOption(TcpOpt.MSS);
    return o >= 0 && this.buf[o + 1] === 4 ? getU16(this.buf, o + 2) : -1;
  }

  /** The window scale shift, or -1 if absent. */
  windowScale(): number {
    const o = this.findOption(TcpOpt.WSCALE);
    return o >= 0 && this.buf[o + 1] === 3 ? this.buf[o + 2] : -1;
  }

  sackPermitted(): boolean {
    const o = this.findOption(TcpOpt.SACK_PERMITTED);
    return o >= 0 && this.buf[o + 1] === 2;
  }
}

/**
 * Allocation-free walk over TCP options: `while (c.next()) { c.kind, c.length, c.offset }`.
 * Stops at END, at the end of the option area, or at a bad length
 * (`malformed` set) - the kernel's tcp_parse_options stops the same way.
 */
export class TcpOptionCursor {
  buf: Bytes = new Uint8Array(0);
  pos = 0;
  end = 0;
  kind = 0;
  /** Total option length including kind and length bytes (1 for NOP). */
  length = 0;
  /** Absolute offset of the option's kind byte. */
  offset = 0;
  malformed = false;

  reset(buf: Bytes, off: number, len: number): this {
    this.buf = buf;
    this.pos = off;
    this.end = off + len;
    this.malformed = false;
    return this;
  }

  resetOn(v: TcpView): this {
    return this.reset(v.buf, v.optionsOffset, Math.max(0, Math.min(v.optionsLength, v.len - TCP_MIN_HLEN)));
  }

  next(): boolean {
    if (this.pos >= this.end) return false;
    const k = this.buf[this.pos];
    this.kind = k;
    this.offset = this.pos;
    if (k === TcpOpt.END) {
      this.length = 1;
      this.pos = this.end;
      return false;
    }
    if (k === TcpOpt.NOP) {
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

const optionCursor = new TcpOptionCursor();

export class TcpRepr {
  constructor(
    public srcPort = 0,
    public dstPort = 0,
    public seq = 0,
    public ack = 0,
    public flags = 0,
    public window = 0,
    public urgent = 0,
    /** Raw option bytes; padded with zeros (END) to a multiple of 4 on emit. */
    public options: Uint8Array = new Uint8Array(0),
    public payload: Uint8Array = new Uint8Array(0),
  ) {}

  static parse(v: TcpView): TcpRepr | null {
    if (v.check() !== DropReason.NONE) return null;
    return new TcpRepr(
      v.srcPort,
      v.dstPort,
      v.seq,
      v.ack,
      v.flags,
      v.window,
      v.urgent,
      copyBytes(v.buf, v.optionsOffset, v.optionsOffset + v.optionsLength),
      copyBytes(v.buf, v.payloadOffset, v.off + v.len),
    );
  }

  headerLen(): number {
    return TCP_MIN_HLEN + ((this.options.length + 3) & ~3);
  }

  bufferLen(): number {
    return this.headerLen() + this.payload.length;
  }

  /** Writes header and payload; the checksum is left 0 (use fillChecksum4/6 on the pointed view). */
  emit(v: TcpView): void {
    const hl = this.headerLen();
    v.srcPort = this.srcPort;
    v.dstPort = this.dstPort;
    v.seq = this.seq;
    v.ack = this.ack;
    v.buf[v.off + DATA_OFF] = (hl >> 2) << 4;
    v.flags = this.flags;
    v.window = this.window;
    v.checksum = 0;
    v.urgent = this.urgent;
    v.buf.set(this.options, v.off + TCP_MIN_HLEN);
    v.buf.fill(0, v.off + TCP_MIN_HLEN + this.options.length, v.off + hl);
    v.buf.set(this.payload, v.off + hl);
  }
}
