/**
 * Tables for TEE, IPMARK, CHECKSUM, PROTO, DHCPMAC, dhcpmac and LOGMARK
 * through the module harness (test/helpers/xt-harness.ts): option words to
 * params and save/print text, packets from bytes to verdicts, bytes and
 * marks. DHCPMAC, dhcpmac and PROTO packets come from
 * test/fixtures/xw2a/cases.json, where scapy builds the expected bytes from
 * scratch (make-cases.py); IPMARK marks are the facts sheet's worked values.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { Hook, CtState, Verdict } from '../xt/packet.js';
import { XT_CONTINUE, type MatchExtension, type TargetExtension } from '../xt/extension.js';
import { ConnStatus, type Conn } from '../xt/conn.js';
import { splitLine } from '../router/netfilter/commands.js';
import { XtHarness, type Place } from './helpers/xt-harness.js';
import { ip4, ip6, udpDgram, tcpSeg } from './modules-fixtures.js';
import TEE from '../modules/TEE.js';
import IPMARK from '../modules/IPMARK.js';
import CHECKSUM from '../modules/CHECKSUM.js';
import PROTO, { protoTarget6 } from '../modules/PROTO.js';
import DHCPMAC from '../modules/DHCPMAC_target.js';
import dhcpmac from '../modules/dhcpmac.js';
import LOGMARK from '../modules/LOGMARK.js';

interface FixtureCase {
  kind: 'DHCPMAC' | 'dhcpmac' | 'PROTO';
  name: string;
  rule: string;
  family: 4 | 6;
  hook: string;
  before: string;
  after?: string;
  verdict: 'CONTINUE' | 'DROP';
  match?: boolean;
}

const cases = JSON.parse(readFileSync(new URL('./fixtures/xw2a/cases.json', import.meta.url), 'utf8')) as FixtureCase[];

/** A rule the kernel refuses at insertion: the dmesg line xtr adds (NfError.detail) says why. */
function refused(t: import('ava').ExecutionContext, fn: () => unknown, why: RegExp): void {
  const e = t.throws(fn) as { status?: number; detail?: string } | undefined;
  t.is(e?.status, 1);
  t.regex(e?.detail ?? '', why);
}

/** The extension words of a fixture rule (after `-j NAME` / `-m NAME`) and its place. */
function ruleOf(c: FixtureCase): { words: string[]; place: Place } {
  const w = splitLine(c.rule, 0);
  const at = w.findIndex((x, i) => (x === '-j' || x === '-m') && w[i + 1] === c.kind);
  const p = w.indexOf('-p');
  return {
    words: w.slice(at + 2),
    place: { family: c.family, table: 'mangle', chain: 'FORWARD', proto: p >= 0 ? w[p + 1] : undefined },
  };
}

for (const c of cases) {
  test(`${c.kind}: ${c.name}`, (t) => {
    const h = new XtHarness();
    const { words, place } = ruleOf(c);
    const pkt = h.packet(Buffer.from(c.before, 'hex'), { hook: Hook.FORWARD });
    if (c.kind === 'dhcpmac') {
      const m = h.match(dhcpmac, words, place);
      t.is(m.match(pkt), c.match === true, 'match');
      t.is(pkt.buf.toString('hex'), c.before, 'a match changes nothing');
      return;
    }
    const ext: TargetExtension<any> = c.kind === 'DHCPMAC' ? DHCPMAC : PROTO;
    const tg = h.target(ext, words, place);
    t.is(tg.target(pkt), c.verdict === 'DROP' ? Verdict.DROP : XT_CONTINUE, 'verdict');
    t.is(pkt.buf.subarray(pkt.l3off, pkt.l3off + pkt.l3len).toString('hex'), c.after ?? c.before, 'bytes as scapy built them');
  });
}

