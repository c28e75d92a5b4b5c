/**
 * ECHO, STEAL and SYSRQ on their own through the module harness: packets
 * from byte fixtures, replies compared byte for byte with packets built by
 * test/modules-fixtures.ts (every checksum computed there, not by the module),
 * each pre-check's silent drop, placement refusals, and SYSRQ's request
 * handling against the facts sheet's test vectors (targets-facts.md §13),
 * with its counter, persistence and appliance actions.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hook, Verdict } from '../xt/packet.js';
import { RouteKind, type RouteFacts } from '../xt/services.js';
import { fold, pseudoSum4, pseudoSum6, sum16 } from '../dataplane/checksum.js';
import { parseIpv4 } from '../dataplane/addr.js';
import ECHO from '../modules/ECHO.js';
import STEAL from '../modules/STEAL.js';
import SYSRQ from '../modules/SYSRQ.js';
import { testEngine } from '../router/netfilter/testkit.js';
import { XtHarness, type Place } from './helpers/xt-harness.js';
import { ip4, ip6, udpDgram, tcpSeg, icmpMsg } from './modules-fixtures.js';

const route = (hopLimit = 64, mtu = 1500): RouteFacts => ({ kind: RouteKind.UNICAST, oif: null, gateway: null, mtu, hopLimit });

function echoHarness(hopLimit = 64, mtu = 1500): XtHarness {
  const h = new XtHarness();
  h.services.addRoute('0.0.0.0/0', route(hopLimit, mtu));
  h.services.addRoute('::/0', route(hopLimit, mtu));
  return h;
}

const bytes = (n: number, from = 0) => Array.from({ length: n }, (_, i) => (from + i * 7) & 255);

/** A UDP checksum that verifies over the pseudo-header (0 in IPv4 = none is not accepted here: ECHO always computes one). */
function udpVerifies(pkt: Buffer): boolean {
  if (pkt[0] >> 4 === 4) {
    const ihl = (pkt[0] & 15) * 4;
    const len = pkt.length - ihl;
    return fold(sum16(pkt, ihl, len, pseudoSum4(pkt.readUInt32BE(12), pkt.readUInt32BE(16), 17, len))) === 0xffff;
  }
  const len = pkt.length - 40;
  return fold(sum16(pkt, 40, len, pseudoSum6(pkt, 8, 17, len))) === 0xffff;
}

// ---------------------------------------------------------------------------
// ECHO: replies.

interface EchoRow {
  name: string;
  place?: Place;
  hopLimit?: number;
  request: Buffer;
  /** Written into the UDP length field after the codec parsed the request. */
  udpLength?: number;
  reply: Buffer | null;
}

/** An IPv6 datagram with a Hop-by-Hop header (PadN) in front of its UDP header. */
function withHopByHop(pkt: Buffer): Buffer {
  const hbh = Buffer.from([pkt[6], 0, 1, 4, 0, 0, 0, 0]);
  const out = Buffer.concat([pkt.subarray(0, 40), hbh, pkt.subarray(40)]);
  out[6] = 0;
  out.writeUInt16BE(pkt.readUInt16BE(4) + 8, 4);
  return out;
}

/** A datagram whose IP payload carries `extra` bytes beyond what its UDP length says. */
function trailing4(src: string, dst: string, sport: number, dport: number, payload: number[], extra: number[]): Buffer {
  const p = ip4(src, dst, udpDgram(sport, dport, payload), { id: 77 });
  const out = Buffer.concat([p, Buffer.from(extra)]);
  out.writeUInt16BE(out.length, 2);
  out.writeUInt16BE(0, 10);
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += out.readUInt16BE(i);
  out.writeUInt16BE(~fold(s) & 0xffff, 10);
  return out;
}

