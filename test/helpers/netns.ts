/**
 * Network-namespace helpers for integration tests and benchmarks.
 *
 * Every namespace is named with a random per-run prefix (`xo1a2b-c`), is
 * tracked from the moment it is created, and is deleted by cleanup() - which
 * tests register with t.teardown - and, as a last resort, by a process 'exit'
 * hook. Every child process (listeners, the router) is tracked the same way
 * and killed before its namespace goes. Every command has a time limit.
 *
 *   const lab = await startLab({ mode: 'tap' });
 *   t.teardown(() => lab.stop());
 *   await lab.run('c', ['ping', '-c1', '-W2', '203.0.113.2']);
 *   const st = await lab.xtr(['status', '--json']);
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sendCommand } from '../../router/cli.js';
import type { CommandResult } from '../../router/commands.js';
import { defaultConfigDocument } from '../../router/default-config.js';

/** Repository root (works from test/helpers and from dist/test/helpers). */
export const REPO_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();

/** A fresh namespace prefix: `<tag><4 hex>-`. Tags keep authors' namespaces apart in `ip netns`. */
export function uniquePrefix(tag = 'xo'): string {
  return `${tag}${randomBytes(2).toString('hex')}-`;
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ExecOptions {
  /** Written to stdin, then stdin is closed. */
  input?: string | Buffer;
  /** Kill (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
  /** Run inside this namespace (`ip netns exec`). */
  netns?: string;
  /** Keep stdout as bytes (for content checks). */
  binary?: boolean;
}

export interface BinaryExecResult extends Omit<ExecResult, 'stdout'> {
  stdout: Buffer;
}

/** Runs a program (no shell), never rejects: look at code/stderr. */
export function exec(argv: readonly string[], opts: ExecOptions & { binary: true }): Promise<BinaryExecResult>;
export function exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
export function exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult | BinaryExecResult> {
  const full = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...argv] : [...argv];
  return new Promise((resolvePromise) => {
    const child = spawn(full[0], full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 30_000);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => undefined);
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
    const finish = (code: number | null, signal: NodeJS.Signals | null, extra = '') => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out);
      resolvePromise({
        code,
        signal,
        stdout: opts.binary ? stdout : stdout.toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + extra,
        timedOut,
      } as ExecResult | BinaryExecResult);
    };
    child.on('error', (e) => finish(127, null, `${full[0]}: ${e.message}\n`));
    child.on('close', (code, signal) => finish(code, signal));
  });
}

