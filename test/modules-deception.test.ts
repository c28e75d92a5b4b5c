/**
 * TARPIT, DELUDE and CHAOS on the module harness: every reply at the byte
 * level, each pre-check's silent drop, option words, placement refusals,
 * save/print, CHAOS's split and settings.
 *
 * The packet table is test/fixtures/deception/cases.json (make-cases.py):
 * each expected reply is built from scratch by scapy from the facts sheet's
 * rules (flags, seq/ack, window, TTL/hop limit, IP ID, TOS, reserved bits,
 * lengths, both checksums), with honeypot's random numbers drawn from the
 * harness's seeded xorshift reproduced in Python.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { Hook, Verdict, type Family } from '../xt/packet.js';
import TARPIT from '../modules/TARPIT.js';
import DELUDE from '../modules/DELUDE.js';
import CHAOS, { CHAOS_DEFAULTS } from '../modules/CHAOS.js';
import REJECT from '../modules/REJECT.js';
import { XtError, type TargetExtension } from '../xt/extension.js';
import { NfError } from '../router/netfilter/errors.js';
import { XtHarness, type Place } from './helpers/xt-harness.js';
import { ip4, ip6, tcpSeg, udpDgram } from './modules-fixtures.js';

interface ReplyCase {
  name: string;
  family: Family;
  target: 'TARPIT' | 'DELUDE';
  words: string;
  hook: 'INPUT' | 'FORWARD';
  before: string;
  after: string | null;
}

const cases = JSON.parse(readFileSync(new URL('./fixtures/deception/cases.json', import.meta.url), 'utf8')) as ReplyCase[];
const EXT = { TARPIT, DELUDE } as const;
const DECEIVERS = [TARPIT, DELUDE, REJECT] as TargetExtension[];

test('the reply table is there and covers both families, both targets, every mode', (t) => {
  t.true(cases.length >= 80);
  for (const fam of [4, 6]) {
    for (const words of ['--tarpit', '--honeypot', '--reset']) t.true(cases.some((c) => c.family === fam && c.words === words && c.after !== null), `v${fam} ${words}`);
    t.true(cases.some((c) => c.family === fam && c.target === 'DELUDE' && c.after !== null));
  }
});

for (const c of cases) {
  test(`reply bytes: ${c.name}`, (t) => {
    const h = new XtHarness();
    const place: Place = { family: c.family, chain: c.hook, proto: 'tcp' };
    const inst = h.target(EXT[c.target] as TargetExtension<unknown>, c.words, place);
    const pkt = h.packet(Buffer.from(c.before, 'hex'), { hook: c.hook === 'INPUT' ? Hook.INPUT : Hook.FORWARD });
    t.is(inst.target(pkt), Verdict.DROP, 'the segment itself is always dropped');
    if (c.after === null) {
      t.is(h.services.emitted.length, 0, 'silent');
      return;
    }
    t.is(h.services.emitted.length, 1);
    const e = h.services.emitted[0]!;
    t.is(e.bytes.toString('hex'), c.after);
    t.is(e.how.family, c.family);
    t.is(e.how.ctFrom, pkt, 'attached to the answered segment (nf_ct_attach) and sent through OUTPUT/POSTROUTING');
    t.falsy(e.how.duplicate);
  });
}

test('pre-checks that need the link layer or interface facts: group-addressed frames, subnet broadcast', (t) => {
  for (const ext of [TARPIT, DELUDE]) {
    for (const family of [4, 6] as const) {
      const h = new XtHarness();
      const inst = h.target(ext as TargetExtension<unknown>, '', { family, proto: 'tcp' });
      const bytes = family === 4 ? ip4('198.51.100.2', '203.0.113.2', tcpSeg(1, 2, 0x02)) : ip6('2001:db8:c::2', '2001:db8:5::2', tcpSeg(1, 2, 0x02));
      // The same segment once to our MAC, once to a group MAC (PACKET_BROADCAST / PACKET_MULTICAST).
      for (const [mac, replies] of [[[0x02, 0, 0, 0, 0, 1], 1], [[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 0], [[0x33, 0x33, 0, 0, 0, 1], 0]] as const) {
        h.services.emitted.length = 0;
        const pkt = h.packet(bytes, { headroom: 14 });
        pkt.buf.set(mac, 0);
        pkt.l2off = 0; // as the router sets it for a TAP frame
        t.is(inst.target(pkt), Verdict.DROP);
        t.is(h.services.emitted.length, replies, `${ext.name} v${family} dst MAC ${mac[0].toString(16)}`);
      }
    }
  }
  const h = new XtHarness();
  h.addIface('lan0', ['10.9.0.1/24']);
  const inst = h.target(TARPIT, '', { proto: 'tcp' });
  t.is(inst.target(h.packet(ip4('10.9.0.7', '10.9.0.255', tcpSeg(1, 2, 0x02)), { inIf: 'lan0' })), Verdict.DROP);
  t.is(h.services.emitted.length, 0, 'the in-interface subnet broadcast is a broadcast route');
  t.is(inst.target(h.packet(ip4('10.9.0.7', '10.9.0.1', tcpSeg(1, 2, 0x02)), { inIf: 'lan0' })), Verdict.DROP);
  t.is(h.services.emitted.length, 1, 'its unicast address is answered');
});

test('pre-check: a non-first fragment gets no reply from TARPIT or DELUDE (and is dropped)', (t) => {
  for (const ext of [TARPIT, DELUDE]) {
    const h = new XtHarness();
    const inst = h.target(ext as TargetExtension<unknown>, '', { proto: 'tcp' });
    // Offset 3 (24 bytes in): its first bytes are data, not a TCP header.
    const frag = ip4('198.51.100.2', '203.0.113.2', { proto: 6, bytes: tcpSeg(1, 2, 0x02).bytes, csumAt: -1 }, { frag: 3 });
    t.is(inst.target(h.packet(frag)), Verdict.DROP);
    t.is(h.services.emitted.length, 0, ext.name);
  }
});

test('pre-check: a bad TCP checksum gets no reply, a super-packet\'s partial checksum (csumPartial) does', (t) => {
  for (const ext of [TARPIT, DELUDE]) {
    const h = new XtHarness();
    const inst = h.target(ext as TargetExtension<unknown>, '', { proto: 'tcp' });
    const seg = ip4('198.51.100.2', '203.0.113.2', tcpSeg(4000, 80, 0x18, { seq: 5, ack: 9, payload: [1, 2, 3, 4] }));
    seg.writeUInt16BE(seg.readUInt16BE(36) ^ 0x5555, 36);
    t.is(inst.target(h.packet(seg)), Verdict.DROP);
    t.is(h.services.emitted.length, 0, `${ext.name}: a bad checksum is not answered`);
    const partial = h.packet(seg);
    partial.csumPartial = true;
    t.is(inst.target(partial), Verdict.DROP);
    t.is(h.services.emitted.length, 1, `${ext.name}: a partial checksum is answered (the kernel's nf_ip_checksum does not sum it)`);
  }
});

test('TARPIT is stateless: the same segment gets the same reply whatever came before, and nothing is declared', (t) => {
  const h = new XtHarness();
  const inst = h.target(TARPIT, '', { proto: 'tcp' });
  const ack = ip4('198.51.100.2', '203.0.113.2', tcpSeg(4000, 80, 0x10, { seq: 77, ack: 99 }));
  inst.target(h.packet(ack));
  for (let i = 0; i < 50; i++) inst.target(h.packet(ip4('198.51.100.2', '203.0.113.2', tcpSeg(4000 + i, 80, 0x02, { seq: i }))));
  inst.target(h.packet(ack));
  t.deepEqual(h.services.emitted.at(-1)!.bytes, h.services.emitted[0]!.bytes);
  t.is(h.proc.paths().length, 0);
});

test('honeypot window mask: every one of the 32 draws gives the wire mask the facts sheet lists', (t) => {
  const masks = new Set<number>();
  for (let seed = 1; seed < 400 && masks.size < 32; seed++) {
    const h = new XtHarness({ seed });
    const inst = h.target(TARPIT, '--honeypot', { proto: 'tcp' });
    inst.target(h.packet(ip4('198.51.100.2', '203.0.113.2', tcpSeg(1, 2, 0x10, { win: 0xffff }))));
    masks.add(h.services.emitted[0]!.bytes.readUInt16BE(34));
  }
  const expected = new Set<number>();
  for (let r = 0; r <= 14; r++) expected.add(0xf1ff + (r << 8));
  expected.add(0);
  for (let r = 16; r <= 31; r++) expected.add((r - 15) << 8);
  t.deepEqual([...masks].sort((a, b) => a - b), [...expected].sort((a, b) => a - b));
});

// ---------------------------------------------------------------------------
// Options, save and print (iptables-legacy 1.8.9 + xtables-addons-common's words; differential-deception.test.ts
// runs whole command lines, prefixes included, against them).

const OPTION_ROWS: [string, TargetExtension<any>, string, string | null, string][] = [
  // ext words -> error | save
  ['TARPIT default', TARPIT, '', null, ' --tarpit '],
  ['TARPIT --tarpit', TARPIT, '--tarpit', null, ' --tarpit '],
  ['TARPIT --honeypot', TARPIT, '--honeypot', null, ' --honeypot '],
  ['TARPIT --reset', TARPIT, '--reset', null, ' --reset '],
  ['TARPIT two of them: the last wins', TARPIT, '--honeypot --reset', null, ' --reset '],
  ['TARPIT two of them, other order', TARPIT, '--reset --honeypot', null, ' --honeypot '],
  ['TARPIT repeated', TARPIT, '--tarpit --tarpit', null, ' --tarpit '],
  ['TARPIT ! ignored by its parser', TARPIT, '! --reset', null, ' --reset '],
  ['TARPIT all three', TARPIT, '--tarpit --honeypot --reset', 'TARPIT: only one action can be used at a time', ''],
  ['TARPIT all three with repeats', TARPIT, '--reset --reset --honeypot --tarpit', 'TARPIT: only one action can be used at a time', ''],
  ['TARPIT unknown', TARPIT, '--bogus', 'unknown option "--bogus"', ''],
  ['TARPIT value on a flag', TARPIT, '--tarpit=1', 'unknown option "--tarpit=1"', ''],
  ['DELUDE', DELUDE, '', null, ''],
  ['CHAOS plain', CHAOS, '', null, ''],
  ['CHAOS --delude', CHAOS, '--delude', null, ' --delude '],
  ['CHAOS --tarpit', CHAOS, '--tarpit', null, ' --tarpit '],
  ['CHAOS repeated', CHAOS, '--delude --delude', null, ' --delude '],
  ['CHAOS ! ignored', CHAOS, '! --delude', null, ' --delude '],
  ['CHAOS both', CHAOS, '--delude --tarpit', 'CHAOS: only one of --tarpit or --delude may be specified', ''],
  ['CHAOS both, other order', CHAOS, '--tarpit --delude', 'CHAOS: only one of --tarpit or --delude may be specified', ''],
];

for (const [name, ext, words, error, save] of OPTION_ROWS) {
  test(`options: ${name}`, (t) => {
    const h = new XtHarness({ extensions: DECEIVERS });
    const place: Place = { proto: 'tcp' };
    if (error !== null) {
      const e = t.throws(() => h.parse(ext, words, place));
      t.is(e?.message.replace(/\n$/, ''), error);
      t.is((e as XtError | NfError).status, 2);
      return;
    }
    const p = h.parse(ext, words, place);
    t.is(ext.save(p), save);
    if (ext !== DELUDE) t.is(ext.print!(p), ` -j ${ext.name}${save}`);
  });
}

// Placement: the kernel's x_tables refusals (EINVAL) with the line it logs.
const PLACEMENT_ROWS: [TargetExtension<any>, string, Place, string | null][] = [
  [TARPIT, '', { proto: 'tcp', chain: 'INPUT' }, null],
  [TARPIT, '', { proto: 'tcp', chain: 'FORWARD' }, null],
  [TARPIT, '', { proto: 'tcp', table: 'mangle', chain: 'INPUT' }, null],
  [TARPIT, '', { proto: 'tcp', table: 'raw', chain: 'PREROUTING' }, 'x_tables: ip_tables: TARPIT target: used from hooks PREROUTING, but only usable from INPUT/FORWARD'],
  [TARPIT, '', { proto: 'tcp', chain: 'OUTPUT' }, 'x_tables: ip_tables: TARPIT target: used from hooks OUTPUT, but only usable from INPUT/FORWARD'],
  [TARPIT, '', { proto: 'tcp', chain: 'tp', hooks: [Hook.INPUT, Hook.OUTPUT] }, 'x_tables: ip_tables: TARPIT target: used from hooks OUTPUT, but only usable from INPUT/FORWARD'],
  [TARPIT, '', { family: 6, proto: 'tcp', table: 'mangle', chain: 'POSTROUTING' }, 'x_tables: ip6_tables: TARPIT target: used from hooks POSTROUTING, but only usable from INPUT/FORWARD'],
  [TARPIT, '', { chain: 'INPUT' }, 'x_tables: ip_tables: TARPIT target: only valid for protocol 6'],
  [TARPIT, '', { proto: 'udp', chain: 'INPUT' }, 'x_tables: ip_tables: TARPIT target: only valid for protocol 6'],
  [TARPIT, '', { proto: 'tcp', protoInverted: true, chain: 'INPUT' }, 'x_tables: ip_tables: TARPIT target: only valid for protocol 6'],
  [DELUDE, '', { proto: 'tcp', chain: 'FORWARD' }, null],
  [DELUDE, '', { family: 6, proto: 'tcp', chain: 'INPUT' }, null],
  [DELUDE, '', { proto: 'tcp', table: 'mangle', chain: 'INPUT' }, 'x_tables: ip_tables: DELUDE target: only valid in filter table, not mangle'],
  [DELUDE, '', { proto: 'tcp', chain: 'OUTPUT' }, 'x_tables: ip_tables: DELUDE target: used from hooks OUTPUT, but only usable from INPUT/FORWARD'],
  [DELUDE, '', { chain: 'INPUT' }, 'x_tables: ip_tables: DELUDE target: only valid for protocol 6'],
  [CHAOS, '--delude', { chain: 'OUTPUT' }, null],
  [CHAOS, '--tarpit', { chain: 'INPUT' }, null],
  [CHAOS, '--tarpit', { family: 6, proto: 'udp', chain: 'FORWARD' }, null],
  [CHAOS, '', { table: 'mangle', chain: 'INPUT' }, 'x_tables: ip_tables: CHAOS target: only valid in filter table, not mangle'],
  [CHAOS, '--delude', { table: 'raw', chain: 'PREROUTING' }, 'x_tables: ip_tables: CHAOS target: only valid in filter table, not raw'],
];

for (const [ext, words, place, refusal] of PLACEMENT_ROWS) {
  test(`placement: ${ext.name} ${words} in ${place.table ?? 'filter'} ${place.chain} v${place.family ?? 4} -p ${place.protoInverted ? '! ' : ''}${place.proto ?? 'all'}`, (t) => {
    const h = new XtHarness({ extensions: DECEIVERS });
    if (refusal === null) {
      t.notThrows(() => h.target(ext, words, place));
      return;
    }
    const e = t.throws(() => h.target(ext, words, place), { instanceOf: NfError }) as NfError;
    t.is(e.status, 1);
    t.is(e.message, 'Invalid argument. Run `dmesg\' for more information.');
    t.is(e.detail, refusal);
  });
}

// ---------------------------------------------------------------------------
// CHAOS

/** random() answers from a script; each CHAOS packet draws once or twice. */
function scripted(h: XtHarness, draws: number[]): void {
  let i = 0;
  h.services.random = () => {
    if (i >= draws.length) throw new Error('CHAOS drew more than the script holds');
    return draws[i++]!;
  };
}

