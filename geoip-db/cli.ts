/**
 * Command-line front ends of the GeoIP/ASN tools, drop-ins for the
 * xtables-addons scripts of the same names (same options, same stdout):
 *
 *   xt_geoip_build [-D dir] [-i file]... [-s] [-q] [file...]
 *   xt_geoip_build_maxmind [-D dir] [-S dir] [-s] [-q]
 *   xt_asn_build [-D dir] [-S dir] [-O zonefile] [-i file]... [-s] [-q]
 *   xt_geoip_query [-D dir] [-4] [-6] cc...
 *   xt_asn_query [-D dir] [-4] [-6] asn...
 *
 * Run as `node cli.js TOOL args...` (the launchers in scripts/ do that).
 */
import { readFileSync, existsSync, statSync, openSync, readSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BuildError,
  buildAsnDb,
  buildCountryDb,
  buildMaxmindAsnDb,
  buildMaxmindCountryDb,
  writeDatabase,
  type BuildResult,
  type CsvInput,
  type ProgressFn,
} from './build.js';
import { isMmdb } from './mmdb.js';
import { queryRanges, QueryError } from './query.js';
import { helpOrVersion, quietEpipe } from '../xt/version.js';

/** `TOOL --help` texts (also the source of the man pages' synopsis). */
export const HELP: Readonly<Record<string, string>> = {
  xt_geoip_build: `usage: xt_geoip_build [-D dir] [-i file]... [-s] [-q] [file...]
Builds xt_geoip's per-country range files (XX.iv4, XX.iv6) in dir from DB-IP
country CSV (dbip-country-lite.csv by default), "-" for stdin, or .mmdb files.
  -D dir   target directory (default: .)
  -i file  an input file (repeatable; operands are inputs too)
  -s       target /usr/share/xt_geoip
  -q       quiet: no per-country report, no progress
  --help, --version
exit status: 0 ok, 1 failure (unreadable input, missing directory), 2 usage error
`,
  xt_geoip_build_maxmind: `usage: xt_geoip_build_maxmind [-D dir] [-S dir] [-s] [-q]
Builds xt_geoip's range files from MaxMind GeoLite2 Country CSV
(GeoLite2-Country-Locations-en.csv, -Blocks-IPv4.csv, -Blocks-IPv6.csv in the source dir).
  -D dir   target directory (default: .)
  -S dir   source directory (default: .)
  -s       target /usr/share/xt_geoip
  -q       quiet: no per-country report, no progress
  --help, --version
exit status: 0 ok, 1 failure, 2 usage error
`,
  xt_asn_build: `usage: xt_asn_build [-D dir] [-S dir] [-O zonefile] [-i file]... [-s] [-q] [file...]
Builds xt_asn's per-AS range files (N.iv4, N.iv6) from GeoLite2 ASN CSV in the
source dir, or from the given CSV (ip-location-db asn format) or .mmdb files.
  -D dir       target directory (default: .)
  -S dir       source directory of GeoLite2-ASN-Blocks-IPv{4,6}.csv (default: .)
  -O zonefile  also write the AS names as a zone file (GeoLite2 input only)
  -i file      an input file (repeatable; operands are inputs too)
  -s           target /usr/share/xt_asn
  -q           quiet: no per-AS report, no progress
  --help, --version
exit status: 0 ok, 1 failure, 2 usage error
`,
  xt_geoip_query: `usage: xt_geoip_query [-D dir] [-4] [-6] cc...
Prints the address ranges of each country code from the database in dir.
  -D dir  database directory (default: .)
  -4, -6  only IPv4 / only IPv6 (default: both)
  --help, --version
exit status: 0 ok, 1 failure (no such directory or country file)
`,
  xt_asn_query: `usage: xt_asn_query [-D dir] [-4] [-6] asn...
Prints the address ranges of each AS number from the database in dir.
  -D dir  database directory (default: .)
  -4, -6  only IPv4 / only IPv6 (default: both)
  --help, --version
exit status: 0 ok, 1 failure (no such directory or AS file)
`,
};

export const SYSTEM_GEOIP_DIR = '/usr/share/xt_geoip';
export const SYSTEM_ASN_DIR = '/usr/share/xt_asn';

class UsageError extends Error {}

interface Getopt {
  flags: Set<string>;
  values: Map<string, string[]>;
  rest: string[];
}