/** Payload of `n` bytes whose UDP checksum computes to 0 for these ends (its last word chosen so). */
function zeroSumPayload4(src: string, dst: string, sport: number, dport: number): number[] {
  const payload = [1, 2, 3, 4, 0, 0];
  const p = ip4(src, dst, udpDgram(sport, dport, payload));
  p.writeUInt16BE(0, 26);
  const s = sum16(p, 20, p.length - 20, pseudoSum4(parseIpv4(src), parseIpv4(dst), 17, p.length - 20));
  const w = ~fold(s) & 0xffff;
  payload[4] = w >> 8;
  payload[5] = w & 255;
  return payload;
}

const ZERO = zeroSumPayload4('10.0.0.2', '10.0.0.1', 5000, 7);

const ECHO_ROWS: EchoRow[] = [
  {
    name: 'v4: addresses and ports swapped, TOS and ID copied, DF cleared, TTL from the route',
    hopLimit: 61,
    request: ip4('10.0.0.2', '10.0.0.1', udpDgram(40000, 7, bytes(5)), { tos: 0x28, id: 0x1234, df: true, ttl: 50 }),
    reply: ip4('10.0.0.1', '10.0.0.2', udpDgram(7, 40000, bytes(5)), { tos: 0x28, id: 0x1234, df: false, ttl: 61 }),
  },
  {
    name: 'v4 with IP options: the reply has a plain 20-byte header',
    request: ip4('192.0.2.9', '198.51.100.1', udpDgram(1234, 9999, bytes(32, 3)), { id: 9, options: [1, 1, 1, 0] }),
    reply: ip4('198.51.100.1', '192.0.2.9', udpDgram(9999, 1234, bytes(32, 3)), { id: 9, ttl: 64 }),
  },
  {
    name: 'v4: the UDP length, not the IP length, says how much is echoed',
    request: trailing4('10.0.0.2', '10.0.0.1', 3000, 7, [0x61, 0x62, 0x63], [0xee, 0xee, 0xee]),
    reply: ip4('10.0.0.1', '10.0.0.2', udpDgram(7, 3000, [0x61, 0x62, 0x63]), { id: 77, ttl: 64 }),
  },
  {
    name: 'v4: a checksum computing to 0 is sent as 0xffff (compat: upstream sends 0)',
    request: ip4('10.0.0.2', '10.0.0.1', udpDgram(5000, 7, ZERO), { id: 5 }),
    reply: ip4('10.0.0.1', '10.0.0.2', udpDgram(7, 5000, ZERO), { id: 5, ttl: 64 }),
  },
  {
    name: 'v4 in FORWARD: answered from the address the datagram was sent to',
    place: { chain: 'FORWARD', proto: 'udp' },
    request: ip4('10.0.0.2', '203.0.113.50', udpDgram(41000, 7, bytes(3)), { id: 3 }),
    reply: ip4('203.0.113.50', '10.0.0.2', udpDgram(7, 41000, bytes(3)), { id: 3, ttl: 64 }),
  },
  {
    name: 'v6: traffic class and flow label copied, hop limit from the route',
    place: { family: 6, proto: 'udp' },
    hopLimit: 255,
    request: ip6('2001:db8::2', '2001:db8::1', udpDgram(40000, 7, bytes(9)), { tc: 0xb8, flow: 0x12345, hlim: 7 }),
    reply: ip6('2001:db8::1', '2001:db8::2', udpDgram(7, 40000, bytes(9)), { tc: 0xb8, flow: 0x12345, hlim: 255 }),
  },
  {
    name: 'v6 with a Hop-by-Hop header: the reply carries no extension header',
    place: { family: 6, proto: 'udp' },
    request: withHopByHop(ip6('2001:db8::2', '2001:db8::1', udpDgram(5353, 7, bytes(4)))),
    reply: ip6('2001:db8::1', '2001:db8::2', udpDgram(7, 5353, bytes(4)), { hlim: 64 }),
  },
  // Pre-checks: the datagram is dropped, nothing is sent.
  { name: 'empty payload (UDP length 8): no reply', request: ip4('10.0.0.2', '10.0.0.1', udpDgram(1, 7)), reply: null },
  // The codec already drops these before any rule (checked below); the rows set the field after parsing to reach ECHO's own check.
  { name: 'UDP length beyond the packet: no reply (upstream reads past it)', request: ip4('10.0.0.2', '10.0.0.1', udpDgram(1, 7, bytes(4))), udpLength: 40, reply: null },
  { name: 'UDP length below 8: no reply', request: ip4('10.0.0.2', '10.0.0.1', udpDgram(1, 7, bytes(4))), udpLength: 4, reply: null },
  { name: 'a non-first fragment (no UDP header): no reply', request: ip4('10.0.0.2', '10.0.0.1', udpDgram(1, 7, bytes(16)), { frag: 3 }), reply: null },
  { name: 'v6 empty payload: no reply', place: { family: 6, proto: 'udp' }, request: ip6('2001:db8::2', '2001:db8::1', udpDgram(1, 7)), reply: null },
];

