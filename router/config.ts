/**
 * The router's configuration file: JSON or YAML, validated once at load with
 * errors that name the offending path and value, e.g.
 *   interfaces[1].addresses[0]: "198.51.100.300/24" is not an IPv4/IPv6 prefix
 * The result is a normalised plain object (defaults filled in, MACs derived)
 * that main.ts, the lab and the Router all read; docs/config.md documents
 * every key.
 */
import { readFileSync } from 'node:fs';
import { validateClusterConfig, ClusterConfigError, type ClusterConfig } from './cluster/config.js';
import { validateMetricsConfig, MetricsConfigError, type MetricsConfig } from './metrics-config.js';
import { validateOffloads, OffloadsConfigError, type OffloadsConfig } from './offloads-config.js';
import { applyEnvOverrides, withEnvBlame, type Env } from './config-env.js';
import { parse as parseYaml } from 'yaml';
import { parseMac } from '../dataplane/bytes.js';
import { DEFAULT_CONTROL_LIMITS, type ControlLimits } from './control.js';
import { CONNTRACK_BUCKETS_LIMIT, CONNTRACK_MAX_LIMIT, DEFAULT_TIMEOUTS } from './conntrack/table.js';
import {
  formatIPv4,
  formatIPv6,
  parsePrefix,
  prefixContains4,
  prefixContains6,
  type Prefix,
} from './routing.js';

export type InterfaceMode = 'tun' | 'tap';

/** A route the endpoint namespace gets: "default" = default routes via the router's addresses. */
export type PeerRoute = 'default' | { readonly to: string; readonly via: string };

export interface PeerConfig {
  /** Network namespace the device is moved into (created by the lab / main if missing). */
  readonly netns: string;
  /** The device's name inside that namespace. */
  readonly ifname: string;
  /** Addresses configured on the device there (prefix form). */
  readonly addresses: readonly string[];
  readonly routes: readonly PeerRoute[];
}

export interface InterfaceConfig {
  /** The name rules use (`-i eth0`). */
  readonly name: string;
  readonly mode: InterfaceMode;
  readonly mtu: number;
  /** xtr's own MAC on a TAP link (always set for tap after validation), null for tun. */
  readonly mac: string | null;
  /** The router's addresses on this link, "addr/len" with host bits kept. */
  readonly addresses: readonly string[];
  /** Link mode: where the device lives. */
  readonly peer: PeerConfig | null;
  /** Gateway mode: the real interface whose traffic is steered through this TUN. */
  readonly attach: string | null;
  /** Device name created for this interface in xtr's namespace (default: `name`). */
  readonly device: string;
}

export interface RouteConfig {
  /** Destination prefix ("default" is accepted as 0.0.0.0/0 and normalised). */
  readonly to: string;
  readonly via: string | null;
  readonly dev: string | null;
}

export interface XtrConfig {
  readonly logLevel: string;
  /** The control socket and what one client may cost (issue 12 §5; router/control.ts ControlLimits). */
  readonly control: {
    readonly socket: string;
    readonly maxConnections: number;
    readonly maxLineBytes: number;
    readonly maxInputBytes: number;
    readonly idleTimeoutMs: number;
  };
  readonly stateDir: string;
  readonly hostInterface: { readonly name: string; readonly mtu: number };
  readonly interfaces: readonly InterfaceConfig[];
  readonly routes: readonly RouteConfig[];
  readonly netfilter: Readonly<Record<string, unknown>>;
  readonly extensions: Readonly<Record<string, unknown>>;
  /** Issue 12: true removes gateway policy routing at stop (forwarding unfiltered while xtr is down); default false, fail closed. */
  readonly failOpen: boolean;
  /** Gateway mode NAT (docs/gateway.md "NAT"): ports diverted into xtr before the kernel's `local` rule. */
  readonly gateway: GatewayConfig;
  /** Issue 13: the Prometheus /metrics and /healthz endpoint (router/metrics-config.ts); null = off (the default). */
  readonly metrics: MetricsConfig | null;
  /** Issue 13: how log lines look (ISO time, level names) and the optional syslog copy. */
  readonly log: LogConfig;
  /** Issue 13: what the router itself puts on the `xtr events` stream (drop summaries). */
  readonly events: EventsConfig;
  /** Issue 14: TUN offload switches (router/offloads-config.ts). */
  readonly offloads: OffloadsConfig;
  /**
   * Issue 14: queue workers (docs/design.md "Queue workers"): each link's device gets this many
   * queues (IFF_MULTI_QUEUE) and one native thread per queue does its reads and writes; the
   * pipeline stays on the JS thread. 1 (the default): the JS thread does the I/O too.
   */
  readonly workers: number;
  /** Issue 15: cluster mode over NATS JetStream (router/cluster/config.ts, docs/cluster.md); null = off (the default). */
  readonly cluster: ClusterConfig | null;
}

