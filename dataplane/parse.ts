/**
 * One pass over a received packet that validates it the way the kernel's
 * ip_rcv / ipv6_rcv (and the transport header pulls of the netfilter
 * matches) would, and fills the PacketContext the pipeline reads.
 *
 * Contract:
 *  - never throws, never allocates, for any bytes and any (l3off, len);
 *  - returns DropReason.NONE (0) for a packet the pipeline may see, else the
 *    reason the kernel would have dropped it;
 *  - bytes after the IPv4 total length / IPv6 payload length are link
 *    padding: l3len is the length from the header, not `len`;
 *  - the transport header is read only for unfragmented packets and first
 *    fragments; its truncation is a drop only for unfragmented packets
 *    (a first fragment too short for ports simply has ports 0).
 *
 * The L4 checksum is not verified here: a forwarding kernel does not drop on
 * it either (conntrack may mark the packet INVALID; that is conntrack's job).
 */
import type { PacketContext } from '../xt/packet.js';
import { type Bytes, getU16, getU32, getWords128, getU48 } from './bytes.js';
import { verifies } from './checksum.js';
import { DropReason } from './drop.js';
import { ETH_HLEN } from './ethernet.js';
import { IPV6_HLEN, Ipv6ExtInfo, walkIpv6Ext } from './ipv6.js';

export { DropReason, DROP_REASON_NAMES, DROP_REASON_COUNT } from './drop.js';

const IP_MAX_LEN = 65535;

/**
 * Scratch for the IPv6 extension-header walk (one per process: parsePacket
 * never re-enters). Private: what callers need of it is copied into ctx.
 */
const ipv6Ext = new Ipv6ExtInfo();

/**
 * Parses the IP packet at buf[l3off, l3off+len) into ctx (buf, l3off,
 * l3len, family, proto, l4off, l4len, fragment fields and fragHdrOff,
 * addresses, ports, tcpFlags, icmpType/Code, ttl). Returns 0 or a DropReason.
 */
export function parsePacket(ctx: PacketContext, buf: Buffer, l3off: number, len: number): number {
  ctx.buf = buf;
  ctx.l3off = l3off;
  ctx.l3len = 0;
  ctx.proto = 0;
  ctx.l4off = l3off;
  ctx.l4len = 0;
  ctx.fragmentOffset = 0;
  ctx.isFragment = false;
  ctx.fragHdrOff = -1;
  ctx.sport = 0;
  ctx.dport = 0;
  ctx.tcpFlags = 0;
  ctx.icmpType = -1;
  ctx.icmpCode = -1;
  ctx.ttl = 0;
  // Clip to the buffer so a wrong length from a caller cannot read past it.
  if (l3off < 0 || len <= 0 || l3off >= buf.length) return DropReason.TRUNCATED_HEADER;
  if (len > buf.length - l3off) len = buf.length - l3off;
  const version = buf[l3off] >> 4;
  if (version === 4) return parse4(ctx, buf, l3off, len);
  if (version === 6) return parse6(ctx, buf, l3off, len);
  return DropReason.BAD_VERSION;
}

function parse4(ctx: PacketContext, b: Bytes, o: number, len: number): number {
  ctx.family = 4;
  if (len < 20) return DropReason.TRUNCATED_HEADER;
  const hlen = (b[o] & 0x0f) << 2;
  if (hlen < 20 || hlen > len) return DropReason.BAD_IHL;
  const total = getU16(b, o + 2);
  if (total > len || total < hlen) return DropReason.BAD_TOTAL_LENGTH;
  if (!verifies(b, o, hlen)) return DropReason.BAD_IP_CHECKSUM;
  const ff = getU16(b, o + 6);
  const fragOff = ff & 0x1fff;
  ctx.l3len = total;
  ctx.ttl = b[o + 8];
  ctx.proto = b[o + 9];
  // Read inline: a getU32 result >= 2^30 crossing a non-inlined call is a boxed number (an allocation).
  ctx.src4 = ((b[o + 12] << 24) | (b[o + 13] << 16) | (b[o + 14] << 8) | b[o + 15]) >>> 0;
  ctx.dst4 = ((b[o + 16] << 24) | (b[o + 17] << 16) | (b[o + 18] << 8) | b[o + 19]) >>> 0;
  ctx.fragmentOffset = fragOff;
  ctx.isFragment = (ff & 0x3fff) !== 0;
  ctx.l4off = o + hlen;
  ctx.l4len = total - hlen;
  if (fragOff * 8 + total > IP_MAX_LEN) return DropReason.BAD_FRAGMENT;
  if (fragOff !== 0) return DropReason.NONE;
  return parseTransport(ctx, b, 4);
}

