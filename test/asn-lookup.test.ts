/**
 * The whole pinned ip-location-db ASN data set (IPv4 and IPv6) built by xtr;
 * random addresses looked up with xtr's bisection in the AS tables must agree
 * with an independent oracle that searches the CSV rows themselves (bigint
 * arithmetic on the text). No .mmdb of this provider's ASN data is published
 * on npm, so the oracle is the provider's CSV.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { buildAsnDb, type OutputFile } from '../geoip-db/build.js';
import { contains4, contains6, decodeTable } from '../geoip-db/loader.js';
import { parseIPv4, parseIPv6, v6Words } from '../geoip-db/addr.js';
import { ipLocationDb, prng, random128, random32 } from './fixtures/geoip/helpers.js';

const N = Number(process.env['GEOIP_LOOKUPS'] ?? 50_000);

interface Row {
  start: bigint;
  end: bigint;
  asn: string;
}

function oracleRows(text: string, v4: boolean): Row[] {
  const rows: Row[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [s, e, asn] = line.split(',');
    rows.push(v4 ? { start: BigInt(parseIPv4(s!)), end: BigInt(parseIPv4(e!)), asn: asn! } : { start: parseIPv6(s!)!, end: parseIPv6(e!)!, asn: asn! });
  }
  return rows.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}

/** AS numbers of every row containing a (rows sorted by start; a few may overlap). */
function oracle(rows: Row[], a: bigint): { asns: Set<string>; index: number } {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (rows[mid]!.start <= a) lo = mid + 1;
    else hi = mid;
  }
  const out = new Set<string>();
  for (let i = lo - 1; i >= 0 && i >= lo - 64; i--) if (rows[i]!.start <= a && a <= rows[i]!.end) out.add(rows[i]!.asn);
  return { asns: out, index: lo };
}

const v4Text = readFileSync(ipLocationDb('asn', 'asn-ipv4.csv'), 'utf8');
const v6Text = readFileSync(ipLocationDb('asn', 'asn-ipv6.csv'), 'utf8');
let files: Map<string, OutputFile> | undefined;
function built(): Map<string, OutputFile> {
  files ??= new Map(buildAsnDb([{ name: 'asn-ipv4.csv', text: v4Text }, { name: 'asn-ipv6.csv', text: v6Text }]).files.map((f) => [f.name, f]));
  return files;
}
const tableCache = new Map<string, Uint32Array>();
function table(asn: string, family: 4 | 6): Uint32Array | null {
  const name = `${asn}.iv${family}`;
  let t = tableCache.get(name);
  if (!t) {
    const f = built().get(name);
    if (!f) return null;
    t = decodeTable(f.data, family, name);
    tableCache.set(name, t);
  }
  return t;
}

for (const family of [4, 6] as const) {
  test(`IPv${family}: AS tables built from the full CSV agree with a row-scanning oracle`, (t) => {
    const rows = oracleRows(family === 4 ? v4Text : v6Text, family === 4);
    const rnd = prng(family * 7);
    const words = new Uint32Array(4);
    const bad: string[] = [];
    let hits = 0;
    for (let i = 0; i < N; i++) {
      let a: bigint;
      if (i % 4 === 0) a = family === 4 ? BigInt(random32(rnd)) : (random128(rnd) >> 3n) | (1n << 125n);
      else {
        const r = rows[Math.floor(rnd() * rows.length)]!;
        const k = rnd();
        a = k < 0.25 ? r.start : k < 0.5 ? r.end : k < 0.6 ? r.end + 1n : r.start + ((family === 4 ? BigInt(random32(rnd)) : random128(rnd)) % (r.end - r.start + 1n));
        if (family === 4 && a > 0xffffffffn) a = 0xffffffffn;
      }
      const { asns: want, index } = oracle(rows, a);
      if (want.size > 0) hits++;
      if (family === 6) v6Words(a, words);
      const has = (asn: string): boolean => {
        const tb = table(asn, family);
        return tb !== null && (family === 4 ? contains4(tb, Number(a)) : contains6(tb, words));
      };
      // every AS the oracle names contains a; the AS of neighbouring rows does not (unless named)
      for (const asn of want) if (!has(asn) && bad.length < 10) bad.push(`${a}: AS${asn} missing`);
      for (const other of rows.slice(Math.max(0, index - 3), index + 2).map((r) => r.asn)) {
        if (!want.has(other) && has(other) && bad.length < 10) bad.push(`${a}: AS${other} wrongly contains it`);
      }
    }
    t.deepEqual(bad, []);
    t.true(hits > N / 2, `${hits}/${N} addresses in some AS`);
  });
}