export interface SyslogConfig {
  /** Unix datagram socket of the syslog daemon (default /dev/log). */
  readonly path: string;
  /** RFC 5424 facility name (default daemon). */
  readonly facility: string;
  /** Lowest pino level copied to syslog (default info). */
  readonly level: string;
  /** APP-NAME of the RFC 5424 header (default xtr). */
  readonly tag: string;
}

export interface LogConfig {
  /** `iso`: "time":"2026-12-06T18:40:10.123Z" (default); `epoch`: milliseconds, pino's own default. */
  readonly time: 'iso' | 'epoch';
  /** `label`: "level":"info" (default); `number`: pino's 30. */
  readonly levels: 'label' | 'number';
  readonly syslog: SyslogConfig | null;
}

export interface EventsConfig {
  /** Drops by reason are summed and published as `drop` events at most once per reason per this many ms; 0 = off. */
  readonly dropIntervalMs: number;
}

/** RFC 5424 section 6.2.1 facility codes by name. */
export const SYSLOG_FACILITIES: Readonly<Record<string, number>> = {
  kern: 0, user: 1, mail: 2, daemon: 3, auth: 4, syslog: 5, lpr: 6, news: 7, uucp: 8, cron: 9, authpriv: 10, ftp: 11,
  local0: 16, local1: 17, local2: 18, local3: 19, local4: 20, local5: 21, local6: 22, local7: 23,
};

export interface GatewayConfig {
  /** MASQUERADE/SNAT to the gateway's own address takes ports and ICMP ids from [lo, hi]. */
  readonly natPorts: readonly [number, number];
  /** DNAT port forwards on the gateway's own addresses: `tcp/2222`, `udp/5000-5010`. */
  readonly forwardPorts: readonly { readonly proto: 'tcp' | 'udp' | 'sctp'; readonly lo: number; readonly hi: number }[];
}

/** A configuration error: `path` is where in the document, `message` includes it. */
export class ConfigError extends Error {
  constructor(readonly path: string, detail: string) {
    super(path ? `${path}: ${detail}` : detail);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const NETNS_RE = /^[A-Za-z0-9_.-]{1,64}$/;

export const CONFIG_DEFAULTS = {
  logLevel: 'info',
  socket: '/run/xtr/xtr.sock',
  stateDir: '/var/lib/xtr',
  hostInterface: 'xtr0',
  mtu: 1500,
} as const;

/**
 * Reads and validates a config file; `.json` is parsed as JSON, anything else as YAML (a superset).
 * The XTR_* environment overrides (router/config-env.ts) apply on top of the file, on every load.
 */
export function loadConfig(path: string, env: Env = process.env): XtrConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError('', `cannot read config file ${path}: ${(e as Error).message}`);
  }
  return parseConfigText(text, path, env);
}

/** Parses JSON or YAML text and validates it. `source` names the file in errors; `env` holds XTR_* overrides. */
export function parseConfigText(text: string, source = '<config>', env: Env = {}): XtrConfig {
  let doc: unknown;
  try {
    doc = source.endsWith('.json') ? JSON.parse(text) : parseYaml(text, { prettyErrors: true });
  } catch (e) {
    throw new ConfigError('', `${source}: not valid ${source.endsWith('.json') ? 'JSON' : 'YAML'}: ${(e as Error).message}`);
  }
  // Issue 13 §6: environment overrides before validation, errors naming the variable.
  const { doc: merged, used } = applyEnvOverrides(doc, env);
  return withEnvBlame(used, () => validateConfig(merged));
}

type Obj = Record<string, unknown>;

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return String(v);
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function obj(v: unknown, path: string): Obj {
  if (!isObj(v)) throw new ConfigError(path, `expected an object, got ${describe(v)}`);
  return v;
}

function list(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) throw new ConfigError(path, `expected a list, got ${describe(v)}`);
  return v;
}

function str(v: unknown, path: string): string {
  if (typeof v !== 'string' || v === '') throw new ConfigError(path, `expected a non-empty string, got ${describe(v)}`);
  return v;
}