test('PROTO keeps the packet context in step: later rules see the new protocol', (t) => {
  const h = new XtHarness();
  const pkt = h.packet(ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2, [1, 2])), { hook: Hook.FORWARD });
  h.target(PROTO, '--proto-set 47', { table: 'mangle', chain: 'FORWARD' }).target(pkt);
  t.is(pkt.proto, 47);
});

test('PROTO IPv6: a header the walk cannot read drops (bytes only: the codec drops such packets before any rule)', (t) => {
  const fixed = (nh: number, plen: number) => {
    const b = new Uint8Array(40 + plen);
    b[0] = 0x60;
    b[4] = plen >> 8;
    b[5] = plen & 255;
    b[6] = nh;
    return b;
  };
  t.is(protoTarget6(fixed(0, 1), 0, 41, false, false), -2, 'hop-by-hop with one byte');
  t.is(protoTarget6(fixed(44, 3), 0, 43, false, false), -2, 'fragment header without its offset');
  t.is(protoTarget6(fixed(44, 3), 0, 43, true, false), 6, 'with --stop-at-frag the fixed header is enough');
  const hbh = fixed(0, 8);
  hbh[40] = 60; // then a destination-options header that is not there
  t.is(protoTarget6(hbh, 0, 48, false, false), -2);
  hbh[40] = 59;
  t.is(protoTarget6(hbh, 0, 48, false, false), 40, 'No Next Header: its byte');
});

// IPMARK: mark = ((addr >> shift) & and) | or, replacing the mark.
const V6 = '2001:db8:45:1d:20d:93ff:fe9b:e443';
const ipmarkRows: [string, 4 | 6, string, string, number][] = [
  ['--addr src --and-mask 0xffff --or-mask 0x10000', 4, '192.168.5.2', '10.0.0.1', 0x10502],
  ['--addr dst --and-mask 0xffff --or-mask 0x10000', 4, '10.0.0.1', '192.168.5.2', 0x10502],
  ['--addr src', 4, '192.168.0.1', '10.0.0.1', 0xc0a80001],
  ['--addr src --shift 8', 4, '192.168.0.1', '10.0.0.1', 0x00c0a800],
  ['--addr src --shift 24 --or-mask 0x100', 4, '192.168.0.1', '10.0.0.1', 0x1c0],
  ['--addr src --shift 31', 4, '192.168.0.1', '10.0.0.1', 1],
  // x86's shift count modulo 32, as the kernel on x86 computes it (docs/compat.md)
  ['--addr src --shift 32', 4, '192.168.0.1', '10.0.0.1', 0xc0a80001],
  ['--addr src --shift 40', 4, '192.168.0.1', '10.0.0.1', 0x00c0a800],
  ['--addr src --and-mask 0', 4, '192.168.0.1', '10.0.0.1', 0],
  ['--addr src --and-mask 0 --or-mask 0xffffffff', 4, '192.168.0.1', '10.0.0.1', 0xffffffff],
  // the facts sheet's IPv6 table (the man page's example uses shift 16 for 0x93ff: wrong)
  ['--addr src --and-mask 0xFFFF', 6, V6, '::1', 0xe443],
  ['--addr src --and-mask 0xFFFF --shift 16', 6, V6, '::1', 0xfe9b],
  ['--addr src --and-mask 0xFFFF --shift 32', 6, V6, '::1', 0x93ff],
  ['--addr src --and-mask 0xFFFF --shift 48', 6, V6, '::1', 0x020d],
  ['--addr src --and-mask 0xFFFF --shift 96', 6, V6, '::1', 0x0db8],
  ['--addr src --and-mask 0xFFFF --shift 112', 6, V6, '::1', 0x2001],
  ['--addr src --shift 4', 6, V6, '::1', 0xffe9be44],
  ['--addr src --shift 100', 6, V6, '::1', 0x020010db],
  ['--addr src --shift 127', 6, V6, '::1', 0],
  ['--addr src --shift 128 --or-mask 7', 6, V6, '::1', 7],
  ['--addr dst', 6, '::1', V6, 0xfe9be443],
];
for (const [words, family, src, dst, mark] of ipmarkRows) {
  test(`IPMARK ${family === 4 ? 'v4' : 'v6'} ${words} ${src} > ${dst}: mark 0x${mark.toString(16)}`, (t) => {
    const h = new XtHarness();
    const bytes = family === 4 ? ip4(src, dst, udpDgram(1, 2)) : ip6(src, dst, udpDgram(1, 2));
    const pkt = h.packet(bytes, { hook: Hook.PREROUTING });
    pkt.mark = 0xdead0000; // replaced, not combined
    t.is(h.target(IPMARK, words, { family, table: 'mangle', chain: 'PREROUTING' }).target(pkt), XT_CONTINUE);
    t.is(pkt.mark, mark);
  });
}

