/**
 * RAWSNAT / RAWDNAT on the module harness: every rewrite as a table row with
 * byte fixtures. The expected packet is built from scratch by the fixture
 * builders (test/modules-fixtures.ts: every checksum computed in full over
 * the new addresses), and the packet the target leaves is also checked by
 * recomputing its IPv4 header and L4 checksums (`checksumsValid`), except
 * where upstream keeps a checksum on purpose (a zero UDP checksum) - never
 * by the incremental code under test.
 */
import test from 'ava';
import { Hook } from '../xt/packet.js';
import { XT_CONTINUE } from '../xt/extension.js';
import RAWSNAT from '../modules/RAWSNAT.js';
import RAWDNAT from '../modules/RAWDNAT.js';
import { XtHarness, type Place } from './helpers/xt-harness.js';
import { icmpMsg, ip4, ip6, tcpSeg, udpDgram, type L4 } from './modules-fixtures.js';
import { finish, pseudoSum4, pseudoSum6, sum16, checksum } from '../dataplane/checksum.js';

const PRE: Place = { table: 'raw', chain: 'PREROUTING' };
const POST: Place = { table: 'rawpost', chain: 'POSTROUTING' };

/** Recomputes every checksum the packet carries; true when each verifies (a zero UDP checksum counts as "none"). */
function checksumsValid(b: Buffer): boolean {
  let l4off: number;
  let proto: number;
  let ps: number;
  let len: number;
  if (b[0] >> 4 === 4) {
    const ihl = (b[0] & 15) * 4;
    if (checksum(b, 0, ihl) !== 0) return false;
    if ((b.readUInt16BE(6) & 0x1fff) !== 0) return true; // a non-first fragment has no L4 header
    l4off = ihl;
    proto = b[9];
    len = b.length - ihl;
    ps = proto === 1 ? 0 : pseudoSum4(b.readUInt32BE(12), b.readUInt32BE(16), proto, len);
  } else {
    l4off = 40;
    proto = b[6];
    len = b.length - 40;
    ps = pseudoSum6(b, 8, proto, len);
  }
  if (proto === 17 && b.readUInt16BE(l4off + 6) === 0) return true;
  if (proto !== 6 && proto !== 17 && proto !== 1 && proto !== 58) return true;
  return finish(sum16(b, l4off, len, ps)) === 0;
}

/** The same bytes with the UDP checksum forced to 0 ("no checksum"). */
function zeroUdp(b: Buffer, l4off: number): Buffer {
  const c = Buffer.from(b);
  c.writeUInt16BE(0, l4off + 6);
  return c;
}

interface Row {
  name: string;
  ext: typeof RAWSNAT;
  words: string;
  place: Place;
  before: Buffer;
  after: Buffer;
  /** The result is expected to verify by full recomputation (false only for upstream's kept zero checksum). */
  valid?: boolean;
}

const syn = tcpSeg(40000, 80, 0x02, { seq: 0x01020304, options: [2, 4, 5, 0xb4] });
const dns = udpDgram(5353, 53, [1, 2, 3, 4, 5]);
const echo4 = icmpMsg(8, 0, [0x12, 0x34, 0, 1], [0x61, 0x62, 0x63]);
const echo6 = icmpMsg(128, 0, [0x12, 0x34, 0, 1], [0x61, 0x62, 0x63], true);
const inner = [...ip4('10.0.0.7', '198.51.100.9', udpDgram(1234, 53, [9, 9]))];
const unreach = icmpMsg(3, 3, [0, 0, 0, 0], inner);
const frag: L4 = { proto: 6, bytes: [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], csumAt: -1 };

