/**
 * fuzzy, ipv4options, length2, iface and gradm as tables (matches-facts.md
 * §5, §6, §7, §9, §10, §17): option words -> save text or upstream's error,
 * and packets built from bytes -> match or not, each edge case of the facts
 * sheet a row.
 */
import test from 'ava';
import fuzzy, { FuzzyController, acceptanceRate } from '../modules/fuzzy.js';
import ipv4options, { recordedOptions } from '../modules/ipv4options.js';
import length2 from '../modules/length2.js';
import iface from '../modules/iface.js';
import gradm from '../modules/gradm.js';
import { Hook } from '../xt/packet.js';
import type { MatchExtension } from '../xt/extension.js';
import { XtHarness, type Place } from './helpers/xt-harness.js';
import { testEngine } from '../router/netfilter/testkit.js';
import { icmpMsg, ip4, ip6, tcpSeg, udpDgram, type L4 } from './modules-fixtures.js';

type OptionRow = [words: string, saveOrError: string, ok: boolean];

function optionTable(t: import('ava').ExecutionContext, ext: MatchExtension<any>, rows: OptionRow[], place: Place = {}) {
  const h = new XtHarness();
  for (const [words, expected, ok] of rows) {
    if (ok) t.is(ext.save(h.parse(ext, words, place)), expected, words);
    else t.is(t.throws(() => h.parse(ext, words, place))?.message, expected, words);
  }
}

// ---------------------------------------------------------------- fuzzy

export const FUZZY_OPTION_ROWS: OptionRow[] = [
  ['', ' --lower-limit 1000  --upper-limit 2000 ', true],
  ['--lower-limit 10 --upper-limit 20', ' --lower-limit 10  --upper-limit 20 ', true],
  ['--upper-limit 0x10', ' --lower-limit 1000  --upper-limit 16 ', true],
  ['--lower-limit 10000000', ' --lower-limit 10000000  --upper-limit 2000 ', true],
  ['--lower-limit 0', 'BAD --lower-limit', false],
  ['--lower-limit 10000001', 'BAD --lower-limit', false],
  ['--upper-limit -5', 'BAD --upper-limit', false],
  ['--upper-limit 5x', 'BAD --upper-limit', false],
  ['! --lower-limit 5', "Can't specify ! --lower-limit", false],
  ['! --upper-limit 5', "Can't specify ! --upper-limit", false],
  ['--lower-limit 5 --lower-limit 6', "Can't specify --lower-limit twice", false],
  ['--upper-limit 5 --upper-limit 6', "Can't specify --upper-limit twice", false],
];

test('fuzzy options', (t) => optionTable(t, fuzzy, FUZZY_OPTION_ROWS));

test('fuzzy kernel check: lower < 3, upper > 10M or lower >= upper is EDOM', (t) => {
  const h = new XtHarness();
  const rows: [string, boolean][] = [['--lower-limit 2 --upper-limit 10', false], ['--lower-limit 3 --upper-limit 4', true], ['--lower-limit 5 --upper-limit 5', false], ['--lower-limit 3000', false], ['--lower-limit 1999', true]];
  for (const [words, ok] of rows) {
    if (ok) t.notThrows(() => h.match(fuzzy, words), words);
    else {
      const e = t.throws(() => h.match(fuzzy, words)) as { message: string; errno?: string; status?: number };
      t.is(e.message, 'xt_fuzzy: bad values, please check.', words);
      t.is(e.errno, 'EDOM');
    }
  }
});

test('fuzzy acceptance: 100 at or below lower, 1 (not 0) at or above upper, integer low() between', (t) => {
  const rows: [rate: number, acceptance: number][] = [[0, 100], [1000, 100], [1001, 99], [1010, 99], [1011, 98], [1500, 50], [1999, 0], [2000, 1], [5000, 1]];
  for (const [rate, a] of rows) t.is(acceptanceRate(rate, 1000, 2000), a, `rate ${rate}`);
});

