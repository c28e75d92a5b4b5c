/**
 * pknock's state machine step by step (matches-facts §14) through the module
 * harness: real state, proc file and ticks, fake clocks, packets built by the
 * byte fixtures. Each row is one packet (or a clock move) with the match
 * results of the knock rule and the --checkip rule, and the proc text after it.
 *
 * SPA payloads are made here from the facts sheet, with Node's crypto and
 * explicit byte order (source address in network order, epoch minute as a
 * little-endian u32), never with xtr's own spaDigest.
 */
import test from 'ava';
import { createHmac } from 'node:crypto';
import { XtHarness, FAKE_WALL_START } from './helpers/xt-harness.js';
import { ip4, ip6, tcpSeg, udpDgram } from './modules-fixtures.js';
import pknock from '../modules/pknock.js';
import type { MatchInstance } from '../xt/extension.js';

const TCP_PLACE = { table: 'filter', chain: 'INPUT', proto: 'tcp' } as const;
const UDP_PLACE = { table: 'filter', chain: 'INPUT', proto: 'udp' } as const;
const SYN = 0x02;
const ACK = 0x10;
const SERVER = '192.0.2.1';

interface Setup {
  h: XtHarness;
  knock: MatchInstance;
  check: MatchInstance;
}

function sequenceRules(words: string, settings: Record<string, unknown> = {}): Setup {
  const h = new XtHarness({ settings: { pknock: settings } });
  const knock = h.match(pknock, words, TCP_PLACE);
  const check = h.match(pknock, '--checkip --name SSH', TCP_PLACE);
  h.activateAll();
  return { h, knock, check };
}

/** One row: a TCP segment from `src` to `port` (flags), then what both rules said and the proc text. */
type Row = { src: string; port: number; flags?: number; wait?: number; knock: boolean; check: boolean; proc: string; event?: string };

function run(t: import('ava').ExecutionContext, s: Setup, rows: readonly Row[]): void {
  rows.forEach((r, i) => {
    const before = s.h.services.events.length;
    if (r.wait) s.h.advance(r.wait);
    const pkt = () => s.h.packet(ip4(r.src, SERVER, tcpSeg(40000, r.port, r.flags ?? SYN)));
    t.is(s.knock.match(pkt()), r.knock, `row ${i}: knock rule`);
    t.is(s.check.match(pkt()), r.check, `row ${i}: checkip rule`);
    t.is(s.h.readProc('net/xt_pknock/SSH'), r.proc, `row ${i}: proc`);
    const kinds = s.h.services.events.slice(before).map((e) => `${e.kind}${e.fields.reason ? `/${e.fields.reason}` : ''}`);
    t.deepEqual(kinds, r.event ? [r.event] : [], `row ${i}: events`);
  });
}

const A = '10.0.0.2';
const B = '10.0.0.3';
const line = (src: string, status: string, n: number, rest = '') => `src=${src} proto=TCP status=${status} accepted_knock_count=${n} ${rest}\n`;

test('the sequence opens; any TCP segment counts; the completing knock is not matched; a second client is unaffected', (t) => {
  const s = sequenceRules('--knockports 4002,4001,4004 --time 10 --name SSH');
  run(t, s, [
    { src: A, port: 22, knock: false, check: false, proc: '' },
    { src: A, port: 4002, knock: false, check: false, proc: line(A, 'MATCHING', 1, 'expir_time=10 [secs] ') },
    { src: A, port: 4001, flags: ACK, wait: 3000, knock: false, check: false, proc: line(A, 'MATCHING', 2, 'expir_time=10 [secs] ') },
    { src: B, port: 4002, knock: false, check: false, proc: line(B, 'MATCHING', 1, 'expir_time=10 [secs] ') + line(A, 'MATCHING', 2, 'expir_time=10 [secs] ') },
    // The completing knock: the knock rule does not match it; the --checkip rule after it does.
    { src: A, port: 4004, flags: 0x01, wait: 2000, knock: false, check: true, proc: line(B, 'MATCHING', 1, 'expir_time=8 [secs] ') + line(A, 'ALLOWED', 3), event: 'pknock.open' },
    { src: A, port: 22, knock: true, check: true, proc: line(B, 'MATCHING', 1, 'expir_time=8 [secs] ') + line(A, 'ALLOWED', 3) },
    { src: A, port: 80, flags: ACK, knock: true, check: true, proc: line(B, 'MATCHING', 1, 'expir_time=8 [secs] ') + line(A, 'ALLOWED', 3) },
    { src: B, port: 22, knock: false, check: false, proc: line(B, 'MATCHING', 1, 'expir_time=8 [secs] ') + line(A, 'ALLOWED', 3), event: 'pknock.failed/wrong-port' },
    // GC: B's half-open knock expires (timestamp + time < now); A stays (no autoclose).
    { src: A, port: 22, wait: 9000, knock: true, check: true, proc: line(A, 'ALLOWED', 3), event: 'pknock.failed/expired' },
  ]);
  const open = s.h.services.events.find((e) => e.kind === 'pknock.open')!;
  t.like(open.fields, { name: 'SSH', ip: A, port: 4004, proto: 'tcp', mode: 'sequence' });
});

