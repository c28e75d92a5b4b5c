/**
 * Bad input and wrong placement for ECHO, SYSRQ and STEAL against the real
 * userspace parsers: iptables-legacy 1.8.9 with xtables-addons-common's
 * libxt_ECHO.so and libxt_SYSRQ.so in a throwaway namespace (the kernel has no
 * xtables-addons module: test/helpers/addons-parser.ts lets iptables load the
 * parsers, so a line that parses fails only at the kernel step).
 *
 * Per line: a parse error must be the same status and the same stderr, byte
 * for byte; a line upstream's parser accepts must load in xtr, or be refused
 * by xtr's kernel-side check (table, protocol: what the kernel module would
 * log) with the kernel's own first line, which is taken from the real kernel
 * refusing a mainline target in the same namespace.
 *
 * STEAL left xtables-addons in 2.4 and Debian ships no libxt_STEAL.so; its
 * parser had exactly the shape of libxt_ECHO's (an old-style parse that takes
 * no option, upstream v1.41/v2.3), so xtr's STEAL is held to what the real
 * libxt_ECHO answers for the same words.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { splitLine } from '../router/netfilter/commands.js';
import { testEngine } from '../router/netfilter/testkit.js';
import { addonsIptables, addonsShim, shimProblem } from './helpers/addons-parser.js';

interface Line {
  line: string;
  /** Upstream's parser takes it; xtr refuses it at its kernel-side check with this dmesg line. */
  refused?: string;
}

const WORDS = [
  '',
  ' --foo',
  ' ! --foo',
  ' --foo=1',
  ' -z',
  ' --foo --bar -s 10.0.0.1',
  ' x',
  ' --dport 5',
  ' -j ACCEPT',
  ' !',
  ' --help-me',
];

function lines(cmd: string, target: string, head: string): Line[] {
  return WORDS.map((w) => ({ line: `${cmd} ${head} -j ${target}${w}` }));
}

const LINES: Line[] = [
  ...lines('iptables', 'ECHO', '-A INPUT -p udp'),
  ...lines('ip6tables', 'ECHO', '-A INPUT -p udp'),
  ...lines('iptables', 'SYSRQ', '-A INPUT -p udp'),
  ...lines('ip6tables', 'SYSRQ', '-A INPUT -p udplite'),
  { line: 'iptables -A INPUT --foo -p udp -j ECHO' },
  { line: 'iptables -A INPUT -p udp -m udp --dport 7 -j ECHO --sport 5' },
  { line: 'iptables -A INPUT -p udp -j ECHO --sport 5' },
  { line: 'iptables -A INPUT -p udp -j SYSRQ --password secret' },
  // Placement: the parser takes these; the kernel module refuses them.
  { line: 'iptables -t mangle -A PREROUTING -p udp -j ECHO', refused: 'x_tables: ip_tables: ECHO target: only valid in filter table, not mangle' },
  { line: 'ip6tables -t raw -A OUTPUT -p udp -j ECHO', refused: 'x_tables: ip6_tables: ECHO target: only valid in filter table, not raw' },
  { line: 'iptables -A INPUT -j ECHO', refused: 'x_tables: ip_tables: ECHO target: only valid for protocol 17' },
  { line: 'iptables -A INPUT -p tcp -j ECHO --foo', refused: 'x_tables: ip_tables: ECHO target: only valid for protocol 17' },
  { line: 'ip6tables -A INPUT ! -p udp -j ECHO', refused: 'x_tables: ip6_tables: ECHO target: only valid for protocol 17' },
  { line: 'iptables -A INPUT -j SYSRQ', refused: 'xt_SYSRQ: only available for UDP and UDP-Lite' },
  { line: 'iptables -A INPUT ! -p udp -j SYSRQ', refused: 'xt_SYSRQ: only available for UDP and UDP-Lite' },
  { line: 'ip6tables -A INPUT -p tcp -j SYSRQ', refused: 'xt_SYSRQ: only available for UDP and UDP-Lite' },
  // Any table and chain is fine for SYSRQ.
  { line: 'iptables -t mangle -A POSTROUTING -p udp -j SYSRQ' },
  { line: 'ip6tables -t raw -A PREROUTING -p udp -j SYSRQ' },
];

const NO_MODULE = (cmd: string) => `${cmd}: No chain/target/match by that name.\n`;

