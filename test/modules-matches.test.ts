import test from 'ava';
import { CtState, PacketContext, type Family } from '../router/packet.js';
import { XtError, type CheckEnv, type Extension, type MatchExtension, type RuleInfo } from '../modules/types.js';
import tcp from '../modules/tcp.js';
import udp from '../modules/udp.js';
import icmp from '../modules/icmp.js';
import icmp6 from '../modules/icmp6.js';
import multiport from '../modules/multiport.js';
import state from '../modules/state.js';
import conntrackMatch from '../modules/conntrack.js';
import limit, { LimitBucket, printRate, parseRate, user2credits } from '../modules/limit.js';
import mac from '../modules/mac.js';
import mark from '../modules/mark.js';
import connmark from '../modules/connmark.js';
import comment from '../modules/comment.js';
import length from '../modules/length.js';
import ttl from '../modules/ttl.js';
import hl from '../modules/hl.js';
import iprange from '../modules/iprange.js';
import { Conntrack } from '../router/conntrack.js';
import { ctxOf, icmpMsg, ip4, ip6, tcpSeg, udpDgram, words } from './modules-fixtures.js';

const EXT: Record<string, Extension> = { tcp, udp, icmp, icmp6, multiport, state, conntrack: conntrackMatch, limit, mac, mark, connmark, comment, length, ttl, hl, iprange };
const PROTO: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 };

function ruleInfo(family: Family, proto = ''): RuleInfo {
  return { family, table: 'filter', chain: 'INPUT', proto: PROTO[proto] ?? 0, protoInverted: false };
}

const clock = { now: 0 };
function env(family: Family = 4): CheckEnv {
  return {
    rule: ruleInfo(family),
    hookMask: 0x1f,
    state: { acquire: (_k, c) => c(), release() {} },
    proc: { register() {}, unregister() {} },
    services: { emitLocal() {}, log() {}, now: () => clock.now },
    settings: {},
  };
}

