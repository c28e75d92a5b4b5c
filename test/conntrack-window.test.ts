/**
 * TCP window tracking in router/conntrack.ts, packet by packet: each case is
 * a flow as a table of segments (direction, flags, seq, ack, window,
 * options, payload length) with the state each packet must get and the
 * entry it must leave. The behaviour is the kernel's as measured in
 * test/differential-tcpwindow.test.ts (same flows through a namespace
 * router); these run without namespaces and pin the details in between.
 */
import test from 'ava';
import { CtState, Verdict, type PacketContext } from '../xt/packet.js';
import { Conntrack, ConnEntry, CtStatus, TCP_STATE_NAMES } from '../router/conntrack.js';
import { ctxOf, ip4, ip6, tcpSeg } from './modules-fixtures.js';

const C = '198.51.100.2';
const S = '203.0.113.2';
const F = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 };
const N = CtState.NEW, E = CtState.ESTABLISHED, I = CtState.INVALID;

/** TCP options as bytes. */
const WSCALE = (n: number) => [1, 3, 3, n];
const SACK_OK = [1, 1, 4, 2];
const SACK = (l: number, r: number) => [1, 1, 5, 10, ...u32(l), ...u32(r)];
function u32(v: number): number[] {
  return [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
}

/** One segment: from the client (c) or the server (s), flags ('S', 'SA', 'PA', 'R', 'FA' ...). */
interface Step {
  from: 'c' | 's';
  flags: string;
  seq: number;
  ack: number;
  win?: number;
  options?: number[];
  len?: number;
  /** The state conntrack gives it (the usual state rules see this). */
  want: CtState;
}

function flagBits(f: string): number {
  let v = 0;
  for (const ch of f) v |= { S: F.SYN, A: F.ACK, F: F.FIN, R: F.RST, P: F.PSH }[ch as 'S'] ?? 0;
  return v;
}

function segment(st: Step, sport: number, v6 = false): Buffer {
  const [src, dst, sp, dp] = st.from === 'c' ? [C, S, sport, 80] : [S, C, 80, sport];
  const l4 = tcpSeg(sp, dp, flagBits(st.flags), { seq: st.seq >>> 0, ack: st.ack >>> 0, win: st.win ?? 8192, options: st.options, payload: new Array(st.len ?? 0).fill(0x78) });
  return v6 ? ip6(st.from === 'c' ? '2001:db8:c::2' : '2001:db8:5::2', st.from === 'c' ? '2001:db8:5::2' : '2001:db8:c::2', l4) : ip4(src, dst, l4);
}

const st = (from: 'c' | 's', flags: string, seq: number, ack: number, want: CtState, o: Partial<Step> = {}): Step => ({ from, flags, seq, ack, want, ...o });
/** SYN 1000 / SYN-ACK 5000 / ACK: ESTABLISHED and ASSURED. */
const handshake = (o: { cSyn?: Partial<Step>; sSyn?: Partial<Step> } = {}): Step[] => [
  st('c', 'S', 1000, 0, N, o.cSyn),
  st('s', 'SA', 5000, 1001, E, o.sSyn),
  st('c', 'A', 1001, 5001, E),
];

interface Case {
  name: string;
  steps: Step[];
  /** The entry afterwards: "STATE seconds [flags]", or null for none. */
  entry: string | null;
  v6?: boolean;
}

const cases: Case[] = [
  {
    name: 'far ahead of the window: INVALID, the flow goes on',
    steps: [...handshake(), st('c', 'PA', 1001, 5001, E, { len: 5 }), st('c', 'PA', 900000000, 5001, I, { len: 8 }), st('s', 'A', 5001, 1006, E), st('c', 'PA', 1006, 5001, E, { len: 5 })],
    entry: 'ESTABLISHED 300 [ASSURED]',
  },
  {
    name: 'at the right edge: in; past it by less than a window: ignored; by more: INVALID',
    steps: [
      ...handshake({ sSyn: { win: 1000 } }),
      st('c', 'PA', 2001, 5001, E, { len: 1 }),
      st('c', 'PA', 2002, 5001, E, { len: 1 }),
      st('c', 'PA', 3001, 5001, I, { len: 1 }),
      // The ignored byte still counts as sent: its ack is valid, one more is not.
      st('s', 'A', 5001, 2004, I),
      st('s', 'A', 5001, 2003, E),
    ],
    entry: 'ESTABLISHED 432000 [ASSURED]',
  },
  {
    name: 'old data behind the window passes, but its FIN is not believed',
    steps: [
      ...handshake({ sSyn: { win: 1000 } }),
      st('c', 'PA', 1001, 5001, E, { len: 500 }),
      st('s', 'A', 5001, 1501, E, { win: 1000 }),
      st('c', 'PA', 1501, 5001, E, { len: 500 }),
      st('s', 'A', 5001, 2001, E, { win: 1000 }),
      st('c', 'PA', 2001, 5001, E, { len: 500 }),
      st('s', 'A', 5001, 2501, E, { win: 1000 }),
      st('c', 'PA', 1501, 5001, E, { len: 500 }),
      st('c', 'FA', 1001, 5001, E, { len: 100 }),
    ],
    entry: 'ESTABLISHED 432000 [ASSURED]',
  },
  {
    name: 'acks of data never sent are INVALID both ways (a FIN too)',
    steps: [...handshake(), st('c', 'A', 1001, 105001, I), st('s', 'A', 5001, 6001, I), st('c', 'PA', 1001, 5001, E, { len: 5 }), st('s', 'FA', 5001, 71006, I)],
    entry: 'ESTABLISHED 300 [ASSURED]',
  },
  {
    name: 'an ack more than 66000 below is ignored (its FIN does nothing)',
    steps: [...handshake(), st('c', 'FA', 1001, 5001 - 70000, E)],
    entry: 'ESTABLISHED 432000 [ASSURED]',
  },
  {
    name: 'an ack 60000 below is believed',
    steps: [...handshake(), st('c', 'FA', 1001, 5001 - 60000, E)],
    entry: 'FIN_WAIT 120 [ASSURED]',
  },
  {
    name: 'window scale 7 on both SYNs: 512 means 65536',
    steps: [
      ...handshake({ cSyn: { win: 1024, options: WSCALE(7) }, sSyn: { win: 1024, options: WSCALE(7) } }),
      st('s', 'A', 5001, 1001, E, { win: 512 }),
      st('c', 'PA', 31001, 5001, E, { len: 10 }),
      st('c', 'PA', 66537, 5001, E, { len: 1 }),
      st('c', 'PA', 201001, 5001, I, { len: 10 }),
    ],
    entry: 'ESTABLISHED 300 [ASSURED]',
  },
  {
    name: 'window scale offered by the client only: not applied',
    steps: [...handshake({ cSyn: { win: 1024, options: WSCALE(7) }, sSyn: { win: 1024 } }), st('s', 'A', 5001, 1001, E, { win: 512 }), st('c', 'PA', 1501, 5001, E, { len: 10 }), st('c', 'PA', 31001, 5001, I, { len: 10 })],
    entry: 'ESTABLISHED 300 [ASSURED]',
  },
  {
    name: 'window scale offered by the server only: not applied',
    steps: [...handshake({ sSyn: { win: 1024, options: WSCALE(7) } }), st('s', 'A', 5001, 1001, E, { win: 512 }), st('c', 'PA', 31001, 5001, I, { len: 10 })],
    entry: 'ESTABLISHED 432000 [ASSURED]',
  },
  {
    name: 'window scale above 14 is read as 14',
    steps: [...handshake({ cSyn: { options: WSCALE(20) }, sSyn: { options: WSCALE(20) } }), st('s', 'A', 5001, 1001, E, { win: 4 }), st('c', 'PA', 60001, 5001, E, { len: 10 }), st('c', 'PA', 140001, 5001, I, { len: 1 })],
    entry: 'ESTABLISHED 300 [ASSURED]',
  },
  {
    name: 'SACK permitted by the receiver: the highest block edge is the ack bound',
    steps: [
      ...handshake({ cSyn: { options: SACK_OK }, sSyn: { options: SACK_OK } }),
      st('s', 'PA', 5001, 1001, E, { len: 100 }),
      st('c', 'A', 1001, 5001, I, { options: SACK(5101, 5201) }),
      st('c', 'A', 1001, 5001, E, { options: SACK(5051, 5101) }),
    ],
    entry: 'ESTABLISHED 300 [ASSURED]',
  },
  {
    name: 'SACK not permitted by the receiver: blocks are not read',
    steps: [...handshake({ cSyn: { options: SACK_OK } }), st('s', 'PA', 5001, 1001, E, { len: 100 }), st('c', 'A', 1001, 5001, E, { options: SACK(5101, 5201) })],
    entry: 'ESTABLISHED 300 [ASSURED]',
  },
  {
    name: 'reset behind the last ack: INVALID; in the window but not at it: the state stays, 10 s',
    steps: [...handshake(), st('c', 'PA', 1001, 5001, E, { len: 5 }), st('s', 'A', 5001, 1006, E), st('c', 'R', 1003, 0, I), st('c', 'R', 1106, 0, E)],
    entry: 'ESTABLISHED 10 [ASSURED]',
  },
  {
    name: 'reset exactly at the last ack: CLOSE',
    steps: [...handshake(), st('c', 'PA', 1001, 5001, E, { len: 5 }), st('s', 'A', 5001, 1006, E), st('c', 'R', 1006, 0, E)],
    entry: 'CLOSE 10 [ASSURED]',
  },
  {
    name: 'reset outside the window: INVALID',
    steps: [...handshake(), st('c', 'PA', 1001, 5001, E, { len: 5 }), st('s', 'A', 5001, 1006, E), st('c', 'R', 1006 + 1000000, 0, I)],
    entry: 'ESTABLISHED 432000 [ASSURED]',
  },
  {
    name: 'reset right after the same side\'s data: CLOSE',
    steps: [...handshake(), st('s', 'PA', 5001, 1001, E, { len: 10 }), st('s', 'R', 5011, 0, E)],
    entry: 'CLOSE 10 [ASSURED]',
  },
  {
    name: 'reset before the flow is assured: the window decides',
    steps: [st('c', 'S', 1000, 0, N), st('s', 'SA', 5000, 1001, E), st('c', 'R', 100001001, 0, I)],
    entry: 'SYN_RECV 60',
  },
  {
    name: 'reset (seq 0, RST/ACK) refusing a SYN: the entry goes',
    steps: [st('c', 'S', 1000, 0, N), st('s', 'RA', 0, 1001, E, { win: 0 })],
    entry: null,
  },
  {
    name: 'picked up mid-stream: no window checks, but resets behind the last ack are INVALID',
    steps: [
      st('c', 'A', 777777, 888888, N),
      st('s', 'A', 888888, 777777, E),
      st('c', 'A', 777777, 888888, E),
      st('c', 'PA', 777777 + 500000000, 888888, E, { len: 5 }),
      st('s', 'A', 888888, 777777 + 1000000000, E),
      st('c', 'R', 700000, 0, I),
      st('c', 'R', 777777, 0, E),
    ],
    entry: 'CLOSE 10 [ASSURED]',
  },
  {
    name: 'picked up and never answered: NEW, 300 s',
    steps: [st('c', 'PA', 123456, 654321, N, { len: 5 }), st('c', 'PA', 123456 + 300000000, 654321, N, { len: 5 })],
    entry: 'ESTABLISHED 300 [UNREPLIED]',
  },
  {
    name: 'the same ACK four times (retransmitted three): 300 s',
    steps: [...handshake(), ...Array.from({ length: 4 }, () => st('s', 'A', 5001, 1001, E))],
    entry: 'ESTABLISHED 300 [ASSURED]',
  },
  {
    name: 'the same ACK three times: still 5 days',
    steps: [...handshake(), ...Array.from({ length: 3 }, () => st('s', 'A', 5001, 1001, E))],
    entry: 'ESTABLISHED 432000 [ASSURED]',
  },
  {
    name: 'a zero window: 300 s',
    steps: [...handshake(), st('s', 'A', 5001, 1001, E, { win: 0 })],
    entry: 'ESTABLISHED 300 [ASSURED]',
  },
  {
    name: 'a SYN inside a flow is ignored; the SYN/ACK answering it resyncs to SYN_RECV',
    steps: [...handshake(), st('c', 'S', 90000, 0, E), st('s', 'SA', 7000, 90001, E)],
    entry: 'SYN_RECV 60 [ASSURED]',
  },
  {
    name: 'a SYN/ACK that answers no ignored SYN changes nothing',
    steps: [...handshake(), st('c', 'S', 90000, 0, E), st('s', 'SA', 7000, 12345, E)],
    entry: 'ESTABLISHED 432000 [ASSURED]',
  },
  {
    name: 'past the edge by less than a window: ignored, but its end counts for the ack bound',
    steps: [...handshake({ sSyn: { win: 1000 } }), st('c', 'PA', 1001, 5001, E, { len: 900 }), st('c', 'PA', 2101, 5001, E, { len: 100 }), st('s', 'A', 5001, 2201, E, { win: 1000 })],
    entry: 'ESTABLISHED 432000 [ASSURED]',
  },
  {
    name: 'after FIN/FIN/ACK (TIME_WAIT) a SYN is a new flow',
    steps: [...handshake(), st('c', 'FA', 1001, 5001, E), st('s', 'FA', 5001, 1002, E), st('c', 'A', 1002, 5002, E), st('c', 'S', 3000, 0, N)],
    entry: 'SYN_SENT 120 [UNREPLIED]',
  },
  {
    name: 'after the server\'s reset a client SYN is ignored, and its SYN/ACK resyncs',
    steps: [...handshake(), st('s', 'R', 5001, 0, E), st('c', 'S', 3000, 0, E), st('s', 'SA', 9000, 3001, E)],
    entry: 'SYN_RECV 60 [ASSURED]',
  },
  {
    name: 'after the client\'s own reset its SYN is a new flow',
    steps: [...handshake(), st('c', 'R', 1001, 0, E), st('c', 'S', 3000, 0, N)],
    entry: 'SYN_SENT 120 [UNREPLIED]',
  },
  {
    name: 'a challenge ACK answering a SYN in LAST_ACK does not end the flow',
    steps: [...handshake(), st('c', 'FA', 1001, 5001, E), st('s', 'FA', 5001, 1002, E), st('c', 'S', 3000, 0, E), st('s', 'A', 5002, 1002, E)],
    entry: 'LAST_ACK 30 [ASSURED]',
  },
  {
    name: 'simultaneous open: the reply side\'s ACK establishes',
    steps: [
      st('c', 'S', 1000, 0, N, { options: WSCALE(2) }),
      st('s', 'S', 5000, 0, E, { options: WSCALE(2) }),
      st('c', 'SA', 1000, 5001, E),
      st('s', 'SA', 5000, 1001, E),
      st('s', 'A', 5001, 1001, E, { win: 100 }),
      st('c', 'PA', 1301, 5001, E, { len: 10 }),
    ],
    entry: 'ESTABLISHED 300 [ASSURED]',
  },
  {
    name: 'sequence numbers wrapping through 2^32',
    steps: [
      st('c', 'S', 0xffffff00, 0, N),
      st('s', 'SA', 0xfffffff0, 0xffffff01, E),
      st('c', 'A', 0xffffff01, 0xfffffff1, E),
      st('c', 'PA', 0xffffff01, 0xfffffff1, E, { len: 1000 }),
      st('s', 'PA', 0xfffffff1, (0xffffff01 + 1000) >>> 0, E, { len: 100 }),
      st('c', 'A', (0xffffff01 + 1000) >>> 0, (0xfffffff1 + 100) >>> 0, E),
      st('c', 'PA', (0xffffff01 + 1000 + 100000) >>> 0, 0x53, I, { len: 1 }),
      st('c', 'A', (0xffffff01 + 1000) >>> 0, (0xfffffff1 + 101) >>> 0, I),
    ],
    entry: 'ESTABLISHED 432000 [ASSURED]',
  },
  {
    name: 'IPv6 the same: far ahead is INVALID',
    v6: true,
    steps: [...handshake(), st('c', 'PA', 51001, 5001, I, { len: 5 }), st('c', 'PA', 1001, 5001, E, { len: 5 })],
    entry: 'ESTABLISHED 300 [ASSURED]',
  },
];

function describe(e: ConnEntry | undefined, now: number): string | null {
  if (!e) return null;
  const flags = [(e.status & CtStatus.SEEN_REPLY) === 0 ? '[UNREPLIED]' : '', (e.status & CtStatus.ASSURED) !== 0 ? '[ASSURED]' : ''].filter(Boolean);
  return [TCP_STATE_NAMES[e.tcpState], String(e.remaining(now)), ...flags].join(' ');
}

for (const c of cases) {
  test(c.name, (t) => {
    const ct = new Conntrack();
    let now = 1000;
    c.steps.forEach((step, i) => {
      const p = ctxOf(segment(step, 40000, c.v6), now);
      if (ct.in(p) === Verdict.ACCEPT && p.ctState !== CtState.INVALID) ct.confirm(p);
      t.is(p.ctState, step.want, `packet ${i + 1} (${step.from} ${step.flags} seq=${step.seq >>> 0} ack=${step.ack >>> 0})`);
      t.is(p.ct === null, step.want === CtState.INVALID, `packet ${i + 1}: attached to the flow unless INVALID`);
    });
    t.is(describe(ct.entries(now)[0], now), c.entry);
  });
}

test('INVALID packets leave the entry as it was (state, timeout, bounds)', (t) => {
  const ct = new Conntrack();
  const steps = [...handshake(), st('c', 'PA', 1001, 5001, E, { len: 5 }), st('s', 'A', 5001, 1006, E)];
  for (const s of steps) pass(ct, segment(s, 40000), 1000);
  const e = ct.entries(1000)[0];
  const before = { state: e.tcpState, expires: e.expires, tcp: [...e.tcp] };
  // (An INVALID FIN or RST may shorten the timeout: the next test.)
  for (const bad of [st('c', 'PA', 900000000, 5001, I, { len: 8 }), st('c', 'A', 1006, 99999, I), st('c', 'R', 1003, 0, I), st('s', 'A', 5001, 9999, I)]) {
    t.is(pass(ct, segment(bad, 40000), 5000).ctState, CtState.INVALID);
  }
  t.deepEqual({ state: e.tcpState, expires: e.expires, tcp: [...e.tcp] }, before);
});

test('an INVALID FIN answering the other side\'s FIN cuts an assured flow to 300 s', (t) => {
  const ct = new Conntrack();
  for (const s of [...handshake(), st('s', 'FA', 5001, 1001, E)]) pass(ct, segment(s, 40000), 1000);
  const e = ct.entries(1000)[0];
  t.is(describe(e, 1000), 'FIN_WAIT 120 [ASSURED]');
  // FIN_WAIT's 120 s is not above the cap: nothing changes.
  t.is(pass(ct, segment(st('c', 'FA', 1001, 99999, I), 40000), 2000).ctState, CtState.INVALID);
  t.is(e.remaining(2000), 119);

  const ct2 = new Conntrack();
  for (const s of handshake()) pass(ct2, segment(s, 40001), 1000);
  // A reset from the server outside the window, then the client's FIN acking the future: both INVALID.
  t.is(pass(ct2, segment(st('s', 'R', 5001 + 9000000, 0, I), 40001), 1000).ctState, CtState.INVALID);
  t.is(pass(ct2, segment(st('c', 'FA', 1001, 99999, I), 40001), 1000).ctState, CtState.INVALID);
  t.is(describe(ct2.entries(1000)[0], 1000), 'ESTABLISHED 300 [ASSURED]');
});

test('options that are cut short or malformed are read up to the fault, as the kernel does', (t) => {
  // A window scale option whose length runs past the header is not taken: no scaling.
  const ct = new Conntrack();
  const bad = [1, 3, 9, 7];
  for (const s of handshake({ cSyn: { win: 1024, options: bad }, sSyn: { win: 1024, options: WSCALE(7) } })) pass(ct, segment(s, 40000), 0);
  pass(ct, segment(st('s', 'A', 5001, 1001, E, { win: 512 }), 40000), 0);
  t.is(pass(ct, segment(st('c', 'PA', 31001, 5001, I, { len: 1 }), 40000), 0).ctState, CtState.INVALID);
  // Window scale after an end-of-list option is not read either.
  const ct2 = new Conntrack();
  for (const s of handshake({ cSyn: { win: 1024, options: [0, 3, 3, 7] }, sSyn: { win: 1024, options: WSCALE(7) } })) pass(ct2, segment(s, 40001), 0);
  pass(ct2, segment(st('s', 'A', 5001, 1001, E, { win: 512 }), 40001), 0);
  t.is(pass(ct2, segment(st('c', 'PA', 31001, 5001, I, { len: 1 }), 40001), 0).ctState, CtState.INVALID);
});

function pass(ct: Conntrack, bytes: Buffer, now: number): PacketContext {
  const p = ctxOf(bytes, now);
  if (ct.in(p) === Verdict.ACCEPT && p.ctState !== CtState.INVALID) ct.confirm(p);
  return p;
}

test('window tracking allocates nothing per packet (coarse heap check, sequence numbers above 2^31)', (t) => {
  const ct = new Conntrack();
  const isnC = 0xfff00000;
  const isnS = 0x9abc0000;
  const open = [st('c', 'S', isnC, 0, N, { options: [...WSCALE(7), ...SACK_OK] }), st('s', 'SA', isnS, isnC + 1, E, { options: [...WSCALE(7), ...SACK_OK] }), st('c', 'A', isnC + 1, isnS + 1, E)];
  for (const s of open) pass(ct, segment(s, 40000), 0);
  // One data segment and one ack with a SACK block, rewritten in place each round.
  const data = ctxOf(segment(st('c', 'PA', isnC + 1, isnS + 1, E, { len: 1000, options: [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0] }), 40000), 0);
  const ack = ctxOf(segment(st('s', 'A', isnS + 1, isnC + 1, E, { win: 2000, options: SACK(isnC + 1, isnC + 1) }), 40000), 0);
  const dl4 = data.l4off;
  const al4 = ack.l4off;
  let seq = (isnC + 1) >>> 0;
  const round = (n: number) => {
    let invalid = 0;
    for (let i = 0; i < n; i++) {
      data.buf.writeUInt32BE(seq, dl4 + 4);
      seq = (seq + 1000) >>> 0;
      ack.buf.writeUInt32BE(seq, al4 + 8);
      ack.buf.writeUInt32BE(seq, al4 + 28);
      ct.in(data);
      invalid += data.ctState & CtState.INVALID;
      ct.in(ack);
      invalid += ack.ctState & CtState.INVALID;
    }
    return invalid;
  };
  t.is(round(50_000), 0, 'every segment in window (the flow wraps through 2^32)');
  const grown: number[] = [];
  for (let r = 0; r < 5; r++) {
    const before = process.memoryUsage().heapUsed;
    round(100_000);
    grown.push(process.memoryUsage().heapUsed - before);
  }
  grown.sort((a, b) => a - b);
  // One 16-byte heap number per packet is 3.2 MB a round.
  t.true(grown[2] < 1_000_000, `heap growth per round: ${grown.join(', ')} bytes`);
});
