/**
 * Bad builder inputs: each is a clear error naming file and line (or a
 * documented warning), exits non-zero, and leaves the good database already
 * in the target directory exactly as it was (no partial files, no temp dir).
 */
import test from 'ava';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dirFiles, runXtr, tempDir } from './fixtures/geoip/helpers.js';

const GOOD = '1.0.0.0,1.0.0.255,AU\n1.0.1.0,1.0.3.255,CN\n2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP\n';

interface Case {
  readonly name: string;
  readonly tool: 'xt_geoip_build' | 'xt_asn_build' | 'xt_geoip_build_maxmind';
  /** Input files by name; `in.csv` is passed with -i for the -i tools, else the dir with -S. */
  readonly files: Record<string, string>;
  readonly error: RegExp;
}

const LOC_HEADER = 'geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,is_in_european_union';
const BLK_HEADER = 'network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider';

const CASES: Case[] = [
  { name: 'header line in a header-less CSV', tool: 'xt_geoip_build', files: { 'in.csv': 'ip_range_start,ip_range_end,country_code\n' + GOOD }, error: /in\.csv:1: this looks like a header line \("ip_range_start,ip_range_end,country_code"\); expected rows start_ip,end_ip,country_code without a header/ },
  { name: 'GeoLite2 blocks file given to the DB-IP builder', tool: 'xt_geoip_build', files: { 'in.csv': BLK_HEADER + '\n1.0.0.0/24,1,1,,0,0\n' }, error: /in\.csv:1: this looks like a header line/ },
  { name: 'invalid address', tool: 'xt_geoip_build', files: { 'in.csv': GOOD + '1.0.4.0,1.0.4.256,AU\n' }, error: /in\.csv:4: invalid IP address "1\.0\.4\.256" in column 2/ },
  { name: 'leading zero in an IPv4 part', tool: 'xt_geoip_build', files: { 'in.csv': '01.0.0.0,1.0.0.255,AU\n' }, error: /in\.csv:1: invalid IP address "01\.0\.0\.0" in column 1/ },
  { name: 'bad IPv6 text', tool: 'xt_geoip_build', files: { 'in.csv': GOOD + '2001:db8:::1,2001:db8::2,DE\n' }, error: /in\.csv:4: invalid IP address "2001:db8:::1" in column 1/ },
  { name: 'start > end', tool: 'xt_geoip_build', files: { 'in.csv': GOOD + '1.0.0.9,1.0.0.1,AU\n' }, error: /in\.csv:4: start 1\.0\.0\.9 is greater than end 1\.0\.0\.1/ },
  { name: 'start > end (IPv6)', tool: 'xt_geoip_build', files: { 'in.csv': '2001:db8::2,2001:db8::1,DE\n' }, error: /in\.csv:1: start 2001:db8::2 is greater than end 2001:db8::1/ },
  { name: 'mixed families in one range', tool: 'xt_geoip_build', files: { 'in.csv': GOOD + '1.0.0.0,::ffff,AU\n' }, error: /in\.csv:4: range "1\.0\.0\.0-::ffff" mixes IPv4 and IPv6/ },
  { name: 'country code of three letters', tool: 'xt_geoip_build', files: { 'in.csv': GOOD + '1.0.8.0,1.0.8.255,AUS\n' }, error: /in\.csv:4: invalid country code "AUS": must be two letters or digits/ },
  { name: 'empty country code', tool: 'xt_geoip_build', files: { 'in.csv': GOOD + '1.0.8.0,1.0.8.255,\n' }, error: /in\.csv:4: invalid country code ""/ },
  { name: 'two columns', tool: 'xt_geoip_build', files: { 'in.csv': GOOD + '1.0.8.0,1.0.8.255\n' }, error: /in\.csv:4: 2 column\(s\); expected rows start_ip,end_ip,country_code/ },
  { name: 'numeric (-num.csv) variant', tool: 'xt_geoip_build', files: { 'in.csv': '16777216,16777471,AU\n' }, error: /in\.csv:1: "16777216" is a number, not an IP address/ },
  { name: 'unterminated quote', tool: 'xt_geoip_build', files: { 'in.csv': GOOD + '1.0.8.0,1.0.8.255,"AU\n' }, error: /in\.csv:4: unterminated quoted field/ },
  { name: 'empty file', tool: 'xt_geoip_build', files: { 'in.csv': '' }, error: /in\.csv: empty input \(no rows\)/ },
  { name: 'missing input file', tool: 'xt_geoip_build', files: {}, error: /Cannot open .*in\.csv: No such file or directory/ },
  { name: 'not an .mmdb file', tool: 'xt_geoip_build', files: { 'in.mmdb': 'this is not a database\n' }, error: /in\.mmdb: cannot read as a MaxMind DB \(\.mmdb\) file/ },
  { name: 'ASN: not a number', tool: 'xt_asn_build', files: { 'in.csv': '1.0.0.0,1.0.0.255,AS13335x,"Cloudflare, Inc."\n' }, error: /in\.csv:1: invalid AS number "AS13335x"/ },
  { name: 'ASN: header line', tool: 'xt_asn_build', files: { 'in.csv': 'start,end,asn,name\n1.0.0.0,1.0.0.255,13335,x\n' }, error: /in\.csv:1: this looks like a header line .*expected rows start_ip,end_ip,asn,organization/ },
  { name: 'ASN GeoLite2: wrong header', tool: 'xt_asn_build', files: { 'GeoLite2-ASN-Blocks-IPv4.csv': 'net,asn,org\n1.0.0.0/24,1,x\n', 'GeoLite2-ASN-Blocks-IPv6.csv': 'network,autonomous_system_number,autonomous_system_organization\n' }, error: /GeoLite2-ASN-Blocks-IPv4\.csv:1: header has no "network", "autonomous_system_number", "autonomous_system_organization" column; expected a GeoLite2-ASN-Blocks-IPv4\.csv header/ },
  { name: 'ASN GeoLite2: IPv6 network in the IPv4 file', tool: 'xt_asn_build', files: { 'GeoLite2-ASN-Blocks-IPv4.csv': 'network,autonomous_system_number,autonomous_system_organization\n2001:db8::/32,1,x\n', 'GeoLite2-ASN-Blocks-IPv6.csv': 'network,autonomous_system_number,autonomous_system_organization\n2001:db8::/32,1,x\n' }, error: /GeoLite2-ASN-Blocks-IPv4\.csv:2: invalid IPv4 network "2001:db8::\/32" \(an IPv6 network in the IPv4 file\)/ },
  { name: 'MaxMind: Locations without country_iso_code', tool: 'xt_geoip_build_maxmind', files: { 'GeoLite2-Country-Locations-en.csv': 'geoname_id,continent_code,continent_name,country_name\n1,EU,Europe,Germany\n', 'GeoLite2-Country-Blocks-IPv4.csv': BLK_HEADER + '\n', 'GeoLite2-Country-Blocks-IPv6.csv': BLK_HEADER + '\n' }, error: /GeoLite2-Country-Locations-en\.csv:1: header has no "country_iso_code" column/ },
  { name: 'MaxMind: unknown geoname id', tool: 'xt_geoip_build_maxmind', files: { 'GeoLite2-Country-Locations-en.csv': LOC_HEADER + '\n1,en,EU,Europe,DE,Germany,1\n', 'GeoLite2-Country-Blocks-IPv4.csv': BLK_HEADER + '\n1.0.0.0/24,1,1,,0,0\n1.0.1.0/24,999,999,,0,0\n', 'GeoLite2-Country-Blocks-IPv6.csv': BLK_HEADER + '\n' }, error: /GeoLite2-Country-Blocks-IPv4\.csv:3: unknown geoname_id 999/ },
  { name: 'MaxMind: bad prefix length', tool: 'xt_geoip_build_maxmind', files: { 'GeoLite2-Country-Locations-en.csv': LOC_HEADER + '\n1,en,EU,Europe,DE,Germany,1\n', 'GeoLite2-Country-Blocks-IPv4.csv': BLK_HEADER + '\n1.0.0.0/33,1,1,,0,0\n', 'GeoLite2-Country-Blocks-IPv6.csv': BLK_HEADER + '\n' }, error: /GeoLite2-Country-Blocks-IPv4\.csv:2: invalid network "1\.0\.0\.0\/33"/ },
  { name: 'MaxMind: missing Blocks-IPv6 file', tool: 'xt_geoip_build_maxmind', files: { 'GeoLite2-Country-Locations-en.csv': LOC_HEADER + '\n', 'GeoLite2-Country-Blocks-IPv4.csv': BLK_HEADER + '\n' }, error: /Cannot open .*GeoLite2-Country-Blocks-IPv6\.csv: No such file or directory/ },
];

