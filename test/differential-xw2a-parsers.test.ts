/**
 * Bad input for TEE, CHECKSUM, IPMARK, PROTO, DHCPMAC, dhcpmac and LOGMARK
 * against their real parsers: iptables-legacy 1.8.9 in a throwaway namespace,
 * with libxt_TEE/libxt_CHECKSUM (iptables') and xtables-addons-common's
 * libxt_IPMARK/PROTO/DHCPMAC/dhcpmac/LOGMARK (the revision shim of
 * test/helpers/addons-parser.ts lets iptables load those without their kernel
 * modules, so a line they accept fails only at the kernel step).
 *
 * Per line: an option error is the same status and the same stderr byte for
 * byte. A line the parser accepts: for TEE and CHECKSUM the kernel module is
 * there, so the kernel's insertion verdict is compared too (accepted: the
 * same `iptables -S` rule text; refused: the same status and first line);
 * for the xtables-addons targets what `iptables -v` printed (the extension's
 * print()) is what xtr lists. Rows marked `differs` are deliberate (the man
 * page's promise where upstream is narrower: docs/compat.md) and say what
 * xtr does instead.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { splitLine } from '../router/netfilter/commands.js';
import { testEngine } from '../router/netfilter/testkit.js';
import { addonsIptables, addonsShim, shimProblem } from './helpers/addons-parser.js';

interface Line {
  line: string;
  /** The kernel has this extension's module: compare insertion, not only parsing. */
  kernel?: boolean;
  /** A deliberate difference: what xtr answers instead (status and a stderr/listing pattern). */
  differs?: { status: number; text: RegExp; why: string };
}

const M4 = 'iptables -t mangle -A PREROUTING';
const M6 = 'ip6tables -t mangle -A PREROUTING';

