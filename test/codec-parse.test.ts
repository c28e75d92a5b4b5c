/**
 * parsePacket: real frames parse and agree with tshark; every drop reason is
 * triggered by a fixture derived from a real packet; no input throws.
 */
import test from 'ava';
import fc from 'fast-check';
import { PacketContext } from '../xt/packet.js';
import {
  ArpView,
  DROP_REASON_COUNT,
  DROP_REASON_NAMES,
  DhcpView,
  DropReason,
  EthernetView,
  Icmpv6View,
  IcmpView,
  Ipv4View,
  Ipv6ExtInfo,
  Ipv6View,
  L2Info,
  TcpView,
  UdpView,
  checksum,
  ipv4ToString,
  ipv6ToString,
  parseEthernet,
  parseIpv6,
  parsePacket,
  walkIpv6Ext,
} from '../dataplane/index.js';
import { HEADROOM } from '../dataplane/device.js';
import { allFrames, l3InHeadroom, num, pick } from './fixtures/codec/load.js';

const ctx = new PacketContext();
const l2 = new L2Info();

test('drop reason names cover every enum value', (t) => {
  const values = Object.values(DropReason).filter((v): v is number => typeof v === 'number');
  t.is(DROP_REASON_COUNT, values.length);
  for (const v of values) t.is(DROP_REASON_NAMES[v], DropReason[v].toLowerCase());
});

for (const f of allFrames.filter((x) => x.ts['ip.version'] || x.ts['ipv6.src'])) {
  test(`${f.scenario}#${f.index}: parsePacket accepts it and fills the context like tshark`, (t) => {
    t.is(parseEthernet(l2, f.bytes, 0, f.bytes.length), 0);
    const { buf, off, len } = l3InHeadroom(f);
    t.is(l2.l3len, len);
    const r = parsePacket(ctx, buf, off, len);
    t.is(r, DropReason.NONE, DROP_REASON_NAMES[r]);
    const ts = f.ts;
    t.is(ctx.buf, buf);
    t.is(ctx.l3off, off);
    if (ts['ip.version'] === '4') {
      t.is(ctx.family, 4);
      t.is(ctx.l3len, num(ts['ip.len']));
      t.is(ipv4ToString(ctx.src4), ts['ip.src']);
      t.is(ipv4ToString(ctx.dst4), ts['ip.dst']);
      t.is(ctx.ttl, num(ts['ip.ttl']));
      t.is(ctx.proto, num(ts['ip.proto']));
      t.is(ctx.fragmentOffset, num(ts['ip.frag_offset']));
      t.is(ctx.isFragment, ts['ip.flags.mf'] === '1' || ts['ip.frag_offset'] !== '0');
      t.is(ctx.l4off, off + num(ts['ip.hdr_len']));
    } else {
      t.is(ctx.family, 6);
      t.is(ctx.l3len, 40 + num(ts['ipv6.plen']));
      t.is(ipv6ToString(ctx.src6), ts['ipv6.src']);
      t.is(ipv6ToString(ctx.dst6), ts['ipv6.dst']);
      t.is(ctx.ttl, num(ts['ipv6.hlim']));
      const fo = ts['ipv6.fraghdr.offset'];
      t.is(ctx.fragmentOffset, fo === undefined ? 0 : num(fo));
      t.is(ctx.isFragment, fo !== undefined && (fo !== '0' || ts['ipv6.fraghdr.more'] === '1'));
    }
    t.is(ctx.l4off + ctx.l4len, off + ctx.l3len);
    const firstOrWhole = ctx.fragmentOffset === 0;
    // tshark also reports the ports quoted inside ICMP errors; only the outer transport counts here.
    const l4 = firstOrWhole && ctx.proto === 6 ? 'tcp' : firstOrWhole && ctx.proto === 17 ? 'udp' : '';
    t.is(ctx.sport, l4 ? num(ts[`${l4}.srcport`]) : 0);
    t.is(ctx.dport, l4 ? num(ts[`${l4}.dstport`]) : 0);
    t.is(ctx.tcpFlags, l4 === 'tcp' ? num(ts['tcp.flags']) & 0xff : 0);
    const it = ts['icmp.type'] ?? ts['icmpv6.type'];
    t.is(ctx.icmpType, firstOrWhole && it !== undefined ? num(it) : -1);
    if (ctx.proto === 58 || ctx.proto === 1) t.is(ctx.icmpCode, firstOrWhole ? num(ts['icmp.code'] ?? ts['icmpv6.code']) : -1);
  });
}

