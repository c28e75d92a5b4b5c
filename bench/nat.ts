/**
 * NAT gateway throughput, xtr against the kernel in the same run:
 *
 *   client 198.51.100.2 -- router (MASQUERADE out of eth1) -- server 203.0.113.2
 *
 * The kernel router is a namespace with ip_forward and
 *   iptables-legacy -t nat -A POSTROUTING -o eth1 -j MASQUERADE
 * xtr is the link-mode lab (TUN) with the same rule through `xtr iptables`.
 * Both are checked to translate (the receiver sees 203.0.113.1) before
 * measuring. Per round, each router in alternation:
 *  - UDP, one flow: bench/native/udpgen, 64-byte payloads, delivered pps;
 *  - UDP, many flows: four udpgen senders on distinct source ports at once;
 *  - TCP: iperf3 (one stream), delivered bits/s;
 *  - new flows per second: bench/nat-newflows.py sends one datagram per new
 *    flow (source port +1 per packet, two source addresses), 40,000 flows
 *    (below both conntrack tables' 65,536, so no table-full behaviour) or
 *    the duration; each delivered datagram is a conntrack insert plus a port
 *    choice; the figure is delivered new flows per second over the
 *    receiver's first-to-last packet span. The generator is
 *    Python (a raw socket), so the offered rate is limited and the same for
 *    both; conntrack is flushed before each run.
 * Figures are medians over rounds; ratios are medians of per-round ratios.
 * The last line is key=value: ratio_vs_kernel_nat (UDP one flow, goal >= 1.0),
 * ratio_vs_kernel_nat_many, ratio_vs_kernel_nat_tcp,
 * ratio_vs_kernel_nat_newflows (goal >= 0.5), and the load average.
 *
 *   npm run bench:nat [-- --rounds N --duration S]
 */
import { join } from 'node:path';
import { background, exec, REPO_ROOT, run, sleep, uniquePrefix } from '../test/helpers/netns.js';
import { cpuCount, fmt, kernelForwarding, loadAverage, measure, median, PORT, UDPGEN, withBenchScope } from './lib.js';

const SERVER = '203.0.113.2';
const NEWFLOWS = join(REPO_ROOT, 'bench', 'nat-newflows.py');
/** New flows per measurement: below both tables' 65536 entries, so neither router's table-full behaviour is measured. */
const NEWFLOW_COUNT = 40_000;

interface Args {
  rounds: number;
  duration: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { rounds: Number(process.env.BENCH_ROUNDS ?? 3), duration: Number(process.env.BENCH_DURATION ?? 3) };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--rounds') a.rounds = Number(argv[++i]);
    else if (argv[i] === '--duration') a.duration = Number(argv[++i]);
    else throw new Error(`bench:nat: unknown argument ${argv[i]} (--rounds N, --duration S)`);
  }
  if (!(Number.isInteger(a.rounds) && a.rounds >= 1 && a.rounds <= 20)) throw new Error('--rounds must be an integer from 1 to 20');
  if (!(a.duration > 0 && a.duration <= 60)) throw new Error('--duration must be between 0 and 60 seconds');
  return a;
}

interface Router {
  name: 'kernel' | 'xtr';
  send: string;
  recv: string;
  flush(): Promise<void>;
}

function num(out: string, key: string): number {
  const m = new RegExp(`\\b${key}=([0-9.]+)`).exec(out);
  if (!m) throw new Error(`no ${key}= in: ${out.trim()}`);
  return Number(m[1]);
}

/** Four senders on source ports 10001..10004 into one receiver: delivered pps. */
async function manyFlows(r: Router, duration: number): Promise<number> {
  const recv = background([UDPGEN, 'recv', '--port', String(PORT), '--duration', String(duration + 3), '--idle', '1'], { netns: r.recv });
  await sleep(300);
  await Promise.all(
    [10001, 10002, 10003, 10004].map((sport) =>
      run([UDPGEN, 'send', '--dst', SERVER, '--port', String(PORT), '--sport', String(sport), '--size', '64', '--duration', String(duration)], {
        netns: r.send,
        timeoutMs: (duration + 10) * 1000,
      }),
    ),
  );
  const code = await recv.wait((duration + 10) * 1000);
  if (code !== 0) throw new Error(`udpgen recv exit ${code}`);
  return num(recv.stdout().toString(), 'pps');
}

/** iperf3, one TCP stream through the NAT: received bits/s. */
async function tcp(r: Router, duration: number): Promise<number> {
  const srv = background(['iperf3', '-s', '-1', '-p', '5201'], { netns: r.recv });
  await sleep(400);
  const out = await run(['iperf3', '-c', SERVER, '-p', '5201', '-t', String(duration), '-J'], { netns: r.send, timeoutMs: (duration + 15) * 1000 });
  await srv.wait(5000);
  const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second;
}

