/**
 * Packet fixtures for the module tests are built here from bytes and run
 * through the codec's parsePacket, so matches see what the pipeline sees.
 */
import { PacketContext } from '../xt/packet.js';
import type { Extension, ParsedOption, RuleInfo, TargetExtension } from '../xt/extension.js';
import REJECT from '../modules/REJECT.js';
import LOG from '../modules/LOG.js';
import MARK from '../modules/MARK_target.js';
import CONNMARK from '../modules/CONNMARK_target.js';
import NOTRACK from '../modules/NOTRACK.js';
import CT from '../modules/CT.js';
import type { Family } from '../xt/packet.js';
import { parsePacket } from '../dataplane/parse.js';
import { checksum, finish, pseudoSum4, sum16, pseudoSum6 } from '../dataplane/checksum.js';
import { parseIpv4, parseIpv6 } from '../dataplane/addr.js';
import { options } from './helpers/xt-harness.js';

export interface L4 {
  proto: number;
  bytes: number[];
  /** Offset of the checksum field inside bytes, or -1. */
  csumAt: number;
}

export function tcpSeg(sport: number, dport: number, flags: number, o: { seq?: number; ack?: number; win?: number; options?: number[]; payload?: number[]; res?: number } = {}): L4 {
  const opts = o.options ?? [];
  const doff = 5 + Math.ceil(opts.length / 4);
  const b = [sport >> 8, sport & 255, dport >> 8, dport & 255];
  const u32 = (v: number) => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
  b.push(...u32(o.seq ?? 1000), ...u32(o.ack ?? 0), (doff << 4) | (o.res ?? 0), flags, ...[(o.win ?? 512) >> 8, (o.win ?? 512) & 255], 0, 0, 0, 0);
  b.push(...opts);
  while (b.length < doff * 4) b.push(0);
  b.push(...(o.payload ?? []));
  return { proto: 6, bytes: b, csumAt: 16 };
}

export function udpDgram(sport: number, dport: number, payload: number[] = []): L4 {
  const len = 8 + payload.length;
  return { proto: 17, bytes: [sport >> 8, sport & 255, dport >> 8, dport & 255, len >> 8, len & 255, 0, 0, ...payload], csumAt: 6 };
}

export function icmpMsg(type: number, code: number, rest: number[] = [0, 0, 0, 0], payload: number[] = [], v6 = false): L4 {
  return { proto: v6 ? 58 : 1, bytes: [type, code, 0, 0, ...rest, ...payload], csumAt: 2 };
}