const ROWS: Row[] = [
  { name: 'v4 RAWDNAT /24: TCP SYN to the mapped net', ext: RAWDNAT, words: '--to-destination 10.0.0.0/24', place: PRE,
    before: ip4('192.0.2.1', '198.51.100.7', syn), after: ip4('192.0.2.1', '10.0.0.7', syn) },
  { name: 'v4 RAWSNAT /24: the reply leaves from the public net', ext: RAWSNAT, words: '--to-source 198.51.100.0/24', place: POST,
    before: ip4('10.0.0.7', '192.0.2.1', syn), after: ip4('198.51.100.7', '192.0.2.1', syn) },
  { name: 'v4 RAWSNAT full address (no /len = /32): UDP', ext: RAWSNAT, words: '--to-source 203.0.113.5', place: POST,
    before: ip4('10.1.2.3', '192.0.2.1', dns), after: ip4('203.0.113.5', '192.0.2.1', dns) },
  { name: 'v4 host bits of the configured address are ignored past /len', ext: RAWSNAT, words: '--to-source 203.0.113.99/24', place: POST,
    before: ip4('10.1.2.3', '192.0.2.1', dns), after: ip4('203.0.113.3', '192.0.2.1', dns) },
  { name: 'v4 odd length /19 keeps the packet\'s low 13 bits', ext: RAWDNAT, words: '--to-destination 172.16.224.0/19', place: PRE,
    before: ip4('192.0.2.1', '10.9.255.1', syn), after: ip4('192.0.2.1', '172.16.255.1', syn) },
  { name: 'v4 /0 changes nothing', ext: RAWDNAT, words: '--to-destination 1.2.3.4/0', place: PRE,
    before: ip4('192.0.2.1', '10.9.8.7', syn), after: ip4('192.0.2.1', '10.9.8.7', syn) },
  { name: 'v4 already the new address: untouched', ext: RAWSNAT, words: '--to-source 10.0.0.0/8', place: POST,
    before: ip4('10.1.2.3', '192.0.2.1', dns), after: ip4('10.1.2.3', '192.0.2.1', dns) },
  { name: 'v4 UDP checksum 0 stays 0', ext: RAWSNAT, words: '--to-source 203.0.113.0/24', place: POST,
    before: zeroUdp(ip4('10.1.2.3', '192.0.2.1', dns), 20), after: zeroUdp(ip4('203.0.113.3', '192.0.2.1', dns), 20) },
  { name: 'v4 ICMP echo: IP header only (the ICMP checksum has no pseudo-header)', ext: RAWDNAT, words: '--to-destination 10.0.0.0/24', place: PRE,
    before: ip4('192.0.2.1', '198.51.100.7', echo4), after: ip4('192.0.2.1', '10.0.0.7', echo4) },
  { name: 'v4 ICMP error: the embedded packet is not translated (upstream)', ext: RAWSNAT, words: '--to-source 198.51.100.0/24', place: POST,
    before: ip4('10.0.0.7', '192.0.2.1', unreach), after: ip4('198.51.100.7', '192.0.2.1', unreach) },
  { name: 'v4 IP options: TCP found past the options', ext: RAWDNAT, words: '--to-destination 10.0.0.0/24', place: PRE,
    before: ip4('192.0.2.1', '198.51.100.7', syn, { options: [0x94, 4, 0, 0] }), after: ip4('192.0.2.1', '10.0.0.7', syn, { options: [0x94, 4, 0, 0] }) },
  { name: 'v4 non-first fragment: address only, payload intact (upstream patches payload bytes)', ext: RAWDNAT, words: '--to-destination 10.0.0.0/24', place: PRE,
    before: ip4('192.0.2.1', '198.51.100.7', frag, { frag: 10 }), after: ip4('192.0.2.1', '10.0.0.7', frag, { frag: 10 }) },
  { name: 'v4 first fragment: TCP checksum updated', ext: RAWDNAT, words: '--to-destination 10.0.0.0/24', place: PRE,
    before: ip4('192.0.2.1', '198.51.100.7', syn, { mf: true }), after: ip4('192.0.2.1', '10.0.0.7', syn, { mf: true }) },
  { name: 'v4 RAWDNAT in raw OUTPUT (local packets)', ext: RAWDNAT, words: '--to-destination 10.0.0.0/24', place: { table: 'raw', chain: 'OUTPUT' },
    before: ip4('192.0.2.1', '198.51.100.7', dns), after: ip4('192.0.2.1', '10.0.0.7', dns) },
  { name: 'v4 RAWSNAT in raw PREROUTING (any chain of raw)', ext: RAWSNAT, words: '--to-source 10.0.0.0/24', place: PRE,
    before: ip4('192.0.2.1', '198.51.100.7', dns), after: ip4('10.0.0.1', '198.51.100.7', dns) },
  { name: 'v6 RAWDNAT /64: TCP', ext: RAWDNAT, words: '--to-destination fd00:1::/64', place: { ...PRE, family: 6 },
    before: ip6('2001:db8::1', '2001:db8:5::7', syn), after: ip6('2001:db8::1', 'fd00:1::7', syn) },
  { name: 'v6 RAWSNAT /48: UDP', ext: RAWSNAT, words: '--to-source 2001:db8:5::/48', place: { ...POST, family: 6 },
    before: ip6('fd00:1:0:9::7', '2001:db8::1', dns), after: ip6('2001:db8:5:9::7', '2001:db8::1', dns) },
  { name: 'v6 full /128', ext: RAWSNAT, words: '--to-source 2001:db8::99', place: { ...POST, family: 6 },
    before: ip6('fd00::7', '2001:db8::1', dns), after: ip6('2001:db8::99', '2001:db8::1', dns) },
  { name: 'v6 /72 keeps the packet\'s bits 72-127 (upstream replaces the whole third word for 65-95)', ext: RAWDNAT, words: '--to-destination fd00:1:2:3:aa00::/72', place: { ...PRE, family: 6 },
    before: ip6('2001:db8::1', '2001:db8:5:6:77:8899:aabb:ccdd', syn), after: ip6('2001:db8::1', 'fd00:1:2:3:aa77:8899:aabb:ccdd', syn) },
  { name: 'v6 /100 across a word', ext: RAWSNAT, words: '--to-source fd00::abc0:0/100', place: { ...POST, family: 6 },
    before: ip6('2001:db8::1234:5678', '2001:db8::1', syn), after: ip6('fd00::a234:5678', '2001:db8::1', syn) },
  { name: 'v6 ICMPv6 echo: checksum updated (upstream leaves it wrong)', ext: RAWDNAT, words: '--to-destination fd00:1::/64', place: { ...PRE, family: 6 },
    before: ip6('2001:db8::1', '2001:db8:5::7', echo6), after: ip6('2001:db8::1', 'fd00:1::7', echo6) },
  { name: 'v6 UDP checksum 0 stays 0 (as upstream; not a valid IPv6 checksum either way)', ext: RAWSNAT, words: '--to-source 2001:db8:5::/48', place: { ...POST, family: 6 },
    before: zeroUdp(ip6('fd00:1::7', '2001:db8::1', dns), 40), after: zeroUdp(ip6('2001:db8:5::7', '2001:db8::1', dns), 40), valid: true },
];

