/**
 * What TARPIT and DELUDE cost, in one run on this machine:
 *
 * 1. Held connections: bench/tarpit-hold.py in the lab's client namespace
 *    opens N connections (10,000 and 100,000 by default; fewer if the
 *    namespace cannot open them: the count reached is printed) to the server
 *    behind xtr, every one caught by
 *      -A FORWARD -p tcp -d 203.0.113.2 --dport 7000:7999 -j TARPIT
 *    (ports 7100-7999; 7000 is the flood's) and held open (each handshake completed against TARPIT's SYN/ACK, then
 *    a zero window). xtr keeps nothing per connection, so its RSS should not
 *    grow with N: `rss_growth_kb_N` is VmRSS while the N connections are
 *    held minus VmRSS before (goal < 10 MB at the largest N). The router's
 *    CPU time (/proc/PID/stat utime+stime) over the opening, divided by the
 *    segments the TARPIT rule counted, is `cpu_us_per_segment_N`.
 * 2. Replies per second under a SYN flood (hping3 --flood -S from the client
 *    namespace to 203.0.113.2:7000 for D seconds): xtr's TARPIT, xtr's
 *    DELUDE, and the kernel's `REJECT --reject-with tcp-reset` in a router
 *    namespace of the same shape, alternating in each round. Replies are
 *    counted where they arrive, by an `iptables-legacy -A INPUT -p tcp
 *    --sport 7000 -j DROP` rule in each client namespace (which also keeps
 *    the client from answering SYN/ACKs with RSTs). `ratio_vs_kernel_reset`
 *    = the lower of the TARPIT and DELUDE medians of per-round ratios to the
 *    kernel (goal >= 1.0).
 *
 * Every figure is the median over the rounds (3 by default), the load
 * average printed with them; the machine's 2 CPUs are shared.
 *
 *   npm run bench:tarpit [-- --rounds N --duration S --counts 10000,100000]
 *
 * The last line is one `key=value` line for scripts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { background, exec, REPO_ROOT, run, sleep, uniquePrefix, vethPair, type Lab } from '../test/helpers/netns.js';
import { cpuCount, fmt, loadAverage, median, withBenchScope } from './lib.js';

const SERVER = '203.0.113.2';
const HOLD = join(REPO_ROOT, 'bench', 'tarpit-hold.py');
/** Connections one tarpit-hold.py process opens at most (it needs a descriptor each). */
const PER_PROCESS = 18_000;

interface Args {
  rounds: number;
  duration: number;
  counts: number[];
}

function parseArgs(argv: string[]): Args {
  const a: Args = { rounds: Number(process.env.BENCH_ROUNDS ?? 3), duration: Number(process.env.BENCH_DURATION ?? 3), counts: [10_000, 100_000] };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (argv[i] === '--rounds') a.rounds = Number(v), i++;
    else if (argv[i] === '--duration') a.duration = Number(v), i++;
    else if (argv[i] === '--counts') a.counts = v!.split(',').map(Number), i++;
    else throw new Error(`bench:tarpit: unknown argument ${argv[i]} (--rounds N --duration S --counts A,B)`);
  }
  if (!(a.rounds >= 1 && a.duration > 0 && a.counts.every((c) => c > 0))) throw new Error('bench:tarpit: rounds >= 1, duration > 0, counts > 0');
  return a;
}

/** utime+stime of a process in microseconds (clock ticks of 100 Hz). */
function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]);
}

/** The node process of the lab's router (ip netns exec execs it in place). */
function routerPid(lab: Lab): number {
  const pid = lab.router.proc.proc.pid!;
  const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  if (comm !== 'node') throw new Error(`router pid ${pid} is ${comm}, not node`);
  return pid;
}

