/**
 * What rules cost, in one run on this machine:
 *
 * 1. Forwarding through xtr (the link-mode lab, TUN) with 0, 100 and 10,000
 *    non-matching rules in front of an ACCEPT in FORWARD, as ratios to the
 *    0-rule rate (`ratio_100`, `ratio_10000`; target: ratio_10000 >= 0.25).
 *    The rule sets are loaded with `xtr iptables-restore`:
 *      *filter / :FORWARD DROP / N x `-A FORWARD -s 10.a.b.c/32 -j DROP` / `-A FORWARD -j ACCEPT`
 *    and, as a second 10,000-rule shape, half such address rules and half
 *    `-p udp --dport P -j DROP` on ports the traffic does not use
 *    (`ratio_10000_mixed`).
 * 2. Stateful forwarding through the seed-001 port-knocking script, by the
 *    kernel (iptables-nft in a router namespace, veth, ip_forward) and by
 *    xtr: the script exactly as test/helpers/knock.ts adapts it for the
 *    "server behind the router" case (EXT_IF=eth0, its "real part" rules in
 *    FORWARD), then one rule appended for the benchmark's UDP service:
 *      -A FORWARD -d 203.0.113.2/32 -i eth0 -o eth1 -p udp -m udp --dport 9000 -m state --state NEW,ESTABLISHED -j ACCEPT
 *    so every packet walks the seed's 8 FORWARD rules (three anti-spoofing
 *    `-s ... -i eth0 -j DROP` - the script's closing `-D FORWARD 1` removes
 *    the first, as its `-I FORWARD 1 -i ! lo` was refused - the icmp jump,
 *    the tcp ESTABLISHED,RELATED accept, the syn-flood jump, the
 *    knock-protected ssh rule, the port-knocking jump), is tracked by
 *    conntrack (the `state` matches turn it on, in the kernel's namespace
 *    as in xtr; the 0/100/10,000-rule sets use no conntrack match, so
 *    neither router tracks there) and is accepted by the appended rule.
 *    Both routers' filter tables are checked to be the same rule set, and
 *    after each run that the appended rule counted at least what the
 *    receiver got and that conntrack holds the flow. `ratio_vs_kernel_stateful` = xtr / kernel (goal
 *    >= 1.0). Also measured: the bare kernel (no rules, no conntrack), and
 *    xtr with the generator paced to the kernel's seed-001 rate of the same
 *    round (`paced_ratio_vs_kernel_stateful`, at most 1 by construction):
 *    unpaced, the sender into a TUN burns a CPU on packets the TUN queue
 *    drops.
 * 3. The rule engine alone (Netfilter.hook() on prebuilt PacketContexts
 *    parsed from real bytes), 0/100/10,000 rules, as `engine_ratio_*`.
 *
 * For every xtr path the router's CPU time is read from /proc, giving
 * delivered packets per CPU-second of xtr: `cpu_ratio_*` compare rule sets
 * by what a packet costs xtr, without the scheduler's share of the noise.
 *
 * The machine's 2 CPUs are shared: every path is measured once per round
 * (5 rounds of 3 s by default), in alternation, and each figure is the
 * median over the rounds; ratios are medians of per-round ratios (both
 * sides measured seconds apart).
 * Traffic: bench/native/udpgen, 64-byte UDP payloads, 198.51.100.2 ->
 * 203.0.113.2:9000, delivered rate as counted by the receiver.
 *
 *   npm run bench:rules [-- --rounds N --duration S --engine-seconds S --cpu-prof DIR]
 *
 * The last line is one `key=value` line for scripts.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Hook, type PacketContext } from '../xt/packet.js';
import { setClassifierEnabled } from '../router/netfilter/compile.js';
import { packet, testEngine, type TestEngine } from '../router/netfilter/testkit.js';
import { REPO_ROOT, run, uniquePrefix, vethPair } from '../test/helpers/netns.js';
import { parseSaveCounters, ruleLines } from '../test/helpers/kernel-router.js';
import { cpuCount, fmt, kernelForwarding, loadAverage, measure, median, medianMeasure, pairedRatios, PORT, runSeedScript, UDPGEN, withBenchScope, type Measure } from './lib.js';

const PAYLOAD = 64;
const CLIENT = '198.51.100.2';
const SERVER = '203.0.113.2';

interface Args {
  rounds: number;
  duration: number;
  engineSeconds: number;
  cpuProf: string | null;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    rounds: Number(process.env.BENCH_ROUNDS ?? 5),
    duration: Number(process.env.BENCH_DURATION ?? 3),
    engineSeconds: Number(process.env.BENCH_SECONDS ?? 1),
    cpuProf: null,
  };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--rounds') a.rounds = Number(argv[++i]);
    else if (argv[i] === '--duration') a.duration = Number(argv[++i]);
    else if (argv[i] === '--engine-seconds') a.engineSeconds = Number(argv[++i]);
    else if (argv[i] === '--cpu-prof') a.cpuProf = argv[++i];
    else throw new Error(`bench:rules: unknown argument ${argv[i]} (--rounds N, --duration S, --engine-seconds S, --cpu-prof DIR)`);
  }
  if (!(Number.isInteger(a.rounds) && a.rounds >= 1 && a.rounds <= 20)) throw new Error('--rounds must be an integer from 1 to 20');
  if (!(a.duration > 0 && a.duration <= 120)) throw new Error('--duration must be between 0 and 120 seconds');
  if (!(a.engineSeconds > 0 && a.engineSeconds <= 60)) throw new Error('--engine-seconds must be between 0 and 60 seconds');
  return a;
}

// ---------------------------------------------------------------------------
// Rule sets (iptables-restore text). None of the N rules matches the traffic
// (UDP from 198.51.100.0/24 to 203.0.113.2:9000, or TCP to port 80 in the
// engine-only measurement); the ACCEPT after them does.

/** `-s 10.x.y.z/32 -j DROP` rules then ACCEPT. */
function sourceRules(n: number): string {
  let s = '*filter\n:FORWARD DROP [0:0]\n';
  for (let i = 0; i < n; i++) s += `-A FORWARD -s 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32 -j DROP\n`;
  return `${s}-A FORWARD -j ACCEPT\nCOMMIT\n`;
}

