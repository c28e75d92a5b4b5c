/**
 * GeoIP lookup benchmark on the pinned DB-IP country data (ip-location-db):
 *
 *  - lookups per second, random IPv4 and IPv6 addresses, for xtr's
 *    typed-array bisection (what one `-m geoip --src-cc CC` rule does per
 *    packet: is the address in CC's table) and for mmdb-lib's get() on the
 *    same provider's .mmdb (address -> record), measured in the same run;
 *  - load time and resident memory of the full country set (every .iv4/.iv6
 *    file), measured in a fresh child process so the builder's heap does not
 *    count, against the total size of the files.
 *
 * Last line: key=value pairs (lookups_per_s, mmdb_lookups_per_s,
 * ratio_vs_mmdb, load_s, rss_bytes, files_bytes, rss_ratio, ...).
 * Usage: node dist/bench/geoip.js [seconds per candidate] (default 2; four
 * candidates measured in interleaved 25 ms slices)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Reader, type Response } from 'mmdb-lib';
import { buildCountryDb, writeDatabase } from '../geoip-db/build.js';
import { contains4, contains6, loadDirectory } from '../geoip-db/loader.js';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6, v6Words } from '../geoip-db/addr.js';

const here = dirname(fileURLToPath(import.meta.url));
/** Repository root from bench/ (source via tsx) or dist/bench/ (built). */
const root = [join(here, '..'), join(here, '..', '..')].find((d) => {
  try {
    return statSync(join(d, 'node_modules', '@ip-location-db')).isDirectory();
  } catch {
    return false;
  }
});

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Child mode: load every table of `dir`, print load time and RSS growth as JSON. */
function loadChild(dir: string): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const rss0 = process.memoryUsage().rss;
  const names = readdirSync(dir);
  const t0 = process.hrtime.bigint();
  const tables = loadDirectory(dir, names);
  const loadS = Number(process.hrtime.bigint() - t0) / 1e9;
  gc?.();
  const rss1 = process.memoryUsage().rss;
  let words = 0;
  for (const t of tables.values()) words += t.length;
  process.stdout.write(JSON.stringify({ loadS, rssBytes: rss1 - rss0, tables: tables.size, tableBytes: words * 4 }) + '\n');
}

/** Runs fn (one batch of BATCH lookups) for about `seconds`; returns lookups and nanoseconds. */
function measure(seconds: number, fn: () => number): { ops: number; ns: number; sink: number } {
  let ops = 0;
  let sink = 0;
  const t0 = process.hrtime.bigint();
  const limit = BigInt(Math.round(seconds * 1e9));
  let now = t0;
  while (now - t0 < limit) {
    sink += fn();
    ops += BATCH;
    now = process.hrtime.bigint();
  }
  return { ops, ns: Number(now - t0), sink };
}

/**
 * Measures the candidates in short interleaved rounds so a change in machine
 * load (2 shared cores) hits all of them alike and the ratios stay fair.
 */
function interleaved(seconds: number, fns: Array<() => number>): number[] {
  const ops = fns.map(() => 0);
  const ns = fns.map(() => 0);
  const rounds = Math.max(1, Math.round(seconds / (0.025 * fns.length)));
  for (let r = 0; r < rounds; r++) {
    fns.forEach((fn, i) => {
      const m = measure(0.025, fn);
      ops[i]! += m.ops;
      ns[i]! += m.ns;
    });
  }
  return ops.map((o, i) => o / (ns[i]! / 1e9));
}

const BATCH = 4096;

