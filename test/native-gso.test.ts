/**
 * UDP GSO coalescing of TUN writes (dataplane/native/tun.c): which runs of a
 * batch merge into one VIRTIO_NET_HDR_GSO_UDP_L4 write, the header bytes of
 * such a write, and, against the real kernel, that the segments it cuts are
 * byte-identical to the packets written one by one.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createBatch, HEADROOM } from '../dataplane/device.js';
import { loadTunAddon, openTun, type TunDevice } from '../dataplane/tun.js';

const native = loadTunAddon();

function onesSum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length % 2) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

interface Udp {
  v6?: boolean;
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  id?: number;
  df?: boolean;
  ttl?: number;
  tos?: number;
  flow?: number;
  size: number;
  /** 'zero': no checksum (IPv4); 'bad': a wrong one */
  csum?: 'zero' | 'bad';
  fill?: number;
}

function v4(a: string): number[] {
  return a.split('.').map(Number);
}

function v6(a: string): number[] {
  // enough for the test addresses: "2001:db8:c::2" style with one '::'
  const [h, t] = a.split('::');
  const head = h ? h.split(':') : [];
  const tail = t ? t.split(':') : [];
  const groups = [...head, ...Array(8 - head.length - tail.length).fill('0'), ...tail].map((g) => parseInt(g, 16));
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

/** An IPv4 or IPv6 UDP datagram with `size` payload bytes, checksums computed here. */
function udp(o: Udp): Buffer {
  const iphl = o.v6 ? 40 : 20;
  const ulen = 8 + o.size;
  const p = Buffer.alloc(iphl + ulen);
  let pseudo: number;
  if (o.v6) {
    const src = v6(o.src ?? '2001:db8:c::2');
    const dst = v6(o.dst ?? '2001:db8:5::2');
    p.writeUInt32BE((0x6 << 28) | ((o.tos ?? 0) << 20) | (o.flow ?? 0), 0);
    p.writeUInt16BE(ulen, 4);
    p[6] = 17;
    p[7] = o.ttl ?? 64;
    p.set(src, 8);
    p.set(dst, 24);
    pseudo = onesSum(p.subarray(8, 40), 17 + ulen);
  } else {
    p[0] = 0x45;
    p[1] = o.tos ?? 0;
    p.writeUInt16BE(p.length, 2);
    p.writeUInt16BE(o.id ?? 0x1000, 4);
    p.writeUInt16BE(o.df === false ? 0 : 0x4000, 6);
    p[8] = o.ttl ?? 64;
    p[9] = 17;
    p.set(v4(o.src ?? '198.51.100.2'), 12);
    p.set(v4(o.dst ?? '192.0.2.9'), 16);
    p.writeUInt16BE(~onesSum(p.subarray(0, 20)) & 0xffff, 10);
    pseudo = onesSum(p.subarray(12, 20), 17 + ulen);
  }
  p.writeUInt16BE(o.sport ?? 40000, iphl);
  p.writeUInt16BE(o.dport ?? 9000, iphl + 2);
  p.writeUInt16BE(ulen, iphl + 4);
  p.fill(o.fill ?? 0x61, iphl + 8);
  const c = ~onesSum(p.subarray(iphl), pseudo) & 0xffff;
  if (o.csum === 'zero') p.writeUInt16BE(0, iphl + 6);
  else if (o.csum === 'bad') p.writeUInt16BE((c === 0 ? 0xffff : c) ^ 0x0101, iphl + 6);
  else p.writeUInt16BE(c === 0 ? 0xffff : c, iphl + 6);
  return p;
}

/** A train of IPv4 datagrams of one flow with consecutive IDs. */
function train(n: number, size: number, over: Partial<Udp> = {}, firstId = 0x1000): Udp[] {
  return Array.from({ length: n }, (_, k) => ({ size, id: (firstId + k) & 0xffff, ...over }));
}

function batchOf(pkts: Buffer[]) {
  const b = createBatch(Math.max(pkts.length, 1), 1500);
  pkts.forEach((p, i) => {
    p.copy(b.data, b.offsets[i]!);
    b.lengths[i] = p.length;
  });
  b.count = pkts.length;
  return b;
}

function runs(specs: Udp[]): number[] {
  const b = batchOf(specs.map(udp));
  const out = new Uint32Array(specs.length);
  const n = native.gsoRuns(b.data, b.offsets, b.lengths, b.count, out);
  return [...out.subarray(0, n)];
}

const cases: Array<{ title: string; specs: Udp[]; want: number[] }> = [
  { title: 'one flow, consecutive IDs, equal sizes', specs: train(4, 18), want: [4] },
  { title: 'a single packet is written alone', specs: train(1, 18), want: [1] },
  {
    title: 'different destination port splits',
    specs: [...train(2, 18), ...train(2, 18, { dport: 9001 }, 0x1002)],
    want: [2, 2],
  },
  {
    title: 'different source address splits',
    specs: [...train(2, 18), ...train(2, 18, { src: '198.51.100.3' }, 0x1002)],
    want: [2, 2],
  },
  { title: 'an ID gap splits', specs: [...train(2, 18), ...train(2, 18, {}, 0x1003)], want: [2, 2] },
  { title: 'IDs wrap from 0xffff to 0', specs: train(3, 18, {}, 0xfffe), want: [3] },
  { title: 'equal IDs (no increment) do not merge', specs: [{ size: 18, id: 5 }, { size: 18, id: 5 }], want: [1, 1] },
  { title: 'DF clear never merges', specs: train(3, 18, { df: false }), want: [1, 1, 1] },
  { title: 'a longer packet after the first splits', specs: [{ size: 18, id: 1 }, { size: 19, id: 2 }], want: [1, 1] },
  {
    title: 'TTL differs',
    specs: [{ size: 18, id: 1 }, { size: 18, id: 2 }, { size: 18, id: 3, ttl: 63 }],
    want: [2, 1],
  },
  {
    title: 'TOS differs',
    specs: [{ size: 18, id: 1 }, { size: 18, id: 2, tos: 0x10 }],
    want: [1, 1],
  },
  {
    title: 'the last may be shorter and ends the run',
    specs: [...train(3, 18), { size: 7, id: 0x1003 }, { size: 18, id: 0x1004 }, { size: 18, id: 0x1005 }],
    want: [4, 2],
  },
  { title: 'at most 64 segments', specs: train(70, 18), want: [64, 6] },
  // 46 * 1400 + 28 = 64428 <= 65535 < 64428 + 1400
  { title: 'at most 64 KiB of IP', specs: train(60, 1400), want: [46, 14] },
  { title: 'a missing UDP checksum (0) is not merged', specs: train(3, 18, { csum: 'zero' }), want: [1, 1, 1] },
  {
    title: 'a wrong UDP checksum is not merged (the kernel would write a right one)',
    specs: [...train(2, 18), { size: 18, id: 0x1002, csum: 'bad' }],
    want: [2, 1],
  },
  { title: 'an empty payload is not merged', specs: train(2, 0), want: [1, 1] },
  { title: 'IPv6: one flow merges', specs: train(5, 18, { v6: true }), want: [5] },
  {
    title: 'IPv6: flow label or hop limit differs',
    specs: [
      { v6: true, size: 18 },
      { v6: true, size: 18, flow: 7 },
      { v6: true, size: 18, flow: 7, ttl: 1 },
    ],
    want: [1, 1, 1],
  },
  {
    title: 'IPv6 then IPv4 of the same ports do not merge',
    specs: [{ v6: true, size: 18 }, { v6: true, size: 18 }, ...train(2, 18)],
    want: [2, 2],
  },
];

for (const c of cases) {
  test(`gso runs: ${c.title}`, (t) => {
    t.deepEqual(runs(c.specs), c.want);
  });
}

test('gso runs: IPv4 with options or a fragment is written alone', (t) => {
  const frag = udp({ size: 18, id: 1 });
  frag.writeUInt16BE(0x2000, 6); // MF, DF clear
  frag.writeUInt16BE(0, 10);
  frag.writeUInt16BE(~onesSum(frag.subarray(0, 20)) & 0xffff, 10);
  const b = batchOf([frag, udp({ size: 18, id: 2 })]);
  const out = new Uint32Array(2);
  t.deepEqual([...out.subarray(0, native.gsoRuns(b.data, b.offsets, b.lengths, 2, out))], [1, 1]);
});

test('gso header: IPv4 golden bytes for 18+18+7 payload bytes', (t) => {
  const b = batchOf([udp({ size: 18, id: 0x1000 }), udp({ size: 18, id: 0x1001 }), udp({ size: 7, id: 0x1002 })]);
  const out = new Uint8Array(58);
  const n = native.gsoHeader(b.data, b.offsets, b.lengths, 0, 3, out);
  t.is(n, 38);
  const hex = Buffer.from(out.subarray(0, n)).toString('hex');
  // vnet: NEEDS_CSUM, GSO_UDP_L4, hdr_len 28, gso_size 18, csum_start 20, csum_offset 6 (little-endian)
  t.is(hex.slice(0, 20), '01051c00120014000600');
  const ip = Buffer.from(out.subarray(10, 30));
  t.is(ip.readUInt16BE(2), 28 + 43); // total length of the super-packet
  t.is(ip.readUInt16BE(4), 0x1000); // first ID; the kernel numbers the rest
  t.is(onesSum(ip), 0xffff); // header checksum valid
  const u = Buffer.from(out.subarray(30, 38));
  t.is(u.readUInt16BE(4), 8 + 43);
  // partial checksum = folded pseudo-header sum with the super-packet's UDP length
  t.is(u.readUInt16BE(6), onesSum(Buffer.from([198, 51, 100, 2, 192, 0, 2, 9]), 17 + 8 + 43));
  t.is(hex, '01051c00120014000600' + '450000471000400040113e67c6336402c0000209' + '9c4023280033ec83');
});

test('gso header: refuses packets that are not one run', (t) => {
  const b = batchOf([udp({ size: 18, id: 1 }), udp({ size: 18, id: 3 })]);
  t.throws(() => native.gsoHeader(b.data, b.offsets, b.lengths, 0, 2, new Uint8Array(58)), { instanceOf: RangeError });
});

// ---------------------------------------------------------------- against the kernel

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

function nsRun(ns: string, cmd: string, ...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 10_000,
  });
}