// save / print text per option (upstream's spacing: old-style printers put a space on both sides)
const textRows: [TargetExtension<any> | MatchExtension<any>, string, Place, string, string][] = [
  [IPMARK, '--addr src', { table: 'mangle', chain: 'PREROUTING' }, ' --addr src ', ' -j IPMARK --addr src '],
  [IPMARK, '--addr dst --shift 8 --and-mask 0xff --or-mask 0x10', { table: 'mangle', chain: 'PREROUTING' }, ' --addr dst  --shift 8  --and-mask 0xff  --or-mask 0x10 ', ' -j IPMARK --addr dst  --shift 8  --and-mask 0xff  --or-mask 0x10 '],
  [IPMARK, '--addr src --and-mask 0xffffffff --or-mask 0 --shift 0', { table: 'mangle', chain: 'PREROUTING' }, ' --addr src ', ' -j IPMARK --addr src '],
  [PROTO, '--proto-set 0x11', { table: 'mangle', chain: 'PREROUTING' }, ' --proto-set 17', ' PROTO set to 17'],
  [PROTO, '--proto-set 6 --stop-at-auth --stop-at-frag', { family: 6, table: 'mangle', chain: 'PREROUTING' }, ' --proto-set 6 --stop-at-frag --stop-at-auth', ' PROTO set to 6 stop-at-frag stop-at-auth'],
  [DHCPMAC, '--set-mac ab:cd:ef:0:0:0', { table: 'mangle', chain: 'FORWARD', proto: 'udp' }, ' --set-mac AB:CD:EF:00:00:00/48 ', ' -j DHCPMAC --set-mac AB:CD:EF:00:00:00/48 '],
  [DHCPMAC, '--set-mac ab:cd:ef:0:0:0/24', { table: 'mangle', chain: 'FORWARD', proto: 'udp' }, ' --set-mac AB:CD:EF:00:00:00/24 ', ' -j DHCPMAC --set-mac AB:CD:EF:00:00:00/24 '],
  [dhcpmac, '--mac 0x1:+2:3:4:5:6/0x18', { table: 'mangle', chain: 'FORWARD', proto: 'udp' }, ' --mac 01:02:03:04:05:06/24 ', ' -m dhcpmac --mac 01:02:03:04:05:06/24 '],
  [LOGMARK, '', { table: 'filter', chain: 'INPUT' }, '', ' -j LOGMARK'],
  [LOGMARK, '--log-level 4 --log-prefix ""', { table: 'filter', chain: 'INPUT' }, '', ' -j LOGMARK'],
  [LOGMARK, '--log-level 0x7 --log-prefix "a b"', { table: 'filter', chain: 'INPUT' }, ' --log-level 7  --log-prefix "a b" ', ' -j LOGMARK --log-level 7  --log-prefix "a b" '],
  [TEE, '--gateway 192.0.2.2', { table: 'mangle', chain: 'PREROUTING' }, ' --gateway 192.0.2.2', ' TEE gw:192.0.2.2'],
  [TEE, '--gateway 192.0.2.2 --oif abcdefghijklmnopq', { table: 'filter', chain: 'FORWARD' }, ' --gateway 192.0.2.2 --oif abcdefghijklmno', ' TEE gw:192.0.2.2 oif=abcdefghijklmno'],
  [TEE, '--gateway 192.0.2.2 --oif ""', { table: 'filter', chain: 'FORWARD' }, ' --gateway 192.0.2.2', ' TEE gw:192.0.2.2'],
  [TEE, '--gateway 2001:0db8:6:0::2 --oif eth2', { family: 6, table: 'raw', chain: 'PREROUTING' }, ' --gateway 2001:db8:6::2 --oif eth2', ' TEE gw:2001:db8:6::2 oif=eth2'],
  [CHECKSUM, '--checksum-fill', { table: 'mangle', chain: 'POSTROUTING', proto: 'udp' }, ' --checksum-fill', ' CHECKSUM fill'],
];
for (const [ext, words, place, save, print] of textRows) {
  test(`${ext.name} ${words || '(no options)'}: save and print text`, (t) => {
    const h = new XtHarness();
    const p = h.parse(ext as TargetExtension<unknown>, words, place);
    t.is(ext.save(p), save);
    t.is(ext.print!(p, true), print);
  });
}