function onlyKeys(o: Obj, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      throw new ConfigError(path ? `${path}.${k}` : k, `unknown key (allowed: ${allowed.join(', ')})`);
    }
  }
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/**
 * The `addresses` list of the interface or peer at `path`, each normalised;
 * an address already in `allAddresses` (any interface or peer before) is
 * refused naming where, and each new one is added there.
 */
function validateAddresses(
  raw: unknown,
  path: string,
  allAddresses: { prefix: Prefix; path: string }[],
): { addresses: string[]; prefixes: Prefix[] } {
  const addrs = raw === undefined ? [] : list(raw, join(path, 'addresses'));
  const addresses: string[] = [];
  const prefixes: Prefix[] = [];
  addrs.forEach((a, j) => {
    const ap = `${path}.addresses[${j}]`;
    const { text, prefix } = addressPrefix(a, ap);
    for (const prev of allAddresses) {
      if (sameAddress(prev.prefix, prefix)) throw new ConfigError(ap, `address ${describe(a)} is already used at ${prev.path}`);
    }
    allAddresses.push({ prefix, path: ap });
    addresses.push(text);
    prefixes.push(prefix);
  });
  return { addresses, prefixes };
}

/** A prefix written as an interface address: "198.51.100.1/24"; a bare address is a host prefix. */
function addressPrefix(v: unknown, path: string): { text: string; prefix: Prefix } {
  if (typeof v !== 'string') throw new ConfigError(path, `${describe(v)} is not an IPv4/IPv6 prefix`);
  const p = parsePrefix(v.trim(), true);
  if (!p) throw new ConfigError(path, `${describe(v)} is not an IPv4/IPv6 prefix`);
  return { text: prefixText(p), prefix: p };
}

function prefixText(p: Prefix): string {
  return p.family === 4 ? `${formatIPv4(p.addr)}/${p.len}` : `${formatIPv6(p.addr)}/${p.len}`;
}

function parseAddress(v: unknown, path: string): Prefix {
  if (typeof v !== 'string') throw new ConfigError(path, `${describe(v)} is not an IPv4/IPv6 address`);
  const p = parsePrefix(v.trim(), true);
  if (!p || v.includes('/')) throw new ConfigError(path, `${describe(v)} is not an IPv4/IPv6 address`);
  return p;
}

function sameAddress(a: Prefix, b: Prefix): boolean {
  if (a.family !== b.family) return false;
  if (a.family === 4) return a.addr === (b as typeof a).addr;
  const bw = (b as typeof a).addr;
  return a.addr[0] === bw[0] && a.addr[1] === bw[1] && a.addr[2] === bw[2] && a.addr[3] === bw[3];
}

function onLink(prefixes: readonly Prefix[], a: Prefix): boolean {
  for (const p of prefixes) {
    if (p.family !== a.family) continue;
    if (p.family === 4 ? prefixContains4(p.addr, p.len, a.addr as number) : prefixContains6(p.addr, p.len, a.addr as Uint32Array)) {
      return true;
    }
  }
  return false;
}

/** A locally administered unicast MAC derived from the interface name (stable across restarts). */
export function deriveMac(name: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  const b = [0x02, 0x78, (h >>> 24) & 255, (h >>> 16) & 255, (h >>> 8) & 255, h & 255];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

function validateMtu(v: unknown, path: string, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 65535) {
    throw new ConfigError(path, `${describe(v)} is not a valid MTU (an integer from ${min} to 65535)`);
  }
  return v;
}

