/**
 * `-j REJECT [--reject-with TYPE]` (IPv4 and IPv6), as libipt_REJECT /
 * libip6t_REJECT + the kernel's nf_reject: answer with an ICMP/ICMPv6
 * destination-unreachable (or a TCP RST for tcp-reset) built like the
 * kernel builds it, send it through OUTPUT, and DROP the packet.
 *
 * The answer's source: for INPUT and OUTPUT the offending packet's
 * destination (what icmp_send picks for a local destination); for FORWARD
 * the incoming interface's ICMP source address when the router exposes one
 * (RouterInterface.icmpSource4/6), else the packet's destination too.
 * Like the kernel, nothing is sent for a non-first fragment, a TCP/UDP
 * packet with a bad checksum, an ICMP error, or a multicast/broadcast
 * address, and ICMP errors (not RSTs) are rate-limited per destination host
 * as icmp_send does (inet_peer token bucket: icmp_ratelimit 1 s, burst 6).
 */
import { Hook, Verdict, type Family, type PacketContext } from '../xt/packet.js';
import { buildIcmp4Error, buildIcmp6Error, buildTcpReset, mayReplyWithIcmpError } from '../dataplane/build.js';
import { fold, pseudoSum4, pseudoSum6Words, sum16 } from '../dataplane/checksum.js';
import { getU16 } from '../dataplane/bytes.js';
import { XtError, type TargetExtension } from '../xt/extension.js';

/** [canonical name, alias, ICMP type, code]; type -1 = tcp-reset. */
type RejectType = readonly [string, string, number, number];

const TYPES4: readonly RejectType[] = [
  ['icmp-net-unreachable', 'net-unreach', 3, 0],
  ['icmp-host-unreachable', 'host-unreach', 3, 1],
  ['icmp-proto-unreachable', 'proto-unreach', 3, 2],
  ['icmp-port-unreachable', 'port-unreach', 3, 3],
  ['icmp-net-prohibited', 'net-prohib', 3, 9],
  ['icmp-host-prohibited', 'host-prohib', 3, 10],
  ['tcp-reset', 'tcp-rst', -1, 0],
  ['icmp-admin-prohibited', 'admin-prohib', 3, 13],
];
const TYPES6: readonly RejectType[] = [
  ['icmp6-no-route', 'no-route', 1, 0],
  ['icmp6-adm-prohibited', 'adm-prohibited', 1, 1],
  ['icmp6-addr-unreachable', 'addr-unreach', 1, 3],
  ['icmp6-port-unreachable', 'port-unreach', 1, 4],
  ['tcp-reset', 'tcp-reset', -1, 0],
  ['icmp6-policy-fail', 'policy-fail', 1, 5],
  ['icmp6-reject-route', 'reject-route', 1, 6],
];

/** strncasecmp's notion of case: ASCII letters only. */
function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) | 0x20));
}

/** IPv4's old "echo-reply" type and its alias, refused with a note. */
const ECHO_REPLY_NAMES = ['echo-reply', 'echoreply'];

/**
 * The first type whose name or alias starts with `v`, ignoring case, as
 * libipt_REJECT/libip6t_REJECT compare (strncasecmp over the argument's
 * length): "tcp" is tcp-reset, "ICMP-HOST" icmp-host-unreachable, and an
 * empty argument the table's first type. -1 if none.
 */
function rejectTypeIndex(table: readonly RejectType[], v: string): number {
  const lower = asciiLower(v);
  return table.findIndex(([name, alias]) => name.startsWith(lower) || alias.startsWith(lower));
}

export interface RejectParams {
  family: Family;
  /** Index into the family's type table. */
  with: number;
  /** The rule's `-p tcp` (tcp-reset needs it; checked at insert). */
  tcpRule: boolean;
}

/** Scratch for the reply: the largest ICMPv6 error (1280) fits. */
const out = Buffer.alloc(1280);
const src6 = new Uint32Array(4);

/** nf_reject_verify_csum / reject6_csum_ok: TCP and UDP must have a good checksum to earn a reply. */
function l4ChecksumOk(pkt: PacketContext): boolean {
  const proto = pkt.proto;
  if (proto !== 6 && proto !== 17) return true;
  if (pkt.isFragment) return true; // the kernel checks the reassembled datagram; a lone first fragment cannot be
  const b = pkt.buf;
  const len = pkt.l4len;
  if (proto === 17 && pkt.family === 4 && len >= 8 && getU16(b, pkt.l4off + 6) === 0) return true;
  const pseudo = pkt.family === 4 ? pseudoSum4(pkt.src4, pkt.dst4, proto, len) : pseudoSum6Words(pkt.src6, pkt.dst6, proto, len);
  return fold(sum16(b, pkt.l4off, len, pseudo)) === 0xffff;
}

/** net.ipv4.icmp_ratelimit / net.ipv6.icmp.ratelimit (ms) and the inet_peer burst factor. */
export const ICMP_RATELIMIT_MS = 1000;
const XRLIM_BURST_FACTOR = 6;
const PEER_SLOTS = 1024;

/**
 * Per-peer ICMP rate limiter (the kernel's inet_peer_xrlim_allow), in a
 * fixed direct-mapped table: a peer that collides with another starts
 * afresh, as an expired inet_peer would. Allocation-free.
 */
export class PeerRateLimiter {
  private readonly addr = new Uint32Array(PEER_SLOTS * 5);
  private readonly tokens = new Float64Array(PEER_SLOTS);
  private readonly last = new Float64Array(PEER_SLOTS);
  private readonly used = new Uint8Array(PEER_SLOTS);