/** `-p tcp --dport P -j DROP` rules on ports the engine-only traffic does not use (the tcp match describes its ports). */
function portRules(n: number): string {
  let s = '*filter\n:FORWARD DROP [0:0]\n';
  for (let i = 0; i < n; i++) s += `-A FORWARD -p tcp -m tcp --dport ${1024 + (i % 60000)} -j DROP\n`;
  return `${s}-A FORWARD -j ACCEPT\nCOMMIT\n`;
}

/** Half address rules, then half tcp port rules: one classifier per run (engine-only). */
function mixedRules(n: number): string {
  let s = '*filter\n:FORWARD DROP [0:0]\n';
  for (let i = 0; i < n; i++) {
    s += i < n / 2 ? `-A FORWARD -s 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32 -j DROP\n` : `-A FORWARD -p tcp -m tcp --dport ${1024 + (i % 60000)} -j DROP\n`;
  }
  return `${s}-A FORWARD -j ACCEPT\nCOMMIT\n`;
}

/** Through xtr: half address rules, then half UDP port rules on ports other than the benchmark's (same protocol, other port). */
function mixedUdpRules(n: number): string {
  let s = '*filter\n:FORWARD DROP [0:0]\n';
  for (let i = 0; i < n; i++) {
    if (i < n / 2) s += `-A FORWARD -s 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32 -j DROP\n`;
    else {
      let port = 1024 + (i % 60000);
      if (port === PORT) port = 65535;
      s += `-A FORWARD -p udp -m udp --dport ${port} -j DROP\n`;
    }
  }
  return `${s}-A FORWARD -j ACCEPT\nCOMMIT\n`;
}