/** Validates a parsed document (from JSON or YAML) and fills in defaults. Throws ConfigError. */
export function validateConfig(doc: unknown): XtrConfig {
  if (doc === null || doc === undefined) doc = {};
  const root = obj(doc, '');
  onlyKeys(root, ['logLevel', 'control', 'stateDir', 'hostInterface', 'interfaces', 'routes', 'netfilter', 'extensions', 'gateway', 'failOpen', 'metrics', 'log', 'events', 'offloads', 'workers', 'cluster'], '');

  const logLevel = root.logLevel === undefined ? CONFIG_DEFAULTS.logLevel : str(root.logLevel, 'logLevel');
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError('logLevel', `${describe(logLevel)} is not a log level (one of ${LOG_LEVELS.join(', ')})`);
  }

  let socket: string = CONFIG_DEFAULTS.socket;
  const controlLimits: { -readonly [K in keyof ControlLimits]: number } = { ...DEFAULT_CONTROL_LIMITS };
  if (root.control !== undefined) {
    const c = obj(root.control, 'control');
    onlyKeys(c, ['socket', 'maxConnections', 'maxLineBytes', 'maxInputBytes', 'idleTimeoutMs'], 'control');
    if (c.socket !== undefined) socket = str(c.socket, 'control.socket');
    if (!socket.startsWith('/')) throw new ConfigError('control.socket', `${describe(socket)} must be an absolute path`);
    // Issue 12 §5: the control socket's limits (docs/config.md "Control socket").
    const int = (key: keyof typeof controlLimits, min: number, max: number, zeroOk = false) => {
      const v = c[key];
      if (v === undefined) return;
      if (typeof v !== 'number' || !Number.isInteger(v) || ((v < min || v > max) && !(zeroOk && v === 0))) {
        throw new ConfigError(`control.${key}`, `${describe(v)} must be ${zeroOk ? '0 (never) or ' : ''}an integer from ${min} to ${max}`);
      }
      controlLimits[key] = v;
    };
    int('maxConnections', 1, 65536);
    int('maxLineBytes', 4096, 1 << 30);
    int('maxInputBytes', 65536, 2 ** 31);
    int('idleTimeoutMs', 100, 86_400_000, true);
  }

  const stateDir = root.stateDir === undefined ? CONFIG_DEFAULTS.stateDir : str(root.stateDir, 'stateDir');

  let hostName: string = CONFIG_DEFAULTS.hostInterface;
  let hostMtu = 0;
  if (root.hostInterface !== undefined) {
    const h = obj(root.hostInterface, 'hostInterface');
    onlyKeys(h, ['name', 'mtu'], 'hostInterface');
    if (h.name !== undefined) hostName = str(h.name, 'hostInterface.name');
    if (!IFNAME_RE.test(hostName)) throw new ConfigError('hostInterface.name', `${describe(hostName)} is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)`);
    if (h.mtu !== undefined) hostMtu = validateMtu(h.mtu, 'hostInterface.mtu', 1280);
  }

  const ifList = root.interfaces === undefined ? [] : list(root.interfaces, 'interfaces');
  const interfaces: InterfaceConfig[] = [];
  const ifPrefixes = new Map<string, Prefix[]>();
  const allAddresses: { prefix: Prefix; path: string }[] = [];
  const deviceNames = new Set<string>([hostName]);
  const attachedBy = new Map<string, string>();
  const peerNames = new Map<string, string>();
  ifList.forEach((raw, i) => {
    const path = `interfaces[${i}]`;
    const o = obj(raw, path);
    onlyKeys(o, ['name', 'mode', 'mtu', 'mac', 'addresses', 'peer', 'attach', 'device'], path);
    const name = str(o.name, join(path, 'name'));
    if (!IFNAME_RE.test(name)) throw new ConfigError(join(path, 'name'), `${describe(name)} is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)`);
    if (ifPrefixes.has(name)) throw new ConfigError(join(path, 'name'), `interface ${describe(name)} is defined twice`);
    const mode = o.mode === undefined ? 'tun' : o.mode;
    if (mode !== 'tun' && mode !== 'tap') throw new ConfigError(join(path, 'mode'), `${describe(mode)} is not an interface mode (tun or tap)`);
    const mtu = o.mtu === undefined ? CONFIG_DEFAULTS.mtu : validateMtu(o.mtu, join(path, 'mtu'), 576);

    let mac: string | null = null;
    if (o.mac !== undefined) {
      if (mode !== 'tap') throw new ConfigError(join(path, 'mac'), 'only a tap interface has a MAC address');
      const text = str(o.mac, join(path, 'mac'));
      let v: number;
      try {
        v = parseMac(text);
      } catch {
        throw new ConfigError(join(path, 'mac'), `${describe(text)} is not a MAC address (six hex bytes separated by ':')`);
      }
      if (Math.floor(v / 2 ** 40) & 1) throw new ConfigError(join(path, 'mac'), `${describe(text)} is a multicast MAC address`);
      mac = text.toLowerCase().replace(/-/g, ':');
    } else if (mode === 'tap') {
      mac = deriveMac(name);
    }

    const { addresses, prefixes } = validateAddresses(o.addresses, path, allAddresses);

    const device = o.device === undefined ? name : str(o.device, join(path, 'device'));
    if (!IFNAME_RE.test(device)) throw new ConfigError(join(path, 'device'), `${describe(device)} is not a valid interface name`);
    if (deviceNames.has(device)) throw new ConfigError(join(path, 'device'), `device name ${describe(device)} is already used`);
    deviceNames.add(device);

    if (o.peer !== undefined && o.attach !== undefined) {
      throw new ConfigError(path, 'has both "peer" (link mode) and "attach" (gateway mode); choose one');
    }
    let attach: string | null = null;
    if (o.attach !== undefined) {
      attach = str(o.attach, join(path, 'attach'));
      if (!IFNAME_RE.test(attach)) throw new ConfigError(join(path, 'attach'), `${describe(attach)} is not a valid interface name`);
      if (mode !== 'tun') throw new ConfigError(join(path, 'attach'), 'gateway mode (attach) needs mode tun');
    }
    if (attach !== null) {
      const prev = attachedBy.get(attach);
      if (prev) throw new ConfigError(join(path, 'attach'), `${describe(attach)} is already attached by ${prev}`);
      attachedBy.set(attach, `interfaces[${i}]`);
    }
    let peer: PeerConfig | null = null;
    if (o.peer !== undefined) {
      peer = validatePeer(o.peer, join(path, 'peer'), prefixes, allAddresses);
      const key = `${peer.netns}/${peer.ifname}`;
      const prev = peerNames.get(key);
      if (prev) throw new ConfigError(join(path, 'peer.ifname'), `${describe(peer.ifname)} in namespace ${describe(peer.netns)} is already used by ${prev}`);
      peerNames.set(key, `interfaces[${i}]`);
    }

    interfaces.push({ name, mode, mtu, mac, addresses, peer, attach, device });
    ifPrefixes.set(name, prefixes);
  });

  const routeList = root.routes === undefined ? [] : list(root.routes, 'routes');
  const routes: RouteConfig[] = routeList.map((raw, i) => {
    const path = `routes[${i}]`;
    const o = obj(raw, path);
    onlyKeys(o, ['to', 'via', 'dev'], path);
    const toText = str(o.to, join(path, 'to'));
    const isDefault = toText === 'default';
    const to = isDefault ? null : parsePrefix(toText.trim(), true);
    if (!isDefault && !to) throw new ConfigError(join(path, 'to'), `${describe(toText)} is not an IPv4/IPv6 prefix`);
    let via: Prefix | null = null;
    if (o.via !== undefined) via = parseAddress(o.via, join(path, 'via'));
    let dev: string | null = null;
    if (o.dev !== undefined) {
      dev = str(o.dev, join(path, 'dev'));
      if (!ifPrefixes.has(dev)) throw new ConfigError(join(path, 'dev'), `${describe(dev)} is not an interface defined in interfaces`);
    }
    if (!via && !dev) throw new ConfigError(path, 'needs "via" (a gateway), "dev" (an interface) or both');
    const family = to ? to.family : via ? via.family : 4;
    if (to && via && to.family !== via.family) {
      throw new ConfigError(join(path, 'via'), `gateway ${describe(o.via)} is not of the same family as ${describe(toText)}`);
    }
    if (to && !isDefault) {
      const masked = parsePrefix(toText.trim(), false)!;
      if (!sameAddress(masked, to)) {
        throw new ConfigError(join(path, 'to'), `${describe(toText)} has host bits set (did you mean ${prefixText(masked)}?)`);
      }
    }
    // an IPv6 link-local gateway is on-link by definition, but only with its interface named
    const linkLocalVia = via !== null && via.family === 6 && (via.addr[0] & 0xffc00000) >>> 0 === 0xfe800000;
    if (linkLocalVia && !dev) throw new ConfigError(join(path, 'dev'), `a link-local gateway (${describe(o.via)}) needs "dev"`);
    if (via && !linkLocalVia) {
      const candidates = dev ? ifPrefixes.get(dev)! : [...ifPrefixes.values()].flat();
      if (!onLink(candidates, via)) {
        throw new ConfigError(
          join(path, 'via'),
          `gateway ${describe(o.via)} is not on a connected network${dev ? ` of ${dev}` : ''} (no interface address covers it)`,
        );
      }
    }
    const toNorm = to ? prefixText(to) : family === 4 ? '0.0.0.0/0' : '::/0';
    return { to: toNorm, via: via ? (via.family === 4 ? formatIPv4(via.addr) : formatIPv6(via.addr)) : null, dev };
  });

  // The local stack sees the largest link MTU, so its own packets fit some link and PMTU discovery does the rest.
  if (hostMtu === 0) hostMtu = interfaces.reduce((m, i) => Math.max(m, i.mtu), 0) || CONFIG_DEFAULTS.mtu;

  const netfilter = root.netfilter === undefined || root.netfilter === null ? {} : obj(root.netfilter, 'netfilter');
  validateRulesFiles(netfilter.rulesFiles);
  validateConntrack(netfilter.conntrack);
  const extensions = root.extensions === undefined || root.extensions === null ? {} : obj(root.extensions, 'extensions');

  return {
    logLevel,
    control: { socket, ...controlLimits },
    stateDir,
    hostInterface: { name: hostName, mtu: hostMtu },
    interfaces,
    routes,
    netfilter,
    extensions,
    gateway: validateGateway(root.gateway),
    failOpen: validateFailOpen(root.failOpen),
    metrics: validateMetrics(root.metrics, interfaces),
    log: validateLog(root.log),
    events: validateEvents(root.events),
    offloads: validateOffloadsConfig(root.offloads),
    workers: validateWorkers(root.workers),
    cluster: validateCluster(root.cluster),
  };
}

