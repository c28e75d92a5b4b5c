import test from 'ava';
import { Hook, PacketContext, Verdict, type Family, type InterfaceRef } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type CheckEnv, type TargetExtension, type RuleInfo } from '../xt/extension.js';
import REJECT from '../modules/REJECT.js';
import LOG, { formatLogLine } from '../modules/LOG.js';
import MARK from '../modules/MARK_target.js';
import CONNMARK from '../modules/CONNMARK_target.js';
import NOTRACK from '../modules/NOTRACK.js';
import CT from '../modules/CT.js';
import { ConnEntry } from '../router/conntrack.js';
import { verifies, sum16, fold, pseudoSum4, pseudoSum6 } from '../dataplane/checksum.js';
import { XtHarness } from './helpers/xt-harness.js';
import { ctxOf, icmpMsg, ip4, ip6, tcpSeg, udpDgram, words, TARGET_SAVES as SAVES } from './modules-fixtures.js';

const PROTO: Record<string, number> = { tcp: 6, udp: 17 };
function ruleInfo(family: Family, proto = '', table: RuleInfo['table'] = 'filter'): RuleInfo {
  return { family, table, chain: 'INPUT', proto: PROTO[proto] ?? 0, protoInverted: false };
}

/** A fresh harness per call (fresh named state and recordings), filter INPUT. */
function envWith(family: Family = 4) {
  const h = new XtHarness();
  const env: CheckEnv = h.env({ family });
  return {
    env,
    /** What the targets emitted (bytes, family, EmitOptions). */
    sent: h.services.emitted,
    /** ICMP errors asked of the router (services.icmpError): the packet's bytes and hook, type, code, info. */
    errors: h.services.icmpErrors,
    /** Log lines as [level, line]. */
    get logs(): [number, string][] {
      return h.services.logged.map((l) => [l.level, l.line]);
    },
  };
}

function target(ext: TargetExtension<any>, family: Family, proto: string, opts: string, table: RuleInfo["table"] = "filter"): any {
  return ext.parse(words(ext, opts), ruleInfo(family, proto, table));
}

test('target save text matches iptables-save', (t) => {
  for (const [ext, fam, proto, table, opts, saved] of SAVES) {
    t.is(ext.save(target(ext, fam, proto, opts, table)), saved, `${ext.name} ${opts}`);
  }
});

const ERRORS: [TargetExtension, Family, string, string][] = [
  [REJECT, 4, '--reject-with foo', 'unknown reject type "foo"'],
  [REJECT, 6, '--reject-with icmp-port-unreachable', 'unknown reject type "icmp-port-unreachable"'],
  [LOG, 4, '--log-level 9', 'log level "9" unknown\n'],
  [LOG, 4, '--log-level EMERG', 'log level "EMERG" unknown\n'],
  [LOG, 4, '--log-level warn', 'log level "warn" unknown\n'],
  [LOG, 4, '--log-prefix ""', 'Argument must have a minimum length of 1 characters\n'],
  [MARK, 4, '', 'MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required'],
  [MARK, 4, '--set-mark 1 --or-mark 2', 'MARK: option "--set-mark" cannot be used together with "--or-mark".\n'],
  [CONNMARK, 4, '', 'CONNMARK target: No operation specified'],
  [CT, 4, '--zone 1', 'CT: option "--zone" is not supported by xtr (no conntrack helpers, zones, events or timeout policies)'],
];

test('target parse errors', (t) => {
  for (const [ext, fam, opts, msg] of ERRORS) {
    const err = t.throws(() => target(ext, fam, '', opts), { instanceOf: XtError }, `${ext.name} ${opts}`);
    t.is(err?.message, msg);
  }
  const { env } = envWith();
  const noTcp = t.throws(() => REJECT.check(target(REJECT, 4, '', '--reject-with tcp-reset'), env), { instanceOf: XtError });
  t.is((noTcp as XtError).status, 1, 'tcp-reset without -p tcp is refused by the kernel check');
  t.deepEqual(REJECT.tables, ['filter']);
  t.deepEqual(REJECT.hooks, [Hook.INPUT, Hook.FORWARD, Hook.OUTPUT]);
  t.deepEqual(NOTRACK.tables, ['raw']);
  t.deepEqual(CT.tables, ['raw']);
});

