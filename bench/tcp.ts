/**
 * Bulk TCP benchmark (issue 14): iperf3 through xtr and through a kernel
 * router namespace, in alternating rounds in one run, so both see the same
 * outside load:
 *   - 1 stream and 4 streams (-P 4), client -> server and server -> client (-R);
 *   - pair 1: no rules (no conntrack on either router);
 *   - pair 2: the seed-001 port-knocking script (as bench:rules loads it:
 *     test/helpers/knock.ts's FORWARD adaptation) plus one appended accept
 *     for iperf3's port, on both routers (iptables-nft in the kernel's
 *     namespace, `xtr iptables` for xtr): every packet walks the seed's
 *     FORWARD rules and is tracked by conntrack (its `state` matches).
 * xtr runs the link-mode lab (TUN) with the config's offloads as given
 * (`--offloads on|off`, default on). Each figure is the median over the
 * rounds; a ratio is the median of per-round xtr/kernel ratios (both sides
 * measured seconds apart); ratio_vs_kernel_tcp(_stateful) is the median
 * over the four shapes (the two middle ones averaged). xtr's CPU per GB moved is its utime+stime
 * (/proc/PID/stat) over its runs divided by the bytes iperf3 received.
 *
 * The machine's own CPU time (/proc/stat) per GB moved is measured for both
 * routers: on a machine whose cores are all busy (iperf3 itself uses them),
 * that, not xtr's speed, bounds the ratio. `--workers N` runs xtr with N
 * queue workers (config `workers`); its CPU is then also split into the JS
 * thread (the pipeline) and the queue threads (xtr-queue-*: device I/O).
 *
 *   npm run bench:tcp [-- --rounds N --duration S --offloads on|off --workers N]
 *
 * The last line is one `key=value` line for scripts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { background, exec, REPO_ROOT, run, sleep, uniquePrefix } from '../test/helpers/netns.js';
import { cpuCount, kernelForwarding, loadAverage, median, runSeedScript, withBenchScope } from './lib.js';

const SERVER = '203.0.113.2';
const IPERF_PORT = 5201;
const SEED_TCP_ACCEPT = ['-A', 'FORWARD', '-i', 'eth0', '-o', 'eth1', '-p', 'tcp', '-d', SERVER, '--dport', String(IPERF_PORT), '-m', 'state', '--state', 'NEW,ESTABLISHED', '-j', 'ACCEPT'];

interface Args {
  rounds: number;
  duration: number;
  offloads: boolean;
  workers: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { rounds: Number(process.env.BENCH_ROUNDS ?? 3), duration: Number(process.env.BENCH_DURATION ?? 3), offloads: true, workers: 1 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--rounds') a.rounds = Number(argv[++i]);
    else if (argv[i] === '--duration') a.duration = Number(argv[++i]);
    else if (argv[i] === '--offloads') {
      const v = argv[++i];
      if (v !== 'on' && v !== 'off') throw new Error('--offloads takes on or off');
      a.offloads = v === 'on';
    } else if (argv[i] === '--workers') a.workers = Number(argv[++i]);
    else throw new Error(`bench:tcp: unknown argument ${argv[i]} (--rounds N, --duration S, --offloads on|off, --workers N)`);
  }
  if (!(Number.isInteger(a.rounds) && a.rounds >= 1 && a.rounds <= 20)) throw new Error('--rounds must be an integer from 1 to 20');
  if (!(a.duration >= 1 && a.duration <= 60)) throw new Error('--duration must be between 1 and 60 seconds');
  if (!(Number.isInteger(a.workers) && a.workers >= 1 && a.workers <= 64)) throw new Error('--workers must be an integer from 1 to 64');
  return a;
}


/** utime + stime of a /proc stat line, in ticks. */
function statTicks(stat: string): number {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
}

function cpuSeconds(pid: number, ticksPerSecond: number): number {
  return statTicks(readFileSync(`/proc/${pid}/stat`, 'utf8')) / ticksPerSecond;
}

/** CPU seconds of the process's JS thread (the pipeline) and of its queue workers (xtr-queue-*). */
function threadSeconds(pid: number, ticksPerSecond: number): { js: number; queues: number } {
  const out = { js: 0, queues: 0 };
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // a thread that ended meanwhile
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    if (Number(tid) === pid) out.js += statTicks(stat) / ticksPerSecond;
    else if (name.startsWith('xtr-queue-')) out.queues += statTicks(stat) / ticksPerSecond;
  }
  return out;
}