for (const r of ROWS) {
  test(`${r.ext.name}: ${r.name}`, (t) => {
    const h = new XtHarness();
    const inst = h.target(r.ext, r.words, r.place);
    const hook = r.place.chain === 'PREROUTING' ? Hook.PREROUTING : r.place.chain === 'OUTPUT' ? Hook.OUTPUT : Hook.POSTROUTING;
    const pkt = h.packet(r.before, { hook });
    t.is(inst.target(pkt), XT_CONTINUE);
    const out = Buffer.from(pkt.buf.subarray(pkt.l3off, pkt.l3off + pkt.l3len));
    t.is(out.toString('hex'), r.after.toString('hex'));
    if (r.valid !== false) t.true(checksumsValid(out), 'every checksum verifies when recomputed in full');
    // The context follows the bytes.
    if (r.after[0] >> 4 === 4) {
      t.is(pkt.src4, r.after.readUInt32BE(12));
      t.is(pkt.dst4, r.after.readUInt32BE(16));
    } else {
      t.deepEqual([...pkt.dst6], [0, 1, 2, 3].map((i) => r.after.readUInt32BE(24 + 4 * i)));
      t.deepEqual([...pkt.src6], [0, 1, 2, 3].map((i) => r.after.readUInt32BE(8 + 4 * i)));
    }
  });
}

test('RAWSNAT: a UDP checksum that comes out 0 is written 0xffff', (t) => {
  // Search a payload word whose datagram, after the rewrite, sums to 0 ("no checksum" must not appear).
  let found = false;
  for (let w = 0; w < 65536 && !found; w++) {
    const l4 = udpDgram(1000, 2000, [w >> 8, w & 255]);
    const after = ip4('203.0.113.3', '192.0.2.1', l4);
    after.writeUInt16BE(0, 26);
    if (finish(sum16(after, 20, after.length - 20, pseudoSum4(after.readUInt32BE(12), after.readUInt32BE(16), 17, after.length - 20))) !== 0) continue;
    found = true;
    const h = new XtHarness();
    const pkt = h.packet(ip4('10.1.2.3', '192.0.2.1', l4), { hook: Hook.POSTROUTING });
    h.target(RAWSNAT, '--to-source 203.0.113.0/24', POST).target(pkt);
    t.is(pkt.buf.readUInt16BE(pkt.l3off + 26), 0xffff);
  }
  t.true(found);
});