for (const row of ECHO_ROWS) {
  test(`ECHO ${row.name}`, (t) => {
    const h = echoHarness(row.hopLimit ?? 64);
    const place: Place = row.place ?? { proto: 'udp' };
    const inst = h.target(ECHO, '', place);
    const pkt = h.packet(row.request, { hook: place.chain === 'FORWARD' ? Hook.FORWARD : Hook.INPUT });
    if (row.udpLength !== undefined) {
      const bad = Buffer.from(row.request);
      bad.writeUInt16BE(row.udpLength, 24);
      t.throws(() => h.packet(bad), { message: /codec refuses/ }, 'the router never hands this datagram to a rule');
      pkt.buf.writeUInt16BE(row.udpLength, pkt.l4off + 4);
    }
    t.is(inst.target(pkt), Verdict.DROP);
    if (row.reply === null) {
      t.is(h.services.emitted.length, 0);
      return;
    }
    t.is(h.services.emitted.length, 1);
    const sent = h.services.emitted[0];
    t.is(sent.bytes.toString('hex'), row.reply.toString('hex'));
    t.true(udpVerifies(sent.bytes), 'UDP checksum verifies');
    t.is(sent.how.family, place.family ?? 4);
    t.is(sent.how.ctFrom, pkt, 'attached to the datagram\'s flow');
  });
}

test('ECHO: no reply without a route back, nor when the reply exceeds the route MTU (never fragmented)', (t) => {
  const none = new XtHarness();
  none.target(ECHO, '', { proto: 'udp' }).target(none.packet(ip4('10.0.0.2', '10.0.0.1', udpDgram(1, 7, bytes(4)))));
  t.is(none.services.emitted.length, 0);
  const h = echoHarness(64, 100);
  const inst = h.target(ECHO, '', { proto: 'udp' });
  t.is(inst.target(h.packet(ip4('10.0.0.2', '10.0.0.1', udpDgram(1, 7, bytes(72))))), Verdict.DROP); // 20 + 8 + 72 = 100: fits
  t.is(inst.target(h.packet(ip4('10.0.0.2', '10.0.0.1', udpDgram(1, 7, bytes(73))))), Verdict.DROP); // 101: does not
  t.is(h.services.emitted.length, 1);
  t.is(h.services.emitted[0].bytes.length, 100);
});

test('ECHO: the reply buffer is reused (no per-packet allocation of the reply)', (t) => {
  const h = echoHarness();
  const seen = new Set<ArrayBufferLike>();
  h.services.emit = (b) => (seen.add(b.buffer), true);
  const inst = h.target(ECHO, '', { proto: 'udp' });
  for (let i = 0; i < 5; i++) inst.target(h.packet(ip4('10.0.0.2', '10.0.0.1', udpDgram(1000 + i, 7, bytes(10 + i)))));
  t.is(seen.size, 1);
});