/** The whole machine's busy CPU seconds so far (/proc/stat: all but idle and iowait). */
function machineBusySeconds(ticksPerSecond: number): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return (f.reduce((a, b) => a + b, 0) - f[3] - f[4]) / ticksPerSecond;
}

interface Result {
  bps: number;
  bytes: number;
}

/** One iperf3 run: a one-off server in `recvNs`, the client in `sendNs`; the rate the receiving side counted. */
async function iperf(sendNs: string, recvNs: string, streams: number, reverse: boolean, duration: number): Promise<Result> {
  const srv = background(['timeout', String(duration + 20), 'iperf3', '-s', '-1', '-p', String(IPERF_PORT)], { netns: recvNs });
  try {
    await sleep(400);
    const args = ['timeout', String(duration + 15), 'iperf3', '-c', SERVER, '-p', String(IPERF_PORT), '-t', String(duration), '-P', String(streams), '-J'];
    if (reverse) args.push('-R');
    const r = await exec(args, { netns: sendNs, timeoutMs: (duration + 20) * 1000 });
    let j: { end?: { sum_received?: { bits_per_second: number; bytes: number } }; error?: string };
    try {
      j = JSON.parse(r.stdout);
    } catch {
      throw new Error(`iperf3 output is not JSON (exit ${r.code}): ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 300)}`);
    }
    if (j.error || !j.end?.sum_received) throw new Error(`iperf3: ${j.error ?? 'no summary'}`);
    return { bps: j.end.sum_received.bits_per_second, bytes: j.end.sum_received.bytes };
  } finally {
    await srv.wait(3000).catch(() => undefined);
    await srv.kill('SIGKILL').catch(() => undefined);
  }
}

const gbit = (bps: number) => (bps / 1e9).toFixed(2);