test('TEE: one dup() per packet with the gateway and oif, the original unchanged and continuing', (t) => {
  const h = new XtHarness();
  h.addIface('eth2', ['192.0.2.1/24']);
  const bytes = ip4('198.51.100.2', '203.0.113.2', tcpSeg(1000, 80, 0x02), { ttl: 64 });
  for (const [hook, chain] of [[Hook.PREROUTING, 'PREROUTING'], [Hook.FORWARD, 'FORWARD'], [Hook.OUTPUT, 'OUTPUT'], [Hook.POSTROUTING, 'POSTROUTING']] as const) {
    const tg = h.target(TEE, '--gateway 192.0.2.2 --oif eth2', { table: 'mangle', chain });
    const pkt = h.packet(bytes, { hook });
    t.is(tg.target(pkt), XT_CONTINUE);
    t.deepEqual(pkt.buf.subarray(pkt.l3off, pkt.l3off + pkt.l3len), bytes, 'the original is not touched');
    const d = h.services.dups.at(-1)!;
    t.is(d.hook, hook);
    t.deepEqual(d.bytes, bytes);
    t.is(d.how.gateway[0], 0xc0000202);
    t.is(d.how.oif, 'eth2');
  }
  t.is(h.services.dups.length, 4);
  const v6 = h.target(TEE, '--gateway 2001:db8:6::2', { family: 6, table: 'mangle', chain: 'PREROUTING' });
  v6.target(h.packet(ip6('2001:db8:c::2', '2001:db8:5::2', udpDgram(1, 2)), { hook: Hook.PREROUTING }));
  t.deepEqual([...h.services.dups.at(-1)!.how.gateway], [0x20010db8, 0x00060000, 0, 2]);
  t.false('oif' in h.services.dups.at(-1)!.how, 'no --oif: the route to the gateway decides');
  // an --oif no interface has: as none (xt_TEE's oif -1)
  h.target(TEE, '--gateway 192.0.2.2 --oif nosuch0', { table: 'mangle', chain: 'FORWARD' }).target(h.packet(bytes, { hook: Hook.FORWARD }));
  t.false('oif' in h.services.dups.at(-1)!.how);
});

test('TEE: an all-zero gateway is refused at insertion (EINVAL), IPv4 and IPv6', (t) => {
  const h = new XtHarness();
  for (const [family, gw] of [[4, '0.0.0.0'], [6, '::']] as const) {
    const e = t.throws(() => h.target(TEE, `--gateway ${gw}`, { family, table: 'mangle', chain: 'PREROUTING' }));
    t.is((e as { status?: number }).status, 1);
    t.is((e as { errno?: string }).errno, 'EINVAL');
  }
});