test('RAWSNAT/RAWDNAT: only the raw and rawpost tables (xt_RAWNAT\'s words), any of their chains', (t) => {
  const h = new XtHarness();
  for (const [ext, words] of [[RAWSNAT, '--to-source 10.0.0.1'], [RAWDNAT, '--to-destination 10.0.0.1']] as const) {
    for (const table of ['filter', 'mangle', 'nat'] as const) {
      const chain = table === 'filter' ? 'FORWARD' : 'POSTROUTING';
      const e = t.throws(() => h.target(ext, words, { table, chain })) as { status?: number; errno?: string; message: string };
      t.is(e.status, 1);
      t.is(e.errno, 'EINVAL');
      t.is(e.message, 'xt_RAWNAT may only be used in the "raw" or "rawpost" table.');
    }
    for (const place of [{ table: 'raw', chain: 'PREROUTING' }, { table: 'raw', chain: 'OUTPUT' }, { table: 'rawpost', chain: 'POSTROUTING' }] as const) {
      t.notThrows(() => h.target(ext, words, place));
    }
  }
});

/** [ext, family, words, error | null, save, print] */
const PARSE: [typeof RAWSNAT, 4 | 6, string, string | null, string, string][] = [
  [RAWSNAT, 4, '', 'RAWSNAT: "--to-source" is required.', '', ''],
  [RAWDNAT, 4, '', 'RAWDNAT: "--to-destination" is required.', '', ''],
  [RAWSNAT, 4, '--to-source 10.0.0', 'RAWSNAT: Bad value for "--to-source" option: "10.0.0"', '', ''],
  [RAWSNAT, 4, '--to-source 10.0.0.0/33', 'RAWSNAT: Bad value for "--to-source" option: "10.0.0.0"', '', ''],
  [RAWSNAT, 4, '--to-source 10.0.0.0/x', 'RAWSNAT: Bad value for "--to-source" option: "10.0.0.0"', '', ''],
  [RAWSNAT, 4, '--to-source example.com', 'RAWSNAT: Bad value for "--to-source" option: "example.com"', '', ''],
  [RAWDNAT, 6, '--to-destination 2001:db8::/129', 'RAWDNAT: Bad value for "--to-destination" option: "2001:db8::"', '', ''],
  [RAWDNAT, 6, '--to-destination 10.0.0.1', 'RAWDNAT: Bad value for "--to-destination" option: "10.0.0.1"', '', ''],
  [RAWSNAT, 4, '--to-source 10.0.0.9', null, ' --to-source 10.0.0.9/32', ' to-source 10.0.0.9'],
  [RAWSNAT, 4, '--to-source 10.0.0.9/24', null, ' --to-source 10.0.0.9/24', ' to-source 10.0.0.9/24'],
  [RAWSNAT, 4, '--to-source 1.2.3.4 --to-source 5.6.7.0/24', null, ' --to-source 5.6.7.0/24', ' to-source 5.6.7.0/24'],
  [RAWSNAT, 4, '! --to-source 1.2.3.4', null, ' --to-source 1.2.3.4/32', ' to-source 1.2.3.4'],
  [RAWDNAT, 4, '--to-destination 10.0.0.0/0', null, ' --to-destination 10.0.0.0/0', ' to-destination 10.0.0.0/0'],
  [RAWDNAT, 6, '--to-destination fd00:1::/64', null, ' --to-destination fd00:1::/64', ' to-destination fd00:1::/64'],
  [RAWDNAT, 6, '--to-destination fd00::1', null, ' --to-destination fd00::1/128', ' to-destination fd00::1'],
];

for (const [ext, family, words, error, save, print] of PARSE) {
  test(`${ext.name} parse (IPv${family}): ${words || '(no option)'}`, (t) => {
    const h = new XtHarness();
    const place = { family, table: 'rawpost', chain: 'POSTROUTING' } as const;
    if (error !== null) {
      const e = t.throws(() => h.parse(ext, words, place)) as { status?: number; message: string };
      t.is(e.status, 2);
      t.is(e.message.trimEnd(), error);
      return;
    }
    const p = h.parse(ext, words, place);
    t.is(ext.save(p), save);
    t.is(ext.print!(p, true), print);
  });
}