/** Short options with bundling (`-qs`, `-Ddir`, `-D dir`), as the Perl tools' Getopt::Long setup. */
function getopt(args: readonly string[], withArg: string, noArg: string): Getopt {
  const out: Getopt = { flags: new Set(), values: new Map(), rest: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.rest.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      out.rest.push(a);
      continue;
    }
    if (a.startsWith('--')) throw new UsageError(`Unknown option: ${a.slice(2)}`);
    for (let k = 1; k < a.length; k++) {
      const c = a[k]!;
      if (noArg.includes(c)) {
        out.flags.add(c);
      } else if (withArg.includes(c)) {
        let v = a.slice(k + 1);
        if (v === '') {
          if (i + 1 >= args.length) throw new UsageError(`Option ${c} requires an argument`);
          v = args[++i]!;
        }
        const list = out.values.get(c) ?? [];
        list.push(v);
        out.values.set(c, list);
        break;
      } else {
        throw new UsageError(`Unknown option: ${c}`);
      }
    }
  }
  return out;
}

function last(o: Getopt, c: string, dflt: string): string {
  const v = o.values.get(c);
  return v && v.length > 0 ? v[v.length - 1]! : dflt;
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** A progress bar on a terminal; nothing when stderr is a file or pipe. */
function progressBar(totalRows: number, quiet: boolean): { tick: ProgressFn; done(entries: number): void } {
  const tty = !quiet && process.stderr.isTTY === true;
  let lastDraw = 0;
  return {
    tick(entries) {
      if (!tty) return;
      const now = Date.now();
      if (now - lastDraw < 100) return;
      lastDraw = now;
      const frac = totalRows > 0 ? Math.min(1, entries / totalRows) : 0;
      const width = 30;
      const full = Math.round(frac * width);
      process.stderr.write(`\r\x1b[2K[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${Math.floor(frac * 100)}% ${entries} entries`);
    },
    done(entries) {
      if (!quiet) process.stderr.write(`\r\x1b[2K${entries} entries total\n`);
    },
  };
}

/**
 * All of stdin, synchronously. stdin may be non-blocking (its O_NONBLOCK is shared with whoever
 * else holds the same pipe, e.g. a Node parent that opened process.stdin), and then a read before
 * the writer catches up answers EAGAIN: wait 5 ms and retry (for at most `timeoutMs`) instead of
 * failing.
 */
function readStdinSync(timeoutMs = 120_000): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(1 << 16);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' && Date.now() < deadline) {
        Atomics.wait(nap, 0, 0, 5);
        continue;
      }
      throw e;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString('utf8');
}