function withShim(t: { fail: (m: string) => void }): boolean {
  if (addonsShim()) return true;
  t.fail(`not run: ${shimProblem}`);
  return false;
}

test('ECHO and SYSRQ: option errors, stray words and placement as libxt_ECHO/libxt_SYSRQ in iptables-legacy 1.8.9 and the kernel say', async (t) => {
  if (!withShim(t)) return;
  const ns = `xw1b-parse-${process.pid}`;
  t.is(spawnSync('ip', ['netns', 'add', ns]).status, 0);
  const norm = (s: string) => s.replace(/\(legacy\)/g, '(xtr)');
  try {
    // The kernel's own words for a rule its checkentry refuses (EINVAL), from a mainline target.
    const einval: Record<string, string> = {};
    for (const cmd of ['iptables', 'ip6tables']) {
      const r = spawnSync('ip', ['netns', 'exec', ns, `${cmd}-legacy`, '-t', 'mangle', '-A', 'INPUT', '-j', 'REJECT'], { encoding: 'utf8' });
      t.is(r.status, 1);
      einval[cmd] = r.stderr;
    }
    t.is(einval.iptables, "iptables: Invalid argument. Run `dmesg' for more information.\n");
    for (const { line, refused } of LINES) {
      const e = await testEngine();
      const words = splitLine(line, 0);
      const cmd = words[0];
      const k = addonsIptables(ns, cmd === 'ip6tables' ? 6 : 4, ['-v', ...words.slice(1)]);
      const x = await e.run(line);
      if (k.status === 2) {
        t.is(x.status, 2, `${line}: status (xtr said ${x.stderr})`);
        t.is(x.stderr, norm(k.stderr), `${line}: stderr`);
        continue;
      }
      t.is(k.status, 1, `${line}: upstream's parser took it (${k.stderr})`);
      t.is(k.stderr, NO_MODULE(cmd), line);
      if (refused) {
        t.is(x.status, 1, `${line}: xtr's kernel-side check refuses it`);
        t.is(x.stderr, `${einval[cmd]}${refused}\n`, line);
        continue;
      }
      t.is(x.status, 0, `${line}: xtr loads it (${x.stderr})`);
      // What `iptables -v -A` printed as the rule's source and destination, xtr lists too (no target text for these).
      const printed = k.stdout.trim().split('\n').pop()!.trim().split(/\s+/);
      const listed = (await e.run(`${cmd} -L ${words[words.indexOf('-A') + 1]} -n${line.includes(' -t ') ? ` -t ${words[words.indexOf('-t') + 1]}` : ''}`)).stdout.trim().split('\n').pop()!.trim().split(/\s+/);
      t.is(listed[0], printed[0], `${line}: target`);
      t.true(listed.includes(printed[printed.indexOf('->') - 1]), `${line}: source ${printed.join(' ')} vs ${listed.join(' ')}`);
    }
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
});

test('STEAL answers every option word as the real libxt_ECHO does (the same old-style parser); any table, no -p needed', async (t) => {
  if (!withShim(t)) return;
  const ns = `xw1b-steal-${process.pid}`;
  t.is(spawnSync('ip', ['netns', 'add', ns]).status, 0);
  const norm = (s: string) => s.replace(/\(legacy\)/g, '(xtr)');
  try {
    for (const cmd of ['iptables', 'ip6tables'] as const) {
      for (const w of WORDS) {
        const e = await testEngine();
        const k = addonsIptables(ns, cmd === 'ip6tables' ? 6 : 4, ['-A', 'INPUT', '-p', 'udp', '-j', 'ECHO', ...splitLine(w, 0)]);
        const x = await e.run(`${cmd} -A INPUT -p udp -j STEAL${w}`);
        if (k.status === 2) {
          t.is(x.status, 2, `STEAL${w}`);
          t.is(x.stderr, norm(k.stderr), `STEAL${w}`);
        } else {
          t.is(x.status, 0, `STEAL${w}: ${x.stderr}`);
        }
      }
      for (const place of ['-t raw -A PREROUTING', '-t mangle -A FORWARD', '-t nat -A OUTPUT', '-A OUTPUT', '-t security -A INPUT']) {
        const e = await testEngine();
        const r = await e.run(`${cmd} ${place} -j STEAL`);
        t.is(r.status, 0, `${cmd} ${place}: ${r.stderr}`);
      }
    }
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
});
