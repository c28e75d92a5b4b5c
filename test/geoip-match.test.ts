/**
 * `-m geoip` as an extension record: option parsing with upstream's errors,
 * save/print text, check against a database directory, per-packet matching
 * on IPv4 and IPv6, and reloads that switch every rule at once.
 */
import test from 'ava';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import geoip, { type GeoipParams } from '../modules/geoip.js';
import asn from '../modules/asn.js';
import { XtError, type ParsedOption, type RuleInfo } from '../xt/extension.js';
import { PacketContext } from '../xt/packet.js';
import { buildCountryDb, writeDatabase } from '../geoip-db/build.js';
import { openDatabases, reloadAll } from '../geoip-db/loader.js';
import { parseIPv4, parseIPv6, v6Words } from '../geoip-db/addr.js';
import { tempDir } from './fixtures/geoip/helpers.js';
import { makeEnv } from './fixtures/geoip/env.js';

const RULE4: RuleInfo = { family: 4, table: 'filter', chain: 'INPUT', proto: 0, protoInverted: false };
const opt = (name: string, value: string, inverted = false): ParsedOption => ({ name, value, inverted });

const CSV_V1 = [
  '1.0.0.0,1.0.0.255,AU',
  '1.0.1.0,1.0.3.255,CN',
  '5.0.0.0,5.0.0.255,DE',
  '9.0.0.0,9.0.0.255,NZ',
  '2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP',
  '2a00::,2a00:ff::,DE',
].join('\n');
const CSV_V2 = ['1.0.0.0,1.0.0.255,NZ', '5.0.0.0,5.0.0.127,AU', '5.0.0.128,5.0.0.255,DE', '2001:200::,2001:200::ffff,DE'].join('\n');

function makeDb(csv: string, dir = tempDir('geoip-db')): string {
  writeDatabase(dir, buildCountryDb([{ name: 'fixture.csv', text: csv }]).files);
  return dir;
}

function pkt4(src: string, dst = '9.9.9.9'): PacketContext {
  const p = new PacketContext();
  p.family = 4;
  p.src4 = parseIPv4(src);
  p.dst4 = parseIPv4(dst);
  return p;
}

function pkt6(src: string, dst = '2001:db8::9'): PacketContext {
  const p = new PacketContext();
  p.family = 6;
  v6Words(parseIPv6(src)!, p.src6);
  v6Words(parseIPv6(dst)!, p.dst6);
  return p;
}

const PARSE_OK: Array<[string, ParsedOption[], GeoipParams, string]> = [
  ['one source code', [opt('src-cc', 'de')], { codes: ['DE'], source: true, invert: false }, ' --source-country DE '],
  ['several, dedupe, upper-case', [opt('src-cc', 'de,FR,De,a1')], { codes: ['DE', 'FR', 'A1'], source: true, invert: false }, ' --source-country DE,FR,A1 '],
  ['destination, inverted', [opt('dst-cc', 'cn,ru', true)], { codes: ['CN', 'RU'], source: false, invert: true }, ' ! --destination-country CN,RU '],
  ['31 codes (3.24+ limit)', [opt('src-cc', Array.from({ length: 31 }, (_, i) => `A${i % 10}`).join(','))], { codes: Array.from({ length: 10 }, (_, i) => `A${i}`), source: true, invert: false }, ` --source-country ${Array.from({ length: 10 }, (_, i) => `A${i}`).join(',')} `],
];

for (const [name, opts, params, saved] of PARSE_OK) {
  test(`parse: ${name}`, (t) => {
    const p = geoip.parse(opts, RULE4);
    t.deepEqual(p, params);
    t.is(geoip.save(p), saved);
    t.is(geoip.print!(p), ` -m geoip${saved}`);
  });
}

const PARSE_ERR: Array<[string, ParsedOption[], string]> = [
  ['no option', [], 'geoip: missing arguments'],
  ['both directions', [opt('src-cc', 'DE'), opt('dst-cc', 'FR')], 'geoip: Only exactly one of --source-country or --destination-country must be specified!'],
  ['repeated', [opt('src-cc', 'DE'), opt('src-cc', 'FR')], 'geoip: Only exactly one of --source-country or --destination-country must be specified!'],
  ['three letters', [opt('src-cc', 'DEU')], "geoip: invalid country code 'DEU'"],
  ['one letter', [opt('src-cc', 'D')], "geoip: invalid country code 'D'"],
  ['punctuation', [opt('src-cc', 'D-')], "geoip: invalid country code 'D-'"],
  ['empty token', [opt('src-cc', 'DE,,FR')], "geoip: invalid country code ''"],
  ['trailing comma', [opt('src-cc', 'DE,')], "geoip: invalid country code ''"],
  ['32 codes', [opt('src-cc', Array.from({ length: 32 }, () => 'DE').join(','))], 'geoip: too many countries specified'],
];

for (const [name, opts, message] of PARSE_ERR) {
  test(`parse error: ${name}`, (t) => {
    const e = t.throws(() => geoip.parse(opts, RULE4), { instanceOf: XtError });
    t.is(e?.message, message);
    t.is((e as XtError).status, 2);
  });
}