/** The rule appended after the seed script: the benchmark's UDP service on the server, as a user would open it. */
const SEED_UDP_ACCEPT = ['-A', 'FORWARD', '-i', 'eth0', '-o', 'eth1', '-p', 'udp', '-d', SERVER, '--dport', String(PORT), '-m', 'state', '--state', 'NEW,ESTABLISHED', '-j', 'ACCEPT'];

// ---------------------------------------------------------------------------
// Engine only: Netfilter.hook() calls per second.

interface EngineResult {
  key: string;
  pps: number;
}

function contexts(count: number): PacketContext[] {
  const out: PacketContext[] = [];
  for (let i = 0; i < count; i++) {
    out.push(packet({ src: `192.168.${i >> 8}.${i & 255}`, dst: '172.16.0.1', proto: 'tcp', sport: 40000 + i, dport: 80, payload: 64 }, 'lan0', 'wan0'));
  }
  return out;
}

/** Calls hook() in batches for `seconds`; best of three runs. */
function hookRate(e: TestEngine, pkts: PacketContext[], seconds: number): number {
  let best = 0;
  for (let round = 0; round < 3; round++) {
    let calls = 0;
    let accepted = 0;
    const start = performance.now();
    const until = start + seconds * 1000;
    let now = start;
    while (now < until) {
      for (let k = 0; k < 1000; k++) {
        accepted += e.nf.hook(Hook.FORWARD, pkts[k & (pkts.length - 1)]);
      }
      calls += 1000;
      now = performance.now();
    }
    if (accepted !== calls) throw new Error(`bench: ${calls - accepted} packets were not accepted - the rule set is wrong`);
    best = Math.max(best, calls / ((now - start) / 1000));
  }
  return best;
}

async function engineScenario(name: string, rules: (n: number) => string, classify: boolean, counts: readonly number[], seconds: number): Promise<EngineResult[]> {
  const pkts = contexts(64);
  const out: EngineResult[] = [];
  setClassifierEnabled(classify);
  try {
    for (const n of counts) {
      const e = await testEngine();
      const r = await e.run('iptables-restore', rules(n));
      if (r.status !== 0) throw new Error(`bench: restore of ${n} rules failed: ${r.stderr}`);
      out.push({ key: `${name}_${n}`, pps: hookRate(e, pkts, seconds) });
    }
  } finally {
    setClassifierEnabled(true);
  }
  return out;
}

/** The engine-only figures: prints a table, returns the ratios by scenario key. */
async function engineFigures(seconds: number): Promise<Map<string, number>> {
  const scenarios: [string, (n: number) => string, boolean, number[]][] = [
    ['engine_src', sourceRules, true, [0, 100, 10_000]],
    ['engine_dport', portRules, true, [0, 100, 10_000]],
    ['engine_mixed', mixedRules, true, [0, 100, 10_000]],
    // The same engine with the classifier off: what a linear scan costs (for comparison only).
    ['linear_src', sourceRules, false, [0, 10_000]],
  ];
  const ratios = new Map<string, number>();
  // Warm the JIT on the paths every scenario uses so the first 0-rule baseline is not penalised.
  await engineScenario('warmup', sourceRules, true, [0, 100], seconds);
  console.log(`rule engine alone: Netfilter.hook(FORWARD) on prebuilt TCP packets, best of 3 x ${seconds} s`);
  for (const [name, rules, classify, counts] of scenarios) {
    const results = await engineScenario(name, rules, classify, counts, seconds);
    const base = results[0].pps;
    for (const r of results) {
      const ratio = r.pps / base;
      console.log(`  ${r.key.padEnd(22)} ${fmt(r.pps).padStart(12)} hook/s  ratio ${ratio.toFixed(3)}`);
      ratios.set(r.key, ratio);
    }
  }
  return ratios;
}

// ---------------------------------------------------------------------------
// Seed 001 on a router.

