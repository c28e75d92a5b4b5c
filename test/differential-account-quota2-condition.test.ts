/**
 * Bad input for ACCOUNT, quota2 and condition against their real parsers:
 * iptables-legacy 1.8.9 with xtables-addons-common's libxt_ACCOUNT.so,
 * libxt_quota2.so and libxt_condition.so, in a throwaway namespace (the
 * kernel here has no xtables-addons modules: test/helpers/addons-parser.ts
 * lets iptables load the parsers anyway, so a rule that parses fails only at
 * the kernel step).
 *
 * Per rule line: an option error must be the same status and the same stderr,
 * byte for byte; a line upstream's parser accepts must be accepted by xtr
 * (or refused by xtr's kernel-side check where the row says so, as the
 * kernel module would), and what `iptables -v` printed for it (the
 * extension's print()) must be what xtr prints. Then the limits through xtr's
 * commands: the 129th ACCOUNT table and over-long names refused cleanly with
 * nothing loaded lost.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { splitLine } from '../router/netfilter/commands.js';
import { testEngine } from '../router/netfilter/testkit.js';
import { addonsIptables, addonsShim, shimProblem } from './helpers/addons-parser.js';

interface Line {
  line: string;
  /** For a line upstream parses: xtr refuses it at its kernel-side check with this message (else it must load). */
  refused?: RegExp;
}

const LINES: Line[] = [
  // ACCOUNT
  { line: 'iptables -A FORWARD -j ACCOUNT' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/8' },
  { line: 'iptables -A FORWARD -j ACCOUNT --tname x' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/8 --tname abcdefghijklmnopqrstuvwxyz123456' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/8 --addr 10.0.0.0/8 --tname x' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/8 --tname x --tname y' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr foo.invalid --tname x' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/33 --tname x' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/-1 --tname x' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr / --tname x' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr "" --tname x' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/8 --tname x --bogus' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/8 --tname abcdefghijklmnopqrstuvwxyz12345' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.1.2.3/255.255.0.0 --tname m1' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.1.2.3 --tname m2' },
  { line: 'iptables -A FORWARD -j ACCOUNT ! --addr 10.2.0.0/16 --tname m3' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.9.9.9/0 --tname m4' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/255.0.255.0 --tname m5' },
  { line: 'iptables -A FORWARD -j ACCOUNT --ad 10.3.0.0/16 --tn m6' },
  // libxtables' numeric forms: short dotted, base-0 parts and prefix lengths; masks need four parts.
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.4/16 --tname n1' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 010.001.0.0/16 --tname n2' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 0x0a.5.0.0/0x10 --tname n3' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.6.0.0/010 --tname n4' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/08 --tname x' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/255.255.0 --tname x' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.256.0.0/16 --tname x' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0.0/8 --tname x' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10..0.0/8 --tname x' },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/7 --tname wide', refused: /largest prefix a table can count is \/8/ },
  { line: 'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/8 --tname ""', refused: /empty --tname/ },
  // quota2
  { line: 'iptables -A FORWARD -m quota2 --name a --name b' },
  { line: 'iptables -A FORWARD -m quota2 --quota 1 --quota 2' },
  { line: 'iptables -A FORWARD -m quota2 --quota 1x' },
  { line: 'iptables -A FORWARD -m quota2 --quota 08' },
  { line: 'iptables -A FORWARD -m quota2 ! --name a' },
  { line: 'iptables -A FORWARD -m quota2 ! --grow' },
  { line: 'iptables -A FORWARD -m quota2 ! --packets' },
  { line: 'iptables -A FORWARD -m quota2 ! --no-change' },
  { line: 'iptables -A FORWARD -m quota2 --grow --grow' },
  { line: 'iptables -A FORWARD -m quota2 --packets --packets' },
  { line: 'iptables -A FORWARD -m quota2 --no-change --no-change' },
  { line: 'iptables -A FORWARD -m quota2 --quota' },
  { line: 'iptables -A FORWARD -m quota2 --nosuch' },
  { line: 'iptables -A FORWARD -m quota2' },
  { line: 'iptables -A FORWARD -m quota2 --quota -1' },
  { line: 'iptables -A FORWARD -m quota2 --quota 0x10 --name hex' },
  { line: 'iptables -A FORWARD -m quota2 --quota 010 --grow --packets --no-change' },
  { line: 'iptables -A FORWARD -m quota2 ! --quota 5 --name inv' },
  { line: 'iptables -A FORWARD -m quota2 --quota 99999999999999999999999' },
  { line: 'iptables -A FORWARD -m quota2 --name abcdefghijklmnopqrst --quota 9' },
  { line: 'iptables -A FORWARD -m quota2 --name .x', refused: /xt_quota\.3: illegal name/ },
  { line: 'iptables -A FORWARD -m quota2 --name a/b', refused: /xt_quota\.3: illegal name/ },
  { line: 'ip6tables -A FORWARD -m quota2 --quota 1x' },
  { line: 'ip6tables -A FORWARD -m quota2 --name six --quota 7' },
  // condition
  { line: 'iptables -A FORWARD -m condition' },
  { line: 'iptables -A FORWARD -m condition --condition a --condition b' },
  { line: 'iptables -A FORWARD -m condition --condition abcdefghijklmnopqrstuvwxyz12345' },
  { line: 'iptables -A FORWARD -m condition --condition' },
  { line: 'iptables -A FORWARD -m condition --condition abcdefghijklmnopqrstuvwxyz1234' },
  { line: 'iptables -A FORWARD -m condition ! --condition web' },
  { line: 'iptables -A FORWARD -m condition --condition "a b"' },
  { line: 'iptables -A FORWARD -m condition --condition ""', refused: /name not allowed or too long: ""/ },
  { line: 'iptables -A FORWARD -m condition --condition ..', refused: /name not allowed or too long: "\.\."/ },
  { line: 'iptables -A FORWARD -m condition --condition a/b', refused: /name not allowed or too long: "a\/b"/ },
  { line: 'ip6tables -A FORWARD -m condition --condition abcdefghijklmnopqrstuvwxyz12345' },
  { line: 'ip6tables -A FORWARD -m condition --condition six' },
];

