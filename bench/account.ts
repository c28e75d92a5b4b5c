/**
 * What an ACCOUNT rule and a quota2 rule cost, in one run:
 *
 *  - forwarding through xtr (the link-mode lab, TUN), three rule sets in FORWARD,
 *    measured in alternation, once per round:
 *      x0       `-A FORWARD -j ACCEPT`
 *      xaccount `-A FORWARD -j ACCOUNT --addr 198.51.0.0/16 --tname bench` then the ACCEPT
 *               (a /16: the third octet picks a block, the fourth a record)
 *      xquota2  `-A FORWARD -m quota2 --name bench --quota 10^15 -j ACCEPT`
 *               (a named countdown that never runs out: the usual quota rule)
 *    `ratio_account` / `ratio_quota2` = median over rounds of each round's
 *    pps / the same round's x0 pps (goal >= 0.95 each); after each run the
 *    table / counter is checked to have counted at least what the receiver got;
 *    the order of the three paths rotates from round to round;
 *  - the xtr process's CPU time per delivered packet (`cpu_ratio_*`: x0's
 *    packets per CPU-second over the rule set's, >= 1 means the rule costs
 *    CPU), which is what the rule costs xtr whatever the scheduler did;
 *  - the rule engine alone (Netfilter.hook() on prebuilt contexts from real
 *    bytes, 256 source addresses of the /16), `engine_ratio_*`.
 *
 * Traffic: bench/native/udpgen, 64-byte UDP payloads, 198.51.100.2 ->
 * 203.0.113.2:9000, delivered rate as counted by the receiver. 2 shared CPUs:
 * rounds alternate the paths, figures are medians.
 *
 *   npm run bench:account [-- --rounds N --duration S]
 *
 * The last line is one `key=value` line for scripts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { Hook, type PacketContext } from '../xt/packet.js';
import { packet, testEngine, type TestEngine } from '../router/netfilter/testkit.js';
import { run, uniquePrefix } from '../test/helpers/netns.js';
import { cpuCount, fmt, loadAverage, measure, median, PORT, UDPGEN, withLab, type Measure } from './lib.js';

const PAYLOAD = 64;
const SERVER = '203.0.113.2';
const QUOTA = '1000000000000000';

const RULES: Record<string, string> = {
  x0: '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -j ACCEPT\nCOMMIT\n',
  xaccount: '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -j ACCOUNT --addr 198.51.0.0/16 --tname bench\n-A FORWARD -j ACCEPT\nCOMMIT\n',
  xquota2: `*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -m quota2 --name bench --quota ${QUOTA} -j ACCEPT\nCOMMIT\n`,
};

function args(): { rounds: number; duration: number; engineSeconds: number } {
  const a = { rounds: Number(process.env.BENCH_ROUNDS ?? 5), duration: Number(process.env.BENCH_DURATION ?? 3), engineSeconds: Number(process.env.BENCH_SECONDS ?? 1) };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--rounds') a.rounds = Number(argv[++i]);
    else if (argv[i] === '--duration') a.duration = Number(argv[++i]);
    else if (argv[i] === '--engine-seconds') a.engineSeconds = Number(argv[++i]);
    else throw new Error(`bench:account: unknown argument ${argv[i]} (--rounds N --duration S --engine-seconds S)`);
  }
  if (!(a.rounds >= 1 && a.rounds <= 50 && a.duration > 0 && a.duration <= 30)) throw new Error('bench:account: --rounds 1..50, --duration 0..30 s');
  return a;
}

function cpuSeconds(pid: number, ticksPerSecond: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / ticksPerSecond;
}

/** Packets per second through Netfilter.hook(FORWARD) for one rule set, alternating with the others by the caller. */
function hookRate(e: TestEngine, pkts: PacketContext[], seconds: number): number {
  let n = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < pkts.length; i++) e.nf.hook(Hook.FORWARD, pkts[i]);
    n += pkts.length;
  }
  return n / seconds;
}

async function engineFigures(seconds: number, rounds: number): Promise<Record<string, number>> {
  const engines: Record<string, TestEngine> = {};
  for (const [name, rules] of Object.entries(RULES)) {
    const e = await testEngine();
    const r = await e.run('iptables-restore', rules);
    if (r.status !== 0) throw new Error(`bench:account: ${name}: ${r.stderr}`);
    engines[name] = e;
  }
  const pkts: PacketContext[] = [];
  for (let i = 0; i < 256; i++) pkts.push(packet({ src: `198.51.${i}.${(i * 7) % 256}`, dst: SERVER, proto: 'udp', sport: 40000, dport: PORT, payload: PAYLOAD }, 'eth0', 'eth1'));
  const rates: Record<string, number[]> = { x0: [], xaccount: [], xquota2: [] };
  for (const name of Object.keys(rates)) hookRate(engines[name], pkts, 0.2);
  for (let r = 0; r < rounds; r++) for (const name of Object.keys(rates)) rates[name].push(hookRate(engines[name], pkts, seconds));
  const ratio = (name: string) => median(rates[name].map((v, i) => v / rates.x0[i]));
  console.log(`engine (Netfilter.hook, FORWARD): 0 rules ${fmt(median(rates.x0))}/s, ACCOUNT /16 ${fmt(median(rates.xaccount))}/s, quota2 ${fmt(median(rates.xquota2))}/s`);
  return { account: ratio('xaccount'), quota2: ratio('xquota2') };
}