// ---------------------------------------------------------------------------
// Placement: the kernel's refusals (x_tables' dmesg lines), as the engine reports them.

const PLACEMENT: [string, string][] = [
  ['iptables -t mangle -A PREROUTING -p udp -j ECHO', 'x_tables: ip_tables: ECHO target: only valid in filter table, not mangle'],
  ['iptables -t raw -A PREROUTING -p udp -j ECHO', 'x_tables: ip_tables: ECHO target: only valid in filter table, not raw'],
  ['iptables -A INPUT -j ECHO', 'x_tables: ip_tables: ECHO target: only valid for protocol 17'],
  ['iptables -A INPUT -p tcp -j ECHO', 'x_tables: ip_tables: ECHO target: only valid for protocol 17'],
  ['iptables -A INPUT ! -p udp -j ECHO', 'x_tables: ip_tables: ECHO target: only valid for protocol 17'],
  ['ip6tables -A INPUT -p udplite -j ECHO', 'x_tables: ip6_tables: ECHO target: only valid for protocol 17'],
  ['ip6tables -t mangle -A INPUT -p udp -j ECHO', 'x_tables: ip6_tables: ECHO target: only valid in filter table, not mangle'],
  ['iptables -A INPUT -j SYSRQ', 'xt_SYSRQ: only available for UDP and UDP-Lite'],
  ['iptables -A INPUT -p tcp -j SYSRQ', 'xt_SYSRQ: only available for UDP and UDP-Lite'],
  ['iptables -A INPUT ! -p udp -j SYSRQ', 'xt_SYSRQ: only available for UDP and UDP-Lite'],
  ['ip6tables -A INPUT -p icmpv6 -j SYSRQ', 'xt_SYSRQ: only available for UDP and UDP-Lite'],
];

for (const [line, dmesg] of PLACEMENT) {
  test(`refused: ${line}`, async (t) => {
    const e = await testEngine();
    const r = await e.run(line);
    t.is(r.status, 1);
    t.is(r.stderr, `${line.startsWith('ip6') ? 'ip6tables' : 'iptables'}: Invalid argument. Run \`dmesg' for more information.\n${dmesg}\n`);
    t.is((await e.run(`${line.split(' ')[0]}-save`)).stdout.includes('-j'), false, 'nothing loaded');
  });
}

const ACCEPTED: [string, string][] = [
  ['iptables -A OUTPUT -p udp -j ECHO', '-A OUTPUT -p udp -j ECHO'],
  ['iptables -A FORWARD -p udp -m udp --dport 7 -j ECHO', '-A FORWARD -p udp -m udp --dport 7 -j ECHO'],
  ['ip6tables -A INPUT -p udp -j ECHO', '-A INPUT -p udp -j ECHO'],
  ['iptables -t raw -A PREROUTING -j STEAL', '-A PREROUTING -j STEAL'],
  ['iptables -t nat -A OUTPUT -j STEAL', '-A OUTPUT -j STEAL'],
  ['ip6tables -t mangle -A POSTROUTING -j STEAL', '-A POSTROUTING -j STEAL'],
  ['iptables -t mangle -A PREROUTING -p udplite -j SYSRQ', '-A PREROUTING -p udplite -j SYSRQ'],
  ['ip6tables -A INPUT -p udp -m udp --dport 9 -j SYSRQ', '-A INPUT -p udp -m udp --dport 9 -j SYSRQ'],
  // libxt_ECHO/STEAL/SYSRQ's old-style parse takes and ignores options iptables does not know.
  ['iptables -A INPUT -p udp -j ECHO --foo ! --bar -z', '-A INPUT -p udp -j ECHO'],
];

for (const [line, saved] of ACCEPTED) {
  test(`accepted: ${line}`, async (t) => {
    const e = await testEngine();
    const r = await e.run(line);
    t.is(r.status, 0, r.stderr);
    const table = /-t (\w+)/.exec(line)?.[1] ?? 'filter';
    t.true((await e.run(`${line.split(' ')[0]}-save -t ${table}`)).stdout.includes(`${saved}\n`));
  });
}