/** One datagram per new flow for `duration` seconds: delivered flows per second. */
async function newFlows(r: Router, duration: number): Promise<{ sent: number; perSec: number }> {
  await r.flush();
  const recv = background([UDPGEN, 'recv', '--port', String(PORT), '--duration', String(duration + 3), '--idle', '1'], { netns: r.recv });
  await sleep(300);
  const t0 = performance.now();
  const out = await run(['/usr/bin/python3', NEWFLOWS, '198.51.100.2,198.51.100.3', SERVER, String(PORT), String(duration), String(NEWFLOW_COUNT)], {
    netns: r.send,
    timeoutMs: (duration + 10) * 1000,
  });
  const took = (performance.now() - t0) / 1000;
  const code = await recv.wait((duration + 10) * 1000);
  if (code !== 0) throw new Error(`udpgen recv exit ${code}`);
  // delivered flows over the receiver's first-to-last span (udpgen's pps)
  return { sent: num(out, 'sent') / took, perSec: num(recv.stdout().toString(), 'pps') };
}

/** The receiver must see the router's outside address: a UDP probe answered with the peer it saw. */
async function checkTranslates(r: Router): Promise<void> {
  const peer = join(REPO_ROOT, 'test', 'fixtures', 'xw5a', 'natpeer.py');
  const srv = background(['/usr/bin/python3', peer, 'serve', '0.0.0.0', '7001', '7002', '5'], { netns: r.recv });
  await sleep(500);
  const seen = (await exec(['/usr/bin/python3', peer, 'udp', '198.51.100.2', '40000', SERVER, '7001'], { netns: r.send })).stdout.trim();
  await srv.kill('SIGKILL');
  if (!seen.startsWith('203.0.113.1 ')) throw new Error(`${r.name}: the server saw "${seen}", not the router's address: no NAT`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const prefix = uniquePrefix('xw5a');
  await withBenchScope(prefix, async ({ nss, startLab }) => {
    const k = await kernelForwarding(nss, ['kc', 'kr', 'ks']);
    await run(['ip', 'addr', 'add', '198.51.100.3/24', 'dev', 'c0'], { netns: k.send });
    await run(['iptables-legacy', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth1', '-j', 'MASQUERADE'], { netns: k.router });
    const kernel: Router = { name: 'kernel', send: k.send, recv: k.recv, flush: async () => void (await exec(['conntrack', '-F'], { netns: k.router })) };
    const l = await startLab({ prefix: `${prefix}x`, logLevel: 'warn' });
    const xr = await l.xtr(['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth1', '-j', 'MASQUERADE']);
    if (xr.status !== 0) throw new Error(`xtr iptables: ${xr.stderr}`);
    const xtr: Router = { name: 'xtr', send: l.ns.c, recv: l.ns.s, flush: async () => void (await l.xtr(['conntrack', '-F'])) };
    for (const r of [kernel, xtr]) await checkTranslates(r);

    console.log(`bench:nat  cpus=${await cpuCount()}  load=${await loadAverage()}  rounds=${args.rounds} x ${args.duration}s`);
    const res: Record<string, Record<'kernel' | 'xtr', number[]>> = {};
    const add = (key: string, who: 'kernel' | 'xtr', v: number) => ((res[key] ??= { kernel: [], xtr: [] })[who].push(v));
    for (let round = 0; round < args.rounds; round++) {
      // alternate which router goes first
      const order = round % 2 === 0 ? [kernel, xtr] : [xtr, kernel];
      for (const r of order) {
        await r.flush();
        add('udp1', r.name, (await measure(r.send, r.recv, SERVER, 64, args.duration)).pps);
        add('udpmany', r.name, await manyFlows(r, args.duration));
        add('tcp', r.name, await tcp(r, args.duration));
        const nf = await newFlows(r, args.duration);
        add('newflows', r.name, nf.perSec);
        add('newflows_offered', r.name, nf.sent);
      }
      console.log(
        `round ${round + 1}: ` +
          Object.entries(res)
            .map(([key, v]) => `${key} kernel=${fmt(v.kernel[round])} xtr=${fmt(v.xtr[round])}`)
            .join('  '),
      );
    }
    const ratio = (key: string) => median(res[key].xtr.map((x, i) => (res[key].kernel[i] > 0 ? x / res[key].kernel[i] : 0)));
    const line = (key: string, unit: string) => console.log(`${key.padEnd(18)} kernel ${fmt(median(res[key].kernel))} ${unit}   xtr ${fmt(median(res[key].xtr))} ${unit}   ratio ${ratio(key).toFixed(3)}`);
    line('udp1', 'pps');
    line('udpmany', 'pps');
    line('tcp', 'bit/s');
    line('newflows', 'flows/s');
    console.log(`newflows offered (generator): kernel ${fmt(median(res.newflows_offered.kernel))}/s  xtr ${fmt(median(res.newflows_offered.xtr))}/s`);
    const load = (await loadAverage()).replace(/ /g, ',');
    console.log(
      `ratio_vs_kernel_nat=${ratio('udp1').toFixed(3)} ratio_vs_kernel_nat_many=${ratio('udpmany').toFixed(3)} ratio_vs_kernel_nat_tcp=${ratio('tcp').toFixed(3)} ratio_vs_kernel_nat_newflows=${ratio('newflows').toFixed(3)} load=${load}`,
    );
  });
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