/**
 * A namespace that forwards between an ingress TUN (written by the test) and
 * an egress TUN (read by the test, no vnet header, no offloads: the kernel
 * segments a GSO packet in software and completes each segment's checksum
 * before handing it over, exactly where tcpdump on that device sees it).
 */
function forwardingNamespace(t: { teardown(fn: () => void): void }) {
  const tag = randomBytes(3).toString('hex');
  const ns = `xo-gso-${tag}`;
  const gsoIn = openTun(`xgi${tag}`, { kind: 'tun', gso: true });
  const plainIn = openTun(`xpi${tag}`, { kind: 'tun', gso: false });
  const out = openTun(`xgo${tag}`, { kind: 'tun', vnetHdr: false });
  ip('netns', 'add', ns);
  t.teardown(() => {
    for (const d of [gsoIn, plainIn, out]) d.close();
    try {
      ip('netns', 'del', ns);
    } catch {
      /* gone */
    }
  });
  for (const d of [gsoIn, plainIn, out]) ip('link', 'set', d.name, 'netns', ns);
  nsRun(ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0');
  for (const d of [gsoIn, plainIn, out]) {
    nsRun(ns, 'sysctl', '-qw', `net.ipv4.conf.${d.name}.rp_filter=0`);
    nsRun(ns, 'ip', 'link', 'set', d.name, 'up');
  }
  nsRun(ns, 'ip', 'route', 'add', '192.0.2.0/24', 'dev', out.name);
  nsRun(ns, 'ip', '-6', 'route', 'add', '2001:db8:5::/64', 'dev', out.name);
  return { gsoIn, plainIn, out };
}

function drainUdp(dev: TunDevice): Buffer[] {
  const b = createBatch(64, 65600 - HEADROOM);
  const got: Buffer[] = [];
  for (let rounds = 0; rounds < 100; rounds++) {
    const n = dev.read(b);
    for (let i = 0; i < n; i++) {
      const p = b.data.subarray(b.offsets[i]!, b.offsets[i]! + b.lengths[i]!);
      const isUdp = (p[0]! >> 4 === 4 && p[9] === 17) || (p[0]! >> 4 === 6 && p[6] === 17);
      if (isUdp) got.push(Buffer.from(p));
    }
    if (n < b.capacity) break;
  }
  return got;
}

function writeAll(dev: TunDevice, pkts: Buffer[]): number {
  const b = batchOf(pkts);
  return dev.write(b.data, b.offsets, b.lengths, b.count);
}

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 150));
}

