/**
 * Address text (dataplane/addr.ts), the one parser and printer behind the
 * codec, routing, the rule parser, the host interface and the GeoIP tools:
 * tables for both dotted-quad spellings and both printed forms, the messages
 * of the throwing parsers, and the strict grammar checked against Node's
 * own address checks (node:net isIPv4/isIPv6) on random text.
 */
import test from 'ava';
import fc from 'fast-check';
import { isIPv4, isIPv6 } from 'node:net';
import {
  DottedQuad,
  ipv4FromText,
  ipv4ToString,
  ipv6FromText,
  ipv6ToInetNtop,
  ipv6ToString,
  maskPrefixLength,
  parseIpv4,
  parseIpv6,
  prefixMaskWord,
} from '../dataplane/addr.js';

const STRICT = DottedQuad.STRICT;
const LEADING_ZEROS = DottedQuad.LEADING_ZEROS;

/** Four words as 32 hex digits, or null. */
const hex = (w: Uint32Array | null) => (w ? Array.from(w, (x) => x.toString(16).padStart(8, '0')).join('') : null);

// input, STRICT, LEADING_ZEROS
const V4: [string, number, number][] = [
  ['0.0.0.0', 0, 0],
  ['255.255.255.255', 0xffffffff, 0xffffffff],
  ['192.0.2.1', 0xc0000201, 0xc0000201],
  ['010.0.0.1', -1, 0x0a000001],
  ['1.2.3.004', -1, 0x01020304],
  ['0001.2.3.4', -1, -1],
  ['256.1.1.1', -1, -1],
  ['1.2.3', -1, -1],
  ['1.2.3.4.5', -1, -1],
  ['1..2.3', -1, -1],
  ['1.2.3.4 ', -1, -1],
  ['1.2.3.-4', -1, -1],
  ['1.2.3.a', -1, -1],
  ['', -1, -1],
];
for (const [text, strict, zeros] of V4) {
  test(`ipv4FromText ${JSON.stringify(text)}`, (t) => {
    t.is(ipv4FromText(text, STRICT), strict);
    t.is(ipv4FromText(text, LEADING_ZEROS), zeros);
  });
}

// input, STRICT, LEADING_ZEROS (32 hex digits or null)
const V6: [string, string | null, string | null][] = [
  ['::', '00000000000000000000000000000000', '00000000000000000000000000000000'],
  ['::1', '00000000000000000000000000000001', '00000000000000000000000000000001'],
  ['1::', '00010000000000000000000000000000', '00010000000000000000000000000000'],
  ['2001:DB8::1', '20010db8000000000000000000000001', '20010db8000000000000000000000001'],
  ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008', '00010002000300040005000600070008'],
  ['1:2:3:4:5:6:7::', '00010002000300040005000600070000', '00010002000300040005000600070000'],
  ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201', '00000000000000000000ffffc0000201'],
  ['1:2:3:4:5:6:1.2.3.4', '00010002000300040005000601020304', '00010002000300040005000601020304'],
  ['::01.2.3.4', null, '00000000000000000000000001020304'],
  ['::0001.2.3.4', null, null],
  ['::1.2.3.256', null, null],
  ['::1.2.3', null, null],
  // A dotted quad is only ever the last 32 bits.
  ['1.2.3.4::', null, null],
  ['1.2.3.4::5', null, null],
  ['1::f1.2.3.4', null, null],
  ['1.2.3.4', null, null],
  // `::` stands for at least one group.
  ['1:2:3:4::5:6:7:8', null, null],
  ['1:2:3:4:5:6::1.2.3.4', null, null],
  ['1:2:3:4:5:6:7:8:9', null, null],
  ['1:2:3:4:5:6:7', null, null],
  ['1::2::3', null, null],
  [':::', null, null],
  [':1', null, null],
  ['1:', null, null],
  ['12345::', null, null],
  ['g::', null, null],
  ['fe80::1%eth0', null, null],
  ['', null, null],
];
for (const [text, strict, zeros] of V6) {
  test(`ipv6FromText ${JSON.stringify(text)}`, (t) => {
    t.is(hex(ipv6FromText(text, STRICT)), strict);
    t.is(hex(ipv6FromText(text, LEADING_ZEROS)), zeros);
  });
}

