/**
 * The database builders: CSV or MMDB input -> per-country / per-AS range
 * files in the xtables-addons v3 layout (`<CODE>.iv4` with 8-byte records,
 * `<CODE>.iv6` with 32-byte records, big-endian inclusive begin/end, sorted,
 * overlapping and adjacent ranges merged).
 *
 * The builders are pure: they turn input text into the list of files to
 * write (in the order and with the report lines the upstream Perl tools
 * print). Writing is writeDatabase()'s job, which never leaves a half-written
 * database behind. Every input problem is a BuildError naming file and line.
 */
import { mkdtempSync, openSync, writeSync, fsyncSync, closeSync, renameSync, rmSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6, V6_MAX } from './addr.js';
import { readCsv, CsvError, type CsvRecord } from './csv.js';
import { RangeSetBuilder } from './ranges.js';
import { walkMmdb, type MmdbRecord } from './mmdb.js';
import { isKnownCountryCode } from './countries.js';

export class BuildError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BuildError';
  }
}

/** One input: a name for messages and its content (CSV text or MMDB path). */
export interface CsvInput {
  readonly name: string;
  readonly text: string;
}

export interface OutputFile {
  readonly name: string;
  readonly data: Buffer;
  /** The stdout line upstream prints for this file ("%5u IPv4 ranges for CC"). */
  readonly report: string;
}

export interface BuildResult {
  readonly files: OutputFile[];
  readonly warnings: string[];
  /** Input rows read (all files). */
  readonly entries: number;
  /** For xt_asn_build -O: zone lines in input order. */
  readonly zone?: string[];
}

/** Called every 4096 input rows with the number of rows read so far (all inputs). */
export type ProgressFn = (entries: number) => void;

const DBIP_EXPECTED = 'rows start_ip,end_ip,country_code without a header (DB-IP / ip-location-db country CSV)';
const ASN_EXPECTED = 'rows start_ip,end_ip,asn,organization without a header (ip-location-db ASN CSV)';

function pad5(n: number): string {
  return String(n).padStart(5, ' ');
}

type Range = { family: 4; start: number; end: number } | { family: 6; start: bigint; end: bigint };

/** Parses the start/end columns of a range row; errors name file, line and what was expected. */
function parseRangeColumns(rec: CsvRecord, file: string, expected: string): Range {
  const [startText, endText] = rec.fields as [string, string];
  const where = `${file}:${rec.line}`;
  const s4 = parseIPv4(startText);
  const s6 = s4 < 0 ? parseIPv6(startText) : null;
  if (s4 < 0 && s6 === null) {
    if (rec.line === 1 && !/\d/.test(startText)) {
      throw new BuildError(`${where}: this looks like a header line ("${rec.fields.join(',')}"); expected ${expected}`);
    }
    if (/^\d+$/.test(startText)) {
      throw new BuildError(`${where}: "${startText}" is a number, not an IP address (the *-num.csv variants are not supported); expected ${expected}`);
    }
    throw new BuildError(`${where}: invalid IP address "${startText}" in column 1; expected ${expected}`);
  }
  const e4 = parseIPv4(endText);
  const e6 = e4 < 0 ? parseIPv6(endText) : null;
  if (e4 < 0 && e6 === null) throw new BuildError(`${where}: invalid IP address "${endText}" in column 2; expected ${expected}`);
  if ((s4 >= 0) !== (e4 >= 0)) {
    throw new BuildError(`${where}: range "${startText}-${endText}" mixes IPv4 and IPv6`);
  }
  if (s4 >= 0) {
    if (s4 > e4) throw new BuildError(`${where}: start ${startText} is greater than end ${endText}`);
    return { family: 4, start: s4, end: e4 };
  }
  if (s6! > e6!) throw new BuildError(`${where}: start ${startText} is greater than end ${endText}`);
  return { family: 6, start: s6!, end: e6! };
}

function csvRecords(input: CsvInput): Generator<CsvRecord> {
  return readCsv(input.text, input.name);
}

function wrapCsv<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CsvError) throw new BuildError(e.message);
    throw e;
  }
}

function addRange(set: RangeSetBuilder, r: Range): void {
  if (r.family === 4) set.v4.add(r.start, r.end);
  else set.v6.add(r.start, r.end);
}

