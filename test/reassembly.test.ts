/**
 * Fragment reassembly (dataplane/reassembly.ts) and re-fragmentation along
 * the original fragments (refragmentIpv4/6 in dataplane/build.ts): table
 * cases built from whole datagrams cut into fragments by hand, each checked
 * against the rules the kernel applies (measured in a namespace with a
 * conntrack rule loaded, see docs/compat.md "fragments").
 */
import test from 'ava';
import { fragmentIpv4, refragmentIpv4, refragmentIpv6 } from '../dataplane/build.js';
import { checksum } from '../dataplane/checksum.js';
import { DEFRAG_IN, DEFRAG_OUT, Reassembler, ReasmResult } from '../dataplane/reassembly.js';
import { frag4, frag6, tcp4, v6, whole6, type V6 } from './fragments.js';
import { udp4 } from './router-packets.js';

const { PASS, QUEUED, DROPPED, COMPLETE } = { PASS: ReasmResult.PASS, QUEUED: ReasmResult.QUEUED, DROPPED: ReasmResult.DROPPED, COMPLETE: ReasmResult.COMPLETE };
const NAMES = ['PASS', 'QUEUED', 'DROPPED', 'COMPLETE'];

function feed(r: Reassembler, pkts: Buffer[], now = 0, user = DEFRAG_IN): string[] {
  return pkts.map((p) => NAMES[r.add(p, 0, p.length, user, now)]);
}

function emitted(r: Reassembler): Buffer {
  const out = Buffer.alloc(r.datagramLength + 8, 0xee);
  const n = r.emit(out, 4);
  return out.subarray(4, 4 + n);
}

const D4 = udp4({ src: '198.51.100.2', dst: '203.0.113.2', payload: 200, id: 77 }); // 228 bytes: 208 of UDP

test('IPv4: in order, out of order and reversed, the whole datagram comes back byte for byte', (t) => {
  const cuts: [number, number][] = [
    [0, 48],
    [48, 72],
    [72, 208],
  ];
  for (const order of [[0, 1, 2], [2, 0, 1], [2, 1, 0], [1, 2, 0]]) {
    const r = new Reassembler();
    const results = feed(r, order.map((i) => frag4(D4, ...cuts[i])));
    t.deepEqual(results, ['QUEUED', 'QUEUED', 'COMPLETE'], `order ${order}`);
    t.deepEqual(emitted(r), D4, `order ${order}`);
    t.is(r.fragMaxSize, 20 + 136, 'the largest fragment, header included');
    t.deepEqual([...r.pieceEnds.subarray(0, r.pieceCount)], [48, 72, 208], 'fragments in offset order');
    t.is(r.queues, 0);
    t.is(r.bytesHeld, 0, 'every block back on the free list');
  }
});

test('IPv4: the datagram takes the offset-0 fragment header (TTL, TOS) whatever came first', (t) => {
  const r = new Reassembler();
  t.deepEqual(feed(r, [frag4(D4, 48, 208, { ttl: 20 }), frag4(D4, 0, 48, { ttl: 30 })]), ['QUEUED', 'COMPLETE']);
  const w = emitted(r);
  t.is(w[8], 30);
  t.is(checksum(w, 0, 20), 0, 'header checksum recomputed');
  t.is(w.readUInt16BE(6), 0, 'no MF, no offset');
});