test('parseIpv4 and parseIpv6 take leading zeros and say what is wrong', (t) => {
  t.is(parseIpv4('010.0.0.1'), 0x0a000001);
  t.is(hex(parseIpv6('::ffff:010.0.0.1')), '00000000000000000000ffff0a000001');
  const out = new Uint32Array(4);
  t.is(parseIpv6('2001:db8::1', out), out);
  const bad: [() => unknown, string][] = [
    [() => parseIpv4('1.2.3'), 'invalid IPv4 address "1.2.3": expected four dot-separated numbers'],
    [() => parseIpv4('1.2.300.4'), 'invalid IPv4 address "1.2.300.4": "300" is not 0..255'],
    [() => parseIpv4('1.2..4'), 'invalid IPv4 address "1.2..4": "" is not 0..255'],
    [() => parseIpv6('::1.2.3.256'), 'invalid IPv6 address "::1.2.3.256": embedded IPv4 part out of range'],
    [() => parseIpv6('1::2::3'), 'invalid IPv6 address "1::2::3": more than one "::"'],
    [() => parseIpv6('12345::'), 'invalid IPv6 address "12345::": "12345" is not a 16-bit hex group'],
    [() => parseIpv6('fe80::1%eth0'), 'invalid IPv6 address "fe80::1%eth0": "1%eth0" is not a 16-bit hex group'],
    [() => parseIpv6('::1.2.3'), 'invalid IPv6 address "::1.2.3": "1.2.3" is not a 16-bit hex group'],
    [() => parseIpv6('1:'), 'invalid IPv6 address "1:": "" is not a 16-bit hex group'],
    [() => parseIpv6('1:2:3:4:5:6:7::8'), 'invalid IPv6 address "1:2:3:4:5:6:7::8": too many groups'],
    [() => parseIpv6('1:2:3:4:5:6:7:8:9'), 'invalid IPv6 address "1:2:3:4:5:6:7:8:9": expected 8 groups'],
    [() => parseIpv6('1:2:3:4:5:6:7'), 'invalid IPv6 address "1:2:3:4:5:6:7": expected 8 groups'],
  ];
  for (const [f, message] of bad) t.throws(f, { message });
});

// words, RFC 5952, inet_ntop (glibc)
const PRINT: [number[], string, string][] = [
  [[0, 0, 0, 0], '::', '::'],
  [[0, 0, 0, 1], '::1', '::1'],
  [[0, 0, 0, 0xffff], '::ffff', '::ffff'],
  [[0, 0, 0, 0x10000], '::1:0', '::0.1.0.0'],
  [[0, 0, 0, 0x01020304], '::102:304', '::1.2.3.4'],
  [[0, 0, 0xffff, 0xc0000201], '::ffff:c000:201', '::ffff:192.0.2.1'],
  [[0, 0, 0x1ffff, 0xc0000201], '::1:ffff:c000:201', '::1:ffff:c000:201'],
  [[0x20010db8, 0, 0x10000, 1], '2001:db8::1:0:0:1', '2001:db8::1:0:0:1'],
  [[0x20010db8, 0, 0, 1], '2001:db8::1', '2001:db8::1'],
  [[0x10000, 0x30004, 0x50006, 0x70008], '1:0:3:4:5:6:7:8', '1:0:3:4:5:6:7:8'],
  [[0x10000, 0, 0, 0], '1::', '1::'],
  [[0x10000, 0, 0x10000, 0], '1::1:0:0:0', '1::1:0:0:0'],
];
for (const [words, rfc, ntop] of PRINT) {
  test(`print ${rfc}`, (t) => {
    t.is(ipv6ToString(Uint32Array.from(words)), rfc);
    t.is(ipv6ToInetNtop(Uint32Array.from(words)), ntop);
    t.is(ipv6ToString(words), rfc, 'plain arrays too');
  });
}

