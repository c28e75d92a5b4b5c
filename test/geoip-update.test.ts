/**
 * The GeoIP data lifecycle (issue 13, item 7): xt_geoip_dl / xt_geoip_dl_maxmind
 * / xt_asn_dl and the xt_geoip_update loop against a local HTTP server serving
 * the fixtures of test/fixtures/geoip-update (test/helpers/fixture-http.ts: ETag,
 * Last-Modified, 304, MaxMind's licence-key URL).
 *
 * - Loopback (127.0.0.1, ephemeral port): the download tools write upstream's
 *   file names and layout; DB-IP's previous-month fallback; licence keys from a
 *   file or the environment and never printed; the update builds what
 *   xt_geoip_build builds; an unchanged remote (304, or a new ETag over the same
 *   bytes) does not rebuild; every kind of bad download (truncated gzip, an HTML
 *   page, empty CSV, unparsable rows, a truncated or corrupted zip) exits 1 and
 *   leaves the directory byte for byte as it was; the --frequency loop; --pid-file.
 * - Lab: the server runs in the lab's server namespace, the tool in the monitor
 *   namespace (its download crosses the router), and a running router with
 *   `-m geoip --src-cc FR -j DROP` follows the swapped-in data: the client's
 *   ping passes while its network is DE and is dropped (rule counters move) once
 *   the update moved it to FR; a corrupt download afterwards changes nothing.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { readZip, safeMemberPath, ZipError } from '../geoip-db/zip.js';
import { serveFixtures, type FixtureServer } from './helpers/fixture-http.js';
import { REPO_ROOT, startLab, uniquePrefix, waitFor } from './helpers/netns.js';

const FIX = join(REPO_ROOT, 'test', 'fixtures', 'geoip-update');
const work = mkdtempSync(join(tmpdir(), 'yg-geoip-update-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

const fixture = (name: string) => readFileSync(join(FIX, name), 'utf8');

function month(offset = 0): string {
  const now = new Date();
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1));
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a tool asynchronously: the fixture server answers from this same process. */
function tool(name: string, args: readonly string[], env: Record<string, string> = {}, input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(join(REPO_ROOT, 'scripts', name), args, {
      cwd: work,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, MAXMIND_LICENSE_KEY: '', MAXMIND_LICENSE_KEY_FILE: '', XTR_SOCKET: join(work, 'no-router.sock'), ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
    child.stdin.end(input ?? '');
  });
}

