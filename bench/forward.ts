/**
 * Forwarding benchmark: UDP packets per second delivered
 *   - by the generator alone (sender and receiver namespaces joined by one veth),
 *   - through plain kernel forwarding (sender - veth - router ns with ip_forward - veth - receiver),
 *   - through xtr in the link-mode lab (sender in <p>c, xtr in <p>r, receiver in <p>s),
 * for 64-byte and 1400-byte UDP payloads, all in one run on this machine, so
 * the ratio compares like with like and a generator limit cannot pass for a
 * router limit.
 *
 *   npm run bench:forward [-- --duration S --rounds N --cpu-prof DIR]
 *
 * The traffic tool is bench/native/udpgen (sendmmsg/recvmmsg). "Delivered"
 * is what the receiver counted, at the rate it arrived. The last line is one
 * `key=value` line for scripts.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { Namespaces, run, startLab, uniquePrefix, vethPair } from '../test/helpers/netns.js';
import { cpuCount, fmt, kernelForwarding, loadAverage, measure, median, medianMeasure, pairedRatios as ratiosOf, UDPGEN, type Measure } from './lib.js';

interface Args {
  duration: number;
  rounds: number;
  cpuProf: string | null;
  sizes: number[];
}

function parseArgs(argv: string[]): Args {
  const a: Args = { duration: Number(process.env.BENCH_DURATION ?? 3), rounds: Number(process.env.BENCH_ROUNDS ?? 3), cpuProf: null, sizes: [64, 1400] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--duration') a.duration = Number(argv[++i]);
    else if (argv[i] === '--rounds') a.rounds = Number(argv[++i]);
    else if (argv[i] === '--cpu-prof') a.cpuProf = argv[++i];
    else throw new Error(`bench:forward: unknown argument ${argv[i]} (--duration S, --rounds N, --cpu-prof DIR)`);
  }
  if (!(Number.isInteger(a.rounds) && a.rounds >= 1 && a.rounds <= 20)) throw new Error('--rounds must be an integer from 1 to 20');
  if (!(a.duration > 0 && a.duration <= 120)) throw new Error('--duration must be between 0 and 120 seconds');
  return a;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (!existsSync(UDPGEN)) throw new Error(`${UDPGEN} missing: run bash scripts/ensure-setup`);
  const prefix = uniquePrefix('xb');
  const nss = new Namespaces(prefix);
  let lab: Awaited<ReturnType<typeof startLab>> | null = null;
  const results: Record<string, Measure> = {};
  const samples: Record<string, Measure[]> = {};
  const samplesText: Record<string, string> = {};
  const cleanup = async () => {
    if (lab) await lab.stop();
    await nss.cleanup();
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    // Generator alone: one veth.
    const gs = await nss.add('gs');
    const gr = await nss.add('gr');
    await vethPair({ ns: gs, ifname: 'g0', addresses: ['10.99.0.1/24'] }, { ns: gr, ifname: 'g1', addresses: ['10.99.0.2/24'] });

    // Kernel forwarding: sender - veth - router (ip_forward) - veth - receiver, lab addressing.
    const { send: ks, recv: kd } = await kernelForwarding(nss, ['ks', 'kr', 'kd']);

    // xtr: the link-mode lab (TUN), logging only warnings so logging is not measured.
    const nodeArgs = args.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${args.cpuProf}`] : [];
    if (args.cpuProf) mkdirSync(args.cpuProf, { recursive: true });
    lab = await startLab({ prefix, logLevel: 'warn', nodeArgs });
    await run(['ping', '-c', '1', '-W', '2', '203.0.113.2'], { netns: lab.ns.c });
    await run(['ping', '-c', '1', '-W', '2', '203.0.113.2'], { netns: ks });

    // Warm-up: the first second through xtr includes JIT compilation of the hot path.
    await measure(lab.ns.c, lab.ns.s, '203.0.113.2', 64, 1);

    // The machine is shared: the three paths are measured in alternation, round
    // after round, and each figure is the median over the rounds, so a burst of
    // someone else's load does not land on one path only.
    const paths: [string, string, string, string][] = [
      ['gen', gs, gr, '10.99.0.2'],
      ['kernel', ks, kd, '203.0.113.2'],
      ['xtr', lab.ns.c, lab.ns.s, '203.0.113.2'],
    ];
    // "xtr paced": the generator offers exactly what the kernel delivered in
    // this round. Unpaced, the sender into a TUN is never slowed down by the
    // forwarding work (the kernel path does that work in the sender's own
    // context) and burns a core on packets the TUN queue then drops, a core
    // xtr and the receiver need on a 2-CPU machine. The paced figure shows
    // whether xtr carries the kernel's rate when the generator does not compete.
    for (let round = 0; round < args.rounds; round++) {
      for (const size of args.sizes) {
        for (const [name, from, to, dst] of paths) (samples[`${name}_${size}`] ??= []).push(await measure(from, to, dst, size, args.duration));
        const kernelNow = samples[`kernel_${size}`][round].pps;
        (samples[`xtrpaced_${size}`] ??= []).push(await measure(lab.ns.c, lab.ns.s, '203.0.113.2', size, args.duration, kernelNow));
      }
    }
    for (const [key, list] of Object.entries(samples)) {
      results[key] = medianMeasure(list);
      samplesText[key] = list.map((m) => fmt(m.pps)).join(' / ');
    }
    const st = await lab.xtr(['status']);

    const load = await loadAverage();
    console.log(
      `forwarding benchmark: ${args.rounds} rounds x ${args.duration} s per path and size (median shown), udpgen sendmmsg/recvmmsg, ${await cpuCount()} CPUs, load ${load}, namespaces ${prefix}*`,
    );
    console.log('');
    console.log('path                 payload   offered pps   delivered pps   delivered/offered   rounds (delivered pps)');
    for (const size of args.sizes) {
      for (const path of ['gen', 'kernel', 'xtr', 'xtrpaced']) {
        const m = results[`${path}_${size}`];
        const label = { gen: 'generator (1 veth)', kernel: 'kernel forwarding', xtr: 'xtr (lab, tun)', xtrpaced: 'xtr paced to kernel' }[path]!;
        console.log(
          `${label.padEnd(20)} ${String(size).padStart(5)} B  ${fmt(m.sentPps).padStart(12)}  ${fmt(m.pps).padStart(14)}   ${(m.sent ? (100 * m.received) / m.sent : 0).toFixed(1).padStart(5)}%              ${samplesText[`${path}_${size}`]}`,
        );
      }
    }
    // The ratio pairs each xtr run with the kernel run just before it (same
    // round, seconds apart, so under the same outside load) and takes the
    // median of those paired ratios; a ratio of two independent medians would
    // mix load regimes.
    const pairedRatios = (size: number, path = 'xtr') => ratiosOf(samples[`${path}_${size}`], samples[`kernel_${size}`]);
    const ratio = (size: number, path = 'xtr') => median(pairedRatios(size, path));
    console.log('');
    for (const size of args.sizes) {
      console.log(
        `xtr/kernel at ${size} B: ${(100 * ratio(size)).toFixed(1)}% (median of per-round ratios: ${pairedRatios(size).map((r) => (100 * r).toFixed(0) + '%').join(' / ')})`,
      );
      console.log(
        `xtr paced/kernel at ${size} B: ${(100 * ratio(size, 'xtrpaced')).toFixed(1)}% (per round: ${pairedRatios(size, 'xtrpaced').map((r) => (100 * r).toFixed(0) + '%').join(' / ')})`,
      );
    }
    console.log('');
    console.log(st.stdout.trimEnd());
    console.log('');
    const small = args.sizes[0];
    const big = args.sizes[1];
    const kv: [string, string][] = [
      ['xtr_pps', fmt(results[`xtr_${small}`].pps).replaceAll(',', '')],
      ['kernel_pps', fmt(results[`kernel_${small}`].pps).replaceAll(',', '')],
      ['ratio', ratio(small).toFixed(3)],
      ['gen_pps', fmt(results[`gen_${small}`].pps).replaceAll(',', '')],
      ['xtr_paced_pps', fmt(results[`xtrpaced_${small}`].pps).replaceAll(',', '')],
      ['paced_ratio', ratio(small, 'xtrpaced').toFixed(3)],
    ];
    if (big !== undefined) {
      kv.push(
        [`xtr_pps_${big}`, fmt(results[`xtr_${big}`].pps).replaceAll(',', '')],
        [`kernel_pps_${big}`, fmt(results[`kernel_${big}`].pps).replaceAll(',', '')],
        [`ratio_${big}`, ratio(big).toFixed(3)],
        [`gen_pps_${big}`, fmt(results[`gen_${big}`].pps).replaceAll(',', '')],
        [`xtr_paced_pps_${big}`, fmt(results[`xtrpaced_${big}`].pps).replaceAll(',', '')],
        [`paced_ratio_${big}`, ratio(big, 'xtrpaced').toFixed(3)],
      );
    }
    kv.push(['payload', String(small)], ['duration_s', String(args.duration)], ['rounds', String(args.rounds)]);
    await cleanup();
    lab = null;
    console.log(kv.map(([k, v]) => `${k}=${v}`).join(' '));
  } catch (e) {
    await cleanup();
    throw e;
  }
}

main().catch((e) => {
  console.error(`bench:forward failed: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