test('CHECKSUM: complete packets, right or wrong, pass unchanged; a rule not limited to -p udp gets the kernel\'s one warning', (t) => {
  const h = new XtHarness();
  const good = ip4('10.0.0.1', '10.0.0.2', udpDgram(68, 67, [1, 2, 3]));
  const bad = Buffer.from(good);
  bad[26] ^= 0x55; // a wrong UDP checksum stays wrong, as the kernel leaves a complete packet
  const tg = h.target(CHECKSUM, '--checksum-fill', { table: 'mangle', chain: 'POSTROUTING', proto: 'udp' });
  for (const b of [good, bad]) {
    const pkt = h.packet(b, { hook: Hook.POSTROUTING });
    t.is(tg.target(pkt), XT_CONTINUE);
    t.deepEqual(pkt.buf.subarray(0, b.length), b);
  }
  t.is(h.services.logged.length, 0, '-p udp: no warning');
  h.target(CHECKSUM, '--checksum-fill', { table: 'mangle', chain: 'POSTROUTING' });
  h.target(CHECKSUM, '--checksum-fill', { family: 6, table: 'mangle', chain: 'OUTPUT', proto: 'tcp' });
  t.deepEqual(h.services.logged, [{ level: 4, line: 'CHECKSUM should be avoided.  If really needed, restrict with "-p udp" and only use in OUTPUT' }]);
  refused(t, () => h.target(CHECKSUM, '--checksum-fill', { table: 'filter', chain: 'FORWARD', proto: 'udp' }), /only valid in mangle table/);
});

/** A flow as the Conn view shows it (router/conntrack's entry stands behind it in the router). */
function conn(status: number, mark: number, remainingS: number): Conn {
  const t = { src: new Uint32Array(4), dst: new Uint32Array(4), sport: 1, dport: 2 };
  return { family: 4, proto: 17, orig: t, repl: t, status, mark, remaining: () => remainingS, isReply: () => false };
}

