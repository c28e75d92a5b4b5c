/**
 * bench:forward end to end at its smallest size (1 round of 1 s per path):
 * the three topologies come up, traffic flows on each, the summary line
 * carries every key scripts read, and nothing is left behind. No figure is
 * judged here (performance claims live in the benchmark's output, not in
 * tests); only that each path delivered packets at all.
 */
import test from 'ava';
import { join } from 'node:path';
import { exec, REPO_ROOT } from './helpers/netns.js';

test('bench:forward runs all three paths and ends with the key=value line', async (t) => {
  const bench = join(REPO_ROOT, 'dist', 'bench', 'forward.js');
  const r = await exec([process.execPath, bench, '--rounds', '1', '--duration', '1'], { timeoutMs: 110_000 });
  t.is(r.code, 0, r.stderr + r.stdout);
  const last = r.stdout.trimEnd().split('\n').at(-1)!;
  const kv = Object.fromEntries(last.split(' ').map((p) => p.split('=') as [string, string]));
  for (const key of ['xtr_pps', 'kernel_pps', 'ratio', 'gen_pps', 'xtr_pps_1400', 'kernel_pps_1400', 'ratio_1400', 'gen_pps_1400', 'xtr_paced_pps', 'paced_ratio']) {
    t.true(key in kv, `${key} missing from: ${last}`);
    t.true(Number(kv[key]) > 0, `${key}=${kv[key]}: that path delivered nothing`);
  }
  t.regex(r.stdout, /generator \(1 veth\)\s+64 B/);
  t.regex(r.stdout, /kernel forwarding\s+1400 B/);
  t.regex(r.stdout, /xtr \(lab, tun\)\s+64 B/);
  t.regex(r.stdout, /xtr paced to kernel\s+1400 B/);
  // Its namespaces are gone again.
  const prefix = /namespaces (x[a-z][0-9a-f]{4}-)\*/.exec(r.stdout)?.[1];
  t.truthy(prefix, 'the benchmark names its namespace prefix');
  const after = (await exec(['ip', 'netns', 'list'])).stdout;
  t.false(after.split('\n').some((l) => l.startsWith(prefix!)), after);
});