/** The packet counter of the filter-table rule whose save text is `rule` (after `-A CHAIN `), or -1. */
function ruleCounter(saveText: string, chain: string, rule: string): number {
  const snap = parseSaveCounters(saveText);
  const hit = snap.rules.find((r) => r.table === 'filter' && r.chain === chain && r.rule === rule);
  return hit ? hit.packets : -1;
}

/** user+system CPU seconds a process has used so far (/proc/PID/stat utime+stime). */
function cpuSeconds(pid: number, ticksPerSecond: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at the closing parenthesis.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / ticksPerSecond;
}

// ---------------------------------------------------------------------------

interface Path {
  name: string;
  label: string;
  send: string;
  recv: string;
  /** Before the measurement (load a rule set, warm up). */
  prepare?: () => Promise<void>;
  /** After it: checks that the packets took the intended path. */
  verify?: (m: Measure) => Promise<void>;
  /** The generator's rate for this round (0: as fast as it goes). */
  rate?: (round: number) => number;
  /** The router process whose CPU time per delivered packet is recorded (xtr paths). */
  pid?: number;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (!existsSync(UDPGEN)) throw new Error(`${UDPGEN} missing: run bash scripts/ensure-setup`);

  const engine = await engineFigures(args.engineSeconds);
  console.log('');

