/**
 * ARP for Ethernet/IPv4 (RFC 826), the only combination xtr speaks.
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |       Hardware type (1)       |     Protocol type (0x0800)    |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |  HW len (6)   | Proto len (4) |           Operation           |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |          Sender hardware address (6)  ...                     |
 *  |  ...  |         Sender protocol address (4)   |  Target HW ...
 *  |  ... Target hardware address (6)      |  Target protocol (4)  |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Offsets: htype 0, ptype 2, hlen 4, plen 5, oper 6, sha 8, spa 14,
 * tha 18, tpa 24; 28 bytes in all. Anything after that is Ethernet padding.
 */
import { View, getU16, getU32, getU48, setU16, setU32, setU48 } from './bytes.js';
import { DropReason } from './drop.js';

const HTYPE = 0;
const PTYPE = 2;
const HLEN = 4;
const PLEN = 5;
const OPER = 6;
const SHA = 8;
const SPA = 14;
const THA = 18;
const TPA = 24;
export const ARP_LEN = 28;

export const ARP_HTYPE_ETHERNET = 1;
export const ARP_OP_REQUEST = 1;
export const ARP_OP_REPLY = 2;

export class ArpView extends View {
  checkLen(): boolean {
    return this.len >= ARP_LEN;
  }

  /** Valid only for Ethernet/IPv4 ARP with the lengths that implies. */
  check(): DropReason {
    if (this.len < ARP_LEN) return DropReason.BAD_ARP;
    const b = this.buf;
    const o = this.off;
    if (getU16(b, o + HTYPE) !== ARP_HTYPE_ETHERNET || getU16(b, o + PTYPE) !== 0x0800) return DropReason.BAD_ARP;
    if (b[o + HLEN] !== 6 || b[o + PLEN] !== 4) return DropReason.BAD_ARP;
    return DropReason.NONE;
  }

  get htype(): number {
    return getU16(this.buf, this.off + HTYPE);
  }
  set htype(v: number) {
    setU16(this.buf, this.off + HTYPE, v);
  }
  get ptype(): number {
    return getU16(this.buf, this.off + PTYPE);
  }
  set ptype(v: number) {
    setU16(this.buf, this.off + PTYPE, v);
  }
  get hlen(): number {
    return this.buf[this.off + HLEN];
  }
  set hlen(v: number) {
    this.buf[this.off + HLEN] = v;
  }
  get plen(): number {
    return this.buf[this.off + PLEN];
  }
  set plen(v: number) {
    this.buf[this.off + PLEN] = v;
  }
  get oper(): number {
    return getU16(this.buf, this.off + OPER);
  }
  set oper(v: number) {
    setU16(this.buf, this.off + OPER, v);
  }
  /** Sender hardware address (48-bit). */
  get sha(): number {
    return getU48(this.buf, this.off + SHA);
  }
  set sha(v: number) {
    setU48(this.buf, this.off + SHA, v);
  }
  /** Sender protocol (IPv4) address. */
  get spa(): number {
    return getU32(this.buf, this.off + SPA);
  }
  set spa(v: number) {
    setU32(this.buf, this.off + SPA, v);
  }
  get tha(): number {
    return getU48(this.buf, this.off + THA);
  }
  set tha(v: number) {
    setU48(this.buf, this.off + THA, v);
  }
  get tpa(): number {
    return getU32(this.buf, this.off + TPA);
  }
  set tpa(v: number) {
    setU32(this.buf, this.off + TPA, v);
  }
}

export class ArpRepr {
  constructor(
    public oper = ARP_OP_REQUEST,
    public sha = 0,
    public spa = 0,
    public tha = 0,
    public tpa = 0,
  ) {}

  static parse(v: ArpView): ArpRepr | null {
    if (v.check() !== DropReason.NONE) return null;
    return new ArpRepr(v.oper, v.sha, v.spa, v.tha, v.tpa);
  }

  bufferLen(): number {
    return ARP_LEN;
  }

  emit(v: ArpView): void {
    v.htype = ARP_HTYPE_ETHERNET;
    v.ptype = 0x0800;
    v.hlen = 6;
    v.plen = 4;
    v.oper = this.oper;
    v.sha = this.sha;
    v.spa = this.spa;
    v.tha = this.tha;
    v.tpa = this.tpa;
  }
}
