/**
 * The control socket: a root-only Unix stream socket speaking newline-delimited
 * JSON. A request is `{"cmd": NAME, "args": [...], "input": string|null}`, a
 * response `{"status": N, "stdout": "...", "stderr": "..."}`; a connection may
 * carry any number of requests, answered in order.
 *
 * Commands come from CommandTables (router/commands.ts) merged at start-up, so
 * the rule engine and extensions add commands without this file knowing them.
 * Commands run one at a time across all connections: a rule-set replacement
 * is never interleaved with another command. Nothing a client sends can throw
 * out of here: malformed requests and failing handlers become error
 * responses.
 */
import { mkdirSync, chmodSync, existsSync, unlinkSync } from 'node:fs';
import { formatOffloads, type OffloadStatus } from './offloads-config.js';
import net from 'node:net';
import { dirname } from 'node:path';
import type { CommandResult, CommandTable } from './commands.js';
import type { DeviceStats } from '../dataplane/device.js';
import type { StateReport } from '../xt/state.js';
import { conntrackStatusLines, type ConntrackReport } from './conntrack/list.js';

import { DEFAULT_SOCKET, INPUT_CHUNK_CHARS, type ControlRequest } from './control-protocol.js';
// The wire protocol's names, kept where the CLI can load them without the server (router/control-protocol.ts).
export { DEFAULT_SOCKET, INPUT_CHUNK_CHARS, type ControlRequest };
/**
 * What one client may cost the router (issue 12 §5; config `control.*`,
 * docs/config.md "Control socket"). A refusal is answered ({status, stderr})
 * where the client can still read it, and logged.
 */
export interface ControlLimits {
  /** Connections served at once; the next is answered with an error and closed. */
  readonly maxConnections: number;
  /**
   * Longest request line. A request with a large input (iptables-restore)
   * streams it as chunk lines (`inputStream`, router/cli.ts), so this only
   * has to hold the largest command line (a 10,000-address `-s` list fits).
   * A longer line is answered with an error and the connection closed.
   */
  readonly maxLineBytes: number;
  /** Streamed input (characters) held at once over all connections; beyond it the request is refused. */
  readonly maxInputBytes: number;
  /**
   * A connection with no request in progress is closed after this long
   * without traffic, and so is one whose client has not read its replies
   * (or stream) for this long; 0 = never. A stream (`xtr events`) is a request
   * in progress: it is never idle, only closed when its client stops reading.
   */
  readonly idleTimeoutMs: number;
}

export const DEFAULT_CONTROL_LIMITS: ControlLimits = {
  maxConnections: 64,
  maxLineBytes: 1 << 20,
  maxInputBytes: 64 << 20,
  idleTimeoutMs: 60_000,
};

/** Largest request line accepted by default (kept for callers of the old name). */
export const MAX_REQUEST_BYTES = DEFAULT_CONTROL_LIMITS.maxLineBytes;
/** Replies queued on a connection beyond which its requests are no longer read until the client reads. */
export const REPLY_HIGH_WATER_BYTES = 1 << 20;
/** Requests read ahead of the one a connection is running; more wait in the socket (backpressure). */
export const MAX_PIPELINED_REQUESTS = 32;

export interface ControlLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Validates one decoded request line; returns the request or a message saying what is wrong. */
export function parseRequest(line: string): ControlRequest | string {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (e) {
    return `bad request: not JSON (${(e as Error).message})`;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'bad request: expected an object {cmd, args, input}';
  const o = v as Record<string, unknown>;
  if (typeof o.cmd !== 'string' || o.cmd === '') return 'bad request: "cmd" must be a non-empty string';
  const args = o.args ?? [];
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) return 'bad request: "args" must be an array of strings';
  const input = o.input ?? null;
  if (input !== null && typeof input !== 'string') return 'bad request: "input" must be a string or null';
  if (o.inputStream !== undefined && typeof o.inputStream !== 'boolean') return 'bad request: "inputStream" must be true or false';
  if (o.inputStream === true && input !== null) return 'bad request: "input" must be null when "inputStream" is true';
  return o.inputStream === true ? { cmd: o.cmd, args: args as string[], input: null, inputStream: true } : { cmd: o.cmd, args: args as string[], input: input as string | null };
}