/** A real zip (Python's zipfile, deflated), so the reader is checked against another writer. */
function makeZip(members: Record<string, string>): Buffer {
  const script = 'import io,json,sys,zipfile\nb=io.BytesIO()\nz=zipfile.ZipFile(b,"w",zipfile.ZIP_DEFLATED)\nfor k,v in json.load(sys.stdin).items(): z.writestr(k,v)\nz.close()\nsys.stdout.buffer.write(b.getvalue())\n';
  const r = spawnSync('python3', ['-c', script], { input: JSON.stringify(members), maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`python3 zipfile: ${r.stderr}`);
  return r.stdout;
}

const COUNTRY_FILES = ['GeoLite2-Country-Locations-en.csv', 'GeoLite2-Country-Blocks-IPv4.csv', 'GeoLite2-Country-Blocks-IPv6.csv'];
const ASN_FILES = ['GeoLite2-ASN-Blocks-IPv4.csv', 'GeoLite2-ASN-Blocks-IPv6.csv'];
function editionZip(edition: string, date: string, files: readonly string[]): Buffer {
  return makeZip(Object.fromEntries([...files.map((f) => [`${edition}_${date}/${f}`, fixture(f)]), [`${edition}_${date}/LICENSE.txt`, 'fixture\n']]));
}

/** A served tree: DIR/free/<DB-IP files>, DIR/app/<edition>.zip, DIR/license.key. */
function serveDir(tag: string): string {
  const dir = join(work, `srv-${tag}`);
  mkdirSync(join(dir, 'free'), { recursive: true });
  mkdirSync(join(dir, 'app'), { recursive: true });
  writeFileSync(join(dir, 'license.key'), 'fixture-licence-0123\n');
  return dir;
}

function put(dir: string, rel: string, data: Buffer | string): void {
  writeFileSync(join(dir, rel), data);
}

/** Every file of a directory (including the state file) as name -> bytes and mtime. */
function snapshot(dir: string): Map<string, { bytes: string; mtimeMs: number }> {
  const out = new Map<string, { bytes: string; mtimeMs: number }>();
  for (const f of readdirSync(dir).sort()) out.set(f, { bytes: readFileSync(join(dir, f)).toString('hex'), mtimeMs: statSync(join(dir, f)).mtimeMs });
  return out;
}

async function withServer<T>(dir: string, fn: (s: FixtureServer) => Promise<T> | T): Promise<T> {
  const s = await serveFixtures(dir);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

// ---------------------------------------------------------------------------
// The zip reader against Python's zipfile: stored, deflated, streamed (data descriptors).

test('readZip: stored, deflated and streamed members; directories skipped; unsafe names flagged', (t) => {
  const members = { 'E_1/a.csv': 'x,y\n'.repeat(500), 'E_1/sub/b.csv': 'b\n', 'E_1/empty.csv': '' };
  const py = (mode: string, seekable: boolean) => {
    const script = `import io,json,sys,zipfile\nm=json.load(sys.stdin)\nout=io.BytesIO() if ${seekable ? 'True' : 'False'} else sys.stdout.buffer\nz=zipfile.ZipFile(out,"w",zipfile.${mode})\nz.writestr("E_1/",b"")\nfor k,v in m.items(): z.writestr(k,v)\nz.close()\nif ${seekable ? 'True' : 'False'}: sys.stdout.buffer.write(out.getvalue())\n`;
    const r = spawnSync('python3', ['-c', script], { input: JSON.stringify(members) });
    if (r.status !== 0) throw new Error(String(r.stderr));
    return r.stdout;
  };
  for (const [name, bytes] of [
    ['stored', py('ZIP_STORED', true)],
    ['deflated', py('ZIP_DEFLATED', true)],
    ['streamed (data descriptors)', py('ZIP_DEFLATED', false)],
  ] as const) {
    const got = readZip(bytes);
    t.deepEqual(
      got.map((m) => [m.name, m.data.toString()]),
      Object.entries(members),
      name,
    );
  }
  t.throws(() => readZip(Buffer.from('PK\x03\x04 nothing else')), { instanceOf: ZipError });
  for (const bad of ['../x.csv', '/etc/passwd', 'a/../../b', 'a//b', 'a\\b']) t.false(safeMemberPath(bad), bad);
  t.true(safeMemberPath('GeoLite2-ASN-CSV_20261201/GeoLite2-ASN-Blocks-IPv4.csv'));
});

// ---------------------------------------------------------------------------
// The download tools.

test('xt_geoip_dl: this month\'s DB-IP file as dbip-country-lite.csv; last month\'s when this one is missing; neither: exit 1', async (t) => {
  const srv = serveDir('dl');
  const out = join(work, 'dl-out');
  mkdirSync(out);
  await withServer(srv, async (s) => {
    put(srv, `free/dbip-country-lite-${month()}.csv.gz`, gzipSync(fixture('country-v2.csv')));
    put(srv, `free/dbip-country-lite-${month(-1)}.csv.gz`, gzipSync(fixture('country-v1.csv')));
    let r = await tool('xt_geoip_dl', ['-D', out, '--base-url', `${s.base}/free`]);
    t.is(r.status, 0, r.stderr);
    t.is(readFileSync(join(out, 'dbip-country-lite.csv'), 'utf8'), fixture('country-v2.csv'));
    t.regex(r.stdout, new RegExp(`^dbip-country-lite\\.csv: 8 rows from .*dbip-country-lite-${month()}\\.csv\\.gz\\n$`));
    rmSync(join(srv, `free/dbip-country-lite-${month()}.csv.gz`));
    r = await tool('xt_geoip_dl', ['-q', '-D', out, '--base-url', `${s.base}/free`]);
    t.is(r.status, 0, r.stderr);
    t.is(r.stdout, '', '-q: no report');
    t.is(readFileSync(join(out, 'dbip-country-lite.csv'), 'utf8'), fixture('country-v1.csv'), 'fell back to last month');
    t.deepEqual(s.requests.slice(-2), [`GET /free/dbip-country-lite-${month()}.csv.gz 404`, `GET /free/dbip-country-lite-${month(-1)}.csv.gz 200`]);
    rmSync(join(srv, `free/dbip-country-lite-${month(-1)}.csv.gz`));
    r = await tool('xt_geoip_dl', ['-D', out, '--base-url', `${s.base}/free`]);
    t.is(r.status, 1);
    t.regex(r.stderr, /^xt_geoip_dl: not found: .*-\d{4}-\d\d\.csv\.gz \(HTTP 404\), .*\(HTTP 404\)\n$/);
    t.is(readFileSync(join(out, 'dbip-country-lite.csv'), 'utf8'), fixture('country-v1.csv'), 'a failed download leaves the previous file');
    // The default directory is the current one, as upstream's (which writes where it runs).
    put(srv, 'free/exact.csv.gz', gzipSync(fixture('country-v1.csv')));
    r = await tool('xt_geoip_dl', ['--url', `${s.base}/free/exact.csv.gz`]);
    t.is(r.status, 0, r.stderr);
    t.true(existsSync(join(work, 'dbip-country-lite.csv')));
    rmSync(join(work, 'dbip-country-lite.csv'));
  });
  // Then xt_geoip_build takes it from there, as upstream's pair.
  const db = join(work, 'dl-db');
  mkdirSync(db);
  const b = spawnSync(join(REPO_ROOT, 'scripts', 'xt_geoip_build'), ['-q', '-D', db], { cwd: out, encoding: 'utf8' });
  t.is(b.status, 0, b.stderr);
  t.deepEqual(readdirSync(db).sort(), ['DE.iv4', 'DE.iv6', 'FR.iv4', 'FR.iv6', 'NL.iv4', 'NL.iv6', 'US.iv4', 'US.iv6']);
});

test('xt_geoip_dl_maxmind and xt_asn_dl: upstream\'s GeoLite2-*-CSV_<date>/ layout, the key from a file or the environment, never printed', async (t) => {
  const srv = serveDir('mm');
  const key = 'fixture-licence-0123';
  const keyFile = join(work, 'licence.key');
  writeFileSync(keyFile, `${key}\n`);
  const out = join(work, 'mm-out');
  mkdirSync(out);
  await withServer(srv, async (s) => {
    put(srv, 'app/GeoLite2-Country-CSV.zip', editionZip('GeoLite2-Country-CSV', '20261201', COUNTRY_FILES));
    put(srv, 'app/GeoLite2-ASN-CSV.zip', editionZip('GeoLite2-ASN-CSV', '20261201', ASN_FILES));
    put(srv, `free/dbip-asn-lite-${month()}.csv.gz`, gzipSync(fixture('asn.csv')));
    mkdirSync(join(out, 'GeoLite2-Country-CSV_20250101'));
    const runs: Run[] = [];
    // Upstream's form: the key file as the operand.
    let r = await tool('xt_geoip_dl_maxmind', ['-D', out, '--base-url', s.base, keyFile]);
    runs.push(r);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /^GeoLite2-Country-CSV_20261201\/: 4 files from http:\/\/127\.0\.0\.1:\d+\/app\/geoip_download\?edition_id=GeoLite2-Country-CSV&license_key=\*\*\*&suffix=zip\n$/);
    t.deepEqual(readdirSync(out).sort(), ['GeoLite2-Country-CSV_20261201'], 'older GeoLite2-Country-CSV_* removed, as upstream');
    for (const f of COUNTRY_FILES) t.is(readFileSync(join(out, 'GeoLite2-Country-CSV_20261201', f), 'utf8'), fixture(f));
    // --license-key-file, and the key in the environment.
    r = await tool('xt_geoip_dl_maxmind', ['-q', '-D', out, '--base-url', s.base, '--license-key-file', keyFile]);
    runs.push(r);
    t.is(r.status, 0, r.stderr);
    r = await tool('xt_geoip_dl_maxmind', ['-q', '-D', out, '--base-url', s.base], { MAXMIND_LICENSE_KEY: key });
    runs.push(r);
    t.is(r.status, 0, r.stderr);
    // stdin, as upstream without an argument.
    r = await tool('xt_geoip_dl_maxmind', ['-q', '-D', out, '--base-url', s.base], {}, `${key}\n`);
    runs.push(r);
    t.is(r.status, 0, r.stderr);
    // The unpacked directory is what xt_geoip_build_maxmind reads.
    const db = join(work, 'mm-db');
    mkdirSync(db);
    const b = spawnSync(join(REPO_ROOT, 'scripts', 'xt_geoip_build_maxmind'), ['-S', join(out, 'GeoLite2-Country-CSV_20261201'), '-D', db], { encoding: 'utf8' });
    t.is(b.status, 0, b.stderr);
    t.regex(b.stdout, /1 IPv4 ranges for DE Germany/);
    // A refused key: exit 1, and neither the wrong nor the right key shows up.
    writeFileSync(join(work, 'wrong.key'), 'not-the-key\n');
    r = await tool('xt_geoip_dl_maxmind', ['-D', out, '--base-url', s.base, join(work, 'wrong.key')]);
    runs.push(r);
    t.is(r.status, 1);
    t.regex(r.stderr, /HTTP 401 Unauthorized \(licence key refused\?\)/);
    for (const x of runs) {
      t.false(`${x.stdout}${x.stderr}`.includes(key), 'the licence key is never printed');
      t.false(`${x.stdout}${x.stderr}`.includes('not-the-key'));
    }
    // No key at all: a usage error naming where a key comes from.
    r = await tool('xt_geoip_dl_maxmind', ['-D', out, '--base-url', s.base]);
    t.is(r.status, 2);
    t.regex(r.stderr, /no MaxMind licence key: give a key file \(--license-key-file FILE\)/);

    // xt_asn_dl: DB-IP's ASN lite without a key, GeoLite2-ASN-CSV with one.
    r = await tool('xt_asn_dl', ['-D', out, '--base-url', `${s.base}/free`]);
    t.is(r.status, 0, r.stderr);
    t.is(readFileSync(join(out, 'dbip-asn-lite.csv'), 'utf8'), fixture('asn.csv'));
    r = await tool('xt_asn_dl', ['-D', out, '--base-url', s.base, keyFile]);
    t.is(r.status, 0, r.stderr);
    t.false(r.stdout.includes(key));
    t.is(readFileSync(join(out, 'GeoLite2-ASN-CSV_20261201', 'GeoLite2-ASN-Blocks-IPv4.csv'), 'utf8'), fixture('GeoLite2-ASN-Blocks-IPv4.csv'));
    const asnDb = join(work, 'mm-asn');
    mkdirSync(asnDb);
    const a = spawnSync(join(REPO_ROOT, 'scripts', 'xt_asn_build'), ['-q', '-S', join(out, 'GeoLite2-ASN-CSV_20261201'), '-D', asnDb], { encoding: 'utf8' });
    t.is(a.status, 0, a.stderr);
    t.deepEqual(readdirSync(asnDb).sort(), ['64500.iv4', '64500.iv6']);
  });
});

// ---------------------------------------------------------------------------
// The update loop, on loopback.

test('xt_geoip_update: builds what xt_geoip_build builds; 304 and same-SHA-256 do not rebuild; -f does', async (t) => {
  const srv = serveDir('up');
  const db = join(work, 'up-db');
  mkdirSync(db);
  const file = `free/dbip-country-lite-${month()}.csv.gz`;
  await withServer(srv, async (s) => {
    const args = ['-D', db, '--base-url', `${s.base}/free`, '--no-reload'];
    put(srv, file, gzipSync(fixture('country-v1.csv')));
    let r = await tool('xt_geoip_update', args);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /: updated from http:\/\/127\.0\.0\.1:\d+\/free\/dbip-country-lite-\d{4}-\d\d\.csv\.gz \(SHA-256 [0-9a-f]{12}\): 8 rows, 8 files, build 1; no reload \(--no-reload\)\n$/);
    // Byte for byte what the builder tool makes of the same CSV.
    const ref = join(work, 'up-ref');
    mkdirSync(ref);
    const b = spawnSync(join(REPO_ROOT, 'scripts', 'xt_geoip_build'), ['-q', '-D', ref, '-i', join(FIX, 'country-v1.csv')], { encoding: 'utf8' });
    t.is(b.status, 0, b.stderr);
    for (const f of readdirSync(ref)) t.deepEqual(readFileSync(join(db, f)), readFileSync(join(ref, f)), f);
    const state = JSON.parse(readFileSync(join(db, '.xt_geoip_update.json'), 'utf8')) as { builds: number; etag: string; sha256: string };
    t.is(state.builds, 1);
    t.regex(state.etag, /^"[0-9a-f]{16}"$/);

    // Unchanged remote, conditional GET: 304, nothing rebuilt.
    const before = snapshot(db);
    r = await tool('xt_geoip_update', args);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /: unchanged \(.*: 304 Not Modified\), no rebuild\n$/);
    t.is(s.requests.at(-1), `GET /${file} 304`);
    const after304 = snapshot(db);
    for (const [f, v] of before) if (f !== '.xt_geoip_update.json') t.deepEqual(after304.get(f), v, `${f} untouched`);
    t.is((JSON.parse(readFileSync(join(db, '.xt_geoip_update.json'), 'utf8')) as { builds: number }).builds, 1);

    // A server that ignores validators: the same bytes (same SHA-256) are not rebuilt either.
    s.conditional = false;
    r = await tool('xt_geoip_update', args);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /: unchanged \(.*: same SHA-256 [0-9a-f]{12}\), no rebuild\n$/);
    t.is(s.requests.at(-1), `GET /${file} 200`);
    const afterSame = snapshot(db);
    for (const [f, v] of before) if (f !== '.xt_geoip_update.json') t.deepEqual(afterSame.get(f), v, `${f} untouched`);

    // -f rebuilds anyway; -q prints nothing.
    r = await tool('xt_geoip_update', ['-f', '-q', ...args]);
    t.is(r.status, 0, r.stderr);
    t.is(r.stdout, '');
    t.is((JSON.parse(readFileSync(join(db, '.xt_geoip_update.json'), 'utf8')) as { builds: number }).builds, 2);

    // New data: rebuilt, the client network moved from DE to FR.
    s.conditional = true;
    put(srv, file, gzipSync(fixture('country-v2.csv')));
    r = await tool('xt_geoip_update', args);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /8 rows, 6 files, 2 files of vanished codes emptied, build 3;/);
    t.is(readFileSync(join(db, 'DE.iv4')).length, 0, 'DE vanished from the data: no stale ranges');
    const q = spawnSync(join(REPO_ROOT, 'scripts', 'xt_geoip_query'), ['-D', db, '-4', 'FR'], { encoding: 'utf8' });
    t.is(q.stdout, '100.64.0.0-100.64.0.255\n198.51.100.0-198.51.100.255\n');
  });
});