test('bytes after the IPv4 total length are padding: l3len ignores them', (t) => {
  const f = pick('tcp4_reject_syn', 'the RST', (ts) => ts['tcp.flags'] === '0x0014');
  const { buf, off, len } = l3InHeadroom(f, 6); // Ethernet pads a 54-byte frame to 60
  t.is(parsePacket(ctx, buf, off, len + 6), 0);
  t.is(ctx.l3len, 40);
  t.is(ctx.l4len, 20);
});

test('bytes after the IPv6 payload length are padding too', (t) => {
  const f = pick('tcp6_reject_syn', 'the RST', (ts) => ts['tcp.flags'] === '0x0014');
  const { buf, off, len } = l3InHeadroom(f, 10);
  t.is(parsePacket(ctx, buf, off, len + 10), 0);
  t.is(ctx.l3len, 60);
  t.is(ctx.l4len, 20);
});

// ---- malformed packets: one fixture per drop reason ----

function fixIp4(b: Buffer, o: number): void {
  b.writeUInt16BE(0, o + 10);
  b.writeUInt16BE(checksum(b, o, (b[o] & 15) * 4), o + 10);
}

const SYN4 = pick('tcp4_reject_syn', 'the SYN', (ts) => ts['tcp.flags'] === '0x0002');
const UDP4 = pick('udp4_unreach', 'the UDP datagram', (ts) => ts['udp.length'] !== undefined && ts['icmp.type'] === undefined);
const ECHO4 = pick('ping4', 'the echo request', (ts) => ts['icmp.type'] === '8');
const SYN6 = pick('tcp6_reject_syn', 'the SYN', (ts) => ts['tcp.flags'] === '0x0002');
const FRAG6 = pick('ping6_frag', 'the first fragment', (ts) => ts['ipv6.fraghdr.offset'] === '0');
const UDP6 = pick('udp6_unreach', 'the UDP datagram', (ts) => ts['udp.length'] !== undefined && ts['icmpv6.type'] === undefined);