test('record: name, revision, families, aliases', (t) => {
  t.is(geoip.kind, 'match');
  t.is(geoip.name, 'geoip');
  t.is(geoip.revision, 2);
  t.deepEqual(geoip.families, [4, 6]);
  t.deepEqual(geoip.options.map((o) => [o.name, o.aliases, o.invertible]), [
    ['src-cc', ['source-country'], true],
    ['dst-cc', ['destination-country'], true],
  ]);
});

test('match: IPv4 source and destination, several countries, inversion', (t) => {
  const dir = makeDb(CSV_V1);
  const env = makeEnv(4, { geoip: { dir } });
  const src = geoip.check(geoip.parse([opt('src-cc', 'au,de')], RULE4), env);
  const dst = geoip.check(geoip.parse([opt('dst-cc', 'CN', true)], RULE4), env);
  const table: Array<[string, string, boolean, boolean]> = [
    ['1.0.0.0', '9.9.9.9', true, true],
    ['1.0.0.255', '1.0.1.0', true, false],
    ['1.0.1.0', '1.0.3.255', false, false],
    ['5.0.0.77', '1.0.4.0', true, true],
    ['4.255.255.255', '0.0.0.0', false, true],
    ['255.255.255.255', '1.0.2.9', false, false],
  ];
  for (const [s, d, wantSrc, wantDst] of table) {
    t.is(src.match(pkt4(s, d)), wantSrc, `src ${s}`);
    t.is(dst.match(pkt4(s, d)), wantDst, `! dst CN ${d}`);
  }
  src.destroy!();
  dst.destroy!();
  t.is(env.state.entries.size, 0, 'last rule gone: database released');
});

test('match: IPv6 rule uses the .iv6 tables (128-bit compare)', (t) => {
  const dir = makeDb(CSV_V1);
  const env = makeEnv(6, { geoip: { dir } });
  const rule = geoip.check(geoip.parse([opt('src-cc', 'JP,DE')], { ...RULE4, family: 6 }), env);
  t.true(rule.match(pkt6('2001:200::')));
  t.true(rule.match(pkt6('2001:200:ffff:ffff:ffff:ffff:ffff:ffff')));
  t.false(rule.match(pkt6('2001:201::')));
  t.false(rule.match(pkt6('2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff')));
  t.true(rule.match(pkt6('2a00:ff::')));
  t.false(rule.match(pkt6('2a00:ff::1')));
  t.true(rule.match(pkt6('2a00:7f:8000::1')));
  rule.destroy!();
});

test('check: missing database file is an error naming the file; nothing stays acquired', (t) => {
  const dir = makeDb(CSV_V1);
  const env = makeEnv(4, { geoip: { dir } });
  const e = t.throws(() => geoip.check(geoip.parse([opt('src-cc', 'AU,XX')], RULE4), env), { instanceOf: XtError });
  t.is(e?.message, `Could not open ${join(dir, 'XX.iv4')}: No such file or directory: Could not read geoip database`);
  t.is((e as XtError).status, 1);
  t.is(env.state.entries.size, 0);
});

test('check: corrupted file (size not a multiple of 8) is refused', (t) => {
  const dir = makeDb(CSV_V1);
  writeFileSync(join(dir, 'ZZ.iv4'), Buffer.alloc(12));
  const env = makeEnv(4, { geoip: { dir } });
  const e = t.throws(() => geoip.check(geoip.parse([opt('src-cc', 'ZZ')], RULE4), env), { instanceOf: XtError });
  t.regex(e!.message, /Database file .*ZZ\.iv4 seems to be corrupted/);
});

test('check: default directory is /usr/share/xt_geoip; settings.geoip.dir overrides it', (t) => {
  const env = makeEnv(4, {});
  const e = t.throws(() => geoip.check(geoip.parse([opt('src-cc', 'Q9')], RULE4), env));
  t.regex(e!.message, /Could not open \/usr\/share\/xt_geoip\/Q9\.iv4/);
  const bad = makeEnv(4, { geoip: { dir: 42 } });
  t.throws(() => geoip.check(geoip.parse([opt('src-cc', 'DE')], RULE4), bad), { message: 'geoip: settings.geoip.dir must be a non-empty string' });
});

test('one table per (family, country) shared by all rules', (t) => {
  const dir = makeDb(CSV_V1);
  const env = makeEnv(4, { geoip: { dir } });
  const a = geoip.check(geoip.parse([opt('src-cc', 'DE,AU')], RULE4), env);
  const b = geoip.check(geoip.parse([opt('dst-cc', 'AU')], RULE4), env);
  const db = openDatabases().find((d) => d.dir === dir)!;
  t.is(db.size, 2, 'AU loaded once');
  a.destroy!();
  t.is(db.size, 1);
  t.true(b.match(pkt4('9.9.9.9', '1.0.0.1')));
  b.destroy!();
  t.is(db.size, 0);
});