// The ICMP error itself (its bytes, source address, the one rate limiter,
// never about an ICMP error) is the router's icmpError, as icmp_send is the
// kernel's: test/reject-router.test.ts checks it through the real router,
// test/differential-reject.test.ts against the kernel.
test('REJECT icmp-*: asks the router for the ICMP error about the packet (type, code, info 0), DROP', (t) => {
  const { env, sent, errors } = envWith();
  const inst = REJECT.check(target(REJECT, 4, 'udp', ''), env);
  const orig = ip4('10.0.0.1', '10.0.0.2', udpDgram(5000, 53, [1, 2, 3, 4]), { tos: 0x10, ttl: 60 });
  const pkt = ctxOf(orig);
  pkt.hook = Hook.FORWARD;
  t.is(inst.target(pkt), Verdict.DROP);
  t.is(sent.length, 0, 'nothing emitted by REJECT itself');
  t.deepEqual(
    errors.map((e) => ({ pkt: e.pkt, family: e.family, hook: e.hook, type: e.type, code: e.code, info: e.info })),
    [{ pkt: orig, family: 4, hook: Hook.FORWARD, type: 3, code: 3, info: 0 }],
    'about the packet as it is, at its hook (the router picks the source from them)',
  );
  // Every type gives its code.
  const rows: [Family, string, number, number][] = [
    [4, 'icmp-net-unreachable', 3, 0],
    [4, 'icmp-host-unreachable', 3, 1],
    [4, 'icmp-proto-unreachable', 3, 2],
    [4, 'icmp-net-prohibited', 3, 9],
    [4, 'icmp-host-prohibited', 3, 10],
    [4, 'icmp-admin-prohibited', 3, 13],
    [6, 'icmp6-no-route', 1, 0],
    [6, 'icmp6-adm-prohibited', 1, 1],
    [6, 'icmp6-addr-unreachable', 1, 3],
    [6, 'icmp6-port-unreachable', 1, 4],
    [6, 'icmp6-policy-fail', 1, 5],
    [6, 'icmp6-reject-route', 1, 6],
  ];
  for (const [family, name, type, code] of rows) {
    const s = envWith(family);
    const p = ctxOf(family === 4 ? orig : ip6('2001:db8::1', '2001:db8::2', udpDgram(5000, 53, [1, 2])));
    t.is(REJECT.check(target(REJECT, family, '', `--reject-with ${name}`), s.env).target(p), Verdict.DROP, name);
    t.deepEqual(s.errors.map((e) => [e.type, e.code, e.info]), [[type, code, 0]], name);
  }
});

test('REJECT asks for nothing about a TCP/UDP packet with a bad checksum or a non-first fragment (nf_reject), and sends no RST for them', (t) => {
  const { env, sent, errors } = envWith();
  const inst = REJECT.check(target(REJECT, 4, '', ''), env);
  const bad = ip4('10.0.0.1', '10.0.0.2', udpDgram(5000, 53, [1, 2]));
  bad[26] ^= 0xff;
  t.is(inst.target(ctxOf(bad)), Verdict.DROP);
  const bad6 = ip6('2001:db8::1', '2001:db8::2', udpDgram(5000, 53, [1, 2]));
  bad6[46] ^= 0xff;
  t.is(REJECT.check(target(REJECT, 6, '', ''), envWith(6).env).target(ctxOf(bad6)), Verdict.DROP);
  t.is(inst.target(ctxOf(ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2, [0, 0, 0, 0, 0, 0, 0, 0]), { frag: 3 }))), Verdict.DROP);
  const rst = REJECT.check(target(REJECT, 4, 'tcp', '--reject-with tcp-reset'), env);
  const badTcp = ip4('10.0.0.1', '10.0.0.2', tcpSeg(40000, 22, 0x02));
  badTcp[36] ^= 0xff;
  t.is(rst.target(ctxOf(badTcp)), Verdict.DROP);
  t.is(rst.target(ctxOf(ip4('10.0.0.1', '10.0.0.2', tcpSeg(40000, 22, 0x02, { payload: [1, 2, 3, 4, 5, 6, 7, 8] }), { frag: 3 }))), Verdict.DROP);
  t.is(errors.length, 0);
  t.is(sent.length, 0);
  // A good checksum and a UDP checksum of 0 (none, IPv4) are answered.
  t.is(inst.target(ctxOf(ip4('10.0.0.1', '10.0.0.2', udpDgram(5000, 53, [1, 2])))), Verdict.DROP);
  const noSum = ip4('10.0.0.1', '10.0.0.2', udpDgram(5000, 53, [1, 2]));
  noSum.writeUInt16BE(0, 26);
  t.is(inst.target(ctxOf(noSum)), Verdict.DROP);
  t.is(errors.length, 2);
  // A super-packet read with offloads holds only the pseudo-header sum (CHECKSUM_PARTIAL): answered, as
  // the kernel's skb_csum_unnecessary lets it through; the same bytes without the mark are not.
  const partial = ip4('10.0.0.1', '10.0.0.2', tcpSeg(40000, 22, 0x18, { payload: [1, 2, 3, 4] }));
  partial.writeUInt16BE(0x1234, 36);
  t.is(inst.target(ctxOf(partial)), Verdict.DROP);
  t.is(errors.length, 2, 'not marked partial: a bad checksum');
  const marked = ctxOf(partial);
  marked.csumPartial = true;
  t.is(inst.target(marked), Verdict.DROP);
  t.is(errors.length, 3, 'marked partial: answered');
});