type Mutate = (b: Buffer, o: number) => number | void;
const malformed: { name: string; base: typeof SYN4; mutate: Mutate; expect: DropReason }[] = [
  { name: 'empty', base: SYN4, mutate: () => 0, expect: DropReason.TRUNCATED_HEADER },
  { name: 'IPv4 shorter than 20 bytes', base: SYN4, mutate: () => 19, expect: DropReason.TRUNCATED_HEADER },
  { name: 'IPv6 shorter than 40 bytes', base: SYN6, mutate: () => 39, expect: DropReason.TRUNCATED_HEADER },
  { name: 'version 5', base: SYN4, mutate: (b, o) => void (b[o] = 0x55), expect: DropReason.BAD_VERSION },
  { name: 'version 0', base: SYN6, mutate: (b, o) => void (b[o] = 0x00), expect: DropReason.BAD_VERSION },
  { name: 'IHL 4', base: SYN4, mutate: (b, o) => void (b[o] = 0x44), expect: DropReason.BAD_IHL },
  { name: 'IHL beyond the bytes', base: SYN4, mutate: (b, o) => ((b[o] = 0x4f), 40), expect: DropReason.BAD_IHL },
  { name: 'total length beyond the bytes', base: SYN4, mutate: (b, o) => void b.writeUInt16BE(61, o + 2), expect: DropReason.BAD_TOTAL_LENGTH },
  { name: 'total length below the header', base: SYN4, mutate: (b, o) => void b.writeUInt16BE(19, o + 2), expect: DropReason.BAD_TOTAL_LENGTH },
  { name: 'IPv6 payload length beyond the bytes', base: SYN6, mutate: (b, o) => void b.writeUInt16BE(41, o + 4), expect: DropReason.BAD_TOTAL_LENGTH },
  { name: 'IPv4 header checksum off by one', base: SYN4, mutate: (b, o) => void (b[o + 11] ^= 1), expect: DropReason.BAD_IP_CHECKSUM },
  { name: 'TTL changed without checksum', base: ECHO4, mutate: (b, o) => void (b[o + 8] -= 1), expect: DropReason.BAD_IP_CHECKSUM },
  {
    name: 'TCP header cut to 19 bytes',
    base: SYN4,
    mutate: (b, o) => (b.writeUInt16BE(39, o + 2), fixIp4(b, o), 39),
    expect: DropReason.TRUNCATED_TRANSPORT,
  },
  {
    name: 'UDP header cut to 7 bytes',
    base: UDP4,
    mutate: (b, o) => (b.writeUInt16BE(27, o + 2), fixIp4(b, o), 27),
    expect: DropReason.TRUNCATED_TRANSPORT,
  },
  {
    name: 'ICMP header cut to 7 bytes',
    base: ECHO4,
    mutate: (b, o) => (b.writeUInt16BE(27, o + 2), fixIp4(b, o), 27),
    expect: DropReason.TRUNCATED_TRANSPORT,
  },
  { name: 'TCP over IPv6 cut to 10 bytes', base: SYN6, mutate: (b, o) => (b.writeUInt16BE(10, o + 4), 50), expect: DropReason.TRUNCATED_TRANSPORT },
  { name: 'TCP data offset 4', base: SYN4, mutate: (b, o) => void (b[o + 20 + 12] = 0x42), expect: DropReason.BAD_TCP_DATA_OFFSET },
  { name: 'TCP data offset beyond the segment', base: SYN4, mutate: (b, o) => void (b[o + 20 + 12] = 0xf2), expect: DropReason.BAD_TCP_DATA_OFFSET },
  { name: 'UDP length 7', base: UDP4, mutate: (b, o) => void b.writeUInt16BE(7, o + 24), expect: DropReason.BAD_UDP_LENGTH },
  { name: 'UDP length beyond the datagram', base: UDP6, mutate: (b, o) => void b.writeUInt16BE(b.readUInt16BE(o + 44) + 1, o + 44), expect: DropReason.BAD_UDP_LENGTH },
  {
    name: 'IPv6 Fragment header cut in half',
    base: FRAG6,
    mutate: (b, o) => (b.writeUInt16BE(4, o + 4), 44),
    expect: DropReason.EXT_HEADER_OVERFLOW,
  },
  {
    name: 'IPv6 Hop-by-Hop after a Destination Options header',
    base: SYN6,
    mutate: (b, o) => {
      // Turn the first 16 bytes of the TCP header into DstOpts(8) + HbH(8) chained to TCP.
      b[o + 6] = 60;
      b.set([0, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0], o + 40);
    },
    expect: DropReason.BAD_EXT_HEADER_ORDER,
  },
  {
    name: 'IPv6 non-last fragment not a multiple of 8',
    base: FRAG6,
    mutate: (b, o) => (b.writeUInt16BE(b.readUInt16BE(o + 4) - 4, o + 4), undefined),
    expect: DropReason.BAD_FRAGMENT,
  },
  {
    name: 'IPv4 fragment ending beyond 65535',
    base: ECHO4,
    mutate: (b, o) => (b.writeUInt16BE(0x2000 | 8190, o + 6), fixIp4(b, o)),
    expect: DropReason.BAD_FRAGMENT,
  },
  {
    name: 'IPv6 fragment ending beyond 65535',
    base: FRAG6,
    mutate: (b, o) => void b.writeUInt16BE((8100 << 3) | 1, o + 42),
    expect: DropReason.BAD_FRAGMENT,
  },
];

