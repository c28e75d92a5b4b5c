/**
 * `-j ECHO` (IPv4 and IPv6), as xtables-addons' libxt_ECHO + xt_ECHO (v2.11
 * and later): RFC 862 echo at the firewall. The UDP payload goes back to its
 * sender in a new datagram, the original is dropped.
 *
 * The reply: a 20-byte IPv4 header (options not copied; TOS and ID copied,
 * DF clear, TTL from the route back) or a 40-byte IPv6 header (traffic class
 * and flow label copied, no extension headers, hop limit from the route);
 * addresses and ports swapped, the UDP length copied, the UDP checksum
 * computed afresh over the pseudo-header. The UDP length field, not the IP
 * length, says how much payload there is.
 *
 * No reply (the datagram is still dropped) for: a non-first fragment (no UDP
 * header), a UDP length of 8 or less (empty payload), a UDP length claiming
 * more bytes than the packet holds (upstream reads past the packet), no route
 * back, or a reply larger than the route's MTU (never fragmented). As
 * upstream, broadcast and multicast destinations are not filtered.
 *
 * Deviation (docs/compat.md, ECHO): a checksum that computes to 0 is sent as
 * 0xffff (RFC 768; an IPv6 receiver discards a zero UDP checksum), where
 * upstream sends 0.
 *
 * The reply is built in one preallocated buffer and sent by services.emit
 * attached to the datagram's flow (nf_ct_attach), so it crosses
 * OUTPUT/POSTROUTING as RELATED in the flow's reply direction, as the
 * kernel's reply does.
 */
import { Verdict, type PacketContext } from '../xt/packet.js';
import type { TargetExtension } from '../xt/extension.js';
import type { RouterServices } from '../xt/services.js';
import { getU16, getU32, setU16, setU32 } from '../dataplane/bytes.js';
import { finish, pseudoSum4, pseudoSum6Words, sum16 } from '../dataplane/checksum.js';
import { writeIpv4Header, writeIpv6Header } from '../dataplane/build.js';

const UDP_HEADER = 8;
const PROTO_UDP = 17;

/** Largest reply: an IPv6 header + the largest UDP length field. emit() copies it. */
const out = Buffer.alloc(40 + 0xffff);
/** The IPv4 destination of route(), as a word. */
const dst4 = new Uint32Array(1);

/**
 * Builds ECHO's reply to the datagram in pkt into `into` at 0; returns its
 * length, or 0 when nothing is sent. `services` answers the route back (TTL /
 * hop limit and MTU).
 */
export function buildEchoReply(into: Buffer, pkt: PacketContext, services: RouterServices): number {
  if (pkt.proto !== PROTO_UDP || pkt.fragmentOffset !== 0 || pkt.l4len < UDP_HEADER) return 0;
  const b = pkt.buf;
  const u = pkt.l4off;
  const udpLen = getU16(b, u + 4);
  if (udpLen <= UDP_HEADER || udpLen > pkt.l4len) return 0;
  let route;
  if (pkt.family === 4) {
    dst4[0] = pkt.src4;
    route = services.route(4, dst4);
  } else {
    route = services.route(6, pkt.src6);
  }
  if (route === null) return 0;
  const ipLen = pkt.family === 4 ? 20 : 40;
  const total = ipLen + udpLen;
  if (route.mtu > 0 && total > route.mtu) return 0;
  let sum: number;
  if (pkt.family === 4) {
    const l3 = pkt.l3off;
    writeIpv4Header(into, 0, b[l3 + 1], total, getU16(b, l3 + 4), 0, route.hopLimit, PROTO_UDP, pkt.dst4, pkt.src4);
    sum = pseudoSum4(pkt.dst4, pkt.src4, PROTO_UDP, udpLen);
  } else {
    writeIpv6Header(into, 0, udpLen, PROTO_UDP, route.hopLimit, pkt.dst6, pkt.src6);
    // Version 6 with the datagram's traffic class and flow label.
    setU32(into, 0, (0x60000000 | (getU32(b, pkt.l3off) & 0x0fffffff)) >>> 0);
    sum = pseudoSum6Words(pkt.dst6, pkt.src6, PROTO_UDP, udpLen);
  }
  const o = ipLen;
  setU16(into, o, getU16(b, u + 2));
  setU16(into, o + 2, getU16(b, u));
  setU16(into, o + 4, udpLen);
  setU16(into, o + 6, 0);
  b.copy(into, o + UDP_HEADER, u + UDP_HEADER, u + udpLen);
  const check = finish(sum16(into, o, udpLen, sum));
  setU16(into, o + 6, check === 0 ? 0xffff : check);
  return total;
}

const ECHO: TargetExtension<null> = {
  kind: 'target',
  name: 'ECHO',
  families: [4, 6],
  tables: ['filter'],
  proto: PROTO_UDP,
  options: [],
  swallowsUnknownOptions: true,
  parse() {
    return null;
  },
  check(_p, env) {
    const services = env.services;
    return {
      target(pkt: PacketContext): number {
        const n = buildEchoReply(out, pkt, services);
        if (n > 0) services.emit(out, 0, n, { family: pkt.family, ctFrom: pkt });
        return Verdict.DROP;
      },
    };
  },
  save() {
    return '';
  },
};

export default ECHO;
