/**
 * ICMP and ICMPv6 in conntrack (the kernel's nf_conntrack_proto_icmp/icmpv6):
 * queries and their replies are flows of their own, keyed by id and
 * type/code; errors are never flows, they are RELATED to the flow their
 * quoted header belongs to (or INVALID); neighbour discovery and MLD are
 * never tracked.
 *
 * Nothing here touches the table: quotedKey() turns an error's quoted
 * header into the lookup key, the table looks it up.
 */
import type { Family, PacketContext } from '../../xt/packet.js';
import { getU16, getU32 } from '../../dataplane/bytes.js';
import { P_ICMP, P_ICMPV6, hasPorts, type CtKey } from './entry.js';

/** ICMP request type → reply type (v4 and v6); also tells which types may open a flow. */
const ICMP4_REPLY = new Int16Array(256).fill(-1);
ICMP4_REPLY[8] = 0;
ICMP4_REPLY[13] = 14;
ICMP4_REPLY[15] = 16;
ICMP4_REPLY[17] = 18;
const ICMP6_REPLY = new Int16Array(256).fill(-1);
ICMP6_REPLY[128] = 129;
ICMP6_REPLY[139] = 140;
/**
 * Query type <-> its counterpart, both ways (the kernel's invmap): inverting
 * a quoted query's tuple. Other types have none, so an error quoting them
 * (an error about an error) is related to nothing.
 */
const ICMP4_INVERSE = new Int16Array(256).fill(-1);
const ICMP6_INVERSE = new Int16Array(256).fill(-1);
for (const [a, b] of [[8, 0], [13, 14], [15, 16], [17, 18]]) {
  ICMP4_INVERSE[a] = b;
  ICMP4_INVERSE[b] = a;
}
for (const [a, b] of [[128, 129], [139, 140]]) {
  ICMP6_INVERSE[a] = b;
  ICMP6_INVERSE[b] = a;
}
/** ICMPv6 neighbour discovery and MLD: never tracked (the kernel marks them UNTRACKED). */
const ICMP6_NOTRACK = new Uint8Array(256);
for (const t of [130, 131, 132, 133, 134, 135, 136, 137, 143]) ICMP6_NOTRACK[t] = 1;

/** ICMPv4 error types (destination unreachable, source quench, redirect, time exceeded, parameter problem). */
export function icmp4IsError(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

/** ICMPv6 types below 128 are errors. */
export function icmp6IsError(type: number): boolean {
  return type < 128;
}

/** ICMPv6 neighbour discovery and MLD types, which the kernel leaves UNTRACKED. */
export function icmp6Untracked(type: number): boolean {
  return ICMP6_NOTRACK[type] === 1;
}

/** The reply type of an ICMP query of `family` (which may then open a flow), or -1. */
export function icmpReplyType(family: Family, type: number): number {
  return (family === 4 ? ICMP4_REPLY : ICMP6_REPLY)[type];
}

/**
 * Fills `key` with the inverse of the tuple of the packet an ICMP/ICMPv6
 * error quotes, i.e. the tuple of the direction the error travels in (as
 * nf_conntrack_inet_error inverts the inner tuple): under NAT the quoted
 * packet carries translated addresses, and its inverse is the entry's
 * reply tuple, which holds them. The tuple found then gives the error's
 * direction. False when the quote is too short, a later fragment, or
 * itself an error (or another type without an inverse): such an error is
 * related to nothing.
 */
export function quotedKey(pkt: PacketContext, key: CtKey): boolean {
  const b = pkt.buf;
  const inner = pkt.l4off + 8;
  const end = pkt.l4off + pkt.l4len;
  let il4: number;
  let iproto: number;
  key.family = pkt.family;
  if (pkt.family === 4) {
    if (end - inner < 20 || b[inner] >> 4 !== 4) return false;
    const ihl = (b[inner] & 15) * 4;
    if (ihl < 20) return false;
    iproto = b[inner + 9];
    key.src.fill(0);
    key.dst.fill(0);
    key.dst[0] = getU32(b, inner + 12);
    key.src[0] = getU32(b, inner + 16);
    if ((getU16(b, inner + 6) & 0x1fff) !== 0) return false;
    il4 = inner + ihl;
  } else {
    if (end - inner < 40 || b[inner] >> 4 !== 6) return false;
    for (let i = 0; i < 4; i++) {
      key.dst[i] = getU32(b, inner + 8 + 4 * i);
      key.src[i] = getU32(b, inner + 24 + 4 * i);
    }
    iproto = b[inner + 6];
    il4 = inner + 40;
    // Skip the quoted packet's extension headers to reach its ports.
    for (let hops = 0; hops < 8; hops++) {
      if (iproto === 0 || iproto === 43 || iproto === 60) {
        if (end - il4 < 8) return false;
        iproto = b[il4];
        il4 += (b[il4 + 1] + 1) * 8;
      } else if (iproto === 44) {
        if (end - il4 < 8 || (getU16(b, il4 + 2) & 0xfff8) !== 0) return false;
        iproto = b[il4];
        il4 += 8;
      } else if (iproto === 51) {
        if (end - il4 < 8) return false;
        iproto = b[il4];
        il4 += (b[il4 + 1] + 2) * 4;
      } else break;
    }
  }
  key.proto = iproto;
  const avail = end - il4;
  if (hasPorts(iproto)) {
    if (avail < 4) return false;
    key.dport = getU16(b, il4);
    key.sport = getU16(b, il4 + 2);
  } else if ((iproto === P_ICMP && pkt.family === 4) || (iproto === P_ICMPV6 && pkt.family === 6)) {
    if (avail < 8) return false;
    const inverse = (pkt.family === 4 ? ICMP4_INVERSE : ICMP6_INVERSE)[b[il4]];
    if (inverse < 0) return false;
    key.sport = getU16(b, il4 + 4);
    key.dport = (inverse << 8) | b[il4 + 1];
  } else {
    key.sport = 0;
    key.dport = 0;
  }
  return true;
}
