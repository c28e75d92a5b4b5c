/**
 * Cluster mode benchmark (issue 15, docs/cluster.md), in one run:
 *
 *  - forwarding pps of UDP (64-byte payloads, bench/native/udpgen) through a
 *    lab router with cluster mode off and through one with cluster mode on
 *    (connected to a nats-server with JetStream in its own namespace), both
 *    with the same rules that make every forwarded packet a change of shared
 *    state (`-m recent --set` on the source, `-m quota2 --grow`): alternating
 *    rounds, ratio_cluster = median of the per-round ratios on/off (goal >= 0.95);
 *  - the propagation delay of a recent-list change: `xtr proc write
 *    net/xt_recent/BAN +ADDR` on gateway A over its control socket, then B's
 *    table polled over its socket until the address is there (wall time from
 *    before the write; resolution = one poll, a few ms), median and p99.
 *
 *   npm run bench:cluster [-- --duration S --rounds N --changes N]
 *
 * The last line is one key=value line.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Namespaces, background, sleep, startLab, uniquePrefix, vethPair, waitFor, type Background, type Lab } from '../test/helpers/netns.js';
import { cpuCount, fmt, loadAverage, measure, median, pairedRatios, UDPGEN, type Measure } from './lib.js';
import { XtHarness } from '../test/helpers/xt-harness.js';
import { icmpMsg, ip4 } from '../test/modules-fixtures.js';
import { Hook } from '../xt/packet.js';
import recent from '../modules/recent.js';
import quota2 from '../modules/quota2.js';
import { ClusterLink } from '../router/cluster/link.js';
import { validateClusterConfig, type ClusterConfig } from '../router/cluster/config.js';

/**
 * The packet path's own cost, in-process and so steadier than the lab on a
 * loaded machine: `recent --set` + `quota2 --grow` over 128 sources (within ip_list_tot 200), ns per
 * packet with the tables shared (sink attached; the outbox collected every
 * 4096 packets, as the 20 ms timer would at ~200 kpps) and not shared,
 * alternating rounds.
 */
function matchPathCost(rounds: number): { off: number; on: number; ratio: number; applyUs: number } {
  const h = new XtHarness();
  const cfg = validateClusterConfig({ name: 'bench', gateway: 'gw', servers: ['nats://127.0.0.1:4222'] }) as ClusterConfig;
  const link = new ClusterLink(cfg, { now: () => h.services.now(), wallNow: () => h.services.wallNow() });
  const place = { chain: 'FORWARD' };
  const m1 = h.match(recent, '--name SEEN --set', place);
  const m2 = h.match(quota2, '--name BYTES --grow --quota 0', place);
  const pkts = Array.from({ length: 128 }, (_, i) => h.packet(ip4(`10.1.0.${i}`, '203.0.113.2', icmpMsg(8, 0)), { hook: Hook.FORWARD, inIf: 'eth0', outIf: 'eth1' }));
  const N = 400_000;
  const run = (shared: boolean): number => {
    h.state.setCluster(shared ? link : null);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) {
      const p = pkts[i & 127];
      m1.match(p);
      m2.match(p);
      if ((i & 4095) === 4095) {
        // One flush per 4096 packets, 20 ms apart on the fake clocks (as the timer at ~200 kpps).
        h.services.advance(20);
        if (shared) link.collect();
      }
    }
    const ns = Number(process.hrtime.bigint() - t0) / N;
    h.state.setCluster(null);
    return ns;
  };
  run(true);
  run(false);
  const off: number[] = [];
  const on: number[] = [];
  for (let r = 0; r < rounds; r++) {
    off.push(run(false));
    on.push(run(true));
  }
  const mOff = median(off);
  const mOn = median(on);
  return { off: mOff, on: mOn, ratio: mOff / mOn, applyUs: applyCost() };
}