/** Most queue workers: the kernel's limit is 256 queues per TUN; past the cores there is nothing to gain. */
export const MAX_WORKERS = 64;

/** Issue 14: `workers`, an integer from 1 to MAX_WORKERS (default 1). */
function validateWorkers(v: unknown): number {
  if (v === undefined) return 1;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_WORKERS) {
    throw new ConfigError('workers', `${describe(v)} must be an integer from 1 to ${MAX_WORKERS} (queue workers, one thread per device queue)`);
  }
  return v;
}

/** Issue 15: `cluster` (router/cluster/config.ts), its errors as ConfigErrors. */
function validateCluster(v: unknown): ClusterConfig | null {
  try {
    return validateClusterConfig(v);
  } catch (e) {
    if (e instanceof ClusterConfigError) throw new ConfigError(e.path, e.message.slice(e.path.length + 2));
    throw e;
  }
}

/** Issue 14: `offloads` (router/offloads-config.ts), its errors as ConfigErrors. */
function validateOffloadsConfig(v: unknown): OffloadsConfig {
  try {
    return validateOffloads(v);
  } catch (e) {
    if (e instanceof OffloadsConfigError) throw new ConfigError(e.path, e.message);
    throw e;
  }
}

/** Issue 13: `metrics` (router/metrics-config.ts), refused on a guarded interface's address unless allowed. */
function validateMetrics(raw: unknown, interfaces: readonly InterfaceConfig[]): MetricsConfig | null {
  try {
    return validateMetricsConfig(raw, interfaces.flatMap((i) => i.addresses));
  } catch (e) {
    if (e instanceof MetricsConfigError) throw new ConfigError(e.path, e.message.slice(e.path.length + 2));
    throw e;
  }
}

