/**
 * Real data nobody here wrote: the pinned ip-location-db DB-IP country CSV
 * and the same provider's .mmdb. xtr builds its tables from the CSV, and for
 * random IPv4 and IPv6 addresses (uniform, inside listed ranges, and at range
 * edges) its bisection lookup must agree with mmdb-lib's lookup in the .mmdb:
 * the country mmdb-lib names contains the address, and no other does.
 * Also: building from the .mmdb (tree walk) gives the same files as the CSV.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { Reader, type Response } from 'mmdb-lib';
import { buildCountryDb, type OutputFile } from '../geoip-db/build.js';
import { contains4, contains6, decodeTable } from '../geoip-db/loader.js';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6, v6Words } from '../geoip-db/addr.js';
import { ipLocationDb, prng, random128, random32 } from './fixtures/geoip/helpers.js';

/** Addresses per family: 50,000 here; the full check (npm run check:geoip-full) sets GEOIP_LOOKUPS=100000. */
const N = Number(process.env['GEOIP_LOOKUPS'] ?? 50_000);

const v4Text = readFileSync(ipLocationDb('dbip-country', 'dbip-country-ipv4.csv'), 'utf8');
const v6Text = readFileSync(ipLocationDb('dbip-country', 'dbip-country-ipv6.csv'), 'utf8');
const mmdbPath = ipLocationDb('dbip-country-mmdb', 'dbip-country.mmdb');

let built: OutputFile[] | undefined;
function csvBuild(): OutputFile[] {
  built ??= buildCountryDb([
    { name: 'dbip-country-ipv4.csv', text: v4Text },
    { name: 'dbip-country-ipv6.csv', text: v6Text },
  ]).files;
  return built;
}

function tables(files: OutputFile[], family: 4 | 6): Array<[string, Uint32Array]> {
  return files.filter((f) => f.name.endsWith(`.iv${family}`)).map((f) => [f.name.slice(0, 2), decodeTable(f.data, family, f.name)]);
}

function edgeOrInside<T>(rnd: () => number, lines: string[], parse: (s: string) => T, pick: (s: T, e: T, r: number) => T): T {
  const line = lines[Math.floor(rnd() * lines.length)]!;
  const [s, e] = line.split(',');
  return pick(parse(s!), parse(e!), rnd());
}

test('IPv4: xtr lookup in tables built from the CSV agrees with mmdb-lib on the .mmdb', (t) => {
  const reader = new Reader<Response>(readFileSync(mmdbPath));
  const all = tables(csvBuild(), 4);
  const byCode = new Map(all);
  const lines = v4Text.split('\n').filter(Boolean);
  const rnd = prng(1);
  let checked = 0;
  let found = 0;
  const bad: string[] = [];
  for (let i = 0; i < N; i++) {
    const a =
      i % 4 === 0
        ? random32(rnd)
        : edgeOrInside(rnd, lines, parseIPv4, (s, e, r) =>
            (r < 0.2 ? s : r < 0.4 ? e : r < 0.5 ? s - 1 : r < 0.6 ? e + 1 : s + Math.floor(rnd() * (e - s + 1))) >>> 0,
          );
    const text = formatIPv4(a);
    const want = (reader.get(text) as { country_code?: string } | null)?.country_code ?? null;
    const got = all.filter(([, tb]) => contains4(tb, a)).map(([cc]) => cc);
    if (want !== null) found++;
    if (got.length !== (want === null ? 0 : 1) || (want !== null && got[0] !== want)) {
      if (bad.length < 10) bad.push(`${text}: mmdb ${want} xtr ${got.join('+') || 'none'}`);
    }
    checked++;
    if (want !== null) t.true(byCode.has(want));
  }
  t.deepEqual(bad, [], `disagreements (first 10) among ${checked}`);
  t.true(found > N / 2, `most sampled addresses are in some country (${found}/${N})`);
});

test('IPv6: xtr lookup in tables built from the CSV agrees with mmdb-lib on the .mmdb', (t) => {
  const reader = new Reader<Response>(readFileSync(mmdbPath));
  const all = tables(csvBuild(), 6);
  const lines = v6Text.split('\n').filter(Boolean);
  const rnd = prng(2);
  const words = new Uint32Array(4);
  const MAX = (1n << 128n) - 1n;
  let found = 0;
  const bad: string[] = [];
  for (let i = 0; i < N; i++) {
    let a: bigint;
    if (i % 8 === 0) a = random128(rnd);
    else if (i % 8 === 1) a = (random128(rnd) >> 3n) | (1n << 125n); // 2000::/3, the allocated space
    else
      a = edgeOrInside(rnd, lines, (s) => parseIPv6(s)!, (s, e, r) => {
        if (r < 0.2) return s;
        if (r < 0.4) return e;
        if (r < 0.5) return s === 0n ? s : s - 1n;
        if (r < 0.6) return e === MAX ? e : e + 1n;
        return s + (random128(rnd) % (e - s + 1n));
      });
    // IPv4-compatible ::/96 is where the .mmdb keeps IPv4 data; the .iv6 files do not cover it
    if (a >> 32n === 0n) continue;
    const text = formatIPv6(a);
    const want = (reader.get(text) as { country_code?: string } | null)?.country_code ?? null;
    v6Words(a, words);
    const got = all.filter(([, tb]) => contains6(tb, words)).map(([cc]) => cc);
    if (want !== null) found++;
    if (got.length !== (want === null ? 0 : 1) || (want !== null && got[0] !== want)) {
      if (bad.length < 10) bad.push(`${text}: mmdb ${want} xtr ${got.join('+') || 'none'}`);
    }
  }
  t.deepEqual(bad, []);
  t.true(found > N / 2, `most sampled addresses are in some country (${found}/${N})`);
});

test('building from the .mmdb gives the same files as building from the CSV', (t) => {
  const fromMmdb = buildCountryDb([], [mmdbPath]).files;
  const fromCsv = csvBuild();
  t.deepEqual(
    fromMmdb.map((f) => f.name),
    fromCsv.map((f) => f.name),
  );
  const differing = fromCsv.filter((f, i) => !fromMmdb[i]!.data.equals(f.data)).map((f) => f.name);
  t.deepEqual(differing, []);
  t.deepEqual(
    fromMmdb.map((f) => f.report),
    fromCsv.map((f) => f.report),
  );
});
