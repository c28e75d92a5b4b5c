import test from 'ava';
import { CtState, Verdict, type PacketContext } from '../xt/packet.js';
import { Conntrack, ConnEntry, CtStatus, TcpCt, conntrackCommands, formatEntry } from '../router/conntrack.js';
import { ctxOf, icmpMsg, ip4, ip6, tcpSeg, udpDgram } from './modules-fixtures.js';

const SYN = 0x02, ACK = 0x10, FIN = 0x01, RST = 0x04, PSH = 0x08;
const A = '10.0.0.1';
const B = '10.0.0.2';

/** One packet through conntrack as the pipeline runs it: in, then confirm if accepted. */
function pass(ct: Conntrack, bytes: Buffer, now: number): PacketContext {
  const p = ctxOf(bytes, now);
  if (ct.in(p) === Verdict.ACCEPT) ct.confirm(p);
  return p;
}
const c2s = (flags: number, o: { payload?: number[]; sport?: number } = {}) => ip4(A, B, tcpSeg(o.sport ?? 40000, 22, flags, o));
const s2c = (flags: number, o: { payload?: number[]; sport?: number } = {}) => ip4(B, A, tcpSeg(22, o.sport ?? 40000, flags, o));
const entryOf = (p: PacketContext) => p.ct as ConnEntry;

test('TCP handshake, data, close: states, ctstate per packet, ASSURED, kernel timeouts', (t) => {
  const ct = new Conntrack();
  const steps: [Buffer, CtState, TcpCt, number][] = [
    [c2s(SYN), CtState.NEW, TcpCt.SYN_SENT, 120],
    // A retransmitted SYN does not extend the entry (test/differential-tcpwindow.test.ts).
    [c2s(SYN), CtState.NEW, TcpCt.SYN_SENT, 119],
    [s2c(SYN | ACK), CtState.ESTABLISHED, TcpCt.SYN_RECV, 60],
    [c2s(ACK), CtState.ESTABLISHED, TcpCt.ESTABLISHED, 432000],
    [c2s(ACK | PSH, { payload: [1] }), CtState.ESTABLISHED, TcpCt.ESTABLISHED, 432000],
    [s2c(FIN | ACK), CtState.ESTABLISHED, TcpCt.FIN_WAIT, 120],
    [c2s(ACK), CtState.ESTABLISHED, TcpCt.CLOSE_WAIT, 60],
    [c2s(FIN | ACK), CtState.ESTABLISHED, TcpCt.LAST_ACK, 30],
    [s2c(ACK), CtState.ESTABLISHED, TcpCt.TIME_WAIT, 120],
  ];
  let now = 1000;
  for (const [bytes, st, tcp, timeout] of steps) {
    const p = pass(ct, bytes, now);
    t.is(p.ctState, st, String(tcp));
    t.is(entryOf(p).tcpState, tcp);
    t.is(entryOf(p).remaining(now), timeout, `${String(tcp)} timeout`);
    now += 10;
  }
  t.is(ct.count(now), 1);
  const e = ct.entries(now)[0];
  t.true((e.status & CtStatus.ASSURED) !== 0);
  // Expiry is lazy: after TIME_WAIT's 120 s the entry is gone.
  t.is(ct.count(now + 120_000), 0);
});

test('the kernel table: SYN_SENT2 (simultaneous open), RST closes, INVALID events leave no entry', (t) => {
  const ct = new Conntrack();
  pass(ct, c2s(SYN), 0);
  const p = pass(ct, s2c(SYN), 1);
  t.is(entryOf(p).tcpState, TcpCt.SYN_SENT2);
  const r = pass(ct, c2s(RST), 2);
  t.is(entryOf(r).tcpState, TcpCt.CLOSE);
  t.is(entryOf(r).remaining(2), 10);
  // A lone FIN, SYN+FIN, or no flags at all: INVALID, nothing created.
  for (const flags of [FIN, SYN | FIN, 0, SYN | RST]) {
    const q = pass(ct, ip4('10.9.9.9', B, tcpSeg(1, 2, flags)), 3);
    t.is(q.ctState, CtState.INVALID, `flags ${flags}`);
    t.is(q.ct, null);
  }
  t.is(ct.count(3), 1);
});

