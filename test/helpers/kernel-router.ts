/**
 * The kernel reference topology for acceptance and differential tests, and
 * the common `Topology` face that both it and the xtr lab present, so one
 * scenario runs unchanged against the real kernel and against xtr.
 *
 * Kernel topology: namespaces `<p>c` (client), `<p>r` (router), `<p>s`
 * (server) joined by veth pairs `eth0`<->`c0` and `eth1`<->`s0`, the lab's
 * addressing, forwarding on, and iptables (one backend, legacy by default or
 * nft with XTR_KERNEL_IPTABLES=nft, for the whole router namespace) run there
 * exactly as a user would run it.
 *
 * Also here: the xtr adapter (XtrRouter, over test/helpers/netns.ts's lab),
 * iptables-save -c and /proc/net/xt_recent parsers, the scapy packet agent
 * driver, and the differential runner (DiffBench, registerDifferentialTests).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync, chmodSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext, TestFn } from 'ava';
import { startLab, type Lab, type LabOptions } from './netns.js';

export type Family = 4 | 6;

/** The lab's addressing (issue 2), shared by the kernel topology and xtr's lab. */
export const ADDR = {
  client: '198.51.100.2',
  client2: '198.51.100.3',
  routerClientSide: '198.51.100.1',
  routerServerSide: '203.0.113.1',
  server: '203.0.113.2',
  client6: '2001:db8:c::2',
  router6ClientSide: '2001:db8:c::1',
  router6ServerSide: '2001:db8:5::1',
  server6: '2001:db8:5::2',
} as const;

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface RunOptions {
  input?: string;
  /** Hard limit; the whole process group is killed when it is reached. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** Runs argv (no shell) in its own process group, bounded in time. */
export function run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolvePromise) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
      env: opts.env ?? process.env,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolvePromise({ status: 127, stdout, stderr: stderr + String(err), timedOut });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ status: code ?? (signal ? 128 + 9 : 1), stdout, stderr, timedOut });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    /* already gone */
  }
}

/** run() that throws with the command's output when it does not exit 0. */
export async function runOk(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(argv, opts);
  if (r.status !== 0) {
    throw new Error(`command failed (exit ${r.status}${r.timedOut ? ', timed out' : ''}): ${argv.join(' ')}\n${r.stderr}${r.stdout}`);
  }
  return r;
}

export function nsArgv(ns: string, argv: string[]): string[] {
  return ['ip', 'netns', 'exec', ns, ...argv];
}

/** A background process (listener, capture) that the test stops itself. */
export interface Background {
  readonly pid: number;
  output(): { stdout: string; stderr: string };
  /** Stops the process group (SIGTERM, then SIGKILL after 2 s) and waits for it. */
  stop(): Promise<RunResult>;
}