/** Like exec() but rejects with the command, status and stderr unless it exits 0. */
export async function run(argv: readonly string[], opts: ExecOptions = {}): Promise<string> {
  const r = await exec(argv, opts);
  if (r.code !== 0) {
    const where = opts.netns ? ` (in ${opts.netns})` : '';
    throw new Error(`${argv.join(' ')}${where}: ${r.timedOut ? 'timed out' : `exit ${r.code ?? r.signal}`}: ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r.stdout;
}

// ---------------------------------------------------------------------------
// Tracking for cleanup.

const liveNamespaces = new Set<string>();
const liveProcesses = new Set<ChildProcess>();

process.once('exit', () => {
  // Last resort when a test forgot (or never reached) its teardown.
  for (const p of liveProcesses) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const ns of liveNamespaces) spawnSync('ip', ['netns', 'del', ns], { timeout: 5000 });
});

/** Creates a namespace with loopback up; it is deleted by deleteNamespace() or at process exit. */
export async function createNamespace(name: string): Promise<void> {
  if (name.length > 64) throw new Error(`namespace name ${name} too long`);
  await run(['ip', 'netns', 'add', name]);
  liveNamespaces.add(name);
  // A new namespace takes IPv4 settings from the host's (net.core.devconf_inherit_init_net=0): a
  // host with ip_forward=1 (podman sets it) would make every end host a router. Start from off.
  await run(['ip', 'netns', 'exec', name, 'sysctl', '-qw', 'net.ipv4.ip_forward=0']);
  await run(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
}

export async function deleteNamespace(name: string): Promise<void> {
  liveNamespaces.delete(name);
  if (!existsSync(`/run/netns/${name}`)) return;
  // What still runs inside (a flood generator, a listener of an interrupted bench) would outlive
  // the name: `ip netns del` only unmounts it. Killed first, so nothing keeps sending.
  const pids = await exec(['ip', 'netns', 'pids', name], { timeoutMs: 10_000 });
  for (const pid of pids.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await exec(['ip', 'netns', 'del', name], { timeoutMs: 10_000 });
}

/** A group of namespaces sharing one prefix, deleted together. */
export class Namespaces {
  readonly names: string[] = [];
  constructor(readonly prefix = uniquePrefix()) {}

  /** Creates `<prefix><suffix>` and returns its name. */
  async add(suffix: string): Promise<string> {
    const name = `${this.prefix}${suffix}`;
    await createNamespace(name);
    this.names.push(name);
    return name;
  }

  async cleanup(): Promise<void> {
    for (const name of this.names.splice(0).reverse()) await deleteNamespace(name);
  }
}

/** A veth pair between two namespaces, each end with addresses (IPv6 without DAD) and up. */
export async function vethPair(
  a: { ns: string; ifname: string; addresses?: string[]; mtu?: number },
  b: { ns: string; ifname: string; addresses?: string[]; mtu?: number },
): Promise<void> {
  await run(['ip', '-n', a.ns, 'link', 'add', a.ifname, 'type', 'veth', 'peer', 'name', b.ifname, 'netns', b.ns]);
  for (const end of [a, b]) {
    if (end.mtu) await run(['ip', '-n', end.ns, 'link', 'set', end.ifname, 'mtu', String(end.mtu)]);
    for (const addr of end.addresses ?? []) {
      await run(['ip', '-n', end.ns, 'addr', 'add', addr, 'dev', end.ifname, ...(addr.includes(':') ? ['nodad'] : [])]);
    }
    await run(['ip', '-n', end.ns, 'link', 'set', end.ifname, 'up']);
  }
}

/** A long-running child (a listener, the router) that is killed at cleanup. */
export interface Background {
  readonly proc: ChildProcess;
  /** Collected stdout (binary-safe) and stderr. */
  stdout(): Buffer;
  stderr(): string;
  /** Resolves with the exit code when the process ends (or after timeoutMs, killing it). */
  wait(timeoutMs?: number): Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export function background(argv: readonly string[], opts: { netns?: string; input?: string | Buffer; stdoutFile?: string } = {}): Background {
  const full = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...argv] : [...argv];
  const fd = opts.stdoutFile ? openSync(opts.stdoutFile, 'a') : null;
  const proc = spawn(full[0], full.slice(1), { stdio: ['pipe', fd ?? 'pipe', fd ?? 'pipe'] });
  if (fd !== null) closeSync(fd);
  liveProcesses.add(proc);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  proc.stdout?.on('data', (c: Buffer) => out.push(c));
  proc.stderr?.on('data', (c: Buffer) => err.push(c));
  proc.stdin?.on('error', () => undefined);
  if (opts.input !== undefined) proc.stdin?.end(opts.input);
  const exited = new Promise<number | null>((r) => {
    proc.on('close', (code) => {
      liveProcesses.delete(proc);
      r(code);
    });
    proc.on('error', () => {
      liveProcesses.delete(proc);
      r(127);
    });
  });
  const wait = async (timeoutMs = 30_000): Promise<number | null> => {
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
    const v = await Promise.race([exited, t]);
    clearTimeout(timer);
    if (v === 'timeout') {
      proc.kill('SIGKILL');
      return exited;
    }
    return v;
  };
  return {
    proc,
    stdout: () => Buffer.concat(out),
    stderr: () => Buffer.concat(err).toString('utf8'),
    wait,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      await wait(5000);
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `probe` until it returns true or `timeoutMs` passes. */
export async function waitFor(probe: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() >= end) return false;
    await sleep(stepMs);
  }
}

// ---------------------------------------------------------------------------
// The router.

/** The router entry point tests run: the build in dist/ (XTR_MAIN overrides). */
export function routerMain(): string {
  const main = process.env.XTR_MAIN ?? join(REPO_ROOT, 'dist', 'router', 'main.js');
  if (!existsSync(main)) throw new Error(`${main} not found: run \`npm run build\` (or bash scripts/ensure-setup) first`);
  return main;
}

export interface RouterProcess {
  readonly socket: string;
  /** The config file the router was started with (a reload test rewrites it, then SIGHUP / `xtr reload`). */
  readonly configPath: string;
  readonly logFile: string;
  readonly proc: Background;
  /** Sends a control command (as `xtr CMD ARGS` would). */
  xtr(args: readonly string[], input?: string | null): Promise<CommandResult>;
  /** Runs the real CLI (node bin/xtr.js --socket S ...). */
  cli(args: readonly string[], input?: string): Promise<ExecResult>;
  /** The router's log so far. */
  log(): string;
  /** SIGTERM and wait; returns the exit code. */
  stop(): Promise<number | null>;
}

export interface StartRouterOptions {
  /** Namespace the router runs in (null: the current one). */
  netns: string | null;
  /**
   * The config document (written as JSON); its control.socket is replaced by
   * `socket`, and a stateDir under /var/lib/xtr (the real router's) by a temp dir.
   */
  config: Record<string, unknown>;
  socket: string;
  /** Where the log goes; default a temp file. */
  logFile?: string;
  /** How long to wait for the control socket; default 20 s. */
  readyTimeoutMs?: number;
  /** Extra node arguments (e.g. --cpu-prof). */
  nodeArgs?: string[];
}

/**
 * The node options every launcher gives the router (scripts/lab, the Dockerfile's ENTRYPOINT,
 * docs/lab.md): a 1 MB young generation, so a large rule change's scavenges stay short
 * (docs/design.md "Garbage collection"). Tests and benches run the router as users do.
 */
export const ROUTER_NODE_ARGS: readonly string[] = ['--max-semi-space-size=1'];

/** Starts `node --max-semi-space-size=1 dist/router/main.js --config ...` and waits until `xtr ping` answers. */
export async function startRouter(opts: StartRouterOptions): Promise<RouterProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'xtr-test-'));
  const configPath = join(dir, 'config.json');
  // A test router never shares saved state with a real one: stateDir defaults to the temp dir.
  const stateDir = typeof opts.config.stateDir === 'string' && !opts.config.stateDir.startsWith('/var/lib/xtr') ? opts.config.stateDir : join(dir, 'state');
  // The config's other control settings (limits, issue 12 §5) are kept; only the socket is the test's.
  const control = { ...((opts.config.control ?? {}) as Record<string, unknown>), socket: opts.socket };
  writeFileSync(configPath, JSON.stringify({ ...opts.config, stateDir, control }, null, 2));
  const logFile = opts.logFile ?? join(dir, 'router.log');
  const proc = background([process.execPath, ...ROUTER_NODE_ARGS, ...(opts.nodeArgs ?? []), routerMain(), '--config', configPath], {
    netns: opts.netns ?? undefined,
    stdoutFile: logFile,
  });
  const readLog = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  const xtr = (args: readonly string[], input: string | null = null) => sendCommand(opts.socket, { cmd: args[0], args: args.slice(1), input }, 60_000);
  const ready = await waitFor(
    async () => {
      if (proc.proc.exitCode !== null) return true;
      try {
        return (await xtr(['ping'])).stdout.trim() === 'pong';
      } catch {
        return false;
      }
    },
    opts.readyTimeoutMs ?? 20_000,
    100,
  );
  if (!ready || proc.proc.exitCode !== null) {
    await proc.kill('SIGKILL');
    const tail = readLog().split('\n').slice(-30).join('\n');
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`router did not come up (${ready ? `exit ${proc.proc.exitCode}` : 'timeout'}); log:\n${tail}`);
  }
  let stopped: Promise<number | null> | null = null;
  return {
    socket: opts.socket,
    configPath,
    logFile,
    proc,
    xtr,
    cli: (args, input) =>
      exec([process.execPath, join(REPO_ROOT, 'bin', 'xtr.js'), '--socket', opts.socket, ...args], { input, timeoutMs: 30_000 }),
    log: readLog,
    stop() {
      stopped ??= (async () => {
        proc.proc.kill('SIGTERM');
        const code = await proc.wait(15_000);
        if (!process.env.XTR_KEEP_LOGS) rmSync(dir, { recursive: true, force: true });
        return code;
      })();
      return stopped;
    },
  };
}

