/**
 * The rule engine's front door for main.ts: build the engine from the
 * extensions in modules/, get its commands, and persist/restore it.
 *
 *   const nf = await createNetfilter({ services, conntrack });
 *   router.setNetfilter(nf);                 // nf.hook(hook, pkt)
 *   control.register(netfilterCommands(nf));
 *   nf.onChange = () => writeFileSync(path, saveState(nf));
 *   restoreState(nf, readFileSync(path, 'utf8'));   // at start
 */
import type { RouterServices } from '../../xt/extension.js';
import { extensions, type ExtensionRegistry } from '../../modules/registry.js';
import type { Family } from '../../xt/packet.js';
import { restore, saveText } from './commands.js';
import { isTableName } from './model.js';
import { Netfilter, type ConntrackHooks } from './engine.js';

export { Netfilter, type ConntrackHooks } from './engine.js';
export { netfilterCommands, runIptables, runRestore, runSave, runProc, saveText } from './commands.js';

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

/** What saveState writes: both families' rules with counters, and extension state by proc path. */
interface SavedState {
  format: 'xtr-netfilter/1';
  ipv4: string;
  ipv6: string;
  proc: Record<string, string>;
}

/** The rule sets (iptables-save -c text of every table in use) and extension state, as one JSON text. */
export function saveState(nf: Netfilter): string {
  const proc: Record<string, string> = {};
  for (const path of nf.proc.paths()) {
    const f = nf.proc.get(path);
    if (f?.exportState) proc[path] = f.exportState();
  }
  const state: SavedState = {
    format: 'xtr-netfilter/1',
    ipv4: saveText(nf, 4, { counters: true }),
    ipv6: saveText(nf, 6, { counters: true }),
    proc,
  };
  return `${JSON.stringify(state, null, 1)}\n`;
}

/**
 * Restores what saveState wrote: rules first (their checks create the
 * extension state), then each proc file's state. A state file that does
 * not parse or whose rules are refused throws, leaving the engine as it was.
 */
export function restoreState(nf: Netfilter, text: string): void {
  const state = JSON.parse(text) as SavedState;
  if (state.format !== 'xtr-netfilter/1') throw new Error(`netfilter state: unknown format ${String(state.format)}`);
  const families: [Family, string][] = [
    [4, state.ipv4],
    [6, state.ipv6],
  ];
  const before = families.map(([f]) => saveText(nf, f, { counters: true }));
  try {
    for (const [family, rules] of families) {
      if (rules.trim() === '') continue;
      // Put the tables in use in the saved order first, so iptables-save lists them as before the restart.
      const names = [...rules.matchAll(/^\*(\S+)/gm)].map((m) => m[1]).filter(isTableName);
      for (const name of names.reverse()) nf.touch(family, name);
      restore(nf, family, rules, { noflush: false, test: false, counters: true, table: null });
    }
  } catch (e) {
    // Put back what the first family's restore may already have committed.
    families.forEach(([f], i) => {
      if (before[i].trim() !== '') restore(nf, f, before[i], { noflush: false, test: false, counters: true, table: null });
    });
    throw new Error(`netfilter state: ${e instanceof Error ? e.message : String(e)}`);
  }
  for (const [path, data] of Object.entries(state.proc ?? {})) nf.proc.get(path)?.importState?.(data);
}