test('loose pickup: a mid-stream ACK opens an entry as NEW (ESTABLISHED state), capped at 300 s until a reply was seen', (t) => {
  const ct = new Conntrack();
  const p = pass(ct, c2s(ACK), 0);
  t.is(p.ctState, CtState.NEW);
  t.is(entryOf(p).tcpState, TcpCt.ESTABLISHED);
  t.is(entryOf(p).remaining(0), 300);
  const q = pass(ct, s2c(ACK), 1);
  t.is(q.ctState, CtState.ESTABLISHED);
  // The first reply itself still finds no reply seen (test/differential-tcpwindow.test.ts).
  t.is(entryOf(q).remaining(1), 300);
  t.false((entryOf(q).status & CtStatus.ASSURED) !== 0, 'the first reply only marks SEEN_REPLY');
  pass(ct, c2s(ACK), 2);
  t.true((entryOf(q).status & CtStatus.ASSURED) !== 0, 'the next packet in ESTABLISHED assures it');
  t.is(entryOf(q).remaining(2), 432000);
});

test('a reset as the only answer kills the flow; a SYN in TIME_WAIT reopens it as NEW', (t) => {
  const ct = new Conntrack();
  pass(ct, c2s(SYN), 0);
  const r = pass(ct, s2c(RST | ACK), 1);
  t.is(r.ctState, CtState.ESTABLISHED);
  t.is(ct.count(1), 0);
  pass(ct, c2s(SYN, { sport: 9 }), 2);
  t.is(pass(ct, c2s(RST, { sport: 9 }), 3).ctState, CtState.NEW, 'the client giving up before any reply');
  t.is(ct.count(3), 0);
  for (const [b, now] of [[c2s(SYN), 10], [s2c(SYN | ACK), 11], [c2s(ACK), 12], [c2s(FIN | ACK), 13], [s2c(FIN | ACK), 14], [c2s(ACK), 15]] as const) pass(ct, b, now);
  t.is(ct.entries(16)[0].tcpState, TcpCt.TIME_WAIT);
  const again = pass(ct, c2s(SYN), 20);
  t.is(again.ctState, CtState.NEW);
  t.is(entryOf(again).tcpState, TcpCt.SYN_SENT);
  t.is(ct.count(20), 1);
});

test('after resets, as the kernel (test/conntrack-kernel.test.ts): a SYN scan leaves CLOSE for 10 s, a retransmitted SYN after a refusal is NEW', (t) => {
  const ct = new Conntrack();
  // Refused: SYN, RST/ACK. Nothing is left, and the same SYN again is a new flow, not INVALID.
  pass(ct, c2s(SYN), 0);
  pass(ct, s2c(RST | ACK), 1);
  t.is(ct.count(1), 0);
  const again = pass(ct, c2s(SYN), 1000);
  t.is(again.ctState, CtState.NEW);
  t.is(entryOf(again).tcpState, TcpCt.SYN_SENT);
  t.is(ct.count(1000), 1);
  pass(ct, s2c(RST | ACK), 1001);
  t.is(ct.count(1001), 0);

  // Scanned: SYN, SYN/ACK, then the scanner's reset. CLOSE, 10 s, listed without [UNREPLIED].
  pass(ct, c2s(SYN, { sport: 40001 }), 2000);
  t.is(pass(ct, s2c(SYN | ACK, { sport: 40001 }), 2001).ctState, CtState.ESTABLISHED);
  const r = pass(ct, c2s(RST, { sport: 40001 }), 2002);
  t.is(r.ctState, CtState.ESTABLISHED);
  t.is(entryOf(r).tcpState, TcpCt.CLOSE);
  t.is(entryOf(r).remaining(2002), 10);
  t.regex(ct.list(2002), /^tcp {6}6 10 CLOSE src=10\.0\.0\.1 dst=10\.0\.0\.2 sport=40001 dport=22 src=10\.0\.0\.2 dst=10\.0\.0\.1 sport=22 dport=40001 mark=0 use=1\n$/);
  // A new SYN on the same ports while CLOSE replaces the entry: NEW, SYN_SENT.
  const reopened = pass(ct, c2s(SYN, { sport: 40001 }), 5000);
  t.is(reopened.ctState, CtState.NEW);
  t.is(entryOf(reopened).tcpState, TcpCt.SYN_SENT);
  t.not(entryOf(reopened), entryOf(r));
  pass(ct, s2c(SYN | ACK, { sport: 40001 }), 5001);
  pass(ct, c2s(RST, { sport: 40001 }), 5002);
  t.is(ct.count(15_001), 1, 'still there just under 10 s after the reset');
  t.is(ct.count(15_002), 0, 'gone 10 s after the reset');
});