test('reload: a rebuilt database switches every rule at once; a bad rebuild changes nothing', (t) => {
  const dir = makeDb(CSV_V1);
  const env = makeEnv(4, { geoip: { dir } });
  const au = geoip.check(geoip.parse([opt('src-cc', 'AU')], RULE4), env);
  const de = geoip.check(geoip.parse([opt('src-cc', 'DE')], RULE4), env);
  const nz = geoip.check(geoip.parse([opt('dst-cc', 'NZ')], RULE4), makeEnv(4, { geoip: { dir } }, env.state));
  const before = [au.match(pkt4('1.0.0.1')), de.match(pkt4('5.0.0.1')), au.match(pkt4('5.0.0.1')), nz.match(pkt4('0.0.0.1', '1.0.0.1'))];
  t.deepEqual(before, [true, true, false, false]);

  makeDb(CSV_V2, dir); // rebuilt on disk: nothing changes until reload (no per-packet file checks)
  t.deepEqual([au.match(pkt4('1.0.0.1')), de.match(pkt4('5.0.0.1'))], [true, true]);
  const reports = reloadAll().filter((r) => r.dir === dir);
  t.is(reports.length, 1);
  t.false('error' in reports[0]!);
  const after = [au.match(pkt4('1.0.0.1')), de.match(pkt4('5.0.0.1')), au.match(pkt4('5.0.0.1')), nz.match(pkt4('0.0.0.1', '1.0.0.1'))];
  t.deepEqual(after, [false, false, true, true]);

  writeFileSync(join(dir, 'DE.iv4'), Buffer.alloc(7)); // broken rebuild of one file
  const failed = reloadAll().find((r) => r.dir === dir)!;
  t.true('error' in failed && /DE\.iv4 seems to be corrupted/.test(failed.error));
  t.deepEqual([au.match(pkt4('5.0.0.1')), de.match(pkt4('5.0.0.200')), nz.match(pkt4('0.0.0.1', '1.0.0.1'))], [true, true, true], 'previous generation kept for all rules');
  for (const r of [au, de, nz]) r.destroy!();
});

test('the extension\'s reload (what SIGHUP and xtr reload-databases run): a JSON line per directory its rules hold, the same swap; asn\'s leaves geoip\'s alone', (t) => {
  const dir = makeDb(CSV_V1);
  const env = makeEnv(4, { geoip: { dir } });
  const au = geoip.check(geoip.parse([opt('src-cc', 'AU')], RULE4), env);
  t.true(au.match(pkt4('1.0.0.1')));
  makeDb(CSV_V2, dir);
  t.deepEqual(asn.reload!(env.state), [], 'asn holds no database here');
  t.true(au.match(pkt4('1.0.0.1')), 'untouched by asn\'s reload');
  const lines = geoip.reload!(env.state);
  t.is(lines.length, 1);
  const report = JSON.parse(lines[0]!);
  t.like(report, { dir, tables: 1 });
  t.true(au.match(pkt4('5.0.0.1')));
  t.false(au.match(pkt4('1.0.0.1')));
  writeFileSync(join(dir, 'AU.iv4'), Buffer.alloc(7));
  const failed = JSON.parse(geoip.reload!(env.state)[0]!);
  t.is(failed.dir, dir);
  t.regex(failed.error, /AU\.iv4 seems to be corrupted/);
  t.true(au.match(pkt4('5.0.0.1')), 'previous generation kept');
  au.destroy!();
  t.deepEqual(geoip.reload!(env.state), [], 'no rule left: nothing to reload');
});

test('a rule inserted after a rebuild reloads the whole directory (no stale copy, no mixed generations)', (t) => {
  const dir = makeDb(CSV_V1);
  const env = makeEnv(4, { geoip: { dir } });
  const old = geoip.check(geoip.parse([opt('src-cc', 'AU')], RULE4), env);
  t.true(old.match(pkt4('1.0.0.1')));
  makeDb(CSV_V2, dir);
  const fresh = geoip.check(geoip.parse([opt('src-cc', 'AU')], RULE4), env);
  t.true(fresh.match(pkt4('5.0.0.1')), 'new rule sees the rebuilt AU');
  t.true(old.match(pkt4('5.0.0.1')), 'and so does the old rule: one generation');
  t.false(old.match(pkt4('1.0.0.1')));
  old.destroy!();
  fresh.destroy!();
});

test('an empty country file is valid and never matches', (t) => {
  const dir = tempDir('geoip-empty');
  mkdirSync(join(dir, 'x'));
  writeFileSync(join(dir, 'x', 'EU.iv4'), Buffer.alloc(0));
  const env = makeEnv(4, { geoip: { dir: join(dir, 'x') } });
  const r = geoip.check(geoip.parse([opt('src-cc', 'EU')], RULE4), env);
  t.false(r.match(pkt4('1.2.3.4')));
  const inv = geoip.check(geoip.parse([opt('src-cc', 'EU', true)], RULE4), env);
  t.true(inv.match(pkt4('1.2.3.4')));
});