export function startBackground(argv: string[], opts: { env?: NodeJS.ProcessEnv; maxLifetimeMs?: number } = {}): Background {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: opts.env ?? process.env });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let exitCode: number | null = null;
  const exited = new Promise<void>((res) => {
    child.on('close', (code) => {
      exitCode = code ?? 143;
      res();
    });
    child.on('error', (err) => {
      stderr += String(err);
      exitCode = 127;
      res();
    });
  });
  // Nothing a test starts may outlive a forgotten stop().
  const lifetime = setTimeout(() => killGroup(child.pid), opts.maxLifetimeMs ?? 180_000);
  lifetime.unref();
  return {
    pid: child.pid ?? -1,
    output: () => ({ stdout, stderr }),
    async stop() {
      if (exitCode === null) {
        killGroup(child.pid, 'SIGTERM');
        const hard = setTimeout(() => killGroup(child.pid), 2000);
        await exited;
        clearTimeout(hard);
      }
      clearTimeout(lifetime);
      return { status: exitCode ?? 0, stdout, stderr, timedOut: false };
    },
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** `<p>`: `xk` + 4 random hex digits + `-`, unique per topology. */
export function uniquePrefix(): string {
  return `xk${randomBytes(2).toString('hex')}-`;
}

/** The face a scenario sees: the kernel reference and xtr's lab both implement it. */
export interface Topology {
  readonly kind: 'kernel' | 'xtr';
  readonly prefix: string;
  readonly ns: { readonly client: string; readonly router: string; readonly server: string };
  /** What a user's script puts in $IPTABLES / $IP6TABLES for this router. */
  iptablesCommand(family: Family): string;
  /** PATH and other environment a script run against this router needs. */
  scriptEnv(): NodeJS.ProcessEnv;
  /** One iptables/ip6tables invocation against this router (argv after the command name). */
  iptables(family: Family, args: string[]): Promise<RunResult>;
  /** iptables-restore (whole file, atomic). */
  restore(family: Family, text: string): Promise<RunResult>;
  /** iptables-save -c text. */
  save(family: Family): Promise<string>;
  /** Runs a bash script in the router namespace with this router's environment. */
  runScript(script: string, timeoutMs?: number): Promise<RunResult>;
  /** `cat /proc/net/xt_recent/NAME` (or its xtr equivalent). */
  recentRead(name: string): Promise<RunResult>;
  /** `echo TEXT > /proc/net/xt_recent/NAME` (`>>` with append, as some recipes write it), or `xtr proc write`. */
  recentWrite(name: string, text: string, append?: boolean): Promise<RunResult>;
  /** Runs argv in one of the topology's namespaces. */
  exec(ns: string, argv: string[], opts?: RunOptions): Promise<RunResult>;
  destroy(): Promise<void>;
}

export type IptablesBackend = 'legacy' | 'nft';

/**
 * The backend for the kernel reference: $XTR_KERNEL_IPTABLES, else legacy,
 * because iptables-nft-save reports built-in chain policy counters as [0:0]
 * whatever passed, and the policy counters are part of what is compared.
 */
export function kernelBackend(): IptablesBackend {
  const env = process.env.XTR_KERNEL_IPTABLES;
  if (env === 'legacy' || env === 'nft') return env;
  return 'legacy';
}

async function nsSysctl(ns: string, settings: Record<string, string>): Promise<void> {
  const args = Object.entries(settings).map(([k, v]) => `${k}=${v}`);
  await runOk(nsArgv(ns, ['sysctl', '-qw', ...args]));
}

async function macOf(ns: string, dev: string): Promise<string> {
  const r = await runOk(['ip', '-n', ns, '-j', 'link', 'show', 'dev', dev]);
  const parsed = JSON.parse(r.stdout) as Array<{ address: string }>;
  return parsed[0]!.address;
}

/** Quiet IPv6 (no DAD, RS, RA) so nothing but the test's packets reaches ip6tables after setup. */
const QUIET_V6 = {
  'net.ipv6.conf.all.accept_dad': '0',
  'net.ipv6.conf.default.accept_dad': '0',
  'net.ipv6.conf.all.dad_transmits': '0',
  'net.ipv6.conf.default.dad_transmits': '0',
  'net.ipv6.conf.all.router_solicitations': '0',
  'net.ipv6.conf.default.router_solicitations': '0',
  'net.ipv6.conf.all.accept_ra': '0',
  'net.ipv6.conf.default.accept_ra': '0',
  // Unsolicited MLD reports (joining solicited-node groups at link-up, all-routers when
  // forwarding is turned on) are repeated after a random delay up to this interval (default
  // 1 s): a late one was counted in a case's OUTPUT/POSTROUTING policy counters (flaky
  // differential-v6). 10 ms makes every repeat happen during setup, before any case runs.
  'net.ipv6.conf.all.mldv2_unsolicited_report_interval': '10',
  'net.ipv6.conf.default.mldv2_unsolicited_report_interval': '10',
  'net.ipv6.conf.all.mldv1_unsolicited_report_interval': '10',
  'net.ipv6.conf.default.mldv1_unsolicited_report_interval': '10',
};

export class KernelRouter implements Topology {
  readonly kind = 'kernel' as const;
  readonly ns: { client: string; router: string; server: string };
  private destroyed = false;

  private constructor(
    readonly prefix: string,
    readonly backend: IptablesBackend,
  ) {
    this.ns = { client: `${prefix}c`, router: `${prefix}r`, server: `${prefix}s` };
  }

  /** Builds the topology; on any failure everything created so far is removed. */
  /** `prefix` names the namespaces (`<prefix>c`, ...): a test's own prefix, else a random `xk` one. */
  static async create(opts: { backend?: IptablesBackend; prefix?: string } = {}): Promise<KernelRouter> {
    const topo = new KernelRouter(opts.prefix ?? uniquePrefix(), opts.backend ?? kernelBackend());
    try {
      await topo.build();
    } catch (err) {
      await topo.destroy();
      throw err;
    }
    return topo;
  }

  private async build(): Promise<void> {
    const { client: c, router: r, server: s } = this.ns;
    for (const ns of [c, r, s]) {
      await runOk(['ip', 'netns', 'add', ns]);
      // A new namespace takes IPv4 settings from the host's (net.core.devconf_inherit_init_net=0): a
      // host with ip_forward=1 (podman sets it) would make every end host a router. Start from off.
      await nsSysctl(ns, { ...QUIET_V6, 'net.ipv4.ip_forward': '0' });
      await runOk(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    }
    await runOk(['ip', '-n', r, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'c0', 'netns', c]);
    await runOk(['ip', '-n', r, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 's0', 'netns', s]);
    const addrs: Array<[string, string, string]> = [
      [c, 'c0', `${ADDR.client}/24`],
      [c, 'c0', `${ADDR.client2}/24`],
      [c, 'c0', `${ADDR.client6}/64`],
      [r, 'eth0', `${ADDR.routerClientSide}/24`],
      [r, 'eth0', `${ADDR.router6ClientSide}/64`],
      [r, 'eth1', `${ADDR.routerServerSide}/24`],
      [r, 'eth1', `${ADDR.router6ServerSide}/64`],
      [s, 's0', `${ADDR.server}/24`],
      [s, 's0', `${ADDR.server6}/64`],
    ];
    for (const [ns, dev, a] of addrs) {
      const extra = a.includes(':') ? ['nodad'] : [];
      await runOk(['ip', '-n', ns, 'addr', 'add', a, 'dev', dev, ...extra]);
    }
    for (const [ns, dev] of [[c, 'c0'], [r, 'eth0'], [r, 'eth1'], [s, 's0']] as const) {
      await runOk(['ip', '-n', ns, 'link', 'set', dev, 'up']);
    }
    await nsSysctl(r, { 'net.ipv4.ip_forward': '1', 'net.ipv6.conf.all.forwarding': '1' });
    await runOk(['ip', '-n', c, 'route', 'add', 'default', 'via', ADDR.routerClientSide]);
    await runOk(['ip', '-n', s, 'route', 'add', 'default', 'via', ADDR.routerServerSide]);
    await runOk(['ip', '-n', c, '-6', 'route', 'add', 'default', 'via', ADDR.router6ClientSide]);
    await runOk(['ip', '-n', s, '-6', 'route', 'add', 'default', 'via', ADDR.router6ServerSide]);
    // Permanent neighbours: no ARP/ND traffic during a test (ND would pass ip6tables).
    const mac = {
      c0: await macOf(c, 'c0'),
      eth0: await macOf(r, 'eth0'),
      eth1: await macOf(r, 'eth1'),
      s0: await macOf(s, 's0'),
    };
    const neigh: Array<[string, string, string, string]> = [
      [c, 'c0', ADDR.routerClientSide, mac.eth0],
      [c, 'c0', ADDR.router6ClientSide, mac.eth0],
      [r, 'eth0', ADDR.client, mac.c0],
      [r, 'eth0', ADDR.client2, mac.c0],
      [r, 'eth0', ADDR.client6, mac.c0],
      [r, 'eth1', ADDR.server, mac.s0],
      [r, 'eth1', ADDR.server6, mac.s0],
      [s, 's0', ADDR.routerServerSide, mac.eth1],
      [s, 's0', ADDR.router6ServerSide, mac.eth1],
    ];
    for (const [ns, dev, ip, lladdr] of neigh) {
      await runOk(['ip', '-n', ns, 'neigh', 'replace', ip, 'lladdr', lladdr, 'nud', 'permanent', 'dev', dev]);
    }
  }

  iptablesCommand(family: Family): string {
    return `${family === 4 ? 'iptables' : 'ip6tables'}-${this.backend}`;
  }

  scriptEnv(): NodeJS.ProcessEnv {
    return { ...process.env, PATH: `/usr/sbin:/usr/bin:/sbin:/bin:${process.env.PATH ?? ''}` };
  }

  iptables(family: Family, args: string[]): Promise<RunResult> {
    return run(nsArgv(this.ns.router, [this.iptablesCommand(family), ...args]));
  }

  restore(family: Family, text: string): Promise<RunResult> {
    const cmd = `${family === 4 ? 'iptables' : 'ip6tables'}-${this.backend}-restore`;
    return run(nsArgv(this.ns.router, [cmd]), { input: text });
  }

  async save(family: Family): Promise<string> {
    const cmd = `${family === 4 ? 'iptables' : 'ip6tables'}-${this.backend}-save`;
    return (await runOk(nsArgv(this.ns.router, [cmd, '-c']))).stdout;
  }

  async runScript(script: string, timeoutMs = 60_000): Promise<RunResult> {
    const dir = mkdtempSync(join(tmpdir(), `${this.prefix}script-`));
    try {
      const file = join(dir, 'script.sh');
      writeFileSync(file, script);
      return await run(nsArgv(this.ns.router, ['bash', file]), { env: this.scriptEnv(), timeoutMs });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  recentRead(name: string): Promise<RunResult> {
    return run(nsArgv(this.ns.router, ['cat', `/proc/net/xt_recent/${name}`]));
  }

  /** What `echo TEXT > /proc/net/xt_recent/NAME` does in the router namespace (echo adds the newline). */
  recentWrite(name: string, text: string, append = false): Promise<RunResult> {
    const redirect = append ? '>>' : '>';
    return run(nsArgv(this.ns.router, ['bash', '-c', `echo "$1" ${redirect} "/proc/net/xt_recent/$2"`, 'recent-write', text, name]));
  }

  exec(ns: string, argv: string[], opts: RunOptions = {}): Promise<RunResult> {
    return run(nsArgv(ns, argv), opts);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const ns of [this.ns.client, this.ns.router, this.ns.server]) {
      await run(['ip', 'netns', 'del', ns]);
    }
  }
}

// ---------------------------------------------------------------------------
// xtr's lab behind the same face. The lab itself (namespaces, xtr process,
// control socket) belongs to test/helpers/netns.ts; this adapter only maps the
// Topology calls onto the `xtr` CLI, as users would type them.

/** Why the xtr side cannot run, or null when it can. Checked by every xtr case (never a silent skip). */
export function xtrPrerequisiteProblem(): string | null {
  for (const f of [join('dist', 'router', 'main.js'), join('dist', 'router', 'cli.js')]) {
    if (!existsSync(join(REPO_ROOT, f))) return `${f} missing: run \`npm run build\` (the router and the xtr CLI run from dist/)`;
  }
  return null;
}

export class XtrRouter implements Topology {
  readonly kind = 'xtr' as const;
  readonly ns: { client: string; router: string; server: string };
  readonly prefix: string;
  private readonly binDir: string;
  private destroyed = false;

  private constructor(private readonly lab: Lab) {
    this.prefix = lab.prefix;
    this.ns = { client: lab.ns.c, router: lab.ns.r, server: lab.ns.s };
    // `xtr` on PATH, so scripts say IPTABLES="xtr iptables" literally.
    this.binDir = mkdtempSync(join(tmpdir(), `${lab.prefix}bin-`));
    const wrapper = join(this.binDir, 'xtr');
    writeFileSync(wrapper, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(REPO_ROOT, 'bin', 'xtr.js'))} "$@"\n`);
    chmodSync(wrapper, 0o755);
  }

  /** Starts an xtr lab (test/helpers/netns.ts) under an `xk` prefix, TUN unless `mode` or $XTR_LAB_MODE says tap; fails with the reason when it cannot. */
  static async create(opts: { mode?: 'tun' | 'tap'; prefix?: string; patch?: LabOptions['patch'] } = {}): Promise<XtrRouter> {
    const problem = xtrPrerequisiteProblem();
    if (problem) throw new Error(`xtr side cannot run: ${problem}`);
    const envMode = process.env.XTR_LAB_MODE;
    const mode = opts.mode ?? (envMode === 'tap' || envMode === 'tun' ? envMode : 'tun');
    const lab = await startLab({ prefix: opts.prefix ?? uniquePrefix(), mode, patch: opts.patch });
    try {
      return new XtrRouter(lab);
    } catch (err) {
      await lab.stop();
      throw err;
    }
  }

  /** The router's log so far (for failure messages). */
  log(): string {
    return this.lab.router.log();
  }

  private xtrArgv(args: string[]): string[] {
    return [process.execPath, join(REPO_ROOT, 'bin', 'xtr.js'), '--socket', this.lab.router.socket, ...args];
  }

  iptablesCommand(family: Family): string {
    return `xtr ${family === 4 ? 'iptables' : 'ip6tables'}`;
  }

  scriptEnv(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      XTR_SOCKET: this.lab.router.socket,
      PATH: `${this.binDir}:/usr/sbin:/usr/bin:/sbin:/bin:${process.env.PATH ?? ''}`,
    };
  }

  iptables(family: Family, args: string[]): Promise<RunResult> {
    return run(this.xtrArgv([family === 4 ? 'iptables' : 'ip6tables', ...args]));
  }

  restore(family: Family, text: string): Promise<RunResult> {
    return run(this.xtrArgv([family === 4 ? 'iptables-restore' : 'ip6tables-restore']), { input: text });
  }

  async save(family: Family): Promise<string> {
    return (await runOk(this.xtrArgv([family === 4 ? 'iptables-save' : 'ip6tables-save', '-c']))).stdout;
  }

  async runScript(script: string, timeoutMs = 60_000): Promise<RunResult> {
    const dir = mkdtempSync(join(tmpdir(), `${this.prefix}script-`));
    try {
      const file = join(dir, 'script.sh');
      writeFileSync(file, script);
      return await run(nsArgv(this.ns.router, ['bash', file]), { env: this.scriptEnv(), timeoutMs });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  recentRead(name: string): Promise<RunResult> {
    return run(this.xtrArgv(['proc', 'cat', `net/xt_recent/${name}`]));
  }

  /** `echo TEXT >` appends a newline; the xtr write gets the same bytes. */
  recentWrite(name: string, text: string, _append = false): Promise<RunResult> {
    return run(this.xtrArgv(['proc', 'write', `net/xt_recent/${name}`, `${text}\n`]));
  }

  exec(ns: string, argv: string[], opts: RunOptions = {}): Promise<RunResult> {
    return run(nsArgv(ns, argv), opts);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    rmSync(this.binDir, { recursive: true, force: true });
    await this.lab.stop();
  }
}

// ---------------------------------------------------------------------------
// Counters: iptables-save -c parsed into per-chain policy and per-rule counters.

export interface RuleCounter {
  table: string;
  chain: string;
  /** 1-based position in its chain. */
  index: number;
  rule: string;
  packets: number;
  bytes: number;
}

export interface ChainCounter {
  table: string;
  chain: string;
  policy: string;
  packets: number;
  bytes: number;
}

export interface CounterSnapshot {
  chains: ChainCounter[];
  rules: RuleCounter[];
}

/** Parses `iptables-save -c` (both backends' and xtr's text). */
export function parseSaveCounters(text: string): CounterSnapshot {
  const chains: ChainCounter[] = [];
  const rules: RuleCounter[] = [];
  const position = new Map<string, number>();
  let table = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      table = line.slice(1);
      continue;
    }
    if (line === 'COMMIT') continue;
    let m = /^:(\S+)\s+(\S+)\s+\[(\d+):(\d+)\]$/.exec(line);
    if (m) {
      chains.push({ table, chain: m[1]!, policy: m[2]!, packets: Number(m[3]), bytes: Number(m[4]) });
      continue;
    }
    m = /^\[(\d+):(\d+)\]\s+-A\s+(\S+)\s*(.*)$/.exec(line);
    if (m) {
      const chain = m[3]!;
      const key = `${table}/${chain}`;
      const index = (position.get(key) ?? 0) + 1;
      position.set(key, index);
      rules.push({ table, chain, index, rule: m[4]!, packets: Number(m[1]), bytes: Number(m[2]) });
      continue;
    }
    throw new Error(`unparsable iptables-save -c line: ${raw}`);
  }
  return { chains, rules };
}

export async function counters(topo: Topology, family: Family): Promise<CounterSnapshot> {
  return parseSaveCounters(await topo.save(family));
}

/**
 * Counter lines for comparison: `table/CHAIN#n [p:b] rule` and
 * `table/CHAIN policy P [p:b]`, restricted to the given tables; user chains
 * (policy "-") included. Tables that one side lists with no rules and
 * zero counters and the other omits entirely are not a difference.
 */
export function counterLines(snap: CounterSnapshot, opts: { tables?: string[]; withRuleText?: boolean; policies?: boolean } = {}): string[] {
  const tables = opts.tables ?? ['filter'];
  const out: string[] = [];
  // Tables in a fixed order (iptables-save's order of tables is registration order, not meaningful).
  const order = (t: string) => (tables.indexOf(t) < 0 ? 99 : tables.indexOf(t));
  snap = {
    chains: [...snap.chains].sort((a, b) => order(a.table) - order(b.table)),
    rules: [...snap.rules].sort((a, b) => order(a.table) - order(b.table)),
  };
  if (opts.policies ?? true) {
    for (const c of snap.chains) {
      if (!tables.includes(c.table) || c.policy === '-') continue;
      out.push(`${c.table}/${c.chain} policy ${c.policy} [${c.packets}:${c.bytes}]`);
    }
  }
  for (const r of snap.rules) {
    if (!tables.includes(r.table)) continue;
    out.push(`${r.table}/${r.chain}#${r.index} [${r.packets}:${r.bytes}]${opts.withRuleText ? ` ${r.rule}` : ''}`);
  }
  return out;
}

/** The rule set without counters, for comparing what was loaded. */
export function ruleLines(snap: CounterSnapshot, tables: string[] = ['filter']): string[] {
  const out: string[] = [];
  // Tables in the given order; within a table, chains and rules as printed.
  for (const table of tables) {
    for (const c of snap.chains) if (c.table === table) out.push(`${c.table}: -N/-P ${c.chain} ${c.policy}`);
    for (const r of snap.rules) if (r.table === table) out.push(`${r.table}: -A ${r.chain} ${r.rule}`);
  }
  return out;
}

/**
 * Parses `iptables -L -v -x -n` into one line per chain header and per rule:
 * `CHAIN policy P [p:b]` (built-in) or `CHAIN refs N`, and
 * `CHAIN#n [p:b] TARGET PROT OPT IN OUT SOURCE DESTINATION EXTRA...` with
 * whitespace collapsed, for comparing what `-L` reports.
 */
export function parseListCounters(text: string): string[] {
  const out: string[] = [];
  let chain = '';
  let index = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    let m = /^Chain (\S+) \(policy (\S+) (\d+) packets, (\d+) bytes\)$/.exec(line);
    if (m) {
      chain = m[1]!;
      index = 0;
      out.push(`${chain} policy ${m[2]} [${m[3]}:${m[4]}]`);
      continue;
    }
    m = /^Chain (\S+) \((\d+) references?\)$/.exec(line);
    if (m) {
      chain = m[1]!;
      index = 0;
      out.push(`${chain} refs ${m[2]}`);
      continue;
    }
    if (/^pkts\s+bytes\s+target/.test(line)) continue;
    m = /^(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (!m || chain === '') throw new Error(`unparsable iptables -L -v -x -n line: ${raw}`);
    index += 1;
    out.push(`${chain}#${index} [${m[1]}:${m[2]}] ${m[3]!.split(/\s+/).join(' ')}`);
  }
  return out;
}

// ---------------------------------------------------------------------------
// /proc/net/xt_recent/NAME

export interface RecentEntry {
  addr: string;
  ttl: number;
  lastSeen: number;
  oldestPkt: number;
  stamps: number[];
}

/** Parses the procfs read format (`src=ADDR ttl: T last_seen: J oldest_pkt: I s0, s1, ...`). */
export function parseRecent(text: string): RecentEntry[] {
  const out: RecentEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^src=(\S+) ttl: (\d+) last_seen: (\d+) oldest_pkt: (\d+) ?(.*)$/.exec(line);
    if (!m) throw new Error(`unparsable xt_recent line: ${JSON.stringify(line)}`);
    const stamps = m[5]!.trim() === '' ? [] : m[5]!.split(', ').map((s) => Number(s));
    out.push({ addr: m[1]!, ttl: Number(m[2]), lastSeen: Number(m[3]), oldestPkt: Number(m[4]), stamps });
  }
  return out;
}

/** What comparable about a recent table: addresses (sorted), ttl and number of stamps; jiffies differ by nature. */
export function recentSummary(entries: RecentEntry[]): string[] {
  return entries.map((e) => `${e.addr} ttl=${e.ttl} stamps=${e.stamps.length} oldest_pkt=${e.oldestPkt}`).sort();
}

// ---------------------------------------------------------------------------
// Crafted packets: test/fixtures/differential/agent.py in an endpoint namespace.

export const AGENT_PATH = join(REPO_ROOT, 'test', 'fixtures', 'differential', 'agent.py');

/** A long-running scapy agent on an endpoint's interface (one python start-up per topology, not per packet). */
export class PacketAgent {
  private buffer = '';
  private waiters: Array<(line: string) => void> = [];
  private constructor(private readonly child: ReturnType<typeof spawn>, readonly where: string) {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.buffer += d;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        this.waiters.shift()?.(line);
      }
    });
  }

  private stderr = '';

  /** Starts the agent in `ns` on `iface`; `gw4`/`gw6` are the router's addresses on that link. */
  static async start(ns: string, iface: string, gw4: string, gw6: string): Promise<PacketAgent> {
    const child = spawn('ip', ['netns', 'exec', ns, '/usr/bin/python3', AGENT_PATH, iface, gw4, gw6], {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    const agent = new PacketAgent(child, `${ns}/${iface}`);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (agent.stderr += d));
    const ready = await agent.next(30_000);
    if (!ready.ready) throw new Error(`packet agent in ${ns} did not start: ${agent.stderr}`);
    return agent;
  }

  private next(timeoutMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error(`packet agent ${this.where}: no answer in ${timeoutMs} ms: ${this.stderr}`)), timeoutMs);
      const onExit = () => reject(new Error(`packet agent ${this.where} exited: ${this.stderr}`));
      this.child.once('exit', onExit);
      this.waiters.push((line) => {
        clearTimeout(timer);
        this.child.off('exit', onExit);
        try {
          resolvePromise(JSON.parse(line) as Record<string, unknown>);
        } catch {
          reject(new Error(`packet agent ${this.where}: bad answer ${line}`));
        }
      });
    });
  }

  private async request(cmd: Record<string, unknown>, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const answer = this.next(timeoutMs);
    this.child.stdin!.write(JSON.stringify(cmd) + '\n');
    const r = await answer;
    if (r.ok !== true) throw new Error(`packet agent ${this.where}: ${String(r.error)}`);
    return r;
  }

  listen(): Promise<unknown> {
    return this.request({ op: 'listen' });
  }

  /** Builds each scapy expression (names C, S, R, C6, S6, ... are the lab addresses) and sends it. */
  async send(packets: string[], gapMs = 0): Promise<number> {
    return (await this.request({ op: 'send', packets, gap_ms: gapMs })).sent as number;
  }

  /** Stops capturing and returns canonical descriptions of what the interface received. */
  async collect(): Promise<string[]> {
    return (await this.collectWithBytes()).packets;
  }

  /** collect() with each packet's bytes as hex, in the same order (for cases that compare bytes). */
  async collectWithBytes(): Promise<{ packets: string[]; hex: string[] }> {
    const r = await this.request({ op: 'collect' });
    return { packets: r.packets as string[], hex: r.hex as string[] };
  }

  async stop(): Promise<void> {
    try {
      await this.request({ op: 'quit' }, 3000);
    } catch {
      /* fall through to kill */
    }
    killGroup(this.child.pid);
  }
}