test('fuzzy controller: first packet estimates, windows over 100 ms, one random byte against floor(2.55 A)', (t) => {
  const c = new FuzzyController(3, 10);
  let draws = 0;
  const byte = (v: number) => () => (draws++, v);
  // First packet at clock 0: estimates (rate 0), acceptance 100, no random byte drawn.
  t.false(c.step(0, 100, byte(255)));
  t.is(c.acceptance, 100);
  t.is(draws, 0);
  // 20 packets in 50 ms: no estimate yet (amount <= 100).
  for (let i = 1; i <= 20; i++) t.false(c.step(50, 100, byte(255)));
  t.is(c.acceptance, 100);
  // At 100 ms exactly: still no estimate (needs > HZ/10).
  t.false(c.step(100, 100, byte(255)));
  // At 101 ms: 22 packets / 101 ms = floor(1000*22/101) = 217 pps >= upper: acceptance 1.
  c.step(101, 100, byte(0));
  t.is(c.meanRate, 217);
  t.is(c.acceptance, 1);
  t.is(c.packetsTotal, 0);
  // Acceptance 1: floor(255 * 1 / 100) = 2, so bytes 0..2 pass, 3.. match.
  t.false(c.step(102, 100, byte(2)));
  t.true(c.step(103, 100, byte(3)));
  // Clock going backwards (32-bit wrap): counters reset, acceptance kept, no estimate.
  c.step(50, 100, byte(3));
  t.is(c.previousTime, 50);
  t.is(c.acceptance, 1);
  // A quiet second later: 1 packet / 1000 ms = 1 pps <= lower: back to 100.
  t.false(c.step(1050, 100, byte(255)));
  t.is(c.acceptance, 100);
});

test('fuzzy: HZ * packets is 32-bit, so more than ~4.29 M packets in one window wraps the estimate', (t) => {
  const c = new FuzzyController(1000, 2000);
  c.step(0, 100, () => 0);
  c.packetsTotal = 4_294_967; // the next packet makes 4 294 968: 1000 * that = 4 294 968 000 = 2^32 + 704
  c.step(200, 100, () => 0);
  t.is(c.meanRate, 3); // floor(704 / 200)
  t.is(c.acceptance, 100);
});

test('fuzzy through the module: a flood is mostly matched, a trickle never; state is per rule', (t) => {
  const h = new XtHarness({ seed: 7 });
  const flood = h.match(fuzzy, '--lower-limit 10 --upper-limit 20');
  const other = h.match(fuzzy, '--lower-limit 10 --upper-limit 20');
  const pkt = () => h.packet(ip4('10.0.0.2', '10.0.1.2', udpDgram(1, 2, [1, 2, 3])));
  let matched = 0;
  // 1000 packets a second for 2 seconds.
  for (let i = 0; i < 2000; i++) {
    h.services.clock = i;
    if (flood.match(pkt())) matched++;
  }
  // After the first >100 ms window the acceptance is 1 %: pass 3/256.
  t.true(matched > 1800, `matched ${matched}`);
  // The other rule saw nothing of it: a packet a second never matches.
  for (let s = 3; s < 10; s++) {
    h.services.clock = s * 1000;
    t.false(other.match(pkt()));
  }
});

// ---------------------------------------------------------------- ipv4options

export const IPV4OPTIONS_OPTION_ROWS: OptionRow[] = [
  ['', ' ', true],
  ['--any', ' --any ', true],
  ['--flags record-route', ' --flags 7 ', true],
  ['--flags lsrr,!ssrr --flags router-alert --any', ' --flags 3,!9,20 --any ', true],
  ['--flags nop,security,timestamp,mtu-probe,mtu-reply,traceroute', ' --flags 1,2,4,11,12,18 ', true],
  ['--flags 0x14,!7', ' --flags !7,20 ', true],
  ['--flags 33', ' --flags 1 ', true],
  ['--flags nop,!nop', ' --flags !1 ', true],
  ['--flags foo', 'ipv4options: Bad option value "foo"', false],
  ['--flags 256', 'ipv4options: Bad option value "256"', false],
  ['--flags 7,', 'ipv4options: Bad option value ""', false],
  ['--flags !!7', 'ipv4options: Bad option value "!7"', false],
  ['--flags Record-Route', 'ipv4options: Bad option value "Record-Route"', false],
  ['--flags 0', 'ipv4options: Option value may not be zero', false],
  ['! --flags 7', 'ipv4options: "--flags" option cannot be inverted', false],
  ['! --any', 'ipv4options: "--any" option cannot be inverted', false],
];

