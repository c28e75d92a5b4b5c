/**
 * Config reload (issue 13 §3): SIGHUP and `xtr reload` re-read the config file the router was
 * started with and apply what changed, or refuse and keep what runs.
 *
 * The transaction, in order:
 *   1. read and validate the whole file (router/config.ts; YAML errors, bad values);
 *   2. refuse anything that cannot change at run time, naming each field ("restart needed"):
 *      the interface list and each interface's mode, MTU, MAC, device, attach and peer, the host
 *      interface, the control socket, stateDir, gateway, failOpen, offloads, workers, netfilter.conntrack,
 *      metrics.maxEventLoopLagMs, log.time/levels/syslog, and the addresses of gateway-mode
 *      (attach) interfaces (the kernel's interfaces own those);
 *   3. prepare, with nothing changed yet: the engine checks the rule files on the live rule set in
 *      test mode (appliance prepareReload), a changed metrics address is bound beside the old one;
 *   4. commit, synchronously between two packets: addresses and routes (new tables built aside
 *      and swapped: Router.reconfigure), rules (both files already tested), settings, log level;
 *   5. then what needs the kernel or timers: the host interface's addresses and routes
 *      (link mode), the old metrics listener closed, the drop-event interval.
 * A failure in 1-3 changes nothing; the error is logged and returned (`xtr reload` exits 1 with it).
 * Step 5 cannot be undone by then: a failure there is reported as such ("applied, but ...").
 */
import type { InterfaceConfig, XtrConfig } from './config.js';

