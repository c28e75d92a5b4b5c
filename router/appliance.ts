/**
 * Assembles the appliance around the forwarding core: connection tracking,
 * the netfilter engine with every extension of modules/, their control
 * commands (`xtr ext ...`), each extension's reload on SIGHUP, the ticks of
 * extension state, and persistence of rules and extension state across
 * restarts.
 *
 * Kept apart from main.ts so that startXtr() stays usable without the rule
 * engine (tests of the forwarding core) and the engine without processes.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { extensionCommands, type CommandTable } from './commands.js';
import type { XtrConfig } from './config.js';
import { Conntrack, conntrackCommands, type ConntrackOptions } from './conntrack.js';
import { NatCore } from './conntrack/nat-core.js';
import type { Router } from './forward.js';
import type { Logger } from './log.js';
import { monotonicMs, Services } from './services.js';
import type { ApplianceAction } from '../xt/services.js';
import { Netfilter, netfilterCommands, restoreState, saveState } from './netfilter/index.js';
import type { ExtensionRegistry } from '../modules/registry.js';
import type { Extension } from '../xt/extension.js';

export interface Appliance {
  readonly netfilter: Netfilter;
  readonly conntrack: Conntrack;
  readonly commands: CommandTable;
  /** Writes rules and extension state now (SIGTERM, explicit save). */
  persist(): void;
  /** Runs every extension's reload (SIGHUP, `xtr reload-databases`): geoip/asn re-read their databases. */
  reloadDatabases(): string;
  /**
   * The process-level ApplianceActions (stop, restart, status), which only the
   * command-line entry point can carry out; set by router/main.ts. Until then
   * (an embedded appliance) they are not offered.
   */
  processActions: Partial<Record<'stop' | 'restart' | 'status', () => void>>;
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
  // Conntrack NAT (issue 8): the targets bind through services.nat, conntrack rewrites through the hook.
  const natCore = new NatCore(conntrack, () => router.services.random());
  conntrack.setNatHook(natCore);
  router.services.nat = natCore;
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
      const { notes } = restoreState(netfilter, readFileSync(path, 'utf8'));
      for (const note of notes) log.warn({ path }, `state file: ${note}`);
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

  // GC, expiry and the like of every extension's declared state, on one unref'd timer.
  netfilter.state.startTimer();

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

  // One reload per record (a file may register one record under several names or revisions).
  const reloaders = new Map<NonNullable<Extension['reload']>, string>();
  for (const ext of registry.all()) if (ext.reload && !reloaders.has(ext.reload)) reloaders.set(ext.reload, ext.name);
  const reloadDatabases = () => {
    const reports: string[] = [];
    for (const [reload, name] of reloaders) {
      try {
        reports.push(...reload(netfilter.state));
      } catch (e) {
        // One extension failing to reload must not stop the others.
        reports.push(JSON.stringify({ extension: name, error: (e as Error).message }));
      }
    }
    log.info({ reports }, 'extensions reloaded their external data');
    return reports.join('\n');
  };

  const commands: CommandTable = {
    ...netfilterCommands(netfilter),
    ...conntrackCommands(conntrack, monotonicMs),
    ...extensionCommands(registry.all(), netfilter.state),
    'reload-databases': () => ({ status: 0, stdout: `${reloadDatabases()}\n`, stderr: '' }),
    save: () => {
      persist();
      return { status: 0, stdout: `saved ${path}\n`, stderr: '' };
    },
  };
  const app: Appliance = { netfilter, conntrack, commands, persist, reloadDatabases, processActions: {} };

  // What an extension may ask of the appliance (SYSRQ's keys). Each action runs
  // after the packet that asked for it, in the order asked (setImmediate is FIFO).
  if (router.services instanceof Services) {
    router.services.applianceHandler = (action: ApplianceAction): boolean => {
      let run: (() => void) | undefined;
      if (action === 'save') run = persist;
      else if (action === 'flush-conntrack') run = () => conntrack.flush();
      else run = app.processActions[action];
      if (!run) return false;
      log.warn({ action }, 'appliance action requested by an extension');
      setImmediate(() => {
        try {
          run();
        } catch (e) {
          log.error({ action, err: (e as Error).message }, 'appliance action failed');
        }
      });
      return true;
    };
  }
  return app;
}