test('a NEW packet that is dropped (never confirmed) leaves no entry', (t) => {
  const ct = new Conntrack();
  const p = ctxOf(c2s(SYN), 0);
  ct.in(p);
  t.is(p.ctState, CtState.NEW);
  t.is(ct.count(0), 0);
  const q = pass(ct, c2s(SYN), 1);
  t.is(q.ctState, CtState.NEW);
  t.is(ct.count(1), 1);
});

test('UDP: 30 s unreplied, replied stays 30 s, 120 s and ASSURED once the stream is older than 2 s', (t) => {
  const ct = new Conntrack();
  const out = () => ip4(A, B, udpDgram(5000, 53));
  const back = () => ip4(B, A, udpDgram(53, 5000));
  const p = pass(ct, out(), 0);
  t.is(p.ctState, CtState.NEW);
  t.is(entryOf(p).remaining(0), 30);
  t.is(pass(ct, out(), 100).ctState, CtState.NEW, 'still unreplied: NEW');
  const r = pass(ct, back(), 200);
  t.is(r.ctState, CtState.ESTABLISHED);
  t.is(entryOf(r).remaining(200), 30);
  t.false((entryOf(r).status & CtStatus.ASSURED) !== 0);
  const s = pass(ct, out(), 2500);
  t.is(s.ctState, CtState.ESTABLISHED);
  t.is(entryOf(s).remaining(2500), 120);
  t.true((entryOf(s).status & CtStatus.ASSURED) !== 0);
  t.is(ct.count(2500 + 120_000), 0);
});

test('ICMP echo: request NEW, reply ESTABLISHED, unsolicited reply INVALID; errors are RELATED or INVALID', (t) => {
  const ct = new Conntrack();
  const req = pass(ct, ip4(A, B, icmpMsg(8, 0, [0x12, 0x34, 0, 1])), 0);
  t.is(req.ctState, CtState.NEW);
  t.is(entryOf(req).remaining(0), 30);
  t.is(pass(ct, ip4(B, A, icmpMsg(0, 0, [0x12, 0x34, 0, 1])), 1).ctState, CtState.ESTABLISHED);
  t.is(pass(ct, ip4(B, A, icmpMsg(0, 0, [0x99, 0x99, 0, 1])), 1).ctState, CtState.INVALID);
  t.is(pass(ct, ip4(B, A, icmpMsg(9, 0)), 1).ctState, CtState.INVALID, 'router advertisement cannot open a flow');
  // A UDP flow, then a port unreachable quoting it from a router on the path.
  pass(ct, ip4(A, B, udpDgram(5000, 53)), 2);
  const quoted = Array.from(ip4(A, B, udpDgram(5000, 53)));
  const rel = pass(ct, ip4('192.0.2.1', A, icmpMsg(3, 3, [0, 0, 0, 0], quoted)), 3);
  t.is(rel.ctState, CtState.RELATED);
  t.is(entryOf(rel).proto, 17);
  const unknown = Array.from(ip4(A, B, udpDgram(5001, 53)));
  t.is(pass(ct, ip4('192.0.2.1', A, icmpMsg(3, 3, [0, 0, 0, 0], unknown)), 4).ctState, CtState.INVALID);
  // Time exceeded quoting the echo request is RELATED to the ICMP flow.
  const q2 = Array.from(ip4(A, B, icmpMsg(8, 0, [0x12, 0x34, 0, 1])));
  t.is(pass(ct, ip4('192.0.2.1', A, icmpMsg(11, 0, [0, 0, 0, 0], q2)), 5).ctState, CtState.RELATED);
  // The error is not a flow of its own.
  t.is(ct.count(5), 2);
});

