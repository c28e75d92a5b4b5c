import test from 'ava';
import { CtState, Hook, PacketContext, type Family } from '../xt/packet.js';
import { XtError, type CheckEnv, type Extension, type MatchExtension, type RuleInfo } from '../xt/extension.js';
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
import { XtHarness } from './helpers/xt-harness.js';
import { ctxOf, icmpMsg, ip4, ip6, tcpSeg, udpDgram, words, MATCH_SAVES as SAVES, MATCH_ERRORS as ERRORS } from './modules-fixtures.js';

const EXT: Record<string, Extension> = { tcp, udp, icmp, icmp6, multiport, state, conntrack: conntrackMatch, limit, mac, mark, connmark, comment, length, ttl, hl, iprange };
const PROTO: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 };

function ruleInfo(family: Family, proto = ''): RuleInfo {
  return { family, table: 'filter', chain: 'INPUT', proto: PROTO[proto] ?? 0, protoInverted: false };
}

const h = new XtHarness();
const ALL_HOOKS = [Hook.PREROUTING, Hook.INPUT, Hook.FORWARD, Hook.OUTPUT, Hook.POSTROUTING];
/** filter INPUT, reachable from every hook: the rows call check() directly (placement is the engine's test). */
function env(family: Family = 4): CheckEnv {
  return h.env({ family, hooks: ALL_HOOKS });
}

test('save text matches iptables-save', (t) => {
  for (const [name, family, proto, opts, saved] of SAVES) {
    const ext = EXT[name] as MatchExtension;
    t.is(ext.save(ext.parse(words(ext, opts), ruleInfo(family, proto))), saved, `${name} ${opts}`);
  }
});

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
    t.is((err as XtError).errno, 'ERANGE', o);
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
  // A reversed udp range never matches; negated, it matches every port (xt_tcpudp's min <= port <= max).
  ['udp', 4, 'udp', '--dport 53:3', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', udpDgram(999, 53))), false],
  ['udp', 4, 'udp', '--dport 53:3', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', udpDgram(999, 3))), false],
  ['udp', 4, 'udp', '! --dport 53:3', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', udpDgram(999, 20))), true],
  ['udp', 4, 'udp', '--sport 70000', () => ctxOf(ip4('10.0.0.1', '10.0.0.2', udpDgram(4464, 53))), true],
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
    const inst = h.match(ext, opts, { family, proto: proto || undefined });
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

test('classifier hints are necessary conditions: every packet a rule matches lies in its describe() ranges', (t) => {
  let checked = 0;
  const inRange = (pkt: PacketContext, r: { field: string; min: number; max: number; inverted: boolean }) => {
    const v = (pkt as unknown as Record<string, number>)[r.field];
    return (v >= r.min && v <= r.max) !== r.inverted;
  };
  for (const [name, family, proto, opts, mk] of MATCHES) {
    const ext = EXT[name] as MatchExtension;
    if (!ext.describe) continue;
    const params = ext.parse(words(ext, opts), ruleInfo(family, proto));
    const ranges = ext.describe(params) ?? [];
    const pkt = mk();
    if (!ext.check(params, env(family)).match(pkt)) continue;
    for (const r of ranges) t.true(inRange(pkt, r), `${name} ${opts}: ${r.field}`);
    checked++;
  }
  t.true(checked > 20);
  const ttlRanges = ttl.describe!(ttl.parse(words(ttl, '--ttl-gt 255'), ruleInfo(4)));
  t.deepEqual(ttlRanges, [{ field: 'ttl', min: 0, max: 255, inverted: true }], 'ttl > 255 can never match');
});
