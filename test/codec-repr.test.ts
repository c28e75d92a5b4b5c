/**
 * Round trips: for every Repr, parse(emit(x)) = x over random values, and a
 * Repr emitted into a real packet's place produces the bytes of that packet.
 */
import test from 'ava';
import fc from 'fast-check';
import {
  ArpRepr,
  ArpView,
  DhcpRepr,
  DhcpView,
  EthernetRepr,
  EthernetView,
  Icmpv6Repr,
  Icmpv6View,
  IcmpRepr,
  IcmpView,
  Ipv4Repr,
  Ipv4View,
  Ipv6Repr,
  Ipv6View,
  NdpRepr,
  TcpRepr,
  TcpView,
  UdpRepr,
  UdpView,
} from '../dataplane/index.js';
import { pick } from './fixtures/codec/load.js';

const u8 = fc.nat(255);
const u16 = fc.nat(0xffff);
const u32 = fc.nat(0xffffffff);
const mac = fc.nat(0xffffffffffff);
const bytes = (max: number) => fc.uint8Array({ maxLength: max, size: 'max' }).map((a) => Uint8Array.from(a));
const words4 = fc.tuple(u32, u32, u32, u32).map((w) => Uint32Array.from(w));
/** Option bytes a multiple of 4 long (what a header can carry unpadded). */
const opts = (maxWords: number) => fc.integer({ min: 0, max: maxWords }).chain((n) => fc.uint8Array({ minLength: 4 * n, maxLength: 4 * n }));

/** Emits at offset 7 in a larger buffer (views must honour their offset), re-parses. */
function roundTrip<V extends { point(b: Uint8Array, o: number, l: number): V }, R extends { bufferLen(): number; emit(v: V): void }>(
  view: V,
  r: R,
  parse: (v: V) => R | null,
): R | null {
  const n = r.bufferLen();
  const buf = Buffer.alloc(n + 16, 0xaa);
  r.emit(view.point(buf, 7, n));
  return parse(view.point(buf, 7, n));
}

test('EthernetRepr round trip', (t) => {
  fc.assert(
    fc.property(mac, mac, u16, (d, s, e) => {
      const r = new EthernetRepr(d, s, e);
      t.deepEqual(roundTrip(new EthernetView(), r, EthernetRepr.parse), r);
    }),
  );
});

test('ArpRepr round trip', (t) => {
  fc.assert(
    fc.property(fc.constantFrom(1, 2), mac, u32, mac, u32, (op, sha, spa, tha, tpa) => {
      const r = new ArpRepr(op, sha, spa, tha, tpa);
      t.deepEqual(roundTrip(new ArpView(), r, ArpRepr.parse), r);
    }),
  );
});

test('Ipv4Repr round trip (options, flags, fragment offset) with a valid checksum', (t) => {
  fc.assert(
    fc.property(u32, u32, u8, fc.nat(1000), u8, u8, u16, fc.boolean(), fc.boolean(), fc.nat(0x1fff), opts(10), (s, d, p, pl, ttl, tos, id, df, mf, fo, o) => {
      const r = new Ipv4Repr(s, d, p, pl, ttl, tos, id, df, mf, fo, Uint8Array.from(o));
      const v = new Ipv4View();
      const back = roundTrip(v, r, Ipv4Repr.parse);
      t.deepEqual(back, r);
      t.true(v.verifyChecksum());
    }),
  );
});

test('Ipv6Repr round trip', (t) => {
  fc.assert(
    fc.property(words4, words4, u8, fc.nat(500), u8, u8, fc.nat(0xfffff), (s, d, nh, pl, hl, tc, fl) => {
      const r = new Ipv6Repr(s, d, nh, pl, hl, tc, fl);
      t.deepEqual(roundTrip(new Ipv6View(), r, Ipv6Repr.parse), r);
    }),
  );
});

test('TcpRepr round trip, and the filled checksum verifies', (t) => {
  fc.assert(
    fc.property(u16, u16, u32, u32, u8, u16, u16, opts(10), bytes(64), u32, u32, (sp, dp, seq, ack, fl, win, urg, o, pay, src, dst) => {
      const r = new TcpRepr(sp, dp, seq, ack, fl, win, urg, Uint8Array.from(o), pay);
      const v = new TcpView();
      const back = roundTrip(v, r, TcpRepr.parse);
      t.deepEqual(back, r);
      v.fillChecksum4(src, dst);
      t.true(v.verifyChecksum4(src, dst));
      t.false(v.verifyChecksum4(src ^ 1, dst));
    }),
  );
});

test('UdpRepr round trip', (t) => {
  fc.assert(
    fc.property(u16, u16, bytes(100), (sp, dp, pay) => {
      const r = new UdpRepr(sp, dp, pay);
      t.deepEqual(roundTrip(new UdpView(), r, UdpRepr.parse), r);
    }),
  );
});

