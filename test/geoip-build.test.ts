/**
 * xtr's builders against the upstream Perl builders (xtables-addons-common)
 * on the same input, built from the pinned ip-location-db data: every output
 * file must be byte-for-byte identical, and so must the stdout report.
 */
import test from 'ava';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseIPv4, parseIPv6, formatIPv6 } from '../geoip-db/addr.js';
import { rangeToCidrs4, rangeToCidrs6 } from '../geoip-db/ranges.js';
import { dirFiles, ipLocationDb, perlAvailable, prng, readLines, runPerl, runXtr, shuffle, tempDir } from './fixtures/geoip/helpers.js';

/** First `head` rows then every `step`-th: contiguous runs (adjacent merges) and gaps. */
function sample(lines: string[], head: number, step: number): string[] {
  return lines.filter((_, i) => i < head || i % step === 0);
}

function assertSameDirs(t: import('ava').ExecutionContext, perlDir: string, xtrDir: string): void {
  const p = dirFiles(perlDir);
  const x = dirFiles(xtrDir);
  t.deepEqual([...x.keys()], [...p.keys()], 'same file names');
  let differing = 0;
  for (const [name, bytes] of p) if (!x.get(name)?.equals(bytes)) differing++;
  t.is(differing, 0, 'every file byte-for-byte identical');
  t.true(p.size > 0);
}

const EDGE_ROWS = [
  '0.0.0.0,0.0.0.255,ZZ',
  '255.255.255.0,255.255.255.255,ZZ',
  '10.0.0.0,10.0.0.100,ZZ',
  '10.0.0.50,10.0.1.0,ZZ',
  '10.0.1.1,10.0.1.1,ZZ',
  '10.0.0.7,10.0.0.9,ZZ',
  '10.0.3.0,10.0.3.0,ZZ',
  '0::1:0,0::1:ff,ZZ',
  'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,ZZ',
  '2001:db8::,2001:db8::ffff,ZZ',
  '2001:db8::1:0,2001:db8::2:0,ZZ',
];

test('xt_geoip_build: DB-IP country CSV (real data, shuffled, v4+v6 mixed) identical to the Perl builder', (t) => {
  if (!perlAvailable('xt_geoip_build')) return t.fail('xtables-addons-common is not installed (scripts/ensure-setup installs it)');
  const rnd = prng(4);
  const rows = [
    ...sample(readLines(ipLocationDb('dbip-country', 'dbip-country-ipv4.csv')), 3000, 40),
    ...sample(readLines(ipLocationDb('dbip-country', 'dbip-country-ipv6.csv')), 3000, 40),
  ];
  const input = [...shuffle(rows, rnd), ...EDGE_ROWS].join('\n') + '\n';
  const dir = tempDir('geoip-build');
  writeFileSync(join(dir, 'in.csv'), input);
  mkdirSync(join(dir, 'perl'));
  mkdirSync(join(dir, 'xtr'));
  const perl = runPerl('xt_geoip_build', ['-D', join(dir, 'perl'), '-i', join(dir, 'in.csv')]);
  t.is(perl.status, 0, perl.stderr);
  const xtr = runXtr('xt_geoip_build', ['-D', join(dir, 'xtr'), '-i', join(dir, 'in.csv')]);
  t.is(xtr.status, 0, xtr.stderr);
  assertSameDirs(t, join(dir, 'perl'), join(dir, 'xtr'));
  t.is(xtr.stdout, perl.stdout, 'same "%5u IPv4 ranges for CC" report');
  t.regex(xtr.stderr, new RegExp(`${rows.length + EDGE_ROWS.length} entries total`));

  // -q: no report, same files; stdin input with -i -
  mkdirSync(join(dir, 'xtr-q'));
  const quiet = runXtr('xt_geoip_build', ['-q', '-D', join(dir, 'xtr-q'), '-i', '-'], input);
  t.is(quiet.status, 0, quiet.stderr);
  t.is(quiet.stdout, '');
  assertSameDirs(t, join(dir, 'perl'), join(dir, 'xtr-q'));
});