const LINES: Line[] = [
  // TEE (mainline libxt_TEE + xt_TEE in this kernel)
  ...[
    `${M4} -j TEE`,
    `${M4} -j TEE --gateway 1.2.3.4 --gateway 1.2.3.5`,
    `${M4} -j TEE ! --gateway 1.2.3.4`,
    `${M4} -j TEE --gateway 0.0.0.0`,
    `${M4} -j TEE --gateway 1.2.3.4/24`,
    `${M4} -j TEE --gateway 2001:db8::1`,
    `${M4} -j TEE --gateway 1.2.3.4 --oif eth0`,
    `${M4} -j TEE --gateway 1.2.3.4 --oif abcdefghijklmnop`,
    `${M4} -j TEE --gateway 1.2.3.4 --oif ""`,
    `${M4} -j TEE --gateway 1.2.3.4 --oif a --oif b`,
    `${M4} -j TEE --oif a`,
    `${M4} -j TEE --gateway`,
    `${M4} -j TEE --gateway 1.2.3.4 --bogus`,
    `${M4} -j TEE --gateway=1.2.3.4`,
    'iptables -t filter -A FORWARD -j TEE --gateway 192.0.2.2',
    'iptables -t raw -A OUTPUT -j TEE --gateway 192.0.2.2',
    'iptables -t nat -A POSTROUTING -j TEE --gateway 192.0.2.2',
    `${M6} -j TEE --gateway ::`,
    `${M6} -j TEE --gateway 1.2.3.4`,
    `${M6} -j TEE --gateway 2001:db8:6::2 --oif eth2`,
    `${M6} -j TEE --gateway 2001:0db8:0006:0000:0000:0000:0000:0002`,
  ].map((line) => ({ line, kernel: true })),
  // CHECKSUM (mainline libxt_CHECKSUM + xt_CHECKSUM)
  ...[
    'iptables -t mangle -A POSTROUTING -j CHECKSUM',
    'iptables -t mangle -A POSTROUTING -j CHECKSUM --checksum-fill --checksum-fill',
    'iptables -t mangle -A POSTROUTING -j CHECKSUM ! --checksum-fill',
    'iptables -t mangle -A POSTROUTING -j CHECKSUM --checksum-fill=1',
    'iptables -t mangle -A POSTROUTING -j CHECKSUM --checksum-fill x',
    'iptables -t filter -A FORWARD -p udp -j CHECKSUM --checksum-fill',
    'iptables -t raw -A PREROUTING -p udp -j CHECKSUM --checksum-fill',
    'iptables -t mangle -A POSTROUTING -p udp -j CHECKSUM --checksum-fill',
    'iptables -t mangle -A FORWARD -j CHECKSUM --checksum-fill',
    'ip6tables -t mangle -A OUTPUT -p udp -j CHECKSUM --checksum-fill',
  ].map((line) => ({ line, kernel: true })),
  // IPMARK
  { line: `${M4} -j IPMARK` },
  { line: `${M4} -j IPMARK --addr foo` },
  { line: `${M4} -j IPMARK --addr src --addr dst` },
  { line: `${M4} -j IPMARK --addr src ! --addr dst` },
  { line: `${M4} -j IPMARK ! --addr src` },
  { line: `${M4} -j IPMARK --addr foo --addr dst` },
  { line: `${M4} -j IPMARK --addr src --and-mask 0x1ffffffff` },
  { line: `${M4} -j IPMARK --addr src --and-mask ""` },
  { line: `${M4} -j IPMARK --addr src --or-mask -1` },
  { line: `${M4} -j IPMARK --addr src --or-mask 08` },
  { line: `${M4} -j IPMARK --addr src --shift 129` },
  { line: `${M4} -j IPMARK --addr src --shift abc` },
  { line: `${M4} -j IPMARK --shift 1 --shift 999` },
  { line: `${M4} -j IPMARK ! --shift 999` },
  { line: `${M4} -j IPMARK --and-mask 1 ! --and-mask 1` },
  { line: `${M4} -j IPMARK --addr src --and-mask 0xffffffff --or-mask 0 --shift 0` },
  { line: `${M4} -j IPMARK --addr dst --shift 8 --and-mask 0xff --or-mask 0x10` },
  { line: `${M4} -j IPMARK --addr=src --shift 128` },
  { line: `${M6} -j IPMARK --addr src --shift 32 --and-mask 0xFFFF` },
  // PROTO
  { line: `${M4} -j PROTO` },
  { line: `${M4} -j PROTO --proto-set 256` },
  { line: `${M4} -j PROTO --proto-set tcp` },
  { line: `${M4} -j PROTO --proto-set 6 --proto-set 7` },
  { line: `${M4} -j PROTO --proto-set 256 --proto-set 7` },
  { line: `${M4} -j PROTO ! --proto-set 6` },
  { line: `${M4} -j PROTO --proto 6` },
  { line: `${M4} -j PROTO --stop-at-frag` },
  { line: `${M4} -j PROTO --proto-set 0x11` },
  { line: `${M4} -j PROTO --proto-set 6 --stop-at-frag`, differs: { status: 1, text: /Protocol wrong type for socket\.\nxt_PROTO: Must not specify stop-at-frag/, why: "the parser takes it; xtr runs xt_PROTO's check, which refuses it (EPROTOTYPE)" } },
  { line: `${M6} -j PROTO --proto-set 6 --stop-at-frag --stop-at-auth` },
  { line: `${M6} -j PROTO --proto-set 59 --stop-at-auth --stop-at-auth` },
  // DHCPMAC
  ...[
    '',
    '--set-mac 1:2:3:4:5',
    '--set-mac 1:2:3:4:5:6:7',
    '--set-mac 1:2:3:4:5:100',
    '--set-mac 1:2:3:4:5:6/49',
    '--set-mac 1:2:3:4:5:6/',
    '--set-mac 1:2:3:4:5:6/24x',
    '--set-mac 1:2:3:4:5:6 --set-mac 1:2:3:4:5:6',
    '! --set-mac 1:2:3:4:5:6',
    '--set-mac 1:2:3:4:5:6 ! --set-mac x',
    '--set-mac ab:cd:ef:0:0:0',
    '--set-mac 0x1:+2:3:4:5:6/48',
    '--set-mac "1: 2:3:4:5:-0"',
  ].map((w) => ({ line: `${M4} -p udp -j DHCPMAC ${w}` })),
  {
    line: `${M4} -p udp -j DHCPMAC --set-mac ab:cd:ef:00:00:00/24`,
    differs: { status: 0, text: /-j DHCPMAC --set-mac AB:CD:EF:00:00:00\/24 *$/, why: 'the mask is kept (man page); upstream drops it and prints /48' },
  },
  // dhcpmac
  ...[
    '',
    '--mac 1:2',
    '--mac 1:2:3:4:5:6 --mac 1:2:3:4:5:6',
    '! --mac ab:cd:ef:0:0:0/24',
    '--mac "1:2:3:4:5:6 "',
    '--mac -1:2:3:4:5:6',
    '--mac 1::3:4:5:6',
    '--mac 1:2:3:4:5:0x',
    '--mac 0x:2:3:4:5:6',
    '--mac 1:2:3:4:5:6/-0',
    '--mac 1:2:3:4:5:6/09',
    '--mac 1:2:3:4:5:6x',
    '--mac 1:2:3:4:5:6:',
    '--mac :1:2:3:4:5:6',
    '--mac 0x0x1:2:3:4:5:6',
    '--mac 1:2:3:4:5:6/1/2',
    '--mac "1;2:3:4:5:6"',
    '--mac " 1:2:3:4:5:6"',
    '--mac Fe:2:3:4:5:6/48',
    '--mac 001:0x0ff:3:4:5:6',
  ].map((w) => ({ line: `${M4} -p udp -m dhcpmac ${w}` })),
  {
    line: `${M4} -p udp -m dhcpmac --mac 00:50:56:00:00:00/24`,
    differs: { status: 0, text: /-m dhcpmac --mac 00:50:56:00:00:00\/24 *$/, why: 'the mask is kept (man page); upstream drops it and prints /48' },
  },
  {
    line: `${M4} -p udp -m dhcpmac --mac 1:2:3:4:5:6/010`,
    differs: { status: 0, text: /-m dhcpmac --mac 01:02:03:04:05:06\/8 *$/, why: 'the mask is kept (man page)' },
  },
  // LOGMARK
  { line: `${M4} -j LOGMARK --log-level 9` },
  { line: `${M4} -j LOGMARK --log-level warning` },
  { line: `${M4} -j LOGMARK --log-prefix "a\nb"` },
  { line: `${M4} -j LOGMARK --log-level 1 --log-level 2` },
  { line: `${M4} -j LOGMARK ! --log-level 1` },
  { line: `${M4} -j LOGMARK ! --log-prefix x` },
  { line: `${M4} -j LOGMARK --log-prefix x --log-prefix y` },
  { line: `${M4} -j LOGMARK --log-level 3 ! --log-level 99` },
  { line: `${M4} -j LOGMARK --log-prefix 123456789012345678901234567890`, differs: { status: 2, text: /LOGMARK: Maximum prefix length is 29\n/, why: 'the limit is the man page\'s 29 bytes; upstream says 14' } },
  { line: `${M4} -j LOGMARK` },
  { line: `${M4} -j LOGMARK --log-prefix ""` },
  {
    line: `${M4} -j LOGMARK --log-prefix 12345678901234 --log-level 4`,
    differs: { status: 0, text: /-j LOGMARK --log-prefix "12345678901234" *$/, why: 'upstream stores a 14-byte prefix without its NUL and prints the level byte after it ("...34\\x04")' },
  },
  { line: `${M4} -j LOGMARK --log-level 0x7 --log-prefix "a b"` },
  { line: `${M4} -j LOGMARK --log-level 8`, differs: { status: 0, text: /-j LOGMARK --log-level 8 *$/, why: 'the man page allows 0..8; xt_LOGMARK refuses 8 at insertion' } },
  {
    line: `${M4} -j LOGMARK --log-prefix 123456789012345`,
    differs: { status: 0, text: /-j LOGMARK --log-prefix "123456789012345" *$/, why: 'the man page allows 29 bytes; upstream 14' },
  },
  { line: `${M6} -j LOGMARK --log-level 7 --log-prefix "six: "` },
];