test('wrong order, an interleaved wrong port without and with --strict, a too-slow sequence do not open', (t) => {
  const lax = sequenceRules('--knockports 4002,4001,4004 --time 10 --name SSH');
  run(t, lax, [
    // Wrong order: not the first port, no peer.
    { src: A, port: 4001, knock: false, check: false, proc: '' },
    { src: A, port: 4004, knock: false, check: false, proc: '' },
    { src: A, port: 4002, knock: false, check: false, proc: line(A, 'MATCHING', 1, 'expir_time=10 [secs] ') },
    { src: A, port: 4004, knock: false, check: false, proc: line(A, 'MATCHING', 1, 'expir_time=10 [secs] '), event: 'pknock.failed/wrong-port' },
    // Without --strict the wrong knock is ignored: progress kept, the right ones still open.
    { src: A, port: 4001, knock: false, check: false, proc: line(A, 'MATCHING', 2, 'expir_time=10 [secs] ') },
    { src: A, port: 5555, knock: false, check: false, proc: line(A, 'MATCHING', 2, 'expir_time=10 [secs] '), event: 'pknock.failed/wrong-port' },
    { src: A, port: 4004, knock: false, check: true, proc: line(A, 'ALLOWED', 3), event: 'pknock.open' },
  ]);
  const strict = sequenceRules('--knockports 4002,4001,4004 --time 10 --strict --name SSH');
  run(t, strict, [
    { src: A, port: 4002, knock: false, check: false, proc: line(A, 'MATCHING', 1, 'expir_time=10 [secs] ') },
    { src: A, port: 4001, knock: false, check: false, proc: line(A, 'MATCHING', 2, 'expir_time=10 [secs] ') },
    { src: A, port: 5555, knock: false, check: false, proc: '', event: 'pknock.failed/wrong-port' },
    { src: A, port: 4004, knock: false, check: false, proc: '' },
    { src: A, port: 22, knock: false, check: false, proc: '' },
  ]);
  const slow = sequenceRules('--knockports 4002,4001,4004 --time 2 --name SSH');
  run(t, slow, [
    { src: A, port: 4002, knock: false, check: false, proc: line(A, 'MATCHING', 1, 'expir_time=2 [secs] ') },
    // Too slow: the GC tick has already removed the half-open peer (reported), so this knock finds none.
    { src: A, port: 4001, wait: 3000, knock: false, check: false, proc: '', event: 'pknock.failed/expired' },
    { src: A, port: 4002, knock: false, check: false, proc: line(A, 'MATCHING', 1, 'expir_time=2 [secs] ') },
    { src: A, port: 4001, wait: 1000, knock: false, check: false, proc: line(A, 'MATCHING', 2, 'expir_time=2 [secs] ') },
    // The final knock too late: upstream would still open (no gap check on it, only its 65 s GC); here the GC tick
    // or the packet path's gap check (whichever comes first) ends the sequence: the man page's "max time between knocks".
    { src: A, port: 4004, wait: 3500, knock: false, check: false, proc: '', event: 'pknock.failed/expired' },
    { src: A, port: 22, knock: false, check: false, proc: '' },
  ]);
});

test('--autoclose closes after the time, by the packet path and by the GC tick', (t) => {
  const s = sequenceRules('--knockports 4002 --time 5 --autoclose 1 --name SSH');
  run(t, s, [
    { src: A, port: 4002, knock: false, check: true, proc: line(A, 'ALLOWED', 1, 'autoclose_time=60 [secs] '), event: 'pknock.open' },
    { src: A, port: 22, wait: 30_000, knock: true, check: true, proc: line(A, 'ALLOWED', 1, 'autoclose_time=30 [secs] ') },
    { src: B, port: 4002, knock: false, check: true, proc: line(B, 'ALLOWED', 1, 'autoclose_time=60 [secs] ') + line(A, 'ALLOWED', 1, 'autoclose_time=30 [secs] '), event: 'pknock.open' },
  ]);
  // 31 s later A is past login + 60 s: the GC tick closes it (B has 29 s left).
  s.h.advance(31_000);
  t.is(s.h.readProc('net/xt_pknock/SSH'), line(B, 'ALLOWED', 1, 'autoclose_time=29 [secs] '));
  t.false(s.check.match(s.h.packet(ip4(A, SERVER, tcpSeg(1, 22, SYN)))));
  t.like(s.h.services.events.at(-1)!, { kind: 'pknock.close', fields: { ip: A, reason: 'autoclose' } });
});