/** Where `xtr events` subscribers get events from (router/services.ts EventHub). */
export interface EventSource {
  subscribe(listener: (e: { kind: string; time: number; fields: Readonly<Record<string, unknown>> }) => void): () => void;
}

/**
 * Bytes queued on one `xtr events` socket beyond which further events are
 * dropped (and counted) rather than buffered: a subscriber that stops reading
 * must cost bounded memory and never slow the router.
 */
export const EVENTS_MAX_QUEUED_BYTES = 1 << 20;

export class ControlServer {
  private server: net.Server | null = null;
  private eventSource: EventSource | null = null;
  /** Events dropped for slow `xtr events` subscribers since start. */
  eventsDropped = 0;
  private readonly sockets = new Set<net.Socket>();
  private readonly commands: CommandTable = Object.create(null);
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * Issue 13 audit (router/audit.ts): called with each request before it runs (it may look up the
   * peer first); the function it returns, if any, gets the result.
   */
  audit: ((sock: net.Socket, req: ControlRequest) => Promise<((res: CommandResult) => void) | null>) | null = null;

  /** What each refusal reason has cost clients since start (connection-cap, line-too-long, input-too-large, idle, not-reading, bad-input). */
  readonly refusals: Record<string, number> = Object.create(null);
  private readonly limits: ControlLimits;
  /** Streamed input held now, over all connections (limits.maxInputBytes). */
  private inputHeld = 0;
  /** Per connection: since when its client has left replies unread (0: it reads). */
  private readonly stalledSince = new Map<net.Socket, number>();
  private stallTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly socketPath: string,
    private readonly log: ControlLogger,
    limits: Partial<ControlLimits> = {},
  ) {
    const d = DEFAULT_CONTROL_LIMITS;
    this.limits = {
      maxConnections: limits.maxConnections ?? d.maxConnections,
      maxLineBytes: limits.maxLineBytes ?? d.maxLineBytes,
      maxInputBytes: limits.maxInputBytes ?? d.maxInputBytes,
      idleTimeoutMs: limits.idleTimeoutMs ?? d.idleTimeoutMs,
    };
  }

  /** Adds commands; a name registered twice is a start-up error, not a silent override. */
  register(table: CommandTable): void {
    for (const [name, handler] of Object.entries(table)) {
      if (name in this.commands) throw new Error(`control command ${name} registered twice`);
      this.commands[name] = handler;
    }
  }

  /** Enables the `events` stream request (one per router: its services' EventHub). */
  setEventSource(source: EventSource): void {
    this.eventSource = source;
  }

  /**
   * Other stream requests (`nflog`, router/packet-log.ts): like `events`, the
   * connection becomes the handler's until the client closes it, outside the
   * command queue. A handler refuses bad arguments by writing one response
   * line ({status, stdout, stderr}) and ending the socket.
   */
  private readonly streams = new Map<string, (sock: net.Socket, args: readonly string[]) => Promise<void>>();

  registerStream(name: string, handler: (sock: net.Socket, args: readonly string[]) => Promise<void>): void {
    if (this.streams.has(name) || name in this.commands) throw new Error(`control stream ${name} registered twice`);
    this.streams.set(name, handler);
  }

  commandNames(): string[] {
    return [...Object.keys(this.commands), ...this.streams.keys()].sort();
  }

  /** Runs one request (also used in-process by tests); never rejects. */
  execute(req: ControlRequest): Promise<CommandResult> {
    const run = async (): Promise<CommandResult> => {
      const handler = this.commands[req.cmd];
      if (!handler) {
        return { status: 2, stdout: '', stderr: `xtr: unknown command "${req.cmd}"; known: ${this.commandNames().join(', ')}\n` };
      }
      try {
        const r = await handler(req.args, req.input);
        if (!r || typeof r.status !== 'number') throw new Error('handler returned no result');
        return { status: r.status, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
      } catch (e) {
        this.log.error({ cmd: req.cmd, err: e instanceof Error ? e.stack : String(e) }, 'control command failed');
        return { status: 1, stdout: '', stderr: `xtr: ${req.cmd}: internal error: ${(e as Error)?.message ?? e}\n` };
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  async listen(): Promise<void> {
    const path = this.socketPath;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    await ensureSocketFree(path);
    const server = net.createServer((sock) => this.onConnection(sock));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // The socket file is created by bind() inside listen(): a restrictive
      // umask closes the window before the chmod below.
      const old = process.umask(0o177);
      try {
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(old);
      }
    });
    chmodSync(path, 0o600);
    server.on('error', (e) => this.log.error({ err: String(e) }, 'control socket error'));
    if (this.limits.idleTimeoutMs > 0) {
      this.stallTimer = setInterval(() => this.checkStalled(), Math.min(5000, Math.max(50, this.limits.idleTimeoutMs / 4)));
      this.stallTimer.unref();
    }
    this.log.info({ socket: path }, 'control socket listening');
  }

  /**
   * One client connection (issue 12 §5): its requests are read ahead at most
   * MAX_PIPELINED_REQUESTS, and not at all while REPLY_HIGH_WATER_BYTES of
   * replies wait for it to read (pause/resume), so a client that sends
   * without reading costs bounded memory; lines, streamed input and
   * connections are bounded by `limits`; an idle connection, or one whose
   * client stopped reading, is closed. Every refusal is logged (refuse()).
   */
  private onConnection(sock: net.Socket): void {
    const limits = this.limits;
    sock.on('error', () => sock.destroy());
    if (this.sockets.size >= limits.maxConnections) {
      this.refuse('connection-cap', { connections: this.sockets.size }, `control connection refused: ${limits.maxConnections} connections already open (control.maxConnections)`);
      endWith(sock, { status: 1, stdout: '', stderr: `xtr: the router serves at most ${limits.maxConnections} control connections at once (control.maxConnections); try again\n` });
      return;
    }
    this.sockets.add(sock);
    /** A request with the streamed input it holds (released once answered). */
    type Queued = { req: ControlRequest | string; held: number } | { fatal: CommandResult };
    const queue: Queued[] = [];
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let running = false;
    let closing = false;
    let collecting: { req: ControlRequest; chunks: string[]; held: number } | null = null;
    const release = (n: number) => {
      this.inputHeld -= n;
    };
    sock.on('close', () => {
      this.sockets.delete(sock);
      this.stalledSince.delete(sock);
      if (collecting) release(collecting.held);
      collecting = null;
      for (const q of queue.splice(0)) if ('held' in q) release(q.held);
    });
    const flow = () => {
      if (closing || sock.destroyed) return;
      const full = queue.length >= MAX_PIPELINED_REQUESTS || sock.writableLength > REPLY_HIGH_WATER_BYTES;
      if (full && !sock.isPaused()) sock.pause();
      else if (!full && sock.isPaused()) sock.resume();
    };
    sock.on('drain', () => {
      this.stalledSince.set(sock, 0);
      flow();
    });
    this.stalledSince.set(sock, 0);
    /** Answers what was queued before, then `res`, and closes: nothing more is read. */
    const fatal = (reason: string, fields: object, res: CommandResult) => {
      closing = true;
      sock.pause();
      pending = [];
      if (collecting) release(collecting.held);
      collecting = null;
      this.refuse(reason, fields, `control connection closed: ${res.stderr.trim()}`);
      queue.push({ fatal: res });
      void pump();
    };
    const pump = async () => {
      if (running) return;
      running = true;
      try {
        while (queue.length > 0 && !sock.destroyed) {
          // Replies the client has not read: the next request waits (requests read ahead are few).
          if (sock.writableLength > REPLY_HIGH_WATER_BYTES) {
            await new Promise<void>((resolve) => {
              const go = () => {
                sock.off('drain', go);
                sock.off('close', go);
                resolve();
              };
              sock.on('drain', go);
              sock.on('close', go);
            });
            continue;
          }
          const q = queue.shift()!;
          flow();
          if ('fatal' in q) {
            endWith(sock, q.fatal);
            return;
          }
          try {
            await this.answer(sock, q.req);
          } finally {
            release(q.held);
          }
        }
      } finally {
        running = false;
        flow();
      }
    };
    const onLine = (line: string) => {
      if (collecting) {
        let chunk: unknown;
        try {
          chunk = JSON.parse(line);
        } catch {
          chunk = undefined;
        }
        if (chunk === null) {
          const c = collecting;
          collecting = null;
          queue.push({ req: { cmd: c.req.cmd, args: c.req.args, input: c.chunks.join('') }, held: c.held });
          return;
        }
        if (typeof chunk !== 'string') {
          fatal('bad-input', {}, { status: 2, stdout: '', stderr: 'xtr: streamed input: each line after the request must be a JSON string, and the last one null\n' });
          return;
        }
        if (this.inputHeld + chunk.length > limits.maxInputBytes) {
          fatal('input-too-large', { held: this.inputHeld, chunk: chunk.length }, { status: 1, stdout: '', stderr: `xtr: ${collecting.req.cmd}: input larger than the router holds at once (control.maxInputBytes ${limits.maxInputBytes}); nothing was changed\n` });
          return;
        }
        collecting.chunks.push(chunk);
        collecting.held += chunk.length;
        this.inputHeld += chunk.length;
        return;
      }
      if (line.trim() === '') return;
      const req = parseRequest(line);
      // A request that does not parse is answered with its error, in order.
      if (typeof req === 'string') queue.push({ req: line, held: 0 });
      else if (req.inputStream) collecting = { req, chunks: [], held: 0 };
      else queue.push({ req, held: 0 });
    };
    const tooLong = (bytes: number) =>
      fatal('line-too-long', { bytes }, { status: 2, stdout: '', stderr: `xtr: request line longer than ${limits.maxLineBytes} bytes (control.maxLineBytes); the xtr CLI streams large input\n` });
    sock.on('data', (chunk: Buffer) => {
      if (closing) return;
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(10, start);
        if (nl < 0) break;
        if (pendingBytes + nl - start > limits.maxLineBytes) return tooLong(pendingBytes + nl - start);
        pending.push(chunk.subarray(start, nl));
        const line = pending.length === 1 ? pending[0].toString('utf8') : Buffer.concat(pending).toString('utf8');
        pending = [];
        pendingBytes = 0;
        start = nl + 1;
        onLine(line);
        if (closing) return;
      }
      if (start < chunk.length) {
        pendingBytes += chunk.length - start;
        if (pendingBytes > limits.maxLineBytes) return tooLong(pendingBytes);
        pending.push(chunk.subarray(start));
      }
      flow();
      void pump();
    });
    if (limits.idleTimeoutMs > 0) {
      sock.setTimeout(limits.idleTimeoutMs);
      sock.on('timeout', () => {
        if (sock.writableLength > 0) {
          this.refuse('not-reading', { queuedBytes: sock.writableLength }, `control connection closed: its client read nothing for ${limits.idleTimeoutMs} ms (control.idleTimeoutMs)`);
          sock.destroy();
          return;
        }
        // A request in progress (a long restore, an `xtr events` stream) is not idleness.
        if (running || queue.length > 0) {
          sock.setTimeout(limits.idleTimeoutMs);
          return;
        }
        this.refuse('idle', { idleMs: limits.idleTimeoutMs }, `control connection closed: idle for ${limits.idleTimeoutMs} ms (control.idleTimeoutMs)`);
        sock.destroy();
      });
    }
  }

  /**
   * Counts and logs a refusal; at most 5 log lines per second, the next line
   * saying how many were not logged, so a flood of refusals cannot flood the log.
   */
  private refuse(reason: string, fields: object, msg: string): void {
    this.refusals[reason] = (this.refusals[reason] ?? 0) + 1;
    const now = Date.now();
    if (now - this.refusalWindow >= 1000) {
      this.refusalWindow = now;
      this.refusalsLogged = 0;
    }
    if (++this.refusalsLogged > 5) {
      this.refusalsUnlogged++;
      return;
    }
    const unlogged = this.refusalsUnlogged;
    this.refusalsUnlogged = 0;
    this.log.warn({ reason, ...fields, ...(unlogged ? { notLogged: unlogged } : {}) }, msg);
  }

  private refusalWindow = 0;
  private refusalsLogged = 0;
  private refusalsUnlogged = 0;

  /**
   * Closes connections whose client has left replies (or a stream) unread,
   * with the socket over its high-water mark and no 'drain', for
   * limits.idleTimeoutMs: what it queued is freed.
   */
  private checkStalled(): void {
    const now = Date.now();
    for (const [sock, since] of this.stalledSince) {
      if (!sock.writableNeedDrain) {
        if (since !== 0) this.stalledSince.set(sock, 0);
        continue;
      }
      if (since === 0) this.stalledSince.set(sock, now);
      else if (now - since >= this.limits.idleTimeoutMs) {
        this.stalledSince.delete(sock);
        this.refuse('not-reading', { queuedBytes: sock.writableLength }, `control connection closed: its client read nothing for ${this.limits.idleTimeoutMs} ms (control.idleTimeoutMs)`);
        sock.destroy();
      }
    }
  }

  private async answer(sock: net.Socket, line: string | ControlRequest): Promise<void> {
    const req = typeof line === 'string' ? parseRequest(line) : line;
    if (typeof req !== 'string' && req.cmd === 'events' && this.eventSource) return this.streamEvents(sock, req.args);
    const stream = typeof req !== 'string' ? this.streams.get(req.cmd) : undefined;
    if (stream && typeof req !== 'string') return stream(sock, req.args);
    const audited = typeof req !== 'string' && this.audit ? await this.audit(sock, req).catch(() => null) : null;
    const res: CommandResult = typeof req === 'string' ? { status: 2, stdout: '', stderr: `xtr: ${req}\n` } : await this.execute(req);
    audited?.(res);
    if (!sock.destroyed) sock.write(JSON.stringify(res) + '\n');
  }

  /**
   * `xtr events [--kind PREFIX]...`: the connection becomes a stream of JSON
   * lines, one per event ({"kind", "time", ...fields}), until the client
   * closes it. It bypasses the command queue (a stream never ends, commands
   * must go on). When the socket's queue is over EVENTS_MAX_QUEUED_BYTES the
   * event is dropped and counted; the next line that fits is preceded by
   * {"kind":"events.dropped","count":N} so the subscriber knows what it missed.
   */
  private streamEvents(sock: net.Socket, args: readonly string[]): Promise<void> {
    const prefixes: string[] = [];
    for (let i = 0; i < args.length; i++) {
      if (args[i] === '--kind' && i + 1 < args.length) prefixes.push(args[++i]);
      else {
        const msg = { status: 2, stdout: '', stderr: `xtr events: unknown argument ${JSON.stringify(args[i])} (usage: xtr events [--kind PREFIX]... [--count N])\n` };
        sock.end(JSON.stringify(msg) + '\n');
        return Promise.resolve();
      }
    }
    let dropped = 0;
    return new Promise<void>((resolve) => {
      const unsubscribe = this.eventSource!.subscribe((e) => {
        if (prefixes.length && !prefixes.some((p) => e.kind.startsWith(p))) return;
        if (sock.destroyed) return;
        if (sock.writableLength > EVENTS_MAX_QUEUED_BYTES) {
          dropped++;
          this.eventsDropped++;
          return;
        }
        if (dropped) {
          sock.write(JSON.stringify({ kind: 'events.dropped', time: e.time, count: dropped }) + '\n');
          dropped = 0;
        }
        sock.write(JSON.stringify({ ...e.fields, kind: e.kind, time: e.time }) + '\n');
      });
      sock.once('close', () => {
        unsubscribe();
        resolve();
      });
      // The client learns the stream is open (it may wait for this before acting).
      sock.write(JSON.stringify({ kind: 'events.subscribed', time: Date.now(), filter: prefixes }) + '\n');
    });
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (this.stallTimer) clearInterval(this.stallTimer);
    this.stallTimer = null;
    if (!server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      unlinkSync(this.socketPath);
    } catch {
      /* already gone */
    }
  }
}

