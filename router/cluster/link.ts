/**
 * Cluster mode (issue 15, docs/cluster.md): the NATS JetStream link that
 * shares extension state between gateways. Extensions declare `shared` in
 * their StateSpec (xt/state.ts); the engine (router/netfilter/state.ts) hands
 * every such live key to this link, which:
 *
 *  - collects changed items per key in a bounded dirty set (the packet path
 *    only does a Set.add: it never waits for the network), turns them into
 *    records every `flushMs` into the outbox (one record per bucket key, the
 *    latest wins: coalesced) and publishes the outbox in batches of
 *    `batchMax` puts while connected; a failed put stays in the outbox;
 *  - at the bound (`outboxMax` records in the outbox, and the same per dirty
 *    set) a change of an item not already queued is dropped and counted
 *    (dropped_updates); a change of a queued item replaces it;
 *  - watches the bucket xtr-<cluster> from the start (catch-up: the latest
 *    record of every key) and again after every reconnect from the last
 *    revision seen (nats-server 2.9 resumes a watch late otherwise); records
 *    of another cluster name or of itself are not applied; records for a key
 *    not declared here are parked (bounded) until a rule declares it.
 *
 * Remote records are applied in the watch's callbacks, on the event loop
 * between packet batches, like any other timer.
 */
import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  type ConnectionOptions,
  type KV,
  type KvEntry,
  type NatsConnection,
  type QueuedIterator,
} from 'nats';
import type { SharedClock, SharedSink, StateSpec } from '../../xt/state.js';
import type { SharedStateListener } from '../netfilter/state.js';
import type { ClusterConfig } from './config.js';

type LogFn = (level: 'info' | 'warn' | 'error' | 'debug', msg: string) => void;

/** One record as stored in the bucket (JSON). */
export interface ClusterRecord {
  /** Cluster name: a record of another cluster is refused. */
  c: string;
  /** Gateway id of the writer. */
  g: string;
  /** The state key ("recent:BAN"). */
  k: string;
  /** Item id within the state. */
  i: string;
  /** Wall ms when the record was built (lag = arrival - t). */
  t: number;
  d: unknown;
}

export interface PeerStatus {
  readonly gateway: string;
  readonly records: number;
  /** Wall ms of the newest record applied from this peer. */
  readonly lastSeen: number;
  /** Arrival minus build time of that record (ms; includes the peer's flush wait). */
  readonly lastLagMs: number;
}

export interface ClusterStatus {
  readonly name: string;
  readonly gateway: string;
  readonly bucket: string;
  readonly servers: readonly string[];
  readonly connected: boolean;
  readonly shared: readonly string[];
  readonly sharedKeys: readonly string[];
  readonly outbox: number;
  readonly outboxMax: number;
  readonly dirty: number;
  readonly published: number;
  readonly publishFailures: number;
  readonly applied: number;
  readonly refused: number;
  readonly malformed: number;
  readonly dropped: number;
  readonly parked: number;
  readonly lastPublish: number | null;
  readonly lastReceive: number | null;
  /** Wall ms the watch last finished delivering the bucket's current records (catch-up). */
  readonly lastSync: number | null;
  readonly lagMsMax: number;
  /** Median and p99 of the last 1024 live records' lag (build on the peer -> applied here), null before any. */
  readonly lagMsP50: number | null;
  readonly lagMsP99: number | null;
  readonly peers: readonly PeerStatus[];
}

interface Attached {
  readonly key: string;
  readonly spec: StateSpec<unknown>;
  readonly value: unknown;
  readonly dirty: Set<unknown>;
}

/** Bucket key characters are [-/_=.A-Za-z0-9]: everything else is =XX. */
export function keyPart(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, (ch) => {
    const b = Buffer.from(ch, 'utf8');
    return [...b].map((x) => `=${x.toString(16).padStart(2, '0')}`).join('');
  });
}

export function bucketName(cluster: string): string {
  return `xtr-${cluster}`;
}

const LAG_SAMPLES = 1024;

export class ClusterLink implements SharedStateListener {
  private nc: NatsConnection | null = null;
  private kv: KV | null = null;
  private watcher: QueuedIterator<KvEntry> | null = null;
  private connected = false;
  private closed = false;
  private readonly attached = new Map<string, Attached>();
  private readonly outbox = new Map<string, Uint8Array>();
  private readonly parked = new Map<string, Map<string, ClusterRecord>>();
  private parkedCount = 0;
  private readonly peers = new Map<string, { records: number; lastSeen: number; lastLagMs: number }>();
  private lastRevision = 0;
  private timer: ReturnType<typeof setInterval> | null = null;
  private publishing = false;
  private readonly enc = new TextEncoder();
  private readonly dec = new TextDecoder();
  private counters = { published: 0, publishFailures: 0, applied: 0, refused: 0, malformed: 0, dropped: 0 };
  private lastPublish: number | null = null;
  private lastReceive: number | null = null;
  private lastSync: number | null = null;
  private lagMsMax = 0;
  /** The last LAG_SAMPLES live lags (ms), for the status' median and p99. */
  private readonly lags = new Float64Array(LAG_SAMPLES);
  private lagCount = 0;
  private readonly kinds: Set<string>;