/** Issue 13: `log` (docs/config.md "Logging"). */
function validateLog(raw: unknown): LogConfig {
  if (raw === undefined || raw === null) return { time: 'iso', levels: 'label', syslog: null };
  const o = obj(raw, 'log');
  onlyKeys(o, ['time', 'levels', 'syslog'], 'log');
  const time = o.time === undefined ? 'iso' : o.time;
  if (time !== 'iso' && time !== 'epoch') throw new ConfigError('log.time', `${describe(time)} must be iso or epoch`);
  const levels = o.levels === undefined ? 'label' : o.levels;
  if (levels !== 'label' && levels !== 'number') throw new ConfigError('log.levels', `${describe(levels)} must be label or number`);
  let syslog: SyslogConfig | null = null;
  if (o.syslog !== undefined && o.syslog !== null && o.syslog !== false) {
    const y = o.syslog === true ? {} : obj(o.syslog, 'log.syslog');
    onlyKeys(y, ['path', 'facility', 'level', 'tag'], 'log.syslog');
    const path = y.path === undefined ? '/dev/log' : str(y.path, 'log.syslog.path');
    if (!path.startsWith('/')) throw new ConfigError('log.syslog.path', `${describe(path)} must be an absolute path`);
    const facility = y.facility === undefined ? 'daemon' : str(y.facility, 'log.syslog.facility');
    if (!(facility in SYSLOG_FACILITIES)) throw new ConfigError('log.syslog.facility', `${describe(facility)} is not a syslog facility (one of ${Object.keys(SYSLOG_FACILITIES).join(', ')})`);
    const level = y.level === undefined ? 'info' : str(y.level, 'log.syslog.level');
    if (!LOG_LEVELS.includes(level)) throw new ConfigError('log.syslog.level', `${describe(level)} is not a log level (one of ${LOG_LEVELS.join(', ')})`);
    const tag = y.tag === undefined ? 'xtr' : str(y.tag, 'log.syslog.tag');
    // RFC 5424 APP-NAME: 1*48 PRINTUSASCII (no space).
    if (!/^[!-~]{1,48}$/.test(tag)) throw new ConfigError('log.syslog.tag', `${describe(tag)} must be 1-48 printable ASCII characters without spaces`);
    syslog = { path, facility, level, tag };
  }
  return { time, levels, syslog };
}

