/**
 * The GeoIP data tools that talk to the network:
 *
 *   xt_geoip_dl          DB-IP country lite CSV -> dbip-country-lite.csv (as upstream's)
 *   xt_geoip_dl_maxmind  MaxMind GeoLite2-Country-CSV zip -> GeoLite2-Country-CSV_<date>/ (as upstream's)
 *   xt_asn_dl            DB-IP ASN lite CSV -> dbip-asn-lite.csv, or with a licence key
 *                        MaxMind GeoLite2-ASN-CSV zip -> GeoLite2-ASN-CSV_<date>/
 *   xt_geoip_update      geoipupdate's loop for an xt_geoip/xt_asn directory: download
 *                        when changed, verify, build, rename into place, make the router reload
 *
 * Downloads are checked (gzip/zip integrity, CSV text, and for the update the
 * builder's full parse) before anything on disk is replaced; a failed run
 * leaves files and the running router as they were. Run as
 * `node geoip-fetch.js TOOL args...` (the launchers in scripts/ do that).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { BuildError, buildAsnDb, buildCountryDb, buildMaxmindAsnDb, buildMaxmindCountryDb, writeDatabase, type BuildResult } from '../geoip-db/build.js';
import {
  DownloadError,
  SOURCES,
  candidateUrls,
  checkCsvText,
  dbipOutputName,
  fetchSource,
  gunzipCsv,
  maxmindEdition,
  redactUrl,
  sourceFormat,
  unzipDownload,
  type SourceName,
  type Validators,
} from '../geoip-db/download.js';
import { safeMemberPath, type ZipMember } from '../geoip-db/zip.js';
import { DEFAULT_SOCKET } from '../router/control-protocol.js';
import { RouterNotRunning, sendCommand } from '../router/cli.js';
import { helpOrVersion, quietEpipe } from '../xt/version.js';

const EXIT = 'exit status: 0 ok, 1 failure (network, HTTP error, corrupt or empty download), 2 usage error\n';

export const HELP: Readonly<Record<string, string>> = {
  xt_geoip_dl: `usage: xt_geoip_dl [-D dir] [--base-url URL | --url URL] [-q]
Downloads DB-IP's free "IP to Country Lite" CSV of the current month (the
previous month's when this month's is not published yet), checks it and writes
it unpacked as dbip-country-lite.csv in dir, the default input of xt_geoip_build.
  -D dir          where to write dbip-country-lite.csv (default: .)
  --base-url URL  a mirror holding dbip-country-lite-YYYY-MM.csv.gz
                  (default: https://download.db-ip.com/free)
  --url URL       the exact .csv.gz to download
  -q              quiet: no report
  --help, --version
${EXIT}`,
  xt_geoip_dl_maxmind: `usage: xt_geoip_dl_maxmind [-D dir] [--license-key-file FILE] [--base-url URL | --url URL] [-q] [licence_key_file]
Downloads MaxMind's GeoLite2-Country-CSV zip, checks it and unpacks it as
GeoLite2-Country-CSV_<date>/ in dir (older GeoLite2-Country-CSV_* directories
there are removed), the input of xt_geoip_build_maxmind -S.
The licence key is read from the first line of a file: licence_key_file or
--license-key-file FILE, else $MAXMIND_LICENSE_KEY_FILE, else $MAXMIND_LICENSE_KEY,
else stdin when it is not a terminal. It never needs to be on the command line.
  -D dir          where to unpack (default: .)
  --base-url URL  a mirror of https://download.maxmind.com
  --url URL       the exact .zip to download (no licence key needed)
  -q              quiet: no report
  --help, --version
${EXIT}`,
  xt_asn_dl: `usage: xt_asn_dl [-D dir] [--license-key-file FILE] [--base-url URL | --url URL] [-q] [licence_key_file]
Without a licence key: downloads DB-IP's free "IP to ASN Lite" CSV of the current
month (or the previous one), checks it and writes it unpacked as dbip-asn-lite.csv
in dir (build with: xt_asn_build -i dbip-asn-lite.csv).
With a MaxMind licence key (licence_key_file, --license-key-file FILE,
$MAXMIND_LICENSE_KEY_FILE or $MAXMIND_LICENSE_KEY): downloads the GeoLite2-ASN-CSV
zip and unpacks it as GeoLite2-ASN-CSV_<date>/ (build with: xt_asn_build -S that dir).
  -D dir          where to write (default: .)
  --base-url URL  a mirror of https://download.db-ip.com/free (or of download.maxmind.com with a key)
  --url URL       the exact .csv.gz (or, with a key, .zip) to download
  -q              quiet: no report
  --help, --version
${EXIT}`,
  xt_geoip_update: `usage: xt_geoip_update [-D dir] [--source SRC] [--base-url URL | --url URL]
                       [--license-key-file FILE] [--socket PATH | --pid-file FILE | --no-reload]
                       [--frequency DURATION] [-f] [-q]
Keeps an xt_geoip (or xt_asn) database directory current, like MaxMind's
geoipupdate: downloads the source only when it changed (ETag, Last-Modified, then
its SHA-256), checks it (gzip/zip integrity, every CSV row parsed by the builder),
builds it with xt_geoip_build's builder in a temporary directory, renames the new
files into dir, then makes the running xtr router reload its databases.
  -D dir            database directory (default: /usr/share/xt_geoip,
                    /usr/share/xt_asn for the asn sources)
  --source SRC      dbip-country (default), dbip-asn, maxmind-country, maxmind-asn
  --base-url URL    a mirror of the source's upstream location
  --url URL         the exact file (.csv.gz for dbip-*, .zip for maxmind-*)
  --license-key-file FILE
                    MaxMind licence key for maxmind-* (else $MAXMIND_LICENSE_KEY_FILE
                    or $MAXMIND_LICENSE_KEY)
  --socket PATH     reload through xtr's control socket (default: $XTR_SOCKET or
                    ${DEFAULT_SOCKET}, when that socket exists)
  --pid-file FILE   send SIGHUP to the process named in FILE instead
  --no-reload       update the files only
  --frequency DURATION
                    keep running, checking every DURATION (30s, 15m, 24h, 7d);
                    without it: check once and exit
  -f                rebuild even when the source is unchanged
  -q                quiet: print only errors
  --help, --version
state: DIR/.xt_geoip_update.json (URL, ETag, Last-Modified, SHA-256, builds)
exit status: 0 updated or unchanged, 1 failure (download, verification, build or
reload; the files in dir are left as they were when the source is bad), 2 usage error
`,
};

export const STATE_FILE = '.xt_geoip_update.json';

class UsageError extends Error {}

/** The files were replaced but the router did not take them: not "nothing changed". */
class ReloadError extends DownloadError {}