function emitSets(
  sets: Map<string, RangeSetBuilder>,
  order: string[],
  label: (key: string) => string,
  fileName: (key: string) => string,
): OutputFile[] {
  const files: OutputFile[] = [];
  for (const key of order) {
    const set = sets.get(key)!;
    const v4 = set.v4.encode();
    files.push({ name: `${fileName(key)}.iv4`, data: v4, report: `${pad5(v4.length / 8)} IPv4 ranges for ${label(key)}` });
    const v6 = set.v6.encode();
    files.push({ name: `${fileName(key)}.iv6`, data: v6, report: `${pad5(v6.length / 32)} IPv6 ranges for ${label(key)}` });
  }
  return files;
}

/**
 * Adds every `start,end,KEY,...` row of a headerless CSV (the DB-IP /
 * ip-location-db layout both builders read) to the set `keyOf(KEY)` names;
 * returns the number of rows. `entries` is the count before this input, for
 * progress every 4096 rows.
 */
function addRangeRows(
  input: CsvInput,
  expected: string,
  sets: Map<string, RangeSetBuilder>,
  keyOf: (raw: string, where: string) => string,
  entries: number,
  progress?: ProgressFn,
): number {
  let rows = 0;
  wrapCsv(() => {
    for (const rec of csvRecords(input)) {
      rows++;
      const where = `${input.name}:${rec.line}`;
      if (rec.fields.length < 3) throw new BuildError(`${where}: ${rec.fields.length} column(s); expected ${expected}`);
      const r = parseRangeColumns(rec, input.name, expected);
      addRange(getSet(sets, keyOf(rec.fields[2]!, where)), r);
      if (progress && ((entries + rows) & 4095) === 0) progress(entries + rows);
    }
  });
  if (rows === 0) throw new BuildError(`${input.name}: empty input (no rows); expected ${expected}`);
  return rows;
}

function getSet(map: Map<string, RangeSetBuilder>, key: string): RangeSetBuilder {
  let set = map.get(key);
  if (!set) {
    set = new RangeSetBuilder();
    map.set(key, set);
  }
  return set;
}

/** walkMmdb with errors (unreadable, not an MMDB, corrupt tree) as BuildErrors naming the file. */
function walkMmdbInput(path: string, visitor: Parameters<typeof walkMmdb>[1]): void {
  try {
    walkMmdb(path, visitor);
  } catch (e) {
    if (e instanceof BuildError) throw e;
    throw new BuildError(`${path}: cannot read as a MaxMind DB (.mmdb) file: ${(e as Error).message}`);
  }
}

/** Maps an MMDB country record (ip-location-db or MaxMind layout) to a code. */
export function countryOfMmdbRecord(r: MmdbRecord): string | null {
  const traits = r['traits'] as Record<string, unknown> | undefined;
  if (traits?.['is_anonymous_proxy']) return 'A1';
  if (traits?.['is_satellite_provider']) return 'A2';
  if (typeof r['country_code'] === 'string') return r['country_code'];
  for (const k of ['country', 'registered_country', 'continent']) {
    const o = r[k] as Record<string, unknown> | undefined;
    const code = o?.['iso_code'] ?? o?.['code'];
    if (typeof code === 'string') return code;
  }
  return null;
}

/** Maps an MMDB ASN record to its number. */
export function asnOfMmdbRecord(r: MmdbRecord): string | null {
  const n = r['autonomous_system_number'] ?? r['asn'];
  if (typeof n === 'number') return String(n);
  if (typeof n === 'string' && /^(?:AS)?\d+$/i.test(n)) return String(Number(n.replace(/^AS/i, '')));
  return null;
}

function validateCountryCode(raw: string, where: string, warnings: string[], seen: Set<string>): string {
  const cc = raw.trim();
  if (!/^[A-Za-z0-9]{2}$/.test(cc)) {
    throw new BuildError(`${where}: invalid country code "${raw}": must be two letters or digits (the geoip match cannot name anything else)`);
  }
  const up = cc.toUpperCase();
  if (!isKnownCountryCode(up) && !seen.has(up)) {
    seen.add(up);
    warnings.push(`${where}: warning: unknown country code "${cc}" (not ISO 3166-1 nor a known special code); writing ${up}.iv4/${up}.iv6 anyway`);
  }
  return up;
}

/**
 * xt_geoip_build: DB-IP / ip-location-db country CSV (`start,end,CC`, IPv4
 * and IPv6 rows mixed, no header) or .mmdb files (`mmdb` inputs by path).
 */
