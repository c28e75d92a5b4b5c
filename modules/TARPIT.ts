/**
 * `-j TARPIT [--tarpit | --honeypot | --reset]` (IPv4 and IPv6), as
 * xtables-addons' libxt_TARPIT + xt_TARPIT: hold TCP connections open with
 * no state of our own by answering each segment with a crafted one, then
 * DROP the segment.
 *
 *  - `--tarpit` (default): a SYN gets a SYN/ACK with window 5; every later
 *    ACK gets an ACK of window 0 that never acknowledges data, so the peer
 *    probes a zero window until it gives up. FIN, RST and segments with
 *    neither SYN nor ACK get nothing.
 *  - `--honeypot`: plays along (random ISN, the peer's window randomly
 *    trimmed, data acknowledged when more than 100 bytes came), TTL 128,
 *    the IP ID negated; a FIN ends it with a RST.
 *  - `--reset`: a RST (seq = their ack, ack field = their seq) for every
 *    segment, RSTs included.
 *
 * Stateless by construction: every reply field comes from the segment it
 * answers (and random() in honeypot mode); nothing is remembered per
 * connection. The reply is built in one preallocated buffer and sent with
 * services.emit attached to the segment's flow (nf_ct_attach), so it crosses
 * OUTPUT/POSTROUTING as the kernel's ip_local_out does.
 *
 * Pre-checks before any reply (the segment is dropped all the same): a
 * frame not addressed to this host (link-layer broadcast/multicast), a
 * broadcast/multicast destination, IPv4 options, a fragment (other than
 * offset 0 with nothing after it), a header shorter than 20+20, a bad TCP
 * checksum; for IPv6 any extension header, a non-unicast source or
 * destination.
 *
 * IPv6 follows the IPv4 tables (the man page's promise); upstream's IPv6
 * path passes the headers to the mode logic swapped and sends nothing or
 * flagless segments (docs/compat.md, TARPIT).
 */
import { Hook, Verdict, type PacketContext } from '../xt/packet.js';
import type { RouterServices } from '../xt/services.js';
import { XtError, type TargetExtension } from '../xt/extension.js';
import { getU16, getU32, setU16, setU32 } from '../dataplane/bytes.js';
import { finish, pseudoSum4, pseudoSum6Words, sum16 } from '../dataplane/checksum.js';
import { DEFAULT_TTL, writeIpv4Header, writeIpv6Header } from '../dataplane/build.js';
import { isIpv6Multicast } from '../dataplane/ipv6.js';
import { IPV4_FLAG_DF } from '../dataplane/ipv4.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../dataplane/tcp.js';
import { l4ChecksumGood } from './lib/l4-checksum.js';

/** The variant byte of xt_tarpit_tginfo (also what CHAOS passes). */
export const enum TarpitMode {
  TARPIT = 0,
  HONEYPOT = 1,
  RESET = 2,
}
const MODE_NAMES = ['tarpit', 'honeypot', 'reset'] as const;

export interface TarpitParams {
  mode: TarpitMode;
}

/** Honeypot's magic ack/seq, 0xDEADBEEF stored in host order: on x86 the wire carries EF BE AD DE. */
export const HONEYPOT_MAGIC_WIRE = 0xefbeadde;
/** Honeypot replies leave with this TTL / hop limit (a "Windows-like" peer). */
export const HONEYPOT_TTL = 128;

const swap16 = (v: number) => ((v & 0xff) << 8) | ((v >>> 8) & 0xff);

/**
 * The reply's TCP fields, decided by the mode from the incoming segment.
 * Module-level scratch: the packet path allocates nothing.
 */
const reply = { flags: 0, seq: 0, ack: 0, win: 0 };

/**
 * Fills `reply` for the incoming flags/seq/ack/window/payload in `mode`
 * (the facts sheet's tables, IPv4 and IPv6 alike). Returns false where the
 * mode sends nothing.
 */