function parse6(ctx: PacketContext, b: Bytes, o: number, len: number): number {
  ctx.family = 6;
  if (len < IPV6_HLEN) return DropReason.TRUNCATED_HEADER;
  const total = IPV6_HLEN + getU16(b, o + 4);
  if (total > len) return DropReason.BAD_TOTAL_LENGTH;
  ctx.l3len = total;
  ctx.ttl = b[o + 7];
  getWords128(b, o + 8, ctx.src6);
  getWords128(b, o + 24, ctx.dst6);
  const ext = ipv6Ext;
  walkIpv6Ext(b, o, total, ext);
  if (ext.overflow) return DropReason.EXT_HEADER_OVERFLOW;
  if (ext.hopByHopMisplaced) return DropReason.BAD_EXT_HEADER_ORDER;
  ctx.proto = ext.upperProto;
  ctx.l4off = ext.upperOffset;
  ctx.l4len = o + total - ext.upperOffset;
  ctx.fragmentOffset = ext.fragmentOffset;
  ctx.isFragment = ext.isFragment;
  if (ext.hasFragmentHeader) {
    ctx.fragHdrOff = ext.fragmentHeaderOffset;
    // ipv6_frag_rcv: fragmentable part beyond 64 KiB, or a non-last fragment not a multiple of 8.
    const fragData = o + total - (ext.fragmentHeaderOffset + 8);
    if (ext.fragmentOffset * 8 + fragData > IP_MAX_LEN) return DropReason.BAD_FRAGMENT;
    if (ext.moreFragments && (fragData & 7) !== 0) return DropReason.BAD_FRAGMENT;
  }
  if (ext.fragmentOffset !== 0) return DropReason.NONE;
  return parseTransport(ctx, b, 6);
}

function parseTransport(ctx: PacketContext, b: Bytes, family: 4 | 6): number {
  const o = ctx.l4off;
  const l = ctx.l4len;
  const strict = !ctx.isFragment;
  switch (ctx.proto) {
    case 6: {
      if (l < 20) return strict ? DropReason.TRUNCATED_TRANSPORT : readPorts(ctx, b, o, l);
      const doff = (b[o + 12] >> 4) << 2;
      if (strict && (doff < 20 || doff > l)) return DropReason.BAD_TCP_DATA_OFFSET;
      ctx.sport = getU16(b, o);
      ctx.dport = getU16(b, o + 2);
      ctx.tcpFlags = b[o + 13];
      return DropReason.NONE;
    }
    case 17: {
      if (l < 8) return strict ? DropReason.TRUNCATED_TRANSPORT : readPorts(ctx, b, o, l);
      const ulen = getU16(b, o + 4);
      // An IPv6 jumbogram would carry 0 here; jumbograms are not supported (see ipv6.ts).
      if (strict && (ulen < 8 || ulen > l)) return DropReason.BAD_UDP_LENGTH;
      ctx.sport = getU16(b, o);
      ctx.dport = getU16(b, o + 2);
      return DropReason.NONE;
    }
    case 1:
    case 58: {
      if ((ctx.proto === 1) !== (family === 4)) return DropReason.NONE;
      if (l < 8) {
        if (strict) return DropReason.TRUNCATED_TRANSPORT;
        if (l < 2) return DropReason.NONE;
      }
      ctx.icmpType = b[o];
      ctx.icmpCode = b[o + 1];
      return DropReason.NONE;
    }
    case 136: // UDP-Lite: 8-byte header
      return needPorts(ctx, b, o, l, 8, strict);
    case 132: // SCTP common header
    case 33: // DCCP generic header (short sequence numbers)
      return needPorts(ctx, b, o, l, 12, strict);
    default:
      return DropReason.NONE;
  }
}

function needPorts(ctx: PacketContext, b: Bytes, o: number, l: number, min: number, strict: boolean): number {
  if (l < min && strict) return DropReason.TRUNCATED_TRANSPORT;
  return readPorts(ctx, b, o, l);
}

function readPorts(ctx: PacketContext, b: Bytes, o: number, l: number): number {
  if (l >= 4) {
    ctx.sport = getU16(b, o);
    ctx.dport = getU16(b, o + 2);
  }
  return DropReason.NONE;
}

/** Result of parseEthernet; one instance reused per processing loop. */
export class L2Info {
  dst = 0;
  src = 0;
  ethertype = 0;
  /** Absolute offset and length of the L3 packet (the Ethernet payload, padding included). */
  l3off = 0;
  l3len = 0;
}

/**
 * Reads the Ethernet header of a TAP frame at buf[off, off+len). Returns 0
 * and fills `out`, or TRUNCATED_FRAME. 802.1Q tags are not stripped: a
 * tagged frame reports ethertype 0x8100.
 */
export function parseEthernet(out: L2Info, buf: Bytes, off: number, len: number): number {
  if (off < 0 || len < ETH_HLEN || off + ETH_HLEN > buf.length) return DropReason.TRUNCATED_FRAME;
  out.dst = getU48(buf, off);
  out.src = getU48(buf, off + 6);
  out.ethertype = getU16(buf, off + 12);
  out.l3off = off + ETH_HLEN;
  out.l3len = Math.min(len, buf.length - off) - ETH_HLEN;
  return DropReason.NONE;
}