test('LOGMARK: the log line per packet, with and without a flow, at the level asked for', (t) => {
  const h = new XtHarness({ seed: 7 });
  h.addIface('eth0');
  h.addIface('eth1');
  const bytes = ip4('198.51.100.2', '203.0.113.2', udpDgram(1, 2));
  const place = { table: 'mangle', chain: 'FORWARD' } as const;

  const plain = h.target(LOGMARK, '', place);
  const p1 = h.packet(bytes, { hook: Hook.FORWARD, inIf: 'eth1' });
  p1.mark = 0x10;
  t.is(plain.target(p1), XT_CONTINUE);
  t.deepEqual(h.services.logged.at(-1), { level: 4, line: '<4>iif=2 hook=FORWARD nfmark=0x10 secmark=0x0 classify=0x0 ctdir=ORIGINAL ct=NULL ctmark=NULL ctstate=INVALID ctstatus=NONE' });

  const fw = h.target(LOGMARK, '--log-prefix "fw: " --log-level 6', place);
  const ct = conn(ConnStatus.SEEN_REPLY | ConnStatus.ASSURED | ConnStatus.CONFIRMED | ConnStatus.DST_NAT, 0xab, 431999.7);
  const p2 = h.packet(bytes, { hook: Hook.FORWARD, inIf: 'eth0' });
  p2.ct = ct;
  p2.ctState = CtState.ESTABLISHED;
  p2.ctReply = true;
  fw.target(p2);
  const line = h.services.logged.at(-1)!;
  t.is(line.level, 6);
  t.regex(line.line, /^<6>fw: iif=1 hook=FORWARD nfmark=0x0 secmark=0x0 classify=0x0 ctdir=REPLY ct=0x00000000[0-9a-f]{8} ctmark=0xab ctstate=ESTABLISHED,DNAT ctstatus=SEEN_REPLY,ASSURED,CONFIRMED lifetime=431999s$/);
  const id = /ct=(\S+)/.exec(line.line)![1];
  fw.target(p2);
  t.is(/ct=(\S+)/.exec(h.services.logged.at(-1)!.line)![1], id, 'the same flow keeps its id');

  // the first packet of a flow: not yet confirmed, an empty status list
  const p3 = h.packet(bytes, { hook: Hook.PREROUTING });
  p3.ct = conn(ConnStatus.SRC_NAT, 0, 30);
  p3.ctState = CtState.NEW;
  h.target(LOGMARK, '--log-level 0', { table: 'mangle', chain: 'PREROUTING' }).target(p3);
  t.regex(h.services.logged.at(-1)!.line, /^<0>iif=0 hook=PREROUTING nfmark=0x0 secmark=0x0 classify=0x0 ctdir=ORIGINAL ct=0x0{8}[0-9a-f]{8} ctmark=0x0 ctstate=NEW,SNAT ctstatus= lifetime=30s$/);
  t.not(/ct=(\S+)/.exec(h.services.logged.at(-1)!.line)![1], id, 'another flow, another id');

  // RELATED, and an untracked (NOTRACK) packet: ctdir REPLY as IP_CT_UNTRACKED
  const p4 = h.packet(bytes, { hook: Hook.INPUT });
  p4.ct = conn(ConnStatus.EXPECTED | ConnStatus.CONFIRMED, 1, 0);
  p4.ctState = CtState.RELATED;
  h.target(LOGMARK, '--log-level 8', { table: 'filter', chain: 'INPUT' }).target(p4);
  t.is(h.services.logged.at(-1)!.level, 7, 'level 8 logs as debug');
  t.regex(h.services.logged.at(-1)!.line, /^<8>iif=0 hook=INPUT .* ctstate=RELATED ctstatus=EXPECTED,CONFIRMED lifetime=0s$/);
  const p5 = h.packet(bytes, { hook: Hook.OUTPUT });
  p5.notrack = true;
  h.target(LOGMARK, '--log-prefix 12345678901234567890123456789', { table: 'raw', chain: 'OUTPUT' }).target(p5);
  t.is(h.services.logged.at(-1)!.line, '<4>12345678901234567890123456789iif=0 hook=OUTPUT nfmark=0x0 secmark=0x0 classify=0x0 ctdir=REPLY ct=NULL ctmark=NULL ctstate=INVALID ctstatus=NONE');
});

test('placement: mangle-only targets, -p udp for DHCPMAC and dhcpmac, IPv4-only DHCP, stop options IPv6-only', (t) => {
  const h = new XtHarness();
  refused(t, () => h.target(IPMARK, '--addr src', { table: 'filter', chain: 'INPUT' }), /only valid in mangle table, not filter/);
  refused(t, () => h.target(PROTO, '--proto-set 1', { table: 'nat', chain: 'PREROUTING' }), /only valid in mangle table, not nat/);
  refused(t, () => h.target(DHCPMAC, '--set-mac 1:2:3:4:5:6', { table: 'mangle', chain: 'FORWARD' }), /only valid for protocol 17/);
  refused(t, () => h.match(dhcpmac, '--mac 1:2:3:4:5:6', { table: 'mangle', chain: 'FORWARD', proto: 'udp', protoInverted: true }), /only valid for protocol 17/);
  const e = t.throws(() => h.target(PROTO, '--proto-set 1 --stop-at-frag', { table: 'mangle', chain: 'FORWARD' }));
  t.is((e as { errno?: string }).errno, 'EPROTOTYPE');
  t.notThrows(() => h.target(PROTO, '--proto-set 1 --stop-at-frag', { family: 6, table: 'mangle', chain: 'FORWARD' }));
  t.notThrows(() => h.target(LOGMARK, '', { table: 'raw', chain: 'PREROUTING' }));
  t.notThrows(() => h.target(TEE, '--gateway 10.0.0.1', { table: 'nat', chain: 'POSTROUTING' }));
  t.deepEqual(DHCPMAC.families, [4]);
  t.deepEqual(dhcpmac.families, [4]);
});