// ---------------------------------------------------------------------------
// STEAL.

test('STEAL: the packet is consumed (STOLEN) in every table and hook, nothing sent, v4 and v6', (t) => {
  const h = new XtHarness();
  const places: Place[] = [
    { table: 'raw', chain: 'PREROUTING' },
    { table: 'mangle', chain: 'FORWARD' },
    { table: 'nat', chain: 'OUTPUT' },
    { table: 'filter', chain: 'INPUT' },
    { family: 6, table: 'filter', chain: 'OUTPUT' },
    { family: 6, table: 'security', chain: 'FORWARD' },
  ];
  for (const place of places) {
    const inst = h.target(STEAL, '', place);
    const v6 = place.family === 6;
    for (const l4 of [udpDgram(1, 2, [1]), tcpSeg(1, 2, 0x02), icmpMsg(v6 ? 128 : 8, 0, [0, 1, 0, 1], [], v6)]) {
      t.is(inst.target(h.packet(v6 ? ip6('2001:db8::2', '2001:db8::1', l4) : ip4('10.0.0.2', '10.0.0.1', l4))), Verdict.STOLEN);
    }
  }
  t.is(h.services.emitted.length + h.services.icmpErrors.length + h.services.dups.length, 0);
});

test('STEAL through the engine: the hook says STOLEN, later rules never see the packet, the rule counts it', async (t) => {
  const e = await testEngine();
  for (const l of ['iptables -A INPUT -p udp --dport 9 -j STEAL', 'iptables -A INPUT -p udp -j ACCEPT', 'iptables -P INPUT DROP']) t.is((await e.run(l)).status, 0);
  const h = new XtHarness();
  const stolen = h.packet(ip4('10.0.0.2', '10.0.0.1', udpDgram(1000, 9, [1, 2, 3])), { hook: Hook.INPUT, inIf: 'eth0' });
  const other = h.packet(ip4('10.0.0.2', '10.0.0.1', udpDgram(1000, 10, [1, 2, 3])), { hook: Hook.INPUT, inIf: 'eth0' });
  t.is(e.nf.hook(Hook.INPUT, stolen), Verdict.STOLEN);
  t.is(e.nf.hook(Hook.INPUT, other), Verdict.ACCEPT);
  const list = (await e.run('iptables -L INPUT -v -n -x')).stdout.split('\n');
  const counts = list.filter((l) => /STEAL|ACCEPT/.test(l) && !l.startsWith('Chain')).map((l) => l.trim().split(/\s+/).slice(0, 3).join(' '));
  t.deepEqual(counts, ['1 31 STEAL', '1 31 ACCEPT']);
  t.is(e.services.emitted.length + e.services.icmpErrors.length, 0);
});

// ---------------------------------------------------------------------------
// SYSRQ.

const VECTOR_SEQNO = 1700000000;
/** targets-facts.md §13 test vectors: keys s, seqno 1700000000, salt abc, password secret. */
const VECTORS = [
  { name: 'IPv4 10.10.25.7, SHA-1', family: 4 as const, dst: '10.10.25.7', hash: 'sha1', digest: '8cbdb5e8a24c9151ebf0e3e658b7b70aeff72c83' },
  { name: 'IPv6 2001:db8::1 (hashed fully expanded), SHA-1', family: 6 as const, dst: '2001:db8::1', hash: 'sha1', digest: '6861ea9869e24ea89874b0eb59935d3e9dd442ec' },
  { name: 'IPv4 10.10.25.7, hash sha256', family: 4 as const, dst: '10.10.25.7', hash: 'sha256', digest: '8468d969d682719f6e5f877cda418ed03d7d59f667cc16d99f70f201a389d2d0' },
];

