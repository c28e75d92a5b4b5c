/**
 * A random-source SYN flood through a stateful rule set, xtr against the
 * kernel in the same run (issue 12, "Floods"):
 *
 *   client 198.51.100.2 -- router -- server 203.0.113.2
 *
 * Both routers carry the same FORWARD chain:
 *   -m state --state ESTABLISHED,RELATED -j ACCEPT
 *   -p icmp -j ACCEPT
 *   -p tcp --dport 80 -m state --state NEW -j ACCEPT
 *   -j DROP
 * The kernel router is a namespace with ip_forward and iptables-legacy; xtr
 * is the link-mode lab (TUN) with the rules through `xtr iptables`.
 *
 * One round, per router in alternation (which goes first alternates):
 *  1. conntrack flushed;
 *  2. an established TCP flow: iperf3 (one stream, client -> server, port
 *     80 so the rules admit it, the same direction and ingress link as the
 *     flood) at a fixed rate (`--rate`, default 100 Mbit/s: legitimate
 *     traffic, not a second flood; `--rate 0` = unlimited, which on two
 *     shared cores measures how the CPU is split between iperf3, the
 *     generator and the router rather than the router) runs for
 *     pre + flood + 2 seconds; its 1 s intervals before the flood and those
 *     wholly inside it give `established_kept` = median bits/s during /
 *     median bits/s before;
 *  3. after `pre` seconds, bench/flood-syn.py from the client namespace for
 *     `flood` seconds: SYNs to port 80 from random sources and ports with
 *     right checksums, one raw socket at full speed (on this machine it
 *     sends ~1.3x what `hping3 --flood --rand-source` does); what it sent
 *     is printed as `offered`. `ping -i 0.05` runs through the router
 *     meanwhile;
 *  4. new flows/s = SYNs from foreign sources that reached the server,
 *     counted by `iptables-legacy -A INPUT -p tcp --syn --dport 80
 *     ! -s 198.51.100.0/24 -j DROP` in the server namespace (which also
 *     keeps the server from answering into the void) over the flood's
 *     duration. A forwarded NEW SYN is a conntrack entry confirmed at
 *     POSTROUTING, in either router, so this counts insertions the same way
 *     for both; `conntrack -S` / `xtr conntrack -S` are printed beside.
 *  5. xtr's RSS is sampled every 100 ms during its floods (`VmRSS`), its
 *     `VmHWM` read at the end, and `rss_after` is VmRSS 3 s after the
 *     flood (the table still holds the flood's entries then).
 *  6. per round also printed: TX drops of the client's link (for xtr: its
 *     TUN ring overflowing, packets lost before xtr could see them), RX
 *     drops of the server's, and xtr's drops by reason (`new_flow_shed`:
 *     SYNs it shed while backlogged, docs/floods.md).
 * Figures are medians over rounds; ratios are medians of per-round ratios.
 * The load average is printed per round and at the end: the machine's two
 * CPUs are shared, the generator and iperf3 compete with the router for them.
 *
 *   npm run bench:flood [-- --rounds N --flood S --pre S --cpu-prof DIR --rate R --no-established --pin]
 *
 * `--pin` (two or more CPUs): the generator runs on CPU 0 for both routers
 * (`taskset -c 0`; the kernel router forwards in the generator's own system
 * calls, so on that CPU too) and xtr's threads on CPU 1 (`taskset -apc 1`,
 * as a gateway would keep its forwarding thread off the CPU the traffic
 * arrives on). Unpinned, the scheduler sometimes puts xtr beside the
 * generator, and a round's rate swings by half.
 *
 * Last line: key=value (ratio_vs_kernel_newflows goal >= 1.0,
 * established_kept goal >= 0.5, peak_rss_mb goal < 100).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { background, exec, REPO_ROOT, run, sleep, uniquePrefix, type Lab } from '../test/helpers/netns.js';
import { cpuCount, fmt, kernelForwarding, loadAverage, median, withBenchScope } from './lib.js';

const SERVER = '203.0.113.2';
const IPERF_PORT = 80;
const SYNGEN = join(REPO_ROOT, 'bench', 'flood-syn.py');

interface Args {
  rounds: number;
  flood: number;
  pre: number;
  cpuProf: string | null;
  /** Skip the established flow (profiling the flood alone). */
  established: boolean;
  /** The established flow's target rate (iperf3 -b; '0' = as fast as it goes). */
  rate: string;
  /** Generator on CPU 0 for both routers, xtr on CPU 1. */
  pin: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { rounds: Number(process.env.BENCH_ROUNDS ?? 3), flood: Number(process.env.BENCH_DURATION ?? 5), pre: 3, cpuProf: null, established: true, rate: '100M', pin: false };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (k === '--no-established') {
      a.established = false;
      i--;
    } else if (k === '--pin') {
      a.pin = true;
      i--;
    } else if (k === '--rounds') a.rounds = Number(v);
    else if (k === '--flood') a.flood = Number(v);
    else if (k === '--pre') a.pre = Number(v);
    else if (k === '--rate' && v && /^[0-9]+[KMG]?$/.test(v)) a.rate = v;
    else if (k === '--cpu-prof' && v) a.cpuProf = v;
    else throw new Error(`bench:flood: unknown argument ${k} (--rounds N --flood S --pre S --cpu-prof DIR --rate R --no-established --pin)`);
  }
  if (!(Number.isInteger(a.rounds) && a.rounds >= 1 && a.rounds <= 20)) throw new Error('--rounds must be an integer from 1 to 20');
  if (!(a.flood >= 2 && a.flood <= 60)) throw new Error('--flood must be between 2 and 60 seconds');
  if (!(a.pre >= 2 && a.pre <= 30)) throw new Error('--pre must be between 2 and 30 seconds');
  return a;
}