  const prefix = uniquePrefix('xb');
  await withBenchScope(prefix, async ({ nss, startLab }) => {
    // Generator alone: one veth.
    const gs = await nss.add('gs');
    const gr = await nss.add('gr');
    await vethPair({ ns: gs, ifname: 'g0', addresses: ['10.99.0.1/24'] }, { ns: gr, ifname: 'g1', addresses: ['10.99.0.2/24'] });
    // Kernel forwarding without rules (no conntrack either: nothing in that namespace asks for it).
    const bare = await kernelForwarding(nss, ['ks', 'kr', 'kd']);
    // Kernel forwarding through seed 001 with iptables-nft.
    const fw = await kernelForwarding(nss, ['fc', 'fr', 'fs']);
    await runSeedScript(fw.router, 'iptables-nft');
    await run(['iptables-nft', ...SEED_UDP_ACCEPT], { netns: fw.router });
    const kernelSave = () => run(['iptables-nft-save', '-c'], { netns: fw.router });

    // xtr: the link-mode lab, logging only warnings so logging is not measured.
    const nodeArgs = args.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${args.cpuProf}`] : [];
    if (args.cpuProf) mkdirSync(args.cpuProf, { recursive: true });
    const l = await startLab({ prefix, logLevel: 'warn', nodeArgs });
    const xtr = async (argv: string[], input: string | null = null) => {
      const r = await l.xtr(argv, input);
      if (r.status !== 0) throw new Error(`xtr ${argv.join(' ')}: exit ${r.status}: ${r.stderr.trim()}`);
      return r.stdout;
    };
    // The same script with $IPTABLES="xtr iptables" (the CLI against this lab's socket), then the same appended rule.
    await runSeedScript(l.ns.r, `${process.execPath} ${join(REPO_ROOT, 'bin', 'xtr.js')} --socket ${l.router.socket} iptables`);
    await xtr(['iptables', ...SEED_UDP_ACCEPT]);
    const seedSave = await xtr(['iptables-save']);
    const kernelRules = ruleLines(parseSaveCounters(await kernelSave()));
    const xtrRules = ruleLines(parseSaveCounters(await xtr(['iptables-save', '-c'])));
    if (kernelRules.join('\n') !== xtrRules.join('\n')) {
      throw new Error(`seed-001 rule sets differ between the kernel and xtr:\nkernel:\n${kernelRules.join('\n')}\nxtr:\n${xtrRules.join('\n')}`);
    }
    const acceptRule = xtrRules.find((r) => r.includes('--dport 9000') && r.includes('-j ACCEPT'))?.replace(/^filter: -A FORWARD /, '');
    if (!acceptRule) throw new Error('the appended UDP accept rule is not in the saved rule set');
    const forwardRules = xtrRules.filter((r) => r.startsWith('filter: -A FORWARD ')).length;
    const totalRules = xtrRules.filter((r) => r.startsWith('filter: -A ')).length;

    for (const ns of [l.ns.c, bare.send, fw.send]) await run(['ping', '-c', '1', '-W', '2', SERVER], { netns: ns }).catch(() => undefined);

    const loaded = new Map<string, string>([
      ['x0', sourceRules(0)],
      ['x100', sourceRules(100)],
      ['x10000', sourceRules(10_000)],
      ['x10000mixed', mixedUdpRules(10_000)],
      ['xseed', seedSave],
    ]);
    const routerPid = l.router.proc.proc.pid;
    if (routerPid === undefined || !readFileSync(`/proc/${routerPid}/cmdline`, 'utf8').includes('main.js')) {
      throw new Error(`cannot find the xtr router process (pid ${routerPid}) for its CPU time`);
    }
    const ticks = Number((await run(['getconf', 'CLK_TCK'])).trim());
    const restoreMs = new Map<string, number[]>();
    /** Conntrack entries right after each seed-001 run (kernel: the namespace's count; xtr: entries of the benchmark's flows). */
    const conntrackSeen: { kernel?: number[]; xtr?: number[] } = {};
    const xtrPath = (name: string, rules: string, label: string, acceptText: string, rate?: (round: number) => number): Path => ({
      name,
      label,
      send: l.ns.c,
      recv: l.ns.s,
      pid: routerPid,
      rate,
      async prepare() {
        const t0 = performance.now();
        await xtr(['iptables-restore'], loaded.get(rules)!);
        const took = restoreMs.get(rules) ?? [];
        took.push(performance.now() - t0);
        restoreMs.set(rules, took);
        // A short unmeasured burst: the new rule set's compiled code is hot before the measurement starts.
        await run([UDPGEN, 'send', '--dst', SERVER, '--port', String(PORT), '--size', String(PAYLOAD), '--duration', '0.5'], { netns: l.ns.c, timeoutMs: 10_000 });
      },
      async verify(m) {
        const counted = ruleCounter(await xtr(['iptables-save', '-c']), 'FORWARD', acceptText);
        if (counted < m.received) throw new Error(`${label}: the ACCEPT rule counted ${counted} packets, the receiver got ${m.received}: the traffic did not take the rule set's path`);
        if (rules === 'xseed') {
          const tracked = (await xtr(['conntrack', '-L', '-p', 'udp'])).split('\n').filter((e) => e.includes(`dport=${PORT}`)).length;
          if (!(tracked > 0)) throw new Error(`${label}: no conntrack entry for the flow after the run: conntrack is not in use`);
          (conntrackSeen.xtr ??= []).push(tracked);
        }
      },
    });
    const samples: Record<string, Measure[]> = {};
    /** Delivered packets per CPU-second of the xtr process, per round (what one core of xtr forwards, whatever the scheduler gave it). */
    const perCpu: Record<string, number[]> = {};
    const paths: Path[] = [
      { name: 'gen', label: 'generator (1 veth)', send: gs, recv: gr },
      { name: 'kernel', label: 'kernel, no rules', send: bare.send, recv: bare.recv },
      {
        name: 'kseed',
        label: 'kernel, seed 001',
        send: fw.send,
        recv: fw.recv,
        async prepare() {
          await run(['iptables-nft', '-Z'], { netns: fw.router });
        },
        async verify(m) {
          const counted = ruleCounter(await kernelSave(), 'FORWARD', acceptRule);
          if (counted < m.received) throw new Error(`kernel seed 001: the UDP ACCEPT rule counted ${counted}, the receiver got ${m.received}`);
          const tracked = Number((await run(['cat', '/proc/sys/net/netfilter/nf_conntrack_count'], { netns: fw.router })).trim());
          if (!(tracked > 0)) throw new Error('kernel seed 001: no conntrack entry after the run: conntrack is not in use in the router namespace');
          (conntrackSeen.kernel ??= []).push(tracked);
        },
      },
      xtrPath('xseed', 'xseed', 'xtr, seed 001', acceptRule),
      // The generator offers what the kernel delivered through seed 001 this round: unpaced, the
      // sender into a TUN is never slowed by the forwarding work (the kernel path does that work in
      // the sender's context) and burns a CPU on packets the TUN queue drops - a CPU that xtr and
      // the receiver need on a 2-CPU machine.
      xtrPath('xseedpaced', 'xseed', 'xtr, seed 001, paced', acceptRule, (round) => samples.kseed[round].pps),
      xtrPath('x0', 'x0', 'xtr, 0 rules', '-j ACCEPT'),
      xtrPath('x100', 'x100', 'xtr, 100 rules', '-j ACCEPT'),
      xtrPath('x10000', 'x10000', 'xtr, 10,000 rules', '-j ACCEPT'),
      xtrPath('x10000mixed', 'x10000mixed', 'xtr, 10,000 mixed', '-j ACCEPT'),
    ];

    // Warm-up: the first second through xtr includes JIT compilation of the hot path.
    await xtr(['iptables-restore'], sourceRules(0));
    await measure(l.ns.c, l.ns.s, SERVER, PAYLOAD, 1);

    // The machine is shared: every path is measured once per round, in alternation, and each
    // figure is a median over the rounds, so a burst of someone else's load does not land on one
    // path only.
    for (let round = 0; round < args.rounds; round++) {
      for (const p of paths) {
        await p.prepare?.();
        const cpu0 = p.pid !== undefined ? cpuSeconds(p.pid, ticks) : 0;
        const m = await measure(p.send, p.recv, p.name === 'gen' ? '10.99.0.2' : SERVER, PAYLOAD, args.duration, p.rate?.(round) ?? 0);
        if (p.pid !== undefined) {
          const used = cpuSeconds(p.pid, ticks) - cpu0;
          (perCpu[p.name] ??= []).push(used > 0 ? m.received / used : 0);
        }
        await p.verify?.(m);
        (samples[p.name] ??= []).push(m);
      }
    }

    const load = await loadAverage();
    console.log(
      `forwarding with rules: ${args.rounds} rounds x ${args.duration} s per path (median shown), ${PAYLOAD}-byte UDP payloads, udpgen sendmmsg/recvmmsg, ${await cpuCount()} CPUs, load ${load}, namespaces ${prefix}*`,
    );
    console.log('');
    console.log('path                    offered pps   delivered pps   delivered/offered   xtr pkts/CPU-s   rounds (delivered pps)');
    for (const p of paths) {
      const m = medianMeasure(samples[p.name]);
      const cpu = perCpu[p.name] ? fmt(median(perCpu[p.name])) : '-';
      console.log(
        `${p.label.padEnd(22)} ${fmt(m.sentPps).padStart(12)}  ${fmt(m.pps).padStart(14)}   ${(m.sent ? (100 * m.received) / m.sent : 0).toFixed(1).padStart(5)}%  ${cpu.padStart(18)}   ${samples[p.name].map((s) => fmt(s.pps)).join(' / ')}`,
      );
    }
    const ratios = (a: string, b: string) => pairedRatios(samples[a], samples[b]);
    const ratio = (a: string, b: string) => median(ratios(a, b));
    const cpuRatios = (a: string, b: string) => perCpu[a].map((x, i) => (perCpu[b][i] > 0 ? x / perCpu[b][i] : 0));
    const cpuRatio = (a: string, b: string) => median(cpuRatios(a, b));
    const list = (r: number[]) => r.map((x) => x.toFixed(2)).join(' / ');
    const line = (what: string, a: string, b: string, note = '') =>
      console.log(`${what.padEnd(38)} ${ratio(a, b).toFixed(3)} (per round ${list(ratios(a, b))}${note})`);
    console.log('');
    console.log('delivered pps, median of per-round ratios:');
    line('  xtr 100 rules / 0 rules', 'x100', 'x0');
    line('  xtr 10,000 rules / 0 rules', 'x10000', 'x0', '; target >= 0.25');
    line('  xtr 10,000 mixed rules / 0 rules', 'x10000mixed', 'x0');
    line('  xtr seed 001 / kernel seed 001', 'xseed', 'kseed', '; goal >= 1.0');
    line('  xtr seed 001 paced / kernel seed 001', 'xseedpaced', 'kseed', "; at most 1 by construction: the share of the kernel's rate xtr carried");
    line('  kernel seed 001 / kernel no rules', 'kseed', 'kernel');
    line('  xtr seed 001 / xtr 0 rules', 'xseed', 'x0');
    console.log("xtr's packets per CPU-second, median of per-round ratios (rule cost without the scheduler's share):");
    for (const [what, a] of [
      ['  100 rules / 0 rules', 'x100'],
      ['  10,000 rules / 0 rules', 'x10000'],
      ['  10,000 mixed / 0 rules', 'x10000mixed'],
      ['  seed 001 / 0 rules', 'xseed'],
    ] as const) {
      console.log(`${what.padEnd(38)} ${cpuRatio(a, 'x0').toFixed(3)} (per round ${list(cpuRatios(a, 'x0'))})`);
    }
    console.log('');
    console.log(
      `seed 001: ${totalRules} filter rules after the script (${forwardRules} in FORWARD, the last one the appended UDP accept), the same rule set in both routers; conntrack entries after each seed-001 run: kernel ${conntrackSeen.kernel!.join(' / ')}, xtr (UDP to port ${PORT}) ${conntrackSeen.xtr!.join(' / ')}`,
    );
    const restoreText = [...restoreMs].map(([k, v]) => `${k.replace(/^x/, '')} ${median(v).toFixed(0)} ms`).join(', ');
    console.log(`xtr iptables-restore over the control socket (median): ${restoreText}`);
    console.log('');

    const pps = (name: string) => String(Math.round(medianMeasure(samples[name]).pps));
    const kv: [string, string][] = [
      ['xtr_pps_0', pps('x0')],
      ['xtr_pps_100', pps('x100')],
      ['xtr_pps_10000', pps('x10000')],
      ['ratio_100', ratio('x100', 'x0').toFixed(3)],
      ['ratio_10000', ratio('x10000', 'x0').toFixed(3)],
      ['ratio_10000_mixed', ratio('x10000mixed', 'x0').toFixed(3)],
      ['cpu_ratio_100', cpuRatio('x100', 'x0').toFixed(3)],
      ['cpu_ratio_10000', cpuRatio('x10000', 'x0').toFixed(3)],
      ['kernel_stateful_pps', pps('kseed')],
      ['xtr_stateful_pps', pps('xseed')],
      ['ratio_vs_kernel_stateful', ratio('xseed', 'kseed').toFixed(3)],
      ['xtr_stateful_paced_pps', pps('xseedpaced')],
      ['paced_ratio_vs_kernel_stateful', ratio('xseedpaced', 'kseed').toFixed(3)],
      ['kernel_pps', pps('kernel')],
      ['kernel_stateful_vs_bare', ratio('kseed', 'kernel').toFixed(3)],
      ['gen_pps', pps('gen')],
      ['engine_ratio_100', Math.min(engine.get('engine_src_100')!, engine.get('engine_dport_100')!).toFixed(3)],
      ['engine_ratio_10000', Math.min(engine.get('engine_src_10000')!, engine.get('engine_dport_10000')!).toFixed(3)],
      ['engine_ratio_10000_mixed', engine.get('engine_mixed_10000')!.toFixed(3)],
      ['engine_linear_ratio_10000', engine.get('linear_src_10000')!.toFixed(4)],
      ['payload', String(PAYLOAD)],
      ['duration_s', String(args.duration)],
      ['rounds', String(args.rounds)],
    ];
    console.log(kv.map(([k, v]) => `${k}=${v}`).join(' '));
  });
}

main().catch((e) => {
  console.error(`bench:rules failed: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