// ---------------------------------------------------------------------------
// The lab: four namespaces and xtr in link mode, as `scripts/lab up` builds it.

export interface LabOptions {
  prefix?: string;
  mode?: 'tun' | 'tap';
  /** Edit the config document before the router starts (MTUs, routes, extra keys). */
  patch?: (doc: Record<string, unknown> & { interfaces: Record<string, unknown>[] }) => void;
  logLevel?: string;
  nodeArgs?: string[];
}

export interface Lab {
  readonly prefix: string;
  /** Namespace names: c (client), r (router), s (server), m (monitor). */
  readonly ns: { c: string; r: string; s: string; m: string };
  readonly router: RouterProcess;
  readonly config: Record<string, unknown>;
  /** Runs a command in `<prefix><which>` (rejects unless exit 0). */
  run(which: 'c' | 'r' | 's' | 'm', argv: readonly string[], opts?: Omit<ExecOptions, 'netns'>): Promise<string>;
  exec(which: 'c' | 'r' | 's' | 'm', argv: readonly string[], opts?: Omit<ExecOptions, 'netns'>): Promise<ExecResult>;
  /** Starts a process in a lab namespace, killed at stop(). */
  background(which: 'c' | 'r' | 's' | 'm', argv: readonly string[], opts?: { input?: string | Buffer }): Background;
  xtr(args: readonly string[], input?: string | null): Promise<CommandResult>;
  stop(): Promise<void>;
}