test('ICMPv6: echo tracked, ND untracked, errors RELATED', (t) => {
  const ct = new Conntrack();
  const a = '2001:db8::1';
  const b = '2001:db8::2';
  t.is(pass(ct, ip6(a, b, icmpMsg(128, 0, [0, 7, 0, 1], [], true)), 0).ctState, CtState.NEW);
  t.is(pass(ct, ip6(b, a, icmpMsg(129, 0, [0, 7, 0, 1], [], true)), 1).ctState, CtState.ESTABLISHED);
  const ns = pass(ct, ip6(a, 'ff02::1:ff00:2', icmpMsg(135, 0, [0, 0, 0, 0], new Array(16).fill(0), true)), 2);
  t.is(ns.ctState, CtState.UNTRACKED);
  pass(ct, ip6(a, b, udpDgram(7, 9)), 3);
  const quoted = Array.from(ip6(a, b, udpDgram(7, 9)));
  t.is(pass(ct, ip6('2001:db8::ff', a, icmpMsg(1, 4, [0, 0, 0, 0], quoted, true)), 4).ctState, CtState.RELATED);
});

test('generic protocols: addresses only, 600 s; notrack gives UNTRACKED; later fragments are INVALID', (t) => {
  const ct = new Conntrack();
  const gre = { proto: 47, bytes: [0, 0, 0x08, 0x00], csumAt: -1 };
  const p = pass(ct, ip4(A, B, gre), 0);
  t.is(p.ctState, CtState.NEW);
  t.is(entryOf(p).remaining(0), 600);
  t.is(pass(ct, ip4(B, A, gre), 1).ctState, CtState.ESTABLISHED);
  const n = ctxOf(c2s(SYN), 2);
  n.notrack = true;
  ct.in(n);
  t.is(n.ctState, CtState.UNTRACKED);
  t.is(n.ct, null);
  const frag = ctxOf(ip4(A, B, udpDgram(1, 2, [1, 2, 3, 4, 5, 6, 7, 8]), { frag: 2 }), 3);
  ct.in(frag);
  t.is(frag.ctState, CtState.INVALID, 'a later fragment whose first fragment was never seen');
});

test('later fragments take the state of their datagram\'s first fragment', (t) => {
  const ct = new Conntrack();
  pass(ct, ip4(A, B, udpDgram(5000, 53)), 0);
  // The answer comes back in two fragments (IP ID 77).
  const first = pass(ct, ip4(B, A, udpDgram(53, 5000, new Array(16).fill(1)), { id: 77, mf: true }), 10);
  t.is(first.ctState, CtState.ESTABLISHED);
  const second = pass(ct, ip4(B, A, { proto: 17, bytes: new Array(8).fill(2), csumAt: -1 }, { id: 77, frag: 3 }), 11);
  t.is(second.ctState, CtState.ESTABLISHED);
  t.is(second.ct, first.ct);
  const other = pass(ct, ip4(B, A, { proto: 17, bytes: new Array(8).fill(2), csumAt: -1 }, { id: 78, frag: 3 }), 12);
  t.is(other.ctState, CtState.INVALID, 'another datagram');
  const late = pass(ct, ip4(B, A, { proto: 17, bytes: new Array(8).fill(2), csumAt: -1 }, { id: 77, frag: 3 }), 40_011);
  t.is(late.ctState, CtState.INVALID, 'after the 30 s reassembly time');
  // IPv6: the fragment header's identification.
  const a6 = '2001:db8::1';
  const b6 = '2001:db8::2';
  pass(ct, ip6(a6, b6, udpDgram(7, 9)), 100);
  const fh = (off: number, more: boolean) => [17, 0, (off >> 5) & 0xff, ((off << 3) & 0xf8) | (more ? 1 : 0), 0, 0, 0x12, 0x34];
  const f1 = ip6(b6, a6, { proto: 44, bytes: [...fh(0, true), 0, 9, 0, 7, 0, 24, 0, 0, ...new Array(8).fill(0)], csumAt: -1 });
  const r1 = pass(ct, f1, 101);
  t.is(r1.ctState, CtState.ESTABLISHED);
  const f2 = ip6(b6, a6, { proto: 44, bytes: [...fh(2, false), ...new Array(8).fill(0)], csumAt: -1 });
  t.is(pass(ct, f2, 102).ctState, CtState.ESTABLISHED);
});