function setup(tag: string): { dir: string; db: string; before: Map<string, Buffer> } {
  const dir = tempDir(tag);
  const db = join(dir, 'db');
  mkdirSync(db);
  writeFileSync(join(dir, 'good.csv'), GOOD);
  const r = runXtr('xt_geoip_build', ['-q', '-D', db, '-i', join(dir, 'good.csv')]);
  if (r.status !== 0) throw new Error(r.stderr);
  return { dir, db, before: dirFiles(db) };
}

for (const c of CASES) {
  test(`bad input: ${c.name}`, (t) => {
    const { dir, db, before } = setup('bad');
    const src = join(dir, 'src');
    mkdirSync(src);
    for (const [name, text] of Object.entries(c.files)) writeFileSync(join(src, name), text);
    const input = Object.keys(c.files).find((f) => f.startsWith('in.')) ?? 'in.csv';
    const args = c.tool === 'xt_geoip_build_maxmind' || (!('in.csv' in c.files) && c.tool === 'xt_asn_build') ? ['-S', src] : ['-i', join(src, input)];
    const r = runXtr(c.tool, ['-D', db, ...args]);
    t.not(r.status, 0, 'exits non-zero');
    t.regex(r.stderr, c.error);
    t.is(r.stdout, '', 'no report lines for a failed build');
    t.deepEqual(dirFiles(db), before, 'good database untouched');
    t.deepEqual(readdirSync(db).filter((f) => f.startsWith('.')), [], 'no temporary directory left');
  });
}

test('unknown two-letter code: documented warning, still written', (t) => {
  const { dir, db } = setup('warn');
  writeFileSync(join(dir, 'in.csv'), GOOD + '1.0.8.0,1.0.8.255,QQ\n1.0.9.0,1.0.9.255,qq\n');
  const r = runXtr('xt_geoip_build', ['-D', db, '-i', join(dir, 'in.csv')]);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stderr, /in\.csv:4: warning: unknown country code "QQ" \(not ISO 3166-1 nor a known special code\); writing QQ\.iv4\/QQ\.iv6 anyway/);
  t.is(r.stderr.match(/warning/g)?.length, 1, 'one warning per code');
  t.deepEqual([...dirFiles(db).get('QQ.iv4')!], [1, 0, 8, 0, 1, 0, 9, 255], 'lower-case qq merged into QQ');
});

test('missing target directory: upstream message', (t) => {
  const dir = tempDir('notarget');
  writeFileSync(join(dir, 'in.csv'), GOOD);
  const r = runXtr('xt_geoip_build', ['-D', join(dir, 'nope'), '-i', join(dir, 'in.csv')]);
  t.is(r.status, 1);
  t.regex(r.stderr, /Target directory ".*nope" does not exist\./);
});