test('IcmpRepr round trip with a valid checksum', (t) => {
  fc.assert(
    fc.property(u8, u8, u32, bytes(100), (ty, co, rest, data) => {
      const r = new IcmpRepr(ty, co, rest, data);
      const v = new IcmpView();
      t.deepEqual(roundTrip(v, r, IcmpRepr.parse), r);
      t.true(v.verifyChecksum());
    }),
  );
});

test('Icmpv6Repr round trip', (t) => {
  fc.assert(
    fc.property(u8, u8, u32, bytes(100), (ty, co, rest, data) => {
      const r = new Icmpv6Repr(ty, co, rest, data);
      t.deepEqual(roundTrip(new Icmpv6View(), r, Icmpv6Repr.parse), r);
    }),
  );
});

test('NdpRepr round trip for RS, RA, NS, NA with and without link-layer options', (t) => {
  const maybeMac = fc.oneof(fc.constant(-1), mac);
  fc.assert(
    fc.property(fc.constantFrom(133, 134, 135, 136), u8, words4, maybeMac, maybeMac, u8, u16, u32, u32, (type, flags, target, sll, tll, hl, lt, rt, rtx) => {
      const r = new NdpRepr(type);
      r.sourceLinkLayer = sll;
      r.targetLinkLayer = tll;
      if (type === 135 || type === 136) r.target = target;
      if (type === 136) r.flags = flags & 0xe0;
      if (type === 134) {
        r.flags = flags;
        r.raHopLimit = hl;
        r.raRouterLifetime = lt;
        r.raReachableTime = rt;
        r.raRetransTimer = rtx;
      }
      t.deepEqual(roundTrip(new Icmpv6View(), r, NdpRepr.parse), r);
    }),
  );
});

test('DhcpRepr round trip', (t) => {
  const option = fc.record({ code: fc.integer({ min: 1, max: 254 }), value: bytes(20) });
  fc.assert(
    fc.property(fc.constantFrom(1, 2), u32, mac, u32, u32, u32, u32, u16, u16, u8, fc.array(option, { maxLength: 8 }), (op, xid, ch, ci, yi, si, gi, fl, secs, hops, options) => {
      const r = new DhcpRepr(op, xid, ch, ci, yi, si, gi, fl, secs, hops, options);
      t.deepEqual(roundTrip(new DhcpView(), r, DhcpRepr.parse), r);
    }),
  );
});

// Emitting the parsed form of a real packet reproduces its bytes: emit writes every field parse reads.
test('Ipv4Repr + TcpRepr re-emit the captured SYN byte for byte', (t) => {
  const f = pick('tcp4_reject_syn', 'the SYN', (ts) => ts['tcp.flags'] === '0x0002');
  const orig = f.bytes.subarray(14);
  const ip = Ipv4Repr.parse(new Ipv4View().point(orig, 0, orig.length))!;
  const tcp = TcpRepr.parse(new TcpView().point(orig, 20, orig.length - 20))!;
  const out = Buffer.alloc(orig.length);
  ip.emit(new Ipv4View().point(out, 0, out.length));
  const tv = new TcpView().point(out, 20, tcp.bufferLen());
  tcp.emit(tv);
  tv.fillChecksum4(ip.src, ip.dst);
  t.deepEqual(out, Buffer.from(orig));
});

test('NdpRepr re-emits the captured neighbour advertisement byte for byte', (t) => {
  const f = pick('ping6', 'a neighbour advertisement', (ts) => ts['icmpv6.type'] === '136');
  const b = f.bytes;
  const ip = new Ipv6View().point(b, 14, b.length - 14);
  const icmp = new Icmpv6View().point(b, 54, ip.payloadLength);
  const r = NdpRepr.parse(icmp)!;
  t.truthy(r);
  const out = Buffer.from(b);
  out.fill(0, 54);
  const v = new Icmpv6View().point(out, 54, r.bufferLen());
  r.emit(v);
  v.fillChecksum(out, 22);
  t.deepEqual(out, b);
});

test('DhcpRepr parses the captured nmap DHCPDISCOVER and re-emits its options', (t) => {
  const f = pick('dhcp_discover', 'the DISCOVER', (ts) => ts['dhcp.type'] === '1');
  const b = f.bytes;
  const d = new DhcpView().point(b, 42, b.length - 42);
  const r = DhcpRepr.parse(d)!;
  t.truthy(r);
  t.is(r.options[0].code, 53);
  t.deepEqual([...r.options[0].value], [1]);
  const out = Buffer.alloc(r.bufferLen());
  r.emit(new DhcpView().point(out, 0, out.length));
  // Same fixed part and option list up to End (nmap pads after End).
  t.deepEqual(out, Buffer.from(b.subarray(42, 42 + out.length)));
});
