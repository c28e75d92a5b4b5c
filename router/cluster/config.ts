/**
 * The `cluster` key of the configuration (issue 15, docs/cluster.md); absent
 * or null = cluster mode off (the default):
 *
 *   cluster:
 *     name: site-a                 # [A-Za-z0-9_-]{1,64}: the bucket is xtr-<name>
 *     gateway: gw1                 # this gateway's id in records (default: the host name)
 *     servers: [nats://10.0.0.5:4222]
 *     credentials: { user: xtr, passwordFile: /etc/xtr/nats.pass }   # or { nkeySeedFile } or { credsFile }
 *     tls: { caFile, certFile, keyFile }                            # optional
 *     shared: [recent, quota2]     # state kinds published and applied
 *     flushMs: 20                  # publish interval of the outbox
 *     outboxMax: 10000             # records waiting (see docs/cluster.md: what is dropped)
 *     retentionS: 86400            # bucket TTL (per bucket on nats-server 2.9)
 *
 * Kept apart from the link so that loading a configuration does not load the NATS client.
 */
import { hostname } from 'node:os';

// 'conntrack': not an extension's state but the table's flows, for failover (router/cluster/ct-sync.ts).
export const SHARED_KINDS = ['recent', 'quota2', 'pknock', 'account', 'dnetmap', 'psd', 'conntrack'] as const;

export interface ClusterCredentials {
  readonly user?: string;
  readonly passwordFile?: string;
  readonly nkeySeedFile?: string;
  readonly credsFile?: string;
}

export interface ClusterConfig {
  readonly name: string;
  readonly gateway: string;
  readonly servers: readonly string[];
  readonly credentials: ClusterCredentials | null;
  readonly tls: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string } | null;
  readonly shared: readonly string[];
  readonly flushMs: number;
  readonly outboxMax: number;
  readonly batchMax: number;
  readonly retentionS: number;
}

export class ClusterConfigError extends Error {
  constructor(
    readonly path: string,
    why: string,
  ) {
    super(`${path}: ${why}`);
  }
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;

function int(o: Record<string, unknown>, k: string, def: number, min: number, max: number): number {
  const v = o[k] ?? def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ClusterConfigError(`cluster.${k}`, `${JSON.stringify(v)}: must be an integer ${min}..${max}`);
  return v;
}

function fileKeys(o: unknown, path: string, keys: readonly string[]): Record<string, string> {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new ClusterConfigError(path, `must be a mapping (${keys.join(', ')})`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(o)) {
    if (!keys.includes(k)) throw new ClusterConfigError(`${path}.${k}`, `unknown key (known: ${keys.join(', ')})`);
    if (typeof v !== 'string' || v === '') throw new ClusterConfigError(`${path}.${k}`, 'must be a non-empty string');
    out[k] = v;
  }
  return out;
}

export function validateClusterConfig(raw: unknown): ClusterConfig | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ClusterConfigError('cluster', 'must be a mapping (name, servers, shared, ...)');
  const o = raw as Record<string, unknown>;
  const known = ['name', 'gateway', 'servers', 'credentials', 'tls', 'shared', 'flushMs', 'outboxMax', 'batchMax', 'retentionS'];
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new ClusterConfigError(`cluster.${k}`, `unknown key (known: ${known.join(', ')})`);
  if (typeof o.name !== 'string' || !NAME.test(o.name)) throw new ClusterConfigError('cluster.name', 'required: 1-64 of A-Z a-z 0-9 _ -');
  const gateway = o.gateway ?? hostname();
  if (typeof gateway !== 'string' || !NAME.test(gateway)) throw new ClusterConfigError('cluster.gateway', `${JSON.stringify(gateway)}: 1-64 of A-Z a-z 0-9 _ - (default: the host name)`);
  if (!Array.isArray(o.servers) || o.servers.length === 0) throw new ClusterConfigError('cluster.servers', 'required: a list of nats://HOST:PORT');
  for (const s of o.servers) {
    if (typeof s !== 'string' || !/^(nats|tls):\/\/[^/\s]+$/.test(s)) throw new ClusterConfigError('cluster.servers', `${JSON.stringify(s)} is not nats://HOST:PORT (or tls://)`);
  }
  let credentials: ClusterCredentials | null = null;
  if (o.credentials !== undefined && o.credentials !== null) {
    const c = fileKeys(o.credentials, 'cluster.credentials', ['user', 'passwordFile', 'nkeySeedFile', 'credsFile']);
    const ways = [c.passwordFile !== undefined, c.nkeySeedFile !== undefined, c.credsFile !== undefined].filter(Boolean).length;
    if (ways !== 1) throw new ClusterConfigError('cluster.credentials', 'exactly one of passwordFile (with user), nkeySeedFile, credsFile');
    if ((c.passwordFile !== undefined) !== (c.user !== undefined)) throw new ClusterConfigError('cluster.credentials', 'user and passwordFile go together');
    credentials = c;
  }
  const tls = o.tls === undefined || o.tls === null ? null : fileKeys(o.tls, 'cluster.tls', ['caFile', 'certFile', 'keyFile']);
  const shared = o.shared ?? ['recent', 'quota2'];
  if (!Array.isArray(shared)) throw new ClusterConfigError('cluster.shared', `a list of ${SHARED_KINDS.join(', ')}`);
  for (const k of shared) if (!(SHARED_KINDS as readonly unknown[]).includes(k)) throw new ClusterConfigError('cluster.shared', `${JSON.stringify(k)}: not one of ${SHARED_KINDS.join(', ')}`);
  return {
    name: o.name,
    gateway,
    servers: o.servers as string[],
    credentials,
    tls,
    shared: shared as string[],
    flushMs: int(o, 'flushMs', 20, 1, 60_000),
    outboxMax: int(o, 'outboxMax', 10_000, 1, 10_000_000),
    batchMax: int(o, 'batchMax', 512, 1, 100_000),
    retentionS: int(o, 'retentionS', 86_400, 1, 365 * 86_400),
  };
}
