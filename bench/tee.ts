/**
 * What a TEE rule costs per cloned packet, in one run: forwarding through xtr
 * (the link-mode lab, TUN) with two rule sets measured in alternation, once
 * per round:
 *   x0    no rule (an empty mangle table)
 *   xtee  `-t mangle -A FORWARD -j TEE --gateway 192.0.2.2` (every forwarded
 *         packet cloned to the monitor namespace's m0)
 * Figures, medians over rounds:
 *  - `ratio_tee`: each round's delivered pps with TEE / the same round's
 *    without (the original flow's throughput when every packet is cloned);
 *  - `cpu_ratio_tee`: packets per xtr CPU-second without TEE / with it;
 *  - `us_per_clone`: the xtr CPU time a clone adds (CPU-seconds per
 *    delivered packet with TEE minus without), in microseconds;
 *  - `clones_per_packet`: datagrams a receiver in the monitor namespace got /
 *    datagrams the server got, in the TEE runs (1.0: every packet cloned
 *    once, none lost). The monitor namespace holds the server's address on
 *    its loopback so its kernel delivers the clones (still addressed to the
 *    server) to a udpgen receiver, which counts datagrams: m0's own counters
 *    count xtr's UDP GSO writes, several clones each.
 *
 * Traffic: bench/native/udpgen, 64-byte UDP payloads, 198.51.100.2 ->
 * 203.0.113.2:9000, delivered rate as counted by the receiver. 2 shared
 * CPUs: rounds alternate, figures are medians.
 *
 *   npm run bench:tee [-- --rounds N --duration S]
 *
 * The last line is one `key=value` line for scripts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { background, run, sleep, uniquePrefix } from '../test/helpers/netns.js';
import { cpuCount, fmt, loadAverage, measure, median, PORT, UDPGEN, withLab, type Measure } from './lib.js';

const PAYLOAD = 64;
const SERVER = '203.0.113.2';
const MANGLE = (rules: string) => `*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n${rules}COMMIT\n`;
const RULES: Record<string, string> = {
  x0: MANGLE(''),
  xtee: MANGLE('-A FORWARD -j TEE --gateway 192.0.2.2\n'),
};

function args(): { rounds: number; duration: number } {
  const a = { rounds: Number(process.env.BENCH_ROUNDS ?? 5), duration: Number(process.env.BENCH_DURATION ?? 3) };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--rounds') a.rounds = Number(argv[++i]);
    else if (argv[i] === '--duration') a.duration = Number(argv[++i]);
    else throw new Error(`bench:tee: unknown argument ${argv[i]} (--rounds N --duration S)`);
  }
  if (!(a.rounds >= 1 && a.rounds <= 50 && a.duration > 0 && a.duration <= 30)) throw new Error('bench:tee: --rounds 1..50, --duration 0..30 s');
  return a;
}

function cpuSeconds(pid: number, ticksPerSecond: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / ticksPerSecond;
}

/** A udpgen receiver in `ns` for the clones, started before the measured run; resolves to what it counted. */
async function cloneCounter(ns: string, seconds: number): Promise<() => Promise<number>> {
  const recv = background([UDPGEN, 'recv', '--port', String(PORT), '--duration', String(seconds + 4), '--idle', '1'], { netns: ns });
  await sleep(200);
  return async () => {
    await recv.wait((seconds + 10) * 1000);
    const m = /received=(\d+)/.exec(recv.stdout().toString());
    if (!m) throw new Error(`bench:tee: clone counter: ${recv.stderr()}`);
    return Number(m[1]);
  };
}