export function tarpitDecide(mode: TarpitMode, oflags: number, S: number, A: number, W: number, payload: number, rng: { random(): number }): boolean {
  const syn = (oflags & TCP_SYN) !== 0;
  const ack = (oflags & TCP_ACK) !== 0;
  const fin = (oflags & TCP_FIN) !== 0;
  const rst = (oflags & TCP_RST) !== 0;
  // Fields a mode leaves alone keep the incoming values (the reply starts as a copy).
  reply.flags = 0;
  reply.seq = S;
  reply.ack = A;
  reply.win = W;
  if (mode === TarpitMode.TARPIT) {
    if (rst || fin || (!syn && !ack)) return false;
    reply.seq = ack ? A : 0;
    reply.win = syn && !ack ? 5 : 0;
    if (syn && ack) {
      reply.flags = TCP_RST;
      reply.ack = 0;
    } else {
      reply.flags = (syn ? TCP_SYN : 0) | TCP_ACK;
      reply.ack = (S + (syn ? 1 : 0)) >>> 0;
    }
    return true;
  }
  if (mode === TarpitMode.RESET) {
    reply.flags = TCP_RST;
    reply.seq = A;
    reply.ack = S;
    reply.win = 0;
    return true;
  }
  // Honeypot: the four cases in order, a later one overwriting an earlier one.
  if (rst || S === HONEYPOT_MAGIC_WIRE) return false;
  if (syn && ack) {
    reply.flags = TCP_RST | TCP_PSH;
    reply.seq = A;
    reply.ack = HONEYPOT_MAGIC_WIRE;
    reply.win = 0;
  }
  if (syn && !ack) {
    reply.flags = TCP_SYN | TCP_ACK;
    reply.seq = rng.random() >>> 0;
    reply.ack = (S + 1) >>> 0;
    reply.win = W & windowMask(rng);
  }
  if (ack && !syn && !fin) {
    reply.flags = TCP_ACK;
    reply.seq = A;
    reply.ack = payload > 100 ? (S + payload) >>> 0 : S;
    reply.win = W & windowMask(rng);
  }
  if (fin) {
    reply.flags = (reply.flags & ~(TCP_FIN | TCP_ACK)) | TCP_RST;
    reply.seq = A;
    reply.ack = A;
    reply.win = 0;
  }
  return true;
}

/**
 * "The peer's window, randomly trimmed": upstream ANDs (r - 15), r in 0..31,
 * onto the window as stored in memory; on the little-endian hosts it runs on
 * the wire mask is that value byte-swapped (0xF1FF..0xFFFF, 0, 0x0100..0x1000).
 */
function windowMask(rng: { random(): number }): number {
  const r = rng.random() & 31;
  return swap16((r - 15) & 0xffff);
}

/** Whether the IPv4 destination is a broadcast for one of the interface's subnets. */
function subnetBroadcast(services: RouterServices, name: string | undefined, dst: number): boolean {
  if (name === undefined) return false;
  const f = services.iface(name);
  if (f === null) return false;
  for (let i = 0; i < f.addrs4.length; i++) {
    const len = f.prefixes4[i];
    if (len >= 31) continue;
    const host = len === 0 ? 0xffffffff : (1 << (32 - len)) - 1;
    if ((f.addrs4[i] | host) >>> 0 === dst) return true;
  }
  return false;
}

/** Whether the frame came in addressed to a group (PACKET_BROADCAST/MULTICAST, not PACKET_HOST). */
export function notToThisHost(pkt: PacketContext): boolean {
  return pkt.l2off >= 0 && (pkt.buf[pkt.l2off] & 1) !== 0;
}

/** IPv6 unicast in ipv6_addr_type's sense: not multicast, not the unspecified address. */
export function ipv6Unicast(w: Uint32Array): boolean {
  return !isIpv6Multicast(w) && (w[0] | w[1] | w[2] | w[3]) !== 0;
}

/**
 * Builds the reply to the segment in pkt into out[0..] and returns its length,
 * or 0 when a pre-check fails or the mode sends nothing.
 */