test('ipv4options options', (t) => optionTable(t, ipv4options, IPV4OPTIONS_OPTION_ROWS));

const RR = [0x07, 7, 4, 0, 0, 0, 0];
const TS = [0x44, 8, 5, 0, 0, 0, 0, 0];
const LSRR = [0x83, 7, 4, 10, 0, 0, 1];
const SSRR = [0x89, 7, 4, 10, 0, 0, 1];
const RA = [0x94, 4, 0, 0];
const SEC = [0x82, 4, 0, 0];
const padTo4 = (o: number[]) => [...o, ...new Array((4 - (o.length % 4)) % 4).fill(0)];

test('ipv4options walk: END stops, NOP unrecorded, low 5 bits of the type, bad length stops keeping what was seen', (t) => {
  const rows: [string, number[], number][] = [
    ['none', [], 0],
    ['record route', RR, 1 << 7],
    ['timestamp', TS, 1 << 4],
    ['LSRR 0x83 -> 3', LSRR, 1 << 3],
    ['SSRR 0x89 -> 9', SSRR, 1 << 9],
    ['router alert 0x94 -> 20', RA, 1 << 20],
    ['security 0x82 -> 2', SEC, 1 << 2],
    ['NOPs are not recorded', [1, 1, 1, 1], 0],
    ['NOP then RA', [1, ...RA], 1 << 20],
    ['0x81 (not NOP) sets bit 1', [0x81, 2], 1 << 1],
    ['END stops before RA', [0, ...RA], 0],
    ['length 1 stops the walk', [0x07, 1, 0, 0, ...RA], 0],
    ['length beyond the area stops, keeping RR', [...RR, 0x94, 40, 0, 0], 1 << 7],
    ['RR then RA', [...RR, ...RA], (1 << 7) | (1 << 20)],
  ];
  for (const [name, opts, bits] of rows) {
    const bytes = ip4('10.0.0.2', '10.0.1.2', udpDgram(1, 2), { options: padTo4(opts) });
    t.is(recordedOptions(bytes, 0), bits, name);
  }
});

test('ipv4options match: all-of, any-of, absence, nop never present', (t) => {
  const pkt = (opts: number[]) => ip4('10.0.0.2', '10.0.1.2', udpDgram(1, 2), { options: padTo4(opts) });
  const rows: [string, number[], boolean][] = [
    ['', [], true],
    ['', [...RR], true],
    ['--any', [...RR], false],
    ['--flags record-route', RR, true],
    ['--flags record-route', TS, false],
    ['--flags 7,4', [...RR, ...TS], true],
    ['--flags 7,4', RR, false],
    ['--flags 7,4 --any', RR, true],
    ['--flags 7,4 --any', RA, false],
    ['--flags !7', RA, true],
    ['--flags !7', RR, false],
    ['--flags lsrr,!ssrr', LSRR, true],
    ['--flags lsrr,!ssrr', SSRR, false],
    ['--flags ssrr', SSRR, true],
    ['--flags router-alert', RA, true],
    ['--flags timestamp', TS, true],
    ['--flags nop', [1, 1, 1, 1], false],
    ['--flags !nop', [1, 1, 1, 1], true],
    ['--flags 33', [0x81, 2, 0, 0], true],
  ];
  for (const [words, opts, expected] of rows) t.is(new XtHarness().matches(ipv4options, words, pkt(opts)), expected, `${words || '(none)'} on ${opts.join(',')}`);
});

// ---------------------------------------------------------------- length2