test('IPv6 sources knock too (beyond upstream); the proc shows them RFC 5952', (t) => {
  const h = new XtHarness();
  const place = { ...TCP_PLACE, family: 6 } as const;
  const knock = h.match(pknock, '--knockports 7000,7001 --time 10 --name V6', place);
  const check = h.match(pknock, '--checkip --name V6', place);
  const p = (port: number, src = '2001:db8::2') => h.packet(ip6(src, '2001:db8::1', tcpSeg(1000, port, SYN)));
  t.false(knock.match(p(7000)));
  t.is(h.readProc('net/xt_pknock/V6'), 'src=2001:db8::2 proto=TCP status=MATCHING accepted_knock_count=1 expir_time=10 [secs] \n');
  t.false(knock.match(p(7001)));
  t.true(check.match(p(22)));
  t.false(check.match(p(22, '2001:db8::3')));
});

// ---------------------------------------------------------------------------
// SPA

/** The facts sheet's SPA payload, built here: hex(HMAC-SHA256(secret, addr || u32le(minute))) + "\n". */
function spaPayload(secret: string, src: string, minute: number): number[] {
  const addr = src.includes(':') ? ipv6Of(src) : Buffer.from(src.split('.').map(Number));
  const m = Buffer.alloc(4);
  m.writeUInt32LE(minute);
  const hex = createHmac('sha256', Buffer.from(secret)).update(Buffer.concat([addr, m])).digest('hex');
  return [...Buffer.from(hex + '\n', 'ascii')];
}

function ipv6Of(s: string): Buffer {
  const [a, b = ''] = s.split('::');
  const head = a ? a.split(':') : [];
  const tail = b ? b.split(':') : [];
  const g = [...head, ...Array(8 - head.length - tail.length).fill('0'), ...tail];
  const out = Buffer.alloc(16);
  g.forEach((x, i) => out.writeUInt16BE(parseInt(x, 16), i * 2));
  return out;
}

const minuteOf = (h: XtHarness) => Math.floor(h.services.wallClock / 60000);

function spaRules(settings: Record<string, unknown> = {}, family: 4 | 6 = 4) {
  const h = new XtHarness({ settings: { pknock: settings } });
  const place = { ...UDP_PLACE, family };
  const knock = h.match(pknock, '--knockports 2000 --opensecret s3cret --closesecret cl0se --autoclose 60 --name SPA', place);
  const check = h.match(pknock, '--checkip --name SPA', { ...TCP_PLACE, family });
  h.activateAll();
  const send = (src: string, payload: number[]) => knock.match(h.packet((family === 4 ? ip4 : ip6)(src, family === 4 ? SERVER : '2001:db8::1', udpDgram(5000, 2000, payload))));
  const allowed = (src: string) => check.match(h.packet((family === 4 ? ip4 : ip6)(src, family === 4 ? SERVER : '2001:db8::1', tcpSeg(1, 22, SYN))));
  const last = () => h.services.events.at(-1);
  return { h, send, allowed, last };
}

test('SPA opens and closes with packets built from the facts sheet; wall-clock minutes', (t) => {
  const s = spaRules();
  s.h.advance(90 * 60_000 + 7_000); // some minutes in, mid-minute
  const m = minuteOf(s.h);
  t.false(s.send(A, spaPayload('s3cret', A, m)), 'the opening packet itself is not matched');
  t.true(s.allowed(A));
  t.like(s.last(), { kind: 'pknock.open', fields: { ip: A, mode: 'spa', name: 'SPA' } });
  t.is(s.h.readProc('net/xt_pknock/SPA'), `src=${A} proto=UDP status=ALLOWED accepted_knock_count=1 autoclose_time=3600 [secs] \n`);
  t.false(s.allowed(B), 'another source is not let in');
  s.h.advance(61_000);
  t.false(s.send(A, spaPayload('cl0se', A, minuteOf(s.h))), 'the closing packet is not matched');
  t.false(s.allowed(A));
  t.like(s.last(), { kind: 'pknock.close', fields: { ip: A, reason: 'closesecret' } });
  // A later minute: a fresh open works again.
  s.h.advance(60_000);
  t.false(s.send(A, spaPayload('s3cret', A, minuteOf(s.h))));
  t.true(s.allowed(A));
  t.true(FAKE_WALL_START % 60000 === 0);
});