interface BadCase {
  name: string;
  source: 'dbip-country' | 'maxmind-country';
  body: () => Buffer | string;
  /** Served under this name (an .html name is served as text/html). */
  as?: string;
  error: RegExp;
}

const GOOD_ZIP = () => editionZip('GeoLite2-Country-CSV', '20261201', COUNTRY_FILES);
const BAD_CASES: BadCase[] = [
  { name: 'truncated gzip', source: 'dbip-country', body: () => gzipSync(fixture('country-v2.csv')).subarray(0, 40), error: /corrupt gzip data \(unexpected end of file\)/ },
  { name: 'an HTML error page (200, text/html)', source: 'dbip-country', as: 'page.html', body: () => '<!DOCTYPE html><html><body>Rate limit exceeded</body></html>\n', error: /not gzip data \(an HTML page\)/ },
  { name: 'a gzipped HTML page', source: 'dbip-country', body: () => gzipSync('<html><body>maintenance</body></html>\n'), error: /an HTML page, not CSV/ },
  { name: 'empty CSV', source: 'dbip-country', body: () => gzipSync(''), error: /empty CSV \(no rows\)/ },
  { name: 'an empty body', source: 'dbip-country', body: () => '', error: /not gzip data \(empty\)/ },
  { name: 'an unparsable row', source: 'dbip-country', body: () => gzipSync(`${fixture('country-v2.csv')}1.2.3.4,not-an-address,DE\n`), error: /:9: .*not-an-address/ },
  { name: 'a header line', source: 'dbip-country', body: () => gzipSync(`ip_start,ip_end,country\n${fixture('country-v2.csv')}`), error: /:1: this looks like a header line/ },
  { name: 'truncated zip', source: 'maxmind-country', body: () => GOOD_ZIP().subarray(0, 200), error: /not a zip archive, or truncated|truncated/ },
  {
    name: 'zip with a flipped byte (CRC-32)',
    source: 'maxmind-country',
    body: () => {
      const z = Buffer.from(GOOD_ZIP());
      const data = 30 + z.readUInt16LE(26) + z.readUInt16LE(28); // the first member's compressed data
      z[data + 5] = z[data + 5]! ^ 0xff;
      return z;
    },
    error: /CRC-32 mismatch|corrupt compressed data|size \d+ does not match/,
  },
  { name: 'zip without the Locations file', source: 'maxmind-country', body: () => makeZip({ 'GeoLite2-Country-CSV_20261201/GeoLite2-Country-Blocks-IPv4.csv': fixture('GeoLite2-Country-Blocks-IPv4.csv') }), error: /GeoLite2-Country-Locations-en\.csv is not in the archive/ },
];