export const LENGTH2_OPTION_ROWS: OptionRow[] = [
  ['--length 10', ' --layer3  --length 10 ', true],
  ['--layer4 ! --length 10:20', ' --layer4  ! --length 10:20 ', true],
  ['--layer5 --length 0x10:4294967295', ' --layer5  --length 16:4294967295 ', true],
  ['--layer7 --length 20:10', ' --layer7  --length 20:10 ', true],
  ['! --layer3 --length 5', ' --layer3  --length 5 ', true],
  ['--layer3', 'length: You must specify "--length"', false],
  ['--length 10 --length 11', 'length: "--length" option may only be specified once', false],
  ['--layer3 --layer4 --length 1', 'length: "--layer*" option may only be specified once', false],
  ['--length 10:', 'length: Bad value for "--length" option: "10:"', false],
  ['--length :10', 'length: Bad value for "--length" option: ":10"', false],
  ['--length 10-20', 'length: Bad value for "--length" option: "10-20"', false],
  ['--length 4294967296', 'length: Bad value for "--length" option: "4294967296"', false],
  ['--length -1', 'length: Bad value for "--length" option: "-1"', false],
];

test('length2 options', (t) => optionTable(t, length2, LENGTH2_OPTION_ROWS));

test('length2 lengths at each layer, IPv4 and IPv6, with the upstream edge cases', (t) => {
  const tcp20 = tcpSeg(1, 2, 0x18, { payload: new Array(20).fill(0x61) }); // 20 header + 20 data
  const tcpOpts = tcpSeg(1, 2, 0x18, { options: [1, 1, 1, 1], payload: new Array(10).fill(0x61) }); // 24 + 10
  const udp = udpDgram(1, 2, new Array(30).fill(0)); // 8 + 30
  const icmp = icmpMsg(8, 0, [0, 1, 0, 1], new Array(12).fill(0)); // 8 + 12
  const gre: L4 = { proto: 47, bytes: new Array(16).fill(0), csumAt: -1 };
  const esp: L4 = { proto: 50, bytes: new Array(24).fill(0), csumAt: -1 };
  const sctp: L4 = { proto: 132, bytes: [0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 20, ...new Array(16).fill(0)], csumAt: -1 };
  const icmp6 = icmpMsg(128, 0, [0, 1, 0, 1], new Array(12).fill(0), true);
  const a4 = (l4: L4, o = {}) => ip4('10.0.0.2', '10.0.1.2', l4, o);
  const a6 = (l4: L4) => ip6('2001:db8::2', '2001:db8:1::2', l4);
  const rows: [string, string, Buffer, boolean, 4 | 6][] = [
    ['v4 layer3 = total length', '--layer3 --length 60', a4(tcp20), true, 4],
    ['v4 layer3 off by one', '--layer3 --length 61', a4(tcp20), false, 4],
    ['v4 layer4 = total - IHL', '--layer4 --length 40', a4(tcp20), true, 4],
    ['v4 layer4 with IP options', '--layer4 --length 40', a4(tcp20, { options: RA }), true, 4],
    ['v4 layer5 TCP = data', '--layer5 --length 20', a4(tcp20), true, 4],
    ['v4 layer5 TCP with options', '--layer5 --length 10', a4(tcpOpts), true, 4],
    ['v4 layer5 UDP', '--layer5 --length 30', a4(udp), true, 4],
    ['v4 layer5 ICMP', '--layer5 --length 12', a4(icmp), true, 4],
    ['v4 layer5 ESP = rest - 8', '--layer5 --length 16', a4(esp), true, 4],
    ['v4 layer5 GRE cannot be measured', '--layer5 --length 0:4294967295', a4(gre), false, 4],
    ['v4 layer5 GRE is false even negated', '--layer5 ! --length 5', a4(gre), false, 4],
    ['v4 layer7 TCP = layer5', '--layer7 --length 20', a4(tcp20), true, 4],
    ['v4 layer7 SCTP walks off the end: false', '--layer7 --length 0:4294967295', a4(sctp), false, 4],
    ['v4 layer5 SCTP = rest - 12', '--layer5 --length 20', a4(sctp), true, 4],
    ['v4 range', '--layer3 --length 50:70', a4(tcp20), true, 4],
    ['v4 inverted range', '--layer3 ! --length 50:70', a4(tcp20), false, 4],
    ['v4 reversed range never matches', '--layer3 --length 70:50', a4(tcp20), false, 4],
    ['v4 reversed range negated always', '--layer3 ! --length 70:50', a4(tcp20), true, 4],
    ['v4 later fragment measured as if it had a TCP header', '--layer5 --length 20', a4(tcp20, { frag: 100 }), true, 4],
    ['v6 layer3 = 40 + payload', '--layer3 --length 80', a6(tcp20), true, 6],
    ['v6 layer4', '--layer4 --length 40', a6(tcp20), true, 6],
    ['v6 layer5 TCP', '--layer5 --length 20', a6(tcp20), true, 6],
    ['v6 layer5 UDP', '--layer5 --length 30', a6(udp), true, 6],
    ['v6 ICMPv6 is not found at layer 4', '--layer4 --length 0:4294967295', a6(icmp6), false, 6],
    ['v6 ICMPv6 not found, even negated', '--layer4 ! --length 1', a6(icmp6), false, 6],
    ['v6 layer4 behind a destination-options header', '--layer4 --length 40', a6({ proto: 60, bytes: [6, 0, 1, 4, 0, 0, 0, 0, ...tcp20.bytes], csumAt: -1 }), true, 6],
    ['v6 AH wins over the TCP behind it: layer5 = rest - 12', '--layer5 --length 44', a6({ proto: 51, bytes: [6, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, ...tcp20.bytes], csumAt: -1 }), true, 6],
  ];
  for (const [name, words, bytes, expected, family] of rows) t.is(new XtHarness().matches(length2, words, bytes, { family }), expected, name);
});

