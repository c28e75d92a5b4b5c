/**
 * The `metrics` key of the configuration (docs/config.md "metrics"):
 *
 *   metrics:
 *     listen: "127.0.0.1:9108"     # host:port or [v6]:port; off when the key is absent
 *     maxEventLoopLagMs: 1000      # /healthz fails after a stall longer than this (default 1000)
 *     allowGuarded: false          # true: may listen on a routed interface's address or a wildcard
 *     ruleCounters: false          # true: every rule's packet/byte counters (one series per rule)
 *
 * Off by default. The endpoint is never bound on an address of an interface
 * xtr guards (the router's own addresses on its links), nor on a wildcard
 * (which includes them), unless `allowGuarded: true` says so: metrics and
 * health are for the operator, not for the networks the rules protect.
 * Kept apart from metrics.ts so that loading a configuration does not load prom-client.
 */
import { isIP } from 'node:net';

export interface MetricsConfig {
  readonly host: string;
  readonly port: number;
  readonly maxEventLoopLagMs: number;
  readonly allowGuarded: boolean;
  /** Per-rule counters (opt-in: one series per rule and chain policy, which a large rule set multiplies). */
  readonly ruleCounters: boolean;
}

export class MetricsConfigError extends Error {
  constructor(readonly path: string, detail: string) {
    super(`${path}: ${detail}`);
  }
}

/** Parses `host:port` / `[v6]:port`; the host must be a literal address. */
export function parseListen(s: string): { host: string; port: number } | null {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]]+):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const host = m[1]!;
  const port = Number(m[2]);
  if (isIP(host) === 0 || port < 1 || port > 65535) return null;
  return { host, port };
}

/**
 * Validates `metrics` against the interfaces' addresses ("addr/len" forms);
 * null when the key is absent or null (metrics off).
 */
export function validateMetricsConfig(raw: unknown, guardedAddresses: readonly string[]): MetricsConfig | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new MetricsConfigError('metrics', 'must be a mapping (listen, maxEventLoopLagMs, allowGuarded)');
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!['listen', 'maxEventLoopLagMs', 'allowGuarded', 'ruleCounters'].includes(k)) throw new MetricsConfigError(`metrics.${k}`, 'unknown key (known: listen, maxEventLoopLagMs, allowGuarded, ruleCounters)');
  }
  if (typeof o.listen !== 'string') throw new MetricsConfigError('metrics.listen', 'required: "ADDRESS:PORT" (e.g. "127.0.0.1:9108")');
  const l = parseListen(o.listen);
  if (!l) throw new MetricsConfigError('metrics.listen', `"${o.listen}" is not ADDRESS:PORT or [IPV6]:PORT with a literal address`);
  const allowGuarded = o.allowGuarded === undefined ? false : o.allowGuarded;
  if (typeof allowGuarded !== 'boolean') throw new MetricsConfigError('metrics.allowGuarded', 'must be true or false');
  const ruleCounters = o.ruleCounters === undefined ? false : o.ruleCounters;
  if (typeof ruleCounters !== 'boolean') throw new MetricsConfigError('metrics.ruleCounters', 'must be true or false');
  const lag = o.maxEventLoopLagMs === undefined ? 1000 : o.maxEventLoopLagMs;
  if (typeof lag !== 'number' || !Number.isInteger(lag) || lag < 10 || lag > 600_000) throw new MetricsConfigError('metrics.maxEventLoopLagMs', 'must be an integer from 10 to 600000');
  if (!allowGuarded) {
    if (l.host === '0.0.0.0' || l.host === '::') {
      throw new MetricsConfigError('metrics.listen', `${l.host} would expose metrics on every interface xtr guards; name a management or loopback address, or set metrics.allowGuarded: true`);
    }
    const norm = (a: string) => (isIP(a) === 6 ? a.toLowerCase() : a);
    if (guardedAddresses.some((p) => norm(p.split('/')[0]!) === norm(l.host))) {
      throw new MetricsConfigError('metrics.listen', `${l.host} is an address of an interface xtr guards; set metrics.allowGuarded: true to listen there`);
    }
  }
  return { host: l.host, port: l.port, maxEventLoopLagMs: lag, allowGuarded, ruleCounters };
}

/** The URL a client scrapes. */
export function metricsUrl(c: MetricsConfig, path = '/metrics'): string {
  return `http://${isIP(c.host) === 6 ? `[${c.host}]` : c.host}:${c.port}${path}`;
}