const R = CHAOS_DEFAULTS.reject_percentage;
const D = CHAOS_DEFAULTS.delude_percentage;

const CHAOS_ROWS: { name: string; words: string; place: Place; pkt: 'syn' | 'udp' | 'syn6'; draws: number[]; hook?: Hook; icmp: [number, number] | null; reply: 'synack0' | 'synack5' | null }[] = [
  { name: 'draw at the reject threshold: ICMP host-unreachable', words: '--delude', place: { chain: 'INPUT' }, pkt: 'syn', draws: [R], icmp: [3, 1], reply: null },
  { name: 'just above it, second draw at the delude threshold: DELUDE answers', words: '--delude', place: { chain: 'INPUT' }, pkt: 'syn', draws: [R + 1, D], icmp: null, reply: 'synack0' },
  { name: 'second draw above: silently dropped', words: '--delude', place: { chain: 'INPUT' }, pkt: 'syn', draws: [R + 1, D + 1], icmp: null, reply: null },
  { name: '--tarpit hands over to TARPIT in its tarpit mode (window 5)', words: '--tarpit', place: { chain: 'FORWARD' }, pkt: 'syn', draws: [R + 1, 0], icmp: null, reply: 'synack5' },
  { name: 'no variant: one draw only, then drop', words: '', place: { chain: 'INPUT' }, pkt: 'syn', draws: [R + 1], icmp: null, reply: null },
  { name: 'UDP: no second draw', words: '--delude', place: { chain: 'INPUT' }, pkt: 'udp', draws: [R + 1], icmp: null, reply: null },
  { name: 'OUTPUT: no second draw', words: '--delude', place: { chain: 'OUTPUT' }, pkt: 'syn', draws: [0xffffffff], icmp: null, reply: null },
  { name: 'OUTPUT: rejected all the same', words: '--tarpit', place: { chain: 'OUTPUT' }, pkt: 'syn', draws: [0], icmp: [3, 1], reply: null },
  { name: 'IPv6: ICMPv6 address unreachable', words: '--delude', place: { family: 6, chain: 'INPUT' }, pkt: 'syn6', draws: [1], icmp: [1, 3], reply: null },
  { name: 'IPv6: DELUDE answers', words: '--delude', place: { family: 6, chain: 'INPUT' }, pkt: 'syn6', draws: [R + 1, 5], icmp: null, reply: 'synack0' },
];

