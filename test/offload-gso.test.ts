/**
 * Issue 14, the byte level: the software segmenter (dataplane/gso.ts) cuts a
 * TCP/UDP super-packet as tcp_gso_segment/__udp_gso_segment would, and the
 * native TCP coalescer (dataplane/native/tun.c, write mode 3) merges exactly
 * the segment runs whose re-segmentation gives the same bytes back, with
 * the virtio header and partial checksum the kernel expects.
 */
import test from 'ava';
import { createBatch } from '../dataplane/device.js';
import { gsoHeaderLength, segmentSuperPacket } from '../dataplane/gso.js';
import { loadTunAddon } from '../dataplane/tun.js';

const native = loadTunAddon();

function onesSum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length % 2) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

const SRC4 = [198, 51, 100, 2];
const DST4 = [203, 0, 113, 2];
const SRC6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const DST6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

interface Seg {
  v6?: boolean;
  udp?: boolean;
  seq?: number;
  id?: number;
  flags?: number;
  /** TCP options (multiple of 4 bytes) */
  options?: number[];
  window?: number;
  ttl?: number;
  payload: Uint8Array;
  badCsum?: boolean;
}

const ACK = 0x10;
const PSH = 0x08;
const FIN = 0x01;
const CWR = 0x80;
const TS_OPTS = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];

function pseudo(p: Buffer, iphl: number, proto: number, l4len: number): number {
  return iphl === 20 ? onesSum(p.subarray(12, 20), proto + l4len) : onesSum(p.subarray(8, 40), proto + l4len);
}

/** One IPv4/IPv6 TCP (or UDP) packet with valid checksums. */
function pkt(s: Seg): Buffer {
  const iphl = s.v6 ? 40 : 20;
  const opts = s.options ?? [];
  const l4hl = s.udp ? 8 : 20 + opts.length;
  const l4len = l4hl + s.payload.length;
  const p = Buffer.alloc(iphl + l4len);
  const proto = s.udp ? 17 : 6;
  if (s.v6) {
    p.writeUInt32BE(0x60000000, 0);
    p.writeUInt16BE(l4len, 4);
    p[6] = proto;
    p[7] = s.ttl ?? 64;
    p.set(SRC6, 8);
    p.set(DST6, 24);
  } else {
    p[0] = 0x45;
    p.writeUInt16BE(p.length, 2);
    p.writeUInt16BE(s.id ?? 0x2000, 4);
    p.writeUInt16BE(0x4000, 6);
    p[8] = s.ttl ?? 64;
    p[9] = proto;
    p.set(SRC4, 12);
    p.set(DST4, 16);
    p.writeUInt16BE(~onesSum(p.subarray(0, 20)) & 0xffff, 10);
  }
  const l4 = iphl;
  p.writeUInt16BE(40000, l4);
  p.writeUInt16BE(5201, l4 + 2);
  if (s.udp) {
    p.writeUInt16BE(l4len, l4 + 4);
  } else {
    p.writeUInt32BE((s.seq ?? 1000) >>> 0, l4 + 4);
    p.writeUInt32BE(0x11223344, l4 + 8);
    p[l4 + 12] = (l4hl / 4) << 4;
    p[l4 + 13] = s.flags ?? ACK;
    p.writeUInt16BE(s.window ?? 512, l4 + 14);
    p.set(opts, l4 + 20);
  }
  p.set(s.payload, l4 + l4hl);
  const at = l4 + (s.udp ? 6 : 16);
  let c = ~onesSum(p.subarray(l4), pseudo(p, iphl, proto, l4len)) & 0xffff;
  if (s.udp && c === 0) c = 0xffff;
  p.writeUInt16BE(s.badCsum ? c ^ 0x0101 : c, at);
  return p;
}

