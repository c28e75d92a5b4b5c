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
import { readFileSync, renameSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { extensionCommands, type CommandHandler, type CommandTable } from './commands.js';
import { writeFileDurable, writeFileDurableSync } from './durable.js';
import type { XtrConfig } from './config.js';
import { Conntrack, conntrackCommands, type ConntrackOptions } from './conntrack.js';
import { NatCore } from './conntrack/nat-core.js';
import type { Router } from './forward.js';
import type { Logger } from './log.js';
import { monotonicMs, Services } from './services.js';
import type { ApplianceAction } from '../xt/services.js';
import { Netfilter, netfilterCommands, restoreState, saveState, saveStateSliced } from './netfilter/index.js';
import { restore, RestoreError } from './netfilter/commands.js';
import type { ExtensionRegistry } from '../modules/registry.js';
import type { Extension } from '../xt/extension.js';
import { ClusterLink, formatClusterStatus } from './cluster/link.js';
import { ConntrackSync, ctSyncCommand } from './cluster/ct-sync.js';

export interface Appliance {
  readonly netfilter: Netfilter;
  readonly conntrack: Conntrack;
  readonly commands: CommandTable;
  /**
   * Writes rules and extension state now, synchronously and durably, as the
   * last save (SIGTERM, restart): periodic and asynchronous saves stop.
   */
  persist(): void;
  /** Runs every extension's reload (SIGHUP, `xtr reload-databases`): geoip/asn re-read their databases. */
  reloadDatabases(): string;
  /**
   * Config reload (router/reload.ts), the engine's part: checks `next` (stateSaveIntervalMs, the
   * rule files on the live engine in test mode) and returns what would change and the commit, or
   * throws naming the problem with nothing changed.
   */
  prepareReload(next: XtrConfig): EngineReload;
  /**
   * The process-level ApplianceActions (stop, restart, status), which only the
   * command-line entry point can carry out; set by router/main.ts. Until then
   * (an embedded appliance) they are not offered.
   */
  processActions: Partial<Record<'stop' | 'restart' | 'status', () => void>>;
  /** Issue 15: the NATS link of cluster mode (docs/cluster.md); null when `cluster` is not configured. */
  readonly cluster: ClusterLink | null;
}

export interface EngineReload {
  /** What the commit changes, as config paths with a word ("netfilter.rulesFiles.v4: re-loaded"). */
  readonly changed: readonly string[];
  /** Applies it: synchronous, between two packets. */
  commit(): void;
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

  // Rule files (issue 8 §5, docs/config.md `netfilter.rulesFiles`): applied over the saved state, as
  // `iptables-restore FILE` would be, before the router forwards its first packet. Throws (xtr refuses to start).
  let loadedRules = loadRulesFiles(netfilter, config, log);
  let settingsText = settingsKey(config);

  // GC, expiry and the like of every extension's declared state, on one unref'd timer.
  netfilter.state.startTimer();

  // Issue 15: cluster mode (docs/cluster.md). Connects in the background: forwarding never waits for NATS.
  let cluster: ClusterLink | null = null;
  if (config.cluster) {
    const svc = router.services;
    cluster = new ClusterLink(config.cluster, { now: () => svc.now(), wallNow: () => svc.wallNow() }, (level, msg) => log[level](msg));
    netfilter.state.setCluster(cluster);
    cluster.start();
  }
  // Issue 15 item 3: conntrack failover (router/cluster/ct-sync.ts) when `conntrack` is among cluster.shared.
  let ctSync: ConntrackSync | null = null;
  if (cluster) {
    const svc = router.services;
    ctSync = new ConntrackSync(conntrack, { now: () => svc.now(), wallNow: () => svc.wallNow() });
    if (!ctSync.start(cluster)) ctSync = null;
  }

  // Durability (issue 12). A control command that may change rules or extension
  // state answers only once the change is on disk (router/durable.ts: temp file,
  // fsync, rename, fsync of the directory). State that traffic changes (recent
  // lists, knock states, quota counters, rule counters ...) is saved every
  // `netfilter.stateSaveIntervalMs` (default 1000) and at SIGTERM, so a crash
  // loses at most that interval of it. While packets flow, saves are
  // asynchronous: the picture (saveState) is taken synchronously between two
  // packets, the write and both fsyncs run on libuv's thread pool, so a slow
  // disk never stalls forwarding.
  let intervalMs = stateSaveInterval(config.netfilter);
  let final = false;
  let lastWritten: string | null = null;
  const writeSync = (text: string) => {
    writeFileDurableSync(path, text, 0o600);
    lastWritten = text;
  };
  /** Synchronous durable save (the `save` command, SYSRQ, shutdown). */
  const saveNowSync = () => {
    try {
      writeSync(saveState(netfilter));
    } catch (e) {
      log.error({ path, err: (e as Error).message }, 'saving rules and extension state failed');
    }
  };
  // Asynchronous saves, one at a time, in order. A request while none is queued
  // queues one; a request while one is queued but has not yet taken its
  // picture shares it (its picture will include the request's change).
  let chain: Promise<unknown> = Promise.resolve();
  let queued: Promise<boolean> | null = null;
  const saveOnce = async (): Promise<boolean> => {
    if (final) return false;
    // Printed in slices (issue 12 §5): a large rule set's picture must not stall forwarding.
    const text = await saveStateSliced(netfilter);
    if (final) return false;
    if (text === lastWritten) return true;
    try {
      // No asynchronous rename may land after the final synchronous save.
      const renamed = await writeFileDurable(path, text, 0o600, () => !final);
      if (renamed) lastWritten = text;
      return renamed;
    } catch (e) {
      log.error({ path, err: (e as Error).message }, 'saving rules and extension state failed');
      return false;
    }
  };
  const requestSave = (): Promise<boolean> => {
    if (queued) return queued;
    const p = chain.then(() => {
      queued = null;
      return saveOnce();
    });
    queued = p;
    chain = p.catch(() => undefined);
    return p;
  };
  let ruleChange = false;
  netfilter.onChange = () => {
    ruleChange = true;
  };
  // Only while some extension keeps saved state: a large rule set is not
  // serialised every interval just for its counters (those are saved with
  // every command and at SIGTERM).
  const saveTick = () => {
    if (netfilter.state.hasSavedState()) void requestSave();
  };
  let periodic = setInterval(saveTick, intervalMs);
  periodic.unref();
  const persist = () => {
    // Shutdown or restart: the last picture, synchronously, and nothing asynchronous after it.
    final = true;
    clearInterval(periodic);
    saveNowSync();
  };
  /**
   * Wraps a command that may change rules or extension state so that it
   * answers only after a durable save that includes its change. `changes`
   * says from the arguments whether it may have changed anything besides the
   * rule set (which the engine's onChange reports itself).
   */
  const durable = (run: CommandHandler, changes: (args: string[]) => boolean): CommandHandler => async (args, input) => {
    ruleChange = false;
    const r = await run(args, input);
    if (!ruleChange && !changes(args)) return r;
    ruleChange = false;
    if (await requestSave()) return r;
    return { status: r.status === 0 ? 1 : r.status, stdout: r.stdout, stderr: `${r.stderr}xtr: the change is live but could not be saved to ${path} (see the log); it is lost at the next restart\n` };
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

  const nfCommands = netfilterCommands(netfilter);
  const zeroes = (args: string[]) => args.some((a) => a === '--zero' || /^-[A-Za-z]*Z/.test(a));
  for (const name of ['iptables', 'ip6tables', 'iptables-restore', 'ip6tables-restore']) {
    if (nfCommands[name]) nfCommands[name] = durable(nfCommands[name], name.endsWith('restore') ? () => false : zeroes);
  }
  if (nfCommands.proc) nfCommands.proc = durable(nfCommands.proc, (args) => args[0] === 'write');
  const extCommands = extensionCommands(registry.all(), netfilter.state);
  // An extension command may change its state (recent's flush, pknock's reset...): always saved before the answer.
  if (extCommands.ext) extCommands.ext = durable(extCommands.ext, () => true);
  const commands: CommandTable = {
    ...nfCommands,
    ...conntrackCommands(conntrack, monotonicMs),
    ...extCommands,
    'reload-databases': () => ({ status: 0, stdout: `${reloadDatabases()}\n`, stderr: '' }),
    cluster: (args) => {
      if (args[0] === 'commit' || args[0] === 'conntrack') return ctSyncCommand(ctSync, args);
      if (args.length === 0 || args[0] !== 'status' || args.length > 2 || (args.length === 2 && args[1] !== '--json')) {
        return { status: 2, stdout: '', stderr: 'usage: xtr cluster status [--json]\n' };
      }
      const st = cluster ? cluster.status() : null;
      if (args[1] === '--json') return { status: 0, stdout: `${JSON.stringify(st)}\n`, stderr: '' };
      return { status: 0, stdout: formatClusterStatus(st, Date.now()), stderr: '' };
    },
    save: async () => {
      if (await requestSave()) return { status: 0, stdout: `saved ${path}\n`, stderr: '' };
      return { status: 1, stdout: '', stderr: `xtr save: could not write ${path} (see the log)\n` };
    },
  };
  /**
   * Config reload: a rules file is applied again (as at start: `iptables-restore FILE`) when its
   * path or content changed since it was last loaded, or when the extension settings changed (its
   * rules are then checked with the new ones); an unchanged file is left alone, so a SIGHUP for the
   * geoip databases does not undo rules added with `xtr iptables`. Both files are tested on the live
   * engine before either is committed. A file no longer named leaves its rules in place.
   */
  const prepareReload = (next: XtrConfig): EngineReload => {
    const nextInterval = stateSaveInterval(next.netfilter);
    const nextSettingsText = settingsKey(next);
    const settingsChanged = nextSettingsText !== settingsText;
    const files = (next.netfilter.rulesFiles ?? {}) as { v4?: string; v6?: string };
    const changed: string[] = [];
    const reloadKeys: ('v4' | 'v6')[] = [];
    for (const key of ['v4', 'v6'] as const) {
      const was = loadedRules.find((l) => l.key === key);
      const path = files[key];
      if (path === undefined) {
        if (was) changed.push(`netfilter.rulesFiles.${key}: no longer named (the rules it loaded stay)`);
        continue;
      }
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (e) {
        throw new RulesFileError(`netfilter.rulesFiles.${key}: cannot read ${path}: ${(e as Error).message}`);
      }
      if (settingsChanged || !was || was.path !== path || was.text !== text) reloadKeys.push(key);
    }
    const nextSettings = { ...(next.extensions as Record<string, unknown>), ...(next.netfilter as Record<string, unknown>) };
    const only = { ...next, netfilter: { ...next.netfilter, rulesFiles: Object.fromEntries(reloadKeys.map((k) => [k, files[k]])) } } as XtrConfig;
    if (reloadKeys.length) {
      const before = netfilter.settingsInUse();
      netfilter.setSettings(nextSettings);
      try {
        loadRulesFiles(netfilter, only, log, false);
      } finally {
        netfilter.setSettings(before);
      }
    }
    for (const k of reloadKeys) changed.push(`netfilter.rulesFiles.${k}: re-loaded`);
    if (settingsChanged) changed.push('settings (extensions/netfilter): rules checked from now on use them');
    if (nextInterval !== intervalMs) changed.push(`netfilter.stateSaveIntervalMs: ${intervalMs} -> ${nextInterval}`);
    return {
      changed,
      commit() {
        const before = netfilter.settingsInUse();
        if (settingsChanged) netfilter.setSettings(nextSettings);
        if (reloadKeys.length) {
          let loaded: { key: string; path: string; text: string }[];
          try {
            // Tests both files again, then commits: throws with nothing changed.
            loaded = loadRulesFiles(netfilter, only, log);
          } catch (e) {
            netfilter.setSettings(before);
            throw e;
          }
          loadedRules = [...loadedRules.filter((l) => !reloadKeys.includes(l.key as 'v4' | 'v6')), ...loaded];
          void requestSave();
        }
        if (settingsChanged) settingsText = nextSettingsText;
        if (nextInterval !== intervalMs) {
          intervalMs = nextInterval;
          clearInterval(periodic);
          periodic = setInterval(saveTick, intervalMs);
          periodic.unref();
        }
      },
    };
  };

  const app: Appliance = { netfilter, conntrack, commands, persist, reloadDatabases, prepareReload, processActions: {}, cluster };

  // What an extension may ask of the appliance (SYSRQ's keys). Each action runs
  // after the packet that asked for it, in the order asked (setImmediate is FIFO).
  if (router.services instanceof Services) {
    // One queue: an action starts when the one asked before it has finished,
    // so a `save` is on disk before a following `restart`/`stop` (SYSRQ saves
    // its new sequence number first: a request cannot be replayed after the
    // restart it caused).
    let actions: Promise<void> = Promise.resolve();
    router.services.applianceHandler = (action: ApplianceAction): boolean => {
      let run: (() => unknown) | undefined;
      if (action === 'save') run = () => requestSave();
      else if (action === 'flush-conntrack') run = () => conntrack.flush();
      else run = app.processActions[action];
      if (!run) return false;
      log.warn({ action }, 'appliance action requested by an extension');
      const step = run;
      actions = actions
        .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
        .then(() => step())
        .then(
          () => undefined,
          (e: unknown) => log.error({ action, err: (e as Error).message }, 'appliance action failed'),
        );
      return true;
    };
  }
  return app;
}

/** The extension settings as one comparable text (the keys reload handles itself left out). */
function settingsKey(config: XtrConfig): string {
  const { rulesFiles: _r, stateSaveIntervalMs: _s, ...nf } = config.netfilter as Record<string, unknown>;
  return JSON.stringify([config.extensions, nf]);
}

/** `netfilter.stateSaveIntervalMs`: how often traffic-learned state is saved (the bound on what a crash loses). */
export const DEFAULT_STATE_SAVE_INTERVAL_MS = 1000;
export function stateSaveInterval(settings: Readonly<Record<string, unknown>>): number {
  const v = settings.stateSaveIntervalMs;
  if (v === undefined) return DEFAULT_STATE_SAVE_INTERVAL_MS;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 50 || v > 3_600_000) {
    throw new Error(`netfilter.stateSaveIntervalMs: ${JSON.stringify(v)} must be an integer number of milliseconds from 50 to 3600000`);
  }
  return v;
}

/** Error of a rules file: names the config key, the file and (in iptables-restore's words) the line. */
export class RulesFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RulesFileError';
  }
}