/** Issue 13: `events` (docs/config.md "Events"). */
function validateEvents(raw: unknown): EventsConfig {
  if (raw === undefined || raw === null) return { dropIntervalMs: 1000 };
  const o = obj(raw, 'events');
  onlyKeys(o, ['dropIntervalMs'], 'events');
  const v = o.dropIntervalMs === undefined ? 1000 : o.dropIntervalMs;
  if (typeof v !== 'number' || !Number.isInteger(v) || (v !== 0 && (v < 100 || v > 3_600_000))) {
    throw new ConfigError('events.dropIntervalMs', `${describe(v)} must be 0 (off) or an integer number of milliseconds from 100 to 3600000`);
  }
  return { dropIntervalMs: v };
}

/** A port or `lo-hi` range, for the gateway keys: 1-65534 (the kernel's fib rules refuse port 65535 in a dport range). */
function portRange(v: unknown, path: string): [number, number] {
  const s = typeof v === 'number' ? String(v) : str(v, path);
  const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(s);
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || lo < 1 || hi > 65534 || lo > hi) throw new ConfigError(path, `${describe(v)} is not a port or port range (1-65534, low-high)`);
  return [lo, hi];
}

function validateGateway(raw: unknown): GatewayConfig {
  let natPorts: [number, number] = [61000, 65534];
  const forwardPorts: { proto: 'tcp' | 'udp' | 'sctp'; lo: number; hi: number }[] = [];
  if (raw === undefined || raw === null) return { natPorts, forwardPorts };
  const g = obj(raw, 'gateway');
  onlyKeys(g, ['natPorts', 'forwardPorts'], 'gateway');
  if (g.natPorts !== undefined) natPorts = portRange(g.natPorts, 'gateway.natPorts');
  if (g.forwardPorts !== undefined) {
    list(g.forwardPorts, 'gateway.forwardPorts').forEach((v, i) => {
      const path = `gateway.forwardPorts[${i}]`;
      const s = str(v, path);
      const slash = s.indexOf('/');
      const proto = s.slice(0, slash);
      if (slash < 0 || (proto !== 'tcp' && proto !== 'udp' && proto !== 'sctp')) throw new ConfigError(path, `${describe(v)} is not PROTO/PORT[-PORT] (tcp, udp or sctp)`);
      const [lo, hi] = portRange(s.slice(slash + 1), path);
      forwardPorts.push({ proto, lo, hi });
    });
  }
  return { natPorts, forwardPorts };
}

/** Issue 12 (docs/gateway.md "Fail closed"): only an explicit `failOpen: true` lets a stopped xtr leave forwarding open. */
/** `netfilter.rulesFiles` (issue 8 §5): {v4?, v6?}, absolute paths of iptables-restore files loaded at start. */
function validateRulesFiles(v: unknown): void {
  if (v === undefined || v === null) return;
  const o = obj(v, 'netfilter.rulesFiles');
  onlyKeys(o, ['v4', 'v6'], 'netfilter.rulesFiles');
  for (const k of ['v4', 'v6']) {
    if (o[k] === undefined) continue;
    const p = str(o[k], `netfilter.rulesFiles.${k}`);
    if (!p.startsWith('/')) throw new ConfigError(`netfilter.rulesFiles.${k}`, `${describe(p)} must be an absolute path`);
  }
}

/**
 * Issue 12: `netfilter.conntrack` {max, buckets, timeouts}: the table's bound
 * (nf_conntrack_max), its hash size (nf_conntrack_buckets) and timeouts in
 * seconds (router/conntrack/table.ts DEFAULT_TIMEOUTS' keys; tcp: 10 per state).
 */