test('duplicates inside one run are dropped and the queue kept; an overlap across runs or partial discards the datagram', (t) => {
  const cases: { name: string; pieces: [number, number][]; results: string[]; completes: boolean }[] = [
    { name: 'exact duplicate of the first', pieces: [[72, 208], [0, 48], [0, 48], [48, 72]], results: ['QUEUED', 'QUEUED', 'DROPPED', 'COMPLETE'], completes: true },
    { name: 'inside the tail run', pieces: [[0, 48], [48, 96], [40, 56], [96, 208]], results: ['QUEUED', 'QUEUED', 'DROPPED', 'COMPLETE'], completes: true },
    { name: 'inside a middle run', pieces: [[160, 208], [0, 48], [48, 96], [8, 40], [96, 160]], results: ['QUEUED', 'QUEUED', 'QUEUED', 'DROPPED', 'COMPLETE'], completes: true },
    // [0,48) and [48,96) came as separate runs: [40,56) is in neither, so it overlaps (measured: the kernel sends nothing)
    { name: 'spanning two runs', pieces: [[160, 208], [0, 48], [48, 96], [40, 56], [96, 160]], results: ['QUEUED', 'QUEUED', 'QUEUED', 'DROPPED', 'QUEUED'], completes: false },
    { name: 'partial overlap at the tail', pieces: [[0, 48], [40, 96], [96, 208]], results: ['QUEUED', 'DROPPED', 'QUEUED'], completes: false },
  ];
  for (const c of cases) {
    for (const v of [4, 6] as const) {
      const r = new Reassembler();
      const p6 = v6();
      const pkts = c.pieces.map(([s, e]) => (v === 4 ? frag4(D4, s, e) : frag6(p6, s, e)));
      t.deepEqual(feed(r, pkts), c.results, `IPv${v} ${c.name}`);
      if (c.completes) t.deepEqual(emitted(r), v === 4 ? D4 : whole6(p6), `IPv${v} ${c.name}`);
      else t.is(r.queues, 1, `IPv${v} ${c.name}: only what came after the overlap is queued`);
    }
  }
});

test('IPv4 end rules: MF data cut to 8 bytes, a second last fragment with another end discards the datagram; IPv6 drops only that fragment', (t) => {
  // a non-last IPv4 fragment of 44 bytes counts as 40: the gap to 48 is never filled
  let r = new Reassembler();
  t.deepEqual(feed(r, [frag4(D4, 0, 44), frag4(D4, 48, 208)]), ['QUEUED', 'QUEUED']);
  t.is(r.queues, 1);
  // last fragment ending at 100 makes the datagram 100 bytes long: complete, even if UDP says more
  r = new Reassembler();
  t.deepEqual(feed(r, [frag4(D4, 0, 48), frag4(D4, 48, 100, { mf: false }), frag4(D4, 96, 208, { mf: false })]), ['QUEUED', 'COMPLETE', 'QUEUED']);
  // two different last fragments
  r = new Reassembler();
  t.deepEqual(feed(r, [frag4(D4, 96, 208), frag4(D4, 48, 100, { mf: false }), frag4(D4, 0, 48)]), ['QUEUED', 'DROPPED', 'QUEUED']);
  t.is(r.stats.failed, 1);
  const p6 = v6();
  r = new Reassembler();
  t.deepEqual(feed(r, [frag6(p6, 96, 208), frag6(p6, 48, 100, false), frag6(p6, 0, 48), frag6(p6, 48, 96)]), ['QUEUED', 'DROPPED', 'QUEUED', 'COMPLETE']);
  // IPv6: a non-last fragment that is not a multiple of 8 ends the queue and passes as it is
  r = new Reassembler();
  t.deepEqual(feed(r, [frag6(p6, 48, 208), frag6(p6, 0, 44, true)]), ['QUEUED', 'PASS']);
  t.is(r.queues, 0);
});

test('a queue lives 30 s from its first fragment; then its fragments are freed and a late one starts over', (t) => {
  const r = new Reassembler();
  t.deepEqual(feed(r, [frag4(D4, 0, 48)], 1000), ['QUEUED']);
  t.deepEqual(feed(r, [frag4(D4, 48, 96)], 30_999), ['QUEUED']);
  t.deepEqual(feed(r, [frag4(D4, 96, 208)], 31_000), ['QUEUED'], 'the queue of the first two is gone at 30 s');
  t.is(r.stats.timeouts, 1);
  t.is(r.queues, 1);
  t.deepEqual(feed(r, [frag4(D4, 0, 48), frag4(D4, 48, 96)], 40_000), ['QUEUED', 'COMPLETE']);
  t.deepEqual(emitted(r), D4);
  const short = new Reassembler({ timeoutMs: 10 });
  feed(short, [frag4(D4, 0, 48)], 0);
  feed(short, [frag4(D4, 48, 208)], 10);
  t.is(short.stats.completed, 0);
});

