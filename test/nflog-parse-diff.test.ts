/**
 * NFLOG option parsing against iptables-legacy 1.8.9 in a throwaway
 * namespace (as test/nat-parse-diff does): for each command line the exit
 * status and the whole stderr (libxt_NFLOG's --nflog-range warning included)
 * must agree, and after every line `-S` and `-L` (numeric and not) of the
 * loaded rules must be the same, so a refused line loses nothing already
 * loaded. The kernel accepts NFLOG rules in a namespace without a listener.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { splitLine } from '../router/netfilter/commands.js';
import { testEngine } from '../router/netfilter/testkit.js';
import { uniquePrefix } from './helpers/netns.js';

function unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  const probe = spawnSync('iptables-legacy', ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0 || !/v1\.8\.9/.test(probe.stdout)) return 'iptables-legacy 1.8.9 not installed';
  return null;
}
const why = unavailable();

const ns = `${uniquePrefix('ye')}np`;
const kernel = (words: string[]) => {
  const [base, ...suffix] = words[0].split('-');
  const tool = [`${base}-legacy`, ...suffix].join('-');
  const r = spawnSync('ip', ['netns', 'exec', ns, tool, ...words.slice(1)], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
};
const norm = (s: string) => s.replace(/\(legacy\)/g, '(xtr)');

const a = (n: number, c = 'a') => c.repeat(n);

const V4 = [
  'iptables -A INPUT -j NFLOG',
  'iptables -A INPUT -j NFLOG --nflog-group 5',
  'iptables -A INPUT -j NFLOG --nflog-group 0',
  'iptables -A INPUT -j NFLOG --nflog-group 65535',
  'iptables -A INPUT -j NFLOG --nflog-group 65536',
  'iptables -A INPUT -j NFLOG --nflog-group -1',
  'iptables -A INPUT -j NFLOG --nflog-group 0x10',
  'iptables -A INPUT -j NFLOG --nflog-group 010',
  'iptables -A INPUT -j NFLOG --nflog-group abc',
  "iptables -A INPUT -j NFLOG --nflog-group ''",
  'iptables -A INPUT -j NFLOG --nflog-group 1 --nflog-group 2',
  'iptables -A INPUT -j NFLOG --nflog-group abc --nflog-group 2',
  'iptables -A INPUT -j NFLOG --nflog-group 1 --nflog-group abc',
  'iptables -A INPUT -j NFLOG ! --nflog-group 7',
  'iptables -A INPUT -j NFLOG --nflog-group',
  'iptables -A INPUT -j NFLOG --nflog-g 3',
  'iptables -A INPUT -j NFLOG --nflog-group=9',
  'iptables -A INPUT -j NFLOG --nflog',
  'iptables -A INPUT -j NFLOG --nflog-bogus 1',
  'iptables -A INPUT -j NFLOG --nflog-prefix ping',
  'iptables -A INPUT -j NFLOG --nflog-prefix "syn to 8080: "',
  "iptables -A INPUT -j NFLOG --nflog-prefix ''",
  `iptables -A INPUT -j NFLOG --nflog-prefix ${a(63)}`,
  `iptables -A INPUT -j NFLOG --nflog-prefix ${a(64, 'b')}`,
  `iptables -A INPUT -j NFLOG --nflog-prefix ${a(100, 'c')}`,
  'iptables -A INPUT -j NFLOG --nflog-prefix "a \\"q\\" b"',
  'iptables -A INPUT -j NFLOG --nflog-prefix "it\'s"',
  'iptables -A INPUT -j NFLOG --nflog-prefix "back\\\\slash"',
  'iptables -A INPUT -j NFLOG --nflog-prefix x --nflog-prefix y',
  'iptables -A INPUT -j NFLOG --nflog-size 100',
  'iptables -A INPUT -j NFLOG --nflog-size 0',
  'iptables -A INPUT -j NFLOG --nflog-size 4294967295',
  'iptables -A INPUT -j NFLOG --nflog-size 4294967296',
  'iptables -A INPUT -j NFLOG --nflog-size x',
  'iptables -A INPUT -j NFLOG --nflog-range 100',
  'iptables -A INPUT -j NFLOG --nflog-range 0',
  'iptables -A INPUT -j NFLOG --nflog-range 5 --nflog-size 100',
  'iptables -A INPUT -j NFLOG --nflog-size 100 --nflog-range 5',
  'iptables -A INPUT -j NFLOG --nflog-range 5 --nflog-range 6',
  'iptables -A INPUT -j NFLOG --nflog-range 5 --nflog-group x',
  'iptables -A INPUT -j NFLOG --nflog-range 9999999999',
  'iptables -A INPUT -j NFLOG --nflog-threshold 1',
  'iptables -A INPUT -j NFLOG --nflog-threshold 0',
  'iptables -A INPUT -j NFLOG --nflog-threshold 65535',
  'iptables -A INPUT -j NFLOG --nflog-threshold 65536',
  'iptables -A INPUT -j NFLOG --nflog-threshold 2 --nflog-group 0 --nflog-prefix "a b" --nflog-size 7',
  'iptables -A INPUT -j NFLOG --nflog-size 7 --nflog-threshold 3 --nflog-group 12 --nflog-prefix z',
  'iptables -A FORWARD -p tcp --syn --dport 8080 -j NFLOG --nflog-group 5 --nflog-prefix "syn 8080"',
  'iptables -A OUTPUT -p icmp -j NFLOG --nflog-group 5',
  'iptables -t raw -A PREROUTING -j NFLOG --nflog-group 1',
  'iptables -t mangle -A POSTROUTING -j NFLOG --nflog-group 2',
  'iptables -t nat -A PREROUTING -j NFLOG --nflog-group 3',
  'iptables -A INPUT -j NFLOG --nflog-prefix "x\ny"',
];
const V6 = [
  'ip6tables -A INPUT -j NFLOG --nflog-group 7 --nflog-prefix v6',
  'ip6tables -A FORWARD -p ipv6-icmp -j NFLOG --nflog-size 128',
  'ip6tables -t raw -A OUTPUT -j NFLOG --nflog-range 64',
  'ip6tables -A INPUT -j NFLOG --nflog-group 70000',
];

if (why) {
  test('NFLOG parses as iptables-legacy 1.8.9', (t) => t.fail(`not run: ${why}`));
} else {
  test.serial('NFLOG parses as iptables-legacy 1.8.9: status, stderr, -S and -L after every line', async (t) => {
    spawnSync('ip', ['netns', 'add', ns]);
    try {
      const e = await testEngine();
      for (const line of [...V4, ...V6]) {
        const words = splitLine(line, 0);
        const kr = kernel(words);
        const xr = await e.run(line);
        t.is(xr.status, kr.status, `status: ${line}\n${xr.stderr}`);
        t.is(norm(xr.stderr), norm(kr.stderr), line);
        const cmd = words[0];
        for (const table of ['filter', 'raw', 'mangle', 'nat']) {
          for (const view of [`${cmd} -t ${table} -S`, `${cmd} -t ${table} -L -n`, `${cmd} -t ${table} -L`]) {
            t.is((await e.run(view)).stdout, kernel(splitLine(view, 0)).stdout, `${view} after: ${line}`);
          }
        }
      }
    } finally {
      spawnSync('ip', ['netns', 'del', ns]);
    }
  });
}