const NO_MODULE = 'iptables: No chain/target/match by that name.\n';

test('option errors and print text as libxt_ACCOUNT/libxt_quota2/libxt_condition in iptables-legacy 1.8.9', async (t) => {
  if (!addonsShim()) {
    t.fail(`not run: ${shimProblem}`);
    return;
  }
  const ns = `xw2b-parse-${process.pid}`;
  t.is(spawnSync('ip', ['netns', 'add', ns]).status, 0);
  const norm = (s: string) => s.replace(/\(legacy\)/g, '(xtr)');
  try {
    const e = await testEngine();
    for (const { line, refused } of LINES) {
      const words = splitLine(line, 0);
      const family = words[0] === 'ip6tables' ? 6 : 4;
      const k = addonsIptables(ns, family, ['-v', ...words.slice(1)]);
      const x = await e.run(line);
      if (k.status === 2) {
        t.is(x.status, 2, `${line}: status (xtr said ${x.stderr})`);
        t.is(x.stderr, norm(k.stderr), `${line}: stderr`);
        continue;
      }
      // Upstream's parser took it; only the missing kernel module refused it.
      t.is(k.status, 1, `${line}: ${k.stderr}`);
      t.is(k.stderr.replace(/ip6tables/, 'iptables'), NO_MODULE.replace(/ip6tables/, 'iptables'), line);
      if (refused) {
        t.is(x.status, 1, `${line}: xtr's kernel-side check refuses it`);
        t.regex(x.stderr, refused, line);
        continue;
      }
      t.is(x.status, 0, `${line}: xtr loads it (${x.stderr})`);
      // `iptables -v -A` printed the rule: its last column is the extension's print(), as xtr's -L prints it.
      const printed = k.stdout.trim().split('\n').pop()!.replace(/^.*-> \S+\s+/, '');
      const listed = (await e.run(`${words[0]} -L FORWARD -n`)).stdout.trim().split('\n').pop()!;
      t.true(listed.endsWith(printed.trim()) || listed.trimEnd().endsWith(printed.trim()), `${line}: xtr lists ${JSON.stringify(listed)}, upstream printed ${JSON.stringify(printed)}`);
    }
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
});

test('limits refused cleanly, nothing loaded lost: the 129th ACCOUNT table, over-long names, a mismatched table', async (t) => {
  const e = await testEngine();
  const restore = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]'];
  for (let i = 0; i < 128; i++) restore.push(`-A FORWARD -j ACCOUNT --addr 10.${i}.0.0/16 --tname t${i}`);
  restore.push('COMMIT', '');
  t.is((await e.run('iptables-restore', restore.join('\n'))).status, 0);
  const before = (await e.run('iptables-save')).stdout;
  const names = (await e.run('iptables -S FORWARD')).stdout;
  const refusals: [string, number, RegExp][] = [
    ['iptables -A FORWARD -j ACCOUNT --addr 10.200.0.0/16 --tname t128', 1, /^iptables: Invalid argument\. Run `dmesg' for more information\.\nACCOUNT: No free table slot found \(max: 128\)/],
    ['iptables -A FORWARD -j ACCOUNT --addr 10.200.0.0/16 --tname abcdefghijklmnopqrstuvwxyz123456', 2, /Maximum table name length 31 for --tname/],
    ['iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/24 --tname t0', 1, /Table t0 found, but IP\/netmask mismatch\. IP\/netmask found: 10\.0\.0\.0\/255\.255\.0\.0/],
    ['iptables -A FORWARD -m condition --condition abcdefghijklmnopqrstuvwxyz12345', 2, /File name too long/],
  ];
  for (const [line, status, msg] of refusals) {
    const r = await e.run(line);
    t.is(r.status, status, line);
    t.regex(r.stderr, msg, line);
  }
  // A whole restore with one table too many is refused as a whole.
  const more = restore.slice(0, -2).concat('-A FORWARD -j ACCOUNT --addr 10.201.0.0/16 --tname extra', 'COMMIT', '');
  more.splice(4, 128);
  more.splice(4, 0, ...Array.from({ length: 128 }, (_, i) => `-A FORWARD -j ACCOUNT --addr 10.${i}.0.0/24 --tname n${i}`));
  const r = await e.run('iptables-restore', more.join('\n'));
  t.is(r.status, 1);
  t.regex(r.stderr, /No free table slot found/);
  t.is((await e.run('iptables-save')).stdout, before);
  t.is((await e.run('iptables -S FORWARD')).stdout, names);
  t.is(e.nf.state.keys('ACCOUNT:').length, 128);
});