test('xt_geoip_build: an IPv6 range written from "::" is kept (upstream drops it: its family test wants ":" after position 0)', (t) => {
  const dir = tempDir('geoip-zero');
  const input = '::,::ff,ZZ\n1.2.3.0,1.2.3.255,ZZ\n';
  mkdirSync(join(dir, 'perl'));
  mkdirSync(join(dir, 'xtr'));
  writeFileSync(join(dir, 'in.csv'), input);
  t.is(runPerl('xt_geoip_build', ['-q', '-D', join(dir, 'perl'), '-i', join(dir, 'in.csv')]).status, 0);
  t.is(runXtr('xt_geoip_build', ['-q', '-D', join(dir, 'xtr'), '-i', join(dir, 'in.csv')]).status, 0);
  t.is(readFileSync(join(dir, 'perl', 'ZZ.iv6')).length, 0, 'upstream silently drops the row');
  t.deepEqual([...readFileSync(join(dir, 'xtr', 'ZZ.iv6'))], [...Buffer.alloc(15), 0, ...Buffer.alloc(15), 0xff]);
  t.true(readFileSync(join(dir, 'xtr', 'ZZ.iv4')).equals(readFileSync(join(dir, 'perl', 'ZZ.iv4'))));
});

function asnRows(): { v4: string[][]; v6: string[][] } {
  const parse = (path: string) =>
    sample(readLines(path), 2000, 60).map((l) => {
      const m = /^([^,]+),([^,]+),(\d+),(.*)$/.exec(l)!;
      return [m[1]!, m[2]!, m[3]!, m[4]!];
    });
  return { v4: parse(ipLocationDb('asn', 'asn-ipv4.csv')), v6: parse(ipLocationDb('asn', 'asn-ipv6.csv')) };
}

test('xt_asn_build: GeoLite2 ASN CSV from real ranges identical to the Perl builder; -i ip-location-db CSV gives the same files', (t) => {
  if (!perlAvailable('xt_asn_build')) return t.fail('xtables-addons-common is not installed');
  const { v4, v6 } = asnRows();
  const dir = tempDir('asn-build');
  for (const d of ['src', 'perl', 'xtr', 'xtr-i']) mkdirSync(join(dir, d));
  const header = 'network,autonomous_system_number,autonomous_system_organization';
  const b4: string[] = [header];
  for (const [s, e, asn, org] of v4) for (const c of rangeToCidrs4(parseIPv4(s), parseIPv4(e))) b4.push(`${c},${asn},${org}`);
  const b6: string[] = [header];
  for (const [s, e, asn, org] of v6) {
    for (const [net, len] of rangeToCidrs6(parseIPv6(s)!, parseIPv6(e)!)) b6.push(`${formatIPv6(net)}/${len},${asn},${org}`);
  }
  writeFileSync(join(dir, 'src', 'GeoLite2-ASN-Blocks-IPv4.csv'), b4.join('\n') + '\n');
  writeFileSync(join(dir, 'src', 'GeoLite2-ASN-Blocks-IPv6.csv'), b6.join('\r\n') + '\r\n');
  const perl = runPerl('xt_asn_build', ['-S', join(dir, 'src'), '-D', join(dir, 'perl'), '-O', join(dir, 'perl.zone')]);
  t.is(perl.status, 0, perl.stderr);
  const xtr = runXtr('xt_asn_build', ['-S', join(dir, 'src'), '-D', join(dir, 'xtr'), '-O', join(dir, 'xtr.zone')]);
  t.is(xtr.status, 0, xtr.stderr);
  assertSameDirs(t, join(dir, 'perl'), join(dir, 'xtr'));
  t.is(xtr.stdout, perl.stdout);
  t.is(readFileSync(join(dir, 'xtr.zone'), 'utf8'), readFileSync(join(dir, 'perl.zone'), 'utf8'), '-O zone lines identical');

  const csv4 = v4.map((r) => r.slice(0, 3).join(',') + `,"${r[3]!.replace(/^"|"$/g, '')}"`).join('\n');
  const csv6 = v6.map((r) => r.join(',')).join('\n');
  writeFileSync(join(dir, 'asn-ipv4.csv'), csv4 + '\n');
  writeFileSync(join(dir, 'asn-ipv6.csv'), csv6 + '\n');
  const xi = runXtr('xt_asn_build', ['-D', join(dir, 'xtr-i'), '-i', join(dir, 'asn-ipv4.csv'), '-i', join(dir, 'asn-ipv6.csv')]);
  t.is(xi.status, 0, xi.stderr);
  assertSameDirs(t, join(dir, 'perl'), join(dir, 'xtr-i'));
  t.is(xi.stdout, perl.stdout);
});