const text = (s: string) => [...Buffer.from(s)];

function request(family: 4 | 6, dst: string, payload: string | number[], src?: string): Buffer {
  const p = typeof payload === 'string' ? text(payload) : payload;
  return family === 4 ? ip4(src ?? '10.10.25.1', dst, udpDgram(40000, 9, p)) : ip6(src ?? '2001:db8::99', dst, udpDgram(40000, 9, p));
}

function sysrq(settings: Record<string, unknown> = { password: 'secret' }, place: Place = { proto: 'udp' }) {
  const h = new XtHarness({ settings: { SYSRQ: settings } });
  const inst = h.target(SYSRQ, '', place);
  return { h, inst, send: (pkt: Buffer) => inst.target(h.packet(pkt)) };
}

const stats = (h: XtHarness) => Object.fromEntries(h.readProc('net/xt_SYSRQ/stats').trim().split('\n').map((l) => l.split(' ')).map(([k, v]) => [k, Number(v)]));

for (const v of VECTORS) {
  test(`SYSRQ test vector: ${v.name}`, (t) => {
    const { h, send } = sysrq({ password: 'secret', hash: v.hash }, { family: v.family, proto: 'udp' });
    h.writeProc('net/xt_SYSRQ/seqno', String(VECTOR_SEQNO - 1));
    t.is(send(request(v.family, v.dst, `s,${VECTOR_SEQNO},abc,${v.digest}\n`)), Verdict.ACCEPT);
    t.deepEqual(h.services.logged.map((l) => l.line), ['xt_SYSRQ: SysRq s']);
    // The new seqno is saved first, then the key's own action (here `s`: save).
    t.deepEqual(h.services.applianceActions, ['save', 'save']);
    t.is(h.readProc('net/xt_SYSRQ/seqno'), `${VECTOR_SEQNO}\n`);
    t.is(stats(h).accepted, 1);
    // The same request again is a replay: its seqno is no longer greater.
    t.is(send(request(v.family, v.dst, `s,${VECTOR_SEQNO},abc,${v.digest}\n`)), Verdict.DROP);
    t.is(stats(h)['refused-old-seqno'], 1);
    t.deepEqual(h.services.applianceActions, ['save', 'save'], 'a refused request asks for nothing');
  });
}

