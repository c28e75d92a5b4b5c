/**
 * The router process: `node dist/router/main.js [--config FILE] [--lab-prefix P] [--lab-mode M] [--socket PATH]`.
 *
 * Start-up order, each step undone in reverse on failure or shutdown:
 *   1. load and validate the config (embedded lab config when no --config);
 *   2. preflight checks that need no side effects (attach targets exist, names fit);
 *   3. open every TUN/TAP in xtr's own namespace, then place it (link mode:
 *      move into the peer namespace and configure the peer; gateway mode:
 *      policy routing) - router/placement.ts;
 *   4. the host interface carrying the router's own addresses (router/hostif.ts),
 *      except in gateway mode where the namespace's real interfaces own them;
 *   5. the Router (router/forward.ts), with the optional netfilter seam;
 *   6. the control socket with the built-in and any extra command tables.
 *
 * startXtr() is the seam the rule engine is wired through: it takes an
 * optional netfilter (or a factory given the router) and extra CommandTables.
 * Signals are handled only by the command-line entry point, so tests and
 * tools can embed startXtr() without it installing process handlers.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandTable } from './commands.js';
import { loadConfig, ConfigError, type XtrConfig } from './config.js';
import { configPathFromEnv } from './config-env.js';
import { defaultConfig } from './default-config.js';
import { ControlServer, ensureSocketFree, statusCommands, type InterfaceStatus, type StatusSnapshot } from './control.js';
import { configureHostInterface } from './hostif.js';
import { createLogger, type Logger } from './log.js';
import { Placement } from './placement.js';
import { Router, type Netfilter } from './forward.js';
import { Services } from './services.js';
import { nflogStream } from './packet-log.js';
import { NatCore, type HostNatPorts } from './conntrack/nat-core.js';
import { parsePrefix } from './routing.js';
import { openTun, type TunDevice } from '../dataplane/tun.js';
import { offloadStatus } from './offloads-config.js';
import { buildAppliance, checkRulesFiles, type Appliance } from './appliance.js';
import type { ClusterStatus } from './cluster/link.js';
import { HealthMonitor, healthCommands } from './health.js';
import { ruleCounterRows, startMetrics, type ConntrackCounters, type MetricsServer, type RuleCounterRow } from './metrics.js';
import { extensions } from '../modules/registry.js';
import { controlAudit, recordAudit } from './audit.js';
import { DropEvents } from './drop-events.js';
import { reloadConfig, type ReloadOutcome } from './reload.js';
import { updateHostInterface } from './hostif.js';
import type { EngineReload } from './appliance.js';
import { syslogSinks } from './log.js';
import type { PacketDevice } from '../dataplane/device.js';
import { conntrackReport, type ConntrackReport } from './conntrack/list.js';
import { Conntrack } from './conntrack/table.js';

/** Issue 12: the table in `xtr status` (absent before the appliance has one). */
function ctStatus(ct: ConntrackCounters | null): ConntrackReport | undefined {
  return ct instanceof Conntrack ? conntrackReport(ct) : undefined;
}

type NetfilterArg = Netfilter;

export interface StartOptions {
  config: XtrConfig;
  /** Overrides config.control.socket. */
  socketPath?: string;
  logger?: Logger;
  /** The rule engine, or a factory that needs the router (its services) first. */
  netfilter?: NetfilterArg | ((router: Router) => NetfilterArg);
  /** Extra control commands (iptables, iptables-save, proc, ...), or factories given the router. */
  commands?: readonly (CommandTable | ((router: Router) => CommandTable))[];
  /** Extensions' declared state for `xtr status` (the appliance's engine). */
  stateReport?: () => StatusSnapshot['state'];
  /** Issue 13: the conntrack table whose counters the metrics report (the appliance's). */
  conntrack?: () => ConntrackCounters | null;
  /** Issue 13 config reload: reads and validates the config file again; absent: `xtr reload` is refused. */
  readConfig?: () => XtrConfig;
  /** Issue 13 config reload: the rule engine's part (the appliance's prepareReload). */
  engineReload?: (next: XtrConfig) => EngineReload | null;
  /** Every rule's counters, for `metrics.ruleCounters` (absent: no rule engine). */
  ruleCounters?: () => readonly RuleCounterRow[];
  /** Issue 15: the cluster link's figures for the metrics (absent or null: cluster mode off). */
  clusterStatus?: () => ClusterStatus | null;
}

