/**
 * `-m asn`: upstream's option rules and messages, save text, and matching
 * against tables built from real ip-location-db ASN rows - IPv6 included,
 * which upstream gets wrong on little-endian hosts.
 */
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import asn, { type AsnParams } from '../modules/asn.js';
import { XtError, type ParsedOption, type RuleInfo } from '../xt/extension.js';
import { PacketContext } from '../xt/packet.js';
import { buildAsnDb, writeDatabase } from '../geoip-db/build.js';
import { parseIPv4, parseIPv6, v6Words } from '../geoip-db/addr.js';
import { ipLocationDb, readLines, tempDir } from './fixtures/geoip/helpers.js';
import { makeEnv } from './fixtures/geoip/env.js';

const RULE4: RuleInfo = { family: 4, table: 'filter', chain: 'FORWARD', proto: 0, protoInverted: false };
const RULE6: RuleInfo = { ...RULE4, family: 6 };
const opt = (name: string, value: string, inverted = false): ParsedOption => ({ name, value, inverted });

const PARSE_OK: Array<[string, ParsedOption[], AsnParams, string]> = [
  ['one source AS', [opt('src-asn', '13335')], { numbers: [13335], files: ['13335'], source: true, invert: false }, ' --src-asn 13335'],
  ['0 ignored, duplicates dropped', [opt('dst-asn', '0,15169,15169,015169,2500')], { numbers: [15169, 2500], files: ['15169', '2500'], source: false, invert: false }, ' --dst-asn 15169,2500'],
  ['inverted; file name as typed', [opt('src-asn', '0123', true)], { numbers: [123], files: ['0123'], source: true, invert: true }, ' ! --src-asn 123'],
  ['truncated to 32 bits', [opt('src-asn', '4294967297')], { numbers: [1], files: ['4294967297'], source: true, invert: false }, ' --src-asn 1'],
];
for (const [name, opts, params, saved] of PARSE_OK) {
  test(`parse: ${name}`, (t) => {
    const p = asn.parse(opts, RULE4);
    t.deepEqual(p, params);
    t.is(asn.save(p), saved);
    t.is(asn.print!(p), ` -m asn${saved}`);
  });
}

const PARSE_ERR: Array<[string, ParsedOption[], string]> = [
  ['no option', [], 'asn: missing arguments'],
  ['both', [opt('src-asn', '1'), opt('dst-asn', '2')], 'asn: Only exactly one of --src-asn or --dst-asn must be specified!'],
  ['letters', [opt('src-asn', 'AS13335')], "asn:  invalid number code 'AS13335'"],
  ['sign', [opt('src-asn', '+1')], "asn:  invalid number code '+1'"],
  ['empty token', [opt('src-asn', '1,,2')], 'asn: missing number code'],
  ['trailing comma', [opt('src-asn', '1,')], 'asn: missing number code'],
  ['only 0', [opt('src-asn', '0')], "asn: don't know what happened"],
  ['16 numbers', [opt('src-asn', Array.from({ length: 16 }, (_, i) => String(i + 1)).join(','))], 'asn: too many ASNs specified'],
];
for (const [name, opts, message] of PARSE_ERR) {
  test(`parse error: ${name}`, (t) => {
    const e = t.throws(() => asn.parse(opts, RULE4), { instanceOf: XtError });
    t.is(e?.message, message);
  });
}

test('15 numbers, duplicates consuming slots, are accepted', (t) => {
  t.deepEqual(asn.parse([opt('src-asn', Array.from({ length: 15 }, () => '7').join(','))], RULE4).numbers, [7]);
});

/** Real rows for a few ASNs, both families, from the pinned package. */
function realDb(): { dir: string; rows: Map<string, string[][]> } {
  const want = new Set(['13335', '2500', '6939', '15169']);
  const rows = new Map<string, string[][]>();
  const lines: string[] = [];
  for (const file of ['asn-ipv4.csv', 'asn-ipv6.csv']) {
    for (const l of readLines(ipLocationDb('asn', file))) {
      const f = l.split(',');
      if (!want.has(f[2]!)) continue;
      lines.push(l);
      const list = rows.get(f[2]!) ?? [];
      list.push(f);
      rows.set(f[2]!, list);
    }
  }
  const dir = tempDir('asn-db');
  writeFileSync(join(dir, 'in.csv'), lines.join('\n'));
  writeDatabase(dir, buildAsnDb([{ name: 'in.csv', text: lines.join('\n') }]).files);
  return { dir, rows };
}

test('match on real ASN ranges: IPv4 and IPv6 (big-endian 128-bit compare)', (t) => {
  const { dir, rows } = realDb();
  const env4 = makeEnv(4, { asn: { dir } });
  const env6 = makeEnv(6, { asn: { dir } });
  const cf4 = asn.check(asn.parse([opt('src-asn', '13335')], RULE4), env4);
  const notWide6 = asn.check(asn.parse([opt('dst-asn', '2500', true)], RULE6), env6);
  const cf6 = asn.check(asn.parse([opt('src-asn', '13335,6939')], RULE6), env6);
  let v4 = 0;
  let v6 = 0;
  const p = new PacketContext();
  for (const [number, list] of rows) {
    for (const [s, e] of list) {
      for (const text of [s!, e!]) {
        if (text.includes('.')) {
          p.family = 4;
          p.src4 = parseIPv4(text);
          t.is(cf4.match(p), number === '13335', `${text} AS${number}`);
          v4++;
        } else {
          p.family = 6;
          v6Words(parseIPv6(text)!, p.src6);
          v6Words(parseIPv6(text)!, p.dst6);
          t.is(cf6.match(p), number === '13335' || number === '6939', `${text} AS${number}`);
          t.is(notWide6.match(p), number !== '2500', `! --dst-asn 2500 ${text}`);
          v6++;
        }
      }
    }
  }
  t.true(v4 > 100 && v6 > 100, `${v4} IPv4 and ${v6} IPv6 range edges checked`);
  // just outside a known IPv6 range of AS2500 (2001:200::/...)
  const wide = rows.get('2500')!.filter((r) => r[0]!.includes(':')).map((r) => parseIPv6(r[1]!)!);
  v6Words(wide[0]! + 1n, p.dst6);
  p.family = 6;
  const inOtherWide = rows.get('2500')!.some((r) => r[0]!.includes(':') && parseIPv6(r[0]!)! === wide[0]! + 1n);
  t.is(notWide6.match(p), !inOtherWide);
  for (const r of [cf4, notWide6, cf6]) r.destroy!();
  t.is(env4.state.entries.size + env6.state.entries.size, 0);
});

test('check: missing AS file names the path; default directory /usr/share/xt_asn', (t) => {
  const e = t.throws(() => asn.check(asn.parse([opt('src-asn', '4199999999')], RULE4), makeEnv(4, {})), { instanceOf: XtError });
  t.is(e?.message, 'Could not open /usr/share/xt_asn/4199999999.iv4: No such file or directory: Could not read asn database');
});