/** The median with the two middle values averaged for an even count (the four shapes' ratios). */
function middle(values: readonly number[]): number {
  const s = [...values].sort((x, y) => x - y);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const prefix = uniquePrefix('xt');
  await withBenchScope(prefix, async ({ nss, startLab }) => {
    const loadBefore = await loadAverage();
    const bare = await kernelForwarding(nss, ['ks', 'kr', 'kd']);
    const fw = await kernelForwarding(nss, ['fc', 'fr', 'fs']);
    await runSeedScript(fw.router, 'iptables-nft');
    await run(['iptables-nft', ...SEED_TCP_ACCEPT], { netns: fw.router });

    const l = await startLab({
      prefix,
      logLevel: 'warn',
      patch: (doc) => {
        const d = doc as Record<string, unknown>;
        d.offloads = args.offloads ? { csum: true, tso: true, uso: false, gro: true } : false;
        d.workers = args.workers;
        delete d.metrics;
      },
    });
    const xtr = async (argv: string[], input: string | null = null) => {
      const r = await l.xtr(argv, input);
      if (r.status !== 0) throw new Error(`xtr ${argv.join(' ')}: exit ${r.status}: ${r.stderr.trim()}`);
      return r.stdout;
    };
    await runSeedScript(l.ns.r, `${process.execPath} ${join(REPO_ROOT, 'bin', 'xtr.js')} --socket ${l.router.socket} iptables`);
    await xtr(['iptables', ...SEED_TCP_ACCEPT]);
    const seedRules = await xtr(['iptables-save']);
    const noRules = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n';
    const pid = l.router.proc.proc.pid;
    if (pid === undefined || !readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('main.js')) throw new Error(`cannot find the xtr router process (pid ${pid})`);
    const ticks = Number((await run(['getconf', 'CLK_TCK'])).trim());
    // (the seed's icmp chain may drop echo requests: the ping only warms neighbour/route state)
    for (const ns of [l.ns.c, bare.send, fw.send]) await run(['ping', '-c', '1', '-W', '2', SERVER], { netns: ns }).catch(() => undefined);
    // warm-up: the JIT compiles the hot path on the first second through xtr
    await xtr(['iptables-restore'], noRules);
    await iperf(l.ns.c, l.ns.s, 1, false, 1);

    const shapes: [string, number, boolean][] = [
      ['1 stream', 1, false],
      ['1 stream -R', 1, true],
      ['4 streams', 4, false],
      ['4 streams -R', 4, true],
    ];
    type Key = 'kernel' | 'xtr' | 'kernel_seed' | 'xtr_seed';
    const samples = new Map<string, number[]>();
    const push = (k: string, v: number) => (samples.get(k) ?? samples.set(k, []).get(k)!).push(v);
    const cpu = { xtr: 0, xtr_seed: 0 };
    const moved = { xtr: 0, xtr_seed: 0 };
    // the machine's busy CPU per path (all shapes), and xtr's split by thread (no-rules runs)
    const machine: Record<Key, { cpu: number; bytes: number }> = {
      kernel: { cpu: 0, bytes: 0 },
      xtr: { cpu: 0, bytes: 0 },
      kernel_seed: { cpu: 0, bytes: 0 },
      xtr_seed: { cpu: 0, bytes: 0 },
    };
    const threads = { js: 0, queues: 0 };
    // packets xtr read in the no-rules runs (a super-packet counts once, as the kernel counts a GRO skb)
    let packets = 0;
    const readPackets = async () =>
      (JSON.parse(await xtr(['status', '--json'])) as { interfaces: { stats: { rxPackets: number } }[] }).interfaces.reduce((a, i) => a + i.stats.rxPackets, 0);
    for (let round = 0; round < args.rounds; round++) {
      for (const [shape, streams, reverse] of shapes) {
        const paths: [Key, string, string][] = [
          ['kernel', bare.send, bare.recv],
          ['xtr', l.ns.c, l.ns.s],
          ['kernel_seed', fw.send, fw.recv],
          ['xtr_seed', l.ns.c, l.ns.s],
        ];
        for (const [key, from, to] of paths) {
          if (key === 'xtr') await xtr(['iptables-restore'], noRules);
          if (key === 'xtr_seed') await xtr(['iptables-restore'], seedRules);
          const p0 = key === 'xtr' ? await readPackets() : 0;
          const c0 = key.startsWith('xtr') ? cpuSeconds(pid, ticks) : 0;
          const t0 = threadSeconds(pid, ticks);
          const m0 = machineBusySeconds(ticks);
          const r = await iperf(from, to, streams, reverse, args.duration);
          machine[key].cpu += machineBusySeconds(ticks) - m0;
          machine[key].bytes += r.bytes;
          if (key === 'xtr' || key === 'xtr_seed') {
            cpu[key] += cpuSeconds(pid, ticks) - c0;
            moved[key] += r.bytes;
          }
          if (key === 'xtr') {
            const t1 = threadSeconds(pid, ticks);
            threads.js += t1.js - t0.js;
            threads.queues += t1.queues - t0.queues;
            packets += (await readPackets()) - p0;
          }
          push(`${key}|${shape}`, r.bps);
        }
      }
    }
    const loadAfter = await loadAverage();
    const st = await xtr(['status']);

    console.log(
      `bulk TCP benchmark: iperf3, ${args.rounds} rounds x ${args.duration} s per path and shape (median shown), ${await cpuCount()} CPUs, load ${loadBefore} before / ${loadAfter} after, xtr offloads ${args.offloads ? 'on' : 'off'}, namespaces ${prefix}*`,
    );
    console.log('');
    console.log('shape           kernel Gbit/s   xtr Gbit/s   xtr/kernel   | kernel+seed001   xtr+seed001   xtr/kernel (stateful)');
    const ratioOf = (a: string, b: string, shape: string) => {
      const xs = samples.get(`${a}|${shape}`)!;
      const ks = samples.get(`${b}|${shape}`)!;
      return median(xs.map((x, i) => (ks[i] > 0 ? x / ks[i] : 0)));
    };
    const plain: number[] = [];
    const stateful: number[] = [];
    for (const [shape] of shapes) {
      const m = (k: Key) => median(samples.get(`${k}|${shape}`)!);
      const r1 = ratioOf('xtr', 'kernel', shape);
      const r2 = ratioOf('xtr_seed', 'kernel_seed', shape);
      plain.push(r1);
      stateful.push(r2);
      console.log(
        `${shape.padEnd(14)}  ${gbit(m('kernel')).padStart(13)}  ${gbit(m('xtr')).padStart(11)}  ${r1.toFixed(3).padStart(11)}   | ${gbit(m('kernel_seed')).padStart(15)}  ${gbit(m('xtr_seed')).padStart(12)}  ${r2.toFixed(3).padStart(12)}`,
      );
      console.log(
        `  rounds: kernel ${samples.get(`kernel|${shape}`)!.map(gbit).join('/')}, xtr ${samples.get(`xtr|${shape}`)!.map(gbit).join('/')}, kernel+seed ${samples.get(`kernel_seed|${shape}`)!.map(gbit).join('/')}, xtr+seed ${samples.get(`xtr_seed|${shape}`)!.map(gbit).join('/')}`,
      );
    }
    const cpuPerGb = (k: 'xtr' | 'xtr_seed') => (moved[k] > 0 ? cpu[k] / (moved[k] / 1e9) : 0);
    console.log('');
    console.log(`xtr CPU per GB moved: ${cpuPerGb('xtr').toFixed(2)} s (no rules), ${cpuPerGb('xtr_seed').toFixed(2)} s (seed-001 + conntrack)`);
    const perGb = (cpuS: number, bytes: number) => (bytes > 0 ? cpuS / (bytes / 1e9) : 0);
    if (args.workers > 1) {
      console.log(`  of which (no rules) the JS thread ${perGb(threads.js, moved.xtr).toFixed(2)} s, the ${args.workers} queue workers ${perGb(threads.queues, moved.xtr).toFixed(2)} s`);
    }
    const usPerPacket = (cpuS: number) => (packets > 0 ? (cpuS / packets) * 1e6 : 0);
    console.log(
      `xtr CPU per packet read (no rules; ${packets} packets, super-packets counted once): ${usPerPacket(cpu.xtr).toFixed(2)} us` +
        (args.workers > 1 ? ` (JS thread ${usPerPacket(threads.js).toFixed(2)} us, queue workers ${usPerPacket(threads.queues).toFixed(2)} us)` : ''),
    );
    const sys = (k: Key) => perGb(machine[k].cpu, machine[k].bytes);
    console.log(
      `the whole machine's CPU per GB moved (iperf3 included): kernel ${sys('kernel').toFixed(2)} s, xtr ${sys('xtr').toFixed(2)} s; with seed-001: kernel ${sys('kernel_seed').toFixed(2)} s, xtr ${sys('xtr_seed').toFixed(2)} s`,
    );
    console.log('');
    console.log(st.trimEnd());
    console.log('');
    const kv: [string, string][] = [
      ['ratio_vs_kernel_tcp', middle(plain).toFixed(3)],
      ['ratio_vs_kernel_tcp_stateful', middle(stateful).toFixed(3)],
      ['xtr_gbps_1', gbit(median(samples.get('xtr|1 stream')!))],
      ['kernel_gbps_1', gbit(median(samples.get('kernel|1 stream')!))],
      ['xtr_gbps_4', gbit(median(samples.get('xtr|4 streams')!))],
      ['kernel_gbps_4', gbit(median(samples.get('kernel|4 streams')!))],
      ['xtr_cpu_s_per_gb', cpuPerGb('xtr').toFixed(3)],
      ['xtr_cpu_s_per_gb_stateful', cpuPerGb('xtr_seed').toFixed(3)],
      ['xtr_cpu_us_per_packet', usPerPacket(cpu.xtr).toFixed(2)],
      ['machine_cpu_s_per_gb_kernel', sys('kernel').toFixed(3)],
      ['machine_cpu_s_per_gb_xtr', sys('xtr').toFixed(3)],
      ...(args.workers > 1
        ? ([
            ['xtr_cpu_s_per_gb_js', perGb(threads.js, moved.xtr).toFixed(3)],
            ['xtr_cpu_s_per_gb_queues', perGb(threads.queues, moved.xtr).toFixed(3)],
            ['xtr_cpu_us_per_packet_js', usPerPacket(threads.js).toFixed(2)],
            ['xtr_cpu_us_per_packet_queues', usPerPacket(threads.queues).toFixed(2)],
          ] as [string, string][])
        : []),
      ['offloads', args.offloads ? 'on' : 'off'],
      ['workers', String(args.workers)],
      ['rounds', String(args.rounds)],
      ['duration_s', String(args.duration)],
      ['load', loadAfter.split(' ')[0]],
    ];
    console.log(kv.map(([k, v]) => `${k}=${v}`).join(' '));
  });
}

main().catch((e) => {
  console.error(`bench:tcp failed: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
