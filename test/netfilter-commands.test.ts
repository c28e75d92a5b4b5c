import test from 'ava';
import { XtError, type KernelErrno, type MatchExtension } from '../xt/extension.js';
import { testEngine } from '../router/netfilter/testkit.js';

/** A rule set every bad command below must leave exactly as it was. */
const BASELINE = [
  'iptables -N knock',
  'iptables -A INPUT -i lo -j ACCEPT',
  'iptables -A INPUT -p tcp --dport 22 -j knock',
  'iptables -A knock -s 10.0.0.0/8 -j DROP',
  'iptables -P FORWARD DROP',
  'iptables -t nat -A POSTROUTING -o eth0 -j ACCEPT',
];

async function baseline() {
  const e = await testEngine();
  for (const line of BASELINE) {
    const r = await e.run(line);
    if (r.status !== 0) throw new Error(`${line}: ${r.stderr}`);
  }
  return e;
}

async function snapshot(e: Awaited<ReturnType<typeof testEngine>>): Promise<string> {
  const a = await e.run('iptables-save -c');
  const b = await e.run('ip6tables-save -c');
  return a.stdout + b.stdout;
}

/** [command, exit status, stderr pattern]: each refused like iptables 1.8.9, nothing changed. */
const REFUSED: readonly [string, number, RegExp][] = [
  ['iptables', 2, /no command specified/],
  ['iptables -A', 2, /option "-A" requires an argument/],
  ['iptables -A INPUT -m nosuchmatch -j ACCEPT', 2, /Couldn't load match `nosuchmatch':No such file or directory\n\nTry `iptables -h'/],
  ['iptables -A INPUT -j NOSUCHTARGET', 2, /Couldn't load target `NOSUCHTARGET':No such file or directory/],
  ['iptables -A INPUT --bogus', 2, /unknown option "--bogus"/],
  ['iptables -A INPUT --dport 22 -j ACCEPT', 2, /unknown option "--dport"/],
  ['iptables -A INPUT -s 1.2.3.400 -j ACCEPT', 2, /host\/network `1.2.3.400' not found/],
  ['iptables -A INPUT -s example.org -j ACCEPT', 2, /host\/network `example.org' not found/],
  ['iptables -A INPUT -s 1.2.3.4/33 -j ACCEPT', 2, /invalid mask `33' specified/],
  ['ip6tables -A INPUT -s 10.0.0.1 -j DROP', 2, /host\/network `10.0.0.1' not found/],
  ['iptables -A INPUT -p tcp --dport 70000 -j ACCEPT', 2, /invalid port\/service `70000' specified/],
  ['iptables -A INPUT -p tcp --dport 5:3 -j ACCEPT', 2, /invalid portrange \(min > max\)/],
  ['iptables -A INPUT -p foo', 2, /unknown protocol "foo" specified/],
  ['iptables -A INPUT -p 300', 2, /unknown protocol "300" specified/],
  ['iptables -A INPUT -p tcp --tcp-flags SYN', 2, /--tcp-flags requires two args/],
  ['iptables -A INPUT -m state', 2, /state: option "--state" must be specified/],
  ['iptables -A INPUT -m state --state FOO', 2, /Bad state "FOO"/],
  ['iptables -A NOCHAIN -j ACCEPT', 1, /^iptables: No chain\/target\/match by that name\.\n/],
  ['iptables -A INPUT -o eth0 -j DROP', 2, /Can't use -o with INPUT/],
  ['iptables -A OUTPUT -i eth0 -j DROP', 2, /Can't use -i with OUTPUT/],
  ['iptables -A INPUT -i ! lo -j DROP', 2, /^Bad argument `lo'\n/],
  ['iptables -A INPUT -j ACCEPT -j DROP', 2, /multiple -j flags not allowed/],
  ['iptables -A INPUT -s 1.2.3.4 -s 1.2.3.5', 2, /multiple -s flags not allowed/],
  ['iptables -A INPUT ! ! -p tcp', 2, /multiple consecutive ! not allowed/],
  ['iptables -A INPUT -x', 2, /Illegal option `-x' with this command/],
  ['iptables -F INPUT -L', 2, /Cannot use -L with -F/],
  ['iptables -A INPUT -j DROP extra', 2, /^Bad argument `extra'/],
  ['iptables -I INPUT 0 -j ACCEPT', 2, /Invalid rule number `0'/],
  ['iptables -I INPUT 9 -j ACCEPT', 1, /Index of insertion too big/],
  ['iptables -R INPUT 9 -j ACCEPT', 1, /Index of replacement too big/],
  ['iptables -D INPUT 9', 1, /Index of deletion too big/],
  ['iptables -D INPUT -p udp -j ACCEPT', 1, /Bad rule \(does a matching rule exist in that chain\?\)/],
  ['iptables -C INPUT -p udp -j ACCEPT', 1, /Bad rule/],
  ['iptables -N knock', 1, /Chain already exists/],
  ['iptables -N INPUT', 1, /Chain already exists/],
  ['iptables -N ACCEPT', 2, /chain name may not clash with target name/],
  ['iptables -N thisisaverylongchainnamethatistoolong', 2, /too long \(must be under 29 chars\)/],
  ['iptables -N -foo', 2, /chain name not allowed to start with `-'/],
  ['iptables -X knock', 1, /Too many links/],
  ['iptables -X INPUT', 1, /Invalid argument/],
  ['iptables -X nochain', 1, /No chain\/target\/match by that name/],
  ['iptables -P knock DROP', 1, /Bad built-in chain name/],
  ['iptables -P INPUT RETURN', 1, /Bad policy name/],
  ['iptables -E knock INPUT', 1, /File exists/],
  ['iptables -L NOPE', 1, /No chain\/target\/match by that name/],
  ['iptables -t bogus -L', 3, /can't initialize iptables table `bogus': Table does not exist/],
  ['iptables -A knock -j INPUT', 1, /Invalid argument/],
  ['iptables -A knock -j knock', 1, /Too many levels of symbolic links/],
  ['ip6tables -A INPUT -f -j DROP', 2, /`-f' is not supported in IPv6/],
  ['iptables -t nat -A POSTROUTING -p tcp -m state --state NEW -j CT --notrack', 1, /Invalid argument/],
  ['iptables -R INPUT 1 -s 1.1.1.1,2.2.2.2 -j DROP', 2, /Replacement rule does not specify a unique address/],
  // Kernel check refusals print the errno the check returned: xt_limit's is ERANGE, xt_recent's and REJECT's EINVAL.
  ['iptables -A INPUT -m limit --limit-burst 0', 1, /^iptables: Numerical result out of range\.\nxt_limit: Overflow, try lower: 12000000\/0\n$/],
  ['iptables -A INPUT -m limit --limit 1/day', 1, /^iptables: Numerical result out of range\.\n/],
  ['iptables -A INPUT -m recent --set --hitcount 3', 1, /^iptables: Invalid argument\. Run `dmesg' for more information\.\nxt_recent: /],
  ['iptables -A INPUT -j REJECT --reject-with tcp-reset', 1, /^iptables: Invalid argument\. Run `dmesg' for more information\.\nREJECT: TCP_RESET invalid for non-tcp\n$/],
];

for (const [line, status, pattern] of REFUSED) {
  test(`refused: ${line}`, async (t) => {
    const e = await baseline();
    const before = await snapshot(e);
    const r = await e.run(line);
    t.is(r.status, status, r.stderr);
    t.regex(r.stderr, pattern);
    t.is(r.stdout, '');
    t.is(await snapshot(e), before, 'rule set unchanged');
  });
}

test('an extension that declares a protocol needs -p with it, not inverted (kernel xt_match.proto)', async (t) => {
  const needsTcp: MatchExtension<null> = {
    kind: 'match', name: 'xtesttcp', families: [4, 6], proto: 6, options: [],
    parse: () => null, check: () => ({ match: () => true }), save: () => '',
  };
  const e = await testEngine([needsTcp]);
  for (const line of ['iptables -A INPUT -m xtesttcp -j DROP', 'iptables -A INPUT ! -p tcp -m xtesttcp -j DROP', 'iptables -A INPUT -p udp -m xtesttcp']) {
    const r = await e.run(line);
    t.is(r.status, 1, line);
    t.regex(r.stderr, /^iptables: Invalid argument\. Run `dmesg' for more information\.\nx_tables: ip_tables: xtesttcp match: only valid for protocol 6\n$/);
  }
  t.is((await e.run('iptables -A INPUT -p tcp -m xtesttcp -j DROP')).status, 0);
});

test('a kernel refusal prints the errno text the extension check names (iptc_strerror words, dmesg hint only for EINVAL)', async (t) => {
  const refusing = (name: string, errno: KernelErrno | undefined): MatchExtension<null> => ({
    kind: 'match', name, families: [4, 6], options: [],
    parse: () => null,
    check: () => {
      throw new XtError(`${name}: refused`, 1, errno);
    },
    save: () => '',
  });
  const cases: [KernelErrno | undefined, string][] = [
    [undefined, "Invalid argument. Run `dmesg' for more information."],
    ['EINVAL', "Invalid argument. Run `dmesg' for more information."],
    ['ERANGE', 'Numerical result out of range.'],
    ['EDOM', 'Numerical argument out of domain.'],
    ['ENOENT', 'No chain/target/match by that name.'],
    ['ENOMEM', 'Memory allocation problem.'],
    ['EOPNOTSUPP', 'Operation not supported.'],
  ];
  const e = await testEngine(cases.map(([errno], i) => refusing(`xtrefuse${i}`, errno)));
  for (const [i, [errno, text]] of cases.entries()) {
    const r = await e.run(`ip6tables -A INPUT -m xtrefuse${i}`);
    t.is(r.status, 1, String(errno));
    t.is(r.stderr, `ip6tables: ${text}\nxtrefuse${i}: refused\n`, String(errno));
    const restored = await e.run('ip6tables-restore', `*filter\n-A INPUT -m xtrefuse${i}\nCOMMIT\n`);
    t.is(restored.stderr, `ip6tables-restore: line 3 failed\nip6tables-restore: line 3: ${text} (xtrefuse${i}: refused)\n`, String(errno));
  }
  t.is((await e.run('ip6tables -S INPUT')).stdout, '-P INPUT ACCEPT\n');
});

test('a loop through user chains is refused only once reachable from a built-in chain (mark_source_chains)', async (t) => {
  const e = await testEngine();
  for (const l of ['iptables -N a', 'iptables -N b', 'iptables -A a -j b', 'iptables -A b -j a']) t.is((await e.run(l)).status, 0, l);
  const r = await e.run('iptables -A FORWARD -j a');
  t.is(r.status, 1);
  t.is(r.stderr, 'iptables: Too many levels of symbolic links.\n');
  t.false((await e.run('iptables -S FORWARD')).stdout.includes('-j a'));
});

test('accepted forms: long options, prefixes, old scripts, address lists, -I reverses expanded rules', async (t) => {
  const e = await testEngine();
  const ok = async (l: string) => {
    const r = await e.run(l);
    t.is(r.status, 0, `${l}: ${r.stderr}`);
    return r.stdout;
  };
  await ok('iptables --append INPUT --protocol udp --destination-port 53 --jump ACCEPT');
  await ok('iptables -A INPUT --sou 1.2.3.4 -j DROP');
  await ok('iptables -A INPUT -p tcp --dpo 25 -j DROP');
  await ok('iptables -A INPUT -i ! -j DROP');
  await ok('iptables -A INPUT -p TCP -m state --state NEW,ESTABLISHED -j ACCEPT');
  await ok('iptables -A INPUT -d 10.1 -j DROP');
  await ok('iptables -I INPUT 1 -s 1.1.1.1,2.2.2.2 -d 3.3.3.3,4.4.4.4 -j DROP');
  await ok('iptables -A INPUT -m comment --comment "hello world" -j ACCEPT');
  t.is(
    await ok('iptables -S INPUT'),
    [
      '-P INPUT ACCEPT',
      '-A INPUT -s 2.2.2.2/32 -d 4.4.4.4/32 -j DROP',
      '-A INPUT -s 2.2.2.2/32 -d 3.3.3.3/32 -j DROP',
      '-A INPUT -s 1.1.1.1/32 -d 4.4.4.4/32 -j DROP',
      '-A INPUT -s 1.1.1.1/32 -d 3.3.3.3/32 -j DROP',
      '-A INPUT -p udp -m udp --dport 53 -j ACCEPT',
      '-A INPUT -s 1.2.3.4/32 -j DROP',
      '-A INPUT -p tcp -m tcp --dport 25 -j DROP',
      '-A INPUT -i ! -j DROP',
      '-A INPUT -p tcp -m state --state NEW,ESTABLISHED -j ACCEPT',
      '-A INPUT -d 10.1.0.0/32 -j DROP',
      '-A INPUT -m comment --comment "hello world" -j ACCEPT',
      '',
    ].join('\n'),
  );
  // -D by spec with an address list deletes each; -C finds an existing rule.
  await ok('iptables -D INPUT -s 2.2.2.2,1.1.1.1 -d 3.3.3.3 -j DROP');
  await ok('iptables -C INPUT -s 1.2.3.4 -j DROP');
  t.false((await ok('iptables -S INPUT')).includes('-d 3.3.3.3/32'));
  // -E renames and re-points jumps; -X all after -F all.
  await ok('iptables -N old');
  await ok('iptables -A FORWARD -j old');
  await ok('iptables -E old new');
  t.regex(await ok('iptables -S FORWARD'), /-A FORWARD -j new\n/);
  await ok('iptables -F');
  await ok('iptables -X');
  t.is(await ok('iptables -S'), '-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n');
});

test('-X with no chain deletes nothing when one user chain is still referenced (checked before emptiness)', async (t) => {
  const e = await testEngine();
  for (const l of ['iptables -N c', 'iptables -A c -j DROP', 'iptables -N d', 'iptables -A d -j DROP', 'iptables -A INPUT -j d']) await e.run(l);
  const r = await e.run('iptables -X');
  t.is(r.status, 1);
  t.is(r.stderr, 'iptables: Too many links.\n');
  t.regex((await e.run('iptables -S')).stdout, /-N c\n-N d\n/);
});

test('-L layouts match iptables 1.8.9 column for column', async (t) => {
  const e = await testEngine();
  await e.run('iptables -A FORWARD -i eth+ ! -o eth0 -f -j DROP');
  await e.run('iptables -A FORWARD ! -s 10.0.0.0/255.255.0.0 -j DROP');
  await e.run('iptables -A FORWARD -s 10.0.0.0/255.0.255.0 -j DROP');
  await e.run('iptables -A FORWARD -p 47 -j ACCEPT');
  const r = await e.run('iptables -L FORWARD -n -v --line-numbers');
  t.is(
    r.stdout,
    [
      'Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)',
      'num   pkts bytes target     prot opt in     out     source               destination         ',
      '1        0     0 DROP       0    -f  eth+   !eth0   0.0.0.0/0            0.0.0.0/0           ',
      '2        0     0 DROP       0    --  *      *      !10.0.0.0/16          0.0.0.0/0           ',
      '3        0     0 DROP       0    --  *      *       10.0.0.0/255.0.255.0  0.0.0.0/0           ',
      '4        0     0 ACCEPT     47   --  *      *       0.0.0.0/0            0.0.0.0/0           ',
      '',
    ].join('\n'),
  );
  const plain = await e.run('iptables -L FORWARD');
  t.is(
    plain.stdout,
    [
      'Chain FORWARD (policy ACCEPT)',
      'target     prot opt source               destination         ',
      'DROP       all  -f  anywhere             anywhere            ',
      'DROP       all  -- !10.0.0.0/16          anywhere            ',
      'DROP       all  --  10.0.0.0/255.0.255.0  anywhere            ',
      'ACCEPT     gre  --  anywhere             anywhere            ',
      '',
    ].join('\n'),
  );
  const x = await e.run('iptables -L INPUT -v -x');
  t.is(x.stdout, 'Chain INPUT (policy ACCEPT 0 packets, 0 bytes)\n    pkts      bytes target     prot opt in     out     source               destination         \n');
});

test('-S -v prints counters where iptables puts them', async (t) => {
  const e = await testEngine();
  await e.run('iptables -A INPUT -s 3.3.3.3 -c 5 300 -j DROP');
  t.is((await e.run('iptables -S INPUT -v')).stdout, '-P INPUT ACCEPT -c 0 0\n-A INPUT -s 3.3.3.3/32 -c 5 300 -j DROP\n');
  t.is((await e.run('iptables -Z INPUT')).status, 0);
  t.is((await e.run('iptables -S INPUT -v')).stdout, '-P INPUT ACCEPT -c 0 0\n-A INPUT -s 3.3.3.3/32 -c 0 0 -j DROP\n');
});

test('-V and -h answer without touching rules; -6 is refused by iptables (and skipped inside a restore file)', async (t) => {
  const e = await testEngine();
  t.is((await e.run('iptables -V')).stdout, 'iptables v1.8.9 (xtr)\n');
  t.is((await e.run('iptables -h')).status, 0);
  t.is((await e.run('iptables -6 -A INPUT -s ::1 -j DROP')).status, 2);
  t.is((await e.run('iptables -4 -A INPUT -s 1.1.1.1 -j DROP')).status, 0);
  t.is((await e.run('iptables-restore -n', '*filter\n-6 -A INPUT -s ::1 -j DROP\n-A INPUT -s 2.2.2.2 -j DROP\nCOMMIT\n')).status, 0);
  t.is((await e.run('iptables -S INPUT')).stdout, '-P INPUT ACCEPT\n-A INPUT -s 1.1.1.1/32 -j DROP\n-A INPUT -s 2.2.2.2/32 -j DROP\n');
});

test('proc: ls, cat, write and errors', async (t) => {
  const e = await testEngine();
  t.is((await e.run('proc ls')).stdout, '');
  const r = await e.run('proc cat net/xt_recent/none');
  t.is(r.status, 1);
  t.regex(r.stderr, /No such file or directory/);
  let written = '';
  e.nf.proc.register('net/xt_test/x', { read: () => written, write: (d) => void (written += `${d}\n`) });
  t.is((await e.run('proc ls')).stdout, 'net/xt_test/x\n');
  t.is((await e.run('proc write /proc/net/xt_test/x +10.0.0.1')).status, 0);
  t.is((await e.run('proc cat net/xt_test/x')).stdout, '+10.0.0.1\n');
  e.nf.proc.register('net/ro', { read: () => 'x' });
  t.regex((await e.run('proc write net/ro y')).stderr, /Permission denied/);
});
