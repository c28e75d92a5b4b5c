/**
 * Address text at the tools' edges: strict parsing (as the upstream range
 * library), inet_ntop-style printing, and round trips checked by property
 * tests against independent spellings (full 8-group form, WHATWG URL form).
 */
import test from 'ava';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '../geoip-db/addr.js';
import { rangeToCidrs4, rangeToCidrs6 } from '../geoip-db/ranges.js';
import { readCsv } from '../geoip-db/csv.js';

const V4: Array<[string, number]> = [
  ['0.0.0.0', 0],
  ['255.255.255.255', 0xffffffff],
  ['1.2.3.4', 0x01020304],
  ['10.0.0.1', 0x0a000001],
  ['01.2.3.4', -1],
  ['1.2.3', -1],
  ['1.2.3.4.5', -1],
  ['1.2.3.256', -1],
  ['1.2.3.4 ', -1],
  ['1..3.4', -1],
  ['', -1],
  ['1.2.3.-4', -1],
];
for (const [text, want] of V4) test(`parseIPv4 ${JSON.stringify(text)}`, (t) => t.is(parseIPv4(text), want));

const V6: Array<[string, bigint | null]> = [
  ['::', 0n],
  ['::1', 1n],
  ['1::', 1n << 112n],
  ['2001:DB8::1', 0x20010db8000000000000000000000001n],
  ['::ffff:1.2.3.4', 0xffff01020304n],
  ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', (1n << 128n) - 1n],
  ['1:2:3:4:5:6:7:8', 0x00010002000300040005000600070008n],
  ['1:2:3:4:5:6:7::', 0x00010002000300040005000600070000n],
  ['1:2:3:4:5:6:7:8:9', null],
  ['1::2::3', null],
  [':1', null],
  ['1:', null],
  ['12345::', null],
  ['::g', null],
  ['1.2.3.4', null],
  ['fe80::1%eth0', null],
  ['::1.2.3.256', null],
];
for (const [text, want] of V6) test(`parseIPv6 ${JSON.stringify(text)}`, (t) => t.is(parseIPv6(text), want));

const NTOP6: Array<[bigint, string]> = [
  [0n, '::'],
  [1n, '::1'],
  // expected texts checked with Perl's Socket::inet_ntop (glibc)
  [2n, '::2'],
  [0xffffn, '::ffff'],
  [0x10000n, '::0.1.0.0'],
  [0x01020304n, '::1.2.3.4'],
  [0xffff01020304n, '::ffff:1.2.3.4'],
  [0x1_0000_0000_0000n, '::1:0:0:0'],
  [0x20010db8000000000001000000000001n, '2001:db8::1:0:0:1'],
  [0x20010db8000100000000000000000001n, '2001:db8:1::1'],
  [0x00010000000000000000000000000000n, '1::'],
  [0x00010002000300040005000600070008n, '1:2:3:4:5:6:7:8'],
  [0x00010000000300040005000600070008n, '1:0:3:4:5:6:7:8'],
];
for (const [value, text] of NTOP6) test(`formatIPv6 ${text}`, (t) => t.is(formatIPv6(value), text));

const u128 = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n });

test('IPv6: text round trips (ours, full 8-group spelling, WHATWG URL spelling)', (t) => {
  fc.assert(
    fc.property(u128, fc.boolean(), (v, upper) => {
      if (parseIPv6(formatIPv6(v)) !== v) return false;
      const groups = Array.from({ length: 8 }, (_, i) => ((v >> BigInt((7 - i) * 16)) & 0xffffn).toString(16));
      const full = groups.join(':');
      if (parseIPv6(upper ? full.toUpperCase() : full) !== v) return false;
      const url = new URL(`http://[${full}]/`).hostname.slice(1, -1);
      return parseIPv6(url) === v;
    }),
    { numRuns: 5000 },
  );
  t.pass();
});

test('IPv6: values with zero runs (compression paths) round trip', (t) => {
  const sparse = fc.array(fc.constantFrom(0, 0, 0, 1, 0xffff, 0x1234), { minLength: 8, maxLength: 8 }).map((ws) => ws.reduce((a, w) => (a << 16n) | BigInt(w), 0n));
  fc.assert(fc.property(sparse, (v) => parseIPv6(formatIPv6(v)) === v && parseIPv6(new URL(`http://[${formatIPv6(v)}]/`).hostname.slice(1, -1)) === v), { numRuns: 5000 });
  t.pass();
});

test('IPv4: round trip', (t) => {
  fc.assert(fc.property(fc.nat({ max: 0xffffffff }), (v) => parseIPv4(formatIPv4(v)) === v), { numRuns: 5000 });
  t.pass();
});

test('range -> CIDR splitting covers the range exactly with aligned blocks', (t) => {
  fc.assert(
    fc.property(fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), (a, b) => {
      const [s, e] = a <= b ? [a, b] : [b, a];
      let next = s;
      for (const c of rangeToCidrs4(s, e)) {
        const [addr, len] = c.split('/');
        const start = parseIPv4(addr!);
        const size = 2 ** (32 - Number(len));
        if (start !== next || start % size !== 0) return false;
        next = start + size;
      }
      return next === e + 1;
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(u128, u128, (a, b) => {
      const [s, e] = a <= b ? [a, b] : [b, a];
      let next = s;
      for (const [start, len] of rangeToCidrs6(s, e)) {
        const size = 1n << BigInt(128 - len);
        if (start !== next || start % size !== 0n) return false;
        next = start + size;
      }
      return next === e + 1n;
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test('CSV reader: quotes, doubled quotes, embedded comma/newline, CRLF, whitespace, line numbers', (t) => {
  const text = '1.0.0.0, 1.0.0.255 ,"Cloudflare, Inc."\r\n\n2.0.0.0,2.0.0.1,"a ""b""\nc"\n3.0.0.0,3.0.0.1,x';
  t.deepEqual([...readCsv(text, 'f')], [
    { fields: ['1.0.0.0', '1.0.0.255', 'Cloudflare, Inc.'], line: 1 },
    { fields: ['2.0.0.0', '2.0.0.1', 'a "b"\nc'], line: 3 },
    { fields: ['3.0.0.0', '3.0.0.1', 'x'], line: 5 },
  ]);
  t.throws(() => [...readCsv('a,"b', 'f')], { message: 'f:1: unterminated quoted field' });
  t.throws(() => [...readCsv('a,"b"c\n', 'f')], { message: 'f:1: text after a closing quote' });
});

test('formatIPv6 equals glibc inet_ntop (through Perl Socket) on 4000 sparse and random values', (t) => {
  const rnd = fc.sample(
    fc.oneof(
      u128,
      fc.array(fc.constantFrom(0, 0, 0, 0, 1, 0xffff, 0xabc), { minLength: 8, maxLength: 8 }).map((ws) => ws.reduce((a, w) => (a << 16n) | BigInt(w), 0n)),
    ),
    { numRuns: 4000, seed: 7 },
  );
  const hex = rnd.map((v) => v.toString(16).padStart(32, '0')).join('\n') + '\n';
  const r = spawnSync('perl', ['-MSocket=inet_ntop,AF_INET6', '-ne', 'chomp; print inet_ntop(AF_INET6, pack("H*", $_)), "\\n"'], { input: hex, encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const want = r.stdout.split('\n').slice(0, -1);
  const got = rnd.map(formatIPv6);
  t.deepEqual(got.filter((g, i) => g !== want[i]).slice(0, 5), []);
  t.is(want.length, rnd.length);
});