test('REJECT tcp-reset: RST seq/ack rules and checksums (v4 and v6)', (t) => {
  const { env, sent } = envWith();
  const inst = REJECT.check(target(REJECT, 4, 'tcp', '--reject-with tcp-reset'), env);
  // SYN without ACK: RST|ACK, seq 0, ack = seq + 1
  inst.target(ctxOf(ip4('10.0.0.1', '10.0.0.2', tcpSeg(40000, 22, 0x02, { seq: 1000 }))));
  // ACK with 5 bytes: RST, seq = their ack, no ACK flag
  inst.target(ctxOf(ip4('10.0.0.1', '10.0.0.2', tcpSeg(40000, 22, 0x18, { seq: 2000, ack: 777, payload: [1, 2, 3, 4, 5] }))));
  // FIN + 3 bytes without ACK: ack = seq + 1 + 3
  inst.target(ctxOf(ip4('10.0.0.1', '10.0.0.2', tcpSeg(40000, 22, 0x01, { seq: 0xffffffff, payload: [1, 2, 3] }))));
  // a RST is never answered
  inst.target(ctxOf(ip4('10.0.0.1', '10.0.0.2', tcpSeg(40000, 22, 0x04))));
  t.is(sent.length, 3);
  t.true(sent.every((e) => e.how.ctFrom !== undefined && e.family === 4), 'each RST attached to the flow of the segment it answers (nf_ct_attach)');
  const rows = sent.map(({ bytes: r }) => ({ sport: r.readUInt16BE(20), dport: r.readUInt16BE(22), seq: r.readUInt32BE(24), ack: r.readUInt32BE(28), flags: r[33], win: r.readUInt16BE(34), df: (r.readUInt16BE(6) & 0x4000) !== 0, ttl: r[8], ok: fold(sum16(r, 20, 20, pseudoSum4(r.readUInt32BE(12), r.readUInt32BE(16), 6, 20))) === 0xffff && verifies(r, 0, 20) }));
  t.deepEqual(rows[0], { sport: 22, dport: 40000, seq: 0, ack: 1001, flags: 0x14, win: 0, df: true, ttl: 64, ok: true });
  t.deepEqual(rows[1], { sport: 22, dport: 40000, seq: 777, ack: 0, flags: 0x04, win: 0, df: true, ttl: 64, ok: true });
  t.deepEqual(rows[2], { sport: 22, dport: 40000, seq: 0, ack: 3, flags: 0x14, win: 0, df: true, ttl: 64, ok: true });

  const s6 = envWith(6);
  const inst6 = REJECT.check(target(REJECT, 6, 'tcp', '--reject-with tcp-reset'), s6.env);
  inst6.target(ctxOf(ip6('2001:db8::1', '2001:db8::2', tcpSeg(1, 80, 0x02, { seq: 5 }))));
  t.is(s6.sent[0].family, 6);
  const r6 = s6.sent[0].bytes;
  t.is(r6.length, 60);
  t.is(r6[6], 6);
  t.is(r6[7], 64);
  t.is(r6[53], 0x14);
  t.is(r6.readUInt32BE(48), 6);
  t.is(fold(sum16(r6, 40, 20, pseudoSum6(r6, 8, 6, 20))), 0xffff);
});