/**
 * `netfilter.rulesFiles` ({v4, v6}, both optional): each file is an iptables-save/-restore text applied as
 * `iptables-restore FILE` (without --noflush): the tables it names are replaced by its content, tables it does
 * not name keep their saved rules, extension state is kept. Both files are checked (test mode) before either is
 * committed, so a bad file leaves nothing half-loaded; the error names the key, the file and the line.
 */
export function loadRulesFiles(netfilter: Netfilter, config: XtrConfig, log: Logger, commit = true): { key: string; path: string; text: string }[] {
  const files = config.netfilter.rulesFiles as { v4?: string; v6?: string } | undefined;
  if (!files) return [];
  const loads: { key: string; family: 4 | 6; path: string; text: string }[] = [];
  for (const [key, family] of [['v4', 4], ['v6', 6]] as const) {
    const path = files[key];
    if (path === undefined) continue;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new RulesFileError(`netfilter.rulesFiles.${key}: cannot read ${path}: ${(e as Error).message}`);
    }
    loads.push({ key, family, path, text });
  }
  const attempt = (test: boolean) => {
    for (const l of loads) {
      try {
        const notices = restore(netfilter, l.family, l.text, { noflush: false, test, counters: false, table: null });
        if (!test && notices) log.warn({ path: l.path }, notices.trim());
      } catch (e) {
        // iptables-restore's own words ("... Error occurred at line: N" / "line N failed"), without its --help hint.
        const what = (e instanceof RestoreError ? e.text : (e as Error).message).split('\n').filter((l) => l.trim() !== '' && !l.startsWith('Try `')).join('\n');
        throw new RulesFileError(`netfilter.rulesFiles.${l.key}: ${l.path}: ${what.replace(/\n+/g, '; ')}`);
      }
    }
  };
  attempt(true);
  if (!commit) return loads;
  attempt(false);
  for (const l of loads) log.info({ path: l.path, family: l.family }, 'loaded rules file');
  return loads;
}

/**
 * The rule files checked on a throwaway engine (nothing committed anywhere). main.ts calls it before any device
 * opens, so a bad file refuses the start before traffic is steered (no TUN, no policy rule placed); buildAppliance
 * loads them for real later, before the first packet is forwarded.
 */
export function checkRulesFiles(config: XtrConfig, registry: ExtensionRegistry, log: Logger): void {
  if (!config.netfilter.rulesFiles) return;
  const services = new Services({ injectLocal() {} } as unknown as ConstructorParameters<typeof Services>[0], log);
  const settings = { ...(config.extensions as Record<string, unknown>), ...(config.netfilter as Record<string, unknown>) };
  loadRulesFiles(new Netfilter({ registry, services, settings }), config, log, false);
}
