/**
 * The run-time side of the GeoIP/ASN databases: built `.iv4`/`.iv6` files
 * turned into typed arrays that are searched by bisection, one copy per
 * (family, country or AS number) shared by every rule, grouped in a
 * GeoDatabase per directory.
 *
 * Why a database object and generations: the kernel keeps the first copy of
 * a country it loaded and silently ignores a rebuilt file while any rule still
 * uses that country. xtr instead keeps all tables of a directory in one array
 * (`tables`) that rules index by slot; reload() reads every file in use,
 * validates all of them, and only then replaces the array - one assignment,
 * so every rule sees the new data from the next packet on, or nothing changes.
 *
 * Layout in memory (host order, so comparisons are plain integer compares):
 *  - IPv4: Uint32Array [begin0, end0, begin1, end1, ...]
 *  - IPv6: Uint32Array of 8 words per record: begin as four 32-bit words
 *    (most significant first), then end likewise.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Family } from '../xt/packet.js';

/** A database problem found while loading; the message names the file. */
export class GeoDbError extends Error {
  constructor(message: string, readonly path: string) {
    super(message);
    this.name = 'GeoDbError';
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Big-endian file bytes -> host-order 32-bit words. `owned` bytes (fresh from
 * a file read) are swapped in place when aligned, so a loaded table costs its
 * file size and no more; anything else is copied first.
 */
function wordsFromFile(bytes: Uint8Array, owned: boolean): Uint32Array {
  let buf: Buffer;
  if (owned && bytes.byteOffset % 4 === 0) {
    buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  } else {
    buf = Buffer.alloc(bytes.length);
    buf.set(bytes);
  }
  if (LITTLE_ENDIAN) buf.swap32();
  return new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
}

/**
 * Decodes and validates one file's content. Records must be ascending,
 * non-overlapping and begin <= end: the upstream builders always write them
 * so, and a table that is not would make the bisection miss silently.
 */
export function decodeTable(bytes: Uint8Array, family: Family, path: string, owned = false): Uint32Array {
  const recordSize = family === 4 ? 8 : 32;
  if (bytes.length % recordSize !== 0) {
    throw new GeoDbError(`Database file ${path} seems to be corrupted (size ${bytes.length} is not a multiple of ${recordSize})`, path);
  }
  const t = wordsFromFile(bytes, owned);
  if (family === 4) {
    for (let i = 0; i < t.length; i += 2) {
      if (t[i]! > t[i + 1]!) throw new GeoDbError(`Database file ${path}: record ${i / 2} has begin > end`, path);
      if (i > 0 && t[i]! <= t[i - 1]!) {
        throw new GeoDbError(`Database file ${path}: record ${i / 2} overlaps or precedes record ${i / 2 - 1} (not sorted)`, path);
      }
    }
  } else {
    for (let i = 0; i < t.length; i += 8) {
      if (cmp6(t, i, t, i + 4) > 0) throw new GeoDbError(`Database file ${path}: record ${i / 8} has begin > end`, path);
      if (i > 0 && cmp6(t, i, t, i - 4) <= 0) {
        throw new GeoDbError(`Database file ${path}: record ${i / 8} overlaps or precedes record ${i / 8 - 1} (not sorted)`, path);
      }
    }
  }
  return t;
}

function cmp6(a: Uint32Array, ai: number, b: Uint32Array, bi: number): number {
  for (let k = 0; k < 4; k++) {
    const x = a[ai + k]!;
    const y = b[bi + k]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/*
 * Lookups find the last range whose begin <= address (one comparison per
 * bisection step), then test that range's end. On sorted, non-overlapping
 * tables this answers exactly what the kernel's begin/end bisection answers,
 * with about half the comparisons.
 */

/** Whether IPv4 address `a` (unsigned) lies in one of the table's ranges. */
export function contains4(t: Uint32Array, a: number): boolean {
  let lo = 0;
  let hi = t.length >>> 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a >= t[mid << 1]!) lo = mid + 1;
    else hi = mid;
  }
  return lo > 0 && a <= t[(lo << 1) - 1]!;
}

/** Whether IPv6 address `w` (four big-endian words as numbers) lies in one of the table's ranges. */
export function contains6(t: Uint32Array, w: Uint32Array): boolean {
  const w0 = w[0]!;
  const w1 = w[1]!;
  const w2 = w[2]!;
  const w3 = w[3]!;
  let lo = 0;
  let hi = t.length >>> 3;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const i = mid << 3;
    let x = t[i]!;
    let atOrAfterBegin: boolean;
    if (w0 !== x) atOrAfterBegin = w0 > x;
    else if (w1 !== (x = t[i + 1]!)) atOrAfterBegin = w1 > x;
    else if (w2 !== (x = t[i + 2]!)) atOrAfterBegin = w2 > x;
    else atOrAfterBegin = w3 >= t[i + 3]!;
    if (atOrAfterBegin) lo = mid + 1;
    else hi = mid;
  }
  if (lo === 0) return false;
  const e = ((lo - 1) << 3) + 4;
  let x = t[e]!;
  if (w0 !== x) return w0 < x;
  if (w1 !== (x = t[e + 1]!)) return w1 < x;
  if (w2 !== (x = t[e + 2]!)) return w2 < x;
  return w3 <= t[e + 3]!;
}

/** Reads and decodes one database file. */
export function loadTable(path: string, family: Family): Uint32Array {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new GeoDbError(`Could not open ${path}: ${strerror(err)}`, path);
  }
  return decodeTable(bytes, family, path, true);
}