test('xt_geoip_update: a bad download exits 1 with a clear message and leaves the database and its state byte for byte', async (t) => {
  const srv = serveDir('bad');
  await withServer(srv, async (s) => {
    for (const c of BAD_CASES) {
      const db = join(work, `bad-db-${c.source}`);
      mkdirSync(db, { recursive: true });
      const base = c.source === 'dbip-country' ? ['--base-url', `${s.base}/free`] : ['--base-url', s.base, '--license-key-file', join(srv, 'license.key')];
      const args = ['-D', db, '--source', c.source, '--no-reload'];
      // A good first build.
      put(srv, `free/dbip-country-lite-${month()}.csv.gz`, gzipSync(fixture('country-v1.csv')));
      put(srv, 'app/GeoLite2-Country-CSV.zip', GOOD_ZIP());
      const ok = await tool('xt_geoip_update', [...args, ...base]);
      t.is(ok.status, 0, `${c.name}: first build: ${ok.stderr}`);
      const before = snapshot(db);
      // Then the bad one, under the same URL (or, for the HTML page, as the exact --url).
      const target = c.as ? `free/${c.as}` : c.source === 'dbip-country' ? `free/dbip-country-lite-${month()}.csv.gz` : 'app/GeoLite2-Country-CSV.zip';
      put(srv, target, c.body());
      const r = await tool('xt_geoip_update', [...args, ...(c.as ? ['--url', `${s.base}/${target}`] : base)]);
      t.is(r.status, 1, `${c.name}: ${r.stdout}${r.stderr}`);
      t.regex(r.stderr, c.error, c.name);
      t.regex(r.stderr, /^xt_geoip_update: .*; the database was left as it was\n$/, c.name);
      t.notRegex(r.stderr, /\n\s+at /, `${c.name}: no stack trace`);
      t.deepEqual(snapshot(db), before, `${c.name}: the directory is as it was`);
      t.deepEqual(readdirSync(db).filter((f) => f.startsWith('.xt-')), [], `${c.name}: no temporary directory left`);
    }
  });
});