/**
 * Silences the endpoint kernels (their own iptables, legacy: INPUT and OUTPUT
 * policy DROP), so only crafted packets and the router's answers are on the
 * wire — no RSTs for crafted SYNs, no fragment-reassembly timeouts 30 s later.
 * The agents' AF_PACKET sockets are not subject to either.
 */
export async function silenceEndpoints(topo: Topology): Promise<void> {
  for (const ns of [topo.ns.client, topo.ns.server]) {
    for (const cmd of ['iptables-legacy', 'ip6tables-legacy']) {
      await runOk(nsArgv(ns, [cmd, '-P', 'INPUT', 'DROP']));
      await runOk(nsArgv(ns, [cmd, '-P', 'OUTPUT', 'DROP']));
    }
  }
}

// ---------------------------------------------------------------------------
// Differential runner: one rule set per case, the same crafted packets through
// the kernel reference and through xtr, compared on what each endpoint
// received, the restore status, per-rule counters and named recent tables.

export type DiffTable = 'raw' | 'mangle' | 'filter';

const BUILTIN_CHAINS: Record<DiffTable, string[]> = {
  raw: ['PREROUTING', 'OUTPUT'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
};

export interface DiffStep {
  from: 'client' | 'server';
  /** scapy expressions (agent.py); `$P` is this case's base port, distinct per case so conntrack entries never carry over. */
  packets: string[];
  gapMs?: number;
  /** Wait this long before the step (recent --seconds windows). */
  delayMs?: number;
}

export interface DiffCase {
  name: string;
  /** Per table: `-N CHAIN`, `-P CHAIN POLICY` and `-A ...` lines as iptables-save writes them; `$CMAC` = the client's MAC. */
  rules: Partial<Record<DiffTable, string[]>>;
  steps: DiffStep[];
  /** xt_recent tables to compare afterwards. */
  recent?: string[];
  /** What the kernel must show, so a case tests what it claims: packets received at each end. */
  expect: { server: number; client: number };
}

export interface DiffResult {
  restore: number;
  /** Counters right after iptables-restore, before any traffic (all zero on the kernel). */
  afterRestore: string[];
  server: string[];
  client: string[];
  /** What each end received, as hex bytes (same order as server/client). */
  serverBytes: string[];
  clientBytes: string[];
  counters: string[];
  /** The loaded rule set as iptables-save prints it (no counters). */
  rules: string[];
  recent: string[];
}

/** The iptables-restore text of a case: every table of DiffTable, so nothing of the previous case survives. */
export function restoreText(c: DiffCase): string {
  let text = '';
  for (const table of ['raw', 'mangle', 'filter'] as DiffTable[]) {
    const lines = c.rules[table] ?? [];
    const policies = new Map(BUILTIN_CHAINS[table].map((ch) => [ch, 'ACCEPT']));
    const userChains: string[] = [];
    const body: string[] = [];
    for (const line of lines) {
      const words = line.split(/\s+/);
      if (words[0] === '-N') userChains.push(words[1]!);
      else if (words[0] === '-P') policies.set(words[1]!, words[2]!);
      else body.push(line);
    }
    text += `*${table}\n`;
    for (const [ch, pol] of policies) text += `:${ch} ${pol} [0:0]\n`;
    for (const ch of userChains) text += `:${ch} - [0:0]\n`;
    text += body.map((l) => `${l}\n`).join('');
    text += 'COMMIT\n';
  }
  return text;
}

/** A topology plus its two agents, ready to run cases. */
export class DiffBench {
  private constructor(
    readonly topo: Topology,
    private readonly client: PacketAgent,
    private readonly server: PacketAgent,
    /** The client's c0 MAC (empty on a TUN link), substituted for `$CMAC` in rules and back in saved text. */
    private readonly clientMac: string,
  ) {}

  static async create(topo: Topology): Promise<DiffBench> {
    // Agents first: on an Ethernet link they resolve the router's MAC, which needs the endpoint's stack.
    const client = await PacketAgent.start(topo.ns.client, 'c0', ADDR.routerClientSide, ADDR.router6ClientSide);
    let server: PacketAgent;
    try {
      server = await PacketAgent.start(topo.ns.server, 's0', ADDR.routerServerSide, ADDR.router6ServerSide);
      await silenceEndpoints(topo);
    } catch (err) {
      await client.stop();
      throw err;
    }
    const link = JSON.parse((await runOk(['ip', '-n', topo.ns.client, '-j', 'link', 'show', 'dev', 'c0'])).stdout) as Array<{ address?: string; link_type?: string }>;
    const mac = link[0]?.link_type === 'ether' ? (link[0].address ?? '') : '';
    return new DiffBench(topo, client, server, mac);
  }

  async runCase(c: DiffCase, family: Family, basePort: number): Promise<DiffResult> {
    const usesMac = JSON.stringify(c.rules).includes('$CMAC');
    if (usesMac && this.clientMac === '') {
      return { restore: -1, afterRestore: [], server: [], client: [], serverBytes: [], clientBytes: [], counters: [`${this.topo.kind}: the client link has no MAC (TUN); this case needs TAP`], rules: [], recent: [] };
    }
    const loaded = await this.topo.restore(family, restoreText(c).replaceAll('$CMAC', this.clientMac));
    if (loaded.status !== 0) {
      return { restore: loaded.status, afterRestore: [], server: [], client: [], serverBytes: [], clientBytes: [], counters: [loaded.stderr.trim()], rules: [], recent: [] };
    }
    const tables: DiffTable[] = ['raw', 'mangle', 'filter'];
    const afterRestore = counterLines(parseSaveCounters(await this.topo.save(family)), { tables });
    // Each case compares its own traffic only: a counter that survives the restore is reported once, by its own test.
    for (const table of tables) {
      const z = await this.topo.iptables(family, ['-t', table, '-Z']);
      if (z.status !== 0) throw new Error(`${this.topo.kind}: -t ${table} -Z failed: ${z.stderr}`);
    }
    await this.client.listen();
    await this.server.listen();
    for (const step of c.steps) {
      if (step.delayMs) await sleep(step.delayMs);
      const agent = step.from === 'client' ? this.client : this.server;
      const exprs = step.packets.map((p) => p.replaceAll('$P', String(basePort)));
      await agent.send(exprs, step.gapMs ?? 0);
      // Let the router act (and answer) before the next step depends on it.
      await sleep(150);
    }
    await sleep(250);
    const { packets: client, hex: clientBytes } = await this.client.collectWithBytes();
    const { packets: server, hex: serverBytes } = await this.server.collectWithBytes();
    const snap = parseSaveCounters(await this.topo.save(family));
    const recent: string[] = [];
    for (const name of c.recent ?? []) {
      const r = await this.topo.recentRead(name);
      recent.push(`${name}: ${r.status === 0 ? recentSummary(parseRecent(r.stdout)).join(' | ') : `unreadable (${r.stderr.trim()})`}`);
    }
    return { restore: 0, afterRestore, server, client, serverBytes, clientBytes, counters: counterLines(snap, { tables, withRuleText: false }), rules: this.unMac(ruleLines(snap, tables)), recent };
  }

  private unMac(lines: string[]): string[] {
    if (this.clientMac === '') return lines;
    const re = new RegExp(this.clientMac, 'gi');
    return lines.map((l) => l.replace(re, '$CMAC'));
  }

  async destroy(): Promise<void> {
    await this.client.stop();
    await this.server.stop();
  }
}

/**
 * Kernel and xtr each build their side and run every case in order, at the
 * same time; per case one test checks the kernel did what the case claims and
 * one checks xtr did exactly what the kernel did. An xtr side that cannot start
 * fails its tests with the reason (never a skip).
 */
export function registerDifferentialTests(
  test: TestFn,
  family: Family,
  cases: DiffCase[],
  /** bytes: also compare what each end received byte for byte, after this normalisation of each packet's hex (fields that differ by design masked). */
  opts: { xtrMode?: 'tun' | 'tap'; bytes?: (hex: string) => string } = {},
): void {
  const names = new Set<string>();
  for (const c of cases) {
    if (names.has(c.name)) throw new Error(`duplicate case name ${c.name}`);
    names.add(c.name);
  }
  type Side = { topo?: Topology; bench?: DiffBench; ready: Promise<DiffBench>; results: Map<string, Promise<DiffResult>> };
  const mk = (): Side => {
    const ready = Promise.reject(new Error('not started'));
    ready.catch(() => {});
    return { ready, results: new Map() };
  };
  const sides = { kernel: mk(), xtr: mk() };
  const start = (side: Side, create: () => Promise<Topology>): Promise<unknown> => {
    side.ready = (async () => {
      side.topo = await create();
      side.bench = await DiffBench.create(side.topo);
      return side.bench;
    })();
    side.ready.catch(() => {});
    let chain: Promise<unknown> = side.ready;
    cases.forEach((c, i) => {
      const p = chain.catch(() => {}).then(async () => (await side.ready).runCase(c, family, 20000 + i * 16));
      p.catch(() => {});
      side.results.set(c.name, p);
      chain = p;
    });
    return chain.catch(() => {});
  };
  let done: Promise<unknown> = Promise.resolve();
  test.before(() => {
    done = Promise.all([start(sides.kernel, () => KernelRouter.create()), start(sides.xtr, () => XtrRouter.create({ mode: opts.xtrMode }))]);
  });
  test.after.always(async () => {
    await done;
    for (const side of [sides.kernel, sides.xtr]) {
      await side.bench?.destroy().catch(() => {});
      await side.topo?.destroy().catch(() => {});
    }
  });
  const xtrReady = async (t: ExecutionContext): Promise<boolean> => {
    try {
      await sides.xtr.ready;
      return true;
    } catch (err) {
      t.fail(`xtr side not available: ${(err as Error).message}`);
      return false;
    }
  };
  // Named per family where a file registers both (differential-reject).
  test.serial(`xtr = kernel: iptables-restore starts every counter, policies included, at zero${family === 6 ? ' (IPv6)' : ''}`, async (t) => {
    if (!(await xtrReady(t))) return;
    for (const c of cases) {
      const k = await sides.kernel.results.get(c.name)!;
      const x = await sides.xtr.results.get(c.name)!;
      t.deepEqual(x.afterRestore, k.afterRestore, `counters right after restoring the rule set of "${c.name}"`);
    }
  });
  for (const c of cases) {
    test.serial(`kernel: ${c.name}`, async (t) => {
      const k = await sides.kernel.results.get(c.name)!;
      t.is(k.restore, 0, `the kernel refused the rule set: ${k.counters.join(' ')}`);
      t.log([...k.server.map((p) => `server got: ${p}`), ...k.client.map((p) => `client got: ${p}`), ...k.counters.filter((l) => !l.endsWith('[0:0]')), ...k.recent].join('\n'));
      t.deepEqual({ server: k.server.length, client: k.client.length }, c.expect, 'packets received at each end');
    });
    test.serial(`xtr = kernel: ${c.name}`, async (t) => {
      if (!(await xtrReady(t))) return;
      const k = await sides.kernel.results.get(c.name)!;
      const x = await sides.xtr.results.get(c.name)!;
      t.is(x.restore, k.restore, `restore status (xtr said: ${x.restore === 0 ? 'ok' : x.counters.join(' ')})`);
      t.deepEqual(x.server, k.server, 'what the server side received');
      t.deepEqual(x.client, k.client, 'what the client side received (replies, REJECT answers)');
      if (opts.bytes) {
        t.deepEqual(x.serverBytes.map(opts.bytes), k.serverBytes.map(opts.bytes), 'the bytes the server side received');
        t.deepEqual(x.clientBytes.map(opts.bytes), k.clientBytes.map(opts.bytes), 'the bytes the client side received');
      }
      t.deepEqual(x.counters, k.counters, 'policy and per-rule counters (raw, mangle, filter)');
      t.deepEqual(x.rules, k.rules, 'the rule set as iptables-save prints it');
      t.deepEqual(x.recent, k.recent, 'recent tables');
    });
  }
}