for (const m of malformed) {
  test(`malformed: ${m.name} -> ${DropReason[m.expect]}`, (t) => {
    const { buf, off, len } = l3InHeadroom(m.base);
    // The unmodified base packet must be valid, so the mutation alone causes the drop.
    t.is(parsePacket(ctx, buf, off, len), DropReason.NONE);
    const newLen = m.mutate(buf, off);
    t.is(parsePacket(ctx, buf, off, typeof newLen === 'number' ? newLen : len), m.expect);
  });
}

test('every drop reason of parsePacket has a malformed fixture', (t) => {
  const covered = new Set(malformed.map((m) => m.expect));
  for (const r of [
    DropReason.TRUNCATED_HEADER,
    DropReason.BAD_VERSION,
    DropReason.BAD_IHL,
    DropReason.BAD_TOTAL_LENGTH,
    DropReason.BAD_IP_CHECKSUM,
    DropReason.TRUNCATED_TRANSPORT,
    DropReason.BAD_TCP_DATA_OFFSET,
    DropReason.BAD_UDP_LENGTH,
    DropReason.EXT_HEADER_OVERFLOW,
    DropReason.BAD_EXT_HEADER_ORDER,
    DropReason.BAD_FRAGMENT,
  ]) {
    t.true(covered.has(r), DropReason[r]);
  }
});

test('parseEthernet: TRUNCATED_FRAME below 14 bytes', (t) => {
  const b = Buffer.alloc(13);
  t.is(parseEthernet(l2, b, 0, 13), DropReason.TRUNCATED_FRAME);
  t.is(parseEthernet(l2, b, 0, 100), DropReason.TRUNCATED_FRAME);
  t.is(parseEthernet(l2, Buffer.alloc(14), 0, 14), DropReason.NONE);
  t.is(l2.l3len, 0);
});

test('a first fragment too short for its ports is kept, with ports 0', (t) => {
  const { buf, off } = l3InHeadroom(SYN4);
  buf.writeUInt16BE(0x2000, off + 6); // MF
  buf.writeUInt16BE(22, off + 2);
  fixIp4(buf, off);
  t.is(parsePacket(ctx, buf, off, 22), DropReason.NONE);
  t.true(ctx.isFragment);
  t.is(ctx.sport, 0);
  t.is(ctx.tcpFlags, 0);
});

test('non-first fragments carry no transport fields', (t) => {
  const f = pick('ping4_frag', 'a later fragment', (ts) => num(ts['ip.frag_offset']) > 0);
  const { buf, off, len } = l3InHeadroom(f);
  t.is(parsePacket(ctx, buf, off, len), 0);
  t.is(ctx.icmpType, -1);
  t.true(ctx.fragmentOffset > 0);
  const g = pick('ping6_frag', 'a later fragment', (ts) => num(ts['ipv6.fraghdr.offset']) > 0);
  const x = l3InHeadroom(g);
  t.is(parsePacket(ctx, x.buf, x.off, x.len), 0);
  t.is(ctx.proto, 58);
  t.is(ctx.icmpType, -1);
  t.is(ctx.fragHdrOff, x.off + 40);
});

test('an offset or length outside the buffer is a drop, not a throw', (t) => {
  const { buf, off, len } = l3InHeadroom(SYN4);
  t.is(parsePacket(ctx, buf, buf.length, 20), DropReason.TRUNCATED_HEADER);
  t.is(parsePacket(ctx, buf, -5, 20), DropReason.TRUNCATED_HEADER);
  t.is(parsePacket(ctx, buf, off, len + 1000), DropReason.NONE); // clipped to the buffer; the rest is padding
});

// ---- nothing throws ----

const views = () => [new EthernetView(), new ArpView(), new Ipv4View(), new Ipv6View(), new TcpView(), new UdpView(), new IcmpView(), new Icmpv6View()];

function exerciseViews(b: Uint8Array, off: number, len: number): void {
  for (const v of views()) {
    v.point(b, off, len);
    v.check();
  }
  const t = new TcpView().point(b, off, len);
  if (t.check() === 0) (t.mss(), t.windowScale(), t.sackPermitted());
  const i6 = new Icmpv6View().point(b, off, len);
  if (i6.check() === 0) (i6.checkNdp(), i6.sourceLinkLayer(), i6.targetLinkLayer());
  const d = new DhcpView().point(b, off, len);
  if (d.checkLen()) d.messageType();
  walkIpv6Ext(b, off, len, new Ipv6ExtInfo());
}

