/**
 * xt_geoip_query / xt_asn_query against the upstream Perl tools
 * (/usr/bin/xt_geoip_query, libexec xt_asn_fetch) on the same files: same
 * stdout (inet_ntop text incl. its IPv4-in-IPv6 forms), same errors.
 */
import test from 'ava';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildAsnDb, buildCountryDb, writeDatabase } from '../geoip-db/build.js';
import { writeV6 } from '../geoip-db/addr.js';
import { ipLocationDb, perlAvailable, readLines, runPerl, runXtr, tempDir } from './fixtures/geoip/helpers.js';

/** IPv6 addresses whose text form has special cases in inet_ntop. */
const TRICKY6: Array<[bigint, bigint]> = [
  [0n, 1n], // :: and ::1
  [2n, 0xffffffffn], // ::0.0.0.2 .. ::255.255.255.255
  [0xffff00000000n, 0xffff01020304n], // IPv4-mapped
  [0x1_0000_0000_0000n, 0x1_0000_0000_0001n], // ::1:0:0:0 - not mapped
  [0x2001_0db8_0000_0000_0001_0000_0000_0001n, 0x2001_0db8_0000_0000_0001_0000_0000_0002n], // first of two equal runs
  [0x2001_0db8_0000_0001_0000_0000_0000_0001n, 0x2001_0db8_0000_0001_0000_0000_0000_ffffn],
  [0xfe80_0000_0000_0000_0000_0000_0000_0000n, 0xfe80_0000_0000_0000_ffff_ffff_ffff_ffffn],
  [(1n << 128n) - 2n, (1n << 128n) - 1n],
];

function trickyDir(): string {
  const dir = tempDir('query');
  const v6 = Buffer.alloc(TRICKY6.length * 32);
  TRICKY6.forEach(([s, e], i) => {
    writeV6(s, v6, i * 32);
    writeV6(e, v6, i * 32 + 16);
  });
  writeFileSync(join(dir, 'ZZ.iv6'), v6);
  writeFileSync(join(dir, 'ZZ.iv4'), Buffer.from([0, 0, 0, 0, 0, 0, 0, 255, 10, 0, 0, 1, 255, 255, 255, 255]));
  writeFileSync(join(dir, 'XX.iv4'), Buffer.from([1, 2, 3, 4, 1, 2, 3, 5, 9, 9, 9])); // trailing partial record
  writeFileSync(join(dir, 'XX.iv6'), Buffer.alloc(0));
  writeFileSync(join(dir, 'YY.iv6'), Buffer.alloc(0)); // no .iv4
  return dir;
}

test('xt_geoip_query: same output as upstream on real data and inet_ntop corner cases', (t) => {
  if (!perlAvailable('xt_geoip_query')) return t.fail('xtables-addons-common is not installed');
  const dir = trickyDir();
  const rows = [...readLines(ipLocationDb('dbip-country', 'dbip-country-ipv4.csv')).slice(0, 4000), ...readLines(ipLocationDb('dbip-country', 'dbip-country-ipv6.csv')).slice(0, 4000)];
  writeDatabase(dir, buildCountryDb([{ name: 'slice', text: rows.join('\n') }]).files);
  for (const args of [['zz'], ['-4', 'ZZ'], ['-6', 'zz'], ['AU', 'cn', 'JP', 'ZZ'], ['-6', 'US', 'DE'], ['-D', dir, 'zz']]) {
    const full = args[0] === '-D' ? args : ['-D', dir, ...args];
    const want = runPerl('xt_geoip_query', full);
    const got = runXtr('xt_geoip_query', full);
    t.is(got.stdout, want.stdout, args.join(' '));
    t.is(got.status, want.status);
    t.true(got.stdout.length > 0);
  }
});

test('xt_geoip_query: errors as upstream', (t) => {
  if (!perlAvailable('xt_geoip_query')) return t.fail('xtables-addons-common is not installed');
  const dir = trickyDir();
  for (const args of [['DEU'], ['D1'], ['QQ'], ['YY'], ['-4', 'XX'], ['ZZ', 'ZZZ']]) {
    const want = runPerl('xt_geoip_query', ['-D', dir, ...args]);
    const got = runXtr('xt_geoip_query', ['-D', dir, ...args]);
    t.is(got.stdout, want.stdout, args.join(' '));
    t.is(got.stderr, want.stderr, args.join(' '));
    t.is(got.status, want.status, args.join(' '));
  }
  const nodir = runXtr('xt_geoip_query', ['-D', join(dir, 'missing'), 'DE']);
  t.is(nodir.stderr, `Target directory ${join(dir, 'missing')} does not exit.\n`);
  t.is(nodir.status, 1);
});

test('xt_asn_query: same output as upstream xt_asn_fetch on real ASN tables', (t) => {
  if (!perlAvailable('xt_asn_fetch')) return t.fail('xtables-addons-common is not installed');
  const dir = tempDir('asnq');
  mkdirSync(join(dir, 'db'));
  const rows = [...readLines(ipLocationDb('asn', 'asn-ipv4.csv')).slice(0, 3000), ...readLines(ipLocationDb('asn', 'asn-ipv6.csv')).slice(0, 3000)];
  writeDatabase(join(dir, 'db'), buildAsnDb([{ name: 'slice', text: rows.join('\n') }]).files);
  for (const args of [['13335'], ['-6', '2500', '6939'], ['-4', '13335', '2500'], ['x1'], ['999999999']]) {
    const want = runPerl('xt_asn_fetch', ['-D', join(dir, 'db'), ...args]);
    const got = runXtr('xt_asn_query', ['-D', join(dir, 'db'), ...args]);
    t.is(got.stdout, want.stdout, args.join(' '));
    t.is(got.stderr, want.stderr, args.join(' '));
    t.is(got.status, want.status, args.join(' '));
  }
});