/** Writes one answer and closes; a client that does not read it cannot keep the socket (destroyed after 5 s). */
function endWith(sock: net.Socket, res: CommandResult): void {
  sock.end(JSON.stringify(res) + '\n', () => sock.destroy());
  setTimeout(() => sock.destroy(), 5000).unref();
}

/**
 * Throws if another router serves `path`; removes a stale socket file. main
 * calls this before creating any device so a second router fails early.
 */
export async function ensureSocketFree(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const state = await probeSocket(path);
  if (state === 'listening') throw new Error(`control socket ${path}: another xtr is already listening there`);
  if (state === 'unknown') throw new Error(`control socket ${path}: exists and cannot be probed; remove it if no router uses it`);
  unlinkSync(path);
}

/**
 * Probes an existing socket file: 'stale' only when the kernel says nobody
 * listens (ECONNREFUSED); anything else (a slow start-up, EACCES) is not
 * proof enough to delete another process's socket.
 */
function probeSocket(path: string): Promise<'listening' | 'stale' | 'unknown'> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    const done = (v: 'listening' | 'stale' | 'unknown') => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    s.once('connect', () => done('listening'));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' || e.code === 'ENOENT' ? 'stale' : 'unknown'));
    const timer = setTimeout(() => done('unknown'), 5000);
  });
}