/** Microseconds a receiving gateway spends per recent record (JSON parse + merge), over 4096 distinct records. */
function applyCost(): number {
  const mk = (gw: string) => {
    const h = new XtHarness();
    const cfg = validateClusterConfig({ name: 'bench', gateway: gw, servers: ['nats://127.0.0.1:4222'], outboxMax: 100_000 }) as ClusterConfig;
    const link = new ClusterLink(cfg, { now: () => h.services.now(), wallNow: () => h.services.wallNow() });
    h.state.setCluster(link);
    return { h, link, m: h.match(recent, '--name SEEN --set', { chain: 'FORWARD' }) };
  };
  const a = mk('a');
  const b = mk('b');
  for (let i = 0; i < 4096; i++) a.m.match(a.h.packet(ip4(`10.2.${i >> 8}.${i & 255}`, '203.0.113.2', icmpMsg(8, 0)), { hook: Hook.FORWARD, inIf: 'eth0', outIf: 'eth1' }));
  a.link.collect();
  const recs = a.link.outboxEntries().map(([, v]) => v);
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < 5; r++) for (const v of recs) b.link.receive(v);
  return Number(process.hrtime.bigint() - t0) / 1000 / (5 * recs.length);
}

interface Args {
  duration: number;
  rounds: number;
  changes: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { duration: Number(process.env.BENCH_DURATION ?? 2), rounds: Number(process.env.BENCH_ROUNDS ?? 5), changes: 100 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--duration') a.duration = Number(argv[++i]);
    else if (argv[i] === '--rounds') a.rounds = Number(argv[++i]);
    else if (argv[i] === '--changes') a.changes = Number(argv[++i]);
    else throw new Error(`bench:cluster: unknown argument ${argv[i]} (--duration S, --rounds N, --changes N)`);
  }
  if (!(Number.isInteger(a.rounds) && a.rounds >= 1 && a.rounds <= 20)) throw new Error('--rounds must be an integer from 1 to 20');
  if (!(a.duration > 0 && a.duration <= 60)) throw new Error('--duration must be between 0 and 60 seconds');
  if (!(Number.isInteger(a.changes) && a.changes >= 1 && a.changes <= 2000)) throw new Error('--changes must be an integer from 1 to 2000');
  return a;
}