for (const row of CHAOS_ROWS) {
  test(`CHAOS: ${row.name}`, (t) => {
    const h = new XtHarness({ extensions: DECEIVERS });
    const inst = h.target(CHAOS, row.words, row.place);
    scripted(h, row.draws);
    const bytes = row.pkt === 'syn' ? ip4('198.51.100.2', '203.0.113.2', tcpSeg(1234, 22, 0x02)) : row.pkt === 'udp' ? ip4('198.51.100.2', '203.0.113.2', udpDgram(1, 53, [1])) : ip6('2001:db8:c::2', '2001:db8:5::2', tcpSeg(1234, 22, 0x02));
    const hook = row.place.chain === 'OUTPUT' ? Hook.OUTPUT : row.place.chain === 'FORWARD' ? Hook.FORWARD : Hook.INPUT;
    t.is(inst.target(h.packet(bytes, { hook })), Verdict.DROP);
    t.deepEqual(h.services.icmpErrors.map((e) => [e.type, e.code]), row.icmp ? [row.icmp] : []);
    if (row.reply === null) t.is(h.services.emitted.length, 0);
    else {
      t.is(h.services.emitted.length, 1);
      const r = h.services.emitted[0]!.bytes;
      const tcp = row.place.family === 6 ? 40 : 20;
      t.is(r[tcp + 13], 0x12, 'SYN/ACK');
      t.is(r.readUInt16BE(tcp + 14), row.reply === 'synack5' ? 5 : 0);
    }
  });
}