  constructor(
    readonly config: ClusterConfig,
    private readonly clock: SharedClock,
    private readonly log: LogFn = () => undefined,
  ) {
    this.kinds = new Set(config.shared);
  }

  get bucket(): string {
    return bucketName(this.config.name);
  }

  // ---- SharedStateListener: the engine's shared keys

  attach(key: string, spec: StateSpec<unknown>, value: unknown): void {
    const shared = spec.shared!;
    if (!this.kinds.has(shared.kind) || this.attached.has(key)) return;
    const a: Attached = { key, spec, value, dirty: new Set() };
    const max = this.config.outboxMax;
    const sink: SharedSink<unknown> = {
      changed: (item) => {
        if (a.dirty.size < max || a.dirty.has(item)) a.dirty.add(item);
        else this.counters.dropped++;
      },
      record: (id, data) => this.queue(a, id, data),
      clock: this.clock,
      gateway: this.config.gateway,
    };
    this.attached.set(key, a);
    shared.attach(value, sink);
    // Records that arrived before a rule declared the key.
    const waiting = this.parked.get(key);
    if (waiting) {
      this.parked.delete(key);
      this.parkedCount -= waiting.size;
      for (const r of waiting.values()) this.applyTo(a, r);
    }
  }

  detach(key: string, spec: StateSpec<unknown>, value: unknown): void {
    const a = this.attached.get(key);
    if (!a || a.value !== value) return;
    this.attached.delete(key);
    spec.shared!.attach(value, null);
  }

  // ---- outbox

  private kvKey(a: Attached, id: string): string {
    const base = `${keyPart(a.key)}.${keyPart(id)}`;
    return a.spec.shared!.perGateway ? `${base}.${keyPart(this.config.gateway)}` : base;
  }

  private queue(a: Attached, id: string, data: unknown): void {
    const k = this.kvKey(a, id);
    if (this.outbox.size >= this.config.outboxMax && !this.outbox.has(k)) {
      this.counters.dropped++;
      return;
    }
    const rec: ClusterRecord = { c: this.config.name, g: this.config.gateway, k: a.key, i: id, t: this.clock.wallNow(), d: data };
    this.outbox.delete(k); // re-inserted last: the outbox publishes oldest first
    this.outbox.set(k, this.enc.encode(JSON.stringify(rec)));
  }

  /** Turns every dirty item into its record (the timer; tests call it directly). */
  collect(): void {
    for (const a of this.attached.values()) {
      if (a.dirty.size === 0) continue;
      const shared = a.spec.shared!;
      for (const item of a.dirty) {
        let rec: { id: string; data: unknown } | null | undefined = null;
        try {
          rec = shared.export(a.value, item, this.clock);
        } catch (e) {
          this.log('warn', `cluster: ${a.key}: export failed: ${(e as Error).message}`);
        }
        if (rec === undefined) continue; // deferred by the state: stays dirty
        a.dirty.delete(item);
        if (rec) this.queue(a, rec.id, rec.data);
      }
    }
  }

  private async publish(): Promise<void> {
    if (this.publishing || !this.connected || !this.kv || this.outbox.size === 0) return;
    this.publishing = true;
    try {
      const batch: [string, Uint8Array][] = [];
      for (const e of this.outbox) {
        batch.push(e);
        if (batch.length >= this.config.batchMax) break;
      }
      const kv = this.kv;
      const results = await Promise.allSettled(batch.map(([k, v]) => kv.put(k, v)));
      let failed = 0;
      results.forEach((r, i) => {
        const [k, v] = batch[i];
        if (r.status === 'fulfilled') {
          this.counters.published++;
          // Only if not replaced by a newer record meanwhile.
          if (this.outbox.get(k) === v) this.outbox.delete(k);
        } else failed++;
      });
      if (failed) {
        // Kept in the outbox: a put is idempotent (the same value for the key), so retrying an ambiguous one is harmless.
        this.counters.publishFailures += failed;
      } else this.lastPublish = this.clock.wallNow();
    } finally {
      this.publishing = false;
    }
  }

