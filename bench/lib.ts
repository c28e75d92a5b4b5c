/**
 * What the traffic benchmarks share: the udpgen driver (one bounded
 * send/receive measurement), the kernel-forwarding topology with the lab's
 * addressing, and the statistics (medians over rounds, per-round ratios) that
 * keep a shared 2-CPU machine's load swings off the figures.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { adaptKnockScript, extractKnockScript } from '../test/helpers/knock.js';
import { background, exec, Namespaces, REPO_ROOT, run, sleep, startLab, vethPair, type Lab, type LabOptions } from '../test/helpers/netns.js';

export const UDPGEN = join(REPO_ROOT, 'bench', 'native', 'udpgen');
export const PORT = 9000;

export interface Measure {
  sent: number;
  sentPps: number;
  received: number;
  pps: number;
}

function field(out: string, key: string): number {
  const m = new RegExp(`\\b${key}=([0-9.]+)`).exec(out);
  if (!m) throw new Error(`udpgen output lacks ${key}=: ${out.trim()}`);
  return Number(m[1]);
}

/** One bounded run: receiver first, then the sender for `duration` seconds. */
export async function measure(sendNs: string, recvNs: string, dst: string, size: number, duration: number, rate = 0): Promise<Measure> {
  const recv = background([UDPGEN, 'recv', '--port', String(PORT), '--duration', String(duration + 3), '--idle', '1'], { netns: recvNs });
  await sleep(300);
  const rateArgs = rate > 0 ? ['--rate', String(Math.round(rate))] : [];
  const send = await run([UDPGEN, 'send', '--dst', dst, '--port', String(PORT), '--size', String(size), '--duration', String(duration), ...rateArgs], {
    netns: sendNs,
    timeoutMs: (duration + 10) * 1000,
  });
  const code = await recv.wait((duration + 10) * 1000);
  const out = recv.stdout().toString();
  if (code !== 0) throw new Error(`udpgen recv exit ${code}: ${recv.stderr()}`);
  return { sent: field(send, 'sent'), sentPps: field(send, 'pps'), received: field(out, 'received'), pps: field(out, 'pps') };
}

export function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** The upper median (the middle element for odd counts), as bench:forward has always reported it. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The sample whose pps is the median of the list. */
export function medianMeasure(list: readonly Measure[]): Measure {
  const sorted = [...list].sort((x, y) => x.pps - y.pps);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Per-round ratios a[i]/b[i] (0 where b delivered nothing): each pair was measured seconds apart, under the same outside load. */
export function pairedRatios(a: readonly Measure[], b: readonly Measure[]): number[] {
  return a.map((m, i) => (b[i].pps > 0 ? m.pps / b[i].pps : 0));
}

export interface KernelTopology {
  /** Sender namespace (c0 198.51.100.2, default via the router). */
  send: string;
  /** Router namespace: eth0 198.51.100.1 (client side), eth1 203.0.113.1, ip_forward on. */
  router: string;
  /** Receiver namespace (s0 203.0.113.2). */
  recv: string;
}

/**
 * Kernel forwarding with the lab's addressing and interface names:
 * sender - veth - router (ip_forward) - veth - receiver, in three new
 * namespaces `<prefix><tags[i]>` of `nss`.
 */
export async function kernelForwarding(nss: Namespaces, tags: readonly [string, string, string]): Promise<KernelTopology> {
  const send = await nss.add(tags[0]);
  const router = await nss.add(tags[1]);
  const recv = await nss.add(tags[2]);
  await vethPair({ ns: send, ifname: 'c0', addresses: ['198.51.100.2/24'] }, { ns: router, ifname: 'eth0', addresses: ['198.51.100.1/24'] });
  await vethPair({ ns: router, ifname: 'eth1', addresses: ['203.0.113.1/24'] }, { ns: recv, ifname: 's0', addresses: ['203.0.113.2/24'] });
  await run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'], { netns: router });
  await run(['ip', 'route', 'add', 'default', 'via', '198.51.100.1'], { netns: send });
  await run(['ip', 'route', 'add', 'default', 'via', '203.0.113.1'], { netns: recv });
  return { send, router, recv };
}

/** `/proc/loadavg`'s three averages, for the header line. */
export async function loadAverage(): Promise<string> {
  return (await exec(['cat', '/proc/loadavg'])).stdout.split(' ').slice(0, 3).join(' ');
}

export async function cpuCount(): Promise<string> {
  return (await exec(['nproc'])).stdout.trim();
}

/**
 * Runs `body` with a lab router (test/helpers/netns.ts startLab) that is
 * stopped however the bench ends (withBenchScope).
 */
export function withLab<T>(opts: LabOptions, body: (lab: Lab) => Promise<T>): Promise<T> {
  return withBenchScope('', async (scope) => body(await scope.startLab(opts)));
}

// ---------------------------------------------------------------------------
// Seed 001 on a router (bench:rules, bench:tcp: the stateful measurements).

/**
 * The text of ../shared/seeds/001_*.txt beside the checkout. (knock.ts's
 * readSeed locates the seeds from its own file, which is one level too deep
 * when it runs from dist/.)
 */
export function seed001(): string {
  const dir = resolve(REPO_ROOT, '..', 'shared', 'seeds');
  const name = existsSync(dir) ? readdirSync(dir).find((f) => f.startsWith('001_') && f.endsWith('.txt')) : undefined;
  if (!name) throw new Error(`no 001_*.txt in ${dir}: the stateful measurement needs ../shared/seeds beside the checkout`);
  return readFileSync(join(dir, name), 'utf8');
}

/** Runs the adapted seed-001 script (FORWARD placement) in `routerNs` with $IPTABLES = `iptables`; returns the script's combined output. */
export async function runSeedScript(routerNs: string, iptables: string): Promise<string> {
  const { script } = adaptKnockScript(extractKnockScript(seed001()), { iptables, placement: 'FORWARD' });
  const dir = mkdtempSync(join(tmpdir(), 'xtr-bench-seed001-'));
  try {
    const file = join(dir, 'seed001.sh');
    writeFileSync(file, script);
    const r = await exec(['ip', 'netns', 'exec', routerNs, 'env', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'bash', file], { timeoutMs: 180_000 });
    if (r.timedOut) throw new Error(`seed-001 script timed out in ${routerNs}`);
    return r.stdout + r.stderr;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What a bench builds its topology in: namespaces and labs that withBenchScope removes. */
export interface BenchScope {
  readonly nss: Namespaces;
  /** startLab, the lab stopped when the scope ends. */
  startLab(opts: LabOptions): Promise<Lab>;
}

/**
 * Runs `body` with namespaces `<prefix>...` and any labs it starts, all
 * removed however the bench ends: normally, on an exception, or on
 * SIGINT/SIGTERM (a bench interrupted by hand leaves nothing behind).
 */
export async function withBenchScope<T>(prefix: string, body: (scope: BenchScope) => Promise<T>): Promise<T> {
  const nss = new Namespaces(prefix);
  const labs: Lab[] = [];
  const cleanup = async () => {
    for (const l of labs.splice(0)) await l.stop();
    await nss.cleanup();
  };
  const onInt = () => void cleanup().then(() => process.exit(130));
  const onTerm = () => void cleanup().then(() => process.exit(143));
  process.once('SIGINT', onInt);
  process.once('SIGTERM', onTerm);
  try {
    return await body({
      nss,
      startLab: async (opts) => {
        const l = await startLab(opts);
        labs.push(l);
        return l;
      },
    });
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    await cleanup();
  }
}