function strerror(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return 'No such file or directory';
    case 'EACCES':
      return 'Permission denied';
    case 'EISDIR':
      return 'Is a directory';
    default:
      return err.message;
  }
}

interface SlotInfo {
  readonly key: string;
  readonly path: string;
  readonly family: Family;
  refs: number;
  /** Identity of the file the current table came from (mtime, size, inode). */
  stamp: string;
}

function fileStamp(path: string): string {
  try {
    const s = statSync(path);
    return `${s.mtimeMs}:${s.size}:${s.ino}`;
  } catch {
    return 'missing';
  }
}

/** What a reload did, for the control interface and logs. */
export interface ReloadReport {
  readonly dir: string;
  readonly generation: number;
  readonly tables: number;
  readonly ranges: number;
}

const open = new Set<GeoDatabase>();

/**
 * All tables in use from one directory (one per country code or AS number
 * and family). Rules keep slot numbers and read `tables[slot]` per packet.
 */
export class GeoDatabase {
  /** Current generation: slot -> table. Replaced as a whole by reload(). */
  tables: Uint32Array[] = [];
  /** Bumped by every successful reload. */
  generation = 0;
  private readonly slots = new Map<string, number>();
  private readonly info: Array<SlotInfo | undefined> = [];

  constructor(readonly dir: string) {
    open.add(this);
  }

  /**
   * Takes a reference on the table for `name` (a country code or AS number as
   * typed) in `family`, loading it if no rule uses it yet. If the file on
   * disk was rebuilt since the tables were loaded, every table of the
   * directory is reloaded first, so rules never mix database generations.
   * Throws GeoDbError naming the file.
   */
  acquire(name: string, family: Family): number {
    const path = join(this.dir, `${name}.iv${family}`);
    const key = `${family}:${name}`;
    open.add(this);
    const existing = this.slots.get(key);
    if (existing !== undefined) {
      const info = this.info[existing]!;
      if (fileStamp(path) !== info.stamp) this.reload();
      info.refs++;
      return existing;
    }
    const stamp = fileStamp(path);
    const table = loadTable(path, family);
    let slot = this.info.findIndex((x) => x === undefined);
    if (slot < 0) slot = this.info.length;
    this.info[slot] = { key, path, family, refs: 1, stamp };
    this.slots.set(key, slot);
    // New slots extend the current generation; existing slots are untouched.
    const next = this.tables.slice();
    next[slot] = table;
    this.tables = next;
    return slot;
  }

  /** Drops a reference taken by acquire(); the table goes with the last one. */
  release(slot: number): void {
    const info = this.info[slot];
    if (!info) return;
    if (--info.refs > 0) return;
    this.slots.delete(info.key);
    this.info[slot] = undefined;
    const next = this.tables.slice();
    next[slot] = EMPTY;
    this.tables = next;
    if (this.slots.size === 0) open.delete(this);
  }

  /**
   * Re-reads every table in use. All files are read and validated before
   * anything changes; on any error the current generation stays and the
   * error (naming the file) is thrown.
   */
  reload(): ReloadReport {
    const next = this.tables.slice();
    const stamps: Array<[SlotInfo, string]> = [];
    let ranges = 0;
    let count = 0;
    for (let slot = 0; slot < this.info.length; slot++) {
      const info = this.info[slot];
      if (!info) continue;
      const stamp = fileStamp(info.path);
      const table = loadTable(info.path, info.family);
      next[slot] = table;
      stamps.push([info, stamp]);
      ranges += table.length / (info.family === 4 ? 2 : 8);
      count++;
    }
    this.tables = next;
    for (const [info, stamp] of stamps) info.stamp = stamp;
    this.generation++;
    return { dir: this.dir, generation: this.generation, tables: count, ranges };
  }

  /** Slots in use (for tests and the control interface). */
  get size(): number {
    return this.slots.size;
  }
}

const EMPTY = new Uint32Array(0);

/**
 * Reloads every database directory in use (the SIGHUP / control-command
 * entry point). Each directory is all-or-nothing; the result lists what was
 * reloaded and what failed, and a failed directory keeps its current tables.
 */
export function reloadAll(): Array<ReloadReport | { dir: string; error: string }> {
  const out: Array<ReloadReport | { dir: string; error: string }> = [];
  for (const db of open) {
    try {
      out.push(db.reload());
    } catch (e) {
      out.push({ dir: db.dir, error: (e as Error).message });
    }
  }
  return out;
}

/** Databases with at least one table in use. */
export function openDatabases(): readonly GeoDatabase[] {
  return [...open];
}

/**
 * Loads every `*.iv4` / `*.iv6` file of a directory (the benchmark and the
 * full checks use this to measure the whole country set).
 */
export function loadDirectory(dir: string, names: readonly string[]): Map<string, Uint32Array> {
  const out = new Map<string, Uint32Array>();
  for (const name of names) {
    const m = /\.iv([46])$/.exec(name);
    if (!m) continue;
    out.set(name, loadTable(join(dir, name), Number(m[1]) as Family));
  }
  return out;
}