  /** The outbox as (bucket key, record bytes), oldest first: for tests and diagnostics. */
  outboxEntries(): [string, Uint8Array][] {
    return [...this.outbox];
  }

  /** One flush: collect and publish (the timer). */
  flush(): Promise<void> {
    this.collect();
    return this.publish();
  }

  // ---- receiving

  private applyTo(a: Attached, r: ClusterRecord): void {
    try {
      a.spec.shared!.apply(a.value, r.i, r.d, r.g, this.clock);
      this.counters.applied++;
    } catch (e) {
      this.counters.malformed++;
      this.log('warn', `cluster: ${r.k} ${r.i} from ${r.g}: not applied: ${(e as Error).message}`);
    }
  }

  /** A record from the bucket (the watch; tests call it directly). */
  receive(bytes: Uint8Array): void {
    let r: ClusterRecord;
    try {
      r = JSON.parse(this.dec.decode(bytes)) as ClusterRecord;
    } catch {
      this.counters.malformed++;
      return;
    }
    if (typeof r !== 'object' || r === null || typeof r.g !== 'string' || typeof r.k !== 'string' || typeof r.i !== 'string' || typeof r.t !== 'number') {
      this.counters.malformed++;
      return;
    }
    if (r.c !== this.config.name) {
      // A peer outside this cluster (or a forged record): never applied.
      this.counters.refused++;
      return;
    }
    if (r.g === this.config.gateway) return;
    const now = this.clock.wallNow();
    this.lastReceive = now;
    const lag = Math.max(0, now - r.t);
    const p = this.peers.get(r.g) ?? { records: 0, lastSeen: 0, lastLagMs: 0 };
    p.records++;
    p.lastSeen = now;
    p.lastLagMs = lag;
    this.peers.set(r.g, p);
    // Catch-up records are old by nature: the lag figure is of live updates only.
    if (this.lastSync !== null) {
      if (lag > this.lagMsMax) this.lagMsMax = lag;
      this.lags[this.lagCount++ % LAG_SAMPLES] = lag;
    }
    const a = this.attached.get(r.k);
    if (a) {
      this.applyTo(a, r);
      return;
    }
    let m = this.parked.get(r.k);
    const pk = `${r.i}\u0000${r.g}`;
    if (!m?.has(pk) && this.parkedCount >= this.config.outboxMax) {
      this.counters.dropped++;
      return;
    }
    if (!m) this.parked.set(r.k, (m = new Map()));
    if (!m.has(pk)) this.parkedCount++;
    m.set(pk, r);
  }

  // ---- connection