function validateConntrack(v: unknown): void {
  if (v === undefined || v === null) return;
  const o = obj(v, 'netfilter.conntrack');
  onlyKeys(o, ['max', 'buckets', 'timeouts'], 'netfilter.conntrack');
  for (const k of ['max', 'buckets'] as const) {
    if (o[k] === undefined) continue;
    const limit = k === 'max' ? CONNTRACK_MAX_LIMIT : CONNTRACK_BUCKETS_LIMIT;
    if (typeof o[k] !== 'number' || !Number.isInteger(o[k]) || (o[k] as number) < 1 || (o[k] as number) > limit) {
      throw new ConfigError(`netfilter.conntrack.${k}`, `${describe(o[k])} must be an integer from 1 to ${limit}`);
    }
  }
  if (o.timeouts === undefined) return;
  const t = obj(o.timeouts, 'netfilter.conntrack.timeouts');
  onlyKeys(t, Object.keys(DEFAULT_TIMEOUTS), 'netfilter.conntrack.timeouts');
  const seconds = (x: unknown, path: string) => {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1 || x > 31_536_000) throw new ConfigError(path, `${describe(x)} must be a whole number of seconds from 1 to 31536000`);
  };
  for (const [k, x] of Object.entries(t)) {
    if (k !== 'tcp') {
      seconds(x, `netfilter.conntrack.timeouts.${k}`);
      continue;
    }
    const l = list(x, 'netfilter.conntrack.timeouts.tcp');
    if (l.length !== DEFAULT_TIMEOUTS.tcp.length) throw new ConfigError('netfilter.conntrack.timeouts.tcp', `expected ${DEFAULT_TIMEOUTS.tcp.length} timeouts (one per TCP state, NONE..SYN_SENT2), got ${l.length}`);
    l.forEach((y, i) => seconds(y, `netfilter.conntrack.timeouts.tcp[${i}]`));
  }
}

function validateFailOpen(v: unknown): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new ConfigError('failOpen', `${describe(v)} must be true or false`);
  return v;
}

function validatePeer(
  raw: unknown,
  path: string,
  routerPrefixes: readonly Prefix[],
  allAddresses: { prefix: Prefix; path: string }[],
): PeerConfig {
  const o = obj(raw, path);
  onlyKeys(o, ['netns', 'ifname', 'addresses', 'routes'], path);
  const netns = str(o.netns, join(path, 'netns'));
  if (!NETNS_RE.test(netns)) throw new ConfigError(join(path, 'netns'), `${describe(netns)} is not a valid namespace name`);
  const ifname = str(o.ifname, join(path, 'ifname'));
  if (!IFNAME_RE.test(ifname)) throw new ConfigError(join(path, 'ifname'), `${describe(ifname)} is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)`);
  const { addresses } = validateAddresses(o.addresses, path, allAddresses);
  const rl = o.routes === undefined ? [] : list(o.routes, join(path, 'routes'));
  const routes: PeerRoute[] = rl.map((r, j) => {
    const rp = `${path}.routes[${j}]`;
    if (r === 'default') {
      if (routerPrefixes.length === 0) throw new ConfigError(rp, '"default" needs at least one router address on this interface');
      return 'default';
    }
    const ro = obj(r, rp);
    onlyKeys(ro, ['to', 'via'], rp);
    const toText = str(ro.to, join(rp, 'to'));
    const to = toText === 'default' ? null : parsePrefix(toText, false);
    if (toText !== 'default' && !to) throw new ConfigError(join(rp, 'to'), `${describe(toText)} is not an IPv4/IPv6 prefix`);
    const via = parseAddress(ro.via, join(rp, 'via'));
    if (to && to.family !== via.family) throw new ConfigError(join(rp, 'via'), `gateway ${describe(ro.via)} is not of the same family as ${describe(toText)}`);
    const viaText = via.family === 4 ? formatIPv4(via.addr) : formatIPv6(via.addr);
    const toNorm = to ? prefixText(to) : via.family === 4 ? '0.0.0.0/0' : '::/0';
    return { to: toNorm, via: viaText };
  });
  return { netns, ifname, addresses, routes };
}

/** The parsed prefixes of an interface's addresses (host bits kept). */
export function interfacePrefixes(ifc: InterfaceConfig): Prefix[] {
  return ifc.addresses.map((a) => parsePrefix(a, true)!);
}