test('SPA refusals: replay, a minute outside the window, another source\'s HMAC, a second open in the same minute, a bad length', (t) => {
  const s = spaRules();
  s.h.advance(10 * 60_000);
  const m = minuteOf(s.h);
  const open = spaPayload('s3cret', A, m);
  // Another source's HMAC, sent from B.
  s.send(B, open);
  t.false(s.allowed(B));
  t.like(s.last(), { kind: 'pknock.failed', fields: { ip: B, reason: 'bad-hmac' } });
  // Previous and next minute: outside the (default, exact) window.
  s.send(A, spaPayload('s3cret', A, m - 1));
  s.send(A, spaPayload('s3cret', A, m + 1));
  t.false(s.allowed(A));
  // Wrong secret, wrong length (64 bytes without the trailing byte).
  s.send(A, spaPayload('wrong', A, m));
  s.send(A, spaPayload('s3cret', A, m).slice(0, 64));
  t.false(s.allowed(A));
  // The right one opens.
  s.send(A, open);
  t.true(s.allowed(A));
  // Close, then the captured open packet replayed in the same minute: refused (rate limit and replay).
  s.send(A, spaPayload('cl0se', A, m));
  t.false(s.allowed(A));
  s.send(A, open);
  t.false(s.allowed(A));
  t.like(s.last(), { kind: 'pknock.refused', fields: { reason: 'rate-limit' } });
  // A second, fresh open in the same minute: the per-minute rate limit.
  s.h.advance(20_000);
  t.is(minuteOf(s.h), m);
  // The close packet replayed while closed does nothing either (it is not a knock for the open secret).
  s.send(A, spaPayload('cl0se', A, m));
  t.false(s.allowed(A));
  const kinds = s.h.services.events.map((e) => `${e.kind}/${e.fields.reason ?? e.fields.mode}`);
  t.deepEqual(kinds, [
    'pknock.failed/bad-hmac',
    'pknock.failed/bad-hmac',
    'pknock.failed/bad-hmac',
    'pknock.failed/bad-hmac',
    'pknock.failed/bad-hmac',
    'pknock.open/spa',
    'pknock.close/closesecret',
    'pknock.refused/rate-limit',
    'pknock.refused/rate-limit',
  ]);
});

test('SPA replay cache: with a ±1 minute window a captured packet never opens twice, across minutes too', (t) => {
  const s = spaRules({ spa_window: 1 });
  s.h.advance(10 * 60_000 + 30_000);
  const m = minuteOf(s.h);
  // A client one minute behind is accepted within the window; two minutes is not.
  s.send(A, spaPayload('s3cret', A, m - 2));
  t.false(s.allowed(A));
  // A client one minute ahead is accepted too.
  const open = spaPayload('s3cret', A, m + 1);
  s.send(A, open);
  t.true(s.allowed(A));
  s.send(A, spaPayload('cl0se', A, m - 1));
  t.false(s.allowed(A));
  // Next minute: the rate limit no longer applies and the captured packet is still inside the window - the replay cache refuses it.
  s.h.advance(60_000);
  s.send(A, open);
  t.false(s.allowed(A));
  t.like(s.last(), { kind: 'pknock.refused', fields: { reason: 'replay' } });
  // A fresh packet opens - from the next minute: within one minute a client can only make the captured packet again.
  s.h.advance(60_000);
  s.send(A, spaPayload('s3cret', A, minuteOf(s.h)));
  t.true(s.allowed(A));
  t.true(s.h.readProc('net/xt_pknock/SPA').includes('ALLOWED'));
});

test('SPA over IPv6: the message is the 16-byte source address and the minute', (t) => {
  const s = spaRules({}, 6);
  const src = '2001:db8::abcd';
  s.send(src, spaPayload('s3cret', '2001:db8::1234', minuteOf(s.h)));
  t.false(s.allowed(src));
  s.send(src, spaPayload('s3cret', src, minuteOf(s.h)));
  t.true(s.allowed(src));
});

// ---------------------------------------------------------------------------
// Bounded state

