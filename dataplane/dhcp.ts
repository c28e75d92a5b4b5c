/**
 * BOOTP/DHCP message (RFC 951, RFC 2131, options RFC 2132), carried in UDP 67/68.
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |     op (1)    |   htype (1)   |   hlen (1)    |   hops (1)    |
 *  +---------------+---------------+---------------+---------------+
 *  |                            xid (4)                            |
 *  +-------------------------------+-------------------------------+
 *  |           secs (2)            |           flags (2)           |
 *  +-------------------------------+-------------------------------+
 *  |  ciaddr (12) | yiaddr (16) | siaddr (20) | giaddr (24)        |
 *  +---------------------------------------------------------------+
 *  |                chaddr (16 bytes, offset 28)                   |
 *  |                sname  (64 bytes, offset 44)                   |
 *  |                file  (128 bytes, offset 108)                  |
 *  +---------------------------------------------------------------+
 *  |     magic cookie 99.130.83.99 (offset 236) | options (240...) |
 *  +---------------------------------------------------------------+
 *
 * The view starts at the UDP payload. Options are code/length/value with
 * Pad (0) and End (255) as single bytes.
 *
 * Non-goal: option overload (option 52, options continued in sname/file) is
 * not followed; the walker reads the options field only.
 */
import { type Bytes, View, copyBytes, getU16, getU32, getU48, setU16, setU32, setU48 } from './bytes.js';

const OP = 0;
const HTYPE = 1;
const HLEN = 2;
const HOPS = 3;
const XID = 4;
const SECS = 8;
const FLAGS = 10;
const CIADDR = 12;
const YIADDR = 16;
const SIADDR = 20;
const GIADDR = 24;
const CHADDR = 28;
const SNAME = 44;
const FILE = 108;
const COOKIE = 236;
export const BOOTP_FIXED_LEN = 236;
export const DHCP_OPTIONS_OFFSET = 240;
export const DHCP_MAGIC_COOKIE = 0x63825363;
export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
export const DHCP_FLAG_BROADCAST = 0x8000;

export const enum DhcpOpt {
  PAD = 0,
  SUBNET_MASK = 1,
  ROUTER = 3,
  DNS = 6,
  HOSTNAME = 12,
  REQUESTED_IP = 50,
  LEASE_TIME = 51,
  OVERLOAD = 52,
  MESSAGE_TYPE = 53,
  SERVER_ID = 54,
  PARAM_REQUEST_LIST = 55,
  CLIENT_ID = 61,
  END = 255,
}

export const enum DhcpMessageType {
  DISCOVER = 1,
  OFFER = 2,
  REQUEST = 3,
  DECLINE = 4,
  ACK = 5,
  NAK = 6,
  RELEASE = 7,
  INFORM = 8,
}

export class DhcpView extends View {
  /** The BOOTP fixed part (236 bytes) is present. */
  checkLen(): boolean {
    return this.len >= BOOTP_FIXED_LEN;
  }

  /** The fixed part and the magic cookie are present: a DHCP (not plain BOOTP) message. */
  isDhcp(): boolean {
    return this.len >= DHCP_OPTIONS_OFFSET && getU32(this.buf, this.off + COOKIE) === DHCP_MAGIC_COOKIE;
  }

  get op(): number {
    return this.buf[this.off + OP];
  }
  set op(v: number) {
    this.buf[this.off + OP] = v;
  }
  get htype(): number {
    return this.buf[this.off + HTYPE];
  }
  set htype(v: number) {
    this.buf[this.off + HTYPE] = v;
  }
  get hlen(): number {
    return this.buf[this.off + HLEN];
  }
  set hlen(v: number) {
    this.buf[this.off + HLEN] = v;
  }
  get hops(): number {
    return this.buf[this.off + HOPS];
  }
  set hops(v: number) {
    this.buf[this.off + HOPS] = v;
  }
  get xid(): number {
    return getU32(this.buf, this.off + XID);
  }
  set xid(v: number) {
    setU32(this.buf, this.off + XID, v);
  }
  get secs(): number {
    return getU16(this.buf, this.off + SECS);
  }
  set secs(v: number) {
    setU16(this.buf, this.off + SECS, v);
  }
  get flags(): number {
    return getU16(this.buf, this.off + FLAGS);
  }
  set flags(v: number) {
    setU16(this.buf, this.off + FLAGS, v);
  }
  get ciaddr(): number {
    return getU32(this.buf, this.off + CIADDR);
  }
  set ciaddr(v: number) {
    setU32(this.buf, this.off + CIADDR, v);
  }
  get yiaddr(): number {
    return getU32(this.buf, this.off + YIADDR);
  }
  set yiaddr(v: number) {
    setU32(this.buf, this.off + YIADDR, v);
  }
  get siaddr(): number {
    return getU32(this.buf, this.off + SIADDR);
  }
  set siaddr(v: number) {
    setU32(this.buf, this.off + SIADDR, v);
  }
  get giaddr(): number {
    return getU32(this.buf, this.off + GIADDR);
  }
  set giaddr(v: number) {
    setU32(this.buf, this.off + GIADDR, v);
  }
  /** Absolute offset of the 16-byte client hardware address field (DHCPMAC rewrites it in place). */
  get chaddrOffset(): number {
    return this.off + CHADDR;
  }
  /** The first 6 bytes of chaddr as a 48-bit MAC (meaningful when htype 1 / hlen 6). */
  get chaddrMac(): number {
    return getU48(this.buf, this.off + CHADDR);
  }
  set chaddrMac(mac: number) {
    setU48(this.buf, this.off + CHADDR, mac);
  }
  get snameOffset(): number {
    return this.off + SNAME;
  }
  get fileOffset(): number {
    return this.off + FILE;
  }
  get cookie(): number {
    return getU32(this.buf, this.off + COOKIE);
  }
  set cookie(v: number) {
    setU32(this.buf, this.off + COOKIE, v);
  }
  get optionsOffset(): number {
    return this.off + DHCP_OPTIONS_OFFSET;
  }