function main(): void {
  if (process.argv[2] === '--load') return loadChild(process.argv[3]!);
  const seconds = Number(process.argv[2] ?? 2);
  if (!root) throw new Error('bench/geoip: @ip-location-db packages not installed (npm ci installs the dev dependencies)');
  const pkg = (p: string, f: string) => join(root, 'node_modules', '@ip-location-db', p, f);
  const v4Text = readFileSync(pkg('dbip-country', 'dbip-country-ipv4.csv'), 'utf8');
  const v6Text = readFileSync(pkg('dbip-country', 'dbip-country-ipv6.csv'), 'utf8');

  const dir = mkdtempSync(join(tmpdir(), 'xtr-bench-geoip-'));
  try {
    const tb = process.hrtime.bigint();
    const result = buildCountryDb([
      { name: 'dbip-country-ipv4.csv', text: v4Text },
      { name: 'dbip-country-ipv6.csv', text: v6Text },
    ]);
    writeDatabase(dir, result.files);
    const buildS = Number(process.hrtime.bigint() - tb) / 1e9;
    const filesBytes = result.files.reduce((n, f) => n + f.data.length, 0);

    const child = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, process.argv[1]!, '--load', dir], { encoding: 'utf8' });
    if (child.status !== 0) throw new Error(`load child failed: ${child.stderr}`);
    const load = JSON.parse(child.stdout.trim().split('\n').pop()!) as { loadS: number; rssBytes: number; tables: number; tableBytes: number };

    const tables = loadDirectory(dir, readdirSync(dir));
    const reader = new Reader<Response>(readFileSync(pkg('dbip-country-mmdb', 'dbip-country.mmdb')));

    // Addresses: half inside listed ranges, half uniform; each paired with a
    // country whose table is searched (the listed one or a random one).
    const rnd = rng(42);
    const codes = [...new Set(result.files.map((f) => f.name.slice(0, 2)))];
    const v4Lines = v4Text.split('\n').filter(Boolean);
    const v6Lines = v6Text.split('\n').filter(Boolean);
    const n = BATCH;
    const a4 = new Uint32Array(n);
    const t4: Uint32Array[] = [];
    const s4: string[] = [];
    const a6: Uint32Array[] = [];
    const t6: Uint32Array[] = [];
    const s6: string[] = [];
    for (let i = 0; i < n; i++) {
      const [s, e, cc] = v4Lines[Math.floor(rnd() * v4Lines.length)]!.split(',');
      const lo = parseIPv4(s!);
      const a = i % 2 === 0 ? lo + Math.floor(rnd() * (parseIPv4(e!) - lo + 1)) : Math.floor(rnd() * 2 ** 32);
      a4[i] = a;
      s4.push(formatIPv4(a));
      t4.push(tables.get(`${i % 2 === 0 ? cc : codes[Math.floor(rnd() * codes.length)]}.iv4`)!);
      const [s6t, e6t, cc6] = v6Lines[Math.floor(rnd() * v6Lines.length)]!.split(',');
      const lo6 = parseIPv6(s6t!)!;
      const span = parseIPv6(e6t!)! - lo6 + 1n;
      const rand128 = (BigInt(Math.floor(rnd() * 2 ** 32)) << 96n) | (BigInt(Math.floor(rnd() * 2 ** 32)) << 64n) | (BigInt(Math.floor(rnd() * 2 ** 32)) << 32n) | BigInt(Math.floor(rnd() * 2 ** 32));
      const v = i % 2 === 0 ? lo6 + (rand128 % span) : (rand128 >> 3n) | (1n << 125n);
      a6.push(v6Words(v));
      s6.push(formatIPv6(v));
      t6.push(tables.get(`${i % 2 === 0 ? cc6 : codes[Math.floor(rnd() * codes.length)]}.iv6`)!);
    }

    const xtr4 = () => {
      let hits = 0;
      for (let i = 0; i < n; i++) if (contains4(t4[i]!, a4[i]!)) hits++;
      return hits;
    };
    const xtr6 = () => {
      let hits = 0;
      for (let i = 0; i < n; i++) if (contains6(t6[i]!, a6[i]!)) hits++;
      return hits;
    };
    const mm4 = () => {
      let hits = 0;
      for (let i = 0; i < n; i++) if (reader.get(s4[i]!) !== null) hits++;
      return hits;
    };
    const mm6 = () => {
      let hits = 0;
      for (let i = 0; i < n; i++) if (reader.get(s6[i]!) !== null) hits++;
      return hits;
    };
    // warm-up so both sides run JIT-compiled code
    for (const f of [xtr4, xtr6, mm4, mm6]) measure(0.2, f);
    const [x4, x6, m4, m6] = interleaved(seconds * 4, [xtr4, xtr6, mm4, mm6]).map((perS) => ({ perS }));
    // harmonic mean of the two families: the rate of an even v4/v6 mix
    const mix = (a: number, b: number) => 2 / (1 / a + 1 / b);
    const xtr = mix(x4.perS, x6.perS);
    const mmdb = mix(m4.perS, m6.perS);
    const fmt = (v: number) => Math.round(v).toString();
    console.log(`build: ${result.entries} CSV rows -> ${result.files.length} files, ${filesBytes} bytes in ${buildS.toFixed(2)} s`);
    console.log(`xtr bisection: IPv4 ${fmt(x4.perS)}/s, IPv6 ${fmt(x6.perS)}/s (one country table per lookup, as a --src-cc rule)`);
    console.log(`mmdb-lib get(): IPv4 ${fmt(m4.perS)}/s, IPv6 ${fmt(m6.perS)}/s (address text -> record, its API)`);
    console.log(`load of all ${load.tables} tables: ${load.loadS.toFixed(3)} s, RSS +${load.rssBytes} bytes for ${filesBytes} bytes of files`);
    console.log(
      [
        `lookups_per_s=${fmt(xtr)}`,
        `v4_lookups_per_s=${fmt(x4.perS)}`,
        `v6_lookups_per_s=${fmt(x6.perS)}`,
        `mmdb_lookups_per_s=${fmt(mmdb)}`,
        `ratio_vs_mmdb=${(xtr / mmdb).toFixed(1)}`,
        `ratio_v4=${(x4.perS / m4.perS).toFixed(1)}`,
        `ratio_v6=${(x6.perS / m6.perS).toFixed(1)}`,
        `load_s=${load.loadS.toFixed(3)}`,
        `rss_bytes=${load.rssBytes}`,
        `files_bytes=${filesBytes}`,
        `rss_ratio=${(load.rssBytes / filesBytes).toFixed(2)}`,
        `tables=${load.tables}`,
        `build_s=${buildS.toFixed(2)}`,
      ].join(' '),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
