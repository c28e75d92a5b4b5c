/**
 * What one `xtr` CLI call costs next to Node's own start, in one run
 * (issue 13: a 30-line iptables script should not take seconds):
 *
 *  - `node`  : `node -e 0`, Node's bare start and exit;
 *  - `xtr -A`: `node bin/xtr.js --socket S iptables -A FORWARD -s ADDR -j ACCEPT`
 *              against a running lab router (the command answers only after the
 *              rule is on disk: write, fsync, rename, fsync of the directory);
 *  - `xtr ping`: the same client round trip without a rule change;
 *  - `iptables-legacy -A` in a namespace, the kernel's own tool, for scale.
 *
 * The four alternate call by call (order rotating), so load swings hit all of
 * them alike; figures are medians of wall-clock times per call.
 * `ratio_cli_vs_node` = median(xtr -A) / median(node -e 0) (goal <= 1.5).
 *
 *   npm run bench:cli [-- --calls N]
 *
 * The last line is one `key=value` line for scripts.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT, uniquePrefix } from '../test/helpers/netns.js';
import { cpuCount, loadAverage, median, withLab } from './lib.js';

function args(): { calls: number } {
  const a = { calls: Number(process.env.BENCH_CALLS ?? 30) };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--calls') a.calls = Number(argv[++i]);
    else throw new Error(`bench:cli: unknown argument ${argv[i]} (--calls N)`);
  }
  if (!(Number.isInteger(a.calls) && a.calls >= 3 && a.calls <= 1000)) throw new Error('bench:cli: --calls 3..1000');
  return a;
}

/** Wall-clock milliseconds of one synchronous run; throws unless it exits 0. */
function timed(argv: readonly string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`bench:cli: ${argv.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr?.toString().trim()}`);
  return ms;
}

const fmtMs = (v: number) => v.toFixed(1);

async function main(): Promise<void> {
  const a = args();
  console.log(`bench:cli: ${a.calls} calls per command, alternating, ${await cpuCount()} CPUs, load ${await loadAverage()}`);
  const xtrBin = join(REPO_ROOT, 'bin', 'xtr.js');
  const node = process.execPath;
  await withLab({ prefix: uniquePrefix('xcli'), logLevel: 'warn' }, async (lab) => {
    const sock = lab.router.socket;
    const kernelNs = lab.ns.m; // an idle namespace of the lab: iptables-legacy there touches nothing else
    const times: Record<string, number[]> = { node: [], xtrA: [], xtrPing: [], kernelA: [] };
    const run = (name: string, i: number): void => {
      const addr = `10.250.${(i >> 8) & 255}.${i & 255}`;
      if (name === 'node') times.node.push(timed([node, '-e', '0']));
      else if (name === 'xtrA') times.xtrA.push(timed([node, xtrBin, '--socket', sock, 'iptables', '-A', 'FORWARD', '-s', addr, '-j', 'ACCEPT']));
      else if (name === 'xtrPing') times.xtrPing.push(timed([node, xtrBin, '--socket', sock, 'ping']));
      else times.kernelA.push(timed(['ip', 'netns', 'exec', kernelNs, 'iptables-legacy', '-A', 'FORWARD', '-s', addr, '-j', 'ACCEPT']));
    };
    const order = ['node', 'xtrA', 'xtrPing', 'kernelA'];
    // One warm-up of each (page cache, the router's first save), not counted.
    for (const name of order) run(name, 0), times[name].pop();
    for (let i = 1; i <= a.calls; i++) {
      for (let k = 0; k < order.length; k++) run(order[(i + k) % order.length], i);
    }
    const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
    console.log(`node -e 0            median ${fmtMs(m.node)} ms`);
    console.log(`xtr iptables -A      median ${fmtMs(m.xtrA)} ms`);
    console.log(`xtr ping             median ${fmtMs(m.xtrPing)} ms`);
    console.log(`iptables-legacy -A   median ${fmtMs(m.kernelA)} ms (the kernel's tool, via ip netns exec)`);
    const ratio = m.xtrA / m.node;
    console.log(`ratio_cli_vs_node=${ratio.toFixed(3)} (goal <= 1.5), load ${await loadAverage()}`);
    console.log(`ratio_cli_vs_node=${ratio.toFixed(3)} cli_ms=${fmtMs(m.xtrA)} ping_ms=${fmtMs(m.xtrPing)} node_ms=${fmtMs(m.node)} kernel_ms=${fmtMs(m.kernelA)}`);
  });
}

await main();