test('memory bound: a fragment that does not fit evicts the oldest queues, never its own', (t) => {
  // 8 blocks of 512 bytes: each incomplete datagram below holds 2 (header + data)
  const r = new Reassembler({ memoryBytes: 8 * 512 });
  for (let id = 1; id <= 4; id++) feed(r, [frag4(udp4({ src: '198.51.100.2', dst: '203.0.113.2', payload: 200, id }), 0, 48)]);
  t.is(r.queues, 4);
  t.is(r.bytesHeld, 8 * 512);
  const d5 = udp4({ src: '198.51.100.2', dst: '203.0.113.2', payload: 200, id: 5 });
  t.deepEqual(feed(r, [frag4(d5, 0, 48)]), ['QUEUED']);
  t.is(r.stats.evicted, 1);
  // id 1 was the oldest: its last fragment now starts a new queue (evicting id 2) and cannot complete
  t.deepEqual(feed(r, [frag4(udp4({ src: '198.51.100.2', dst: '203.0.113.2', payload: 200, id: 1 }), 48, 208)]), ['QUEUED']);
  t.is(r.stats.evicted, 2);
  t.deepEqual(feed(r, [frag4(d5, 48, 208)]), ['COMPLETE'], 'the newest datagram completes');
  t.deepEqual(emitted(r), d5);
  // a datagram larger than all the memory is refused, the others kept
  const big = udp4({ src: '198.51.100.2', dst: '203.0.113.2', payload: 6000, id: 9 });
  const r2 = new Reassembler({ memoryBytes: 8 * 512 });
  const res = feed(r2, [frag4(big, 0, 1480), frag4(big, 1480, 2960), frag4(big, 2960, 4440)]);
  t.is(res[2], 'DROPPED');
  t.is(r2.stats.failed, 1);
});

test('queues are separate per direction (PREROUTING/OUTPUT), protocol, identification and addresses', (t) => {
  const r = new Reassembler();
  t.deepEqual(feed(r, [frag4(D4, 0, 48)], 0, DEFRAG_IN), ['QUEUED']);
  t.deepEqual(feed(r, [frag4(D4, 48, 208)], 0, DEFRAG_OUT), ['QUEUED']);
  const otherProto = Buffer.from(frag4(D4, 48, 208));
  otherProto[9] = 6;
  otherProto.writeUInt16BE(0, 10);
  otherProto.writeUInt16BE(checksum(otherProto, 0, 20), 10);
  t.deepEqual(feed(r, [otherProto]), ['QUEUED']);
  t.is(r.queues, 3);
  t.deepEqual(feed(r, [frag4(D4, 48, 208)], 0, DEFRAG_IN), ['COMPLETE']);
});

test('IPv4 DF: the datagram keeps DF only if its largest fragment had it; ECN per RFC 3168 5.3', (t) => {
  let r = new Reassembler();
  feed(r, [frag4(D4, 0, 48, { df: true }), frag4(D4, 48, 208, { df: true })]);
  t.is(emitted(r).readUInt16BE(6), 0x4000);
  r = new Reassembler();
  feed(r, [frag4(D4, 0, 48, { df: true }), frag4(D4, 48, 208)]);
  t.is(emitted(r).readUInt16BE(6), 0);
  const ecn: { tos: [number, number]; out: number | null }[] = [
    { tos: [0x02, 0x03], out: 0x03 }, // ECT(0) + CE -> CE
    { tos: [0x01, 0x02], out: 0x01 }, // ECT(1) + ECT(0): first header as is
    { tos: [0x00, 0x03], out: null }, // not-ECT + CE: discarded
    { tos: [0x10, 0x10], out: 0x10 }, // DSCP untouched
  ];
  for (const c of ecn) {
    r = new Reassembler();
    const res = feed(r, [frag4(D4, 0, 48, { tos: c.tos[0] }), frag4(D4, 48, 208, { tos: c.tos[1] })]);
    if (c.out === null) t.deepEqual(res, ['QUEUED', 'DROPPED']);
    else t.is(emitted(r)[1], c.out, `tos ${c.tos}`);
  }
});

