/**
 * The rule engine's front door for main.ts: build the engine from the
 * extensions in modules/, get its commands, and persist/restore it.
 *
 *   const nf = await createNetfilter({ services, conntrack });
 *   router.setNetfilter(nf);                 // nf.hook(hook, pkt)
 *   control.register(netfilterCommands(nf));
 *   nf.onChange = () => writeFileSync(path, saveState(nf));
 *   restoreState(nf, readFileSync(path, 'utf8'));   // at start: rules, then their state
 *   nf.state.startTimer();                   // extension state ticks (GC, expiry)
 */
import type { RouterServices } from '../../xt/extension.js';
import { extensions, type ExtensionRegistry } from '../../modules/registry.js';
import type { Family } from '../../xt/packet.js';
import { restore, saveText, saveTextSteps } from './commands.js';
import { runStepsSliced } from './slices.js';
import { isTableName } from './model.js';
import { Netfilter, type ConntrackHooks } from './engine.js';
import type { SavedExtensionState } from './state.js';

export { Netfilter, type ConntrackHooks } from './engine.js';
export { netfilterCommands, runIptables, runRestore, runSave, runProc, saveText } from './commands.js';
export { SharedState, ProcFiles, type SavedExtensionState, type StateClock } from './state.js';

export interface CreateOptions {
  services: RouterServices;
  conntrack?: ConntrackHooks | null;
  settings?: Readonly<Record<string, unknown>>;
  /** Defaults to every extension of modules/. */
  registry?: ExtensionRegistry;
}

export async function createNetfilter(opts: CreateOptions): Promise<Netfilter> {
  const registry = opts.registry ?? (await extensions());
  return new Netfilter({ registry, services: opts.services, conntrack: opts.conntrack, settings: opts.settings });
}

/** What saveState writes: both families' rules with counters, and the extensions' declared state. */
interface SavedState {
  format: typeof FORMAT;
  ipv4: string;
  ipv6: string;
  /** Every live state key's saved picture (StateSpec.save) and the wall time of the save. */
  state: SavedExtensionState;
}

const FORMAT = 'xtr-netfilter/2';
/** The previous format: extension state as proc files' export text (before declarative state). */
const FORMAT_V1 = 'xtr-netfilter/1';

/** The rule sets (iptables-save -c text of every table in use) and extension state, as one JSON text. */
export function saveState(nf: Netfilter): string {
  const state: SavedState = {
    format: FORMAT,
    ipv4: saveText(nf, 4, { counters: true, persist: true }),
    ipv6: saveText(nf, 6, { counters: true, persist: true }),
    state: nf.state.exportAll(),
  };
  return `${JSON.stringify(state, null, 1)}\n`;
}

/**
 * saveState without stalling forwarding (issue 12 §5): the rule sets and the
 * extension state are taken at the call, the rules are printed in slices
 * (slices.ts; a rule set is replaced, never edited, so the picture stays one
 * set). Printing 10,000 rules in one piece held the packet path for ~30-100 ms.
 */
export async function saveStateSliced(nf: Netfilter): Promise<string> {
  const fr4 = nf.rules(4);
  const fr6 = nf.rules(6);
  const extState = nf.state.exportAll();
  const state: SavedState = {
    format: FORMAT,
    ipv4: await runStepsSliced(saveTextSteps(fr4, { counters: true, persist: true })),
    ipv6: await runStepsSliced(saveTextSteps(fr6, { counters: true, persist: true })),
    state: extState,
  };
  return `${JSON.stringify(state, null, 1)}\n`;
}

/** What restoreState did besides restoring the rules, for the log: one line per thing not restored. */
export interface RestoreReport {
  notes: string[];
}

/**
 * Restores what saveState wrote: the saved extension state is handed to the
 * engine first, then the rules, whose checks declare their state and so load
 * its saved picture (aged by the downtime). A state file that does not parse
 * or whose rules are refused throws, leaving the engine as it was; a key
 * whose saved picture its extension refuses starts empty (logged by the
 * engine) and nothing else is lost. A file of the previous format
 * (xtr-netfilter/1) restores its rules; its extension state cannot be read
 * any more and is reported in the notes.
 */
export function restoreState(nf: Netfilter, text: string): RestoreReport {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`netfilter state: not JSON (${(e as Error).message})`);
  }
  const file = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
  const notes: string[] = [];
  let saved: SavedExtensionState | null = null;
  if (file.format === FORMAT) {
    saved = checkSavedState(file.state);
  } else if (file.format === FORMAT_V1) {
    const old = Object.keys((file.proc ?? {}) as object);
    if (old.length > 0) notes.push(`written by an older xtr (${FORMAT_V1}): extension state of ${old.join(', ')} not restored (rules are)`);
  } else {
    throw new Error(`netfilter state: unknown format ${JSON.stringify(file.format)} (expected ${FORMAT})`);
  }
  if (typeof file.ipv4 !== 'string' || typeof file.ipv6 !== 'string') throw new Error('netfilter state: "ipv4" and "ipv6" must be iptables-save texts');
  const families: [Family, string][] = [
    [4, file.ipv4],
    [6, file.ipv6],
  ];
  const before = families.map(([f]) => saveText(nf, f, { counters: true }));
  nf.state.expectSaved(saved);
  try {
    for (const [family, rules] of families) {
      if (rules.trim() === '') continue;
      // Put the tables in use in the saved order first, so iptables-save lists them as before the restart.
      const names = [...rules.matchAll(/^\*(\S+)/gm)].map((m) => m[1]).filter(isTableName);
      for (const name of names.reverse()) nf.touch(family, name);
      restore(nf, family, rules, { noflush: false, test: false, counters: true, table: null });
    }
  } catch (e) {
    nf.state.expectSaved(null);
    // Put back what the first family's restore may already have committed.
    families.forEach(([f], i) => {
      if (before[i].trim() !== '') restore(nf, f, before[i], { noflush: false, test: false, counters: true, table: null });
    });
    throw new Error(`netfilter state: ${e instanceof Error ? e.message : String(e)}`);
  }
  const unused = nf.state.expectSaved(null);
  if (unused.length > 0) notes.push(`saved state of ${unused.join(', ')} not restored: no rule declares it`);
  return { notes };
}

/** The "state" section of a saved file, or an error saying what is wrong with it (the whole file is refused). */
function checkSavedState(v: unknown): SavedExtensionState {
  const o = v as Partial<SavedExtensionState> | null;
  if (typeof o !== 'object' || o === null || typeof o.savedAt !== 'number' || !Number.isFinite(o.savedAt) || typeof o.entries !== 'object' || o.entries === null || Array.isArray(o.entries)) {
    throw new Error('netfilter state: "state" must be {savedAt: wall-clock ms, entries: {key: saved data}}');
  }
  return { savedAt: o.savedAt, entries: o.entries };
}
