/**
 * Extension discovery: every file in modules/ (other than the contract and
 * this file) is imported once at start-up and its default export registered,
 * so adding an extension is adding a file - the engine never names one.
 *
 * Works from source (tsx runs the `.ts` files) and from `dist/` (the emitted
 * `.js` files): the directory scanned is the one this file was loaded from,
 * and the extension looked for is this file's own.
 *
 * Lookup is by name + kind + family, as iptables' xtables_find_match /
 * xtables_find_target do (a match and a target may share a name: `-m mark`
 * vs `-j MARK` differ only by case, `-m CONNMARK` does not exist).
 */
import { readdirSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Family } from '../xt/packet.js';
import type { Extension, MatchExtension, TargetExtension } from '../xt/extension.js';

/**
 * Files of modules/ that are not extensions. Shared helpers live in modules/lib/,
 * a folder this scan never enters (only files directly in modules/ are read).
 */
const NOT_EXTENSIONS = new Set(['registry']);

export class ExtensionRegistry {
  private readonly matches = new Map<string, MatchExtension[]>();
  private readonly targets = new Map<string, TargetExtension[]>();
  /** Where each extension came from, for error messages about duplicates. */
  private readonly origin = new Map<Extension, string>();

  /** Registers one record; a second record with the same name, kind and a shared family is an error. */
  add(ext: Extension, origin = '(inline)'): void {
    if (!ext || (ext.kind !== 'match' && ext.kind !== 'target') || typeof ext.name !== 'string' || ext.name === '') {
      throw new Error(`${origin}: default export is not an extension record (kind 'match' or 'target' with a name)`);
    }
    const map = (ext.kind === 'match' ? this.matches : this.targets) as Map<string, Extension[]>;
    const list = map.get(ext.name) ?? [];
    for (const other of list) {
      if (other.families.some((f) => ext.families.includes(f))) {
        throw new Error(`${origin}: ${ext.kind} "${ext.name}" is already registered by ${this.origin.get(other)}`);
      }
    }
    list.push(ext);
    map.set(ext.name, list);
    this.origin.set(ext, origin);
  }

  match(name: string, family: Family): MatchExtension | undefined {
    return this.matches.get(name)?.find((e) => e.families.includes(family));
  }

  target(name: string, family: Family): TargetExtension | undefined {
    return this.targets.get(name)?.find((e) => e.families.includes(family));
  }

  /** True if a target of that name exists for the family (chain names may not clash with it). */
  hasTarget(name: string, family: Family): boolean {
    return this.target(name, family) !== undefined;
  }

  /** Every registered record, matches first, each group by name. */
  all(): Extension[] {
    const byName = (a: Extension, b: Extension) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    return [...[...this.matches.values()].flat().sort(byName), ...[...this.targets.values()].flat().sort(byName)];
  }
}

/** The directory holding the extension files next to this one, and their extension (.ts or .js). */
function moduleDirectory(): { dir: string; ext: string } {
  const self = fileURLToPath(import.meta.url);
  return { dir: dirname(self), ext: extname(self) };
}

/**
 * Imports every extension file of `dir` (default: this file's directory) and
 * returns a registry holding their default exports. A file that fails to
 * import or exports no record is an error naming the file: a broken
 * extension must not silently vanish from the rule language.
 */
export async function loadExtensions(dir?: string): Promise<ExtensionRegistry> {
  const here = moduleDirectory();
  const scanDir = dir ?? here.dir;
  const wanted = here.ext === '.ts' ? '.ts' : '.js';
  const files = readdirSync(scanDir)
    .filter((f) => f.endsWith(wanted) && !f.endsWith('.d.ts') && !f.endsWith('.test.ts'))
    .filter((f) => !NOT_EXTENSIONS.has(f.slice(0, -wanted.length)))
    .sort();
  const registry = new ExtensionRegistry();
  for (const file of files) {
    const path = join(scanDir, file);
    let mod: { default?: Extension | Extension[] };
    try {
      mod = (await import(pathToFileURL(path).href)) as { default?: Extension | Extension[] };
    } catch (e) {
      throw new Error(`${file}: extension failed to load: ${e instanceof Error ? e.message : String(e)}`);
    }
    const exported = mod.default;
    if (exported === undefined) throw new Error(`${file}: no default export (an extension file exports one record)`);
    // A file may register the same code under several records (e.g. NOTRACK as a target of two revisions).
    for (const ext of Array.isArray(exported) ? exported : [exported]) registry.add(ext, file);
  }
  return registry;
}

let shared: Promise<ExtensionRegistry> | null = null;

/** The process-wide registry of modules/, loaded once. */
export function extensions(): Promise<ExtensionRegistry> {
  shared ??= loadExtensions();
  return shared;
}
