/**
 * The full GeoIP/ASN check (`npm run check:geoip-full`, not part of npm
 * test: minutes, not seconds). On the whole pinned ip-location-db data set:
 *
 *  1. xt_geoip_build vs the upstream Perl builder on the full DB-IP country
 *     CSV (IPv4 + IPv6): every output file and the stdout report identical;
 *  2. xt_asn_build -S vs the Perl xt_asn_build on the full ASN data turned
 *     into GeoLite2-ASN CSV (ranges split into CIDRs), and xt_asn_build -i on
 *     the original CSV: every file identical;
 *  3. the lookup agreement tests with 100,000 random IPv4 and IPv6 addresses
 *     (country vs mmdb-lib on the .mmdb; ASN vs the CSV row oracle).
 *
 * Ends with `N passed, N failed`.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatIPv6, parseIPv4, parseIPv6 } from './addr.js';
import { rangeToCidrs4, rangeToCidrs6 } from './ranges.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = (p: string, f: string) => join(root, 'node_modules', '@ip-location-db', p, f);
const perl = (tool: string) => join('/usr/libexec/xtables-addons', tool);
let passed = 0;
let failed = 0;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 30, env });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function result(name: string, ok: boolean, detail = ''): void {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok' : 'not ok'} - ${name}${detail ? `: ${detail}` : ''}`);
}

function compareDirs(a: string, b: string): string {
  const an = readdirSync(a).sort();
  const bn = readdirSync(b).sort();
  if (an.join('\n') !== bn.join('\n')) return `file lists differ (${an.length} vs ${bn.length})`;
  const diff = an.filter((n) => !readFileSync(join(a, n)).equals(readFileSync(join(b, n))));
  return diff.length === 0 ? '' : `${diff.length} files differ, e.g. ${diff.slice(0, 5).join(' ')}`;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'xtr-geoip-full-'));
  try {
    // 1. country
    const all = join(work, 'dbip-country.csv');
    writeFileSync(all, readFileSync(pkg('dbip-country', 'dbip-country-ipv4.csv'), 'utf8') + readFileSync(pkg('dbip-country', 'dbip-country-ipv6.csv'), 'utf8'));
    for (const d of ['perl', 'xtr']) mkdirSync(join(work, d));
    const t0 = Date.now();
    const p = run(perl('xt_geoip_build'), ['-D', join(work, 'perl'), '-i', all]);
    const t1 = Date.now();
    const x = run(join(root, 'scripts', 'xt_geoip_build'), ['-D', join(work, 'xtr'), '-i', all]);
    const t2 = Date.now();
    const cmp = compareDirs(join(work, 'perl'), join(work, 'xtr'));
    result(
      `xt_geoip_build full DB-IP country set identical to Perl (${readdirSync(join(work, 'perl')).length} files; Perl ${(t1 - t0) / 1000}s, xtr ${(t2 - t1) / 1000}s)`,
      p.status === 0 && x.status === 0 && cmp === '' && p.stdout === x.stdout,
      [p.stderr && p.status ? p.stderr : '', x.status ? x.stderr : '', cmp, p.stdout === x.stdout ? '' : 'stdout differs'].filter(Boolean).join('; '),
    );

    // 2. ASN
    const src = join(work, 'asn-src');
    mkdirSync(src);
    for (const [file, family] of [['asn-ipv4.csv', 4], ['asn-ipv6.csv', 6]] as const) {
      const out = createWriteStream(join(src, `GeoLite2-ASN-Blocks-IPv${family}.csv`));
      out.write('network,autonomous_system_number,autonomous_system_organization\n');
      for (const line of readFileSync(pkg('asn', file), 'utf8').split('\n')) {
        if (!line) continue;
        const m = /^([^,]+),([^,]+),(\d+),(.*)$/.exec(line)!;
        const cidrs =
          family === 4
            ? rangeToCidrs4(parseIPv4(m[1]!), parseIPv4(m[2]!))
            : rangeToCidrs6(parseIPv6(m[1]!)!, parseIPv6(m[2]!)!).map(([n, l]) => `${formatIPv6(n)}/${l}`);
        let chunk = '';
        for (const c of cidrs) chunk += `${c},${m[3]},${m[4]}\n`;
        if (!out.write(chunk)) await once(out, 'drain');
      }
      out.end();
      await once(out, 'finish');
    }
    for (const d of ['asn-perl', 'asn-xtr', 'asn-xtr-i']) mkdirSync(join(work, d));
    const a0 = Date.now();
    const ap = run(perl('xt_asn_build'), ['-S', src, '-D', join(work, 'asn-perl')]);
    const a1 = Date.now();
    const ax = run(join(root, 'scripts', 'xt_asn_build'), ['-S', src, '-D', join(work, 'asn-xtr')]);
    const a2 = Date.now();
    const ai = run(join(root, 'scripts', 'xt_asn_build'), ['-D', join(work, 'asn-xtr-i'), '-i', pkg('asn', 'asn-ipv4.csv'), '-i', pkg('asn', 'asn-ipv6.csv')]);
    const acmp = compareDirs(join(work, 'asn-perl'), join(work, 'asn-xtr'));
    result(
      `xt_asn_build -S full ASN set (as GeoLite2 CSV) identical to Perl (${readdirSync(join(work, 'asn-perl')).length} files; Perl ${(a1 - a0) / 1000}s, xtr ${(a2 - a1) / 1000}s)`,
      ap.status === 0 && ax.status === 0 && acmp === '' && ap.stdout === ax.stdout,
      [ap.status ? ap.stderr : '', ax.status ? ax.stderr : '', acmp, ap.stdout === ax.stdout ? '' : 'stdout differs'].filter(Boolean).join('; '),
    );
    const icmp = compareDirs(join(work, 'asn-perl'), join(work, 'asn-xtr-i'));
    result('xt_asn_build -i on the original ip-location-db CSV gives the same files', ai.status === 0 && icmp === '', ai.status ? ai.stderr : icmp);

    // 3. lookups, 100,000 addresses per family
    const ava = run(
      process.execPath,
      [join(root, 'node_modules', 'ava', 'entrypoints', 'cli.mjs'), '--tap', 'test/geoip-mmdb.test.ts', 'test/asn-lookup.test.ts'],
      { ...process.env, GEOIP_LOOKUPS: '100000' },
    );
    const okCount = (ava.stdout.match(/^ok \d+/gm) ?? []).length;
    const notOk = (ava.stdout.match(/^not ok \d+/gm) ?? []).length;
    result(`lookup agreement with 100,000 IPv4 + 100,000 IPv6 addresses (${okCount} tests passed)`, ava.status === 0 && notOk === 0 && okCount > 0, ava.status ? ava.stdout.slice(-2000) : '');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

await main();