// ---------------------------------------------------------------------------
// Built-in commands: status and ping.

export interface InterfaceStatus {
  /** Config name (the one rules use). */
  name: string;
  kind: 'tun' | 'tap' | 'host';
  /** Device name and where it lives (`c0@xtr-c`, `xtr-eth0 -> veth0`, `xtr0`). */
  device: string;
  mtu: number;
  addresses: string[];
  stats: DeviceStats;
  /** Packets the router dropped that arrived on (or were bound for) this interface, by reason. */
  drops?: Record<string, number>;
  /** Issue 14: the TUN offloads in force and their counters (router/offloads-config.ts). */
  offloads?: OffloadStatus;
}

export interface StatusSnapshot {
  version: string;
  pid: number;
  uptimeSeconds: number;
  interfaces: InterfaceStatus[];
  /** Packets the router dropped, by reason (router-core's counters). */
  drops: Record<string, number>;
  /** TAP interfaces' neighbour caches (shown by the human form when present). */
  neighbors?: Record<string, { address: string; mac: string | null; state: string; queued: number }[]>;
  /** The router's table (shown by the human form when present). */
  routes?: { to: string; via: string | null; dev: string; kind: string }[];
  /** Anything else the router reports, passed through to --json. */
  router?: unknown;
  /** Extensions' declared state: each key with its references, entries against the bound, eviction and proc file. */
  state?: StateReport[];
  /** Issue 13: where the Prometheus endpoint listens, when the config enables it. */
  metrics?: { url: string; healthz: string };
  /** Issue 12: the conntrack table's size, bounds and conntrack -S counters. */
  conntrack?: ConntrackReport;
}