export const FLOOD_RULES: readonly (readonly string[])[] = [
  ['-A', 'FORWARD', '-m', 'state', '--state', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
  ['-A', 'FORWARD', '-p', 'icmp', '-j', 'ACCEPT'],
  ['-A', 'FORWARD', '-p', 'tcp', '--dport', '80', '-m', 'state', '--state', 'NEW', '-j', 'ACCEPT'],
  ['-A', 'FORWARD', '-j', 'DROP'],
];

/** The server's counting rule: flood SYNs (any source but the client's link) dropped and counted. */
const COUNT_RULE = ['-A', 'INPUT', '-p', 'tcp', '--syn', '--dport', '80', '!', '-s', '198.51.100.0/24', '-j', 'DROP'];

interface Router {
  name: 'kernel' | 'xtr';
  client: string;
  server: string;
  flush(): Promise<void>;
  stats(): Promise<string>;
  count(): Promise<number>;
  /** Extra counters worth printing (xtr's drops by reason). */
  status?(): Promise<string>;
  pid: number | null;
}

interface Round {
  newflows: number;
  offered: number;
  kept: number;
  before: number;
  during: number;
  pingLoss: number;
  peakRssKb: number;
  rssAfterKb: number;
  stats: string;
}

function rssKb(pid: number, key = 'VmRSS'): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]);
}

/** The node process of the lab's router (ip netns exec execs it in place). */
function routerPid(lab: Lab): number {
  const pid = lab.router.proc.proc.pid!;
  const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  if (comm !== 'node') throw new Error(`router pid ${pid} is ${comm}, not node`);
  return pid;
}

/** Packets counted by the first rule of a chain, from `-L CHAIN -v -x -n`. */
function firstRulePackets(listing: string): number {
  const line = listing.split('\n')[2] ?? '';
  return Number(line.trim().split(/\s+/)[0] ?? 0);
}