test('a datagram beyond 65535 bytes is discarded when it completes', (t) => {
  for (const dataLen of [65515, 65520]) {
    const whole = Buffer.concat([D4.subarray(0, 20), Buffer.alloc(dataLen, 7)]);
    const r = new Reassembler();
    const res: string[] = [];
    for (let s = 0; s < dataLen; s += 1480) res.push(...feed(r, [frag4(whole, s, Math.min(s + 1480, dataLen))]));
    t.is(res.at(-1), dataLen === 65515 ? 'COMPLETE' : 'DROPPED', `20 + ${dataLen} bytes`);
    t.is(r.queues, 0);
    if (dataLen === 65515) t.is(r.datagramLength, 65535);
  }
});

test('tiny first fragments: IPv4 reassembles them (geometry not kept for TCP); IPv6 lets a first fragment without its whole TCP/UDP header pass', (t) => {
  const syn = tcp4(100);
  let r = new Reassembler();
  t.deepEqual(feed(r, [frag4(syn, 0, 8), frag4(syn, 8, 120)]), ['QUEUED', 'COMPLETE']);
  t.false(r.geometryKept, 'the kernel pulls the TCP header into its first buffer');
  t.deepEqual(emitted(r), syn);
  r = new Reassembler();
  feed(r, [frag4(syn, 0, 24), frag4(syn, 24, 120)]);
  t.true(r.geometryKept);
  // IPv6: TCP header cut after 8 or 16 bytes passes; a UDP header of 8 is whole
  const tcpData = Buffer.alloc(120);
  tcpData[12] = 0x50;
  const base = v6();
  const t6: V6 = { ...base, nh: 6, data: tcpData };
  r = new Reassembler();
  t.deepEqual(feed(r, [frag6(t6, 0, 8), frag6(t6, 0, 16)]), ['PASS', 'PASS']);
  t.is(r.queues, 0);
  t.deepEqual(feed(r, [frag6(t6, 0, 24), frag6(t6, 24, 120)]), ['QUEUED', 'COMPLETE']);
  t.deepEqual(feed(r, [frag6(base, 0, 8), frag6(base, 8, 208)]), ['QUEUED', 'COMPLETE']);
  t.deepEqual(emitted(r), whole6(base));
  // a Destination Options header after the Fragment header is skipped to find the upper layer
  const d = v6({ destAfter: true });
  t.deepEqual(feed(r, [frag6(d, 0, 8)]), ['PASS'], 'only the Destination Options header in the first fragment');
});

test('IPv6: Hop-by-Hop before and Destination Options after the Fragment header; frag_max_size is 40 + the largest payload length', (t) => {
  for (const o of [{}, { hbh: true }, { destAfter: true }, { hbh: true, destAfter: true }]) {
    const p = v6(o);
    const r = new Reassembler();
    const n = p.data.length;
    t.deepEqual(feed(r, [frag6(p, 64, n), frag6(p, 0, 64)]), ['QUEUED', 'COMPLETE'], JSON.stringify(o));
    const w = emitted(r);
    t.deepEqual(w, whole6(p), JSON.stringify(o));
    t.is(r.fragMaxSize, 40 + (p.unfrag.length - 40) + 8 + (n - 64));
    t.is(r.unfragmentableLength, p.unfrag.length);
    t.is(r.ident, p.ident);
  }
});

test('IPv6: an atomic fragment (offset 0, no M) completes at once without its Fragment header', (t) => {
  const p = v6();
  const r = new Reassembler();
  t.deepEqual(feed(r, [frag6(p, 0, p.data.length, false)]), ['COMPLETE']);
  t.deepEqual(emitted(r), whole6(p));
  t.true(r.datagramLength < r.fragMaxSize, 'smaller than what came: egress sends it whole');
});