async function main(): Promise<void> {
  const a = args();
  if (!existsSync(UDPGEN)) throw new Error(`${UDPGEN} missing: run bash scripts/ensure-setup`);
  console.log(`bench:tee: ${a.rounds} rounds x ${a.duration} s per path, ${await cpuCount()} CPUs, load ${await loadAverage()}`);
  await withLab({ prefix: uniquePrefix('xw2a'), logLevel: 'warn' }, async (l) => {
    const xtr = async (argv: string[], input: string | null = null) => {
      const r = await l.xtr(argv, input);
      if (r.status !== 0) throw new Error(`xtr ${argv.join(' ')}: exit ${r.status}: ${r.stderr.trim()}`);
      return r.stdout;
    };
    const pid = l.router.proc.proc.pid!;
    const ticks = Number((await run(['getconf', 'CLK_TCK'])).trim());
    await run(['ping', '-c', '1', '-W', '2', SERVER], { netns: l.ns.c }).catch(() => undefined);
    await run(['ping', '-c', '1', '-W', '2', '192.0.2.1'], { netns: l.ns.m }).catch(() => undefined);
    // the monitor delivers the clones (addressed to the server) to its own receiver
    await run(['ip', 'addr', 'add', `${SERVER}/32`, 'dev', 'lo'], { netns: l.ns.m });
    await run(['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.m0.rp_filter=0'], { netns: l.ns.m });
    await xtr(['iptables-restore'], RULES.x0);
    await measure(l.ns.c, l.ns.s, SERVER, PAYLOAD, 1);

    const samples: Record<string, Measure[]> = { x0: [], xtee: [] };
    const cpuPerPkt: Record<string, number[]> = { x0: [], xtee: [] };
    const clonesPerPkt: number[] = [];
    for (let round = 0; round < a.rounds; round++) {
      for (const name of Object.keys(samples)) {
        await xtr(['iptables-restore'], RULES[name]);
        const counted = await cloneCounter(l.ns.m, a.duration);
        const cpu0 = cpuSeconds(pid, ticks);
        const m = await measure(l.ns.c, l.ns.s, SERVER, PAYLOAD, a.duration);
        const cpu = cpuSeconds(pid, ticks) - cpu0;
        const clones = await counted();
        samples[name].push(m);
        cpuPerPkt[name].push(m.received > 0 ? cpu / m.received : 0);
        if (name === 'xtee') {
          // every packet was cloned; the two ends' queues may each drop a few under load
          if (clones < m.received * 0.9) throw new Error(`TEE: the monitor got ${clones} clones, the server ${m.received} packets`);
          clonesPerPkt.push(clones / m.received);
        } else if (clones > 0) throw new Error(`no TEE rule, yet the monitor got ${clones} packets`);
        console.log(`round ${round + 1} ${name}: ${fmt(m.pps)} pps delivered (${fmt(m.sentPps)} offered), ${(cpuPerPkt[name].at(-1)! * 1e6).toFixed(2)} us xtr CPU per packet${name === 'xtee' ? `, ${fmt(clones)} clones at the monitor` : ''}`);
      }
    }
    const ratio = median(samples.xtee.map((m, i) => (samples.x0[i].pps > 0 ? m.pps / samples.x0[i].pps : 0)));
    const cpuRatio = median(cpuPerPkt.xtee.map((v, i) => (v > 0 ? cpuPerPkt.x0[i] / v : 0)));
    const usPerClone = median(cpuPerPkt.xtee.map((v, i) => (v - cpuPerPkt.x0[i]) * 1e6));
    const pps = (name: string) => median(samples[name].map((m) => m.pps));
    console.log('');
    console.log(`xtr, no rule:        ${fmt(pps('x0'))} pps, ${(median(cpuPerPkt.x0) * 1e6).toFixed(2)} us CPU per packet`);
    console.log(`xtr, TEE every packet: ${fmt(pps('xtee'))} pps, ${(median(cpuPerPkt.xtee) * 1e6).toFixed(2)} us CPU per packet (ratio ${ratio.toFixed(3)}, +${usPerClone.toFixed(2)} us per clone)`);
    console.log(`load after: ${await loadAverage()}`);
    console.log(
      [
        `pps_none=${Math.round(pps('x0'))}`,
        `pps_tee=${Math.round(pps('xtee'))}`,
        `clones_per_packet=${median(clonesPerPkt).toFixed(3)}`,
        `cpu_ratio_tee=${cpuRatio.toFixed(3)}`,
        `us_per_clone=${usPerClone.toFixed(2)}`,
        `ratio_tee=${ratio.toFixed(3)}`,
      ].join(' '),
    );
  });
}

await main();