async function main(): Promise<void> {
  const a = args();
  if (!existsSync(UDPGEN)) throw new Error(`${UDPGEN} missing: run bash scripts/ensure-setup`);
  console.log(`bench:account: ${a.rounds} rounds x ${a.duration} s per path, ${await cpuCount()} CPUs, load ${await loadAverage()}`);
  const engine = await engineFigures(a.engineSeconds, a.rounds);

  await withLab({ prefix: uniquePrefix('xw2b'), logLevel: 'warn' }, async (l) => {
    const xtr = async (argv: string[], input: string | null = null) => {
      const r = await l.xtr(argv, input);
      if (r.status !== 0) throw new Error(`xtr ${argv.join(' ')}: exit ${r.status}: ${r.stderr.trim()}`);
      return r.stdout;
    };
    const pid = l.router.proc.proc.pid!;
    const ticks = Number((await run(['getconf', 'CLK_TCK'])).trim());
    await run(['ping', '-c', '1', '-W', '2', SERVER], { netns: l.ns.c }).catch(() => undefined);
    await xtr(['iptables-restore'], RULES.x0);
    await measure(l.ns.c, l.ns.s, SERVER, PAYLOAD, 1);

    const samples: Record<string, Measure[]> = { x0: [], xaccount: [], xquota2: [] };
    const perCpu: Record<string, number[]> = { x0: [], xaccount: [], xquota2: [] };
    const names = Object.keys(samples);
    for (let round = 0; round < a.rounds; round++) {
      // The order rotates each round, so no path always runs first (after the restore of another) or last.
      for (const name of names.map((_, k) => names[(k + round) % names.length])) {
        await xtr(['iptables-restore'], RULES[name]);
        await run([UDPGEN, 'send', '--dst', SERVER, '--port', String(PORT), '--size', String(PAYLOAD), '--duration', '0.5'], { netns: l.ns.c, timeoutMs: 10_000 });
        // What the warm-up counted is not this run's.
        if (name === 'xaccount') await xtr(['ext', 'account', 'read-flush', 'bench']);
        if (name === 'xquota2') await xtr(['proc', 'write', 'net/xt_quota/bench', `${QUOTA}\n`]);
        const cpu0 = cpuSeconds(pid, ticks);
        const m = await measure(l.ns.c, l.ns.s, SERVER, PAYLOAD, a.duration);
        const cpu = cpuSeconds(pid, ticks) - cpu0;
        samples[name].push(m);
        perCpu[name].push(cpu > 0 ? m.received / cpu : 0);
        // The rule did its work on every packet the receiver got.
        if (name === 'xaccount') {
          const line = (await xtr(['ext', 'account', 'read', 'bench'])).split('\n').find((x) => x.startsWith('198.51.100.2 '));
          const counted = Number(line?.split(' ')[1] ?? 0);
          if (counted < m.received) throw new Error(`ACCOUNT counted ${counted} packets from 198.51.100.2, the receiver got ${m.received}`);
        }
        if (name === 'xquota2') {
          const left = BigInt((await xtr(['proc', 'cat', 'net/xt_quota/bench'])).trim());
          const spent = BigInt(QUOTA) - left;
          if (spent < BigInt(m.received * (PAYLOAD + 28))) throw new Error(`quota2 spent ${spent} bytes, the receiver got ${m.received} packets of ${PAYLOAD + 28}`);
        }
        console.log(`round ${round + 1} ${name}: ${fmt(m.pps)} pps delivered (${fmt(m.sentPps)} offered), ${fmt(perCpu[name].at(-1)!)} packets per xtr CPU-second`);
      }
    }
    const ratio = (name: string) => median(samples[name].map((m, i) => (samples.x0[i].pps > 0 ? m.pps / samples.x0[i].pps : 0)));
    const cpuRatio = (name: string) => median(perCpu[name].map((v, i) => (perCpu.x0[i] > 0 ? v / perCpu.x0[i] : 0)));
    const pps = (name: string) => median(samples[name].map((m) => m.pps));
    console.log('');
    console.log(`xtr, no rule:            ${fmt(pps('x0'))} pps`);
    console.log(`xtr, ACCOUNT on a /16:   ${fmt(pps('xaccount'))} pps (ratio ${ratio('xaccount').toFixed(3)}, per CPU-second ${cpuRatio('xaccount').toFixed(3)})`);
    console.log(`xtr, quota2 countdown:   ${fmt(pps('xquota2'))} pps (ratio ${ratio('xquota2').toFixed(3)}, per CPU-second ${cpuRatio('xquota2').toFixed(3)})`);
    console.log(`load after: ${await loadAverage()}`);
    console.log(
      [
        `pps_none=${Math.round(pps('x0'))}`,
        `pps_account=${Math.round(pps('xaccount'))}`,
        `pps_quota2=${Math.round(pps('xquota2'))}`,
        `cpu_ratio_account=${cpuRatio('xaccount').toFixed(3)}`,
        `cpu_ratio_quota2=${cpuRatio('xquota2').toFixed(3)}`,
        `engine_ratio_account=${engine.account.toFixed(3)}`,
        `engine_ratio_quota2=${engine.quota2.toFixed(3)}`,
        `ratio_account=${ratio('xaccount').toFixed(3)}`,
        `ratio_quota2=${ratio('xquota2').toFixed(3)}`,
      ].join(' '),
    );
  });
}

await main();
