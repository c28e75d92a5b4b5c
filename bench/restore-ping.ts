/**
 * Does a large rule-set load stall forwarding? (issue 12 §5, "a control plane
 * that never stalls the packet path").
 *
 * 1. The engine alone, in this process: the longest event-loop stall
 *    (perf_hooks monitorEventLoopDelay, max) while a 10,000-line
 *    iptables-restore runs, once in one synchronous piece (`runRestore`, what
 *    boot-time rule files use) and once through the control command (the
 *    sliced transaction the socket runs), each for an accepted file and for one
 *    refused at line 9,999 (`block_ms_*`).
 * 2. The lab router (link mode, TUN): `ping -i 0.01` from the client to the
 *    server through xtr for a fixed time, once with nothing else going on and
 *    once while `xtr iptables-restore` replaces a 10,000-line rule set back to
 *    back through the real CLI (each restore is answered after its durable
 *    save). The figure is the p99 of the RTTs (`restore_ping_p99_ms`, goal
 *    < 20 ms), with the idle p99 and the lost pings alongside.
 *
 * Every figure is the median of --runs runs (default 3). The machine is
 * shared: the load average is printed at the start and the end.
 *
 *   npm run bench:restore [-- --runs N --lines N --seconds S --engine-only
 *                              --lab-only --router-node-args "--flag ..."]
 *
 * `--router-node-args` adds V8/Node flags to the router's command line (for
 * A/B runs of GC settings; the lab's own flags come first).
 *
 * The last line is one `key=value` line for scripts.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { runRestore } from '../router/netfilter/commands.js';
import { testEngine } from '../router/netfilter/testkit.js';
import { bigRuleset } from '../test/helpers/big-ruleset.js';
import { sleep, uniquePrefix, type Lab } from '../test/helpers/netns.js';
import { loadAverage, median, withLab } from './lib.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name}: ${process.argv[i + 1]} is not a positive number`);
  return v;
}

const RUNS = Math.max(3, Math.floor(arg('runs', 3)));
const LINES = Math.floor(arg('lines', 10_000));
const SECONDS = arg('seconds', 5);
const extraArgsAt = process.argv.indexOf('--router-node-args');
const ROUTER_EXTRA_ARGS = extraArgsAt < 0 ? [] : (process.argv[extraArgsAt + 1] ?? '').split(/\s+/).filter((a) => a !== '');

/** Longest event-loop stall (ms) while `body` runs. */
async function maxStall(body: () => Promise<unknown>): Promise<number> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  // Let the histogram's timer start before the work.
  await sleep(20);
  h.enable();
  await sleep(20);
  await body();
  await sleep(20);
  h.disable();
  return h.max / 1e6;
}

interface EngineFigures {
  syncOk: number;
  syncRefused: number;
  slicedOk: number;
  slicedRefused: number;
}

async function engineRun(run: number): Promise<EngineFigures> {
  const e = await testEngine();
  const ok = bigRuleset(LINES, { variant: run });
  const bad = bigRuleset(LINES, { variant: run + 1, badLine: LINES - 1 });
  const expect = (r: { status: number; stderr: string }, status: number, what: string) => {
    if (r.status !== status) throw new Error(`${what}: status ${r.status}: ${r.stderr.slice(0, 300)}`);
    if (status !== 0 && !r.stderr.includes(`line: ${LINES - 1}`)) throw new Error(`${what}: error does not name line ${LINES - 1}: ${r.stderr}`);
  };
  const f: EngineFigures = { syncOk: 0, syncRefused: 0, slicedOk: 0, slicedRefused: 0 };
  // Warm-up (JIT) so the first measured run is not the slowest by construction.
  runRestore(e.nf, 4, [], ok);
  f.syncOk = await maxStall(async () => expect(runRestore(e.nf, 4, [], bigRuleset(LINES, { variant: run + 2 })), 0, 'sync restore'));
  f.syncRefused = await maxStall(async () => expect(runRestore(e.nf, 4, [], bad), 2, 'sync refused restore'));
  f.slicedOk = await maxStall(async () => expect(await e.run('iptables-restore', ok), 0, 'sliced restore'));
  f.slicedRefused = await maxStall(async () => expect(await e.run('iptables-restore', bad), 2, 'sliced refused restore'));
  e.nf.close();
  return f;
}