// ---------------------------------------------------------------- iface

export const IFACE_OPTION_ROWS: OptionRow[] = [
  ['--iface tun0 --up', ' --iface tun0 --up ', true],
  ['--iface tun0 --down', ' --iface tun0 ! --up ', true],
  ['--iface tun0 ! --down', ' --iface tun0 --up ', true],
  ['--dev-in --arp ! --promisc', ' --dev-in ! --noarp ! --promisc ', true],
  ['! --dev-out --pointtopoint', ' --dev-out --pointopoint ', true],
  ['--iface eth0 --dormant --lower-up --dynamic --multicast --promisc --noarp --running --pointopoint --loopback --broadcast --up', ' --iface eth0 --up --broadcast --loopback --pointopoint --running --noarp --promisc --multicast --dynamic --lower_up --dormant ', true],
  ['--iface eth0 --lower_up', ' --iface eth0 --lower_up ', true],
  ['--up', 'iface: You must specify an interface', false],
  ['--iface tun0', 'iface: You must specify at least one option', false],
  ['--dev-in', 'iface: You must specify at least one option', false],
  ['--iface eth0.100 --up', 'iface: Invalid interface name!', false],
  ['--iface eth+ --up', 'iface: Invalid interface name!', false],
  ['--iface abcdefghijklmnop --up', 'iface: Invalid interface name!', false],
  ['--iface tun0 --iface tun1 --up', 'iface: Interface name already specified', false],
  ['--dev-in --iface tun1 --up', 'iface: Interface name already specified', false],
  ['--iface tun0 --dev-in --up', 'iface: "--dev-in" option may only be specified once', false],
  ['--dev-in --dev-out --up', 'iface: "--dev-out" option may only be specified once', false],
  ['--iface tun0 --up --down', 'iface: "--up" flag already specified', false],
  ['--iface tun0 --noarp --arp', 'iface: "--noarp" flag already specified', false],
  ['--iface tun0 --lower-up --lower-up', 'iface: "--lower_up" flag already specified', false],
];

test('iface options', (t) => optionTable(t, iface, IFACE_OPTION_ROWS));

