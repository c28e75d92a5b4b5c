/**
 * The Prometheus endpoint (docs/config.md "metrics"): `GET /metrics` in the
 * text exposition format (prom-client), `GET /healthz` (200 healthy / 503
 * unhealthy, the checks as JSON). Off unless the config has `metrics.listen`.
 *
 * Everything is read at scrape time from what the router already keeps (the
 * status snapshot: device counters and drops by reason; the conntrack table's
 * counters; the engine's state report), so forwarding pays nothing for it.
 * prom-client is imported only when metrics are enabled.
 */
import http from 'node:http';
import type { StatusSnapshot } from './control.js';
import type { HealthMonitor } from './health.js';
import type { ClusterStatus } from './cluster/link.js';
import { metricsUrl, type MetricsConfig } from './metrics-config.js';
import { OFFLOAD_FLAGS } from './offloads-config.js';

/** The conntrack counters the endpoint reports (router/conntrack/table.ts). */
export interface ConntrackCounters {
  count(): number;
  readonly max: number;
  readonly earlyDrops: number;
  readonly insertFailed: number;
  readonly tableFullDrops: number;
  /** Issue 12: hash size and the bytes the table holds (router/conntrack/list.ts ConntrackStats). */
  readonly buckets?: number;
  bytes?(): number;
}

/** One rule's (or a built-in chain policy's: rule "policy") counters, as `iptables -L -v -x` shows them. */
export interface RuleCounterRow {
  readonly family: 4 | 6;
  readonly table: string;
  readonly chain: string;
  /** 1-based position in the chain, or "policy". */
  readonly rule: string;
  /** The rule's `-m comment --comment` text, '' without one. */
  readonly comment: string;
  readonly pkts: number;
  readonly bytes: number;
}

export interface MetricsSources {
  status(): StatusSnapshot;
  conntrack(): ConntrackCounters | null;
  health: HealthMonitor;
  /** Present when `metrics.ruleCounters` is on: every rule's counters at scrape time. */
  rules?: () => readonly RuleCounterRow[];
  /** Issue 15: cluster mode's link (docs/cluster.md); absent or null: no xtr_cluster_* figures. */
  cluster?: () => ClusterStatus | null;
}

/** The rows of ruleCounterRows(): what the engine's rule model offers (router/netfilter/model.ts). */
interface RuleModel {
  rules(family: 4 | 6): { tables: ReadonlyMap<string, { ordered(): readonly { name: string; builtin: boolean; pkts: number; bytes: number; rules: readonly { pkts: number; bytes: number; text: string }[] }[] }> };
}

/** The comment of a rule's save text (` -m comment --comment "text"` or a bare word), '' without one. */
export function ruleComment(text: string): string {
  const m = /(?:^| )--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))/.exec(text);
  if (!m) return '';
  return m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!;
}

/** Every rule's and built-in chain policy's counters, both families, tables with rules or counts only. */
export function ruleCounterRows(nf: RuleModel): RuleCounterRow[] {
  const rows: RuleCounterRow[] = [];
  for (const family of [4, 6] as const) {
    for (const [table, t] of nf.rules(family).tables) {
      for (const chain of t.ordered()) {
        if (chain.builtin) rows.push({ family, table, chain: chain.name, rule: 'policy', comment: '', pkts: chain.pkts, bytes: chain.bytes });
        chain.rules.forEach((r, i) => rows.push({ family, table, chain: chain.name, rule: String(i + 1), comment: ruleComment(r.text), pkts: r.pkts, bytes: r.bytes }));
      }
    }
  }
  return rows;
}

export interface MetricsServer {
  readonly url: string;
  readonly healthUrl: string;
  close(): Promise<void>;
}

