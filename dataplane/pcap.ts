/**
 * Capture file formats for logged packets: classic pcap (libpcap's savefile,
 * microsecond timestamps) and pcapng (draft-ietf-opsawg-pcapng), written
 * little-endian, with two link types:
 *
 *  - LINKTYPE_NFLOG (239): what `tcpdump -i nflog:N -w` writes from the
 *    kernel's nfnetlink_log. Each record is a 4-byte header (address family,
 *    version 0, group big-endian) then TLVs (length and type in the writer's
 *    byte order, here little-endian as the file's magic says; values padded
 *    to 4 bytes), in the kernel's order: NFULA_PACKET_HDR (ethertype, hook),
 *    NFULA_PREFIX (NUL-terminated), NFULA_IFINDEX_INDEV/OUTDEV, NFULA_MARK,
 *    NFULA_HWADDR/HWTYPE/HWLEN/HWHEADER (packets that came with an Ethernet
 *    header), NFULA_TIMESTAMP, NFULA_PAYLOAD (the IP packet, maybe cut).
 *    tcpdump decodes the IP packet inside, Wireshark also the prefix
 *    (`nflog.prefix`), group, hook and interfaces.
 *  - LINKTYPE_RAW (101): the bare IPv4/IPv6 packet; caplen < origlen when cut.
 *
 * pcapng adds per packet an opt_comment: the caller's text (xtr nflog puts
 * the prefix there, Wireshark's `frame.comment`).
 */

export const LINKTYPE_RAW = 101;
export const LINKTYPE_NFLOG = 239;
/** libpcap's default snapshot length (MAXIMUM_SNAPLEN). */
export const DEFAULT_SNAPLEN = 262144;

/** nfulnl_attr_type (linux/netfilter/nfnetlink_log.h). */
const enum Nfula {
  PACKET_HDR = 1,
  MARK = 2,
  TIMESTAMP = 3,
  IFINDEX_INDEV = 4,
  IFINDEX_OUTDEV = 5,
  HWADDR = 8,
  PAYLOAD = 9,
  PREFIX = 10,
  HWTYPE = 15,
  HWHEADER = 16,
  HWLEN = 17,
}
const AF_INET = 2;
const AF_INET6 = 10;
const ARPHRD_ETHER = 1;

/** What a logged packet must say to be written (router/packet-log.ts PacketLogRecord fits). */
export interface LoggedPacket {
  readonly group: number;
  readonly prefix: string;
  readonly family: 4 | 6;
  readonly hook: number;
  readonly inIndex: number;
  readonly outIndex: number;
  readonly mark: number;
  readonly sec: number;
  readonly usec: number;
  /** The packet's whole length; data may be shorter. */
  readonly length: number;
  readonly data: Uint8Array;
  readonly hwHeader: Uint8Array | null;
}

const pad4 = (n: number) => (n + 3) & ~3;

/** The 24-byte pcap file header (magic a1b2c3d4: microseconds). */
export function pcapFileHeader(linktype: number, snaplen = DEFAULT_SNAPLEN): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(0xa1b2c3d4, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  b.writeInt32LE(0, 8);
  b.writeUInt32LE(0, 12);
  b.writeUInt32LE(snaplen, 16);
  b.writeUInt32LE(linktype, 20);
  return b;
}

/** One pcap record: the 16-byte header and the data. */
export function pcapRecord(sec: number, usec: number, data: Uint8Array, origLen: number): Buffer {
  const b = Buffer.alloc(16 + data.length);
  b.writeUInt32LE(sec >>> 0, 0);
  b.writeUInt32LE(usec >>> 0, 4);
  b.writeUInt32LE(data.length, 8);
  b.writeUInt32LE(Math.max(origLen, data.length), 12);
  b.set(data, 16);
  return b;
}