export function statusCommands(snapshot: () => StatusSnapshot): CommandTable {
  return {
    ping: () => ({ status: 0, stdout: 'pong\n', stderr: '' }),
    status: (args) => {
      const json = args.includes('--json') || args.includes('-j');
      const unknown = args.filter((a) => a !== '--json' && a !== '-j');
      if (unknown.length) return { status: 2, stdout: '', stderr: `xtr status: unknown option ${unknown[0]} (usage: xtr status [--json])\n` };
      const s = snapshot();
      return { status: 0, stdout: json ? JSON.stringify(s, null, 2) + '\n' : formatStatus(s), stderr: '' };
    },
  };
}

export function formatDuration(sec: number): string {
  const s = Math.floor(sec);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return (d ? `${d}d` : '') + (d || h ? `${h}h` : '') + (d || h || m ? `${String(m).padStart(d || h ? 2 : 1, '0')}m` : '') + `${String(r).padStart(d || h || m ? 2 : 1, '0')}s`;
}

export function formatStatus(s: StatusSnapshot): string {
  const lines = [`xtr ${s.version} pid ${s.pid} up ${formatDuration(s.uptimeSeconds)}`, ''];
  const header = ['IFACE', 'KIND', 'DEVICE', 'MTU', 'RX-PKTS', 'RX-BYTES', 'TX-PKTS', 'TX-BYTES', 'TX-DROP', 'DROPS', 'ADDRESSES'];
  const rows = s.interfaces.map((i) => [
    i.name,
    i.kind,
    i.device,
    String(i.mtu),
    String(i.stats.rxPackets),
    String(i.stats.rxBytes),
    String(i.stats.txPackets),
    String(i.stats.txBytes),
    String(i.stats.txDropped),
    String(Object.values(i.drops ?? {}).reduce((a, b) => a + b, 0)),
    i.addresses.join(' '),
  ]);
  lines.push(...table([header, ...rows]));
  // issue 14: offloads in force per interface, with super-packets read and written whole
  const offl = s.interfaces.filter((i) => i.offloads);
  if (offl.length) {
    lines.push('', 'offloads:');
    lines.push(
      ...table(
        offl.map((i) => [
          `  ${i.name}`,
          formatOffloads(i.offloads),
          `super-rx ${i.offloads!.rxSuperPackets}`,
          `super-tx ${i.offloads!.txSuperWrites}`,
          `gso-writes ${i.offloads!.txGsoWrites} (${i.offloads!.txGsoPackets} pkts)`,
        ]),
      ),
    );
  }
  // issue 14: queue workers, when the config asks for more than one
  const workers = (s.router as { workers?: { links: string[]; handovers: number[] } } | undefined)?.workers;
  if (workers) lines.push('', `workers: ${workers.handovers.length} (links ${workers.links.join(', ')}), hand-overs ${workers.handovers.join(' / ')}`);
  const drops = Object.entries(s.drops).filter(([, n]) => n > 0);
  lines.push('');
  if (drops.length === 0) lines.push('drops: none');
  else {
    lines.push('drops:');
    // Which interfaces each reason came from, so "no-route 12" points somewhere.
    const where = (reason: string) =>
      s.interfaces
        .filter((i) => (i.drops?.[reason] ?? 0) > 0)
        .map((i) => `${i.name} ${i.drops![reason]}`)
        .join(', ');
    lines.push(
      ...table(
        drops
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => {
            const w = where(k);
            return [`  ${k}`, String(n), w ? `(${w})` : ''];
          }),
      ),
    );
  }
  const neigh = Object.entries(s.neighbors ?? {}).flatMap(([ifname, list]) =>
    list.map((n) => [`  ${n.address}`, `dev ${ifname}`, n.mac ? `lladdr ${n.mac}` : '', n.state, n.queued ? `${n.queued} queued` : '']),
  );
  if (neigh.length) lines.push('', 'neighbours:', ...table(neigh));
  if (s.routes && s.routes.length) {
    lines.push('', 'routes:');
    lines.push(...table(s.routes.map((r) => [`  ${r.to}`, r.via ? `via ${r.via}` : '', `dev ${r.dev}`, r.kind])));
  }
  if (s.conntrack) lines.push('', ...conntrackStatusLines(s.conntrack));
  if (s.state && s.state.length) {
    lines.push('', 'extension state:');
    const rows = s.state.map((r) => [
      `  ${r.key}`,
      String(r.refs),
      r.max !== null ? `${r.entries ?? '?'}/${r.max}` : r.entries !== null ? String(r.entries) : '-',
      r.eviction ?? '-',
      r.proc ? `/proc/${r.proc}` : '-',
    ]);
    lines.push(...table([['  KEY', 'RULES', 'ENTRIES/MAX', 'EVICTION', 'PROC'], ...rows]));
  }
  return lines.join('\n') + '\n';
}

function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd(),
  );
}
