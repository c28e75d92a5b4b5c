/**
 * Issue 12, durable changes: xtr is killed with SIGKILL right after each
 * round of confirmed changes (rules through iptables/ip6tables/-restore,
 * recent entries through `proc write`) and started again on the same
 * stateDir: every confirmed change is there. State learned from traffic
 * (a recent list filled by forwarded pings) survives a SIGKILL taken well
 * after the documented save interval (netfilter.stateSaveIntervalMs).
 */
import test from 'ava';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { startLab, startRouter, sleep, type RouterProcess } from './helpers/netns.js';

const ROUNDS = 6;
const PER_ROUND = 4;
const INTERVAL_MS = 300;

test.serial('SIGKILL right after confirmed changes loses none of them; traffic-learned state survives past the save interval', async (t) => {
  t.timeout(240_000);
  const lab = await startLab({
    prefix: 'xx1-d',
    patch: (doc) => {
      doc.netfilter = { ...((doc.netfilter as object) ?? {}), stateSaveIntervalMs: INTERVAL_MS };
    },
  });
  const restarted: RouterProcess[] = [];
  try {
    let router: RouterProcess = lab.router;
    const socket = router.socket;
    const restart = async () => {
      // SIGKILL: no SIGTERM handler runs, only what is already on disk survives.
      await router.proc.kill('SIGKILL');
      router = await startRouter({ netns: lab.ns.r, config: lab.config, socket });
      restarted.push(router);
    };
    const ok = async (args: string[], input: string | null = null) => {
      const r = await router.xtr(args, input);
      t.is(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    };
    const expectRules: string[] = [];
    const expectRules6: string[] = [];
    const expectRecent: string[] = [];
    await ok(['iptables', '-A', 'FORWARD', '-m', 'recent', '--name', 'xx1conf', '--rcheck', '-j', 'ACCEPT']);
    expectRules.push('-A FORWARD -m recent --rcheck --name xx1conf --mask 255.255.255.255 --rsource -j ACCEPT');
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < PER_ROUND; i++) {
        const n = round * PER_ROUND + i;
        switch (i % 4) {
          case 0:
            await ok(['iptables', '-A', 'FORWARD', '-p', 'tcp', '--dport', String(1000 + n), '-j', 'DROP']);
            expectRules.push(`-A FORWARD -p tcp -m tcp --dport ${1000 + n} -j DROP`);
            break;
          case 1:
            await ok(['ip6tables', '-A', 'FORWARD', '-p', 'udp', '--dport', String(2000 + n), '-j', 'DROP']);
            expectRules6.push(`-A FORWARD -p udp -m udp --dport ${2000 + n} -j DROP`);
            break;
          case 2:
            await ok(['iptables-restore', '--noflush'], `*filter\n-A FORWARD -p udp --dport ${3000 + n} -j REJECT\nCOMMIT\n`);
            expectRules.push(`-A FORWARD -p udp -m udp --dport ${3000 + n} -j REJECT --reject-with icmp-port-unreachable`);
            break;
          default:
            await ok(['proc', 'write', 'net/xt_recent/xx1conf', `+10.77.0.${n + 1}`]);
            expectRecent.push(`10.77.0.${n + 1}`);
        }
      }
      await restart();
      const rules = (await router.xtr(['iptables', '-S', 'FORWARD'])).stdout.split('\n');
      for (const r of expectRules) t.true(rules.includes(r), `round ${round}: lost ${r}\n${rules.join('\n')}`);
      const rules6 = (await router.xtr(['ip6tables', '-S', 'FORWARD'])).stdout.split('\n');
      for (const r of expectRules6) t.true(rules6.includes(r), `round ${round}: lost ${r}`);
      const recent = (await router.xtr(['proc', 'cat', 'net/xt_recent/xx1conf'])).stdout;
      for (const a of expectRecent) t.regex(recent, new RegExp(`src=${a.replace(/\./g, '\\.')} `), `round ${round}: lost recent ${a}`);
    }
    t.is(expectRules.length + expectRules6.length + expectRecent.length, 1 + ROUNDS * PER_ROUND);

    // The state file is root-only.
    const stateDir = lab.config.stateDir as string;
    t.is(statSync(join(stateDir, 'netfilter.json')).mode & 0o777, 0o600);

    // Traffic-learned: forwarded pings fill a recent list; no control command touches it.
    await ok(['iptables', '-I', 'FORWARD', '-p', 'icmp', '-m', 'recent', '--name', 'xx1learn', '--set']);
    await restart(); // the rule itself is confirmed; from here on only traffic changes the list
    await lab.run('c', ['ping', '-c', '2', '-i', '0.2', '-W', '2', '203.0.113.2']);
    const before = (await router.xtr(['proc', 'cat', 'net/xt_recent/xx1learn'])).stdout;
    t.regex(before, /src=198\.51\.100\.\d+ /);
    // Ten intervals: the documented bound is one.
    await sleep(INTERVAL_MS * 10);
    await restart();
    const after = (await router.xtr(['proc', 'cat', 'net/xt_recent/xx1learn'])).stdout;
    t.regex(after, /src=198\.51\.100\.\d+ /, 'traffic-learned entry older than the save interval was lost');
  } finally {
    for (const r of restarted) await r.stop();
    await lab.stop();
  }
});