export function ip4(src: string, dst: string, l4: L4, o: { ttl?: number; tos?: number; id?: number; df?: boolean; frag?: number; mf?: boolean; options?: number[] } = {}): Buffer {
  const opts = o.options ?? [];
  const ihl = 20 + opts.length;
  const total = ihl + l4.bytes.length;
  const b = Buffer.alloc(total);
  b[0] = 0x40 | (ihl / 4);
  b[1] = o.tos ?? 0;
  b.writeUInt16BE(total, 2);
  b.writeUInt16BE(o.id ?? 1, 4);
  b.writeUInt16BE((o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | (o.frag ?? 0), 6);
  b[8] = o.ttl ?? 64;
  b[9] = l4.proto;
  b.writeUInt32BE(parseIpv4(src), 12);
  b.writeUInt32BE(parseIpv4(dst), 16);
  Buffer.from(opts).copy(b, 20);
  b.writeUInt16BE(checksum(b, 0, ihl), 10);
  Buffer.from(l4.bytes).copy(b, ihl);
  if (l4.csumAt >= 0 && !(o.frag ?? 0)) {
    const len = l4.bytes.length;
    const ps = l4.proto === 1 ? 0 : pseudoSum4(parseIpv4(src), parseIpv4(dst), l4.proto, len);
    let c = finish(sum16(b, ihl, len, ps));
    if (l4.proto === 17 && c === 0) c = 0xffff;
    b.writeUInt16BE(c, ihl + l4.csumAt);
  }
  return b;
}

export function ip6(src: string, dst: string, l4: L4, o: { hlim?: number; tc?: number; flow?: number } = {}): Buffer {
  const len = l4.bytes.length;
  const b = Buffer.alloc(40 + len);
  b.writeUInt32BE(((6 << 28) | ((o.tc ?? 0) << 20) | (o.flow ?? 0)) >>> 0, 0);
  b.writeUInt16BE(len, 4);
  b[6] = l4.proto;
  b[7] = o.hlim ?? 64;
  const s = parseIpv6(src);
  const d = parseIpv6(dst);
  for (let i = 0; i < 4; i++) {
    b.writeUInt32BE(s[i], 8 + 4 * i);
    b.writeUInt32BE(d[i], 24 + 4 * i);
  }
  Buffer.from(l4.bytes).copy(b, 40);
  if (l4.csumAt >= 0) {
    const c = finish(sum16(b, 40, len, pseudoSum6(b, 8, l4.proto, len)));
    b.writeUInt16BE(l4.proto === 17 && c === 0 ? 0xffff : c, 40 + l4.csumAt);
  }
  return b;
}

/** Parses bytes into a fresh context (with `headroom` bytes in front, as the router leaves). */
export function ctxOf(bytes: Buffer, now = 0, headroom = 0): PacketContext {
  const ctx = new PacketContext();
  const buf = Buffer.alloc(headroom + bytes.length);
  bytes.copy(buf, headroom);
  const r = parsePacket(ctx, buf, headroom, bytes.length);
  if (r !== 0) throw new Error(`fixture does not parse: drop reason ${r}`);
  ctx.now = now;
  return ctx;
}

/**
 * iptables-style words for one extension -> ParsedOption[], read by the rule
 * parser's own getopt code (test/helpers/xt-harness.ts): aliases, prefixes,
 * `--opt=value`, nargs and `!`, with iptables' messages for bad words.
 */
export function words(ext: Extension, text: string): ParsedOption[] {
  // Split as the rows are written: a "quoted run" is one word without its quotes, anything else splits on spaces.
  const w = text.match(/"[^"]*"|\S+/g)?.map((x) => x.replace(/^"|"$/g, '')) ?? [];
  return options(ext, w);
}


// [ext, family, -p, option words, iptables-save text (checked against iptables 1.8.9 in a namespace)]
export const MATCH_SAVES: [string, Family, string, string, string][] = [
  ['tcp', 4, 'tcp', '--dport 22', ' --dport 22'],
  ['tcp', 4, 'tcp', '--sport 1:1000 --dport 22:', ' --sport 1:1000 --dport 22:65535'],
  ['tcp', 4, 'tcp', '--sport :', ''],
  ['tcp', 4, 'tcp', '--tcp-flags FIN,SYN,RST,ACK SYN', ' --tcp-flags FIN,SYN,RST,ACK SYN'],
  ['tcp', 4, 'tcp', '--syn', ' --tcp-flags FIN,SYN,RST,ACK SYN'],
  ['tcp', 4, 'tcp', '! --syn', ' ! --tcp-flags FIN,SYN,RST,ACK SYN'],
  ['tcp', 4, 'tcp', '--tcp-flags ALL NONE', ' --tcp-flags FIN,SYN,RST,PSH,ACK,URG NONE'],
  ['tcp', 4, 'tcp', '--tcp-option 2', ' --tcp-option 2'],
  ['tcp', 4, 'tcp', '! --dport 80', ' ! --dport 80'],
  ['tcp', 4, 'tcp', '--dport ssh', ' --dport 22'],
  ['udp', 4, 'udp', '--dport 53', ' --dport 53'],
  // libxt_udp (XTTYPE_PORTRC): reversed ranges kept, getaddrinfo numbers cut to 16 bits, any protocol's names.
  ['udp', 4, 'udp', '--dport 5:3', ' --dport 5:3'],
  ['udp', 4, 'udp', '! --sport 70000:ssh', ' ! --sport 4464:22'],
  ['udp', 4, 'udp', '--dport " +5:-0"', ' --dport 5:0'],
  ['udp', 4, 'udp', '--dport :who', ' --dport 0:513'],
  ['udp', 4, 'udp', '--dport 010', ' --dport 10'],
  ['udp', 6, 'udp', '--sport 99999999999:', ' --sport 59391:65535'],
  // libxt_tcp: xtables_strtoui numbers (base 0), names of tcp only.
  ['tcp', 4, 'tcp', '--dport " +010:0X1F"', ' --dport 8:31'],
  ['multiport', 4, 'udp', '--dports 0x10:0x20,+7,domain', ' --dports 16:32,7,53'],
  ['icmp', 4, 'icmp', '--icmp-type echo-request', ' --icmp-type 8'],
  ['icmp', 4, 'icmp', '--icmp-type ECHO-REQUEST', ' --icmp-type 8'],
  ['icmp', 4, 'icmp', '--icmp-type 3/1', ' --icmp-type 3/1'],
  ['icmp', 4, 'icmp', '--icmp-type any', ' --icmp-type any'],
  ['icmp', 4, 'icmp', '--icmp-type host-prohibited', ' --icmp-type 3/10'],
  ['icmp', 4, 'icmp', '! --icmp-type redirect', ' ! --icmp-type 5'],
  ['icmp6', 6, 'icmpv6', '--icmpv6-type echo-request', ' --icmpv6-type 128'],
  ['icmp6', 6, 'icmpv6', '--icmpv6-type 1/3', ' --icmpv6-type 1/3'],
  ['icmp6', 6, 'icmpv6', '--icmpv6-type neighbour-solicitation', ' --icmpv6-type 135'],
  ['icmp6', 6, 'icmpv6', '--icmpv6-type 200', ' --icmpv6-type 200'],
  ['multiport', 4, 'tcp', '--dports 80,443', ' --dports 80,443'],
  ['multiport', 4, 'tcp', '--ports 1:5,7', ' --ports 1:5,7'],
  ['multiport', 4, 'tcp', '! --sports 80', ' ! --sports 80'],
  ['state', 4, '', '--state NEW,ESTABLISHED', ' --state NEW,ESTABLISHED'],
  ['state', 4, '', '--state RELATED,ESTABLISHED,INVALID,UNTRACKED', ' --state INVALID,RELATED,ESTABLISHED,UNTRACKED'],
  ['conntrack', 4, '', '--ctstate NEW', ' --ctstate NEW'],
  ['conntrack', 4, '', '--ctstate UNTRACKED,NEW,INVALID,RELATED,ESTABLISHED,SNAT,DNAT', ' --ctstate INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED,SNAT,DNAT'],
  ['conntrack', 4, '', '! --ctstate NEW --ctproto tcp --ctorigsrc 1.2.3.4 --ctstatus ASSURED --ctdir REPLY', ' ! --ctstate NEW --ctproto 6 --ctorigsrc 1.2.3.4 --ctstatus ASSURED --ctdir REPLY'],
  ['conntrack', 4, '', '--ctstatus NONE --ctexpire 5:10 --ctorigsrc 1.2.3.0/24 --ctorigdstport 80 --ctdir ORIGINAL', ' --ctorigsrc 1.2.3.0/24 --ctorigdstport 80 --ctstatus NONE --ctexpire 5:10 --ctdir ORIGINAL'],
  ['limit', 4, '', '--limit 3/min --limit-burst 5', ' --limit 3/min'],
  ['limit', 4, '', '', ' --limit 3/hour'],
  ['limit', 4, '', '--limit 1/s --limit-burst 4', ' --limit 1/sec --limit-burst 4'],
  ['limit', 4, '', '--limit 7/hour', ' --limit 7/hour'],
  ['limit', 4, '', '--limit 2/day', ' --limit 2/day'],
  ['limit', 4, '', '--limit 100', ' --limit 100/sec'],
  ['limit', 4, '', '--limit 5/m', ' --limit 5/min'],
  ['limit', 4, '', '--limit 3/minute --limit-burst 0x10', ' --limit 3/min --limit-burst 16'],
  ['limit', 4, '', '--limit 13/hour', ' --limit 13/hour'],
  ['mac', 4, '', '--mac-source 00:11:22:33:44:AA', ' --mac-source 00:11:22:33:44:aa'],
  ['mac', 4, '', '! --mac-source 00:11:22:33:44:55', ' ! --mac-source 00:11:22:33:44:55'],
  ['mark', 4, '', '--mark 0x10/0xff', ' --mark 0x10/0xff'],
  ['mark', 4, '', '! --mark 5', ' ! --mark 0x5'],
  ['connmark', 4, '', '--mark 3', ' --mark 0x3'],
  ['connmark', 4, '', '--mark 5/0xf', ' --mark 0x5/0xf'],
  ['comment', 4, '', '--comment hello', ' --comment hello'],
  ['comment', 4, '', '--comment "a b"', ' --comment "a b"'],
  ['comment', 4, '', '--comment a.b', ' --comment "a.b"'],
  ['comment', 4, '', `--comment it's`, ` --comment "it\\'s"`],
  ['comment', 4, '', `--comment x"y`, ' --comment "x\\"y"'],
  ['comment', 4, '', `--comment ${'a'.repeat(256)}`, ` --comment ${'a'.repeat(255)}`],
  ['length', 4, '', '--length 100:200', ' --length 100:200'],
  ['length', 4, '', '! --length 40', ' ! --length 40'],
  ['length', 4, '', '--length :50', ' --length 0:50'],
  ['length', 4, '', '--length 5:', ' --length 5:65535'],
  ['length', 4, '', '--length 5:3', ' --length 5:3'],
  ['length', 4, '', '--length 0x10', ' --length 16'],
  ['ttl', 4, '', '--ttl-eq 5', ' --ttl-eq 5'],
  ['ttl', 4, '', '--ttl-lt 5', ' --ttl-lt 5'],
  ['ttl', 4, '', '! --ttl-eq 5', ' ! --ttl-eq 5'],
  ['hl', 6, '', '--hl-eq 4', ' --hl-eq 4'],
  ['hl', 6, '', '--hl-lt 4', ' --hl-lt 4'],
  ['iprange', 4, '', '--src-range 1.1.1.1-1.1.1.5 ! --dst-range 2.2.2.2-2.2.2.9', ' --src-range 1.1.1.1-1.1.1.5 ! --dst-range 2.2.2.2-2.2.2.9'],
  ['iprange', 6, '', '--src-range ::1-::5', ' --src-range ::1-::5'],
];


// [ext, family, -p, words, message, status] - messages as iptables 1.8.9 prints them after "iptables v1.8.9 (legacy): "
export const MATCH_ERRORS: [string, Family, string, string, string][] = [
  ['tcp', 4, 'tcp', '--dport 22 --dport 23', "Only one `--destination-port' allowed"],
  ['tcp', 4, 'tcp', '--dport 70000', "invalid port/service `70000' specified"],
  ['tcp', 4, 'tcp', '--dport foo', "invalid port/service `foo' specified"],
  ['tcp', 4, 'tcp', '--dport 5:3', 'invalid portrange (min > max)'],
  ['tcp', 4, 'tcp', '--tcp-flags FOO SYN', "Unknown TCP flag `FOO'"],
  ['tcp', 4, 'tcp', '--syn --tcp-flags SYN SYN', "Only one of `--syn' or `--tcp-flags'  allowed"],
  ['tcp', 4, 'tcp', '--tcp-option 300', 'Bad TCP option "300"'],
  ['tcp', 4, 'tcp', '--tcp-option 0', 'Bad TCP option "0"'],
  ['tcp', 4, 'tcp', '--tcp-option foo', 'Bad TCP option "foo"'],
  ['udp', 4, 'udp', '--dport 22 --dport 23', 'udp: option "--destination-port" can only be used once.\n'],
  ['icmp', 4, 'icmp', '--icmp-type foo', "Unknown ICMP type `foo'"],
  ['icmp', 4, 'icmp', '--icmp-type 300', "Unknown ICMP type `300'"],
  ['icmp', 4, 'icmp', '--icmp-type 3/300', "Unknown ICMP code `3/300'"],
  ['icmp', 4, 'icmp', '--icmp-type echo', "Ambiguous ICMP type `echo': `echo-reply' or `echo-request'?"],
  ['icmp', 4, 'icmp', '--icmp-type 8 --icmp-type 0', 'icmp: option "--icmp-type" can only be used once.\n'],
  ['icmp6', 6, 'icmpv6', '--icmpv6-type foo', "Unknown ICMPv6 type `foo'"],
  ['multiport', 4, 'tcp', '--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16', 'too many ports specified'],
  ['multiport', 4, 'tcp', '--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,1:15', 'too many ports specified'],
  ['multiport', 4, '', '--dports 80', "multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'"],
  ['multiport', 4, 'tcp', '--dports 80 --sports 22', 'multiport: option "--source-ports" cannot be used together with "--destination-ports".\n'],
  ['multiport', 4, 'tcp', '--dports 5:3', 'invalid portrange specified'],
  ['state', 4, '', '--state FOO', 'Bad state "FOO"'],
  ['state', 4, '', '', 'state: option "--state" must be specified\n'],
  ['conntrack', 4, '', '--ctstate NEW,FOO', 'Bad ctstate "FOO"'],
  ['limit', 4, '', '--limit 3/fortnight', `bad rate "3/fortnight"'`],
  ['limit', 4, '', '--limit 0/s', `bad rate "0/s"'`],
  ['limit', 4, '', '--limit abc', `bad rate "abc"'`],
  ['limit', 4, '', '--limit 1000000/s', 'Rate too fast "1000000/s"'],
  ['limit', 4, '', '--limit-burst 10001', 'limit: bad value for option "--limit-burst", or out of range (0-10000).\n'],
  ['mac', 4, '', '--mac-source 00:11:22', 'Invalid MAC address specified.'],
  ['mac', 4, '', '--mac-source 00:11:22:33:44:gg', 'Invalid MAC address specified.'],
  ['mark', 4, '', '--mark foo', 'mark: bad integer value for option "--mark", or out of range.\n'],
  ['mark', 4, '', '--mark 0x100000000', 'mark: bad integer value for option "--mark", or out of range.\n'],
  ['mark', 4, '', '--mark 5 --mark 6', 'mark: option "--mark" can only be used once.\n'],
  ['mark', 4, '', '', 'mark: option "--mark" must be specified\n'],
  ['comment', 4, '', '', 'comment: option "--comment" must be specified\n'],
  ['length', 4, '', '--length 70000', 'length: bad value for option "--length" near "70000", or out of range (0-65535).\n'],
  ['length', 4, '', '--length abc', 'length: bad value for option "--length" near "abc", or out of range (0-65535).\n'],
  ['length', 4, '', '', 'length: option "--length" must be specified\n'],
  ['ttl', 4, '', '--ttl-eq 300', 'ttl: bad value for option "--ttl-eq", or out of range (0-255).\n'],
  ['ttl', 4, '', '--ttl-eq 3 --ttl-lt 5', 'ttl: option "--ttl-lt" cannot be used together with "--ttl-eq".\n'],
  ['ttl', 4, '', '--ttl-gt 3 --ttl-eq 5', 'ttl: option "--ttl-gt" cannot be used together with "--ttl-eq".\n'],
  ['ttl', 4, '', '--ttl-lt 3 --ttl-gt 5', 'ttl: option "--ttl-lt" cannot be used together with "--ttl-gt".\n'],
  ['ttl', 4, '', '', "TTL match: You must specify one of `--ttl-eq', `--ttl-lt', `--ttl-gt"],
  ['hl', 6, '', '', "HL match: You must specify one of `--hl-eq', `--hl-lt', `--hl-gt'"],
  ['hl', 6, '', '--hl-eq 300', 'hl: bad value for option "--hl-eq", or out of range (0-255).\n'],
  ['hl', 6, '', '--hl-gt 3 --hl-lt 5', 'hl: option "--hl-lt" cannot be used together with "--hl-gt".\n'],
  ['iprange', 4, '', '--src-range foo', 'iprange: Bad value for "--src-range" option: "foo"'],
  ['iprange', 4, '', '', "iprange match: You must specify `--src-range' or `--dst-range'"],
  ['udp', 4, 'udp', '--dport 1:2:3', 'udp: Too many components for option "--destination-port" (max: 2)\n'],
  ['udp', 4, 'udp', '--sport ::', 'udp: Too many components for option "--source-port" (max: 2)\n'],
  ['udp', 4, 'udp', '--dport x', 'Port "x" does not resolve to anything.\n'],
  ['udp', 4, 'udp', '--dport 5:-3', 'Port "-3" does not resolve to anything.\n'],
  ['udp', 4, 'udp', '--dport 2147483648', 'Port "2147483648" does not resolve to anything.\n'],
  ['udp', 4, 'udp', '--dport 0x10', 'Port "0x10" does not resolve to anything.\n'],
  ['udp', 4, 'udp', '--dport Domain', 'Port "Domain" does not resolve to anything.\n'],
  ['tcp', 4, 'tcp', '--dport -0', "invalid port/service `-0' specified"],
  ['tcp', 4, 'tcp', '--dport 08', "invalid port/service `08' specified"],
  ['tcp', 4, 'tcp', '--dport ntp', "invalid port/service `ntp' specified"],
  ['multiport', 4, 'udp', '--ports 5:5', 'invalid portrange specified'],
  ['multiport', 4, 'udp', '--ports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,x:15', 'too many ports specified'],
  ['multiport', 4, 'udp', '--ports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,x', 'too many ports specified'],
  ['multiport', 4, 'udp', '--ports 22,', "invalid port/service `' specified"],
  ['conntrack', 4, '', '--ctorigsrcport 1:2:3', 'conntrack: Too many components for option "--ctorigsrcport" (max: 2)\n'],
  ['icmp', 4, 'icmp', '', 'icmp: option "--icmp-type" must be specified\n'],
  ['icmp6', 6, 'icmpv6', '', 'icmp6: option "--icmpv6-type" must be specified\n'],
  ['conntrack', 4, '', '', 'conntrack: At least one option is required'],
  ['multiport', 4, 'tcp', '', 'multiport expection an option'],
  ['mark', 4, '', '--mark 0x1x', 'mark: trailing garbage after value for option "--mark".\n'],
  ['mark', 4, '', '--mark 1/-1', 'mark: bad integer value for option "--mark", or out of range.\n'],
  ['length', 4, '', '--length 1:2:3', 'length: Too many components for option "--length" (max: 2)\n'],
  ['length', 4, '', '--length 1x', 'length: Argument to "--length" has unexpected characters near "x".\n'],
  ['length', 4, '', '--length 5:-1', 'length: bad value for option "--length" near "-1", or out of range (0-65535).\n'],
];


// [ext, family, -p, table, words, save] - as iptables-save 1.8.9 prints them
export const TARGET_SAVES: [TargetExtension, Family, string, RuleInfo['table'], string, string][] = [
  [REJECT, 4, 'tcp', 'filter', '', ' --reject-with icmp-port-unreachable'],
  [REJECT, 4, 'tcp', 'filter', '--reject-with tcp-rst', ' --reject-with tcp-reset'],
  [REJECT, 4, '', 'filter', '--reject-with host-prohib', ' --reject-with icmp-host-prohibited'],
  [REJECT, 4, '', 'filter', '--reject-with net-unreach', ' --reject-with icmp-net-unreachable'],
  [REJECT, 4, '', 'filter', '--reject-with icmp-admin-prohibited', ' --reject-with icmp-admin-prohibited'],
  [REJECT, 6, '', 'filter', '', ' --reject-with icmp6-port-unreachable'],
  [REJECT, 6, '', 'filter', '--reject-with adm-prohibited', ' --reject-with icmp6-adm-prohibited'],
  [REJECT, 6, '', 'filter', '--reject-with no-route', ' --reject-with icmp6-no-route'],
  [REJECT, 6, '', 'filter', '--reject-with icmp6-reject-route', ' --reject-with icmp6-reject-route'],
  [LOG, 4, '', 'filter', '--log-prefix "x " --log-level 4', ' --log-prefix "x "'],
  [LOG, 4, '', 'filter', '--log-level warning --log-tcp-sequence --log-tcp-options --log-ip-options --log-uid', ' --log-tcp-sequence --log-tcp-options --log-ip-options --log-uid'],
  [LOG, 4, '', 'filter', '--log-level debug', ' --log-level 7'],
  [LOG, 4, '', 'filter', '--log-level alert --log-prefix abcdefghijabcdefghijabcdefghij', ' --log-prefix abcdefghijabcdefghijabcdefghi --log-level 1'],
  [LOG, 4, '', 'filter', '--log-level 0x3', ' --log-level 3'],
  [LOG, 4, '', 'filter', '--log-level panic', ' --log-level 0'],
  [LOG, 4, '', 'filter', '--log-prefix a.b', ' --log-prefix "a.b"'],
  [LOG, 4, '', 'filter', '--log-macdecode', ' --log-macdecode'],
  [MARK, 4, '', 'mangle', '--set-mark 5', ' --set-xmark 0x5/0xffffffff'],
  [MARK, 4, '', 'mangle', '--set-mark 5/0xff', ' --set-xmark 0x5/0xff'],
  [MARK, 4, '', 'mangle', '--set-xmark 5/0xff', ' --set-xmark 0x5/0xff'],
  [MARK, 4, '', 'mangle', '--and-mark 5', ' --set-xmark 0x0/0xfffffffa'],
  [MARK, 4, '', 'mangle', '--or-mark 5', ' --set-xmark 0x5/0x5'],
  [MARK, 4, '', 'mangle', '--xor-mark 5', ' --set-xmark 0x5/0x0'],
  [CONNMARK, 4, '', 'mangle', '--set-mark 5', ' --set-xmark 0x5/0xffffffff'],
  [CONNMARK, 4, '', 'mangle', '--set-mark 5/0xff', ' --set-xmark 0x5/0xff'],
  [CONNMARK, 4, '', 'mangle', '--save-mark', ' --save-mark --nfmask 0xffffffff --ctmask 0xffffffff'],
  [CONNMARK, 4, '', 'mangle', '--restore-mark', ' --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff'],
  [CONNMARK, 4, '', 'mangle', '--save-mark --mask 0xff', ' --save-mark --nfmask 0xff --ctmask 0xff'],
  [CONNMARK, 4, '', 'mangle', '--restore-mark --nfmask 0xff --ctmask 0xf0', ' --restore-mark --nfmask 0xff --ctmask 0xf0'],
  [CONNMARK, 4, '', 'mangle', '--and-mark 5', ' --set-xmark 0x0/0xfffffffa'],
  [NOTRACK, 4, '', 'raw', '', ''],
  [CT, 4, '', 'raw', '--notrack', ' --notrack'],
];