function percentile(values: readonly number[], p: number): number {
  const s = [...values].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

const RULES = [
  ['-A', 'FORWARD', '-m', 'recent', '--name', 'SEEN', '--set'],
  ['-A', 'FORWARD', '-m', 'quota2', '--name', 'BYTES', '--grow', '--quota', '0'],
  ['-A', 'FORWARD', '-p', 'tcp', '-m', 'recent', '--name', 'BAN', '--rcheck', '--seconds', '600', '-j', 'DROP'],
];

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (!existsSync(UDPGEN)) throw new Error(`${UDPGEN} missing: run bash scripts/ensure-setup`);
  const prefix = uniquePrefix('yb');
  const nss = new Namespaces(prefix);
  const store = mkdtempSync(join(tmpdir(), `xtr-nats-${prefix}`));
  const labs: Lab[] = [];
  let nats: Background | null = null;
  const cleanup = async () => {
    for (const l of labs.splice(0)) await l.stop();
    await nats?.kill('SIGKILL');
    await nss.cleanup();
    rmSync(store, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    const n = await nss.add('n');
    nats = background(['nats-server', '-js', '-sd', store, '-a', '0.0.0.0', '-p', '4222'], { netns: n });
    const lab = async (tag: string, i: number | null): Promise<Lab> => {
      const l = await startLab({
        prefix: `${prefix}${tag}-`,
        logLevel: 'warn',
        patch: (doc) => {
          doc.metrics = null;
          if (i !== null) doc.cluster = { name: 'bench', gateway: `gw${tag}`, servers: [`nats://10.250.${i}.1:4222`], shared: ['recent', 'quota2'], flushMs: 20 };
        },
      });
      labs.push(l);
      if (i !== null) await vethPair({ ns: n, ifname: `nats${i}`, addresses: [`10.250.${i}.1/24`] }, { ns: l.ns.r, ifname: 'nats0', addresses: [`10.250.${i}.2/24`] });
      for (const r of RULES) {
        const res = await l.xtr(['iptables', ...r]);
        if (res.status !== 0) throw new Error(`${tag}: iptables ${r.join(' ')}: ${res.stderr}`);
      }
      return l;
    };
    const off = await lab('o', null);
    const a = await lab('a', 1);
    const b = await lab('b', 2);
    for (const l of [a, b]) {
      const ok = await waitFor(async () => JSON.parse((await l.xtr(['cluster', 'status', '--json'])).stdout).connected === true, 20_000, 100);
      if (!ok) throw new Error(`${l.prefix}: not connected to NATS`);
    }
    console.log(`bench:cluster  load average ${await loadAverage()}  cpus ${await cpuCount()}  rounds ${args.rounds} x ${args.duration} s, 64-byte UDP`);

    // 1. Forwarding, cluster off vs on, alternating.
    const offM: Measure[] = [];
    const onM: Measure[] = [];
    for (let r = 0; r < args.rounds; r++) {
      const first = r % 2 === 0;
      for (const which of first ? ['off', 'on'] : ['on', 'off']) {
        const l = which === 'off' ? off : a;
        const m = await measure(l.ns.c, l.ns.s, '203.0.113.2', 64, args.duration);
        (which === 'off' ? offM : onM).push(m);
        console.log(`  round ${r + 1} cluster ${which.padEnd(3)}: ${fmt(m.pps)} pps delivered (sent ${fmt(m.sentPps)} pps)`);
      }
    }
    const ratios = pairedRatios(onM, offM);
    const ratio = median(ratios);
    const st = JSON.parse((await a.xtr(['cluster', 'status', '--json'])).stdout);
    console.log(`  forwarding: off ${fmt(median(offM.map((m) => m.pps)))} pps, on ${fmt(median(onM.map((m) => m.pps)))} pps, per-round ratios ${ratios.map((x) => x.toFixed(3)).join(' ')}`);
    console.log(`  gateway A published ${st.published} records (coalesced per item), dropped ${st.dropped}`);

    const cost = matchPathCost(7);
    console.log(`  match path (recent --set + quota2 --grow, in-process): ${cost.off.toFixed(0)} ns/packet not shared, ${cost.on.toFixed(0)} ns/packet shared (ratio ${cost.ratio.toFixed(3)}); applying a remote recent record ${cost.applyUs.toFixed(1)} us`);

    // 2. Propagation of a recent change A -> B.
    const delays: number[] = [];
    for (let i = 0; i < args.changes; i++) {
      const addr = `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
      const t0 = performance.now();
      const w = await a.xtr(['proc', 'write', 'net/xt_recent/BAN', `+${addr}`]);
      if (w.status !== 0) throw new Error(`proc write: ${w.stderr}`);
      let seen = false;
      for (let k = 0; k < 2000 && !seen; k++) {
        if ((await b.xtr(['proc', 'cat', 'net/xt_recent/BAN'])).stdout.includes(`src=${addr} `)) seen = true;
        else if (performance.now() - t0 > 5000) break;
      }
      if (!seen) throw new Error(`change ${addr} did not reach B within 5 s`);
      delays.push(performance.now() - t0);
      await sleep(10);
    }
    const p50 = median(delays);
    const p99 = percentile(delays, 99);
    const sb = JSON.parse((await b.xtr(['cluster', 'status', '--json'])).stdout);
    console.log(`  recent change A -> B seen over B's socket (${delays.length} changes, flushMs 20; includes A's durable save before its answer and one poll): median ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...delays).toFixed(1)} ms`);
    console.log(`  B's record lag (built on A -> applied on B, last ${Math.min(1024, sb.applied)} records; add up to flushMs of outbox wait): median ${sb.lagMsP50} ms, p99 ${sb.lagMsP99} ms`);
    console.log(
      `ratio_cluster=${ratio.toFixed(3)} pps_off=${Math.round(median(offM.map((m) => m.pps)))} pps_on=${Math.round(median(onM.map((m) => m.pps)))} propagation_ms_p50=${p50.toFixed(1)} propagation_ms_p99=${p99.toFixed(1)} record_lag_ms_p50=${sb.lagMsP50} record_lag_ms_p99=${sb.lagMsP99} match_ns_off=${cost.off.toFixed(0)} match_ns_on=${cost.on.toFixed(0)} apply_us=${cost.applyUs.toFixed(1)} changes=${delays.length} flush_ms=20 load="${await loadAverage()}"`,
    );
  } finally {
    await cleanup();
  }
}

main().catch((e) => {
  console.error(`bench:cluster: ${(e as Error).message}`);
  process.exit(1);
});