export async function startLab(opts: LabOptions = {}): Promise<Lab> {
  const prefix = opts.prefix ?? uniquePrefix();
  const nss = new Namespaces(prefix);
  const bgs: Background[] = [];
  const socket = `/run/xtr/${prefix}test.sock`;
  const stateDir = mkdtempSync(join(tmpdir(), `xtr-state-${prefix}`));
  let router: RouterProcess | null = null;
  const cleanup = async () => {
    for (const b of bgs.splice(0)) await b.kill('SIGKILL');
    if (router) await router.stop();
    await nss.cleanup();
    rmSync(stateDir, { recursive: true, force: true });
  };
  try {
    const ns = { c: await nss.add('c'), r: await nss.add('r'), s: await nss.add('s'), m: await nss.add('m') };
    const doc = defaultConfigDocument({
      prefix,
      mode: opts.mode ?? 'tun',
      socket,
      stateDir,
      logLevel: opts.logLevel ?? 'info',
    }) as Record<string, unknown> & { interfaces: Record<string, unknown>[] };
    opts.patch?.(doc);
    router = await startRouter({ netns: ns.r, config: doc, socket, nodeArgs: opts.nodeArgs });
    const r = router;
    const nsOf = (w: 'c' | 'r' | 's' | 'm') => ns[w];
    return {
      prefix,
      ns,
      router: r,
      config: doc,
      run: (w, argv, o = {}) => run(argv, { ...o, netns: nsOf(w) }),
      exec: (w, argv, o = {}) => exec(argv, { ...o, netns: nsOf(w) }),
      background(w, argv, o = {}) {
        const b = background(argv, { ...o, netns: nsOf(w) });
        bgs.push(b);
        return b;
      },
      xtr: (args, input) => r.xtr(args, input),
      stop: cleanup,
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