/** Builds the registry; exported for tests that read the exposition without a socket. */
export async function createRegistry(src: MetricsSources): Promise<import('prom-client').Registry> {
  const prom = await import('prom-client');
  const register = new prom.Registry();
  prom.collectDefaultMetrics({ register, eventLoopMonitoringPrecision: 10 });
  // prom-client's gauges named *_total break `promtool check metrics` (a _total
  // suffix is for counters); the same numbers remain without the suffix.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) register.removeSingleMetric(name);

  // Counters kept elsewhere: each scrape sets them to the source's value
  // (reset + inc), which keeps Prometheus' counter semantics (rate(), resets at restart).
  const fromSource = <L extends string>(name: string, help: string, labelNames: L[], read: (set: (labels: Record<L, string>, v: number) => void, snap: StatusSnapshot) => void, type: 'counter' | 'gauge' = 'counter') => {
    const collect = function (this: import('prom-client').Counter<L> | import('prom-client').Gauge<L>) {
      this.reset();
      const snap = src.status();
      read((labels, v) => {
        if (this instanceof prom.Gauge) this.set(labels as never, v);
        else (this as import('prom-client').Counter<L>).inc(labels as never, v);
      }, snap);
    };
    if (type === 'counter') new prom.Counter({ name, help, labelNames, registers: [register], collect });
    else new prom.Gauge({ name, help, labelNames, registers: [register], collect });
  };

  const ifaceCounter = (name: string, help: string, pick: (s: StatusSnapshot['interfaces'][number]['stats']) => number) =>
    fromSource(name, help, ['interface'], (set, snap) => {
      for (const i of snap.interfaces) set({ interface: i.name }, pick(i.stats));
    });
  ifaceCounter('xtr_interface_receive_packets_total', 'Packets received on the interface.', (s) => s.rxPackets);
  ifaceCounter('xtr_interface_receive_bytes_total', 'Bytes received on the interface.', (s) => s.rxBytes);
  ifaceCounter('xtr_interface_transmit_packets_total', 'Packets sent on the interface.', (s) => s.txPackets);
  ifaceCounter('xtr_interface_transmit_bytes_total', 'Bytes sent on the interface.', (s) => s.txBytes);
  ifaceCounter('xtr_interface_transmit_dropped_total', 'Packets the device could not take (queue full).', (s) => s.txDropped);
  // issue 14: the TUN offloads in force (router/offloads-config.ts) and the super-packets they carry
  fromSource('xtr_interface_offload', 'TUN offloads in force on the interface (1 on, 0 off).', ['interface', 'offload'], (set, snap) => {
    for (const i of snap.interfaces) {
      const o = i.offloads;
      if (o) for (const k of OFFLOAD_FLAGS) set({ interface: i.name, offload: k }, o[k] ? 1 : 0);
    }
  }, 'gauge');
  fromSource('xtr_interface_super_packets_total', 'Super-packets (TSO/USO) read on the interface (rx) and written to it whole as GSO writes (tx).', ['interface', 'direction'], (set, snap) => {
    for (const i of snap.interfaces) {
      if (!i.offloads) continue;
      set({ interface: i.name, direction: 'rx' }, i.offloads.rxSuperPackets);
      set({ interface: i.name, direction: 'tx' }, i.offloads.txSuperWrites);
    }
  });
  fromSource('xtr_interface_drops_total', 'Packets the router dropped that arrived on (or were bound for) the interface, by reason.', ['interface', 'reason'], (set, snap) => {
    for (const i of snap.interfaces) for (const [reason, n] of Object.entries(i.drops ?? {})) set({ interface: i.name, reason }, n);
  });
  fromSource('xtr_drops_total', 'Packets the router dropped, by reason (all interfaces).', ['reason'], (set, snap) => {
    for (const [reason, n] of Object.entries(snap.drops)) set({ reason }, n);
  });
  fromSource('xtr_extension_state_entries', "Entries in an extension's declared state (the engine's state report).", ['key'], (set, snap) => {
    for (const s of snap.state ?? []) if (s.entries !== null) set({ key: s.key }, s.entries);
  }, 'gauge');
  fromSource('xtr_extension_state_max', "The bound of an extension's declared state.", ['key'], (set, snap) => {
    for (const s of snap.state ?? []) if (s.max !== null) set({ key: s.key }, s.max);
  }, 'gauge');
  fromSource('xtr_read_batches_total', 'Device reads that returned packets, by packets per read (1, 2-3, 4-7, ...): how well batching works at the offered load.', ['size'], (set, snap) => {
    const b = (snap.router as { readBatches?: Record<string, number> } | undefined)?.readBatches;
    if (b) for (const [size, n] of Object.entries(b)) set({ size }, n);
  });
  fromSource('xtr_uptime_seconds', 'Seconds since the router started.', [], (set, snap) => set({}, snap.uptimeSeconds), 'gauge');

  const ct = (name: string, help: string, pick: (c: ConntrackCounters) => number, type: 'counter' | 'gauge') => {
    const collect = function (this: import('prom-client').Counter | import('prom-client').Gauge) {
      this.reset();
      const c = src.conntrack();
      if (!c) return;
      if (this instanceof prom.Gauge) this.set(pick(c));
      else (this as import('prom-client').Counter).inc(pick(c));
    };
    if (type === 'counter') new prom.Counter({ name, help, registers: [register], collect });
    else new prom.Gauge({ name, help, registers: [register], collect });
  };
  ct('xtr_conntrack_entries', 'Connections in the conntrack table.', (c) => c.count(), 'gauge');
  ct('xtr_conntrack_max', 'The conntrack table bound (nf_conntrack_max).', (c) => c.max, 'gauge');
  ct('xtr_conntrack_early_drops_total', 'Entries evicted to make room for a new connection (early_drop).', (c) => c.earlyDrops, 'counter');
  ct('xtr_conntrack_insert_failed_total', 'Connections whose insert failed (NAT reply tuple taken).', (c) => c.insertFailed, 'counter');
  ct('xtr_conntrack_table_full_drops_total', 'Packets dropped because the table was full and nothing could be evicted.', (c) => c.tableFullDrops, 'counter');
  // Issue 12: conntrack -S's drop, the hash size, and what the table's slabs hold.
  ct('xtr_conntrack_drops_total', 'New connections dropped: insert failed or table full (conntrack -S drop).', (c) => c.insertFailed + c.tableFullDrops, 'counter');
  ct('xtr_conntrack_buckets', 'Hash buckets of the conntrack table (nf_conntrack_buckets).', (c) => c.buckets ?? 0, 'gauge');
  ct('xtr_conntrack_memory_bytes', 'Bytes the conntrack table holds (entry slabs grown so far and buckets).', (c) => c.bytes?.() ?? 0, 'gauge');

  const rules = src.rules;
  if (rules) {
    const ruleCounter = (name: string, help: string, pick: (r: RuleCounterRow) => number) =>
      new prom.Counter({
        name,
        help,
        labelNames: ['family', 'table', 'chain', 'rule', 'comment'],
        registers: [register],
        collect() {
          this.reset();
          for (const r of rules()) this.inc({ family: `ipv${r.family}`, table: r.table, chain: r.chain, rule: r.rule, comment: r.comment }, pick(r));
        },
      });
    ruleCounter('xtr_rule_packets_total', 'Packets a rule matched (rule="policy": the built-in chain\'s policy), as iptables -L -v -x counts them.', (r) => r.pkts);
    ruleCounter('xtr_rule_bytes_total', 'Bytes of the packets a rule matched (rule="policy": the chain policy).', (r) => r.bytes);
  }

  // Issue 15: cluster mode (docs/cluster.md), read from the link at scrape time.
  const cluster = src.cluster;
  if (cluster) {
    const cl = (name: string, help: string, labelNames: string[], read: (set: (labels: Record<string, string>, v: number) => void, s: ClusterStatus) => void, type: 'counter' | 'gauge') => {
      const collect = function (this: import('prom-client').Counter | import('prom-client').Gauge) {
        this.reset();
        const s = cluster();
        if (!s) return;
        read((labels, v) => {
          if (this instanceof prom.Gauge) this.set(labels, v);
          else (this as import('prom-client').Counter).inc(labels, v);
        }, s);
      };
      if (type === 'counter') new prom.Counter({ name, help, labelNames, registers: [register], collect });
      else new prom.Gauge({ name, help, labelNames, registers: [register], collect });
    };
    cl('xtr_cluster_connected', 'Whether the cluster link is connected to NATS with its bucket open (1) or not (0).', [], (set, s) => set({}, s.connected ? 1 : 0), 'gauge');
    cl('xtr_cluster_outbox_records', 'Records waiting in the outbox to be published.', [], (set, s) => set({}, s.outbox), 'gauge');
    cl('xtr_cluster_dropped_updates_total', 'State changes not shared because the outbox (or a dirty set, or the parked records) was full.', [], (set, s) => set({}, s.dropped), 'counter');
    cl('xtr_cluster_published_total', 'Records published to the bucket.', [], (set, s) => set({}, s.published), 'counter');
    cl('xtr_cluster_publish_failures_total', 'Puts that failed and stayed in the outbox.', [], (set, s) => set({}, s.publishFailures), 'counter');
    cl('xtr_cluster_applied_total', "Other gateways' records applied.", [], (set, s) => set({}, s.applied), 'counter');
    cl('xtr_cluster_refused_total', 'Records refused: another cluster name.', [], (set, s) => set({}, s.refused), 'counter');
    cl('xtr_cluster_malformed_total', 'Records not applied: unreadable or refused by the state.', [], (set, s) => set({}, s.malformed), 'counter');
    cl('xtr_cluster_lag_seconds', "Lag of other gateways' records (built there -> applied here), over the last 1024.", ['quantile'], (set, s) => {
      if (s.lagMsP50 !== null) set({ quantile: '0.5' }, s.lagMsP50 / 1000);
      if (s.lagMsP99 !== null) set({ quantile: '0.99' }, s.lagMsP99 / 1000);
    }, 'gauge');
    cl('xtr_cluster_peer_last_seen_timestamp_seconds', 'Wall-clock time of the last record applied from each peer gateway.', ['peer'], (set, s) => {
      for (const p of s.peers) set({ peer: p.gateway }, p.lastSeen / 1000);
    }, 'gauge');
  }

  new prom.Gauge({
    name: 'xtr_event_loop_max_lag_seconds',
    help: "The longest event-loop lag seen by the health monitor's 100 ms tick since start.",
    registers: [register],
    collect() {
      this.set(src.health.maxLagMs / 1000);
    },
  });
  // prom-client 15 writes not-a-number as "Nan"; the exposition format spells it "NaN" (the
  // event-loop lag gauges are NaN when two scrapes come within one 10 ms sample of each other).
  const collect = register.metrics.bind(register);
  register.metrics = async () => spellNaN(await collect());
  return register;
}

/** Sample values "Nan" (prom-client) as the exposition format's "NaN". */
export function spellNaN(exposition: string): string {
  return exposition.replace(/ Nan$/gm, ' NaN');
}

export async function startMetrics(cfg: MetricsConfig, src: MetricsSources, log: { info(o: object, m: string): void; error(o: object, m: string): void }): Promise<MetricsServer> {
  const register = await createRegistry(src);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      register.metrics().then(
        (text) => res.writeHead(200, { 'content-type': register.contentType }).end(req.method === 'HEAD' ? undefined : text),
        (e: Error) => {
          log.error({ err: e.message }, 'metrics: collecting failed');
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`);
        },
      );
    } else if (path === '/healthz') {
      src.health.check().then((r) => res.writeHead(r.healthy ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(r) + '\n'));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('xtr: /metrics and /healthz\n');
    }
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (e) => log.error({ err: String(e) }, 'metrics server error'));
  const url = metricsUrl(cfg);
  log.info({ url, healthz: metricsUrl(cfg, '/healthz') }, 'metrics endpoint listening');
  return {
    url,
    healthUrl: metricsUrl(cfg, '/healthz'),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
