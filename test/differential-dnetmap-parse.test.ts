/**
 * DNETMAP's option errors against the real userspace parser, where there is
 * one. Debian's xtables-addons-common 3.23 ships libxt_DNETMAP.so as an empty
 * stub (no symbols, like libxt_length2.so and libxt_iface.so), so
 * iptables-legacy cannot load the target at all and there is nothing to
 * compare; libxt_RAWNAT left xtables-addons in 2.4 and is not shipped. This
 * file checks that situation is still the one docs/compat.md describes (the
 * stub: iptables answers "Couldn't load target") and, the day the library
 * carries a parser, compares every line's status and whole stderr with
 * xtr's (through the revision shim, test/helpers/addons-parser.ts).
 * Until then the words are libxt_DNETMAP.c's, checked in
 * test/modules-dnetmap.test.ts.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { addonsIptables, addonsShim, shimProblem } from './helpers/addons-parser.js';
import { testEngine } from '../router/netfilter/testkit.js';
import { splitLine } from '../router/netfilter/commands.js';

const LIB = '/usr/lib/x86_64-linux-gnu/xtables/libxt_DNETMAP.so';

const LINES = [
  '--prefix 20.0.0.0/8',
  '--prefix 20.0.0.0/0',
  '--prefix 20.0.0.1/24',
  '--prefix 20.0.0/24',
  '--prefix 20.0.0.0/33',
  '--prefix 20.0.0.0/24 --prefix 20.0.0.0/24',
  '! --prefix 20.0.0.0/24',
  '--reuse --reuse',
  '--ttl 1 --ttl 2',
  '--prefix 20.0.0.0/26 --reuse --static --persistent --ttl 200',
];

/** True when the library exports a parser (any dynamic symbol besides the toolchain's weak ones). */
function hasParser(): boolean {
  const nm = spawnSync('nm', ['-D', '--defined-only', LIB], { encoding: 'utf8' });
  return nm.status === 0 && nm.stdout.split('\n').some((l) => / T /.test(l));
}

test('libxt_DNETMAP: the real parser where Debian ships one, else the stub documented in docs/compat.md', async (t) => {
  if (spawnSync('test', ['-e', LIB]).status !== 0) return t.fail(`${LIB} missing (xtables-addons-common; scripts/ensure-setup installs it)`);
  if (!addonsShim()) return t.fail(`cannot run iptables-legacy with the shim: ${shimProblem}`);
  const ns = `xw5b-dnp${process.pid}`;
  spawnSync('ip', ['netns', 'add', ns]);
  try {
    const parser = hasParser();
    const engine = await testEngine();
    for (const line of LINES) {
      const words = ['-t', 'nat', '-A', 'POSTROUTING', '-j', 'DNETMAP', ...splitLine(line, 0)];
      const real = addonsIptables(ns, 4, words);
      if (!parser) {
        // The stub: iptables cannot load the target, so its options are unknown to it.
        t.is(real.status, 2, line);
        t.regex(real.stderr, /^iptables v1\.8\.9 \(legacy\): (Couldn't load target `DNETMAP'|unknown option "--(prefix|reuse|ttl)")/, line);
        continue;
      }
      const ours = await engine.run(`iptables ${words.join(' ')}`);
      if (real.status === 2) {
        t.is(ours.status, 2, line);
        t.is(ours.stderr, real.stderr.replace(/\(legacy\)/g, '(xtr)'), line);
      } else {
        t.regex(real.stderr, /No chain\/target\/match by that name/, line);
        t.is(ours.status, 0, `${line}: ${ours.stderr}`);
      }
    }
    if (!parser) t.log(`${LIB} is an empty stub: no reference parser to compare with (see docs/compat.md)`);
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
});
