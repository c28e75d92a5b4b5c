/**
 * `-j DELUDE` (IPv4, and IPv6 which upstream lacks), as xtables-addons'
 * libxt_DELUDE + xt_DELUDE: answer a SYN with a SYN/ACK and anything else
 * with a RST, so a half-open scanner (`nmap -sS`) sees the port open while
 * no connection can ever work; the segment itself is dropped.
 *
 * The reply (20-byte IP or 40-byte IPv6 header + 20-byte TCP header, no
 * options): ports swapped, window 0, ISN 0 for the SYN/ACK with
 * ack = seq + 1 + payload; a RST with seq = their ack when they sent ACK,
 * else seq 0 and an ACK covering SYN, FIN and payload. IPv4: TOS 0, ID 0,
 * DF. TTL / hop limit 64: upstream takes the route's unset hop-limit metric
 * and sends TTL 0 on modern kernels (docs/compat.md, DELUDE).
 *
 * No reply to a RST, a fragment, a segment shorter than 20 TCP bytes or with
 * a bad checksum, or (as every xtr deception target) to a frame addressed to
 * a group or a non-unicast address. Built in one preallocated buffer, sent
 * by services.emit attached to the segment's flow (nf_ct_attach), so it
 * crosses OUTPUT/POSTROUTING.
 */
import { Hook, Verdict, type PacketContext } from '../xt/packet.js';
import type { TargetExtension } from '../xt/extension.js';
import { getU16, getU32, setU16, setU32 } from '../dataplane/bytes.js';
import { finish, pseudoSum4, pseudoSum6Words, sum16 } from '../dataplane/checksum.js';
import { DEFAULT_TTL, writeIpv4Header, writeIpv6Header } from '../dataplane/build.js';
import { IPV4_FLAG_DF } from '../dataplane/ipv4.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../dataplane/tcp.js';
import { l4ChecksumGood } from './lib/l4-checksum.js';
import { isIpv6Multicast } from '../dataplane/ipv6.js';

/** The TTL / hop limit of DELUDE's replies (the kernel default a route metric of 0 should have meant). */
export const DELUDE_TTL = DEFAULT_TTL;

/**
 * Builds DELUDE's reply to the segment in pkt into out[0..]; returns its
 * length, or 0 when nothing is sent.
 */
export function buildDeludeReply(out: Uint8Array, pkt: PacketContext): number {
  if (pkt.proto !== 6 || pkt.isFragment) return 0;
  if (pkt.l2off >= 0 && (pkt.buf[pkt.l2off] & 1) !== 0) return 0;
  const b = pkt.buf;
  const t = pkt.l4off;
  const tl = pkt.l4len;
  if (tl < 20) return 0;
  const oflags = b[t + 13];
  if (oflags & TCP_RST) return 0;
  if (pkt.family === 4) {
    if (pkt.dst4 >>> 28 >= 0xe || pkt.src4 >>> 28 >= 0xe) return 0;
  } else {
    if (isIpv6Multicast(pkt.src6) || isIpv6Multicast(pkt.dst6)) return 0;
  }
  if (!l4ChecksumGood(pkt)) return 0;
  const S = getU32(b, t + 4);
  const A = getU32(b, t + 8);
  // Payload after the header the segment declares (a data offset beyond the segment wraps, as upstream's unsigned sum does).
  const L = tl - ((b[t + 12] >> 4) << 2);
  let flags: number;
  let seq = 0;
  let ack = 0;
  if ((oflags & (TCP_SYN | TCP_ACK | TCP_FIN)) === TCP_SYN) {
    flags = TCP_SYN | TCP_ACK;
    ack = (S + 1 + L) >>> 0;
  } else if (oflags & TCP_ACK) {
    flags = TCP_RST;
    seq = A;
  } else {
    flags = TCP_RST | TCP_ACK;
    ack = (S + (oflags & TCP_SYN ? 1 : 0) + (oflags & TCP_FIN ? 1 : 0) + L) >>> 0;
  }
  let o: number;
  let sum: number;
  if (pkt.family === 4) {
    writeIpv4Header(out, 0, 0, 40, 0, IPV4_FLAG_DF, DELUDE_TTL, 6, pkt.dst4, pkt.src4);
    sum = pseudoSum4(pkt.dst4, pkt.src4, 6, 20);
    o = 20;
  } else {
    writeIpv6Header(out, 0, 20, 6, DELUDE_TTL, pkt.dst6, pkt.src6);
    sum = pseudoSum6Words(pkt.dst6, pkt.src6, 6, 20);
    o = 40;
  }
  setU16(out, o, getU16(b, t + 2));
  setU16(out, o + 2, getU16(b, t));
  setU32(out, o + 4, seq);
  setU32(out, o + 8, ack);
  out[o + 12] = 0x50;
  out[o + 13] = flags;
  setU16(out, o + 14, 0);
  setU16(out, o + 16, 0);
  setU16(out, o + 18, 0);
  setU16(out, o + 16, finish(sum16(out, o, 20, sum)));
  return o + 20;
}

/** One reply at a time: emit() copies it. */
const out = new Uint8Array(60);

const DELUDE: TargetExtension<null> = {
  kind: 'target',
  name: 'DELUDE',
  families: [4, 6],
  tables: ['filter'],
  hooks: [Hook.INPUT, Hook.FORWARD],
  proto: 6,
  options: [],
  // libxt_DELUDE is an old-style parser with no options: iptables hands it every word it does not know.
  swallowsUnknownOptions: true,
  parse() {
    return null;
  },
  check(_p, env) {
    const services = env.services;
    return {
      target(pkt: PacketContext): number {
        const n = buildDeludeReply(out, pkt);
        if (n > 0) services.emit(out, 0, n, { family: pkt.family, ctFrom: pkt });
        return Verdict.DROP;
      },
    };
  },
  save() {
    return '';
  },
};

export default DELUDE;
