/**
 * A 10,000-line iptables-restore while ping runs through the router every
 * 10 ms (issue 12 §5, "a control plane that never stalls forwarding"): no
 * ping is lost, the restore lands whole, and one refused at line 9,999
 * changes nothing and names the line. The RTT p99 is printed, not asserted
 * (timings belong to `npm run bench:restore`).
 */
import test from 'ava';
import { bigRuleset } from './helpers/big-ruleset.js';
import { sleep, startLab, uniquePrefix, type Lab } from './helpers/netns.js';

const LINES = 10_000;
const PINGS = 600;

let lab: Lab;

test.before(async () => {
  lab = await startLab({ prefix: uniquePrefix('yc'), logLevel: 'warn' });
});

test.after.always(async () => {
  await lab?.stop();
});

async function rules(): Promise<string> {
  const r = await lab.xtr(['iptables-save']);
  // Without the save time and the chains' policy counters (traffic moves them).
  return r.stdout.split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/ \[\d+:\d+\]$/, '')).join('\n');
}

test.serial('10,000-line restores (one accepted, one refused at line 9,999) while ping -i 0.01 runs through the router: no ping lost', async (t) => {
  const ok = bigRuleset(LINES, { variant: 1 });
  const bad = bigRuleset(LINES, { variant: 2, badLine: LINES - 1 });
  // Exactly PINGS requests (no -w, so ping never sends more); -W: after the last one ping waits
  // 10 s, so a late answer still counts as an answer and only a lost one fails the test.
  const ping = lab.background('c', ['ping', '-n', '-i', '0.01', '-c', String(PINGS), '-W', '10', '203.0.113.2']);
  await sleep(300);
  const loaded = await lab.router.cli(['iptables-restore'], ok);
  t.is(loaded.code, 0, loaded.stderr);
  const after = await rules();
  t.true(after.includes('-A FORWARD -d 192.0.2.99/32 -j DROP'), 'the last rule of the file is in place');
  t.is(after.split('\n').filter((l) => l.startsWith('-A ')).length, LINES - 6, 'every rule line of the file is loaded');
  const refused = await lab.router.cli(['iptables-restore'], bad);
  t.is(refused.code, 2, refused.stderr);
  t.regex(refused.stderr, new RegExp(`Error occurred at line: ${LINES - 1}\\b`));
  t.is(await rules(), after, 'the refused restore changed nothing');
  const code = await ping.wait(90_000);
  const out = ping.stdout().toString();
  const sum = /(\d+) packets transmitted, (\d+) received/.exec(out);
  t.truthy(sum, out + ping.stderr());
  const rtts = [...out.matchAll(/icmp_seq=\d+ ttl=\d+ time=([0-9.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  const p = (q: number) => rtts[Math.min(rtts.length - 1, Math.ceil(q * rtts.length) - 1)];
  t.log(`ping through the router during both restores: ${sum![2]}/${sum![1]} answered; RTT p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${rtts[rtts.length - 1]} ms`);
  t.is(code, 0, out);
  t.is(Number(sum![1]), PINGS);
  t.is(Number(sum![2]), PINGS, 'every ping was answered');
});