export function buildCountryDb(
  csvInputs: readonly CsvInput[],
  mmdbPaths: readonly string[] = [],
  progress?: ProgressFn,
): BuildResult {
  const sets = new Map<string, RangeSetBuilder>();
  const warnings: string[] = [];
  const unknown = new Set<string>();
  let entries = 0;
  const countryOf = (raw: string, where: string): string => validateCountryCode(raw, where, warnings, unknown);
  for (const input of csvInputs) entries += addRangeRows(input, DBIP_EXPECTED, sets, countryOf, entries, progress);
  for (const path of mmdbPaths) {
    let rows = 0;
    const where = (s: string): string => `${path}: network ${s}`;
    walkMmdbInput(path, {
      v4(start, end, record) {
        rows++;
        const code = countryOfMmdbRecord(record);
        if (code === null) return;
        addRange(getSet(sets, validateCountryCode(code, where(formatIPv4(start)), warnings, unknown)), { family: 4, start, end });
      },
      v6(start, end, record) {
        rows++;
        const code = countryOfMmdbRecord(record);
        if (code === null) return;
        addRange(getSet(sets, validateCountryCode(code, where(formatIPv6(start)), warnings, unknown)), { family: 6, start, end });
      },
    });
    entries += rows;
    if (rows === 0) throw new BuildError(`${path}: the MMDB file has no networks with data`);
  }
  const order = [...sets.keys()].sort();
  return { files: emitSets(sets, order, (k) => k, (k) => k), warnings, entries };
}

/** Perl truthiness of a CSV cell: empty and "0" are false. */
function truthy(v: string | undefined): boolean {
  return v !== undefined && v !== '' && v !== '0';
}

function headerIndex(rec: CsvRecord | undefined, file: string, required: readonly string[], what: string): Map<string, number> {
  if (!rec) throw new BuildError(`${file}: empty input; expected a ${what} header line: ${required.join(',')}`);
  const index = new Map<string, number>();
  rec.fields.forEach((f, i) => index.set(f, i));
  const missing = required.filter((c) => !index.has(c));
  if (missing.length > 0) {
    throw new BuildError(
      `${file}:${rec.line}: header has no ${missing.map((m) => `"${m}"`).join(', ')} column; expected a ${what} header with columns ${required.join(',')}`,
    );
  }
  return index;
}

/** Parses `a.b.c.d/n` or `x::/n`; host bits are cleared as the upstream range library does. */
function parseCidr(text: string, family: 4 | 6, where: string): Range {
  const slash = text.indexOf('/');
  const addr = slash >= 0 ? text.slice(0, slash) : text;
  const lenText = slash >= 0 ? text.slice(slash + 1) : '';
  const bits = family === 4 ? 32 : 128;
  if (!/^(?:0|[1-9]\d*)$/.test(lenText) || Number(lenText) > bits) {
    throw new BuildError(`${where}: invalid network "${text}": expected an IPv${family} CIDR like ${family === 4 ? '1.2.3.0/24' : '2001:db8::/32'}`);
  }
  const len = Number(lenText);
  if (family === 4) {
    const a = parseIPv4(addr);
    if (a < 0) {
      const hint = parseIPv6(addr) !== null ? ' (an IPv6 network in the IPv4 file)' : '';
      throw new BuildError(`${where}: invalid IPv4 network "${text}"${hint}`);
    }
    const size = 2 ** (32 - len);
    const start = a - (a % size);
    return { family: 4, start, end: start + size - 1 };
  }
  const a = parseIPv6(addr);
  if (a === null) {
    const hint = parseIPv4(addr) >= 0 ? ' (an IPv4 network in the IPv6 file)' : '';
    throw new BuildError(`${where}: invalid IPv6 network "${text}"${hint}`);
  }
  const host = (1n << BigInt(128 - len)) - 1n;
  const start = a & (V6_MAX ^ host);
  return { family: 6, start, end: start | host };
}

const LOCATION_COLUMNS = ['geoname_id', 'continent_code', 'continent_name', 'country_iso_code', 'country_name'] as const;
const BLOCK_COLUMNS = ['network', 'geoname_id', 'registered_country_geoname_id', 'is_anonymous_proxy', 'is_satellite_provider'] as const;

