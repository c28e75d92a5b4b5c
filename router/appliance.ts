/**
 * Assembles the appliance around the forwarding core: connection tracking,
 * the netfilter engine with every extension of modules/, their control
 * commands, the geoip/asn reload on SIGHUP, and persistence of rules and
 * extension state across restarts.
 *
 * Kept apart from main.ts so that startXtr() stays usable without the rule
 * engine (tests of the forwarding core) and the engine without processes.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandTable } from './commands.js';
import type { XtrConfig } from './config.js';
import { Conntrack, conntrackCommands, type ConntrackOptions } from './conntrack.js';
import type { Router } from './forward.js';
import type { Logger } from './log.js';
import { monotonicMs } from './services.js';
import { Netfilter, netfilterCommands, restoreState, saveState } from './netfilter/index.js';
import type { ExtensionRegistry } from '../modules/registry.js';
import { reloadAll } from '../geoip-db/loader.js';

export interface Appliance {
  readonly netfilter: Netfilter;
  readonly conntrack: Conntrack;
  readonly commands: CommandTable;
  /** Writes rules and extension state now (SIGTERM, explicit save). */
  persist(): void;
  /** Re-reads geoip/asn databases in use (SIGHUP). */
  reloadDatabases(): string;
}

/** Where rules and extension state live between runs. */
export function stateFile(config: XtrConfig): string {
  return join(config.stateDir, 'netfilter.json');
}

/**
 * Builds conntrack + netfilter for `router` (extensions already loaded into `registry`), restores the previous state
 * from config.stateDir (a state file that no longer loads is kept aside and
 * reported, never silently dropped), and saves again after every change.
 */
export function buildAppliance(config: XtrConfig, router: Router, log: Logger, registry: ExtensionRegistry): Appliance {
  const ctSettings = (config.netfilter.conntrack ?? {}) as ConntrackOptions;
  const conntrack = new Conntrack(ctSettings);
  // Synchronous so the engine is in place before the router forwards its first packet.
  const netfilter = new Netfilter({
    registry,
    services: router.services,
    conntrack,
    settings: { ...(config.extensions as Record<string, unknown>), ...(config.netfilter as Record<string, unknown>) },
  });

  const path = stateFile(config);
  if (existsSync(path)) {
    try {
      restoreState(netfilter, readFileSync(path, 'utf8'));
      log.info({ path }, 'restored rules and extension state');
    } catch (e) {
      const aside = `${path}.rejected-${Date.now()}`;
      try {
        renameSync(path, aside);
      } catch {
        /* keep going: the error below says what happened */
      }
      log.error({ path, kept: aside, err: (e as Error).message }, 'saved state could not be restored; starting with an empty rule set');
    }
  }

  let saveQueued = false;
  const persist = () => {
    saveQueued = false;
    try {
      mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
      const tmp = `${path}.tmp-${process.pid}`;
      writeFileSync(tmp, saveState(netfilter), { mode: 0o600 });
      renameSync(tmp, path);
    } catch (e) {
      log.error({ path, err: (e as Error).message }, 'saving rules and extension state failed');
    }
  };
  // One write per burst of changes (a script of 50 iptables commands).
  netfilter.onChange = () => {
    if (saveQueued) return;
    saveQueued = true;
    setTimeout(persist, 200).unref();
  };

  const reloadDatabases = () => {
    const reports = reloadAll();
    const text = reports.map((r) => JSON.stringify(r)).join('\n');
    log.info({ reports }, 'geoip/asn databases reloaded');
    return text;
  };

  const commands: CommandTable = {
    ...netfilterCommands(netfilter),
    ...conntrackCommands(conntrack, monotonicMs),
    'reload-databases': () => ({ status: 0, stdout: `${reloadDatabases()}\n`, stderr: '' }),
    save: () => {
      persist();
      return { status: 0, stdout: `saved ${path}\n`, stderr: '' };
    },
  };
  return { netfilter, conntrack, commands, persist, reloadDatabases };
}
