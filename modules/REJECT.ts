/**
 * `-j REJECT [--reject-with TYPE]` (IPv4 and IPv6), as libipt_REJECT /
 * libip6t_REJECT + the kernel's nf_reject: answer with an ICMP/ICMPv6
 * destination-unreachable (or a TCP RST for tcp-reset) and DROP the packet.
 *
 * The answer is the router's to send, as nf_send_unreach / nf_send_reset
 * leave it to icmp_send and ip_local_out: ICMP errors go through
 * services.icmpError (the router's one rate limiter, the source address
 * icmp_send would pick, attached to the flow as RELATED), RSTs are built here
 * and sent by services.emit with ctFrom, so both cross OUTPUT/POSTROUTING as
 * part of the rejected packet's flow (nf_ct_attach: RELATED, reply
 * direction), with their out-interface set. What stays here is what
 * nf_reject checks before asking: nothing for a non-first fragment, and no
 * ICMP error for a TCP/UDP packet with a bad checksum (buildTcpReset checks
 * the RST's own conditions: not a RST, good checksum, unicast).
 */
import { Hook, Verdict, type Family, type PacketContext } from '../xt/packet.js';
import { buildTcpReset } from '../dataplane/build.js';
import { getU16 } from '../dataplane/bytes.js';
import { XtError, type TargetExtension } from '../xt/extension.js';
import { l4ChecksumGood } from './lib/l4-checksum.js';

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

/** Scratch for a RST (IPv6 header + TCP header); emit copies it. */
const out = Buffer.alloc(60);

/** nf_reject_verify_csum / reject6_csum_ok: TCP and UDP must have a good checksum to earn a reply. */
function l4ChecksumOk(pkt: PacketContext): boolean {
  const proto = pkt.proto;
  if (proto !== 6 && proto !== 17) return true;
  if (pkt.isFragment) return true; // the kernel checks the reassembled datagram; a lone first fragment cannot be
  if (proto === 17 && pkt.family === 4 && pkt.l4len >= 8 && getU16(pkt.buf, pkt.l4off + 6) === 0) return true;
  return l4ChecksumGood(pkt);
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
    return {
      target(pkt: PacketContext): number {
        if (pkt.fragmentOffset !== 0) return Verdict.DROP;
        if (type < 0) {
          const n = buildTcpReset(out, 0, pkt);
          if (n > 0) services.emit(out, 0, n, { family: pkt.family, ctFrom: pkt });
        } else if (l4ChecksumOk(pkt)) {
          services.icmpError(pkt, type, code, 0);
        }
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