  allow(family: Family, a4: number, a6: Uint32Array, now: number): boolean {
    const w0 = family === 4 ? a4 : a6[0];
    const w1 = family === 4 ? 0 : a6[1];
    const w2 = family === 4 ? 0 : a6[2];
    const w3 = family === 4 ? 0 : a6[3];
    let h = Math.imul(w0 ^ Math.imul(w1 ^ Math.imul(w2 ^ Math.imul(w3 ^ family, 0x85ebca6b), 0xc2b2ae35), 0x27d4eb2f), 0x9e3779b1);
    h = (h ^ (h >>> 16)) & (PEER_SLOTS - 1);
    const k = h * 5;
    const a = this.addr;
    if (!this.used[h] || a[k] !== family || a[k + 1] !== w0 || a[k + 2] !== w1 || a[k + 3] !== w2 || a[k + 4] !== w3) {
      // A new peer: its last refill is long past, so it starts with a full burst.
      this.used[h] = 1;
      a[k] = family;
      a[k + 1] = w0;
      a[k + 2] = w1;
      a[k + 3] = w2;
      a[k + 4] = w3;
      this.tokens[h] = 0;
      this.last[h] = now - 60_000;
    }
    let token = this.tokens[h] + (now - this.last[h]);
    this.last[h] = now;
    if (token > XRLIM_BURST_FACTOR * ICMP_RATELIMIT_MS) token = XRLIM_BURST_FACTOR * ICMP_RATELIMIT_MS;
    if (token >= ICMP_RATELIMIT_MS) {
      this.tokens[h] = token - ICMP_RATELIMIT_MS;
      return true;
    }
    this.tokens[h] = token;
    return false;
  }
}

/**
 * The limiter is shared by all REJECT rules of one engine, as the kernel's
 * inet_peer tree is per network namespace: two routers in one process (tests,
 * embedders) must not spend each other's tokens.
 */
const RATE_LIMITER_KEY = 'REJECT/icmp-ratelimit';

interface IcmpSourceCarrier {
  icmpSource4?: number;
  icmpSource6?: Uint32Array | null;
}

const REJECT: TargetExtension<RejectParams> = {
  kind: 'target',
  name: 'REJECT',
  families: [4, 6],
  tables: ['filter'],
  hooks: [Hook.INPUT, Hook.FORWARD, Hook.OUTPUT],
  options: [{ name: 'reject-with', arg: 'required' }],
  parse(opts, rule) {
    const table = rule.family === 4 ? TYPES4 : TYPES6;
    let w = 3; // icmp-port-unreachable / icmp6-port-unreachable
    let seen = false;
    for (const o of opts) {
      if (seen) throw new XtError('REJECT: option "--reject-with" can only be used once.\n');
      seen = true;
      const v = o.value ?? '';
      const i = rejectTypeIndex(table, v);
      if (i < 0) {
        // libipt_REJECT still names the type removed from Linux 2.4 (any abbreviation of it) before failing.
        const echo = rule.family === 4 && ECHO_REPLY_NAMES.some((n) => n.startsWith(asciiLower(v)));
        throw new XtError(`unknown reject type "${v}"`, 2, 'EINVAL', echo ? '--reject-with echo-reply no longer supported\n' : '');
      }
      w = i;
    }
    return { family: rule.family, with: w, tcpRule: rule.proto === 6 && !rule.protoInverted };
  },
  check(p, env) {
    const [, , type, code] = (p.family === 4 ? TYPES4 : TYPES6)[p.with];
    if (type < 0 && !p.tcpRule) {
      throw new XtError('REJECT: TCP_RESET invalid for non-tcp', 1);
    }
    const services = env.services;
    const limiter = env.state.acquire(RATE_LIMITER_KEY, () => new PeerRateLimiter());
    return {
      destroy() {
        env.state.release(RATE_LIMITER_KEY);
      },
      target(pkt: PacketContext): number {
        if (pkt.fragmentOffset !== 0) return Verdict.DROP;
        let n = 0;
        if (type < 0) {
          n = buildTcpReset(out, 0, pkt);
        } else if (mayReplyWithIcmpError(pkt, type, code) && l4ChecksumOk(pkt) && limiter.allow(pkt.family, pkt.src4, pkt.src6, pkt.now)) {
          const via = (pkt.hook === Hook.FORWARD ? pkt.inIf : null) as IcmpSourceCarrier | null;
          if (pkt.family === 4) {
            const s = via && typeof via.icmpSource4 === 'number' && via.icmpSource4 !== 0 ? via.icmpSource4 : pkt.dst4;
            n = buildIcmp4Error(out, 0, pkt, type, code, 0, s);
          } else {
            src6.set(via && via.icmpSource6 instanceof Uint32Array ? via.icmpSource6 : pkt.dst6);
            n = buildIcmp6Error(out, 0, pkt, type, code, 0, src6);
          }
        }
        if (n > 0) services.emitLocal(out, 0, n, pkt.family);
        return Verdict.DROP;
      },
    };
  },
  save(p) {
    return ` --reject-with ${(p.family === 4 ? TYPES4 : TYPES6)[p.with][0]}`;
  },
  print(p) {
    return ` reject-with ${(p.family === 4 ? TYPES4 : TYPES6)[p.with][0]}`;
  },
};

export default REJECT;