function readInput(path: string): string {
  try {
    return path === '-' ? readStdinSync() : readFileSync(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'No such file or directory' : err.code === 'EACCES' ? 'Permission denied' : err.code === 'EISDIR' ? 'Is a directory' : err.message;
    throw new BuildError(`Cannot open ${path}: ${why}`);
  }
}

function sniffMmdb(path: string): boolean {
  if (path === '-') return false;
  if (/\.mmdb$/i.test(path)) return true;
  try {
    const size = statSync(path).size;
    const fd = openSync(path, 'r');
    try {
      const n = Math.min(size, 128 * 1024);
      const buf = Buffer.alloc(n);
      readSync(fd, buf, 0, n, size - n);
      return isMmdb(buf);
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

function requireDir(dir: string, what: 'Source' | 'Target'): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new BuildError(`${what} directory "${dir}" does not exist.`);
}

function finish(result: BuildResult, targetDir: string, quiet: boolean, out: NodeJS.WritableStream): void {
  const shown = result.warnings.slice(0, 20);
  for (const w of shown) process.stderr.write(`${w}\n`);
  if (result.warnings.length > shown.length) process.stderr.write(`... and ${result.warnings.length - shown.length} more warnings\n`);
  writeDatabase(targetDir, result.files);
  if (!quiet) out.write(result.files.map((f) => `${f.report}\n`).join(''));
}

function splitInputs(paths: readonly string[]): { csv: CsvInput[]; mmdb: string[] } {
  const csv: CsvInput[] = [];
  const mmdb: string[] = [];
  for (const p of paths) {
    if (sniffMmdb(p)) {
      if (!existsSync(p)) throw new BuildError(`Cannot open ${p}: No such file or directory`);
      mmdb.push(p);
    } else csv.push({ name: p === '-' ? '<stdin>' : p, text: readInput(p) });
  }
  return { csv, mmdb };
}

function geoipBuild(args: readonly string[]): number {
  const o = getopt(args, 'Di', 'qs');
  const quiet = o.flags.has('q');
  const target = o.flags.has('s') ? SYSTEM_GEOIP_DIR : last(o, 'D', '.');
  requireDir(target, 'Target');
  const paths = [...(o.values.get('i') ?? []), ...o.rest];
  if (paths.length === 0) paths.push('dbip-country-lite.csv');
  const { csv, mmdb } = splitInputs(paths);
  const bar = progressBar(csv.reduce((n, c) => n + countLines(c.text), 0), quiet);
  const result = buildCountryDb(csv, mmdb, bar.tick);
  bar.done(result.entries);
  finish(result, target, quiet, process.stdout);
  return 0;
}

function geoipBuildMaxmind(args: readonly string[]): number {
  const o = getopt(args, 'DS', 'qs');
  const quiet = o.flags.has('q');
  const source = last(o, 'S', '.');
  const target = o.flags.has('s') ? SYSTEM_GEOIP_DIR : last(o, 'D', '.');
  requireDir(source, 'Source');
  requireDir(target, 'Target');
  const inp = (name: string): CsvInput => {
    const path = join(source, name);
    return { name: path, text: readInput(path) };
  };
  const loc = inp('GeoLite2-Country-Locations-en.csv');
  const b4 = inp('GeoLite2-Country-Blocks-IPv4.csv');
  const b6 = inp('GeoLite2-Country-Blocks-IPv6.csv');
  const bar = progressBar(countLines(b4.text) + countLines(b6.text), quiet);
  const result = buildMaxmindCountryDb(loc, b4, b6, bar.tick);
  bar.done(result.entries);
  finish(result, target, quiet, process.stdout);
  return 0;
}

function asnBuild(args: readonly string[]): number {
  const o = getopt(args, 'DSOi', 'qs');
  const quiet = o.flags.has('q');
  const target = o.flags.has('s') ? SYSTEM_ASN_DIR : last(o, 'D', '.');
  const paths = [...(o.values.get('i') ?? []), ...o.rest];
  const zonePath = o.values.get('O')?.at(-1);
  let result: BuildResult;
  if (paths.length > 0) {
    requireDir(target, 'Target');
    if (zonePath) throw new UsageError('-O needs GeoLite2 input (-S); it cannot be combined with -i');
    const { csv, mmdb } = splitInputs(paths);
    const bar = progressBar(csv.reduce((n, c) => n + countLines(c.text), 0), quiet);
    result = buildAsnDb(csv, mmdb, bar.tick);
    bar.done(result.entries);
  } else {
    const source = last(o, 'S', '.');
    requireDir(source, 'Source');
    requireDir(target, 'Target');
    const inp = (name: string, fam: string): CsvInput => {
      const path = join(source, name);
      if (!existsSync(path)) throw new BuildError(`Can't open ${fam} database (${path}: No such file or directory)`);
      return { name: path, text: readInput(path) };
    };
    const b4 = inp('GeoLite2-ASN-Blocks-IPv4.csv', 'IPv4');
    const b6 = inp('GeoLite2-ASN-Blocks-IPv6.csv', 'IPv6');
    const bar = progressBar(countLines(b4.text) + countLines(b6.text), quiet);
    result = buildMaxmindAsnDb(b4, b6, zonePath !== undefined, bar.tick);
    bar.done(result.entries);
    if (zonePath) writeFileSync(zonePath, result.zone!.map((l) => `${l}\n`).join(''));
  }
  // Upstream prints the per-file lines even with -q; xtr's -q means quiet for
  // every builder (docs/compat.md).
  finish(result, target, quiet, process.stdout);
  return 0;
}

function query(kind: 'geoip' | 'asn', args: readonly string[]): number {
  const o = getopt(args, 'D', '46');
  const dir = last(o, 'D', '.');
  let v4 = o.flags.has('4');
  let v6 = o.flags.has('6');
  if (!v4 && !v6) v4 = v6 = true;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    process.stderr.write(`Target directory ${dir} does not exit.\n`);
    return 1;
  }
  for (const name of o.rest) {
    try {
      queryRanges(kind, dir, name, v4, v6, (line) => process.stdout.write(line));
    } catch (e) {
      if (!(e instanceof QueryError)) throw e;
      process.stderr.write(`${e.message}\n`);
      return e.status;
    }
  }
  return 0;
}

export function main(tool: string, args: readonly string[]): number {
  const help = HELP[tool];
  if (help !== undefined) {
    // Long options before getopt, which knows only the upstream short ones.
    const std = helpOrVersion(tool, args, help);
    if (std !== null) return std;
  }
  try {
    switch (tool) {
      case 'xt_geoip_build':
        return geoipBuild(args);
      case 'xt_geoip_build_maxmind':
        return geoipBuildMaxmind(args);
      case 'xt_asn_build':
        return asnBuild(args);
      case 'xt_geoip_query':
        return query('geoip', args);
      case 'xt_asn_query':
        return query('asn', args);
      default:
        process.stderr.write(`unknown tool ${tool}\n`);
        return 2;
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`${tool}: ${e.message}\nTry '${tool} --help'.\n`);
      return 2;
    }
    if (e instanceof BuildError) {
      process.stderr.write(`${tool}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

if (process.argv[1] && /cli\.[jt]s$/.test(process.argv[1])) {
  // `xt_geoip_query DE | head -1`: a reader that went away ends the tool quietly.
  quietEpipe();
  const [tool, ...args] = process.argv.slice(2);
  process.exitCode = main(tool ?? '', args);
}