test('a completed datagram that is not emitted is discarded by the next add', (t) => {
  const r = new Reassembler();
  feed(r, [frag4(D4, 0, 48), frag4(D4, 48, 208)]);
  t.is(r.bytesHeld > 0, true);
  feed(r, [frag4(udp4({ src: '198.51.100.2', dst: '203.0.113.2', payload: 200, id: 3 }), 0, 48)]);
  t.is(r.queues, 1);
  t.is(r.bytesHeld, 2 * 512);
  t.is(r.emit(Buffer.alloc(300), 0), 0, 'nothing pending any more');
});

test('refragmentIpv4 resends the original fragments (DF cleared), refuses pieces larger than the MTU, and the slow path cuts to it', (t) => {
  const cuts: [number, number][] = [
    [0, 48],
    [48, 72],
    [72, 208],
  ];
  const frags = cuts.map(([s, e]) => frag4(D4, s, e, { df: true }));
  const r = new Reassembler();
  feed(r, [frags[2], frags[0], frags[1]]);
  const whole = emitted(r);
  const out = Buffer.alloc(4096);
  const offs = new Uint32Array(16);
  const lens = new Uint32Array(16);
  const ends = r.pieceEnds.subarray(0, r.pieceCount);
  const n = refragmentIpv4(whole, 0, whole.length, r.fragMaxSize, ends, ends.length, out, 0, offs, lens);
  t.is(n, 3);
  for (let k = 0; k < n; k++) {
    const f = Buffer.from(out.subarray(offs[k], offs[k] + lens[k]));
    const want = frag4(D4, ...cuts[k]);
    t.deepEqual(f, want, `fragment ${k}: as it came, without DF`);
  }
  t.is(refragmentIpv4(whole, 0, whole.length, 100, ends, ends.length, out, 0, offs, lens), -2, '136 bytes do not fit MTU 100');
  const slow = fragmentIpv4(whole, 0, whole.length, 100, out, 0, offs, lens);
  t.deepEqual([...lens.subarray(0, slow)], [100, 100, 68]);
  t.is(out.readUInt16BE(offs[0] + 6), 0x4000 | 0x2000, 'the slow path keeps DF (IPSKB_FRAG_PMTU)');
});

test('refragmentIpv6 resends the original fragments, and refuses when the unfragmentable part differs', (t) => {
  for (const o of [{}, { hbh: true }]) {
    const p = v6(o);
    const cuts: [number, number][] = [
      [0, 48],
      [48, 72],
      [72, 208],
    ];
    const r = new Reassembler();
    feed(r, cuts.map(([s, e]) => frag6(p, s, e)));
    const whole = emitted(r);
    const out = Buffer.alloc(4096);
    const offs = new Uint32Array(16);
    const lens = new Uint32Array(16);
    const ends = r.pieceEnds.subarray(0, r.pieceCount);
    const n = refragmentIpv6(whole, 0, whole.length, 1280, r.unfragmentableLength, ends, ends.length, r.ident, out, 0, offs, lens);
    t.is(n, 3);
    for (let k = 0; k < n; k++) t.deepEqual(Buffer.from(out.subarray(offs[k], offs[k] + lens[k])), frag6(p, ...cuts[k]), `${JSON.stringify(o)} fragment ${k}`);
  }
  // Destination Options after the Fragment header is unfragmentable on the way out (ip6_find_1stfragopt)
  const d = v6({ destAfter: true });
  const r = new Reassembler();
  feed(r, [frag6(d, 0, 48), frag6(d, 48, d.data.length)]);
  const whole = emitted(r);
  const ends = r.pieceEnds.subarray(0, r.pieceCount);
  t.is(refragmentIpv6(whole, 0, whole.length, 1280, r.unfragmentableLength, ends, ends.length, r.ident, Buffer.alloc(4096), 0, new Uint32Array(8), new Uint32Array(8)), -2);
});
