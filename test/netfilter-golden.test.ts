/**
 * Golden files: test/golden/netfilter/NAME.rules (iptables/ip6tables command
 * lines) -> NAME.save, the iptables-save + ip6tables-save output the kernel's
 * iptables-legacy produced for the same lines (regen.sh), timestamps as
 * <TIME>. xtr must print the same text, and save -> restore -> save must be
 * stable (in the running engine, and across a saveState/restoreState restart).
 */
import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { splitLine } from '../router/netfilter/commands.js';
import { testEngine, type TestEngine } from '../router/netfilter/testkit.js';
import { restoreState, saveState } from '../router/netfilter/index.js';

const DIR = join(import.meta.dirname, 'golden', 'netfilter');
const normalise = (s: string) => s.replace(/ on .*$/gm, ' on <TIME>');

async function saveBoth(e: TestEngine): Promise<string> {
  return normalise((await e.run('iptables-save')).stdout + (await e.run('ip6tables-save')).stdout);
}

/** Extensions a rules file uses (-m NAME / -j NAME) that this tree has no module for yet. */
function missingExtensions(e: TestEngine, lines: string[]): string[] {
  const missing = new Set<string>();
  for (const l of lines) {
    const words = splitLine(l, 0);
    const family = words[0] === 'ip6tables' ? 6 : 4;
    words.forEach((w, i) => {
      const next = words[i + 1];
      if (w === '-m' && next && !e.nf.registry.match(next, family)) missing.add(`match ${next}`);
      if (w === '-j' && next && /^[A-Z]+$/.test(next) && !['ACCEPT', 'DROP', 'RETURN'].includes(next) && !e.nf.registry.target(next, family)) missing.add(`target ${next}`);
    });
  }
  return [...missing];
}

for (const file of readdirSync(DIR).filter((f) => f.endsWith('.rules')).sort()) {
  const name = file.slice(0, -'.rules'.length);
  test(`golden ${name}: rules in -> iptables-save out, as the kernel printed it`, async (t) => {
    const lines = readFileSync(join(DIR, file), 'utf8').split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
    const expected = readFileSync(join(DIR, `${name}.save`), 'utf8');
    const e = await testEngine();
    const missing = missingExtensions(e, lines);
    if (missing.length > 0) {
      // Not a pass: the file is reported as not run until those modules exist.
      t.log(`needs ${missing.join(', ')}`);
      t.fail(`golden ${name} uses extensions this tree does not have: ${missing.join(', ')}`);
      return;
    }
    for (const l of lines) {
      const r = await e.run(l);
      t.is(r.status, 0, `${l}: ${r.stderr}`);
    }
    const first = await saveBoth(e);
    t.is(first, expected);

    // Round trip: restore what was saved (with counters), save again: the same text.
    const v4 = (await e.run('iptables-save -c')).stdout;
    const v6 = (await e.run('ip6tables-save -c')).stdout;
    if (v4) t.is((await e.run('iptables-restore -c', v4)).status, 0);
    if (v6) t.is((await e.run('ip6tables-restore -c', v6)).status, 0);
    t.is(normalise((await e.run('iptables-save -c')).stdout + (await e.run('ip6tables-save -c')).stdout), normalise(v4 + v6));

    // And through a restart: saveState -> a fresh engine -> restoreState keeps text and table order.
    const fresh = await testEngine();
    restoreState(fresh.nf, saveState(e.nf));
    t.is(normalise((await fresh.run('iptables-save -c')).stdout + (await fresh.run('ip6tables-save -c')).stdout), normalise(v4 + v6));
  });
}