test('xt_geoip_update --frequency: checks again and again, rebuilds only on change, ends on SIGTERM', async (t) => {
  const srv = serveDir('loop');
  const db = join(work, 'loop-db');
  mkdirSync(db);
  const file = `free/dbip-country-lite-${month()}.csv.gz`;
  put(srv, file, gzipSync(fixture('country-v1.csv')));
  await withServer(srv, async (s) => {
    const child = spawn(join(REPO_ROOT, 'scripts', 'xt_geoip_update'), ['-D', db, '--base-url', `${s.base}/free`, '--no-reload', '--frequency', '1s'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, XTR_SOCKET: join(work, 'no-router.sock') },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    try {
      t.true(await waitFor(() => /unchanged/.test(out), 30_000), out + err);
      put(srv, file, gzipSync('garbage that is not csv'));
      t.true(await waitFor(() => /left as it was; next check in 1s/.test(err), 30_000), out + err);
      put(srv, file, gzipSync(fixture('country-v2.csv')));
      t.true(await waitFor(() => /build 2;/.test(out), 30_000), out + err);
    } finally {
      child.kill('SIGTERM');
    }
    t.is(await exited, 0, 'SIGTERM ends the loop with status 0');
    const lines = out.trim().split('\n');
    t.regex(lines[0]!, /^\d{4}-\d\d-\d\dT[\d:.]+Z .*: updated from .* build 1;/);
    t.regex(lines[1]!, /unchanged \(.*304 Not Modified\), no rebuild/);
    t.is(lines.filter((l) => /updated from/.test(l)).length, 2, 'two builds: the first data and the change');
    t.is(spawnSync(join(REPO_ROOT, 'scripts', 'xt_geoip_query'), ['-D', db, '-4', 'DE'], { encoding: 'utf8' }).stdout, '', 'the client network is FR now');
  });
});

test('xt_geoip_update --pid-file: SIGHUP to the named process after the swap, not after a failed check', async (t) => {
  const srv = serveDir('hup');
  const db = join(work, 'hup-db');
  mkdirSync(db);
  const file = `free/dbip-country-lite-${month()}.csv.gz`;
  const listener = spawn(process.execPath, ['-e', 'let n=0;process.on("SIGHUP",()=>console.log("HUP "+(++n)));setInterval(()=>{},1000);console.log("ready")'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  listener.stdout.on('data', (c: Buffer) => (out += c.toString()));
  try {
    t.true(await waitFor(() => out.includes('ready'), 30_000), `listener: exit ${listener.exitCode}`);
    const pidFile = join(work, 'router.pid');
    writeFileSync(pidFile, `${listener.pid}\n`);
    await withServer(srv, async (s) => {
      const args = ['-D', db, '--base-url', `${s.base}/free`, '--pid-file', pidFile];
      put(srv, file, gzipSync(fixture('country-v1.csv')));
      let r = await tool('xt_geoip_update', args);
      t.is(r.status, 0, r.stderr);
      t.regex(r.stdout, new RegExp(`SIGHUP sent to pid ${listener.pid}\\n$`));
      t.true(await waitFor(() => out.includes('HUP 1'), 10_000), out);
      put(srv, file, gzipSync(fixture('country-v1.csv')).subarray(0, 30));
      r = await tool('xt_geoip_update', args);
      t.is(r.status, 1);
      // New data but no process to tell: the files are swapped, the exit status says the router was not told.
      put(srv, file, gzipSync(fixture('country-v2.csv')));
      r = await tool('xt_geoip_update', [...args.slice(0, 4), '--pid-file', join(work, 'no-such.pid')]);
      t.is(r.status, 1, 'unreadable pid file');
      t.regex(r.stderr, /files updated, but the pid file .*no-such\.pid cannot be read \(ENOENT\): the router still runs the previous database\n$/);
    });
    await new Promise((r) => setTimeout(r, 300));
    t.false(out.includes('HUP 2'), 'no signal after a failed check');
  } finally {
    listener.kill('SIGKILL');
  }
});

// ---------------------------------------------------------------------------
// The lab: a running router follows the update.

test.serial('lab: xt_geoip_update from a server in a namespace swaps the database in and the geoip rules follow; 304 and a corrupt download change nothing', async (t) => {
  const served = join(work, 'lab-srv');
  mkdirSync(join(served, 'free'), { recursive: true });
  const db = join(work, 'lab-db');
  mkdirSync(db);
  const file = join(served, 'free', `dbip-country-lite-${month()}.csv.gz`);
  writeFileSync(file, gzipSync(fixture('country-v1.csv')));
  const lab = await startLab({
    prefix: uniquePrefix('yg'),
    patch: (doc) => {
      doc.extensions = { ...(doc.extensions as object), geoip: { dir: db } };
    },
  });
  try {
    const server = lab.background('s', [process.execPath, '--import', `file://${REPO_ROOT}/node_modules/tsx/dist/loader.mjs`, join(REPO_ROOT, 'test', 'helpers', 'fixture-http.ts'), served, '203.0.113.2', '8080']);
    t.true(await waitFor(() => server.stdout().toString().includes('listening 8080'), 20_000), server.stderr());
    // The tool runs in the monitor namespace (NL): its download crosses the router.
    const update = () => lab.exec('m', [join(REPO_ROOT, 'scripts', 'xt_geoip_update'), '-D', db, '--base-url', 'http://203.0.113.2:8080/free', '--socket', lab.router.socket], { timeoutMs: 120_000 });
    let r = await update();
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /build 1; router reloaded \(no rule uses this directory yet\)/);

    for (const [cmd, args] of [
      ['iptables', ['-A', 'FORWARD', '-m', 'geoip', '--src-cc', 'FR', '-j', 'DROP']],
      ['ip6tables', ['-A', 'FORWARD', '-m', 'geoip', '--src-cc', 'FR', '-j', 'DROP']],
    ] as const) {
      const res = await lab.xtr([cmd, ...args]);
      t.is(res.status, 0, res.stderr);
    }
    const ping4 = () => lab.exec('c', ['ping', '-c1', '-W1', '203.0.113.2']);
    const ping6 = () => lab.exec('c', ['ping', '-6', '-c1', '-W1', '2001:db8:5::2']);
    const dropped = async (cmd: 'iptables' | 'ip6tables') => {
      const l = await lab.xtr([cmd, '-nvxL', 'FORWARD']);
      const line = l.stdout.split('\n').find((x) => /geoip/.test(x) && /DROP/.test(x));
      return Number(line?.trim().split(/\s+/)[0] ?? NaN);
    };
    t.is((await ping4()).code, 0, 'client (DE) reaches the server');
    t.is((await ping6()).code, 0, 'client (DE) reaches the server over IPv6');
    t.is(await dropped('iptables'), 0);
    t.is(await dropped('ip6tables'), 0);

    // The remote changes: the client's networks are FR now.
    writeFileSync(file, gzipSync(fixture('country-v2.csv')));
    r = await update();
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /build 2; router reloaded: .*"generation"/);
    t.not((await ping4()).code, 0, 'client (FR now) is dropped');
    t.not((await ping6()).code, 0, 'client (FR now) is dropped over IPv6');
    t.is(await dropped('iptables'), 1);
    t.is(await dropped('ip6tables'), 1);
    const frBytes = readFileSync(join(db, 'FR.iv4'));
    const frMtime = statSync(join(db, 'FR.iv4')).mtimeMs;

    // Unchanged remote: 304, no rebuild, no file touched.
    r = await update();
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /unchanged \(.*304 Not Modified\), no rebuild/);
    t.is(statSync(join(db, 'FR.iv4')).mtimeMs, frMtime);
    const served304 = server.stdout().toString().trim().split('\n');
    t.is(served304.at(-1), `GET /free/dbip-country-lite-${month()}.csv.gz 304`);

    // A corrupt download: exit 1, the files and the running database stay.
    cpSync(file, `${file}.good`);
    writeFileSync(file, readFileSync(`${file}.good`).subarray(0, 50));
    r = await update();
    t.is(r.code, 1);
    t.regex(r.stderr, /corrupt gzip data .*; the database was left as it was/);
    t.deepEqual(readFileSync(join(db, 'FR.iv4')), frBytes);
    const reload = await lab.xtr(['reload-databases']);
    t.is(reload.status, 0, reload.stderr);
    t.not((await ping4()).code, 0, 'still dropped after the failed update and a reload');
    t.is(await dropped('iptables'), 2);
    t.regex(lab.router.log(), /extensions reloaded their external data/);
  } finally {
    await lab.stop();
  }
});