  /** Absolute offset of the first option with `code` (its code byte), or -1. */
  findOption(code: number): number {
    const c = dhcpCursor.resetOn(this);
    while (c.next()) if (c.code === code) return c.offset;
    return -1;
  }

  /** Option 53 (DHCP message type) or -1. */
  messageType(): number {
    const o = this.findOption(DhcpOpt.MESSAGE_TYPE);
    return o >= 0 && this.buf[o + 1] === 1 ? this.buf[o + 2] : -1;
  }
}

/**
 * Allocation-free walk over DHCP options: code, length (value bytes only),
 * offset of the code byte. Stops at End, at the end of the message, or at an
 * option running past it (`malformed`). Pad bytes are skipped, not reported.
 */
export class DhcpOptionCursor {
  buf: Bytes = new Uint8Array(0);
  pos = 0;
  end = 0;
  code = 0;
  length = 0;
  offset = 0;
  /** Absolute offset of the option's value. */
  valueOffset = 0;
  malformed = false;

  reset(buf: Bytes, off: number, len: number): this {
    this.buf = buf;
    this.pos = off;
    this.end = off + len;
    this.malformed = false;
    return this;
  }

  /** Resets onto the options of a DHCP message (empty if the cookie is missing). */
  resetOn(v: DhcpView): this {
    if (!v.isDhcp()) return this.reset(v.buf, v.off, 0);
    return this.reset(v.buf, v.off + DHCP_OPTIONS_OFFSET, v.len - DHCP_OPTIONS_OFFSET);
  }

  next(): boolean {
    while (this.pos < this.end && this.buf[this.pos] === DhcpOpt.PAD) this.pos++;
    if (this.pos >= this.end) return false;
    const c = this.buf[this.pos];
    if (c === DhcpOpt.END) {
      this.pos = this.end;
      return false;
    }
    if (this.pos + 2 > this.end) {
      this.malformed = true;
      return false;
    }
    const l = this.buf[this.pos + 1];
    if (this.pos + 2 + l > this.end) {
      this.malformed = true;
      return false;
    }
    this.code = c;
    this.length = l;
    this.offset = this.pos;
    this.valueOffset = this.pos + 2;
    this.pos += 2 + l;
    return true;
  }
}

const dhcpCursor = new DhcpOptionCursor();

export interface DhcpOption {
  code: number;
  value: Uint8Array;
}

/** A DHCP message as plain data (tests and the lab's DHCP helpers). */
export class DhcpRepr {
  constructor(
    public op = BOOTREQUEST,
    public xid = 0,
    public chaddr = 0,
    public ciaddr = 0,
    public yiaddr = 0,
    public siaddr = 0,
    public giaddr = 0,
    public flags = 0,
    public secs = 0,
    public hops = 0,
    /** In wire order, End excluded; Pad not represented. */
    public options: DhcpOption[] = [],
  ) {}

  static parse(v: DhcpView): DhcpRepr | null {
    if (!v.isDhcp() || v.htype !== 1 || v.hlen !== 6) return null;
    const r = new DhcpRepr(v.op, v.xid, v.chaddrMac, v.ciaddr, v.yiaddr, v.siaddr, v.giaddr, v.flags, v.secs, v.hops);
    const c = new DhcpOptionCursor().resetOn(v);
    while (c.next()) r.options.push({ code: c.code, value: copyBytes(v.buf, c.valueOffset, c.valueOffset + c.length) });
    if (c.malformed) return null;
    return r;
  }

  bufferLen(): number {
    let n = DHCP_OPTIONS_OFFSET + 1;
    for (const o of this.options) n += 2 + o.value.length;
    return n;
  }

  /** Writes the whole message (sname/file zeroed) ending with the End option. */
  emit(v: DhcpView): void {
    const b = v.buf;
    b.fill(0, v.off, v.off + DHCP_OPTIONS_OFFSET);
    v.op = this.op;
    v.htype = 1;
    v.hlen = 6;
    v.hops = this.hops;
    v.xid = this.xid;
    v.secs = this.secs;
    v.flags = this.flags;
    v.ciaddr = this.ciaddr;
    v.yiaddr = this.yiaddr;
    v.siaddr = this.siaddr;
    v.giaddr = this.giaddr;
    v.chaddrMac = this.chaddr;
    v.cookie = DHCP_MAGIC_COOKIE;
    let p = v.off + DHCP_OPTIONS_OFFSET;
    for (const o of this.options) {
      b[p] = o.code;
      b[p + 1] = o.value.length;
      b.set(o.value, p + 2);
      p += 2 + o.value.length;
    }
    b[p] = DhcpOpt.END;
  }
}
