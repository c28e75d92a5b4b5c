/**
 * bench:rules end to end at its smallest size (1 round of 1 s per path, the
 * engine-only part at 50 ms per figure): the lab, both kernel routers and the
 * seed-001 rule set on xtr and on iptables-nft come up, every path delivers,
 * the benchmark's own checks pass (same seed rule set on both routers, the
 * ACCEPT rule counted what the receiver got), the last line is the
 * key=value line scripts read, and no namespace is left behind. No figure is
 * judged (performance claims live in the benchmark's output, not in tests).
 */
import test from 'ava';
import { join } from 'node:path';
import { exec, REPO_ROOT } from './helpers/netns.js';

const KEYS = [
  'xtr_pps_0',
  'xtr_pps_100',
  'xtr_pps_10000',
  'ratio_100',
  'ratio_10000',
  'ratio_10000_mixed',
  'cpu_ratio_100',
  'cpu_ratio_10000',
  'kernel_stateful_pps',
  'xtr_stateful_pps',
  'ratio_vs_kernel_stateful',
  'xtr_stateful_paced_pps',
  'paced_ratio_vs_kernel_stateful',
  'kernel_pps',
  'kernel_stateful_vs_bare',
  'gen_pps',
  'engine_ratio_100',
  'engine_ratio_10000',
  'engine_ratio_10000_mixed',
  'engine_linear_ratio_10000',
];

test('bench:rules measures every path and ends with the key=value line', async (t) => {
  t.timeout(240_000);
  const bench = join(REPO_ROOT, 'dist', 'bench', 'rules.js');
  const r = await exec([process.execPath, bench, '--rounds', '1', '--duration', '1', '--engine-seconds', '0.05'], { timeoutMs: 220_000 });
  t.is(r.code, 0, r.stderr + r.stdout);
  const last = r.stdout.trimEnd().split('\n').at(-1)!;
  t.regex(last, /^([a-z0-9_]+=[0-9.]+)( [a-z0-9_]+=[0-9.]+)*$/, 'one line of key=number pairs');
  const kv = Object.fromEntries(last.split(' ').map((p) => p.split('=') as [string, string]));
  for (const key of KEYS) {
    t.true(key in kv, `${key} missing from: ${last}`);
    t.true(Number.isFinite(Number(kv[key])), `${key}=${kv[key]} is not a number`);
    // The linear-scan reference may round to 0.0000; every other figure needs delivered packets.
    if (key !== 'engine_linear_ratio_10000') t.true(Number(kv[key]) > 0, `${key}=${kv[key]}: that path delivered nothing`);
  }
  t.is(kv.payload, '64');
  for (const label of ['kernel, seed 001', 'xtr, seed 001', 'xtr, 0 rules', 'xtr, 100 rules', 'xtr, 10,000 rules']) {
    t.true(r.stdout.includes(`\n${label} `), `no "${label}" row`);
  }
  t.regex(r.stdout, /the same rule set in both routers/);
  // Its namespaces are gone again.
  const prefix = /namespaces (xb[0-9a-f]{4}-)\*/.exec(r.stdout)?.[1];
  t.truthy(prefix, 'the benchmark names its namespace prefix');
  const after = (await exec(['ip', 'netns', 'list'])).stdout;
  t.false(after.split('\n').some((l) => l.startsWith(prefix!)), after);
});