test('iface flags from the router interfaces, looked up per packet', (t) => {
  const h = new XtHarness();
  const tunFlags = { up: true, running: true, lowerUp: true, broadcast: false, multicast: true, pointopoint: true, loopback: false, noarp: true, promisc: false, dynamic: false, dormant: false };
  h.addIface('tun0', ['10.0.0.1/24'], { flags: tunFlags });
  h.addIface('tap0', ['10.0.1.1/24'], { kind: 'tap', flags: { ...tunFlags, pointopoint: false, noarp: false, broadcast: true } });
  const bytes = ip4('10.0.0.2', '10.0.1.2', udpDgram(1, 2));
  const at = (words: string, o: { hook?: Hook; inIf?: string | null; outIf?: string | null }) =>
    h.match(iface, words, { chain: 'FORWARD' }).match(h.packet(bytes, { hook: o.hook ?? Hook.FORWARD, inIf: o.inIf, outIf: o.outIf }));
  const rows: [string, { hook?: Hook; inIf?: string | null; outIf?: string | null }, boolean][] = [
    ['--iface tun0 --up --pointopoint --noarp --running --lower-up', {}, true],
    ['--iface tun0 --broadcast', {}, false],
    ['--iface tun0 ! --broadcast --multicast', {}, true],
    ['--iface tun0 --arp', {}, false],
    ['--iface tun0 ! --dormant ! --loopback ! --promisc ! --dynamic', {}, true],
    ['--iface tap0 --broadcast --arp', {}, true],
    ['--iface nosuch ! --up', {}, false],
    ['--dev-in --pointopoint', { inIf: 'tun0', outIf: 'tap0' }, true],
    ['--dev-out --pointopoint', { inIf: 'tun0', outIf: 'tap0' }, false],
    ['--dev-out --broadcast', { inIf: 'tun0', outIf: 'tap0' }, true],
    ['--dev-in ! --up', { inIf: null, outIf: 'tap0', hook: Hook.OUTPUT }, false],
    ['--dev-out --up', { inIf: 'tun0', outIf: null, hook: Hook.PREROUTING }, false],
  ];
  for (const [words, o, expected] of rows) t.is(at(words, o), expected, words);
  // An interface that goes down (or appears) is seen by the next packet, with the same rule.
  const m = h.match(iface, '--iface tun1 --up', { chain: 'FORWARD' });
  t.false(m.match(h.packet(bytes, { hook: Hook.FORWARD })));
  h.addIface('tun1', [], { flags: tunFlags });
  t.true(m.match(h.packet(bytes, { hook: Hook.FORWARD })));
  h.addIface('tun1', [], { flags: { ...tunFlags, up: false, running: false, lowerUp: false } });
  t.false(m.match(h.packet(bytes, { hook: Hook.FORWARD })));
});

// ---------------------------------------------------------------- gradm

export const GRADM_OPTION_ROWS: OptionRow[] = [
  ['', ' --enabled ', true],
  ['--enabled', ' --enabled ', true],
  ['! --enabled', ' --disabled ', true],
  ['--disabled', ' --disabled ', true],
  ['! --disabled', ' --enabled ', true],
  ['--enabled ! --disabled --enabled', ' --enabled ', true],
  ['--enabled --disabled', ' --disabled ', true],
  ['! --enabled ! --disabled', ' --disabled ', true],
  ['--disabled ! --disabled', ' --disabled ', true],
];

test('gradm options: the inverted bit only ever gets set', (t) => optionTable(t, gradm, GRADM_OPTION_ROWS));

test('gradm: RBAC switch from the config, net/xt_gradm, shared by rules, kept across reload', (t) => {
  const bytes = ip6('2001:db8::2', '2001:db8:1::2', udpDgram(1, 2));
  const h = new XtHarness();
  const on = h.match(gradm, '--enabled', { family: 6 });
  const off = h.match(gradm, '--disabled', { family: 6 });
  const pkt = () => h.packet(bytes);
  // No config: an appliance without an RBAC system has it disabled.
  t.false(on.match(pkt()));
  t.true(off.match(pkt()));
  t.is(h.readProc('net/xt_gradm'), 'disabled\n');
  h.writeProc('net/xt_gradm', 'enabled\n');
  t.true(on.match(pkt()));
  t.false(off.match(pkt()));
  t.is(h.readProc('net/xt_gradm'), 'enabled\n');
  t.is(t.throws(() => h.writeProc('net/xt_gradm', 'maybe'))?.message, 'gradm: write "enabled" or "disabled" (or 1 / 0), not "maybe"');
  t.true(on.match(pkt()), 'a refused write changes nothing');
  h.writeProc('net/xt_gradm', '0');
  t.false(on.match(pkt()));

  const configured = new XtHarness({ settings: { gradm: { rbac: true } } });
  t.true(configured.matches(gradm, '', bytes, { family: 6 }));
  t.false(configured.matches(gradm, '! --enabled', bytes, { family: 6 }));
  const bad = new XtHarness({ settings: { gradm: { rbac: 'yes' } } });
  t.is(t.throws(() => bad.match(gradm, ''))?.message, 'gradm: extensions.gradm.rbac must be true or false, not "yes"');
});