const NO_MODULE = 'iptables: No chain/target/match by that name.\n';

function lastColumn(verboseOut: string): string {
  return verboseOut.trim().split('\n').pop()!.replace(/^.*-> \S+\s+/, '');
}

test('option errors, kernel refusals and printed rules as iptables-legacy 1.8.9 with libxt_TEE/CHECKSUM and xtables-addons-common parsers', async (t) => {
  if (!addonsShim()) {
    t.fail(`the reference parsers cannot run: ${shimProblem}`);
    return;
  }
  const ns = `xw2a-parse-${process.pid}`;
  t.is(spawnSync('ip', ['netns', 'add', ns]).status, 0);
  const norm = (s: string) => s.replace(/\(legacy\)/g, '(xtr)');
  let compared = 0;
  try {
    for (const { line, kernel, differs } of LINES) {
      const e = await testEngine();
      const words = splitLine(line, 0);
      const family = words[0] === 'ip6tables' ? 6 : 4;
      const table = words[words.indexOf('-t') + 1] ?? 'filter';
      const chain = words[words.indexOf('-A') + 1];
      const k = addonsIptables(ns, family, ['-v', ...words.slice(1)]);
      const x = await e.run(line);
      const cmd = family === 4 ? 'iptables' : 'ip6tables';
      if (differs) {
        t.log(`${line}: upstream status ${k.status}; xtr differs by design: ${differs.why}`);
        t.is(x.status, differs.status, `${line}: xtr status (${x.stderr})`);
        const text = x.status === 0 ? (await e.run(`${cmd} -t ${table} -L ${chain} -n`)).stdout.trim().split('\n').pop()! : x.stderr;
        t.regex(text, differs.text, line);
        continue;
      }
      compared++;
      if (k.status === 2) {
        t.is(x.status, 2, `${line}: status (xtr said ${x.stderr})`);
        t.is(x.stderr, norm(k.stderr).replace(/^ip6tables/, 'ip6tables'), `${line}: stderr`);
        continue;
      }
      if (kernel) {
        // The module is in this kernel: its verdict on insertion is the reference.
        t.is(x.status, k.status, `${line}: insertion status (kernel: ${k.stderr.trim() || 'ok'}; xtr: ${x.stderr.trim() || 'ok'})`);
        if (k.status !== 0) {
          t.is(x.stderr.split('\n')[0], k.stderr.split('\n')[0], `${line}: the refusal`);
          continue;
        }
        const ks = spawnSync('ip', ['netns', 'exec', ns, `${cmd}-legacy`, '-t', table, '-S'], { encoding: 'utf8' }).stdout;
        const xs = (await e.run(`${cmd} -t ${table} -S`)).stdout;
        t.is(xs, ks, `${line}: the rule as iptables -S prints it`);
        const kl = spawnSync('ip', ['netns', 'exec', ns, `${cmd}-legacy`, '-t', table, '-L', '-n'], { encoding: 'utf8' }).stdout;
        const xl = (await e.run(`${cmd} -t ${table} -L -n`)).stdout;
        t.is(lastRule(xl), lastRule(kl), `${line}: the rule as iptables -L -n prints it`);
        spawnSync('ip', ['netns', 'exec', ns, `${cmd}-legacy`, '-t', table, '-F']);
        continue;
      }
      // Upstream's parser took it; only the missing kernel module refused it.
      t.is(k.status, 1, `${line}: ${k.stderr}`);
      t.is(k.stderr.replace(/ip6tables/, 'iptables'), NO_MODULE, line);
      t.is(x.status, 0, `${line}: xtr loads it (${x.stderr})`);
      const printed = lastColumn(k.stdout);
      const listed = (await e.run(`${cmd} -t ${table} -L ${chain} -n`)).stdout.trim().split('\n').pop()!;
      t.true(listed.trimEnd().endsWith(printed.trimEnd()), `${line}: xtr lists ${JSON.stringify(listed)}, upstream printed ${JSON.stringify(printed)}`);
    }
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
  t.log(`${compared} lines compared with upstream, ${LINES.length - compared} deliberate differences`);
});

/** The last rule line of `iptables -L -n`, whitespace collapsed. */
function lastRule(text: string): string {
  const rules = text.split('\n').filter((l) => l !== '' && !l.startsWith('Chain ') && !l.startsWith('target '));
  return (rules.pop() ?? '').replace(/\s+/g, ' ').trim();
}

test('nothing loaded is lost when a line is refused; limits refused cleanly', async (t) => {
  const e = await testEngine();
  const restore = [
    '*mangle',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    '-A PREROUTING -j TEE --gateway 192.0.2.2',
    '-A PREROUTING -j IPMARK --addr src --and-mask 0xff',
    '-A FORWARD -p udp -m dhcpmac --mac 00:50:56:00:00:00/24 -j DHCPMAC --set-mac 02:00:00:00:00:00/24',
    '-A POSTROUTING -p udp -j CHECKSUM --checksum-fill',
    '-A POSTROUTING -j LOGMARK --log-prefix "fw: "',
    '-A POSTROUTING -j PROTO --proto-set 253',
    'COMMIT',
    '',
  ];
  t.is((await e.run('iptables-restore', restore.join('\n'))).status, 0);
  const before = (await e.run('iptables-save -t mangle')).stdout;
  const bad: [string, number, RegExp][] = [
    ['iptables -t mangle -A PREROUTING -j TEE --gateway 0.0.0.0', 1, /^iptables: Invalid argument\. Run `dmesg' for more information\.\nTEE: --gateway 0\.0\.0\.0 is not a usable next hop/],
    ['iptables -t mangle -A PREROUTING -j LOGMARK --log-prefix 123456789012345678901234567890', 2, /LOGMARK: Maximum prefix length is 29/],
    ['iptables -t mangle -A PREROUTING -j LOGMARK --log-level 9', 2, /Bad value for "--log-level" option: "9"/],
    ['iptables -t mangle -A PREROUTING -j IPMARK --addr src --shift 129', 2, /Bad value for "--shift" option: "129"/],
    ['iptables -t mangle -A PREROUTING -j PROTO --proto-set 256', 2, /out of range \(0-255\)/],
    ['iptables -t mangle -A PREROUTING -j PROTO --proto-set 6 --stop-at-auth', 1, /Protocol wrong type for socket/],
    ['iptables -t filter -A FORWARD -j IPMARK --addr src', 1, /IPMARK target: only valid in mangle table, not filter/],
    ['iptables -t mangle -A FORWARD -j DHCPMAC --set-mac 1:2:3:4:5:6', 1, /DHCPMAC target: only valid for protocol 17/],
    ['iptables -t mangle -A FORWARD -p tcp -m dhcpmac --mac 1:2:3:4:5:6', 1, /dhcpmac match: only valid for protocol 17/],
    ['ip6tables -t mangle -A FORWARD -p udp -j DHCPMAC --set-mac 1:2:3:4:5:6', 2, /./],
    ['iptables -t filter -A FORWARD -p udp -j CHECKSUM --checksum-fill', 1, /CHECKSUM target: only valid in mangle table, not filter/],
  ];
  for (const [line, status, msg] of bad) {
    const r = await e.run(line);
    t.is(r.status, status, `${line}: ${r.stderr}`);
    t.regex(r.stderr, msg, line);
  }
  // a whole restore with one bad line is refused as a whole
  const more = [...restore.slice(0, -2), '-A PREROUTING -j TEE --gateway 0.0.0.0', 'COMMIT', ''];
  const r = await e.run('iptables-restore', more.join('\n'));
  t.is(r.status, 1);
  t.is((await e.run('iptables-save -t mangle')).stdout, before);
});