test('ipv4ToString', (t) => {
  t.is(ipv4ToString(0), '0.0.0.0');
  t.is(ipv4ToString(0xcb007101), '203.0.113.1');
  t.is(ipv4ToString(0xffffffff), '255.255.255.255');
});

/** Text that is nearly an address: groups, `::`, dotted tails, stray separators. */
const addressish = fc.oneof(
  fc.array(fc.constantFrom(...'0123456789abcdefABCDEFg:.:.:'), { maxLength: 16 }).map((a) => a.join('')),
  fc
    .tuple(
      fc.array(fc.integer({ min: 0, max: 0x1ffff }).map((n) => n.toString(16)), { maxLength: 9 }),
      fc.option(fc.nat(40)),
      fc.option(fc.array(fc.integer({ min: 0, max: 300 }).map(String), { minLength: 3, maxLength: 5 })),
    )
    .map(([groups, gapAt, quad]) => {
      let s = groups.join(':');
      if (gapAt !== null) s = `${s.slice(0, gapAt % (s.length + 1))}::${s.slice(gapAt % (s.length + 1))}`;
      if (quad) s += `${s === '' || s.endsWith(':') ? '' : ':'}${quad.join('.')}`;
      return s;
    }),
);

test('the strict grammar accepts exactly what node:net accepts', (t) => {
  fc.assert(
    fc.property(addressish, (s) => (ipv6FromText(s, STRICT) !== null) === isIPv6(s) && (ipv4FromText(s, STRICT) >= 0) === isIPv4(s)),
    { numRuns: 20000 },
  );
  t.pass();
});

test('both printed forms parse back to the same words', (t) => {
  const group = fc.constantFrom(0, 0, 0, 1, 0xffff, 0x1234);
  const words = fc.array(fc.tuple(group, group), { minLength: 4, maxLength: 4 }).map((ws) => Uint32Array.from(ws, ([hi, lo]) => ((hi << 16) | lo) >>> 0));
  fc.assert(
    fc.property(fc.oneof(words, fc.uint32Array({ minLength: 4, maxLength: 4 })), (w) => {
      const want = hex(w);
      return hex(ipv6FromText(ipv6ToString(w), STRICT)) === want && hex(ipv6FromText(ipv6ToInetNtop(w), STRICT)) === want;
    }),
    { numRuns: 5000 },
  );
  fc.assert(fc.property(fc.nat({ max: 0xffffffff }), (a) => ipv4FromText(ipv4ToString(a), STRICT) === a), { numRuns: 2000 });
  t.pass();
});

test('prefix masks and their lengths', (t) => {
  const cases: [number, number[]][] = [
    [0, [0, 0, 0, 0]],
    [1, [0x80000000, 0, 0, 0]],
    [24, [0xffffff00, 0, 0, 0]],
    [32, [0xffffffff, 0, 0, 0]],
    [33, [0xffffffff, 0x80000000, 0, 0]],
    [64, [0xffffffff, 0xffffffff, 0, 0]],
    [127, [0xffffffff, 0xffffffff, 0xffffffff, 0xfffffffe]],
    [128, [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff]],
  ];
  for (const [len, words] of cases) {
    const mask = Uint32Array.from([0, 1, 2, 3], (i) => prefixMaskWord(len, i));
    t.deepEqual(Array.from(mask), words, `/${len}`);
    t.is(maskPrefixLength(mask), len, `/${len}`);
  }
  t.is(maskPrefixLength(Uint32Array.of(0xffffff00, 0xff, 0, 0), 1), 24, 'only the words asked for');
  t.is(maskPrefixLength(Uint32Array.of(0xff00ff00)), -1);
  t.is(maskPrefixLength(Uint32Array.of(0xffffffff, 0, 1, 0)), -1);
});