test('REJECT IPv6 default: ICMPv6 port unreachable (1/4)', (t) => {
  const { env, errors } = envWith(6);
  const inst = REJECT.check(target(REJECT, 6, '', ''), env);
  const orig = ip6('2001:db8::1', '2001:db8::2', udpDgram(1, 2, [9, 9]));
  t.is(inst.target(ctxOf(orig)), Verdict.DROP);
  t.deepEqual(errors.map((e) => [e.pkt, e.family, e.type, e.code, e.info]), [[orig, 6, 1, 4, 0]]);
});

test('LOG: kernel line format for TCP, UDP, ICMP with quoted header, IPv6, MAC and options', (t) => {
  const tun: InterfaceRef = { name: 'tun0', index: 1, kind: 'tun', mtu: 1500, mac: null };
  const p = ctxOf(ip4('10.0.0.1', '10.0.0.2', tcpSeg(1234, 22, 0x02, { seq: 7, win: 64240, options: [2, 4, 5, 0xb4] }), { df: true, id: 54321 }));
  p.inIf = tun;
  t.is(formatLogLine(p, 'x ', 0), 'x IN=tun0 OUT= MAC= SRC=10.0.0.1 DST=10.0.0.2 LEN=44 TOS=0x00 PREC=0x00 TTL=64 ID=54321 DF PROTO=TCP SPT=1234 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0 ');
  t.is(formatLogLine(p, '', 0x01 | 0x02), 'IN=tun0 OUT= MAC= SRC=10.0.0.1 DST=10.0.0.2 LEN=44 TOS=0x00 PREC=0x00 TTL=64 ID=54321 DF PROTO=TCP SPT=1234 DPT=22 SEQ=7 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 OPT (020405B4) ');
  const out = ctxOf(ip4('10.0.0.2', '10.0.0.1', udpDgram(53, 5000, [1, 2]), { tos: 0xb8 }));
  out.outIf = { ...tun, name: 'eth1' };
  out.mark = 0x2a;
  t.is(formatLogLine(out, '', 0), 'IN= OUT=eth1 SRC=10.0.0.2 DST=10.0.0.1 LEN=30 TOS=0x18 PREC=0xA0 TTL=64 ID=1 PROTO=UDP SPT=53 DPT=5000 LEN=10 MARK=0x2a ');
  const quoted = ip4('10.0.0.2', '10.0.0.1', udpDgram(53, 5000));
  const err = ctxOf(ip4('10.0.0.9', '10.0.0.2', icmpMsg(3, 3, [0, 0, 0, 0], Array.from(quoted))));
  t.is(formatLogLine(err, '', 0), 'IN= OUT= SRC=10.0.0.9 DST=10.0.0.2 LEN=56 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=ICMP TYPE=3 CODE=3 [SRC=10.0.0.2 DST=10.0.0.1 LEN=28 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=UDP SPT=53 DPT=5000 LEN=8 ] ');
  const ping = ctxOf(ip4('10.0.0.1', '10.0.0.2', icmpMsg(8, 0, [0x12, 0x34, 0, 7])));
  t.regex(formatLogLine(ping, '', 0), /PROTO=ICMP TYPE=8 CODE=0 ID=4660 SEQ=7 $/);
  const v6 = ctxOf(ip6('2001:db8::1', 'fe80::2', icmpMsg(128, 0, [0, 1, 0, 2], [], true), { hlim: 255, tc: 0, flow: 0x12345 }));
  t.is(formatLogLine(v6, '', 0), 'IN= OUT= SRC=2001:0db8:0000:0000:0000:0000:0000:0001 DST=fe80:0000:0000:0000:0000:0000:0000:0002 LEN=48 TC=0 HOPLIMIT=255 FLOWLBL=74565 PROTO=ICMPv6 TYPE=128 CODE=0 ID=1 SEQ=2 ');
  // TAP: the Ethernet header bytes
  const l3 = ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2));
  const e = ctxOf(l3, 0, 14);
  Buffer.from([2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 1, 8, 0]).copy(e.buf, 0);
  e.l2off = 0;
  e.inIf = { ...tun, name: 'tap0', kind: 'tap' };
  t.regex(formatLogLine(e, '', 0), /^IN=tap0 OUT= MAC=02:00:00:00:00:09:02:00:00:00:00:01:08:00 SRC=/);
  t.regex(formatLogLine(e, '', 0x20), /^IN=tap0 OUT= MACSRC=02:00:00:00:00:01 MACDST=02:00:00:00:00:09 MACPROTO=0800 SRC=/);
  // The target logs at its level and lets the packet continue.
  const s = envWith();
  const inst = LOG.check(target(LOG, 4, '', '--log-prefix "INPUT-drop " --log-level info'), s.env);
  t.is(inst.target(p), XT_CONTINUE);
  t.is(s.logs[0][0], 6);
  t.true(s.logs[0][1].startsWith('INPUT-drop IN=tun0 OUT= MAC= SRC=10.0.0.1'));
});