test.serial('kernel: GSO segments are byte-identical to the packets written one by one (IPv4, IPv6, mixed)', async (t) => {
  const { gsoIn, plainIn, out } = forwardingNamespace(t);
  const burst: Buffer[] = [
    ...train(40, 18).map(udp), // one run of 40
    ...train(5, 1200, { dport: 9001 }, 0x2000).map(udp),
    udp({ size: 300, id: 0x2005, dport: 9001 }), // shorter last
    ...train(3, 18, { df: false }, 0x3000).map(udp), // never merged
    ...train(70, 64, { v6: true, fill: 0x7a }).map(udp), // 64 + 6
    ...train(2, 100, { tos: 0xb8 }, 0x4000).map(udp), // DSCP EF + ECN bits kept
  ];
  // run sizes, to be sure the burst exercises merging at all
  const b = batchOf(burst);
  const r = new Uint32Array(burst.length);
  const nr = native.gsoRuns(b.data, b.offsets, b.lengths, b.count, r);
  t.deepEqual([...r.subarray(0, nr)], [40, 6, 1, 1, 1, 64, 6, 2]);

  drainUdp(out);
  t.is(writeAll(plainIn, burst), burst.length);
  await settle();
  const plain = drainUdp(out);
  t.is(gsoIn.stats.txDropped, 0);
  t.is(writeAll(gsoIn, burst), burst.length);
  t.is(plainIn.stats.txGsoWrites, 0);
  t.is(gsoIn.stats.txGsoWrites, 5, 'the runs of 40, 6, 64, 6 and 2 went as one write each');
  t.is(gsoIn.stats.txGsoPackets, 118);
  await settle();
  const gso = drainUdp(out);
  t.is(plain.length, burst.length, 'every packet written one by one is forwarded');
  t.is(gso.length, burst.length, 'every segment of the GSO writes is forwarded');
  for (let i = 0; i < burst.length; i++) {
    t.is(gso[i]!.toString('hex'), plain[i]!.toString('hex'), `packet ${i}`);
  }
  // and what came out is what went in, forwarded: TTL/hop limit - 1, nothing else but the IPv4 header checksum
  for (let i = 0; i < burst.length; i++) {
    const a = Buffer.from(burst[i]!);
    const g = gso[i]!;
    if (a[0]! >> 4 === 4) {
      a[8]!--;
      a.writeUInt16BE(0, 10);
      a.writeUInt16BE(~onesSum(a.subarray(0, 20)) & 0xffff, 10);
    } else {
      a[7]!--;
    }
    if (!a.equals(g)) t.fail(`packet ${i} changed beyond the TTL`);
  }
});

// a module-level check: the udp() helper itself must be right, or the tests above prove nothing
test('fixture: the udp() helper builds packets with valid checksums', (t) => {
  const p4 = udp({ size: 18 });
  t.is(onesSum(p4.subarray(0, 20)), 0xffff);
  t.is(onesSum(p4.subarray(20), onesSum(p4.subarray(12, 20), 17 + 26)), 0xffff);
  const p6 = udp({ v6: true, size: 5 });
  t.is(onesSum(p6.subarray(40), onesSum(p6.subarray(8, 40), 17 + 13)), 0xffff);
});