test('table full: early drop of a non-assured entry, else the new flow is refused', (t) => {
  const ct = new Conntrack({ max: 2 });
  // one assured flow
  pass(ct, c2s(SYN), 0);
  pass(ct, s2c(SYN | ACK), 1);
  pass(ct, c2s(ACK), 2);
  // one unreplied UDP flow
  pass(ct, ip4(A, B, udpDgram(1, 1)), 3);
  t.is(ct.count(3), 2);
  const third = pass(ct, ip4(A, B, udpDgram(2, 2)), 4);
  t.is(third.ctState, CtState.NEW);
  t.is(ct.count(4), 2);
  t.is(ct.earlyDrops, 1);
  t.true(ct.entries(4).some((e) => e.orig.sport === 2), 'the new flow got the slot');
  t.false(ct.entries(4).some((e) => e.orig.sport === 1), 'the unreplied one was dropped');
  // Now make the UDP flow assured too: nothing can go, the next new flow is refused.
  pass(ct, ip4(B, A, udpDgram(2, 2)), 5);
  pass(ct, ip4(A, B, udpDgram(2, 2)), 2600);
  const refused = ctxOf(ip4(A, B, udpDgram(3, 3)), 2700);
  t.is(ct.in(refused), Verdict.DROP);
  t.is(ct.tableFullDrops, 1);
});

test('conntrack -L line format, -C count, -F flush', (t) => {
  const ct = new Conntrack();
  pass(ct, c2s(SYN, { sport: 1234 }), 0);
  pass(ct, s2c(SYN | ACK, { sport: 1234 }), 1);
  pass(ct, c2s(ACK, { sport: 1234 }), 2);
  pass(ct, ip4(A, B, icmpMsg(8, 0, [0, 5, 0, 1])), 3);
  pass(ct, ip6('2001:db8::1', '2001:db8::2', udpDgram(7, 9)), 4);
  const now = 500;
  const lines = ct.list(now).split('\n');
  t.is(lines[0], 'tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1234 dport=22 src=10.0.0.2 dst=10.0.0.1 sport=22 dport=1234 [ASSURED] mark=0 use=1');
  t.is(lines[1], 'icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=5 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=5 mark=0 use=1');
  t.is(lines[2], 'udp      17 29 src=2001:db8::1 dst=2001:db8::2 sport=7 dport=9 [UNREPLIED] src=2001:db8::2 dst=2001:db8::1 sport=9 dport=7 mark=0 use=1');
  const cmd = conntrackCommands(ct, () => now).conntrack;
  const l = cmd(['-L', '-f', 'ipv4'], null) as { status: number; stdout: string; stderr: string };
  t.is(l.status, 0);
  t.is(l.stdout.split('\n').filter(Boolean).length, 2);
  t.is(l.stderr, 'conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n');
  t.is((cmd(['-L', '-p', 'udp'], null) as { stdout: string }).stdout.split('\n').filter(Boolean).length, 1);
  t.is((cmd(['-C'], null) as { stdout: string }).stdout, '3\n');
  t.is((cmd(['-X'], null) as { status: number }).status, 2);
  const f = cmd(['-F'], null) as { status: number; stderr: string };
  t.is(f.status, 0);
  t.is(f.stderr, 'conntrack v1.4.7 (conntrack-tools): connection tracking table has been emptied.\n');
  t.is(ct.count(now), 0);
  const e = new ConnEntry();
  e.proto = 47;
  t.is(formatEntry(e, 0), 'unknown  47 0 src=0.0.0.0 dst=0.0.0.0 [UNREPLIED] src=0.0.0.0 dst=0.0.0.0 mark=0 use=1');
});

test('per-packet lookups find the right flow among many (numeric hash, both directions)', (t) => {
  const ct = new Conntrack({ max: 5000 });
  for (let i = 0; i < 3000; i++) pass(ct, ip4(A, B, udpDgram(10000 + i, 53)), i);
  for (let i = 0; i < 3000; i += 7) {
    const r = pass(ct, ip4(B, A, udpDgram(53, 10000 + i)), 4000);
    t.is(entryOf(r).orig.sport, 10000 + i);
    t.is(r.ctState, CtState.ESTABLISHED);
  }
  t.is(ct.count(4000), 3000);
});