/**
 * xt_geoip_build_maxmind: GeoLite2-Country-Locations-en.csv plus the
 * Blocks-IPv4 and Blocks-IPv6 CSVs. Proxy -> A1, satellite -> A2, no id -> O1,
 * locations without a country -> their continent code; every location code
 * and A1/A2/O1 gets files even when empty.
 */
export function buildMaxmindCountryDb(locations: CsvInput, blocks4: CsvInput, blocks6: CsvInput, progress?: ProgressFn): BuildResult {
  return wrapCsv(() => {
    const idToCode = new Map<string, string>();
    const names = new Map<string, string>();
    const locRecords = csvRecords(locations);
    const lh = headerIndex(locRecords.next().value || undefined, locations.name, LOCATION_COLUMNS, 'GeoLite2-Country-Locations-en.csv');
    const col = (rec: CsvRecord, name: string, h: Map<string, number>): string => rec.fields[h.get(name)!] ?? '';
    for (const rec of locRecords) {
      const cc = col(rec, 'country_iso_code', lh);
      const long = col(rec, 'country_name', lh);
      if (cc === '' && long === '') {
        const ct = col(rec, 'continent_code', lh);
        idToCode.set(col(rec, 'geoname_id', lh), ct);
        names.set(ct, col(rec, 'continent_name', lh));
      } else {
        idToCode.set(col(rec, 'geoname_id', lh), cc);
        names.set(cc, long);
      }
    }
    names.set('A1', 'Anonymous Proxy');
    names.set('A2', 'Satellite Provider');
    names.set('O1', 'Other Country');
    const sets = new Map<string, RangeSetBuilder>();
    for (const code of names.keys()) sets.set(code, new RangeSetBuilder());
    let entries = 0;
    for (const [input, family] of [[blocks4, 4], [blocks6, 6]] as const) {
      const recs = csvRecords(input);
      const h = headerIndex(recs.next().value || undefined, input.name, BLOCK_COLUMNS, `GeoLite2-Country-Blocks-IPv${family}.csv`);
      let rows = 0;
      for (const rec of recs) {
        rows++;
        entries++;
        const where = `${input.name}:${rec.line}`;
        let code: string;
        if (truthy(col(rec, 'is_anonymous_proxy', h))) code = 'A1';
        else if (truthy(col(rec, 'is_satellite_provider', h))) code = 'A2';
        else {
          let id = col(rec, 'geoname_id', h);
          if (!truthy(id)) id = col(rec, 'registered_country_geoname_id', h);
          if (id === '') code = 'O1';
          else {
            const c = idToCode.get(id);
            if (c === undefined) throw new BuildError(`${where}: unknown geoname_id ${id} (not in ${locations.name})`);
            code = c;
          }
        }
        addRange(sets.get(code)!, parseCidr(col(rec, 'network', h), family, where));
        if (progress && (entries & 4095) === 0) progress(entries);
      }
      if (rows === 0) throw new BuildError(`${input.name}: no networks after the header`);
    }
    const order = [...sets.keys()].sort();
    return {
      files: emitSets(sets, order, (k) => `${k} ${names.get(k) ?? ''}`, (k) => k.toUpperCase()),
      warnings: [],
      entries,
    };
  });
}

const ASN_BLOCK_COLUMNS = ['network', 'autonomous_system_number', 'autonomous_system_organization'] as const;

function asnKey(text: string, where: string): string {
  const t = text.trim().replace(/^AS/i, '');
  if (!/^\d+$/.test(t) || BigInt(t) > 0xffffffffn) {
    throw new BuildError(`${where}: invalid AS number "${text}": expected a decimal number 0..4294967295`);
  }
  return String(Number(t));
}

function asnOrder(sets: Map<string, RangeSetBuilder>): string[] {
  return [...sets.keys()].sort((a, b) => Number(a) - Number(b));
}

/**
 * xt_asn_build with -S: GeoLite2-ASN-Blocks-IPv4.csv and -IPv6.csv (header
 * row; columns network, autonomous_system_number,
 * autonomous_system_organization). `zone` asks for the -O lines.
 */