test('random bytes never throw in parsePacket or any view', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200, size: 'max' }), fc.nat(8), (bytes, off) => {
      const buf = Buffer.from(bytes);
      // Bias towards plausible version nibbles so the deeper paths run too.
      if (buf.length > 0 && (buf[0] & 1) === 0) buf[0] = (buf[0] & 0x0f) | (buf[0] & 2 ? 0x40 : 0x60);
      const r = parsePacket(ctx, buf, off, buf.length - off);
      exerciseViews(buf, off, buf.length - off);
      return Number.isInteger(r) && r >= 0 && r < DROP_REASON_COUNT;
    }),
    { numRuns: 3000 },
  );
  t.pass();
});

test('every truncation of every real packet parses or drops, never throws', (t) => {
  let drops = 0;
  for (const f of allFrames) {
    const l3 = f.bytes.subarray(14);
    for (let n = 0; n <= l3.length; n++) {
      const buf = Buffer.from(l3.subarray(0, n));
      const r = parsePacket(ctx, buf, 0, n);
      if (r !== 0) drops++;
      exerciseViews(buf, 0, n);
    }
  }
  t.true(drops > 0);
});

test('random corruption of real packets never throws', (t) => {
  const ips = allFrames.filter((f) => f.ts['ip.version'] || f.ts['ipv6.src']);
  fc.assert(
    fc.property(
      fc.nat(ips.length - 1),
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 6 }),
      (i, edits) => {
        const { buf, off, len } = l3InHeadroom(ips[i]);
        for (const [pos, val] of edits) buf[off + (pos % len)] = val;
        const r = parsePacket(ctx, buf, off, len);
        exerciseViews(buf, off, len);
        return r >= 0 && r < DROP_REASON_COUNT;
      },
    ),
    { numRuns: 3000 },
  );
  t.pass();
});

test('parsePacket re-points one context: stale fields from a previous packet are cleared', (t) => {
  const a = l3InHeadroom(SYN4);
  t.is(parsePacket(ctx, a.buf, a.off, a.len), 0);
  t.not(ctx.sport, 0);
  const b = l3InHeadroom(ECHO4);
  t.is(parsePacket(ctx, b.buf, b.off, b.len), 0);
  t.is(ctx.sport, 0);
  t.is(ctx.tcpFlags, 0);
  t.is(ctx.icmpType, 8);
  const w = parseIpv6('fd77::1');
  const c = l3InHeadroom(SYN6);
  t.is(parsePacket(ctx, c.buf, c.off, c.len), 0);
  t.deepEqual([...ctx.src6], [...w]);
  t.is(ctx.icmpType, -1);
  t.is(HEADROOM, c.off);
});

test('parsePacket allocates nothing per packet (coarse heap check over every real IP frame)', (t) => {
  const pkts = allFrames.filter((f) => f.ts['ip.version'] || f.ts['ipv6.src']).map((f) => l3InHeadroom(f));
  const run = (n: number) => {
    let acc = 0;
    for (let i = 0; i < n; i++) {
      const p = pkts[i % pkts.length];
      acc += parsePacket(ctx, p.buf, p.off, p.len) + ctx.sport;
    }
    return acc;
  };
  run(100_000); // let the JIT settle first
  const grown: number[] = [];
  for (let r = 0; r < 5; r++) {
    const before = process.memoryUsage().heapUsed;
    run(200_000);
    grown.push(process.memoryUsage().heapUsed - before);
  }
  grown.sort((a, b) => a - b);
  // One 16-byte object per packet is 3.2 MB a round. A young-generation GC can make one round
  // negative, so the median is judged: it stays near zero only if nothing is allocated per packet.
  t.true(grown[2] < 1_000_000, `heap growth per round: ${grown.join(', ')} bytes`);
});