const QUIET_IO = (io: Io): Io => ({ report: () => undefined, error: io.error });

/** Options: short ones with bundling (-qD dir), long ones as --name VALUE or --name=VALUE. */
interface Parsed {
  flags: Set<string>;
  values: Map<string, string>;
  rest: string[];
}

function parseArgs(args: readonly string[], spec: { short: string; shortArg: string; long: readonly string[]; longArg: readonly string[] }): Parsed {
  const out: Parsed = { flags: new Set(), values: new Map(), rest: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.rest.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      if (spec.long.includes(name)) {
        if (eq >= 0) throw new UsageError(`option --${name} takes no value`);
        out.flags.add(name);
      } else if (spec.longArg.includes(name)) {
        let v = eq >= 0 ? a.slice(eq + 1) : args[++i];
        if (v === undefined) throw new UsageError(`option --${name} requires a value`);
        if (v === '') throw new UsageError(`option --${name}: empty value`);
        out.values.set(name, v);
      } else throw new UsageError(`unknown option --${name}`);
      continue;
    }
    if (!a.startsWith('-') || a === '-') {
      out.rest.push(a);
      continue;
    }
    for (let k = 1; k < a.length; k++) {
      const c = a[k]!;
      if (spec.short.includes(c)) out.flags.add(c);
      else if (spec.shortArg.includes(c)) {
        let v = a.slice(k + 1);
        if (v === '') {
          v = args[++i] ?? '';
          if (v === '') throw new UsageError(`option -${c} requires a value`);
        }
        out.values.set(c, v);
        break;
      } else throw new UsageError(`unknown option -${c}`);
    }
  }
  return out;
}

/** Text output of one tool run; quiet drops reports, never errors. */
interface Io {
  report(line: string): void;
  error(line: string): void;
}

function dirOption(p: Parsed, dflt: string): string {
  const dir = p.values.get('D') ?? dflt;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new DownloadError(`Target directory "${dir}" does not exist.`);
  return dir;
}

/**
 * The MaxMind licence key, from a file (operand or --license-key-file), the
 * environment or a non-terminal stdin: upstream reads a file or stdin; the key
 * never has to be an argument, where `ps` would show it.
 */