test('MARK, CONNMARK, NOTRACK, CT change marks and tracking as the kernel does', (t) => {
  const { env } = envWith();
  const p = new PacketContext();
  const run = (ext: TargetExtension, opts: string) => ext.check(target(ext, 4, '', opts, 'mangle'), env).target(p);
  p.mark = 0xf0f0;
  t.is(run(MARK, '--set-mark 0x5/0xff'), XT_CONTINUE);
  t.is(p.mark, 0xf005);
  run(MARK, '--and-mark 0xff00');
  t.is(p.mark, 0xf000);
  run(MARK, '--or-mark 0x3');
  t.is(p.mark, 0xf003);
  run(MARK, '--xor-mark 0x1');
  t.is(p.mark, 0xf002);
  run(MARK, '--set-xmark 0x80000000/0x80000000');
  t.is(p.mark, 0x8000f002);
  // CONNMARK without a connection leaves everything alone.
  p.ct = null;
  t.is(run(CONNMARK, '--set-mark 7'), XT_CONTINUE);
  const c = new ConnEntry();
  p.ct = c;
  run(CONNMARK, '--set-mark 0x70/0xf0');
  t.is(c.mark, 0x70);
  p.mark = 0x1234;
  run(CONNMARK, '--save-mark --mask 0xff');
  t.is(c.mark, 0x34);
  p.mark = 0xab00;
  run(CONNMARK, '--restore-mark --nfmask 0xff --ctmask 0xf0');
  t.is(p.mark, 0xab30);
  const n = new PacketContext();
  NOTRACK.check(null, env).target(n);
  t.true(n.notrack);
  const n2 = new PacketContext();
  CT.check(target(CT, 4, '', '', 'raw'), env).target(n2);
  t.false(n2.notrack, 'CT without --notrack does nothing');
  CT.check(target(CT, 4, '', '--notrack', 'raw'), env).target(n2);
  t.true(n2.notrack);
});

test('REJECT leaves rate limiting to the router (one limiter, as icmp_send): every ICMP error is asked for; RSTs are never limited', (t) => {
  const { env, errors } = envWith();
  const inst = REJECT.check(target(REJECT, 4, '', ''), env);
  for (let i = 0; i < 8; i++) {
    const p = ctxOf(ip4('10.7.7.7', '10.0.0.2', udpDgram(1000 + i, 53)), 50_000);
    t.is(inst.target(p), Verdict.DROP);
  }
  t.is(errors.length, 8);
  const rst = envWith();
  const r = REJECT.check(target(REJECT, 4, 'tcp', '--reject-with tcp-reset'), rst.env);
  const pkts = Array.from({ length: 8 }, (_, i) => ctxOf(ip4('10.7.7.8', '10.0.0.2', tcpSeg(1000 + i, 22, 0x02)), 50_000));
  for (const p of pkts) r.target(p);
  t.is(rst.sent.length, 8);
  t.deepEqual(rst.sent.map((e) => e.how.ctFrom), pkts, 'each RST names the packet whose flow it joins');
});