export interface XtrEvents {
  /** SIGHUP: reload external data (geoip databases, ...). Listeners may be async; errors are logged. */
  reload: [];
}

export interface XtrInstance {
  /** The config in force (the reloaded one after a successful reload). */
  readonly config: XtrConfig;
  readonly router: Router;
  readonly control: ControlServer;
  readonly socketPath: string;
  /** 'reload' on SIGHUP; whoever owns reloadable state subscribes. */
  readonly events: EventEmitter<XtrEvents>;
  /** What SIGHUP and `xtr reload` do: the config file again (when started from one), then the reload listeners. */
  reload(origin?: string): Promise<ReloadOutcome | null>;
  status(): StatusSnapshot;
  /** Stops forwarding, closes the socket and devices, removes policy rules. Idempotent. */
  stop(): Promise<void>;
}

export function packageVersion(): string {
  try {
    let dir = dirname(fileURLToPath(import.meta.url));
    for (let i = 0; i < 4; i++) {
      try {
        return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
      } catch {
        dir = dirname(dir);
      }
    }
  } catch {
    /* fall through */
  }
  return 'unknown';
}

export async function startXtr(opts: StartOptions): Promise<XtrInstance> {
  const config = opts.config;
  const log = opts.logger ?? createLogger({ level: config.logLevel });
  const socketPath = opts.socketPath ?? config.control.socket;
  const placement = new Placement(log, { failOpen: config.failOpen });
  const devices = new Map<string, PacketDevice>();
  const deviceLabel = new Map<string, string>();
  const opened: TunDevice[] = [];
  let host: TunDevice | null = null;
  let router: Router | null = null;
  let control: ControlServer | null = null;
  let metricsServer: MetricsServer | null = null;
  let rulesInstalled = false;
  const startedAt = process.hrtime.bigint();

  const undo = async () => {
    if (control) await control.close().catch(() => undefined);
    if (router) {
      try {
        router.stop();
      } catch (e) {
        log.warn({ err: String(e) }, 'router stop failed');
      }
    }
    for (const d of opened) d.close();
    if (host) host.close();
    await placement.teardown();
  };

  try {
    await ensureSocketFree(socketPath);
    await Placement.preflight(config.interfaces);
    const gateway = config.interfaces.some((i) => i.attach);
    for (const iface of config.interfaces) {
      const devName = Placement.deviceName(iface);
      let dev: TunDevice;
      try {
        dev = openTun(devName, { kind: iface.mode, offloads: config.offloads, queues: config.workers });
      } catch (e) {
        throw new Error(`interface ${iface.name}: cannot open ${iface.mode} device ${devName}: ${(e as Error).message}`);
      }
      opened.push(dev);
      devices.set(iface.name, dev);
      if (iface.peer) {
        await placement.placeLink(iface);
        deviceLabel.set(iface.name, `${iface.peer.ifname}@${iface.peer.netns}`);
      } else if (iface.attach) {
        await placement.placeGateway(iface);
        deviceLabel.set(iface.name, `${devName}<-${iface.attach}`);
      } else {
        // Neither placement: the device stays here, configured by the operator.
        await placement.bringUp(devName, iface.mtu);
        deviceLabel.set(iface.name, devName);
      }
    }
    if (!gateway) {
      const hostName = config.hostInterface.name;
      try {
        // issue 14: super-packets delivered locally are written whole; the host's own output is read without offloads
        host = openTun(hostName, { kind: 'tun', offloads: { ...config.offloads, csum: false } });
      } catch (e) {
        throw new Error(`hostInterface: cannot open tun device ${hostName}: ${(e as Error).message}`);
      }
      await configureHostInterface({
        name: hostName,
        mtu: config.hostInterface.mtu,
        interfaces: config.interfaces,
        routes: config.routes,
      });
    } else {
      log.info('gateway mode: no host interface; the namespace\'s own interfaces deliver local traffic');
    }

    const r = new Router({ config, devices, host, logger: log, workers: config.workers });
    router = r;
    if (opts.netfilter) {
      const nf = typeof opts.netfilter === 'function' ? (opts.netfilter as (router: Router) => NetfilterArg)(r) : opts.netfilter;
      r.setNetfilter(nf);
      rulesInstalled = true;
    }
    if (gateway) {
      // Gateway-mode NAT (docs/gateway.md "NAT"): SNAT to the gateway's own addresses takes
      // ports from gateway.natPorts, whose replies policy routing diverts into xtr.
      const own = config.interfaces.filter((i) => i.attach).flatMap((i) => i.addresses);
      if (r.services.nat instanceof NatCore) r.services.nat.hostPorts = hostNatPorts(own, config.gateway.natPorts);
      await placement.placeGatewayNat(own, config.gateway.natPorts, config.gateway.forwardPorts);
    }
    r.start();

    const status = (): StatusSnapshot => {
      const rs = r.status();
      const interfaces: InterfaceStatus[] = rs.interfaces.map((e) => ({
        name: e.name,
        kind: e.kind,
        device: e.kind === 'host' ? (host?.name ?? e.name) : (deviceLabel.get(e.name) ?? e.name),
        mtu: e.mtu,
        addresses: e.addresses,
        stats: { rxPackets: e.rxPackets, rxBytes: e.rxBytes, txPackets: e.txPackets, txBytes: e.txBytes, txDropped: e.txDropped },
        offloads: offloadStatus(e.kind === 'host' ? host : devices.get(e.name)),
        drops: e.drops,
      }));
      return {
        version: packageVersion(),
        pid: process.pid,
        uptimeSeconds: Number(process.hrtime.bigint() - startedAt) / 1e9,
        interfaces,
        drops: rs.drops,
        routes: rs.routes,
        neighbors: Object.fromEntries(rs.interfaces.filter((e) => e.neighbors).map((e) => [e.name, e.neighbors!])),
        router: { running: rs.running, icmpErrorsSent: rs.icmpErrorsSent, icmpRateLimited: rs.icmpRateLimited, readBatches: rs.readBatches, workers: rs.workers },
        state: opts.stateReport?.(),
        metrics: metricsServer ? { url: metricsServer.url, healthz: metricsServer.healthUrl } : undefined,
        conntrack: ctStatus(opts.conntrack?.() ?? null),
      };
    };

    const c = new ControlServer(socketPath, log, config.control);
    control = c;
    c.register(statusCommands(status));
    // `xtr events`: the router's general event stream (services.event).
    if (r.services instanceof Services) c.setEventSource(r.services.events);
    // Issue 13: every rule/state change through the socket is audited (router/audit.ts); drops by reason are events.
    const hub = r.services instanceof Services ? r.services.events : null;
    c.audit = controlAudit(log, hub);
    const dropEvents = hub ? new DropEvents(r, hub, log) : null;
    dropEvents?.setInterval(config.events.dropIntervalMs);
    // `xtr nflog -g N`: NFLOG's packet log (router/packet-log.ts), a stream like events.
    if (r.services instanceof Services) c.registerStream('nflog', nflogStream(r.services.packetLog));
    for (const t of opts.commands ?? []) c.register(typeof t === 'function' ? t(r) : t);
    // Issue 13: `xtr health`, and /metrics + /healthz when the config asks (router/health.ts, metrics.ts).
    const health = new HealthMonitor(
      { config, gateway, running: () => r.status().running, rulesLoaded: () => rulesInstalled },
      config.metrics?.maxEventLoopLagMs ?? 1000,
    );
    health.start();
    c.register(healthCommands(health));
    // Issue 13 config reload (router/reload.ts): SIGHUP and `xtr reload`.
    let current = config;
    let reloading: Promise<ReloadOutcome | null> = Promise.resolve(null);
    const reloadOnce = (): Promise<ReloadOutcome | null> => {
      const readConfig = opts.readConfig;
      if (!readConfig) return Promise.resolve(null);
      return reloadConfig({
        current: () => current,
        read: readConfig,
        engine: (next) => opts.engineReload?.(next) ?? null,
        async prepareMetrics(next) {
          const start = (cfg: NonNullable<XtrConfig['metrics']>) =>
            startMetrics(cfg, { status, conntrack: opts.conntrack ?? (() => null), health, rules: cfg.ruleCounters ? opts.ruleCounters : undefined, cluster: opts.clusterStatus }, log);
          // Another address: bound beside the old one first, so a bind failure refuses the reload.
          // The same address (rule counters switched): only after the old one is closed.
          const sameAddress = next.metrics && current.metrics && next.metrics.host === current.metrics.host && next.metrics.port === current.metrics.port;
          const fresh = next.metrics && !sameAddress ? await start(next.metrics) : null;
          return {
            commit: async () => {
              const was = metricsServer;
              metricsServer = fresh;
              await was?.close();
              if (sameAddress) metricsServer = await start(next.metrics!);
            },
            abort: async () => void (await fresh?.close()),
          };
        },
        reconfigureRouter: (next) => r.reconfigure(next),
        updateHost: async (old, next) => {
          if (!host) return;
          const spec = (cfg: XtrConfig) => ({ name: cfg.hostInterface.name, mtu: cfg.hostInterface.mtu, interfaces: cfg.interfaces, routes: cfg.routes });
          await updateHostInterface(spec(old), spec(next));
        },
        setLogLevel: (level) => (log.level = level),
        setDropInterval: (ms) => dropEvents?.setInterval(ms),
        adopt: (next) => (current = next),
      });
    };
    /** Config reloads one at a time (a SIGHUP during `xtr reload` waits its turn). */
    const reloadSerial = (): Promise<ReloadOutcome | null> => {
      const p = reloading.then(reloadOnce, reloadOnce);
      reloading = p.catch(() => null);
      return p;
    };
    c.register({
      // `xtr reload`: what SIGHUP does, with the outcome as the answer (exit 1 and why when refused).
      reload: async (args) => {
        if (args.length) return { status: 2, stdout: '', stderr: `xtr reload: takes no arguments (usage: xtr reload)\n` };
        const out = await instanceReload('xtr reload');
        if (!out) {
          return { status: 1, stdout: '', stderr: 'xtr reload: the router was started without a config file (the embedded lab configuration): nothing to re-read; extension data was reloaded\n' };
        }
        if (!out.ok) {
          const kept = out.committed ? '' : 'xtr reload: the running configuration is unchanged\n';
          return { status: 1, stdout: '', stderr: `xtr reload: ${out.error!.split('\n').join('\nxtr reload: ')}\n${kept}` };
        }
        return { status: 0, stdout: out.changed.length ? `reloaded: ${out.changed.length} change(s)\n${out.changed.map((l) => `  ${l}\n`).join('')}` : 'reloaded: no change\n', stderr: '' };
      },
    });
    // The metrics endpoint is bound before the control socket answers: a client that
    // sees the socket (the lab, `xtr status`) then finds status.metrics filled in.
    if (config.metrics) {
      const rules = config.metrics.ruleCounters ? opts.ruleCounters : undefined;
      metricsServer = await startMetrics(config.metrics, { status, conntrack: opts.conntrack ?? (() => null), health, rules, cluster: opts.clusterStatus }, log);
    }
    const stopHealth = async () => {
      dropEvents?.stop();
      health.stop();
      await metricsServer?.close();
      metricsServer = null;
    };
    try {
      await c.listen();
    } catch (e) {
      await stopHealth();
      throw e;
    }

    const events = new EventEmitter<XtrEvents>();
    let stopped: Promise<void> | null = null;
    const runReloadListeners = async () => {
      for (const l of events.listeners('reload')) {
        try {
          await (l as () => unknown)();
        } catch (e) {
          log.error({ err: e instanceof Error ? e.stack : String(e) }, 'reload listener failed');
        }
      }
    };
    /** The config file (when there is one), then the reload listeners (geoip/asn databases), as SIGHUP. */
    async function instanceReload(origin: string): Promise<ReloadOutcome | null> {
      const out = await reloadSerial();
      if (out) {
        const where = { origin, changed: out.changed };
        if (out.ok) log.info(where, out.changed.length ? 'configuration reloaded' : 'configuration reloaded: no change');
        else log.error({ ...where, err: out.error }, out.committed ? 'configuration reloaded with errors' : 'configuration reload refused; the running configuration is kept');
        // A signal has no control connection to audit: the reload is its own audit record.
        if (origin.startsWith('SIG')) recordAudit(log, hub, { audit: true, argv: ['reload'], exitStatus: out.ok ? 0 : 1, signal: origin, changed: out.changed, ...(out.error ? { error: out.error } : {}) });
      }
      await runReloadListeners();
      return out;
    }
    const instance: XtrInstance = {
      get config() {
        return current;
      },
      router: r,
      control: c,
      socketPath,
      events,
      status,
      reload: (origin = 'SIGHUP') => instanceReload(origin),
      stop() {
        stopped ??= stopHealth().then(undo).then(() => log.info('xtr stopped'));
        return stopped;
      },
    };
    log.info({ interfaces: config.interfaces.map((i) => i.name), socket: socketPath, pid: process.pid }, 'xtr running');
    return instance;
  } catch (e) {
    await undo();
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Command-line entry point.

const USAGE = `usage: node dist/router/main.js [--config FILE] [--lab-prefix P] [--lab-mode tun|tap] [--socket PATH] [--log-level L]
  --config FILE      JSON or YAML configuration (default: the embedded lab configuration)
  --lab-prefix P     namespace prefix of the embedded lab configuration (default xtr-)
  --lab-mode M       tun (default) or tap: the embedded lab's interface mode
  --state-dir DIR    overrides the config's stateDir (saved rule sets, extension state)
  --socket PATH      control socket (default: config control.socket, /run/xtr/xtr.sock)
  --log-level L      overrides the config's logLevel
environment (docs/config.md "Environment overrides"; a flag wins over its variable):
  XTR_CONFIG         the configuration file when no --config (and no --lab-*) is given
  XTR_LOG_LEVEL, XTR_STATE_DIR, XTR_SOCKET, XTR_RULES_V4, XTR_RULES_V6, XTR_METRICS_LISTEN,
  XTR_FAIL_OPEN, XTR_NAT_PORTS, XTR_FORWARD_PORTS   override the file's settings
`;

export interface MainArgs {
  config?: string;
  labPrefix?: string;
  labMode?: string;
  stateDir?: string;
  socket?: string;
  logLevel?: string;
}

export function parseMainArgs(argv: readonly string[]): MainArgs {
  const out: MainArgs = {};
  const keys: Record<string, keyof MainArgs> = {
    '--config': 'config',
    '-c': 'config',
    '--lab-prefix': 'labPrefix',
    '--lab-mode': 'labMode',
    '--state-dir': 'stateDir',
    '--socket': 'socket',
    '--log-level': 'logLevel',
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let value: string | undefined;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      value = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    const key = keys[a];
    if (!key) throw new UsageError(`unknown argument ${JSON.stringify(argv[i])}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      value = argv[++i];
    }
    out[key] = value;
  }
  if (out.config && (out.labPrefix || out.labMode)) {
    throw new UsageError(`${out.labPrefix ? '--lab-prefix' : '--lab-mode'} applies to the embedded configuration only; not with --config`);
  }
  if (out.labMode !== undefined && out.labMode !== 'tun' && out.labMode !== 'tap') {
    throw new UsageError(`--lab-mode ${JSON.stringify(out.labMode)}: must be tun or tap`);
  }
  return out;
}

class UsageError extends Error {}

async function cliEntry(): Promise<void> {
  let args: MainArgs;
  try {
    const argv = process.argv.slice(2);
    if (argv.includes('--help') || argv.includes('-h')) {
      process.stdout.write(USAGE);
      return;
    }
    args = parseMainArgs(argv);
  } catch (e) {
    process.stderr.write(`xtr: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  let config: XtrConfig;
  let configPath: string | undefined;
  try {
    // XTR_CONFIG (issue 13 §6): the image sets it, so `docker run -e XTR_CONFIG=...` picks another file.
    configPath = args.config ?? (args.labPrefix || args.labMode ? undefined : configPathFromEnv(process.env));
    config = configPath ? loadConfig(configPath) : defaultConfig({ prefix: args.labPrefix ?? 'xtr-', mode: (args.labMode as 'tun' | 'tap' | undefined) ?? 'tun' });
    if (args.stateDir) config = { ...config, stateDir: args.stateDir };
  } catch (e) {
    const what = e instanceof ConfigError ? 'configuration error' : 'cannot load configuration';
    process.stderr.write(`xtr: ${what}: ${(e as Error).message}\n`);
    process.exit(1);
  }
  const log = createLogger({ level: args.logLevel ?? config.logLevel, time: config.log.time, levels: config.log.levels, syslog: config.log.syslog });
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    log.warn('not running as root: opening TUN/TAP devices and configuring namespaces need CAP_NET_ADMIN');
  }
  let xtr: XtrInstance;
  let app: Appliance | null = null;
  // SIGHUP's default action ends the process: one that arrives during start-up
  // (the control socket already answers) is held here and carried out once the
  // router is started, instead of killing it.
  let heldHup = false;
  const holdHup = () => {
    heldHup = true;
  };
  process.on('SIGHUP', holdHup);
  try {
    // Extensions load before any device opens: the rule engine is in place
    // (with the saved rules restored) before the first packet is forwarded.
    const registry = await extensions();
    // netfilter.rulesFiles: a bad file refuses the start before any device opens or traffic is steered.
    checkRulesFiles(config, registry, log);
    xtr = await startXtr({
      config,
      socketPath: args.socket,
      logger: log,
      netfilter: (router) => (app = buildAppliance(config, router, log, registry)).netfilter,
      commands: [() => app!.commands],
      stateReport: () => app?.netfilter.state.report(),
      conntrack: () => app?.conntrack ?? null,
      // Issue 13: SIGHUP / `xtr reload` read the same file with the same flags and XTR_* variables.
      readConfig: configPath
        ? () => {
            let next = loadConfig(configPath!);
            if (args.stateDir) next = { ...next, stateDir: args.stateDir };
            if (args.logLevel) next = { ...next, logLevel: args.logLevel };
            return next;
          }
        : undefined,
      engineReload: (next) => app?.prepareReload(next) ?? null,
      ruleCounters: () => (app ? ruleCounterRows(app.netfilter) : []),
      clusterStatus: () => app?.cluster?.status() ?? null,
    });
  } catch (e) {
    log.fatal({ err: e instanceof Error ? e.message : String(e) }, 'xtr failed to start');
    process.stderr.write(`xtr: failed to start: ${(e as Error).message}\n`);
    process.exit(1);
  }
  let stopping = false;
  const shutdown = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, 'shutting down');
    // A second signal or a hung teardown must not keep the process around forever.
    setTimeout(() => process.exit(1), 10_000).unref();
    app?.persist();
    xtr.stop().then(
      // The syslog copy's last lines (router/syslog.ts) are handed to logger before the exit.
      () => Promise.all([...syslogSinks].map((s) => s.close())).finally(() => process.exit(0)),
      (e) => {
        log.error({ err: String(e) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // ApplianceActions only the process can carry out (SYSRQ's o, b, t).
  const appliance = app as Appliance | null;
  if (appliance) {
    appliance.processActions.stop = () => shutdown('appliance action stop');
    appliance.processActions.restart = () => restart();
    appliance.processActions.status = () => log.info({ status: xtr.status() }, 'status');
  }
  // Restart: save, undo everything (devices, socket), then the same command again.
  // process.execve (Node >= 22.15, the Docker image) keeps the pid, so a container
  // whose PID 1 is xtr survives; on older Node a detached child takes over.
  const restart = () => {
    if (stopping) return;
    stopping = true;
    log.info('restarting');
    setTimeout(() => process.exit(1), 10_000).unref();
    app?.persist();
    xtr.stop().then(
      () => {
        const argv = [...process.execArgv, ...process.argv.slice(1)];
        const execve = (process as unknown as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
        if (typeof execve === 'function') execve(process.execPath, [process.execPath, ...argv], process.env);
        const child = spawn(process.execPath, argv, { detached: true, stdio: 'inherit' });
        child.unref();
        log.info({ pid: child.pid }, 'restarted as a new process');
        process.exit(0);
      },
      (e) => {
        log.error({ err: String(e) }, 'restart failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  xtr.events.on('reload', () => {
    app?.reloadDatabases();
  });
  const onHup = () => {
    log.info({ listeners: xtr.events.listenerCount('reload') }, 'SIGHUP: reloading');
    void xtr.reload('SIGHUP');
  };
  process.on('SIGHUP', onHup);
  process.off('SIGHUP', holdHup);
  if (heldHup) onHup();
}

function isEntryPoint(): boolean {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(fileURLToPath(import.meta.url)) === realpathSync(resolve(process.argv[1]));
  } catch {
    return false;
  }
}
const isEntry = isEntryPoint();
if (isEntry) await cliEntry();

/** The gateway's own addresses (attached interfaces' configured ones) as NatCore's HostNatPorts. */
function hostNatPorts(addrs: readonly string[], ports: readonly [number, number]): HostNatPorts {
  const v4 = new Set<number>();
  const v6 = new Set<string>();
  for (const a of addrs) {
    const p = parsePrefix(a, true);
    if (p === null) continue;
    if (p.family === 4) v4.add(p.addr >>> 0);
    else v6.add(Array.from(p.addr).join(','));
  }
  return {
    lo: ports[0],
    hi: ports[1],
    owns: (family, addr) => (family === 4 ? v4.has(addr[0] >>> 0) : v6.has(Array.from(addr).join(','))),
  };
}
