/**
 * Rule changes run in slices (router/netfilter/slices.ts, issue 12 §5): the
 * control commands give the event loop its turn while a large rule set is
 * parsed, checked and compiled, and still commit atomically, with the same
 * result and the same errors as the one-piece path.
 */
import test from 'ava';
import { runRestore, runSave } from '../router/netfilter/commands.js';
import { saveState, saveStateSliced } from '../router/netfilter/index.js';
import { RuleSetChanged, runSliced, runSteps, runStepsSliced, type Steps } from '../router/netfilter/slices.js';
import { testEngine } from '../router/netfilter/testkit.js';
import { bigRuleset } from './helpers/big-ruleset.js';

const LINES = 3000;

/** Counts event-loop turns while `body` runs (setImmediate ticks). */
async function turnsDuring<T>(body: () => Promise<T>): Promise<{ value: T; turns: number }> {
  let turns = 0;
  let on = true;
  const tick = () => {
    turns++;
    if (on) setImmediate(tick);
  };
  setImmediate(tick);
  try {
    return { value: await body(), turns };
  } finally {
    on = false;
  }
}

test('the sliced restore lets the event loop run, and ends with what the one-piece restore gives', async (t) => {
  const text = bigRuleset(LINES, { variant: 3 });
  const sliced = await testEngine();
  const { value: r, turns } = await turnsDuring(() => sliced.run('iptables-restore', text));
  t.is(r.status, 0, r.stderr);
  // Thousands of lines cannot fit in one 4 ms slice on any machine this runs on.
  t.true(turns > 3, `event loop turned ${turns} times during the restore`);
  const whole = await testEngine();
  t.is(runRestore(whole.nf, 4, [], text).status, 0);
  t.is((await sliced.run('iptables-save')).stdout, runSave(whole.nf, 4, [], { now: () => new Date(Date.UTC(2026, 0, 1)) }).stdout);
  t.is(await saveStateSliced(sliced.nf), saveState(sliced.nf));
});

test('a sliced restore refused at its next-to-last line changes nothing and names the line, like the one-piece one', async (t) => {
  const e = await testEngine();
  t.is((await e.run('iptables-restore', bigRuleset(LINES, { variant: 1 }))).status, 0);
  const before = (await e.run('iptables-save -c')).stdout;
  const bad = bigRuleset(LINES, { variant: 2, badLine: LINES - 1 });
  const r = await e.run('iptables-restore', bad);
  t.is(r.status, 2);
  t.true(r.stderr.includes(`Error occurred at line: ${LINES - 1}`), r.stderr);
  t.is((await e.run('iptables-save -c')).stdout, before);
  const whole = runRestore(e.nf, 4, [], bad);
  t.is(whole.status, r.status);
  t.is(whole.stderr, r.stderr);
});

test('a change committed by someone else while a sliced restore pauses is not lost: the restore runs again over it', async (t) => {
  const e = await testEngine();
  const text = bigRuleset(LINES, { variant: 5 });
  const restoring = e.run('iptables-restore', text);
  // Between two slices: a change that does not wait its turn (start-up, reload, a test).
  await new Promise((r) => setImmediate(r));
  t.is((await import('../router/netfilter/commands.js')).runIptables(e.nf, 4, ['-t', 'nat', '-A', 'POSTROUTING', '-j', 'ACCEPT']).status, 0);
  t.is((await restoring).status, 0);
  const save = (await e.run('iptables-save')).stdout;
  t.true(save.includes('-A POSTROUTING -j ACCEPT'), 'the nat change survived');
  t.true(save.includes('-A FORWARD -d 192.0.2.99/32 -j DROP'), 'the restore is in place');
});

test('slices: one implementation, two drivers; RuleSetChanged falls back to one piece', async (t) => {
  function* work(n: number): Steps<number> {
    let sum = 0;
    for (let i = 1; i <= n; i++) {
      sum += i;
      yield;
    }
    return sum;
  }
  t.is(runSteps(work(100)), 5050);
  t.is(await runStepsSliced(work(100), 0), 5050);
  let attempts = 0;
  const value = await runSliced(function* (): Steps<string> {
    attempts++;
    yield;
    if (attempts === 1) throw new RuleSetChanged();
    return 'again';
  });
  t.is(value, 'again');
  t.is(attempts, 2);
  await t.throwsAsync(() => runSliced(function* (): Steps<void> {
    yield;
    throw new Error('a real error');
  }), { message: 'a real error' });
});