test('CONNMARK: --mask/--ctmask/--nfmask combine with the set operations in the order given, as iptables 1.8.9 takes them', (t) => {
  const { env } = envWith();
  // [options, what iptables-save shows (checked in test/netfilter-diff.test.ts), ctmark before, after]
  const rows: [string, string, number, number][] = [
    // The first two ctmarks were read from /proc/net/nf_conntrack in a namespace.
    ['--set-mark 1 --mask 2', ' --set-xmark 0x1/0x2', 7, 4],
    ['--mask 0x30 --set-mark 0x1', ' --set-xmark 0x1/0xffffffff', 0xf0, 0x1],
    ['--set-mark 1/4 --mask 2', ' --set-xmark 0x1/0x2', 7, 4],
    ['--ctmask 2 --set-xmark 1/4', ' --set-xmark 0x1/0x4', 7, 2],
    ['--set-xmark 1/4 --ctmask 2', ' --set-xmark 0x1/0x2', 7, 4],
    ['--set-xmark 1 --nfmask 2', ' --set-xmark 0x1/0xffffffff', 7, 1],
    ['--and-mark 5 --mask 3', ' --set-xmark 0x0/0x3', 7, 4],
    ['--or-mark 5 --ctmask 3', ' --set-xmark 0x5/0x3', 8, 13],
    ['--mask 2 --save-mark', ' --save-mark --nfmask 0x2 --ctmask 0x2', 0, 0],
  ];
  for (const [opts, saved, before, after] of rows) {
    const params = target(CONNMARK, 4, '', opts, 'mangle');
    t.is(CONNMARK.save(params), saved, opts);
    const p = new PacketContext();
    const c = new ConnEntry();
    c.mark = before;
    p.ct = c;
    CONNMARK.check(params, env).target(p);
    t.is(c.mark, after, `${opts}: ctmark ${before} -> ${after}`);
  }
});

test('REJECT --reject-with: abbreviations in either case pick the first type they begin; echo-reply is refused after a note (IPv4)', (t) => {
  // [family, argument, saved type or the error, the note printed ahead of the error] (iptables-legacy 1.8.9 in a namespace)
  const rows: [Family, string, string, string][] = [
    [4, 'ICMP-NET-UNREACHABLE', 'icmp-net-unreachable', ''],
    [4, 'Tcp-Rst', 'tcp-reset', ''],
    [4, 'icmp-', 'icmp-net-unreachable', ''],
    [4, 'a', 'icmp-admin-prohibited', ''],
    [4, 'h', 'icmp-host-unreachable', ''],
    [4, '', 'icmp-net-unreachable', ''],
    [6, 'a', 'icmp6-adm-prohibited', ''],
    [6, 'p', 'icmp6-port-unreachable', ''],
    [6, '', 'icmp6-no-route', ''],
    [4, 'echo-reply', 'unknown reject type "echo-reply"', '--reject-with echo-reply no longer supported\n'],
    [4, 'echoreply', 'unknown reject type "echoreply"', '--reject-with echo-reply no longer supported\n'],
    [4, 'ECHO-R', 'unknown reject type "ECHO-R"', '--reject-with echo-reply no longer supported\n'],
    [4, 'e', 'unknown reject type "e"', '--reject-with echo-reply no longer supported\n'],
    [4, 'echo-replyx', 'unknown reject type "echo-replyx"', ''],
    [6, 'echo-reply', 'unknown reject type "echo-reply"', ''],
  ];
  for (const [family, arg, want, note] of rows) {
    const opts = [{ name: 'reject-with', value: arg, inverted: false }];
    const what = `${family === 4 ? 'iptables' : 'ip6tables'} --reject-with "${arg}"`;
    if (want.startsWith('unknown')) {
      const err = t.throws(() => REJECT.parse(opts, ruleInfo(family, 'tcp')), { instanceOf: XtError }, what);
      t.is(err?.message, want, what);
      t.is(err?.preface, note, what);
    } else {
      t.is(REJECT.save(REJECT.parse(opts, ruleInfo(family, 'tcp'))), ` --reject-with ${want}`, what);
    }
  }
});