test('a flood of spoofed first knocks leaves the table at its cap and never evicts a half-open or ALLOWED client', (t) => {
  const s = sequenceRules('--knockports 4002,4001,4004 --time 30 --name SSH', { max_peers: 100 });
  const knockFrom = (src: string, port: number) => s.knock.match(s.h.packet(ip4(src, SERVER, tcpSeg(1, port, SYN))));
  // An ALLOWED client, and a legitimate one half-way.
  for (const p of [4002, 4001, 4004]) knockFrom('10.9.9.9', p);
  knockFrom(A, 4002);
  knockFrom(A, 4001);
  let seed = 12345;
  for (let i = 0; i < 5000; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    knockFrom(`172.${(seed >>> 16) & 255}.${(seed >>> 8) & 255}.${seed & 255 || 1}`, 4002);
    if (i === 2500) knockFrom(A, 4004);
  }
  const proc = s.h.readProc('net/xt_pknock/SSH').split('\n').filter(Boolean);
  t.is(proc.length, 100);
  t.true(s.check.match(s.h.packet(ip4('10.9.9.9', SERVER, tcpSeg(1, 22, SYN)))), 'the ALLOWED client stays');
  t.true(s.check.match(s.h.packet(ip4(A, SERVER, tcpSeg(1, 22, SYN)))), 'the client that was half-way got in during the flood');
  t.regex(s.h.services.events.map((e) => e.kind).join(','), /pknock\.open/);
});

test('when every slot is ALLOWED a new source is refused rather than evicting anyone', (t) => {
  const s = sequenceRules('--knockports 4002 --time 30 --name SSH', { max_peers: 3 });
  const knockFrom = (src: string) => s.knock.match(s.h.packet(ip4(src, SERVER, tcpSeg(1, 4002, SYN))));
  for (const src of ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']) knockFrom(src);
  t.is(s.h.readProc('net/xt_pknock/SSH').split('\n').filter(Boolean).length, 3);
  t.false(s.check.match(s.h.packet(ip4('10.0.0.4', SERVER, tcpSeg(1, 22, SYN)))));
  t.like(s.h.services.events.at(-1), { kind: 'pknock.refused', fields: { reason: 'table-full', ip: '10.0.0.4' } });
});

test('events are rate-limited per rule object and count what was suppressed', (t) => {
  const s = sequenceRules('--knockports 4002,4001 --time 30 --name SSH', { event_rate: 5 });
  s.knock.match(s.h.packet(ip4(A, SERVER, tcpSeg(1, 4002, SYN))));
  for (let i = 0; i < 50; i++) s.knock.match(s.h.packet(ip4(A, SERVER, tcpSeg(1, 9000 + i, SYN))));
  t.is(s.h.services.events.length, 10, 'a burst of twice the rate');
  s.h.advance(1000);
  s.knock.match(s.h.packet(ip4(A, SERVER, tcpSeg(1, 4001, SYN))));
  t.like(s.h.services.events.at(-1), { kind: 'pknock.open', fields: { suppressed: 40 } });
});

test('the peer table, replay cache and timing survive a restart (ages carried over the downtime)', (t) => {
  const s = sequenceRules('--knockports 4002,4001 --time 30 --autoclose 2 --name SSH');
  s.knock.match(s.h.packet(ip4(A, SERVER, tcpSeg(1, 4002, SYN))));
  s.knock.match(s.h.packet(ip4(A, SERVER, tcpSeg(1, 4001, SYN))));
  s.knock.match(s.h.packet(ip4(B, SERVER, tcpSeg(1, 4002, SYN))));
  s.h.advance(10_000);
  const saved = JSON.parse(JSON.stringify(s.h.state.exportAll()));
  const h2 = new XtHarness();
  h2.services.clock = 5_000_000; // another process: another monotonic clock
  h2.services.wallClock = s.h.services.wallClock + 4_000; // down for 4 s
  h2.state.expectSaved(saved);
  // The saved rules come back in their order: the knock rule creates the object (its timing), then --checkip.
  h2.match(pknock, '--knockports 4002,4001 --time 30 --autoclose 2 --name SSH', TCP_PLACE);
  const check = h2.match(pknock, '--checkip --name SSH', TCP_PLACE);
  h2.state.expectSaved(null);
  h2.activateAll();
  t.is(h2.readProc('net/xt_pknock/SSH'), line(B, 'MATCHING', 1, 'expir_time=16 [secs] ') + line(A, 'ALLOWED', 2, 'autoclose_time=106 [secs] '));
  t.true(check.match(h2.packet(ip4(A, SERVER, tcpSeg(1, 22, SYN)))));
});