export function buildTarpitReply(out: Uint8Array, pkt: PacketContext, mode: TarpitMode, services: RouterServices): number {
  if (pkt.proto !== 6 || pkt.isFragment || notToThisHost(pkt)) return 0;
  const b = pkt.buf;
  const l3 = pkt.l3off;
  const t = pkt.l4off;
  const tl = pkt.l4len;
  let payload: number;
  if (pkt.family === 4) {
    const dst = pkt.dst4;
    if (dst >>> 28 >= 0xe) return 0; // multicast, class E, 255.255.255.255
    if ((b[l3] & 0x0f) !== 5) return 0; // IPv4 options
    if (pkt.l3len < 40) return 0;
    if (subnetBroadcast(services, pkt.inIf?.name, dst) || subnetBroadcast(services, pkt.outIf?.name, dst)) return 0;
    if (!l4ChecksumGood(pkt)) return 0;
    // Upstream subtracts a fixed 20 for the TCP header, so TCP options count as payload.
    payload = pkt.l3len - 40;
  } else {
    if (t !== l3 + 40 || b[l3 + 6] !== 6) return 0; // TCP must follow the fixed header
    if (!ipv6Unicast(pkt.src6) || !ipv6Unicast(pkt.dst6)) return 0;
    if (tl < 20) return 0;
    if (!l4ChecksumGood(pkt)) return 0;
    payload = tl - 20;
  }
  const oflags = b[t + 13];
  if (!tarpitDecide(mode, oflags, getU32(b, t + 4), getU32(b, t + 8), getU16(b, t + 14), payload, services)) return 0;
  const honeypot = mode === TarpitMode.HONEYPOT;
  const ttl = honeypot ? HONEYPOT_TTL : DEFAULT_TTL;
  let o: number;
  let sum: number;
  if (pkt.family === 4) {
    // Honeypot negates the ID as a host-order (little-endian) number.
    const id = honeypot ? swap16(-swap16(getU16(b, l3 + 4)) & 0xffff) : 0;
    writeIpv4Header(out, 0, b[l3 + 1], 40, id, IPV4_FLAG_DF, ttl, 6, pkt.dst4, pkt.src4);
    sum = pseudoSum4(pkt.dst4, pkt.src4, 6, 20);
    o = 20;
  } else {
    writeIpv6Header(out, 0, 20, 6, ttl, pkt.dst6, pkt.src6);
    sum = pseudoSum6Words(pkt.dst6, pkt.src6, 6, 20);
    o = 40;
  }
  setU16(out, o, getU16(b, t + 2));
  setU16(out, o + 2, getU16(b, t));
  setU32(out, o + 4, reply.seq);
  setU32(out, o + 8, reply.ack);
  out[o + 12] = 0x50 | (b[t + 12] & 0x0f); // data offset 5; the reserved/NS bits as received
  out[o + 13] = reply.flags;
  setU16(out, o + 14, reply.win);
  setU16(out, o + 16, 0);
  setU16(out, o + 18, 0);
  setU16(out, o + 16, finish(sum16(out, o, 20, sum)));
  return o + 20;
}

/** One reply at a time: emit() copies it. */
const out = new Uint8Array(60);

const TARPIT: TargetExtension<TarpitParams> = {
  kind: 'target',
  name: 'TARPIT',
  families: [4, 6],
  hooks: [Hook.INPUT, Hook.FORWARD],
  proto: 6,
  // libxt_TARPIT's old-style parser ignores `!` and repeats; only all three together are refused.
  options: [
    { name: 'tarpit', arg: 'none', invertible: true },
    { name: 'honeypot', arg: 'none', invertible: true },
    { name: 'reset', arg: 'none', invertible: true },
  ],
  parse(opts) {
    let mode = TarpitMode.TARPIT;
    let seen = 0;
    for (const o of opts) {
      const m = MODE_NAMES.indexOf(o.name as (typeof MODE_NAMES)[number]) as TarpitMode;
      mode = m; // the last one given wins
      seen |= 1 << m;
    }
    if (seen === 7) throw new XtError('TARPIT: only one action can be used at a time');
    return { mode };
  },
  check(p, env) {
    const services = env.services;
    const mode = p.mode;
    return {
      target(pkt: PacketContext): number {
        const n = buildTarpitReply(out, pkt, mode, services);
        if (n > 0) services.emit(out, 0, n, { family: pkt.family, ctFrom: pkt });
        return Verdict.DROP;
      },
    };
  },
  save(p) {
    return ` --${MODE_NAMES[p.mode]} `;
  },
  print(p) {
    return ` -j TARPIT --${MODE_NAMES[p.mode]} `;
  },
};

export default TARPIT;