test('SYSRQ refusals are counted and never move the sequence number', (t) => {
  const { h, send } = sysrq({ password: 'secret', debug: true });
  const base = 1767225600; // the harness's wall clock in seconds: where the counter starts
  t.is(h.readProc('net/xt_SYSRQ/seqno'), `${base}\n`);
  const sign = (req: string, dst = '10.10.25.7', password = 'secret', hash = 'sha1') => `${req}${createHash(hash).update(`${req}${dst},${password}`).digest('hex')}`;
  const rows: [string, Buffer, string][] = [
    ['old seqno (not greater than the counter)', request(4, '10.10.25.7', sign(`s,${base},salt,`)), 'refused-old-seqno'],
    ['older seqno', request(4, '10.10.25.7', sign(`s,${base - 100},salt,`)), 'refused-old-seqno'],
    ['wrong password', request(4, '10.10.25.7', sign(`s,${base + 1},salt,`, '10.10.25.7', 'guess')), 'refused-bad-digest'],
    ['hashed for another destination', request(4, '10.10.25.7', sign(`s,${base + 1},salt,`, '10.10.25.8')), 'refused-bad-digest'],
    ['uppercase digest', request(4, '10.10.25.7', sign(`s,${base + 1},salt,`).toUpperCase()), 'refused-bad-digest'],
    ['IPv6 destination hashed in short form', request(6, '2001:db8::1', sign(`s,${base + 1},salt,`, '2001:db8::1')), 'refused-bad-digest'],
    ['short digest', request(4, '10.10.25.7', sign(`s,${base + 1},salt,`).slice(0, -1)), 'refused-short-digest'],
    ['two commas only', request(4, '10.10.25.7', `s,${base + 1},salt`), 'refused-malformed'],
    ['third comma as the last byte', request(4, '10.10.25.7', `s,${base + 1},salt,`), 'refused-malformed'],
    ['empty payload', request(4, '10.10.25.7', []), 'refused-malformed'],
    ['seqno beyond 2^53', request(4, '10.10.25.7', sign('s,99999999999999999999,salt,')), 'refused-malformed'],
  ];
  let refused = 0;
  for (const [name, pkt, counter] of rows) {
    const before = stats(h)[counter] ?? 0;
    t.is(send(pkt), Verdict.DROP, name);
    t.is(stats(h)[counter], before + 1, `${name}: counted as ${counter}`);
    t.is(stats(h).refused, ++refused, name);
  }
  t.is(h.readProc('net/xt_SYSRQ/seqno'), `${base}\n`, 'no refusal moved the counter');
  t.deepEqual(h.services.applianceActions, []);
  t.true(h.services.logged.some((l) => l.line === 'xt_SYSRQ: old sequence number ignored'));
  t.true(h.services.logged.some((l) => l.line.startsWith('xt_SYSRQ: Bad digest, expected ')));
  t.true(h.services.logged.some((l) => l.line === 'xt_SYSRQ: badly formatted request'));
  // Only the digits of the seqno field count; the fourth field may carry anything after the digest.
  t.is(send(request(4, '10.10.25.7', `${sign(`sbx,1x${base + 5}y,salt,`)}trailing junk`)), Verdict.ACCEPT);
  t.is(h.readProc('net/xt_SYSRQ/seqno'), `1${base + 5}\n`);
  t.deepEqual(h.services.applianceActions, ['save', 'save', 'restart'], 'the seqno save, then s and b in order');
  t.true(h.services.logged.some((l) => l.line === 'xt_SYSRQ: SysRq x: no appliance action for this key'));
});

test('SYSRQ without a password refuses everything and says so once', (t) => {
  const { h, send } = sysrq({});
  const req = request(4, '10.10.25.7', `s,${VECTOR_SEQNO},abc,8cbdb5e8a24c9151ebf0e3e658b7b70aeff72c83`);
  h.writeProc('net/xt_SYSRQ/seqno', '0');
  for (let i = 0; i < 3; i++) t.is(send(req), Verdict.DROP);
  t.is(stats(h)['refused-no-password'], 3);
  t.deepEqual(h.services.logged.map((l) => l.line), ['xt_SYSRQ: No password set']);
});

test('SYSRQ: the password from a file is cut at its first newline; the counter is one for every rule and both families', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xw1b-sysrq-'));
  writeFileSync(join(dir, 'pw'), 'secret\nignored\n');
  const h = new XtHarness({ settings: { SYSRQ: { passwordFile: join(dir, 'pw') } } });
  const r4 = h.target(SYSRQ, '', { proto: 'udp' });
  const r6 = h.target(SYSRQ, '', { family: 6, table: 'mangle', chain: 'PREROUTING', proto: 'udplite' });
  h.writeProc('net/xt_SYSRQ/seqno', String(VECTOR_SEQNO - 1));
  t.is(r4.target(h.packet(request(4, '10.10.25.7', `s,${VECTOR_SEQNO},abc,8cbdb5e8a24c9151ebf0e3e658b7b70aeff72c83`))), Verdict.ACCEPT);
  // The IPv6 vector has the same seqno: the other rule, the other family, refuses it now.
  t.is(r6.target(h.packet(request(6, '2001:db8::1', `s,${VECTOR_SEQNO},abc,6861ea9869e24ea89874b0eb59935d3e9dd442ec`))), Verdict.DROP);
  t.is(stats(h)['refused-old-seqno'], 1);
});

