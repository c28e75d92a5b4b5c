/**
 * What the geoip and asn matches share: at rule check time the GeoDatabase of
 * the configured directory (declared state "geoip:db:DIR" / "asn:db:DIR", one
 * per extension and directory) and a reference on each named table; per
 * packet the lookup of one address in those tables; on SIGHUP the reload of
 * every database an extension holds.
 */
import type { Family, PacketContext } from '../../xt/packet.js';
import { XtError, type CheckEnv } from '../../xt/extension.js';
import type { StateLookup, StateSpec } from '../../xt/state.js';
import { GeoDatabase, GeoDbError, contains4, contains6 } from '../../geoip-db/loader.js';

type DbExtension = 'geoip' | 'asn';

/** The declared state of one database directory: the tables rules use, loaded once, swapped as a whole by a reload. */
function databaseSpec(ext: DbExtension, dir: string): StateSpec<GeoDatabase> {
  return {
    key: `${ext}:db:${dir}`,
    create: () => new GeoDatabase(dir),
  };
}

export interface AttachedSets {
  readonly db: GeoDatabase;
  /** Slot of each name in db.tables, in rule order. */
  readonly slots: Int32Array;
  release(): void;
}

/** The database directory from `settings[ext].dir`, else the upstream default. */
export function databaseDir(env: CheckEnv, ext: DbExtension, fallback: string): string {
  const s = env.settings[ext];
  if (s && typeof s === 'object' && 'dir' in s) {
    const dir = (s as { dir: unknown }).dir;
    if (typeof dir === 'string' && dir !== '') return dir;
    throw new XtError(`${ext}: settings.${ext}.dir must be a non-empty string`, 1);
  }
  return fallback;
}

/**
 * Takes references on `<dir>/<name>.iv4|.iv6` for every name. On a missing
 * or corrupt file nothing stays acquired and the error says which file, as
 * iptables does ("Could not open ...", "... seems to be corrupted").
 */
export function attachSets(env: CheckEnv, ext: DbExtension, dir: string, names: readonly string[], family: Family): AttachedSets {
  const spec = databaseSpec(ext, dir);
  const key = spec.key;
  const db = env.state.declare(spec);
  const slots = new Int32Array(names.length);
  let taken = 0;
  try {
    for (; taken < names.length; taken++) slots[taken] = db.acquire(names[taken]!, family);
  } catch (e) {
    for (let i = 0; i < taken; i++) db.release(slots[i]!);
    env.state.release(key);
    if (e instanceof GeoDbError) throw new XtError(`${e.message}: Could not read ${ext} database`, 1);
    throw e;
  }
  let released = false;
  return {
    db,
    slots,
    release() {
      if (released) return;
      released = true;
      for (const s of slots) db.release(s);
      env.state.release(key);
    },
  };
}

/**
 * The packet function of a geoip/asn rule: whether the source (or
 * destination) address is in any of the attached tables, inverted on `!`.
 * Tables are read from the database at each packet, so a reload that swaps
 * them is seen by every rule at once.
 */
export function rangeSetMatch(family: Family, source: boolean, invert: boolean, sets: AttachedSets): (pkt: PacketContext) => boolean {
  const { db, slots } = sets;
  const n = slots.length;
  if (family === 4) {
    return (pkt: PacketContext): boolean => {
      const a = source ? pkt.src4 : pkt.dst4;
      const tables = db.tables;
      for (let i = 0; i < n; i++) if (contains4(tables[slots[i]!]!, a)) return !invert;
      return invert;
    };
  }
  return (pkt: PacketContext): boolean => {
    const w = source ? pkt.src6 : pkt.dst6;
    const tables = db.tables;
    for (let i = 0; i < n; i++) if (contains6(tables[slots[i]!]!, w)) return !invert;
    return invert;
  };
}

/**
 * The extension's reload (SIGHUP / `xtr reload-databases`): re-reads every
 * database directory `ext` holds, each all-or-nothing (a failed directory keeps
 * its tables). One JSON line per directory: {dir, generation, tables, ranges}
 * or {dir, error}.
 */
export function reloadDatabases(ext: DbExtension, state: StateLookup): string[] {
  const lines: string[] = [];
  for (const key of state.keys(`${ext}:db:`)) {
    const db = state.get<GeoDatabase>(key);
    if (!db) continue;
    try {
      lines.push(JSON.stringify(db.reload()));
    } catch (e) {
      lines.push(JSON.stringify({ dir: db.dir, error: (e as Error).message }));
    }
  }
  return lines;
}