/** The LINKTYPE_NFLOG bytes of one logged packet (header + TLVs), as nfnetlink_log builds them. */
export function nflogMessage(p: LoggedPacket): Buffer {
  const prefix = Buffer.from(`${p.prefix}\0`);
  const hw = p.hwHeader;
  let size = 4 + 8 + pad4(4 + prefix.length) + 20 + pad4(4 + p.data.length);
  if (p.inIndex) size += 8;
  if (p.outIndex) size += 8;
  if (p.mark) size += 8;
  if (hw) size += 16 + 8 + 8 + pad4(4 + hw.length);
  const b = Buffer.alloc(size);
  let o = 0;
  b[0] = p.family === 4 ? AF_INET : AF_INET6;
  b[1] = 0;
  b.writeUInt16BE(p.group, 2);
  o = 4;
  const tlv = (type: number, len: number): number => {
    b.writeUInt16LE(4 + len, o);
    b.writeUInt16LE(type, o + 2);
    const at = o + 4;
    o += pad4(4 + len);
    return at;
  };
  let at = tlv(Nfula.PACKET_HDR, 4);
  b.writeUInt16BE(p.family === 4 ? 0x0800 : 0x86dd, at);
  b[at + 2] = p.hook;
  b.set(prefix, tlv(Nfula.PREFIX, prefix.length));
  if (p.inIndex) b.writeUInt32BE(p.inIndex, tlv(Nfula.IFINDEX_INDEV, 4));
  if (p.outIndex) b.writeUInt32BE(p.outIndex, tlv(Nfula.IFINDEX_OUTDEV, 4));
  if (p.mark) b.writeUInt32BE(p.mark >>> 0, tlv(Nfula.MARK, 4));
  if (hw) {
    at = tlv(Nfula.HWADDR, 12);
    b.writeUInt16BE(6, at);
    b.set(hw.subarray(6, 12), at + 4);
    b.writeUInt16BE(ARPHRD_ETHER, tlv(Nfula.HWTYPE, 2));
    b.writeUInt16BE(hw.length, tlv(Nfula.HWLEN, 2));
    b.set(hw, tlv(Nfula.HWHEADER, hw.length));
  }
  at = tlv(Nfula.TIMESTAMP, 16);
  b.writeBigUInt64BE(BigInt(p.sec), at);
  b.writeBigUInt64BE(BigInt(p.usec), at + 8);
  b.set(p.data, tlv(Nfula.PAYLOAD, p.data.length));
  return b;
}

// pcapng blocks (all little-endian; lengths include the block's own 12 bytes).

function block(type: number, body: Buffer): Buffer {
  const len = 12 + body.length;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(len, 4);
  body.copy(b, 8);
  b.writeUInt32LE(len, len - 4);
  return b;
}

/** Options: [code, value] pairs then opt_endofopt; empty list = no options at all. */
function options(opts: readonly (readonly [number, Buffer])[]): Buffer {
  if (opts.length === 0) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  for (const [code, value] of opts) {
    const h = Buffer.alloc(4);
    h.writeUInt16LE(code, 0);
    h.writeUInt16LE(value.length, 2);
    parts.push(h, value, Buffer.alloc(pad4(value.length) - value.length));
  }
  parts.push(Buffer.alloc(4));
  return Buffer.concat(parts);
}

const OPT_COMMENT = 1;
const SHB_USERAPPL = 4;
const IF_NAME = 2;

/** Section Header Block (byte-order magic, version 1.0, section length unknown). */
export function pcapngSectionHeader(userAppl = 'xtr nflog'): Buffer {
  const fixed = Buffer.alloc(16);
  fixed.writeUInt32LE(0x1a2b3c4d, 0);
  fixed.writeUInt16LE(1, 4);
  fixed.writeUInt16LE(0, 6);
  fixed.writeBigInt64LE(-1n, 8);
  return block(0x0a0d0d0a, Buffer.concat([fixed, options([[SHB_USERAPPL, Buffer.from(userAppl)]])]));
}

/** Interface Description Block; timestamps in microseconds (the default if_tsresol). */
export function pcapngInterface(linktype: number, name: string, snaplen = DEFAULT_SNAPLEN): Buffer {
  const fixed = Buffer.alloc(8);
  fixed.writeUInt16LE(linktype, 0);
  fixed.writeUInt32LE(snaplen, 4);
  return block(1, Buffer.concat([fixed, options([[IF_NAME, Buffer.from(name)]])]));
}

/** Enhanced Packet Block on interface 0, with opt_comment when `comment` is not empty. */
export function pcapngPacket(sec: number, usec: number, data: Uint8Array, origLen: number, comment: string): Buffer {
  const ts = BigInt(sec) * 1_000_000n + BigInt(usec);
  const fixed = Buffer.alloc(20);
  fixed.writeUInt32LE(0, 0);
  fixed.writeUInt32LE(Number(ts >> 32n), 4);
  fixed.writeUInt32LE(Number(ts & 0xffffffffn), 8);
  fixed.writeUInt32LE(data.length, 12);
  fixed.writeUInt32LE(Math.max(origLen, data.length), 16);
  const padded = Buffer.alloc(pad4(data.length));
  padded.set(data, 0);
  return block(6, Buffer.concat([fixed, padded, options(comment ? [[OPT_COMMENT, Buffer.from(comment)]] : [])]));
}

/** What one logged packet becomes in a file of `linktype`: the data and the original length. */
export function packetFor(linktype: number, p: LoggedPacket): { data: Uint8Array; origLen: number } {
  if (linktype === LINKTYPE_NFLOG) {
    const m = nflogMessage(p);
    return { data: m, origLen: m.length };
  }
  return { data: p.data, origLen: p.length };
}