// ---------------------------------------------------------------- through the engine's commands

test('length2 without --layerN: accepted with libxt_length2 warning on stderr (layer 3)', async (t) => {
  const e = await testEngine();
  const r = await e.run('iptables -A INPUT -m length2 --length 100:200');
  t.deepEqual(r, { status: 0, stdout: '', stderr: 'iptables: length match: Defaulting to --layer3. Consider specifying it explicitly.\n' });
  const r6 = await e.run('ip6tables -A INPUT -m length2 --layer4 --length 100');
  t.is(r6.stderr, '');
  t.is((await e.run('iptables -S INPUT')).stdout, '-P INPUT ACCEPT\n-A INPUT -m length2 --layer3  --length 100:200 \n');
  // iptables-restore runs the final check per line: one warning per such line.
  const file = '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m length2 --length 1\n-A INPUT -m length2 --layer5 --length 2\n-A INPUT -m length2 ! --length 3\nCOMMIT\n';
  const restored = await e.run('iptables-restore', file);
  t.is(restored.status, 0, restored.stderr);
  t.is(restored.stderr, 'iptables: length match: Defaulting to --layer3. Consider specifying it explicitly.\n'.repeat(2));
});

test('bad input: each extension refuses in its words and nothing loaded is lost (command line and atomic restore)', async (t) => {
  const e = await testEngine();
  const good = [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    '-A FORWARD -p tcp -m ipp2p --bit -j DROP',
    '-A FORWARD -m fuzzy --lower-limit 100 --upper-limit 200 -j DROP',
    '-A FORWARD -m ipv4options --flags lsrr,ssrr --any -j DROP',
    '-A FORWARD -m length2 --layer5 --length 0:10 -j ACCEPT',
    '-A FORWARD -m iface --dev-in ! --up -j DROP',
    '-A FORWARD -m gradm --disabled -j ACCEPT',
    'COMMIT',
    '',
  ].join('\n');
  t.is((await e.run('iptables-restore', good)).status, 0);
  const before = (await e.run('iptables-save')).stdout;
  const bad: [string, number, RegExp][] = [
    ['-m ipp2p --bit --bit', 2, /ipp2p: "--bit" option may only be specified once/],
    ['-m fuzzy --lower-limit 300 --upper-limit 200', 1, /xt_fuzzy: bad values, please check\./],
    ['-m fuzzy --lower-limit 0', 2, /BAD --lower-limit/],
    ['-m ipv4options --flags bogus', 2, /ipv4options: Bad option value "bogus"/],
    ['-m length2 --layer3 --length 1:x', 2, /length: Bad value for "--length" option: "1:x"/],
    ['-m iface --iface eth0.1 --up', 2, /iface: Invalid interface name!/],
    ['-m iface --iface eth0', 2, /iface: You must specify at least one option/],
    ['-m gradm --enabled=yes', 2, /unknown option "--enabled=yes"/],
  ];
  for (const [words, status, message] of bad) {
    const line = await e.run(`iptables -A FORWARD ${words} -j DROP`);
    t.is(line.status, status, words);
    t.regex(line.stderr, message, words);
    const file = good.replace('COMMIT', `-A FORWARD ${words} -j DROP\nCOMMIT`);
    const restored = await e.run('iptables-restore', file);
    t.not(restored.status, 0, `restore with ${words}`);
    t.regex(restored.stderr, message, `restore with ${words}`);
    t.is((await e.run('iptables-save')).stdout, before, `nothing lost after ${words}`);
  }
});