test('CHAOS with the default thresholds: about 1 % rejected, 1 % deceived, 98 % dropped', (t) => {
  const h = new XtHarness({ extensions: DECEIVERS, seed: 12345 });
  const inst = h.target(CHAOS, '--delude', { chain: 'INPUT' });
  const syn = ip4('198.51.100.2', '203.0.113.2', tcpSeg(1234, 22, 0x02));
  const N = 40_000;
  for (let i = 0; i < N; i++) inst.target(h.packet(syn));
  const rejected = h.services.icmpErrors.length / N;
  const deceived = h.services.emitted.length / N;
  t.true(rejected > 0.007 && rejected < 0.013, `rejected ${rejected}`);
  t.true(deceived > 0.007 && deceived < 0.013, `deceived ${deceived}`);
});

test('CHAOS settings: raw thresholds under extensions.CHAOS, bad values refused at check', (t) => {
  const all = new XtHarness({ extensions: DECEIVERS, settings: { CHAOS: { reject_percentage: 0, delude_percentage: 0xffffffff } } });
  const inst = all.target(CHAOS, '--delude', { chain: 'INPUT' });
  const syn = ip4('198.51.100.2', '203.0.113.2', tcpSeg(1234, 22, 0x02));
  for (let i = 0; i < 100; i++) inst.target(all.packet(syn));
  t.true(all.services.icmpErrors.length <= 2, 'reject only when random() is 0');
  t.true(all.services.emitted.length >= 98, 'delude every time otherwise');
  for (const [settings, msg] of [
    [{ CHAOS: { reject_percentage: -1 } }, /settings\.CHAOS\.reject_percentage: -1: must be an integer 0\.\.4294967295/],
    [{ CHAOS: { delude_percentage: 1.5 } }, /settings\.CHAOS\.delude_percentage: 1\.5/],
    [{ CHAOS: { delude_percentage: '5%' } }, /settings\.CHAOS\.delude_percentage: "5%"/],
    [{ CHAOS: { deluge: 3 } }, /settings\.CHAOS\.deluge: unknown setting/],
  ] as const) {
    const h = new XtHarness({ extensions: DECEIVERS, settings });
    const e = t.throws(() => h.target(CHAOS, '', { chain: 'INPUT' }));
    t.regex(e!.message, msg);
  }
});

test('CHAOS sub-targets are destroyed with it, and need the registry to hold them', (t) => {
  const h = new XtHarness({ extensions: [REJECT] });
  t.throws(() => h.target(CHAOS, '--delude', { chain: 'INPUT' }), { message: /Couldn't load target `DELUDE'/ });
  t.notThrows(() => h.target(CHAOS, '', { chain: 'INPUT' }));
});