test('xt_geoip_build_maxmind: GeoLite2 Country CSV pair (real ranges; proxy, satellite, registered-only, no id, continent) identical to the Perl builder', (t) => {
  if (!perlAvailable('xt_geoip_build_maxmind')) return t.fail('xtables-addons-common is not installed');
  const rnd = prng(11);
  const dir = tempDir('mm-build');
  for (const d of ['src', 'perl', 'xtr']) mkdirSync(join(dir, d));
  const rows4 = sample(readLines(ipLocationDb('dbip-country', 'dbip-country-ipv4.csv')), 1500, 80).map((l) => l.split(','));
  const rows6 = sample(readLines(ipLocationDb('dbip-country', 'dbip-country-ipv6.csv')), 1500, 80).map((l) => l.split(','));
  const codes = [...new Set([...rows4, ...rows6].map((r) => r[2]!))].sort();
  const ids = new Map(codes.map((c, i) => [c, String(100000 + i)]));
  const loc = ['geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,is_in_european_union'];
  for (const c of codes) loc.push(`${ids.get(c)},en,XX,Somewhere,${c},"Country ${c}, the",0`);
  loc.push('6255148,en,EU,Europe,,,0');
  const blockLine = (net: string, cc: string): string => {
    const r = rnd();
    const id = ids.get(cc)!;
    if (r < 0.02) return `${net},,,,1,0`; // anonymous proxy -> A1
    if (r < 0.04) return `${net},,,,0,1`; // satellite -> A2
    if (r < 0.06) return `${net},,,,0,0`; // no id at all -> O1
    if (r < 0.08) return `${net},6255148,,,0,0`; // continent only -> EU
    if (r < 0.2) return `${net},,${id},,0,0`; // registered country only
    return `${net},${id},${id},,0,0`;
  };
  const header = 'network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider';
  const b4 = [header];
  for (const [s, e, cc] of rows4) for (const c of rangeToCidrs4(parseIPv4(s!), parseIPv4(e!))) b4.push(blockLine(c, cc!));
  const b6 = [header];
  for (const [s, e, cc] of rows6) for (const [n, len] of rangeToCidrs6(parseIPv6(s!)!, parseIPv6(e!)!)) b6.push(blockLine(`${formatIPv6(n)}/${len}`, cc!));
  writeFileSync(join(dir, 'src', 'GeoLite2-Country-Locations-en.csv'), loc.join('\n') + '\n');
  writeFileSync(join(dir, 'src', 'GeoLite2-Country-Blocks-IPv4.csv'), b4.join('\n') + '\n');
  writeFileSync(join(dir, 'src', 'GeoLite2-Country-Blocks-IPv6.csv'), b6.join('\n') + '\n');
  const perl = runPerl('xt_geoip_build_maxmind', ['-S', join(dir, 'src'), '-D', join(dir, 'perl')]);
  t.is(perl.status, 0, perl.stderr);
  const xtr = runXtr('xt_geoip_build_maxmind', ['-S', join(dir, 'src'), '-D', join(dir, 'xtr')]);
  t.is(xtr.status, 0, xtr.stderr);
  assertSameDirs(t, join(dir, 'perl'), join(dir, 'xtr'));
  t.is(xtr.stdout, perl.stdout);
  for (const special of ['A1.iv4', 'A2.iv6', 'O1.iv4', 'EU.iv4']) t.true(dirFiles(join(dir, 'xtr')).has(special), special);
});