  private async options(): Promise<ConnectionOptions> {
    const c = this.config;
    const o: ConnectionOptions = {
      servers: [...c.servers],
      name: `xtr-${c.name}-${c.gateway}`,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      waitOnFirstConnect: true,
      pingInterval: 2000,
      maxPingOut: 2,
    };
    const cred = c.credentials;
    if (cred?.passwordFile) {
      o.user = cred.user;
      o.pass = readFileSync(cred.passwordFile, 'utf8').replace(/\r?\n$/, '');
    } else if (cred?.nkeySeedFile) {
      o.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFileSync(cred.nkeySeedFile, 'utf8').trim()));
    } else if (cred?.credsFile) {
      o.authenticator = credsAuthenticator(new Uint8Array(readFileSync(cred.credsFile)));
    }
    if (c.tls) o.tls = { caFile: c.tls.caFile, certFile: c.tls.certFile, keyFile: c.tls.keyFile };
    return o;
  }

  /** Starts the flush timer and connects in the background (a NATS server down at start is retried forever). */
  start(): void {
    this.timer = setInterval(() => void this.flush().catch(() => undefined), this.config.flushMs);
    this.timer.unref();
    void this.run();
  }

  private async run(): Promise<void> {
    try {
      const nc = await connect(await this.options());
      if (this.closed) {
        await nc.close();
        return;
      }
      this.nc = nc;
      void this.watchStatus(nc);
      await this.openBucket();
    } catch (e) {
      this.log('error', `cluster: ${(e as Error).message}`);
    }
  }

  private async openBucket(): Promise<void> {
    // Retried until it works: JetStream may answer only after the server finished starting.
    for (let attempt = 0; !this.closed && this.nc && !this.nc.isClosed(); attempt++) {
      try {
        const js = this.nc.jetstream();
        this.kv = await js.views.kv(this.bucket, { history: 1, ttl: this.config.retentionS * 1000 });
        await this.watch();
        this.connected = true;
        this.log('info', `cluster ${this.config.name}: connected as ${this.config.gateway}, bucket ${this.bucket}`);
        return;
      } catch (e) {
        if (attempt % 20 === 0) this.log('warn', `cluster: bucket ${this.bucket}: ${(e as Error).message}; retrying`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  private async watch(): Promise<void> {
    this.watcher?.stop();
    const kv = this.kv!;
    const opts: Parameters<KV['watch']>[0] = {
      key: '>',
      initializedFn: () => {
        this.lastSync = this.clock.wallNow();
      },
    };
    if (this.lastRevision > 0) opts.resumeFromRevision = this.lastRevision + 1;
    const it = await kv.watch(opts);
    this.watcher = it;
    void (async () => {
      try {
        for await (const e of it) {
          if (e.revision > this.lastRevision) this.lastRevision = e.revision;
          if (e.operation !== 'PUT') continue;
          this.receive(e.value);
        }
      } catch (err) {
        this.log('warn', `cluster: watch ended: ${(err as Error).message}`);
      }
    })();
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        if (this.connected) this.log('warn', `cluster ${this.config.name}: NATS disconnected; keeping changes in the outbox`);
        this.connected = false;
      } else if (s.type === 'reconnect') {
        this.log('info', `cluster ${this.config.name}: NATS reconnected; catching up from revision ${this.lastRevision + 1}`);
        // The bucket may be new (a server that lost its store): openBucket creates it again; the watch resumes.
        void this.openBucket();
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.watcher?.stop();
    for (const a of this.attached.values()) a.spec.shared!.attach(a.value, null);
    this.attached.clear();
    const nc = this.nc;
    this.nc = null;
    if (nc) await nc.close().catch(() => undefined);
  }

  private lagPercentiles(): { lagMsP50: number | null; lagMsP99: number | null } {
    const n = Math.min(this.lagCount, LAG_SAMPLES);
    if (n === 0) return { lagMsP50: null, lagMsP99: null };
    const s = Array.from(this.lags.subarray(0, n)).sort((x, y) => x - y);
    return { lagMsP50: s[Math.floor((n - 1) / 2)], lagMsP99: s[Math.min(n - 1, Math.ceil(0.99 * n) - 1)] };
  }

  status(): ClusterStatus {
    let dirty = 0;
    for (const a of this.attached.values()) dirty += a.dirty.size;
    return {
      name: this.config.name,
      gateway: this.config.gateway,
      bucket: this.bucket,
      servers: this.config.servers,
      connected: this.connected,
      shared: this.config.shared,
      sharedKeys: [...this.attached.keys()].sort(),
      outbox: this.outbox.size,
      outboxMax: this.config.outboxMax,
      dirty,
      ...this.counters,
      parked: this.parkedCount,
      lastPublish: this.lastPublish,
      lastReceive: this.lastReceive,
      lastSync: this.lastSync,
      lagMsMax: this.lagMsMax,
      ...this.lagPercentiles(),
      peers: [...this.peers.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([gateway, p]) => ({ gateway, ...p })),
    };
  }
}

/** `xtr cluster status` text. */
export function formatClusterStatus(s: ClusterStatus | null, wallNow: number): string {
  if (!s) return 'cluster mode: off (no cluster key in the configuration)\n';
  const ago = (t: number | null) => (t === null ? 'never' : `${((wallNow - t) / 1000).toFixed(3)} s ago`);
  let out = `cluster ${s.name}: gateway ${s.gateway}, ${s.connected ? 'connected' : 'NOT connected'} to ${s.servers.join(', ')} (bucket ${s.bucket})\n`;
  out += `shared kinds: ${s.shared.join(', ')}; shared state: ${s.sharedKeys.join(', ') || '(none declared by rules)'}\n`;
  out += `outbox: ${s.outbox}/${s.outboxMax} records, ${s.dirty} changed items waiting; dropped ${s.dropped}\n`;
  out += `published ${s.published} (failed attempts ${s.publishFailures}), last ${ago(s.lastPublish)}\n`;
  out += `applied ${s.applied}, refused (other cluster) ${s.refused}, malformed ${s.malformed}, parked ${s.parked}; last received ${ago(s.lastReceive)}; last sync ${ago(s.lastSync)}\n`;
  out += `lag (peer's record built -> applied here): median ${s.lagMsP50 ?? '-'} ms, p99 ${s.lagMsP99 ?? '-'} ms, max ${s.lagMsMax} ms\n`;
  out += `peers: ${s.peers.length}\n`;
  for (const p of s.peers) out += `  ${p.gateway}: ${p.records} records, last ${ago(p.lastSeen)}, lag ${p.lastLagMs} ms\n`;
  return out;
}