// [ext, family, -p, option words, iptables-save text (checked against iptables 1.8.9 in a namespace)]
const SAVES: [string, Family, string, string, string][] = [
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

test('save text matches iptables-save', (t) => {
  for (const [name, family, proto, opts, saved] of SAVES) {
    const ext = EXT[name] as MatchExtension;
    t.is(ext.save(ext.parse(words(ext, opts), ruleInfo(family, proto))), saved, `${name} ${opts}`);
  }
});

// [ext, family, -p, words, message, status] - messages as iptables 1.8.9 prints them after "iptables v1.8.9 (legacy): "
const ERRORS: [string, Family, string, string, string][] = [
  ['tcp', 4, 'tcp', '--dport 22 --dport 23', "Only one `--destination-port' allowed"],
  ['tcp', 4, 'tcp', '--dport 70000', "invalid port/service `70000' specified"],
  ['tcp', 4, 'tcp', '--dport foo', "invalid port/service `foo' specified"],
  ['tcp', 4, 'tcp', '--dport 5:3', 'invalid portrange (min > max)'],
  ['tcp', 4, 'tcp', '--tcp-flags FOO SYN', "Unknown TCP flag `FOO'"],
  ['tcp', 4, 'tcp', '--syn --tcp-flags SYN SYN', "Only one of `--syn' or `--tcp-flags'  allowed"],
  ['tcp', 4, 'tcp', '--tcp-option 300', 'Bad TCP option "300"'],
  ['tcp', 4, 'tcp', '--tcp-option 0', 'Bad TCP option "0"'],
  ['tcp', 4, 'tcp', '--tcp-option foo', 'Bad TCP option "foo"'],
  ['udp', 4, 'udp', '--dport 22 --dport 23', 'udp: option "--destination-port" can only be used once.'],
  ['icmp', 4, 'icmp', '--icmp-type foo', "Unknown ICMP type `foo'"],
  ['icmp', 4, 'icmp', '--icmp-type 300', "Unknown ICMP type `300'"],
  ['icmp', 4, 'icmp', '--icmp-type 3/300', "Unknown ICMP code `3/300'"],
  ['icmp', 4, 'icmp', '--icmp-type echo', "Ambiguous ICMP type `echo': `echo-reply' or `echo-request'?"],
  ['icmp', 4, 'icmp', '--icmp-type 8 --icmp-type 0', 'icmp: option "--icmp-type" can only be used once.'],
  ['icmp6', 6, 'icmpv6', '--icmpv6-type foo', "Unknown ICMPv6 type `foo'"],
  ['multiport', 4, 'tcp', '--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16', 'too many ports specified'],
  ['multiport', 4, 'tcp', '--dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,1:15', 'too many ports specified'],
  ['multiport', 4, '', '--dports 80', "multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'"],
  ['multiport', 4, 'tcp', '--dports 80 --sports 22', 'multiport: option "--source-ports" cannot be used together with "--destination-ports".'],
  ['multiport', 4, 'tcp', '--dports 5:3', 'invalid portrange specified'],
  ['state', 4, '', '--state FOO', 'Bad state "FOO"'],
  ['state', 4, '', '', 'state: option "--state" must be specified'],
  ['conntrack', 4, '', '--ctstate NEW,FOO', 'Bad ctstate "FOO"'],
  ['limit', 4, '', '--limit 3/fortnight', `bad rate "3/fortnight"'`],
  ['limit', 4, '', '--limit 0/s', `bad rate "0/s"'`],
  ['limit', 4, '', '--limit abc', `bad rate "abc"'`],
  ['limit', 4, '', '--limit 1000000/s', 'Rate too fast "1000000/s"'],
  ['limit', 4, '', '--limit-burst 10001', 'limit: bad value for option "--limit-burst", or out of range (0-10000).'],
  ['mac', 4, '', '--mac-source 00:11:22', 'Invalid MAC address specified.'],
  ['mac', 4, '', '--mac-source 00:11:22:33:44:gg', 'Invalid MAC address specified.'],
  ['mark', 4, '', '--mark foo', 'mark: bad integer value for option "--mark", or out of range.'],
  ['mark', 4, '', '--mark 0x100000000', 'mark: bad integer value for option "--mark", or out of range.'],
  ['mark', 4, '', '--mark 5 --mark 6', 'mark: option "--mark" can only be used once.'],
  ['mark', 4, '', '', 'mark: option "--mark" must be specified'],
  ['comment', 4, '', '', 'comment: option "--comment" must be specified'],
  ['length', 4, '', '--length 70000', 'length: bad value for option "--length" near "70000", or out of range (0-65535).'],
  ['length', 4, '', '--length abc', 'length: bad value for option "--length" near "abc", or out of range (0-65535).'],
  ['length', 4, '', '', 'length: option "--length" must be specified'],
  ['ttl', 4, '', '--ttl-eq 300', 'ttl: bad value for option "--ttl-eq", or out of range (0-255).'],
  ['ttl', 4, '', '--ttl-eq 3 --ttl-lt 5', 'ttl: option "--ttl-lt" cannot be used together with "--ttl-eq".'],
  ['ttl', 4, '', '--ttl-gt 3 --ttl-eq 5', 'ttl: option "--ttl-gt" cannot be used together with "--ttl-eq".'],
  ['ttl', 4, '', '--ttl-lt 3 --ttl-gt 5', 'ttl: option "--ttl-lt" cannot be used together with "--ttl-gt".'],
  ['ttl', 4, '', '', "TTL match: You must specify one of `--ttl-eq', `--ttl-lt', `--ttl-gt"],
  ['hl', 6, '', '', "HL match: You must specify one of `--hl-eq', `--hl-lt', `--hl-gt'"],
  ['hl', 6, '', '--hl-eq 300', 'hl: bad value for option "--hl-eq", or out of range (0-255).'],
  ['hl', 6, '', '--hl-gt 3 --hl-lt 5', 'hl: option "--hl-lt" cannot be used together with "--hl-gt".'],
  ['iprange', 4, '', '--src-range foo', 'iprange: Bad value for "--src-range" option: "foo"'],
  ['iprange', 4, '', '', "iprange match: You must specify `--src-range' or `--dst-range'"],
];

test('parse errors carry iptables 1.8.9 wording and status 2', (t) => {
  for (const [name, family, proto, opts, msg] of ERRORS) {
    const ext = EXT[name] as MatchExtension;
    const err = t.throws(() => ext.parse(words(ext, opts), ruleInfo(family, proto)), { instanceOf: XtError }, `${name} ${opts}`);
    t.is(err?.message, msg, `${name} ${opts}`);
    t.is((err as XtError).status, 2);
  }
});

test('kernel-side refusals: limit burst 0 and credit overflow (1/day burst 5) are ERANGE, status 1', (t) => {
  for (const o of ['--limit-burst 0', '--limit 1/day']) {
    const p = limit.parse(words(limit, o), ruleInfo(4));
    const err = t.throws(() => limit.check(p, env()), { instanceOf: XtError });
    t.is((err as XtError).status, 1, o);
  }
  t.notThrows(() => limit.check(limit.parse(words(limit, '--limit 2/day'), ruleInfo(4)), env()));
});

type Pkt = () => PacketContext;
const SYN = 0x02;
const ACK = 0x10;
const v4tcp = (sport: number, dport: number, flags = SYN, opts?: number[]): Pkt => () => ctxOf(ip4('10.0.0.1', '10.0.0.2', tcpSeg(sport, dport, flags, { options: opts })));

// [ext, family, -p, words, packet, expected]
const MATCHES: [string, Family, string, string, Pkt, boolean][] = [
  ['tcp', 4, 'tcp', '--dport 22', v4tcp(1000, 22), true],
  ['tcp', 4, 'tcp', '--dport 22', v4tcp(1000, 23), false],
  ['tcp', 4, 'tcp', '! --dport 22', v4tcp(1000, 23), true],
  ['tcp', 4, 'tcp', '--sport 1000:1001 --dport 20:30', v4tcp(1001, 30), true],
  ['tcp', 4, 'tcp', '--syn', v4tcp(1, 2, SYN), true],
  ['tcp', 4, 'tcp', '--syn', v4tcp(1, 2, SYN | ACK), false],
  ['tcp', 4, 'tcp', '! --syn', v4tcp(1, 2, SYN | ACK), true],
  ['tcp', 4, 'tcp', '--tcp-flags ALL NONE', v4tcp(1, 2, 0), true],
  ['tcp', 4, 'tcp', '--tcp-flags SYN,FIN SYN,FIN', v4tcp(1, 2, 0x03), true],
  ['tcp', 4, 'tcp', '--tcp-option 2', v4tcp(1, 2, SYN, [2, 4, 5, 0xb4]), true],
  ['tcp', 4, 'tcp', '--tcp-option 8', v4tcp(1, 2, SYN, [1, 1, 2, 4, 5, 0xb4, 1, 3, 3, 7, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0]), true],
  ['tcp', 4, 'tcp', '--tcp-option 8', v4tcp(1, 2, SYN, [2, 4, 5, 0xb4]), false],
  ['tcp', 4, 'tcp', '! --tcp-option 8', v4tcp(1, 2, SYN, [2, 4, 5, 0xb4]), true],
  ['tcp', 4, 'tcp', '--dport 22', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 22))), false],
  ['tcp', 4, 'tcp', '! --dport 80', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', tcpSeg(1, 22, SYN), { frag: 10 })), false],
  ['udp', 4, 'udp', '--dport 53', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', udpDgram(999, 53))), true],
  ['udp', 4, 'udp', '--sport 1:998', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', udpDgram(999, 53))), false],
  ['icmp', 4, 'icmp', '--icmp-type echo-request', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', icmpMsg(8, 0))), true],
  ['icmp', 4, 'icmp', '--icmp-type echo-request', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', icmpMsg(0, 0))), false],
  ['icmp', 4, 'icmp', '--icmp-type port-unreachable', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', icmpMsg(3, 3))), true],
  ['icmp', 4, 'icmp', '--icmp-type port-unreachable', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', icmpMsg(3, 1))), false],
  ['icmp', 4, 'icmp', '--icmp-type destination-unreachable', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', icmpMsg(3, 13))), true],
  ['icmp', 4, 'icmp', '--icmp-type any', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', icmpMsg(42, 7))), true],
  ['icmp', 4, 'icmp', '! --icmp-type any', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', icmpMsg(42, 7))), false],
  ['icmp6', 6, 'icmpv6', '--icmpv6-type echo-request', () => ctxOf(ip6('2001:db8::1', '2001:db8::2', icmpMsg(128, 0, undefined, [], true))), true],
  ['icmp6', 6, 'icmpv6', '! --icmpv6-type echo-request', () => ctxOf(ip6('2001:db8::1', '2001:db8::2', icmpMsg(129, 0, undefined, [], true))), true],
  ['multiport', 4, 'tcp', '--dports 80,443', v4tcp(1, 443), true],
  ['multiport', 4, 'tcp', '--dports 80,443', v4tcp(443, 1), false],
  ['multiport', 4, 'tcp', '--ports 1000:2000,5', v4tcp(1500, 1), true],
  ['multiport', 4, 'tcp', '--ports 1000:2000,5', v4tcp(1, 5), true],
  ['multiport', 4, 'tcp', '! --sports 1000:2000', v4tcp(1500, 1), false],
  ['length', 4, '', '--length 40', v4tcp(1, 2), true],
  ['length', 4, '', '--length 41:', v4tcp(1, 2), false],
  ['length', 4, '', '--length 5:3', v4tcp(1, 2), false],
  ['length', 6, '', '--length 48', () => ctxOf(ip6('2001:db8::1', '2001:db8::2', icmpMsg(128, 0, undefined, [], true))), true],
  ['ttl', 4, '', '--ttl-eq 64', v4tcp(1, 2), true],
  ['ttl', 4, '', '! --ttl-eq 64', v4tcp(1, 2), false],
  ['ttl', 4, '', '--ttl-lt 65', v4tcp(1, 2), true],
  ['ttl', 4, '', '--ttl-gt 64', v4tcp(1, 2), false],
  ['hl', 6, '', '--hl-eq 7', () => ctxOf(ip6('2001:db8::1', '2001:db8::2', udpDgram(1, 2), { hlim: 7 })), true],
  ['iprange', 4, '', '--src-range 10.0.0.0-10.0.0.1', v4tcp(1, 2), true],
  ['iprange', 4, '', '--src-range 10.0.0.2-10.0.0.9', v4tcp(1, 2), false],
  ['iprange', 4, '', '! --dst-range 10.0.0.2-10.0.0.9', v4tcp(1, 2), false],
  ['iprange', 4, '', '--src-range 10.0.0.5-10.0.0.1', v4tcp(1, 2), false],
  ['iprange', 6, '', '--src-range 2001:db8::-2001:db8::1', () => ctxOf(ip6('2001:db8::1', '2001:db8::2', udpDgram(1, 2))), true],
  ['iprange', 6, '', '--dst-range 2001:db8::3-2001:db9::', () => ctxOf(ip6('2001:db8::1', '2001:db8::2', udpDgram(1, 2))), false],
  ['comment', 4, '', '--comment x', v4tcp(1, 2), true],
];

test('matches on parsed packets', (t) => {
  for (const [name, family, proto, opts, mk, want] of MATCHES) {
    const ext = EXT[name] as MatchExtension;
    const inst = ext.check(ext.parse(words(ext, opts), ruleInfo(family, proto)), env(family));
    t.is(inst.match(mk()), want, `${name} ${opts}`);
  }
});

test('mark, connmark and state read the packet and its connection', (t) => {
  const m = mark.check(mark.parse(words(mark, '--mark 0x10/0xf0'), ruleInfo(4)), env());
  const p = new PacketContext();
  p.mark = 0x1f;
  t.true(m.match(p));
  p.mark = 0x2f;
  t.false(m.match(p));
  const st = state.check(state.parse(words(state, '--state ESTABLISHED,RELATED'), ruleInfo(4)), env());
  const notNew = state.check(state.parse(words(state, '! --state NEW'), ruleInfo(4)), env());
  for (const [s, a, b] of [[CtState.NEW, false, false], [CtState.ESTABLISHED, true, true], [CtState.RELATED, true, true], [CtState.INVALID, false, true], [CtState.UNTRACKED, false, true]] as const) {
    p.ctState = s;
    t.is(st.match(p), a, `state ${s}`);
    t.is(notNew.match(p), b, `! NEW ${s}`);
  }
  const cm = connmark.check(connmark.parse(words(connmark, '! --mark 1'), ruleInfo(4)), env());
  p.ct = null;
  t.false(cm.match(p), 'no connection: connmark never matches, even inverted');
});

test('conntrack match: ctstate, ctdir, ctproto, ctorigsrc, ctstatus, ctexpire on tracked flows', (t) => {
  const ct = new Conntrack();
  const m = (o: string) => conntrackMatch.check(conntrackMatch.parse(words(conntrackMatch, o), ruleInfo(4)), env());
  const syn = ctxOf(ip4('10.0.0.1', '10.0.0.2', tcpSeg(1234, 22, SYN)), 0);
  ct.in(syn);
  ct.confirm(syn);
  const synack = ctxOf(ip4('10.0.0.2', '10.0.0.1', tcpSeg(22, 1234, SYN | ACK)), 10);
  ct.in(synack);
  t.true(m('--ctstate ESTABLISHED --ctdir REPLY').match(synack));
  t.false(m('--ctdir ORIGINAL').match(synack));
  t.true(m('--ctdir ORIGINAL').match(syn));
  t.true(m('--ctproto tcp --ctorigsrc 10.0.0.0/24 --ctorigdstport 22 --ctreplsrcport 22').match(synack));
  t.false(m('--ctorigsrc 10.0.0.2').match(synack));
  t.true(m('--ctstatus SEEN_REPLY').match(synack));
  t.false(m('--ctstatus ASSURED').match(synack));
  synack.now = 10;
  t.true(m('--ctexpire 50:60').match(synack), 'SYN_RECV: 60 s');
  const invalid = ctxOf(ip4('10.0.0.9', '10.0.0.2', tcpSeg(1, 2, 0x01)), 0);
  ct.in(invalid);
  t.is(invalid.ctState, CtState.INVALID);
  t.true(m('--ctstate INVALID').match(invalid));
  t.false(m('--ctproto tcp').match(invalid), 'no connection: only --ctstate can match');
});

test('limit: kernel credit arithmetic (HZ 1000), burst then one per period', (t) => {
  t.is(printRate(parseRate('3/min')), '3/min');
  t.is(printRate(parseRate('1/s')), '1/sec');
  t.is(printRate(parseRate('7/min')), '7/min');
  t.is(printRate(parseRate('61/min')), '61/min');
  t.is(printRate(parseRate('1/hour')), '1/hour');
  t.is(user2credits(parseRate('1/s')), 32000, '1 s at HZ 1000 is 1000 jiffies of 32 credits');
  // --limit 1/s --limit-burst 4 (seed 001's syn-flood chain)
  const b = new LimitBucket({ avg: parseRate('1/s'), burst: 4 }, 0);
  const seq = [0, 0, 0, 0, 0, 999, 1000, 1500, 2000, 2000].map((ms) => b.take(ms));
  t.deepEqual(seq, [true, true, true, true, false, false, true, false, true, false]);
  // After a long idle the bucket refills only to the burst.
  t.deepEqual([10_000, 10_000, 10_000, 10_000, 10_000].map((ms) => b.take(ms)), [true, true, true, true, false]);
  // 3/hour default: 5 at once, then one every 20 minutes.
  const d = new LimitBucket({ avg: parseRate('3/hour'), burst: 5 }, 0);
  t.deepEqual([0, 0, 0, 0, 0, 0].map((ms) => d.take(ms)), [true, true, true, true, true, false]);
  t.false(d.take(1_199_999));
  t.true(d.take(1_200_000));
});

test('mac matches only frames with an Ethernet header', (t) => {
  const m = mac.check(mac.parse(words(mac, '--mac-source 02:00:00:00:00:01'), ruleInfo(4)), env());
  const n = mac.check(mac.parse(words(mac, '! --mac-source 02:00:00:00:00:01'), ruleInfo(4)), env());
  const l3 = ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2));
  const frame = Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 1, 8, 0]), l3]);
  const p = ctxOf(frame.subarray(14), 0, 14);
  frame.copy(p.buf, 0, 0, 14);
  p.l2off = 0;
  t.true(m.match(p));
  t.false(n.match(p));
  const tun = ctxOf(l3);
  t.false(m.match(tun));
  t.false(n.match(tun), 'no Ethernet header: no match even with !');
});
