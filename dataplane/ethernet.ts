/**
 * Ethernet II frames (the TAP side of xtr).
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                    Destination MAC (6 bytes)                  |
 *  +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                               |                               |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
 *  |                      Source MAC (6 bytes)                     |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |           EtherType           |  payload ...
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Non-goals: 802.1Q/802.1ad VLAN tags are not supported (a tagged frame shows
 * ethertype 0x8100 and is not parsed further); 802.3 length frames
 * (ethertype < 0x0600) are reported as-is; no FCS is expected (TAP strips it).
 *
 * MAC addresses are exchanged as 48-bit integers (exact in a JS number), so
 * reading one allocates nothing and comparing two is `===`.
 */
import { type Bytes, View, getU16, getU48, setU16, setU48 } from './bytes.js';
import { DropReason } from './drop.js';

const DST = 0;
const SRC = 6;
const ETHERTYPE = 12;
export const ETH_HLEN = 14;

export const enum EtherType {
  IPV4 = 0x0800,
  ARP = 0x0806,
  VLAN = 0x8100,
  IPV6 = 0x86dd,
}

export const MAC_BROADCAST = 0xffffffffffff;

/** True for group (multicast or broadcast) MACs: the I/G bit of the first byte. */
export function isMulticastMac(mac: number): boolean {
  return (Math.floor(mac / 0x10000000000) & 1) === 1;
}

export class EthernetView extends View {
  /** True if the 14-byte header is present. */
  checkLen(): boolean {
    return this.len >= ETH_HLEN;
  }

  check(): DropReason {
    return this.len >= ETH_HLEN ? DropReason.NONE : DropReason.TRUNCATED_FRAME;
  }

  get dst(): number {
    return getU48(this.buf, this.off + DST);
  }
  set dst(mac: number) {
    setU48(this.buf, this.off + DST, mac);
  }
  get src(): number {
    return getU48(this.buf, this.off + SRC);
  }
  set src(mac: number) {
    setU48(this.buf, this.off + SRC, mac);
  }
  get ethertype(): number {
    return getU16(this.buf, this.off + ETHERTYPE);
  }
  set ethertype(v: number) {
    setU16(this.buf, this.off + ETHERTYPE, v);
  }
  /** Absolute offset of the payload (the L3 header). */
  get payloadOffset(): number {
    return this.off + ETH_HLEN;
  }
  get payloadLength(): number {
    return this.len - ETH_HLEN;
  }
}

/** Plain description of an Ethernet header, for building and tests. */
export class EthernetRepr {
  constructor(
    public dst = 0,
    public src = 0,
    public ethertype = 0,
  ) {}

  static parse(v: EthernetView): EthernetRepr | null {
    if (!v.checkLen()) return null;
    return new EthernetRepr(v.dst, v.src, v.ethertype);
  }

  bufferLen(): number {
    return ETH_HLEN;
  }

  emit(v: EthernetView): void {
    v.dst = this.dst;
    v.src = this.src;
    v.ethertype = this.ethertype;
  }
}

/** Writes an Ethernet header at buf[off] and returns its length (14). */
export function writeEthernet(buf: Bytes, off: number, dst: number, src: number, ethertype: number): number {
  setU48(buf, off + DST, dst);
  setU48(buf, off + SRC, src);
  setU16(buf, off + ETHERTYPE, ethertype);
  return ETH_HLEN;
}