async function licenceKey(p: Parsed, required: boolean): Promise<string | undefined> {
  const fromFile = (path: string): string => {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new DownloadError(`cannot read the licence key file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const key = text.split('\n')[0]!.trim();
    if (key === '') throw new DownloadError(`the licence key file ${path} is empty`);
    return key;
  };
  if (p.rest.length > 1) throw new UsageError(`at most one licence key file (got ${p.rest.length} arguments)`);
  const file = p.values.get('license-key-file') ?? p.rest[0] ?? process.env.MAXMIND_LICENSE_KEY_FILE;
  if (file) return fromFile(file);
  const env = process.env.MAXMIND_LICENSE_KEY?.trim();
  if (env) return env;
  if (!required) return undefined;
  if (process.stdin.isTTY !== true) {
    const key = (await firstStdinLine()).trim();
    if (key !== '') return key;
  }
  throw new UsageError('no MaxMind licence key: give a key file (--license-key-file FILE) or set MAXMIND_LICENSE_KEY_FILE / MAXMIND_LICENSE_KEY');
}

/**
 * The first line of stdin (at most 4 KiB), or '' at EOF, on an error or after `timeoutMs`.
 * Read asynchronously: looking at process.stdin (isTTY above) makes fd 0 non-blocking, so a
 * synchronous read before the parent had written failed with EAGAIN, which made the key a race.
 */
function firstStdinLine(timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve) => {
    const stdin = process.stdin;
    let text = '';
    const done = (line: string) => {
      clearTimeout(timer);
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.off('error', onEnd);
      stdin.destroy();
      resolve(line);
    };
    const onData = (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const nl = text.indexOf('\n');
      if (nl >= 0) done(text.slice(0, nl));
      else if (text.length > 4096) done(text.slice(0, 4096));
    };
    const onEnd = () => done(text);
    const timer = setTimeout(() => done(''), timeoutMs);
    stdin.on('data', onData);
    stdin.once('end', onEnd);
    stdin.once('error', onEnd);
  });
}

/** Writes a file via a temporary name in the same directory, so readers never see half of it. */
function writeAtomically(path: string, data: string | Buffer): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
}

function countRows(text: string): number {
  let n = 0;
  for (const line of text.split('\n')) if (line.trim() !== '') n++;
  return n;
}

/** Unpacks checked zip members under dir as upstream's `unzip` would, replacing older `<edition>_*` directories. */
function unpackEdition(members: readonly ZipMember[], dir: string, edition: string, what: string): string {
  const tops = new Set<string>();
  for (const m of members) {
    if (!safeMemberPath(m.name)) throw new DownloadError(`${what}: unsafe path in the archive: ${JSON.stringify(m.name)}`);
    tops.add(m.name.split('/')[0]!);
  }
  const top = [...tops][0];
  if (tops.size !== 1 || !top!.startsWith(`${edition}_`) || !members.every((m) => m.name.includes('/'))) {
    throw new DownloadError(`${what}: expected one top directory ${edition}_<date>/ in the archive, found ${[...tops].join(', ') || 'nothing'}`);
  }
  const tmp = mkdtempSync(join(dir, '.xt-dl-'));
  try {
    for (const m of members) {
      const path = join(tmp, m.name);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, m.data);
    }
    for (const old of readdirSync(dir)) if (old.startsWith(`${edition}_`)) rmSync(join(dir, old), { recursive: true, force: true });
    renameSync(join(tmp, top!), join(dir, top!));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return top!;
}

function memberText(members: readonly ZipMember[], file: string, what: string): { name: string; text: string } {
  const m = members.find((x) => basename(x.name) === file);
  if (!m) throw new DownloadError(`${what}: ${file} is not in the archive`);
  const text = m.data.toString('utf8');
  checkCsvText(text, `${what}: ${m.name}`);
  return { name: m.name, text };
}

const MAXMIND_FILES: Record<'maxmind-country' | 'maxmind-asn', string[]> = {
  'maxmind-country': ['GeoLite2-Country-Locations-en.csv', 'GeoLite2-Country-Blocks-IPv4.csv', 'GeoLite2-Country-Blocks-IPv6.csv'],
  'maxmind-asn': ['GeoLite2-ASN-Blocks-IPv4.csv', 'GeoLite2-ASN-Blocks-IPv6.csv'],
};

/** xt_geoip_dl, xt_asn_dl, xt_geoip_dl_maxmind: one download into the current (or -D) directory. */
async function download(tool: string, args: readonly string[], io: Io): Promise<number> {
  const p = parseArgs(args, { short: 'q', shortArg: 'D', long: [], longArg: ['url', 'base-url', 'license-key-file'] });
  if (p.flags.has('q')) io = QUIET_IO(io);
  if (p.values.has('url') && p.values.has('base-url')) throw new UsageError('--url and --base-url exclude each other');
  let source: SourceName;
  let key: string | undefined;
  if (tool === 'xt_geoip_dl') {
    if (p.rest.length > 0) throw new UsageError(`unexpected argument ${p.rest[0]}`);
    if (p.values.has('license-key-file')) throw new UsageError('xt_geoip_dl downloads DB-IP data: no licence key (see xt_geoip_dl_maxmind)');
    source = 'dbip-country';
  } else if (tool === 'xt_geoip_dl_maxmind') {
    key = await licenceKey(p, !p.values.has('url'));
    source = 'maxmind-country';
  } else {
    key = await licenceKey(p, false);
    source = key === undefined ? 'dbip-asn' : 'maxmind-asn';
  }
  const dir = dirOption(p, '.');
  const urls = candidateUrls(source, { url: p.values.get('url'), base: p.values.get('base-url'), licenseKey: key });
  const got = await fetchSource(urls);
  if (got.status !== 'ok') throw new DownloadError(`${redactUrl(got.url)}: unexpected 304 Not Modified`);
  const what = redactUrl(got.url);
  if (sourceFormat(source) === 'csv.gz') {
    const text = gunzipCsv(got.body, what, got.contentType);
    const name = dbipOutputName(source);
    writeAtomically(join(dir, name), text);
    io.report(`${name}: ${countRows(text)} rows from ${what}`);
  } else {
    const members = unzipDownload(got.body, what, got.contentType);
    for (const f of MAXMIND_FILES[source as 'maxmind-country' | 'maxmind-asn']) memberText(members, f, what);
    const top = unpackEdition(members, dir, maxmindEdition(source), what);
    io.report(`${top}/: ${members.length} files from ${what}`);
  }
  return 0;
}

// ---------------------------------------------------------------------------
// xt_geoip_update

interface UpdateState extends Validators {
  readonly source: SourceName;
  readonly sha256?: string;
  /** How many times this directory was rebuilt by the tool. */
  readonly builds: number;
  /** The range files the tool wrote (emptied when their code vanishes from the data). */
  readonly files?: readonly string[];
  readonly checkedAt?: string;
  readonly builtAt?: string;
}

function readState(dir: string): UpdateState | null {
  try {
    return JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8')) as UpdateState;
  } catch {
    return null;
  }
}

/** `30s`, `15m`, `24h`, `7d` (a bare number is seconds) -> milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new UsageError(`--frequency ${text}: expected a duration like 30s, 15m, 24h or 7d`);
  const ms = Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  if (!(ms >= 1000)) throw new UsageError(`--frequency ${text}: must be at least 1s`);
  if (ms > 2 ** 31 - 1) throw new UsageError(`--frequency ${text}: at most 24d`);
  return ms;
}

function build(source: SourceName, body: Buffer, what: string, contentType: string | undefined): BuildResult {
  if (sourceFormat(source) === 'csv.gz') {
    const text = gunzipCsv(body, what, contentType);
    const input = { name: what, text };
    return source === 'dbip-asn' ? buildAsnDb([input]) : buildCountryDb([input]);
  }
  const members = unzipDownload(body, what, contentType);
  const files = MAXMIND_FILES[source as 'maxmind-country' | 'maxmind-asn'].map((f) => memberText(members, f, what));
  if (source === 'maxmind-asn') return buildMaxmindAsnDb(files[0]!, files[1]!);
  return buildMaxmindCountryDb(files[0]!, files[1]!, files[2]!);
}

type Reloader = { kind: 'socket'; path: string; explicit: boolean } | { kind: 'pid'; file: string } | { kind: 'none' };

async function reloadRouter(r: Reloader, dir: string): Promise<string> {
  if (r.kind === 'none') return 'no reload (--no-reload)';
  if (r.kind === 'pid') {
    let pid: number;
    try {
      pid = Number(readFileSync(r.file, 'utf8').trim());
    } catch (e) {
      throw new ReloadError(`files updated, but the pid file ${r.file} cannot be read (${(e as NodeJS.ErrnoException).code}): the router still runs the previous database`);
    }
    if (!Number.isInteger(pid) || pid <= 1) throw new ReloadError(`files updated, but ${r.file} holds no process id: the router still runs the previous database`);
    try {
      process.kill(pid, 'SIGHUP');
    } catch (e) {
      throw new ReloadError(`files updated, but SIGHUP to pid ${pid} failed (${(e as NodeJS.ErrnoException).code}): the router still runs the previous database`);
    }
    return `SIGHUP sent to pid ${pid}`;
  }
  if (!r.explicit && !existsSync(r.path)) return `no router at ${r.path}: files updated only`;
  let res;
  try {
    res = await sendCommand(r.path, { cmd: 'reload-databases', args: [], input: null }, 120_000);
  } catch (e) {
    if (e instanceof RouterNotRunning && !r.explicit) return `no router at ${r.path}: files updated only`;
    throw new ReloadError(`files updated, but the router did not reload: ${(e as Error).message}`);
  }
  if (res.status !== 0) throw new ReloadError(`files updated, but xtr reload-databases failed: ${res.stderr.trim()}`);
  const ours = resolve(dir);
  const lines = res.stdout.split('\n').filter((l) => l.trim() !== '');
  for (const line of lines) {
    let rep: { dir?: string; error?: string };
    try {
      rep = JSON.parse(line) as typeof rep;
    } catch {
      continue;
    }
    if (rep.error && rep.dir && resolve(rep.dir) === ours) throw new ReloadError(`files updated, but the router refused them and kept its previous database: ${rep.error}`);
  }
  const mine = lines.filter((l) => l.includes(JSON.stringify(ours).slice(1, -1)) || l.includes(JSON.stringify(dir).slice(1, -1)));
  return mine.length > 0 ? `router reloaded: ${mine.join(' ')}` : 'router reloaded (no rule uses this directory yet)';
}

interface UpdateConfig {
  source: SourceName;
  dir: string;
  urls: string[];
  force: boolean;
  reloader: Reloader;
}

/** One check: the outcome line; throws DownloadError/BuildError with the database untouched. */
async function updateOnce(c: UpdateConfig): Promise<string> {
  const prev = readState(c.dir);
  const usable = prev && prev.source === c.source && !c.force ? prev : null;
  const got = await fetchSource(c.urls, { validators: usable ?? undefined });
  const what = redactUrl(got.url);
  const now = new Date().toISOString();
  if (got.status === 'not-modified') {
    if (!usable) throw new DownloadError(`${what}: 304 Not Modified to an unconditional request`);
    writeAtomically(join(c.dir, STATE_FILE), JSON.stringify({ ...usable!, checkedAt: now }, null, 2) + '\n');
    return `${c.dir}: unchanged (${what}: 304 Not Modified), no rebuild`;
  }
  const validators = { url: what, etag: got.etag, lastModified: got.lastModified, sha256: got.sha256 };
  if (usable && usable.sha256 === got.sha256) {
    writeAtomically(join(c.dir, STATE_FILE), JSON.stringify({ ...usable, ...validators, checkedAt: now }, null, 2) + '\n');
    return `${c.dir}: unchanged (${what}: same SHA-256 ${got.sha256.slice(0, 12)}), no rebuild`;
  }
  const result = build(c.source, got.body, what, got.contentType);
  // A code the new data no longer has keeps no stale ranges: the builder (as
  // upstream's) writes only the codes it saw, so files this tool wrote before
  // are emptied (not deleted: a rule naming the code must still load).
  const names = new Set(result.files.map((f) => f.name));
  const vanished = (prev?.files ?? []).filter((f) => !names.has(f) && /^[A-Za-z0-9]+\.iv[46]$/.test(f));
  writeDatabase(c.dir, [...result.files, ...vanished.map((name) => ({ name, data: Buffer.alloc(0), report: '' }))]);
  const builds = (prev?.builds ?? 0) + 1;
  const files = [...names, ...vanished].sort();
  const state: UpdateState = { source: c.source, ...validators, builds, files, checkedAt: now, builtAt: now };
  writeAtomically(join(c.dir, STATE_FILE), JSON.stringify(state, null, 2) + '\n');
  const warn = result.warnings.length > 0 ? ` (${result.warnings.length} warnings)` : '';
  const gone = vanished.length > 0 ? `, ${vanished.length} files of vanished codes emptied` : '';
  const head = `${c.dir}: updated from ${what} (SHA-256 ${got.sha256.slice(0, 12)}): ${result.entries} rows, ${result.files.length} files${gone}${warn}, build ${builds}`;
  return `${head}; ${await reloadRouter(c.reloader, c.dir)}`;
}

async function update(args: readonly string[], io: Io): Promise<number> {
  const p = parseArgs(args, {
    short: 'qf',
    shortArg: 'D',
    long: ['no-reload'],
    longArg: ['url', 'base-url', 'license-key-file', 'source', 'socket', 'pid-file', 'frequency'],
  });
  if (p.flags.has('q')) io = QUIET_IO(io);
  if (p.rest.length > 0) throw new UsageError(`unexpected argument ${p.rest[0]}`);
  if (p.values.has('url') && p.values.has('base-url')) throw new UsageError('--url and --base-url exclude each other');
  const reloadOpts = ['socket', 'pid-file'].filter((k) => p.values.has(k)).length + (p.flags.has('no-reload') ? 1 : 0);
  if (reloadOpts > 1) throw new UsageError('--socket, --pid-file and --no-reload exclude each other');
  const source = (p.values.get('source') ?? 'dbip-country') as SourceName;
  if (!SOURCES.includes(source)) throw new UsageError(`--source ${source}: expected one of ${SOURCES.join(', ')}`);
  const frequency = p.values.has('frequency') ? parseDuration(p.values.get('frequency')!) : null;
  const key = source.startsWith('maxmind-') ? await licenceKey(p, !p.values.has('url')) : undefined;
  const dir = dirOption(p, source.endsWith('-asn') ? '/usr/share/xt_asn' : '/usr/share/xt_geoip');
  const reloader: Reloader = p.flags.has('no-reload')
    ? { kind: 'none' }
    : p.values.has('pid-file')
      ? { kind: 'pid', file: p.values.get('pid-file')! }
      : { kind: 'socket', path: p.values.get('socket') ?? (process.env.XTR_SOCKET || DEFAULT_SOCKET), explicit: p.values.has('socket') };
  const config: UpdateConfig = {
    source,
    dir,
    urls: candidateUrls(source, { url: p.values.get('url'), base: p.values.get('base-url'), licenseKey: key }),
    force: p.flags.has('f'),
    reloader,
  };
  if (frequency === null) {
    io.report(await updateOnce(config));
    return 0;
  }
  // The loop: each check reports and goes on; a failed check changes nothing and is retried next time.
  let stop: () => void = () => undefined;
  const stopped = new Promise<void>((r) => (stop = r));
  let running = true;
  const onSignal = () => {
    running = false;
    stop();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  while (running) {
    const stamp = new Date().toISOString();
    try {
      io.report(`${stamp} ${await updateOnce(config)}`);
      config.force = false;
    } catch (e) {
      if (!(e instanceof DownloadError || e instanceof BuildError)) throw e;
      const kept = e instanceof ReloadError ? '' : `; the database in ${dir} was left as it was`;
      io.error(`${stamp} xt_geoip_update: ${e.message}${kept}; next check in ${p.values.get('frequency')}`);
    }
    if (!running) break;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([stopped, new Promise<void>((r) => (timer = setTimeout(r, frequency)))]);
    clearTimeout(timer);
  }
  return 0;
}

export async function main(tool: string, args: readonly string[], io: Io): Promise<number> {
  const help = HELP[tool];
  if (help === undefined) {
    io.error(`unknown tool ${tool}`);
    return 2;
  }
  const std = helpOrVersion(tool, args, help);
  if (std !== null) return std;
  try {
    return tool === 'xt_geoip_update' ? await update(args, io) : await download(tool, args, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.error(`${tool}: ${e.message}\nTry '${tool} --help'.`);
      return 2;
    }
    if (e instanceof DownloadError || e instanceof BuildError) {
      const untouched = tool === 'xt_geoip_update' && !(e instanceof ReloadError) ? '; the database was left as it was' : '';
      io.error(`${tool}: ${e.message}${untouched}`);
      return 1;
    }
    throw e;
  }
}

if (process.argv[1] && /geoip-fetch\.[jt]s$/.test(process.argv[1])) {
  quietEpipe();
  const [tool, ...args] = process.argv.slice(2);
  const io: Io = { report: (l) => process.stdout.write(`${l}\n`), error: (l) => process.stderr.write(`${l}\n`) };
  process.exitCode = await main(tool ?? '', args, io);
}