/** A field that changed in a way the running router cannot take. */
export interface Refusal {
  readonly path: string;
  readonly why: string;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

function ifaceShape(i: InterfaceConfig) {
  return { mode: i.mode, mtu: i.mtu, mac: i.mac, device: i.device, attach: i.attach, peer: i.peer };
}

/** What the metrics listener is made of (a change restarts it). */
export function metricsKey(c: XtrConfig): unknown {
  return c.metrics ? { host: c.metrics.host, port: c.metrics.port, ruleCounters: c.metrics.ruleCounters } : null;
}
const metricsText = (c: XtrConfig) => (c.metrics ? `${c.metrics.host.includes(':') ? `[${c.metrics.host}]` : c.metrics.host}:${c.metrics.port}${c.metrics.ruleCounters ? ' (rule counters)' : ''}` : 'off');

/** What differs between the running config and the next one: refusals and the changes reload applies. */
export function diffConfig(old: XtrConfig, next: XtrConfig): { refused: Refusal[]; changed: string[] } {
  const refused: Refusal[] = [];
  const changed: string[] = [];
  const restart = (path: string, a: unknown, b: unknown) => {
    if (!same(a, b)) refused.push({ path, why: `cannot change while xtr runs (was ${JSON.stringify(a)}, now ${JSON.stringify(b)}): restart needed` });
  };
  restart('hostInterface', old.hostInterface, next.hostInterface);
  restart('control.socket', old.control.socket, next.control.socket);
  restart('stateDir', old.stateDir, next.stateDir);
  restart('gateway', old.gateway, next.gateway);
  restart('failOpen', old.failOpen, next.failOpen);
  restart('cluster', old.cluster, next.cluster); // issue 15: the NATS link is built once at start
  restart('offloads', old.offloads, next.offloads); // issue 14: asked of the kernel when the devices are opened
  restart('workers', old.workers, next.workers); // issue 14: the devices' queues are opened at start
  restart('netfilter.conntrack', old.netfilter.conntrack, next.netfilter.conntrack);
  // The health monitor's stall bound (1000 ms when metrics are off, as main.ts starts it).
  restart('metrics.maxEventLoopLagMs', old.metrics?.maxEventLoopLagMs ?? 1000, next.metrics?.maxEventLoopLagMs ?? 1000);
  restart('log.time', old.log.time, next.log.time);
  restart('log.levels', old.log.levels, next.log.levels);
  restart('log.syslog', old.log.syslog, next.log.syslog);

  const names = (c: XtrConfig) => c.interfaces.map((i) => i.name);
  if (!same(names(old), names(next))) {
    refused.push({ path: 'interfaces', why: `the interfaces (names and order) cannot change while xtr runs (was ${names(old).join(', ') || 'none'}, now ${names(next).join(', ') || 'none'}): restart needed` });
  } else {
    old.interfaces.forEach((o, i) => {
      const n = next.interfaces[i];
      const a = ifaceShape(o);
      const b = ifaceShape(n);
      for (const k of Object.keys(a) as (keyof typeof a)[]) restart(`interfaces[${i}].${k}`, a[k], b[k]);
      if (!same(o.addresses, n.addresses)) {
        if (o.attach) {
          refused.push({ path: `interfaces[${i}].addresses`, why: `gateway mode (attach ${o.attach}): the addresses belong to the kernel's interface and its policy rules; restart needed` });
        } else changed.push(`interfaces[${i}].addresses (${o.name}): ${o.addresses.join(' ') || 'none'} -> ${n.addresses.join(' ') || 'none'}`);
      }
    });
  }
  if (!same(old.routes, next.routes)) changed.push(`routes: ${old.routes.length} -> ${next.routes.length}`);
  if (old.logLevel !== next.logLevel) changed.push(`logLevel: ${old.logLevel} -> ${next.logLevel}`);
  if (!same(metricsKey(old), metricsKey(next))) changed.push(`metrics: ${metricsText(old)} -> ${metricsText(next)}`);
  if (old.events.dropIntervalMs !== next.events.dropIntervalMs) changed.push(`events.dropIntervalMs: ${old.events.dropIntervalMs} -> ${next.events.dropIntervalMs}`);
  return { refused, changed };
}

/** The error a refused reload reports: every refused field, one per line. */
export class ReloadRefused extends Error {
  constructor(readonly refusals: readonly Refusal[]) {
    super(refusals.map((r) => `${r.path}: ${r.why}`).join('\n'));
    this.name = 'ReloadRefused';
  }
}

export interface ReloadOutcome {
  ok: boolean;
  /** What was applied (empty: nothing changed). */
  changed: string[];
  /** Why the reload was refused (ok false, nothing changed) or what failed after the commit. */
  error?: string;
  /** True when the commit happened (a failure after it leaves the new config partly applied). */
  committed: boolean;
}

export interface MetricsSwitch {
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/** The pieces of a running router a reload acts on (startXtr provides them). */
export interface ReloadParts {
  /** The config in force. */
  current(): XtrConfig;
  /** Reads and validates the file again (throws ConfigError and the like). */
  read(): XtrConfig;
  /** The engine's part, or null without a rule engine. */
  engine(next: XtrConfig): { changed: readonly string[]; commit(): void } | null;
  /** Binds a changed metrics listener beside the old one: commit closes the old, abort the new. */
  prepareMetrics(next: XtrConfig): Promise<MetricsSwitch | null>;
  /** Addresses and routes into the forwarding tables (synchronous, all or nothing). */
  reconfigureRouter(next: XtrConfig): void;
  /** The host interface (link mode) from the old plan to the new one. */
  updateHost(old: XtrConfig, next: XtrConfig): Promise<void>;
  setLogLevel(level: string): void;
  setDropInterval(ms: number): void;
  /** Makes `next` the config in force. */
  adopt(next: XtrConfig): void;
}

/** One reload, as described at the top of this file. Never throws: the outcome says what happened. */
export async function reloadConfig(parts: ReloadParts): Promise<ReloadOutcome> {
  let next: XtrConfig;
  let engine: { changed: readonly string[]; commit(): void } | null;
  let switchMetrics: MetricsSwitch | null;
  const old = parts.current();
  let changed: string[];
  try {
    next = parts.read();
    const diff = diffConfig(old, next);
    if (diff.refused.length) throw new ReloadRefused(diff.refused);
    engine = parts.engine(next);
    changed = [...diff.changed, ...(engine?.changed ?? [])];
    switchMetrics = changed.some((c) => c.startsWith('metrics:')) ? await parts.prepareMetrics(next) : null;
  } catch (e) {
    return { ok: false, changed: [], error: (e as Error).message, committed: false };
  }
  const addressesOrRoutes = changed.some((c) => c.startsWith('interfaces[') || c.startsWith('routes'));
  // Step 4: synchronous, so no packet sees a mix. The engine first: its commit tests the files
  // again (a control command may have changed the rule set while the metrics listener was bound)
  // and throws with nothing changed; Router.reconfigure undoes itself if it throws.
  try {
    engine?.commit();
  } catch (e) {
    await switchMetrics?.abort().catch(() => undefined);
    return { ok: false, changed: [], error: (e as Error).message, committed: false };
  }
  const late: string[] = [];
  try {
    if (addressesOrRoutes) parts.reconfigureRouter(next);
  } catch (e) {
    late.push(`addresses and routes (kept as they were): ${(e as Error).message}`);
  }
  parts.setLogLevel(next.logLevel);
  parts.adopt(next);
  if (addressesOrRoutes && late.length === 0) await parts.updateHost(old, next).catch((e: Error) => late.push(`host interface: ${e.message}`));
  if (switchMetrics) await switchMetrics.commit().catch((e: Error) => late.push(`metrics: ${e.message}`));
  if (old.events.dropIntervalMs !== next.events.dropIntervalMs) parts.setDropInterval(next.events.dropIntervalMs);
  if (late.length) return { ok: false, changed, error: `applied, but: ${late.join('; ')}`, committed: true };
  return { ok: true, changed, committed: true };
}