async function xtr(lab: Lab, family: 'iptables' | 'ip6tables', args: string[]): Promise<string> {
  const r = await lab.xtr([family, ...args]);
  if (r.status !== 0) throw new Error(`xtr ${family} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Packets counted by the first rule of a chain, from `-L CHAIN -v -x -n`. */
function firstRulePackets(listing: string): number {
  const line = listing.split('\n')[2] ?? '';
  return Number(line.trim().split(/\s+/)[0] ?? 0);
}

interface Hold {
  established: number;
  failed: number;
  seconds: number;
  rssGrowthKb: number;
  cpuUsPerSegment: number;
  segments: number;
}

async function holdRound(lab: Lab, count: number): Promise<Hold> {
  const pid = routerPid(lab);
  await xtr(lab, 'iptables', ['-Z']);
  await sleep(500);
  const rss0 = rssKb(pid);
  const cpu0 = cpuMicros(pid);
  // The container's hard RLIMIT_NOFILE (20,000 here) caps one process: split the count.
  const procs = Math.ceil(count / PER_PROCESS);
  const timeout = 30 + Math.ceil(count / 1000);
  const tools = Array.from({ length: procs }, (_, i) =>
    background(['/usr/bin/python3', HOLD, '--dst', SERVER, '--ports', '7100-7999', '--count', String(Math.ceil(count / procs)), '--src', '198.51.100.2,198.51.100.3', '--port-offset', String(i * 167), '--outstanding', String(Math.ceil(1000 / procs)), '--timeout', String(timeout)], { netns: lab.ns.c }),
  );
  try {
    const end = Date.now() + (timeout + 60) * 1000;
    const done = () => tools.every((t) => t.stdout().toString().includes('established=') || t.proc.exitCode !== null);
    while (!done() && Date.now() < end) await sleep(200);
    let established = 0;
    let failed = 0;
    let seconds = 0;
    for (const tool of tools) {
      const line = tool.stdout().toString();
      const m = /established=(\d+) failed=(\d+) seconds=([0-9.]+)/.exec(line);
      if (!m) throw new Error(`tarpit-hold.py: ${line} ${tool.stderr()}`);
      established += Number(m[1]);
      failed += Number(m[2]);
      seconds = Math.max(seconds, Number(m[3]));
    }
    const cpu1 = cpuMicros(pid);
    await sleep(1000);
    const rss1 = rssKb(pid);
    const segments = firstRulePackets(await xtr(lab, 'iptables', ['-L', 'FORWARD', '-v', '-x', '-n']));
    for (const tool of tools) tool.proc.stdin!.write('close\n');
    for (const tool of tools) await tool.wait(60_000);
    return {
      established,
      failed,
      seconds,
      rssGrowthKb: rss1 - rss0,
      cpuUsPerSegment: segments > 0 ? (cpu1 - cpu0) / segments : 0,
      segments,
    };
  } finally {
    for (const tool of tools) await tool.kill('SIGKILL');
  }
}

/** hping3 SYN flood for `duration` s; returns replies/s counted by the client's INPUT rule. */
async function flood(clientNs: string, duration: number): Promise<number> {
  await run(['iptables-legacy', '-Z', 'INPUT'], { netns: clientNs });
  const t0 = Date.now();
  await exec(['timeout', '-s', 'INT', String(duration), 'hping3', '-q', '-S', '-p', '7000', '--flood', SERVER], { netns: clientNs, timeoutMs: (duration + 10) * 1000 });
  await sleep(300);
  const secs = (Date.now() - t0 - 300) / 1000;
  const listing = await run(['iptables-legacy', '-L', 'INPUT', '-v', '-x', '-n'], { netns: clientNs });
  return firstRulePackets(listing) / secs;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const prefix = uniquePrefix('xwb');
  console.log(`bench:tarpit  cpus=${await cpuCount()} load=${await loadAverage()} rounds=${args.rounds} flood=${args.duration}s counts=${args.counts.join(',')}`);
  // withBenchScope: namespaces, the lab and whatever runs in them go however the bench ends (Ctrl-C included).
  await withBenchScope(`${prefix}k`, async ({ nss, startLab }) => {
    const lab = await startLab({ prefix: `${prefix}x`, logLevel: 'warn' });
    // Kernel reference: client - router - server, REJECT --reject-with tcp-reset in FORWARD.
    const kc = await nss.add('c');
    const kr = await nss.add('r');
    const ks = await nss.add('s');
    await vethPair({ ns: kc, ifname: 'c0', addresses: ['198.51.100.2/24'] }, { ns: kr, ifname: 'eth0', addresses: ['198.51.100.1/24'] });
    await vethPair({ ns: kr, ifname: 'eth1', addresses: ['203.0.113.1/24'] }, { ns: ks, ifname: 's0', addresses: ['203.0.113.2/24'] });
    await run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'], { netns: kr });
    await run(['ip', 'route', 'add', 'default', 'via', '198.51.100.1'], { netns: kc });
    await run(['ip', 'route', 'add', 'default', 'via', '203.0.113.1'], { netns: ks });
    await run(['iptables-legacy', '-A', 'FORWARD', '-p', 'tcp', '-d', SERVER, '--dport', '7000', '-j', 'REJECT', '--reject-with', 'tcp-reset'], { netns: kr });
    for (const ns of [kc, lab.ns.c]) await run(['iptables-legacy', '-A', 'INPUT', '-p', 'tcp', '--sport', '7000', '-j', 'DROP'], { netns: ns });

    // 1. Held connections.
    const holdResults = new Map<number, Hold[]>();
    await xtr(lab, 'iptables', ['-F']);
    await xtr(lab, 'iptables', ['-A', 'FORWARD', '-p', 'tcp', '-d', SERVER, '--dport', '7000:7999', '-j', 'TARPIT']);
    for (let r = 0; r < args.rounds; r++) {
      for (const count of args.counts) {
        const h = await holdRound(lab, count);
        holdResults.set(count, [...(holdResults.get(count) ?? []), h]);
        console.log(`  round ${r + 1} hold ${fmt(count)}: established ${fmt(h.established)} (last after ${h.seconds.toFixed(1)} s) failed ${fmt(h.failed)}, TARPIT segments ${fmt(h.segments)}, rss +${fmt(h.rssGrowthKb)} kB, ${h.cpuUsPerSegment.toFixed(1)} us CPU/segment  load=${await loadAverage()}`);
        await sleep(2000);
      }
    }

    // 2. SYN flood replies per second, alternating kernel / TARPIT / DELUDE.
    const kernel: number[] = [];
    const tarpit: number[] = [];
    const delude: number[] = [];
    for (let r = 0; r < args.rounds; r++) {
      kernel.push(await flood(kc, args.duration));
      for (const [target, into] of [['TARPIT', tarpit], ['DELUDE', delude]] as const) {
        await xtr(lab, 'iptables', ['-F']);
        await xtr(lab, 'iptables', ['-A', 'FORWARD', '-p', 'tcp', '-d', SERVER, '--dport', '7000', '-j', target]);
        into.push(await flood(lab.ns.c, args.duration));
      }
      console.log(`  round ${r + 1} SYN flood replies/s: kernel REJECT tcp-reset ${fmt(kernel[r]!)}  xtr TARPIT ${fmt(tarpit[r]!)}  xtr DELUDE ${fmt(delude[r]!)}  load=${await loadAverage()}`);
    }
    const tRatio = median(tarpit.map((v, i) => (kernel[i]! > 0 ? v / kernel[i]! : 0)));
    const dRatio = median(delude.map((v, i) => (kernel[i]! > 0 ? v / kernel[i]! : 0)));

    const kv: string[] = [];
    for (const [count, list] of holdResults) {
      kv.push(`held_${count}=${median(list.map((h) => h.established))}`);
      kv.push(`rss_growth_kb_${count}=${median(list.map((h) => h.rssGrowthKb))}`);
      kv.push(`cpu_us_per_segment_${count}=${median(list.map((h) => h.cpuUsPerSegment)).toFixed(2)}`);
    }
    kv.push(`kernel_reset_rps=${Math.round(median(kernel))}`, `tarpit_rps=${Math.round(median(tarpit))}`, `delude_rps=${Math.round(median(delude))}`);
    kv.push(`ratio_tarpit=${tRatio.toFixed(3)}`, `ratio_delude=${dRatio.toFixed(3)}`, `load=${(await loadAverage()).split(' ')[0]}`);
    kv.push(`ratio_vs_kernel_reset=${Math.min(tRatio, dRatio).toFixed(3)}`);
    console.log(`medians over ${args.rounds} rounds, load ${await loadAverage()}`);
    console.log(kv.join(' '));
  });
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