interface PingRun {
  rtts: number[];
  transmitted: number;
  received: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** `ping -i 0.01` client -> server for SECONDS, while `during` runs (its loop must stop when told). */
async function pingThrough(lab: Lab, during: ((stop: () => boolean) => Promise<void>) | null): Promise<PingRun> {
  const count = Math.round(SECONDS * 100);
  const ping = lab.background('c', ['ping', '-n', '-i', '0.01', '-c', String(count), '-W', '5', '203.0.113.2']);
  let done = false;
  const finished = ping.wait((SECONDS + 20) * 1000).then((code) => {
    done = true;
    return code;
  });
  if (during) await during(() => done);
  await finished;
  const out = ping.stdout().toString();
  const rtts = [...out.matchAll(/icmp_seq=\d+ ttl=\d+ time=([0-9.]+) ms/g)].map((m) => Number(m[1]));
  const sum = /(\d+) packets transmitted, (\d+) received/.exec(out);
  if (!sum) throw new Error(`ping printed no summary: ${out.slice(-300)} ${ping.stderr()}`);
  return { rtts: rtts.sort((a, b) => a - b), transmitted: Number(sum[1]), received: Number(sum[2]) };
}

async function main(): Promise<void> {
  console.log(`bench:restore  runs=${RUNS} lines=${LINES} ping=${SECONDS}s${ROUTER_EXTRA_ARGS.length ? ` router-node-args=${ROUTER_EXTRA_ARGS.join(' ')}` : ''}  load ${await loadAverage()}`);

  const engine: EngineFigures[] = [];
  const labOnly = process.argv.includes('--lab-only');
  for (let r = 0; r < (labOnly ? 0 : RUNS); r++) {
    const f = await engineRun(r);
    engine.push(f);
    console.log(
      `engine run ${r + 1}: longest event-loop stall, ms: sync ok ${f.syncOk.toFixed(1)} refused ${f.syncRefused.toFixed(1)}; sliced ok ${f.slicedOk.toFixed(1)} refused ${f.slicedRefused.toFixed(1)}`,
    );
  }
  const med = (k: keyof EngineFigures) => median(engine.map((f) => f[k]));
  if (process.argv.includes('--engine-only')) {
    console.log(`block_ms_sync=${med('syncOk').toFixed(1)} block_ms_sync_refused=${med('syncRefused').toFixed(1)} block_ms_sliced=${med('slicedOk').toFixed(1)} block_ms_sliced_refused=${med('slicedRefused').toFixed(1)}`);
    return;
  }

  const texts = [0, 1].map((v) => bigRuleset(LINES, { variant: v }));
  const idle: PingRun[] = [];
  const busy: PingRun[] = [];
  const restores: number[] = [];
  await withLab({ prefix: uniquePrefix('yc'), logLevel: 'warn', nodeArgs: ROUTER_EXTRA_ARGS }, async (lab) => {
    // The first load (and the JIT) outside the measurement.
    const first = await lab.router.cli(['iptables-restore'], texts[1]);
    if (first.code !== 0) throw new Error(`iptables-restore failed: ${first.stderr}`);
    for (let r = 0; r < RUNS; r++) {
      const quiet = await pingThrough(lab, null);
      let n = 0;
      const loaded = await pingThrough(lab, async (stop) => {
        await sleep(100);
        while (!stop()) {
          const res = await lab.router.cli(['iptables-restore'], texts[n % 2]);
          if (res.code !== 0) throw new Error(`iptables-restore failed: ${res.stderr}`);
          n++;
        }
      });
      idle.push(quiet);
      busy.push(loaded);
      restores.push(n);
      const p = (x: PingRun) => `p50 ${percentile(x.rtts, 0.5).toFixed(2)} p99 ${percentile(x.rtts, 0.99).toFixed(2)} max ${x.rtts[x.rtts.length - 1]?.toFixed(2)} ms, lost ${x.transmitted - x.received}/${x.transmitted}`;
      console.log(`lab run ${r + 1}: idle ${p(quiet)}; during ${n} restores ${p(loaded)}`);
    }
  });

  const p99 = (list: PingRun[]) => median(list.map((x) => percentile(x.rtts, 0.99)));
  const lost = (list: PingRun[]) => median(list.map((x) => x.transmitted - x.received));
  const figures = {
    ...(labOnly
      ? {}
      : {
          block_ms_sync: med('syncOk').toFixed(1),
          block_ms_sync_refused: med('syncRefused').toFixed(1),
          block_ms_sliced: med('slicedOk').toFixed(1),
          block_ms_sliced_refused: med('slicedRefused').toFixed(1),
        }),
    idle_ping_p99_ms: p99(idle).toFixed(2),
    restores_per_run: median(restores),
    lost_during_restore: lost(busy),
    restore_ping_p99_ms: p99(busy).toFixed(2),
  };
  console.log(`load ${await loadAverage()}; goal restore_ping_p99_ms < 20: ${Number(figures.restore_ping_p99_ms) < 20 ? 'met' : 'missed'}`);
  console.log(Object.entries(figures).map(([k, v]) => `${k}=${v}`).join(' '));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