test('SYSRQ: the counter is saved and taken back after a restart (the greater of saved and time of day)', (t) => {
  const h = new XtHarness({ settings: { SYSRQ: { password: 'secret' } } });
  h.target(SYSRQ, '', { proto: 'udp' });
  h.writeProc('net/xt_SYSRQ/seqno', '99999999999');
  const saved = JSON.parse(JSON.stringify(h.state.exportAll()));
  const h2 = new XtHarness({ settings: { SYSRQ: { password: 'secret' } } });
  h2.state.expectSaved(saved);
  h2.target(SYSRQ, '', { proto: 'udp' });
  h2.state.expectSaved(null);
  t.is(h2.readProc('net/xt_SYSRQ/seqno'), '99999999999\n');
});

test('SYSRQ settings refused with what was wrong', (t) => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ password: 'x', hash: 'nosuchhash' }, /extensions\.SYSRQ\.hash "nosuchhash"/],
    [{ password: 'x'.repeat(64) }, /at most 63 bytes/],
    [{ password: 'a', passwordFile: '/x' }, /give one of them/],
    [{ passwordFile: '/nonexistent/xw1b' }, /passwordFile \/nonexistent\/xw1b: ENOENT/],
    [{ password: 'x', hostTrigger: 3 }, /hostTrigger must be/],
  ];
  for (const [s, re] of bad) {
    const h = new XtHarness({ settings: { SYSRQ: s } });
    t.throws(() => h.target(SYSRQ, '', { proto: 'udp' }), { message: re });
  }
});

test('SYSRQ hostTrigger: the keys are written to the trigger file instead of acting on the appliance', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xw1b-sysrq-'));
  const trigger = join(dir, 'sysrq-trigger');
  writeFileSync(trigger, '');
  const { h, send } = sysrq({ password: 'secret', hostTrigger: trigger });
  h.writeProc('net/xt_SYSRQ/seqno', String(VECTOR_SEQNO - 1));
  t.is(send(request(4, '10.10.25.7', `s,${VECTOR_SEQNO},abc,8cbdb5e8a24c9151ebf0e3e658b7b70aeff72c83`)), Verdict.ACCEPT);
  t.is(readFileSync(trigger, 'utf8'), 's');
  // Only the seqno save: the key itself went to the host.
  t.deepEqual(h.services.applianceActions, ['save']);
});

test('SYSRQ over UDP-Lite (the coverage field is the length, 0 refused) and IPv6 behind a Hop-by-Hop header', (t) => {
  const req = `s,${VECTOR_SEQNO},abc,8cbdb5e8a24c9151ebf0e3e658b7b70aeff72c83\n`;
  const lite = (coverage: number) => {
    const l4 = udpDgram(40000, 9, text(req));
    const p = ip4('10.10.25.1', '10.10.25.7', { ...l4, proto: 136 });
    p.writeUInt16BE(coverage, 24);
    return p;
  };
  const { h, send } = sysrq({ password: 'secret' }, { proto: 'udplite' });
  h.writeProc('net/xt_SYSRQ/seqno', String(VECTOR_SEQNO - 1));
  t.is(send(lite(0)), Verdict.DROP, 'coverage 0 (upstream underflows)');
  t.is(stats(h)['refused-malformed'], 1);
  t.is(send(lite(8 + req.length)), Verdict.ACCEPT);
  // Another rule, same counter: the IPv6 vector, its UDP header after a Hop-by-Hop header.
  h.writeProc('net/xt_SYSRQ/seqno', String(VECTOR_SEQNO - 1));
  const r6 = h.target(SYSRQ, '', { family: 6, proto: 'udp' });
  const v6 = withHopByHop(request(6, '2001:db8::1', `s,${VECTOR_SEQNO},abc,6861ea9869e24ea89874b0eb59935d3e9dd442ec`));
  t.is(r6.target(h.packet(v6)), Verdict.ACCEPT);
  t.is(stats(h).accepted, 2);
});