/** TX drops of the client's link (a TUN whose queue xtr did not drain, or the kernel's veth) and RX drops of the server's, over the round. */
async function linkDrops(r: Router): Promise<string> {
  const one = async (ns: string, dir: 'tx' | 'rx') => {
    const j = JSON.parse(await run(['ip', '-s', '-j', 'link', 'show'], { netns: ns })) as { ifname: string; stats64?: Record<string, { dropped: number }> }[];
    return j.filter((l) => l.ifname !== 'lo').reduce((a, l) => a + (l.stats64?.[dir]?.dropped ?? 0), 0);
  };
  let out = `client_tx_dropped=${await one(r.client, 'tx')} server_rx_dropped=${await one(r.server, 'rx')}`;
  if (r.status) out += ` ${await r.status()}`;
  return out;
}

interface IperfInterval {
  start: number;
  end: number;
  bits_per_second: number;
}

async function round(r: Router, args: Args): Promise<Round> {
  await r.flush();
  await run(['iptables-legacy', '-Z', 'INPUT'], { netns: r.server });
  const total = args.pre + args.flood + 2;
  const srv = background(['iperf3', '-s', '-1', '-p', String(IPERF_PORT)], { netns: r.server });
  await sleep(400);
  const cli = background(args.established ? ['iperf3', '-c', SERVER, '-p', String(IPERF_PORT), '-t', String(total), ...(args.rate === '0' ? [] : ['-b', args.rate, '--fq-rate', args.rate]), '-i', '1', '-J', '--connect-timeout', '3000'] : ['true'], { netns: r.client });
  let peak = 0;
  let sampler: NodeJS.Timeout | null = null;
  if (r.pid !== null) {
    const pid = r.pid;
    sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssKb(pid));
      } catch {
        /* gone: reported by the liveness check below */
      }
    }, 100);
  }
  try {
    await sleep(args.pre * 1000);
    const ping = background(['ping', '-n', '-q', '-i', '0.05', '-W', '1', '-w', String(args.flood), SERVER], { netns: r.client });
    const t0 = Date.now();
    const gen = await exec([...(args.pin ? ['taskset', '-c', '0'] : []), '/usr/bin/python3', SYNGEN, SERVER, '80', String(args.flood)], { netns: r.client, timeoutMs: (args.flood + 10) * 1000 });
    const floodSecs = (Date.now() - t0) / 1000;
    await sleep(300);
    const counted = await r.count();
    const m = /sent=(\d+)/.exec(gen.stdout);
    if (!m) throw new Error(`flood-syn.py: ${gen.stdout} ${gen.stderr}`);
    const offered = Number(m[1]) / floodSecs;
    await ping.wait((args.flood + 5) * 1000);
    const pm = /(\d+) packets transmitted, (\d+) received/.exec(ping.stdout().toString());
    const pingLoss = pm && Number(pm[1]) > 0 ? 1 - Number(pm[2]) / Number(pm[1]) : 1;
    const code = await cli.wait((total + 15) * 1000);
    await srv.wait(3000);
    const out = cli.stdout().toString();
    let intervals: IperfInterval[] = [];
    if (args.established) {
      try {
        intervals = (JSON.parse(out) as { intervals: { sum: IperfInterval }[] }).intervals.map((i) => i.sum);
      } catch {
        throw new Error(`${r.name}: iperf3 exit ${code}: ${out.slice(0, 400)} ${cli.stderr()}`);
      }
    }
    // intervals wholly before the flood (the first second is slow start) and wholly inside it
    const before = median(intervals.filter((i) => i.start >= 1 && i.end <= args.pre + 0.05).map((i) => i.bits_per_second));
    const during = median(intervals.filter((i) => i.start >= args.pre + 0.5 && i.end <= args.pre + args.flood + 0.05).map((i) => i.bits_per_second));
    let rssAfter = 0;
    if (r.pid !== null) {
      await sleep(3000);
      rssAfter = rssKb(r.pid);
    }
    return {
      newflows: counted / floodSecs,
      offered,
      kept: before > 0 ? (during ?? 0) / before : 0,
      before,
      during: during ?? 0,
      pingLoss,
      peakRssKb: peak,
      rssAfterKb: rssAfter,
      stats: `${(await r.stats()).trim()} ${await linkDrops(r)}`,
    };
  } finally {
    if (sampler) clearInterval(sampler);
    await cli.kill('SIGKILL');
    await srv.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const prefix = uniquePrefix('yb');
  // withBenchScope: namespaces, the lab and whatever runs in them go however the bench ends (Ctrl-C included).
  await withBenchScope(prefix, async ({ nss, startLab }) => {
    const k = await kernelForwarding(nss, ['kc', 'kr', 'ks']);
    for (const rule of FLOOD_RULES) await run(['iptables-legacy', ...rule], { netns: k.router });
    await run(['iptables-legacy', ...COUNT_RULE], { netns: k.recv });
    const kernel: Router = {
      name: 'kernel',
      client: k.send,
      server: k.recv,
      pid: null,
      flush: async () => void (await exec(['conntrack', '-F'], { netns: k.router })),
      stats: async () => {
        const s = await exec(['conntrack', '-S'], { netns: k.router });
        const c = await exec(['conntrack', '-C'], { netns: k.router });
        const sum = (key: string) => [...s.stdout.matchAll(new RegExp(`\\b${key}=(\\d+)`, 'g'))].reduce((a, m) => a + Number(m[1]), 0);
        return `count=${c.stdout.trim()} drop=${sum('drop')} early_drop=${sum('early_drop')} insert_failed=${sum('insert_failed')}`;
      },
      count: async () => firstRulePackets(await run(['iptables-legacy', '-L', 'INPUT', '-v', '-x', '-n'], { netns: k.recv })),
    };
    if (args.cpuProf) mkdirSync(args.cpuProf, { recursive: true });
    const lab = await startLab({
      prefix: `${prefix}x`,
      logLevel: 'warn',
      nodeArgs: args.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${args.cpuProf}`] : [],
    });
    const l = lab;
    for (const rule of FLOOD_RULES) {
      const xr = await l.xtr(['iptables', ...rule]);
      if (xr.status !== 0) throw new Error(`xtr iptables ${rule.join(' ')}: ${xr.stderr}`);
    }
    await l.run('s', ['iptables-legacy', ...COUNT_RULE]);
    const xtr: Router = {
      name: 'xtr',
      client: l.ns.c,
      server: l.ns.s,
      pid: routerPid(l),
      flush: async () => void (await l.xtr(['conntrack', '-F'])),
      stats: async () => {
        const s = (await l.xtr(['conntrack', '-S'])).stdout;
        const c = (await l.xtr(['conntrack', '-C'])).stdout.trim();
        return `count=${c} ${s.replace(/^cpu=\d+\s+/, '').trim()}`;
      },
      status: async () => {
        const st = JSON.parse((await l.xtr(['status', '--json'])).stdout) as { drops: Record<string, number> };
        return Object.entries(st.drops).map(([k, v]) => `${k}=${v}`).join(' ');
      },
      count: async () => firstRulePackets(await l.run('s', ['iptables-legacy', '-L', 'INPUT', '-v', '-x', '-n'])),
    };
    const rss0 = rssKb(xtr.pid!);
    if (args.pin) {
      if (Number(await cpuCount()) < 2) throw new Error('--pin needs two CPUs');
      await run(['taskset', '-apc', '1', String(xtr.pid)]);
    }

    console.log(`bench:flood  cpus=${await cpuCount()}${args.pin ? '  pinned: generator CPU 0, xtr CPU 1' : ''}  load=${await loadAverage()}  rounds=${args.rounds} x (${args.pre}s before + ${args.flood}s flood)  xtr rss before=${fmt(rss0 / 1024)} MB`);
    const res: Record<'kernel' | 'xtr', Round[]> = { kernel: [], xtr: [] };
    for (let i = 0; i < args.rounds; i++) {
      const order = i % 2 === 0 ? [kernel, xtr] : [xtr, kernel];
      for (const r of order) {
        const x = await round(r, args);
        res[r.name].push(x);
        console.log(
          `round ${i + 1} ${r.name.padEnd(6)} new flows/s ${fmt(x.newflows).padStart(8)} (offered ${fmt(x.offered)}/s)  established ${(x.before / 1e6).toFixed(0)} -> ${(x.during / 1e6).toFixed(0)} Mbit/s (kept ${x.kept.toFixed(2)})  ping loss ${(x.pingLoss * 100).toFixed(0)} %` +
            (r.pid !== null ? `  rss peak ${fmt(x.peakRssKb / 1024)} MB after ${fmt(x.rssAfterKb / 1024)} MB` : '') +
            `  [${x.stats}]  load=${await loadAverage()}`,
        );
        if (lab.router.proc.proc.exitCode !== null) throw new Error(`xtr exited (${lab.router.proc.proc.exitCode}) during the flood`);
      }
    }
    const ratios = res.xtr.map((x, i) => (res.kernel[i].newflows > 0 ? x.newflows / res.kernel[i].newflows : 0));
    const med = (who: 'kernel' | 'xtr', f: (r: Round) => number) => median(res[who].map(f));
    const hwm = rssKb(xtr.pid!, 'VmHWM');
    const peak = Math.max(hwm, ...res.xtr.map((x) => x.peakRssKb));
    const rssAfter = med('xtr', (x) => x.rssAfterKb);
    const load = await loadAverage();
    console.log(`medians over ${args.rounds} rounds (load ${load}):`);
    console.log(`  new flows/s     kernel ${fmt(med('kernel', (x) => x.newflows))}   xtr ${fmt(med('xtr', (x) => x.newflows))}   ratio ${median(ratios).toFixed(3)} (goal >= 1.0)`);
    console.log(`  offered (generator) kernel ${fmt(med('kernel', (x) => x.offered))}/s   xtr ${fmt(med('xtr', (x) => x.offered))}/s`);
    console.log(`  established kept kernel ${med('kernel', (x) => x.kept).toFixed(2)}   xtr ${med('xtr', (x) => x.kept).toFixed(2)} (goal >= 0.5)`);
    console.log(`  ping loss during flood kernel ${(med('kernel', (x) => x.pingLoss) * 100).toFixed(0)} %   xtr ${(med('xtr', (x) => x.pingLoss) * 100).toFixed(0)} %`);
    console.log(`  xtr rss: before ${fmt(rss0 / 1024)} MB, peak ${fmt(peak / 1024)} MB (VmHWM ${fmt(hwm / 1024)} MB; goal < 100), after ${fmt(rssAfter / 1024)} MB`);
    console.log(
      [
        `ratio_vs_kernel_newflows=${median(ratios).toFixed(3)}`,
        `kernel_newflows=${Math.round(med('kernel', (x) => x.newflows))}`,
        `xtr_newflows=${Math.round(med('xtr', (x) => x.newflows))}`,
        `offered=${Math.round(med('xtr', (x) => x.offered))}`,
        `established_kept=${med('xtr', (x) => x.kept).toFixed(3)}`,
        `kernel_established_kept=${med('kernel', (x) => x.kept).toFixed(3)}`,
        `ping_loss=${med('xtr', (x) => x.pingLoss).toFixed(3)}`,
        `peak_rss_mb=${(peak / 1024).toFixed(1)}`,
        `rss_after_mb=${(rssAfter / 1024).toFixed(1)}`,
        `rss_before_mb=${(rss0 / 1024).toFixed(1)}`,
        `pinned=${args.pin ? 1 : 0}`,
        `load=${load.replace(/ /g, ',')}`,
      ].join(' '),
    );
  });
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