function bytes(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

function checksumOk(p: Buffer): boolean {
  const v6 = p[0]! >> 4 === 6;
  const iphl = v6 ? 40 : 20;
  if (!v6 && onesSum(p.subarray(0, 20)) !== 0xffff) return false;
  const proto = v6 ? p[6]! : p[9]!;
  return onesSum(p.subarray(iphl), pseudo(p, iphl, proto, p.length - iphl)) === 0xffff;
}

function segment(sp: Buffer, gso: number): Buffer[] {
  const dst = new Uint8Array(200000);
  const offs = new Uint32Array(1400);
  const lens = new Uint32Array(1400);
  const n = segmentSuperPacket(sp, 0, sp.length, gso, dst, 0, 14, offs, lens);
  if (n < 0) throw new Error('segmentSuperPacket refused');
  return Array.from({ length: n }, (_, k) => Buffer.from(dst.subarray(offs[k]!, offs[k]! + lens[k]!)));
}

for (const v6 of [false, true]) {
  const fam = v6 ? 'IPv6' : 'IPv4';
  test(`segmenter: ${fam} TCP super-packet of 3000 bytes at gso_size 1200 gives the kernel's three segments`, (t) => {
    const data = bytes(3000);
    const sp = pkt({ v6, seq: 0xfffffc00, id: 0xfffe, flags: ACK | PSH | FIN | CWR, options: TS_OPTS, payload: data });
    t.is(gsoHeaderLength(sp, 0, sp.length), (v6 ? 40 : 20) + 32);
    const segs = segment(sp, 1200);
    t.deepEqual(
      segs.map((s) => s.length),
      [1200, 1200, 600].map((n) => n + (v6 ? 40 : 20) + 32),
    );
    const iphl = v6 ? 40 : 20;
    segs.forEach((s, k) => {
      t.true(checksumOk(s), `segment ${k} checksums`);
      t.is(s.readUInt32BE(iphl + 4), (0xfffffc00 + k * 1200) >>> 0, 'seq advances by gso_size (and wraps)');
      const want = (k === 0 ? CWR : 0) | ACK | (k === 2 ? PSH | FIN : 0);
      t.is(s[iphl + 13], want, `flags of segment ${k}`);
      t.deepEqual([...s.subarray(iphl + 20, iphl + 32)], TS_OPTS, 'options copied');
      if (!v6) t.is(s.readUInt16BE(4), (0xfffe + k) & 0xffff, 'IPv4 ID + k (wrapping)');
      else t.is(s.readUInt16BE(4), s.length - 40);
    });
    t.deepEqual(Buffer.concat(segs.map((s) => s.subarray(iphl + 32))), Buffer.from(data));
  });

  test(`segmenter: ${fam} UDP (USO) super-packet: each segment its own UDP header and checksum`, (t) => {
    const data = bytes(2500, 7);
    const sp = pkt({ v6, udp: true, payload: data });
    const segs = segment(sp, 1000);
    const iphl = v6 ? 40 : 20;
    t.deepEqual(
      segs.map((s) => s.length - iphl - 8),
      [1000, 1000, 500],
    );
    for (const s of segs) {
      t.true(checksumOk(s));
      t.is(s.readUInt16BE(iphl + 4), s.length - iphl);
    }
    t.deepEqual(Buffer.concat(segs.map((s) => s.subarray(iphl + 8))), Buffer.from(data));
  });
}

test('segmenter: refuses what it cannot cut (ICMP, too many segments, too small a buffer)', (t) => {
  const sp = pkt({ payload: bytes(3000) });
  const icmp = Buffer.from(sp);
  icmp[9] = 1;
  const dst = new Uint8Array(10000);
  const offs = new Uint32Array(2);
  const lens = new Uint32Array(2);
  t.is(segmentSuperPacket(icmp, 0, icmp.length, 1000, dst, 0, 0, offs, lens), -1);
  t.is(segmentSuperPacket(sp, 0, sp.length, 1000, dst, 0, 0, offs, lens), -1, 'three segments, room for two');
  t.is(segmentSuperPacket(sp, 0, sp.length, 1000, new Uint8Array(1000), 0, 0, new Uint32Array(4), new Uint32Array(4)), -1);
});

// ---- coalescer

function batchOf(pkts: Buffer[]) {
  const b = createBatch(Math.max(pkts.length, 1), 9100);
  pkts.forEach((p, i) => {
    p.copy(b.data, b.offsets[i]!);
    b.lengths[i] = p.length;
  });
  b.count = pkts.length;
  return b;
}

function runs(pkts: Buffer[]): number[] {
  const b = batchOf(pkts);
  const out = new Uint32Array(pkts.length);
  const n = native.gsoRuns(b.data, b.offsets, b.lengths, b.count, out, true);
  return [...out.subarray(0, n)];
}

/** `n` consecutive segments of `size` payload bytes of one flow (IDs +1, seq contiguous). */
function train(n: number, size: number, over: Partial<Seg> = {}, seq = 5000, id = 0x100): Seg[] {
  return Array.from({ length: n }, (_, k) => ({ seq: seq + k * size, id: id + k, payload: bytes(size, k + 1), ...over }));
}

const cases: Array<{ title: string; segs: Seg[]; want: number[] }> = [
  { title: 'one flow, contiguous, equal sizes', segs: train(4, 1000), want: [4] },
  { title: 'IPv6 one flow', segs: train(4, 1000, { v6: true }), want: [4] },
  { title: 'with equal timestamp options', segs: train(3, 1000, { options: TS_OPTS }), want: [3] },
  {
    title: 'a sequence gap splits',
    segs: [...train(2, 1000), ...train(2, 1000, {}, 5000 + 3000, 0x102)],
    want: [2, 2],
  },
  {
    title: 'an IPv4 ID not +1 splits',
    segs: [...train(2, 1000), ...train(2, 1000, {}, 7000, 0x105)],
    want: [2, 2],
  },
  {
    title: 'the last may be shorter and ends the run',
    segs: [...train(3, 1000), { seq: 8000, id: 0x103, payload: bytes(10) }, ...train(2, 1000, {}, 8010, 0x104)],
    want: [4, 2],
  },
  {
    title: 'PSH only on the last: a PSH segment ends the run, a PSH head is alone',
    segs: [...train(2, 1000), { seq: 7000, id: 0x102, flags: ACK | PSH, payload: bytes(1000) }, { seq: 8000, id: 0x103, flags: ACK | PSH, payload: bytes(1000) }],
    want: [3, 1],
  },
  {
    title: 'FIN, SYN, RST, URG, CWR/ECE segments are never merged',
    segs: [FIN | ACK, 0x02 | ACK, 0x04 | ACK, 0x20 | ACK, CWR | ACK, 0x40 | ACK].map((f, k) => ({ seq: 5000 + k * 1000, id: 0x100 + k, flags: f, payload: bytes(1000) })),
    want: [1, 1, 1, 1, 1, 1],
  },
  {
    title: 'different options split',
    segs: [...train(2, 1000, { options: TS_OPTS }), ...train(2, 1000, { options: [1, 1, 8, 10, 0, 0, 0x12, 0x35, 0, 0, 0x56, 0x78] }, 7000, 0x102)],
    want: [2, 2],
  },
  { title: 'a different window splits', segs: [...train(2, 1000), ...train(1, 1000, { window: 513 }, 7000, 0x102)], want: [2, 1] },
  { title: 'a different TTL splits', segs: [...train(2, 1000), ...train(1, 1000, { ttl: 63 }, 7000, 0x102)], want: [2, 1] },
  {
    title: 'a wrong checksum is not merged (the kernel would write a right one)',
    segs: [...train(2, 1000), { seq: 7000, id: 0x102, payload: bytes(1000), badCsum: true }],
    want: [2, 1],
  },
  { title: 'pure ACKs (no payload) are not merged', segs: train(3, 0), want: [1, 1, 1] },
  { title: 'at most 64 segments', segs: train(70, 100), want: [64, 6] },
  { title: 'at most 64 KiB of IP', segs: train(50, 1400), want: [46, 4] },
  { title: 'UDP after TCP: each to its own coalescer', segs: [...train(2, 1000), { udp: true, payload: bytes(10) }], want: [2, 1] },
];

for (const c of cases) {
  test(`tcp coalescing runs: ${c.title}`, (t) => {
    t.deepEqual(runs(c.segs.map(pkt)), c.want);
  });
}

for (const v6 of [false, true]) {
  test(`tcp coalescing: ${v6 ? 'IPv6' : 'IPv4'} header of a merged run re-segments to the same bytes`, (t) => {
    const segs = [...train(3, 1200, { v6, options: TS_OPTS }), { v6, seq: 5000 + 3600, id: 0x103, flags: ACK | PSH, options: TS_OPTS, payload: bytes(333, 9) }];
    const pkts = segs.map(pkt);
    const b = batchOf(pkts);
    t.deepEqual([...b.lengths.subarray(0, 4)].length, 4);
    const out = new Uint8Array(120);
    const len = native.gsoHeader(b.data, b.offsets, b.lengths, 0, 4, out, true);
    const iphl = v6 ? 40 : 20;
    const hl = iphl + 32;
    t.is(len, 10 + hl);
    // virtio_net_hdr: NEEDS_CSUM, GSO_TCPV4/6, hdr_len, gso_size, csum_start, csum_offset (little-endian)
    t.deepEqual([...out.subarray(0, 10)], [1, v6 ? 4 : 1, hl, 0, 1200 & 0xff, 1200 >> 8, iphl, 0, 16, 0]);
    const h = Buffer.from(out.subarray(10, len));
    const payload = Buffer.concat(pkts.map((p) => p.subarray(hl)));
    const total = hl + payload.length;
    if (!v6) {
      t.is(h.readUInt16BE(2), total);
      t.is(onesSum(h.subarray(0, 20)), 0xffff, 'IPv4 header checksum');
    } else {
      t.is(h.readUInt16BE(4), total - 40);
    }
    t.is(h[iphl + 13], ACK | PSH, "the last segment's PSH");
    // the partial checksum: the folded pseudo-header sum with the super-packet's L4 length
    t.is(h.readUInt16BE(iphl + 16), pseudo(h, iphl, 6, total - iphl));
    // complete it as the kernel would and cut it: the original segments come back
    const sp = Buffer.concat([h, payload]);
    sp.writeUInt16BE(0, iphl + 16);
    sp.writeUInt16BE(~onesSum(sp.subarray(iphl), pseudo(sp, iphl, 6, total - iphl)) & 0xffff, iphl + 16);
    const again = segment(sp, 1200);
    t.deepEqual(again, pkts);
  });
}
