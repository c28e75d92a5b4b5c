import test from 'ava';
import fc from 'fast-check';
import {
  mask6Into,
  prefixContains6,
  formatIPv4,
  formatIPv6,
  parseIPv4,
  parseIPv6,
  parsePrefix,
  RouteKind,
  RouteTable4,
  RouteTable6,
} from '../router/routing.js';

const v4 = (s: string) => {
  const a = parseIPv4(s);
  if (a < 0) throw new Error(s);
  return a;
};
const v6 = (s: string) => parseIPv6(s)!;

test('IPv4 text parsing', (t) => {
  t.is(parseIPv4('198.51.100.1'), 0xc6336401);
  t.is(parseIPv4('0.0.0.0'), 0);
  t.is(parseIPv4('255.255.255.255'), 0xffffffff);
  for (const bad of ['1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.a', '', '1..2.3']) t.is(parseIPv4(bad), -1, bad);
});

test('IPv6 text parsing and RFC 5952 formatting', (t) => {
  const cases: [string, string][] = [
    ['2001:db8:c::1', '2001:db8:c::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['::ffff:192.0.2.1', '::ffff:c000:201'],
    ['fe80::', 'fe80::'],
  ];
  for (const [input, out] of cases) t.is(formatIPv6(v6(input)), out, input);
  for (const bad of [':::', '1::2::3', '12345::', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', 'g::', '::1.2.3', '1:2:3:4:5:6:7::8']) {
    t.is(parseIPv6(bad), null, bad);
  }
  t.is(formatIPv4(0xcb007101), '203.0.113.1');
});

test('prefix parsing: host bits cleared for routes, kept for addresses', (t) => {
  const p = parsePrefix('198.51.100.1/24')!;
  t.is(p.family, 4);
  t.is(formatIPv4(p.addr as number), '198.51.100.0');
  t.is((parsePrefix('198.51.100.1/24', true)!.addr as number) >>> 0, v4('198.51.100.1'));
  t.is(parsePrefix('10.0.0.1')!.len, 32);
  t.is(parsePrefix('2001:db8::1')!.len, 128);
  t.is(formatIPv6(parsePrefix('2001:db8:c::1/64')!.addr as Uint32Array), '2001:db8:c::');
  t.is(parsePrefix('10.0.0.0/33'), null);
  t.is(parsePrefix('10.0.0.0/'), null);
  t.is(parsePrefix('10.0.0.0/08'), null);
});

function table4(routes: [string, RouteKind, number, string?][]): RouteTable4 {
  const t = new RouteTable4();
  for (const [p, kind, ifIndex, gw] of routes) {
    t.add({ prefix: parsePrefix(p)!, kind, ifIndex, gateway: gw ? v4(gw) : undefined });
  }
  return t;
}

const routes4: [string, RouteKind, number, string?][] = [
  ['198.51.100.1/32', RouteKind.LOCAL, 9],
  ['198.51.100.0/24', RouteKind.CONNECTED, 1],
  ['203.0.113.0/24', RouteKind.CONNECTED, 2],
  ['10.0.0.0/8', RouteKind.GATEWAY, 2, '203.0.113.2'],
  ['10.1.0.0/16', RouteKind.GATEWAY, 1, '198.51.100.2'],
  ['10.1.2.3/32', RouteKind.GATEWAY, 2, '203.0.113.3'],
  ['0.0.0.0/0', RouteKind.GATEWAY, 2, '203.0.113.254'],
];

test('IPv4 longest prefix match (table-driven)', (t) => {
  const tbl = table4(routes4);
  const cases: [string, number, RouteKind, string][] = [
    // destination, egress, kind, next hop
    ['198.51.100.1', 9, RouteKind.LOCAL, '198.51.100.1'],
    ['198.51.100.2', 1, RouteKind.CONNECTED, '198.51.100.2'],
    ['198.51.100.255', 1, RouteKind.CONNECTED, '198.51.100.255'],
    ['203.0.113.77', 2, RouteKind.CONNECTED, '203.0.113.77'],
    ['10.200.0.1', 2, RouteKind.GATEWAY, '203.0.113.2'],
    ['10.1.9.9', 1, RouteKind.GATEWAY, '198.51.100.2'],
    ['10.1.2.3', 2, RouteKind.GATEWAY, '203.0.113.3'],
    ['10.1.2.4', 1, RouteKind.GATEWAY, '198.51.100.2'],
    ['8.8.8.8', 2, RouteKind.GATEWAY, '203.0.113.254'],
    ['255.255.255.255', 2, RouteKind.GATEWAY, '203.0.113.254'],
  ];
  for (const [dst, ifIndex, kind, nh] of cases) {
    const id = tbl.lookup(v4(dst));
    t.true(id >= 0, dst);
    t.is(tbl.ifIndex[id], ifIndex, dst);
    t.is(tbl.kind[id], kind, dst);
    t.is(formatIPv4(tbl.nextHop(id, v4(dst))), nh, dst);
  }
});

test('IPv4: no default route means no route; duplicates keep the first', (t) => {
  const tbl = table4(routes4.filter((r) => r[0] !== '0.0.0.0/0'));
  t.is(tbl.lookup(v4('8.8.8.8')), -1);
  t.is(tbl.add({ prefix: parsePrefix('198.51.100.0/24')!, kind: RouteKind.GATEWAY, ifIndex: 5, gateway: 1 }), -1);
  t.is(tbl.ifIndex[tbl.lookup(v4('198.51.100.9'))], 1);
  t.is(new RouteTable4().lookup(0), -1);
});

test('IPv4: large groups use the hash index and agree with a brute-force LPM', (t) => {
  const tbl = new RouteTable4();
  const ref: [number, number, number][] = []; // net, len, id
  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  for (let i = 0; i < 3000; i++) {
    const len = [8, 16, 20, 24, 28, 32][rnd() % 6];
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    const net = (rnd() & mask) >>> 0;
    const id = tbl.add({ prefix: { family: 4, addr: net, len }, kind: RouteKind.CONNECTED, ifIndex: i + 1 });
    if (id >= 0) ref.push([net, len, i + 1]);
  }
  for (let i = 0; i < 5000; i++) {
    // half the probes inside known networks, half random
    const base = i % 2 ? ref[rnd() % ref.length][0] | (rnd() & 0xff) : rnd();
    const dst = base >>> 0;
    let best = -1;
    let bestLen = -1;
    for (const [net, len, ifIndex] of ref) {
      const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
      if (((dst & mask) >>> 0) === net && len > bestLen) {
        best = ifIndex;
        bestLen = len;
      }
    }
    const id = tbl.lookup(dst);
    t.is(id < 0 ? -1 : tbl.ifIndex[id], best);
  }
});

test('IPv6 longest prefix match (table-driven)', (t) => {
  const tbl = new RouteTable6();
  const add = (p: string, kind: RouteKind, ifIndex: number, gw?: string) =>
    tbl.add({ prefix: parsePrefix(p)!, kind, ifIndex, gateway: gw ? v6(gw) : undefined });
  add('2001:db8:c::1/128', RouteKind.LOCAL, 9);
  add('2001:db8:c::/64', RouteKind.CONNECTED, 1);
  add('2001:db8:5::/64', RouteKind.CONNECTED, 2);
  add('2001:db8:100::/40', RouteKind.GATEWAY, 1, '2001:db8:c::2');
  add('2001:db8:100:ab00::/56', RouteKind.GATEWAY, 2, '2001:db8:5::3');
  add('2001:db8:100:ab12:0:0:0:80/121', RouteKind.GATEWAY, 2, '2001:db8:5::4');
  const out = new Uint32Array(4);
  const cases: [string, number, RouteKind, string][] = [
    ['2001:db8:c::1', 9, RouteKind.LOCAL, '2001:db8:c::1'],
    ['2001:db8:c::2', 1, RouteKind.CONNECTED, '2001:db8:c::2'],
    ['2001:db8:5::ffff', 2, RouteKind.CONNECTED, '2001:db8:5::ffff'],
    ['2001:db8:1ff:1::1', 1, RouteKind.GATEWAY, '2001:db8:c::2'],
    ['2001:db8:100:abff::1', 2, RouteKind.GATEWAY, '2001:db8:5::3'],
    ['2001:db8:100:ab12::ff', 2, RouteKind.GATEWAY, '2001:db8:5::4'],
    ['2001:db8:100:ab12::7f', 2, RouteKind.GATEWAY, '2001:db8:5::3'],
  ];
  for (const [dst, ifIndex, kind, nh] of cases) {
    const id = tbl.lookup(v6(dst));
    t.true(id >= 0, dst);
    t.is(tbl.ifIndex[id], ifIndex, dst);
    t.is(tbl.kind[id], kind, dst);
    tbl.nextHop(id, v6(dst), out);
    t.is(formatIPv6(out), nh, dst);
  }
  t.is(tbl.lookup(v6('2001:db9::1')), -1);
  add('::/0', RouteKind.GATEWAY, 2, '2001:db8:5::2');
  const id = tbl.lookup(v6('2001:db9::1'));
  t.is(tbl.ifIndex[id], 2);
  tbl.nextHop(id, v6('2001:db9::1'), out);
  t.is(formatIPv6(out), '2001:db8:5::2');
});

test('IPv6: large groups use the hash index', (t) => {
  const tbl = new RouteTable6();
  for (let i = 0; i < 500; i++) {
    tbl.add({ prefix: { family: 6, addr: Uint32Array.of(0x20010db8, i << 16, 0, 0), len: 48 }, kind: RouteKind.CONNECTED, ifIndex: i + 1 });
  }
  for (let i = 0; i < 500; i++) {
    const id = tbl.lookup(Uint32Array.of(0x20010db8, (i << 16) | 0x1234, 5, 6));
    t.is(tbl.ifIndex[id], i + 1);
  }
  t.is(tbl.lookup(Uint32Array.of(0x20010db8, 500 << 16, 0, 0)), -1);
});

test('IPv6 LPM agrees with a brute-force search (property)', (t) => {
  const word = fc.integer({ min: 0, max: 0xffffffff });
  const addr = fc.tuple(word, word, word, word).map((w) => Uint32Array.from(w));
  // few distinct high words so prefixes overlap and nest
  const clustered = fc.tuple(fc.constantFrom(0x20010db8, 0x20010db9), fc.constantFrom(0, 0x10000, 0x10001), word, word).map((w) => Uint32Array.from(w));
  const route = fc.record({ addr: clustered, len: fc.constantFrom(0, 16, 32, 33, 48, 56, 64, 96, 127, 128) });
  fc.assert(
    fc.property(fc.array(route, { minLength: 1, maxLength: 40 }), fc.array(fc.oneof(addr, clustered), { minLength: 1, maxLength: 30 }), (routes, probes) => {
      const tbl = new RouteTable6();
      const ref: { net: Uint32Array; len: number; ifIndex: number }[] = [];
      routes.forEach((r, i) => {
        const net = new Uint32Array(4);
        mask6Into(r.addr, r.len, net);
        if (tbl.add({ prefix: { family: 6, addr: net, len: r.len }, kind: RouteKind.CONNECTED, ifIndex: i + 1 }) >= 0) {
          ref.push({ net, len: r.len, ifIndex: i + 1 });
        }
      });
      for (const p of probes) {
        let best = -1;
        let bestLen = -1;
        for (const r of ref) {
          if (r.len > bestLen && prefixContains6(r.net, r.len, p)) {
            best = r.ifIndex;
            bestLen = r.len;
          }
        }
        const id = tbl.lookup(p);
        if ((id < 0 ? -1 : tbl.ifIndex[id]) !== best) return false;
      }
      return true;
    }),
    { numRuns: 300 },
  );
  t.pass();
});