export function buildMaxmindAsnDb(blocks4: CsvInput, blocks6: CsvInput, zone = false, progress?: ProgressFn): BuildResult {
  return wrapCsv(() => {
    const sets = new Map<string, RangeSetBuilder>();
    const zoneLines: string[] = [];
    let entries = 0;
    for (const [input, family] of [[blocks4, 4], [blocks6, 6]] as const) {
      const recs = csvRecords(input);
      const h = headerIndex(recs.next().value || undefined, input.name, ASN_BLOCK_COLUMNS, `GeoLite2-ASN-Blocks-IPv${family}.csv`);
      let rows = 0;
      for (const rec of recs) {
        rows++;
        entries++;
        const where = `${input.name}:${rec.line}`;
        const net = rec.fields[h.get('network')!] ?? '';
        const asnText = rec.fields[h.get('autonomous_system_number')!] ?? '';
        const asn = asnKey(asnText, where);
        addRange(getSet(sets, asn), parseCidr(net, family, where));
        if (zone) {
          zoneLines.push(`${asnText}\t\tIN\tAPL\t${family === 4 ? 1 : 2}:${net}`);
          zoneLines.push(`${asnText}\t\tIN\tTXT\t"${rec.fields[h.get('autonomous_system_organization')!] ?? ''}"`);
        }
        if (progress && (entries & 4095) === 0) progress(entries);
      }
      if (rows === 0) throw new BuildError(`${input.name}: no networks after the header`);
    }
    return { files: emitSets(sets, asnOrder(sets), (k) => k, (k) => k), warnings: [], entries, zone: zone ? zoneLines : undefined };
  });
}

/**
 * xt_asn_build with -i: ip-location-db ASN CSV (`start,end,asn,name`, no
 * header; IPv4 and IPv6 files or rows mixed) and/or ASN .mmdb files.
 */
export function buildAsnDb(csvInputs: readonly CsvInput[], mmdbPaths: readonly string[] = [], progress?: ProgressFn): BuildResult {
  const sets = new Map<string, RangeSetBuilder>();
  let entries = 0;
  for (const input of csvInputs) entries += addRangeRows(input, ASN_EXPECTED, sets, asnKey, entries, progress);
  for (const path of mmdbPaths) {
    let rows = 0;
    walkMmdbInput(path, {
      v4(start, end, record) {
        const asn = asnOfMmdbRecord(record);
        if (asn === null) return;
        rows++;
        addRange(getSet(sets, asn), { family: 4, start, end });
      },
      v6(start, end, record) {
        const asn = asnOfMmdbRecord(record);
        if (asn === null) return;
        rows++;
        addRange(getSet(sets, asn), { family: 6, start, end });
      },
    });
    entries += rows;
    if (rows === 0) throw new BuildError(`${path}: the MMDB file has no networks with an AS number`);
  }
  return { files: emitSets(sets, asnOrder(sets), (k) => k, (k) => k), warnings: [], entries };
}

/**
 * Writes the files into `targetDir` so that a failure never leaves a partial
 * database: everything is written and flushed to disk in a temporary
 * directory inside `targetDir` first, then each file is renamed into place (rename is atomic
 * per file; a reader sees either the old or the new file, never a torn one).
 * The loader's reload() then swaps all tables in use at once.
 */
export function writeDatabase(targetDir: string, files: readonly OutputFile[]): void {
  if (!existsSync(targetDir) || !statSync(targetDir).isDirectory()) {
    throw new BuildError(`Target directory "${targetDir}" does not exist.`);
  }
  const tmp = mkdtempSync(join(targetDir, '.xt-build-'));
  try {
    for (const f of files) {
      const fd = openSync(join(tmp, f.name), 'w', 0o644);
      try {
        let off = 0;
        while (off < f.data.length) off += writeSync(fd, f.data, off);
      } finally {
        closeSync(fd);
      }
    }
    flushToDisk(tmp, files);
    for (const f of files) renameSync(join(tmp, f.name), join(targetDir, f.name));
    fsyncDirectory(targetDir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Makes the new files durable before they replace the old ones. One syncfs
 * (coreutils `sync -f`) instead of an fsync per file: an ASN database is
 * ~180,000 files, where per-file fsync takes minutes. Falls back to fsync per
 * file where `sync -f` is not available.
 */
function flushToDisk(dir: string, files: readonly OutputFile[]): void {
  const r = spawnSync('sync', ['-f', dir], { stdio: 'ignore' });
  if (r.status === 0) return;
  for (const f of files) {
    const fd = openSync(join(dir, f.name), 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/** Persists the renames (directory entries); best effort where directories cannot be fsynced. */
function fsyncDirectory(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // not supported on this filesystem
  }
}
