import test from 'ava';
import fc from 'fast-check';
import { Hook, Verdict, type PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, type MatchExtension, type TargetExtension } from '../xt/extension.js';
import { packet, testEngine, type PacketSpec } from '../router/netfilter/testkit.js';
import { classifierCount, setClassifierEnabled } from '../router/netfilter/compile.js';
import { restoreState, saveState } from '../router/netfilter/index.js';

async function engineWith(lines: readonly string[], extra: Parameters<typeof testEngine>[0] = [], ct: Parameters<typeof testEngine>[1] = null) {
  const e = await testEngine(extra, ct);
  for (const l of lines) {
    const r = await e.run(l);
    if (r.status !== 0) throw new Error(`${l}: ${r.stderr}`);
  }
  return e;
}

const tcp = (src: string, dst: string, dport: number, extra: Partial<PacketSpec> = {}): PacketSpec => ({ src, dst, proto: 'tcp', dport, ...extra });

test('filter INPUT: first matching rule decides, policy otherwise; counters count L3 bytes', async (t) => {
  const e = await engineWith([
    'iptables -P INPUT DROP',
    'iptables -A INPUT -i lo -j ACCEPT',
    'iptables -A INPUT -s 10.0.0.0/8 -p tcp --dport 22 -j ACCEPT',
    'iptables -A INPUT -p udp -j DROP',
  ]);
  const cases: [PacketSpec, string | null, Verdict][] = [
    [tcp('10.1.2.3', '192.0.2.1', 22), 'eth0', Verdict.ACCEPT],
    [tcp('11.1.2.3', '192.0.2.1', 22), 'eth0', Verdict.DROP],
    [tcp('10.1.2.3', '192.0.2.1', 23), 'eth0', Verdict.DROP],
    [tcp('11.1.2.3', '192.0.2.1', 23), 'lo', Verdict.ACCEPT],
  ];
  for (const [spec, inIf, want] of cases) t.is(e.nf.hook(Hook.INPUT, packet(spec, inIf)), want, JSON.stringify(spec));
  const save = (await e.run('iptables-save -c')).stdout;
  // 40-byte TCP/IPv4 packets: one through lo, one accepted on 22, two to the policy.
  t.regex(save, /:INPUT DROP \[2:80\]/);
  t.regex(save, /\[1:40\] -A INPUT -i lo -j ACCEPT/);
  t.regex(save, /\[1:40\] -A INPUT -s 10\.0\.0\.0\/8 -p tcp -m tcp --dport 22 -j ACCEPT/);
  t.regex(save, /\[0:0\] -A INPUT -p udp -j DROP/);
});

test('jump, goto and RETURN follow ipt_do_table', async (t) => {
  const e = await engineWith([
    'iptables -N a',
    'iptables -N b',
    'iptables -N c',
    'iptables -A FORWARD -s 1.0.0.1 -j a',
    'iptables -A FORWARD -s 1.0.0.1 -j DROP',
    'iptables -A FORWARD -s 1.0.0.2 -j b',
    'iptables -A FORWARD -s 1.0.0.2 -j ACCEPT',
    'iptables -A FORWARD -s 1.0.0.3 -j RETURN',
    'iptables -A FORWARD -j ACCEPT',
    'iptables -P FORWARD DROP',
    // a: returns at once -> next FORWARD rule (DROP).
    'iptables -A a -j RETURN',
    'iptables -A a -j ACCEPT',
    // b: goes to c without a return address; c falls off its end -> back to FORWARD after the -j b rule.
    'iptables -A b -g c',
    'iptables -A b -j DROP',
    'iptables -A c -p udp -j DROP',
  ]);
  const hook = (src: string) => e.nf.hook(Hook.FORWARD, packet(tcp(src, '9.9.9.9', 80), 'in0', 'out0'));
  t.is(hook('1.0.0.1'), Verdict.DROP);
  t.is(hook('1.0.0.2'), Verdict.ACCEPT);
  // RETURN in a built-in chain applies its policy.
  t.is(hook('1.0.0.3'), Verdict.DROP);
  t.is(hook('1.0.0.4'), Verdict.ACCEPT);
  const s = (await e.run('iptables -L -v -x -n')).stdout;
  t.regex(s, /Chain FORWARD \(policy DROP 1 packets, 40 bytes\)/);
});

test('-j QUEUE drops: there is no userspace queue listener in xtr (the kernel drops then too)', async (t) => {
  const e = await engineWith(['iptables -A INPUT -p udp -j QUEUE']);
  t.is(e.nf.hook(Hook.INPUT, packet({ src: '1.1.1.1', dst: '2.2.2.2', proto: 'udp' }, 'eth0')), Verdict.DROP);
  t.is(e.nf.hook(Hook.INPUT, packet(tcp('1.1.1.1', '2.2.2.2', 1), 'eth0')), Verdict.ACCEPT);
  t.is((await e.run('iptables -S INPUT')).stdout, '-P INPUT ACCEPT\n-A INPUT -p udp -j QUEUE\n');
});

test('goto from a built-in chain: falling off the end applies the built-in policy', async (t) => {
  const e = await engineWith(['iptables -N g', 'iptables -P OUTPUT DROP', 'iptables -A OUTPUT -g g', 'iptables -A OUTPUT -j ACCEPT', 'iptables -A g -p udp -j ACCEPT']);
  t.is(e.nf.hook(Hook.OUTPUT, packet(tcp('1.1.1.1', '2.2.2.2', 1), null, 'eth0')), Verdict.DROP);
  t.is(e.nf.hook(Hook.OUTPUT, packet({ src: '1.1.1.1', dst: '2.2.2.2', proto: 'udp' }, null, 'eth0')), Verdict.ACCEPT);
});

test('generic criteria: interfaces with +, negations, fragments, protocols, IPv6 prefixes', async (t) => {
  const e = await engineWith([
    'iptables -P FORWARD DROP',
    'iptables -A FORWARD -i veth+ ! -o veth9 -j ACCEPT',
    'iptables -A FORWARD -f -j ACCEPT',
    'iptables -A FORWARD ! -p tcp -s 192.168.0.0/16 -j ACCEPT',
    'iptables -A FORWARD ! -d 10.0.0.0/8 -p tcp --dport 443 -j ACCEPT',
    'ip6tables -P FORWARD DROP',
    'ip6tables -A FORWARD -s 2001:db8::/32 -d 2001:db8:1::1 -p tcp --dport 22 -j ACCEPT',
    'ip6tables -A FORWARD ! -s 2001:db8::/32 -p ipv6-icmp -j ACCEPT',
  ]);
  const fwd = (spec: PacketSpec, i = 'eth0', o = 'eth1') => e.nf.hook(Hook.FORWARD, packet(spec, i, o));
  t.is(fwd(tcp('1.1.1.1', '2.2.2.2', 1), 'veth0', 'eth1'), Verdict.ACCEPT);
  t.is(fwd(tcp('1.1.1.1', '2.2.2.2', 1), 'veth0', 'veth9'), Verdict.DROP);
  t.is(fwd(tcp('1.1.1.1', '2.2.2.2', 1), 'vet', 'eth1'), Verdict.DROP);
  t.is(fwd({ src: '1.1.1.1', dst: '2.2.2.2', proto: 'udp', fragOffset: 10 }), Verdict.ACCEPT);
  t.is(fwd({ src: '1.1.1.1', dst: '2.2.2.2', proto: 'udp', fragOffset: 0, moreFragments: true, dport: 9 }), Verdict.DROP);
  t.is(fwd({ src: '192.168.1.1', dst: '2.2.2.2', proto: 'udp' }), Verdict.ACCEPT);
  t.is(fwd(tcp('192.168.1.1', '2.2.2.2', 80)), Verdict.DROP);
  t.is(fwd(tcp('1.1.1.1', '2.2.2.2', 443)), Verdict.ACCEPT);
  t.is(fwd(tcp('1.1.1.1', '10.2.2.2', 443)), Verdict.DROP);
  t.is(fwd(tcp('2001:db8:5::1', '2001:db8:1::1', 22)), Verdict.ACCEPT);
  t.is(fwd(tcp('2001:db9::1', '2001:db8:1::1', 22)), Verdict.DROP);
  t.is(fwd({ src: '2001:db9::1', dst: '2001:db8::2', proto: 'icmp' }), Verdict.ACCEPT);
  t.is(fwd({ src: '2001:db8::1', dst: '2001:db8::2', proto: 'icmp' }), Verdict.DROP);
  // The IPv4 rules do not see IPv6 packets and vice versa.
  t.regex((await e.run('ip6tables -L FORWARD -v -n')).stdout, /policy DROP 2 packets/);
});

/** A target that records (table, hook) and lets the packet continue: proves the traversal order. */
function tracer(trace: string[]): TargetExtension<null> {
  return {
    kind: 'target', name: 'XTRACE', families: [4, 6], options: [],
    parse: () => null,
    check: (_p, env) => ({ target: (pkt: PacketContext) => (trace.push(`${env.rule.table}:${env.rule.chain}:${pkt.hook}`), XT_CONTINUE) }),
    save: () => '',
  };
}

test('tables run in the kernel order per hook, conntrack between raw and mangle, confirm last', async (t) => {
  const trace: string[] = [];
  const ct = {
    in: (pkt: PacketContext) => (trace.push(`ct:in:${pkt.hook}`), (pkt.ctState = 2), Verdict.ACCEPT),
    confirm: (pkt: PacketContext) => void trace.push(`ct:confirm:${pkt.hook}`),
  };
  const lines: string[] = [];
  const chains: Record<string, string[]> = {
    raw: ['PREROUTING', 'OUTPUT'],
    mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
    nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
    filter: ['INPUT', 'FORWARD', 'OUTPUT'],
    rawpost: ['POSTROUTING'],
  };
  for (const [table, cs] of Object.entries(chains)) for (const c of cs) lines.push(`iptables -t ${table} -A ${c} -j XTRACE`);
  // Conntrack runs only while a rule needs it (as in the kernel): one in a chain nothing jumps to is enough.
  lines.push('iptables -N ctuser', 'iptables -A ctuser -m state --state INVALID -j DROP');
  const e = await engineWith(lines, [tracer(trace)], ct);
  const run = (h: Hook) => {
    trace.length = 0;
    const p = packet(tcp('1.1.1.1', '2.2.2.2', 5));
    p.ctState = 2; // as left by conntrack in PREROUTING/OUTPUT for a new flow
    e.nf.hook(h, p);
    return trace.join(' ');
  };
  t.is(run(Hook.PREROUTING), 'raw:PREROUTING:0 ct:in:0 mangle:PREROUTING:0 nat:PREROUTING:0');
  t.is(run(Hook.INPUT), 'mangle:INPUT:1 filter:INPUT:1 nat:INPUT:1 ct:confirm:1');
  t.is(run(Hook.FORWARD), 'mangle:FORWARD:2 filter:FORWARD:2');
  t.is(run(Hook.OUTPUT), 'raw:OUTPUT:3 ct:in:3 mangle:OUTPUT:3 nat:OUTPUT:3 filter:OUTPUT:3');
  t.is(run(Hook.POSTROUTING), 'mangle:POSTROUTING:4 nat:POSTROUTING:4 rawpost:POSTROUTING:4 ct:confirm:4');
  // nat sees only a connection's first packet.
  ct.in = (pkt: PacketContext) => (trace.push(`ct:in:${pkt.hook}`), (pkt.ctState = 4), Verdict.ACCEPT);
  t.is(run(Hook.PREROUTING), 'raw:PREROUTING:0 ct:in:0 mangle:PREROUTING:0');
  // Without such a rule nothing is tracked or confirmed (a kernel namespace without conntrack users).
  t.true(e.nf.conntrackInUse(4));
  t.is((await e.run('iptables -F ctuser')).status, 0);
  t.false(e.nf.conntrackInUse(4));
  t.false(e.nf.conntrackInUse(6));
  ct.in = (pkt: PacketContext) => (trace.push(`ct:in:${pkt.hook}`), (pkt.ctState = 2), Verdict.ACCEPT);
  t.is(run(Hook.PREROUTING), 'raw:PREROUTING:0 mangle:PREROUTING:0 nat:PREROUTING:0');
  t.is(run(Hook.POSTROUTING), 'mangle:POSTROUTING:4 nat:POSTROUTING:4 rawpost:POSTROUTING:4');
});

test('conntrack is in use per family while a rule needs it: state, conntrack, connmark, CONNMARK, CT, but not CT --notrack / NOTRACK', async (t) => {
  const cases: [string, boolean][] = [
    ['iptables -A FORWARD -m state --state NEW', true],
    ['iptables -A FORWARD -m conntrack --ctstate NEW', true],
    ['iptables -A FORWARD -m connmark --mark 1', true],
    ['iptables -t mangle -A FORWARD -j CONNMARK --set-mark 1', true],
    ['iptables -t raw -A PREROUTING -j CT', true],
    ['iptables -t raw -A PREROUTING -j CT --notrack', false],
    ['iptables -t raw -A PREROUTING -j NOTRACK', false],
    ['iptables -A FORWARD -p tcp --dport 22 -j ACCEPT', false],
  ];
  for (const [line, inUse] of cases) {
    const e = await engineWith([line]);
    t.is(e.nf.conntrackInUse(4), inUse, line);
    t.false(e.nf.conntrackInUse(6), `${line}: IPv6 untouched`);
    const v6 = await engineWith([line.replace('iptables', 'ip6tables')]);
    t.is(v6.nf.conntrackInUse(6), inUse, `ip6tables: ${line}`);
    t.false(v6.nf.conntrackInUse(4));
  }
});

test('targets and matches limited to hooks are checked against every hook reaching the chain', async (t) => {
  const onlyInput: TargetExtension<null> = {
    kind: 'target', name: 'XINPUTONLY', families: [4], hooks: [Hook.INPUT], tables: ['filter'], options: [],
    parse: () => null, check: () => ({ target: () => Verdict.ACCEPT }), save: () => '',
  };
  const e = await engineWith(['iptables -N sub', 'iptables -A sub -j XINPUTONLY', 'iptables -A INPUT -j sub'], [onlyInput]);
  const r = await e.run('iptables -A FORWARD -j sub');
  t.is(r.status, 1);
  t.regex(r.stderr, /Invalid argument.*\n.*XINPUTONLY target: used from hooks FORWARD, but only usable from INPUT/);
  const m = await e.run('iptables -t mangle -A INPUT -j XINPUTONLY');
  t.regex(m.stderr, /only valid in filter table, not mangle/);
});

test('shared state survives a restore (new rules acquire before old release) and persistence round-trips', async (t) => {
  const created: object[] = [];
  const released: object[] = [];
  const stateful: MatchExtension<{ name: string }> = {
    kind: 'match', name: 'xstate', families: [4], options: [{ name: 'name', arg: 'required' }],
    parse: (opts) => ({ name: opts.find((o) => o.name === 'name')?.value ?? 'DEFAULT' }),
    check(p, env) {
      // Declared state (xt/state.ts): the engine registers the proc view and saves/loads it.
      const key = `xstate/${p.name}`;
      env.state.declare<{ hits: string[] }>({
        key,
        create: () => {
          const l = { hits: [] as string[] };
          created.push(l);
          return l;
        },
        release: (l) => void released.push(l),
        proc: { path: `net/xt_xstate/${p.name}`, read: (l) => l.hits.join('\n'), write: (l, d) => void l.hits.push(d) },
        save: (l) => [...l.hits],
        load: (l, saved) => void l.hits.splice(0, l.hits.length, ...(saved as string[])),
      });
      return { match: () => true, destroy: () => env.state.release(key) };
    },
    save: (p) => ` --name ${p.name}`,
  };
  const e = await engineWith(['iptables -A INPUT -m xstate --name one -j ACCEPT'], [stateful]);
  t.is((await e.run('proc write net/xt_xstate/one 10.0.0.1')).status, 0);
  const restored = await e.run('iptables-restore', '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m xstate --name one -j ACCEPT\nCOMMIT\n');
  t.is(restored.status, 0, restored.stderr);
  t.is(created.length, 1);
  t.is(released.length, 0);
  t.is((await e.run('proc cat net/xt_xstate/one')).stdout, '10.0.0.1');
  // A failing restore changes nothing and leaks no reference.
  const bad = await e.run('iptables-restore', '*filter\n-A INPUT -m xstate --name two -j ACCEPT\n-A INPUT -j NOPE\nCOMMIT\n');
  t.is(bad.status, 2);
  t.regex(bad.stderr, /Couldn't load target `NOPE'[\s\S]*Error occurred at line: 3/);
  t.is(e.nf.state.refs('xstate/one'), 1);
  t.is(e.nf.state.refs('xstate/two'), 0);
  // Persist, start a fresh engine from it.
  const saved = saveState(e.nf);
  const e2 = await testEngine([stateful]);
  restoreState(e2.nf, saved);
  t.is((await e2.run('proc cat net/xt_xstate/one')).stdout, '10.0.0.1');
  t.is((await e2.run('iptables -S INPUT')).stdout, '-P INPUT ACCEPT\n-A INPUT -p tcp -m xstate --name one -j ACCEPT\n');
  // Deleting the last rule releases the state.
  t.is((await e.run('iptables -F INPUT')).status, 0);
  t.is(released.length, 1);
});

test('restore is atomic across tables and names the failing line; --test changes nothing', async (t) => {
  const e = await engineWith(['iptables -A INPUT -s 1.1.1.1 -j DROP']);
  const before = (await e.run('iptables-save')).stdout;
  const input = '*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -s 2.2.2.2 -j ACCEPT\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A NOPE -j ACCEPT\nCOMMIT\n';
  const r = await e.run('iptables-restore', input);
  t.is(r.status, 1);
  t.regex(r.stderr, /^iptables-restore: line 7 failed\n/);
  t.is((await e.run('iptables-save')).stdout, before);
  const rejectInNat = '*filter\n-A INPUT -j ACCEPT\nCOMMIT\n*nat\n-A PREROUTING -p tcp -m xstate2 -j ACCEPT\nCOMMIT\n';
  t.is((await e.run('iptables-restore', rejectInNat)).status, 2);
  const ok = await e.run('iptables-restore --test', '*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n');
  t.is(ok.status, 0);
  t.is((await e.run('iptables-save')).stdout, before);
  const noCommit = await e.run('iptables-restore', '*filter\n-A INPUT -j ACCEPT\n');
  t.is(noCommit.status, 1);
  t.is(noCommit.stderr, 'iptables-restore: COMMIT expected at line 3\n');
  const badPolicy = await e.run('iptables-restore', '*filter\n:INPUT FOO [0:0]\nCOMMIT\n');
  t.regex(badPolicy.stderr, /Can't set policy `FOO' on `INPUT' line 2: Bad policy name/);
  const noflush = await e.run('iptables-restore -n', '*filter\n-A INPUT -s 3.3.3.3 -j DROP\nCOMMIT\n');
  t.is(noflush.status, 0);
  t.is((await e.run('iptables -S INPUT')).stdout, '-P INPUT ACCEPT\n-A INPUT -s 1.1.1.1/32 -j DROP\n-A INPUT -s 3.3.3.3/32 -j DROP\n');
});

/** Random rule sets: the classifier must give the verdicts and counters of a plain scan. */
test.serial('classifier = linear scan (property)', async (t) => {
  const built = classifierCount();
  const addrs = ['10.0.0.1', '10.0.0.2', '10.0.1.1', '192.168.0.1', '172.16.5.5'];
  const ruleArb = fc.record({
    src: fc.option(fc.tuple(fc.constantFrom(...addrs), fc.constantFrom(32, 24, 16, 8)), { nil: undefined }),
    dst: fc.option(fc.constantFrom(...addrs), { nil: undefined }),
    srcInv: fc.boolean(),
    proto: fc.constantFrom('', 'tcp', 'udp', 'icmp'),
    dport: fc.option(fc.integer({ min: 20, max: 25 }), { nil: undefined }),
    target: fc.constantFrom('ACCEPT', 'DROP', 'RETURN', '', 'sub'),
  });
  type RuleValue = typeof ruleArb extends fc.Arbitrary<infer T> ? T : never;
  const lineOf = (r: RuleValue, chain: string) => {
    let l = `iptables -A ${chain}`;
    if (r.src) l += `${r.srcInv ? ' !' : ''} -s ${r.src[0]}/${r.src[1]}`;
    if (r.dst) l += ` -d ${r.dst}`;
    if (r.proto) l += ` -p ${r.proto}`;
    if (r.dport !== undefined && (r.proto === 'tcp' || r.proto === 'udp')) l += ` --dport ${r.dport}`;
    const target = chain === 'sub' && r.target === 'sub' ? 'ACCEPT' : r.target;
    if (target) l += ` -j ${target}`;
    return l;
  };
  const pktArb = fc.record({
    src: fc.constantFrom(...addrs, '10.0.0.77', '8.8.8.8'),
    dst: fc.constantFrom(...addrs),
    proto: fc.constantFrom<'tcp' | 'udp' | 'icmp'>('tcp', 'udp', 'icmp'),
    dport: fc.integer({ min: 19, max: 26 }),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(ruleArb, { minLength: 8, maxLength: 40 }), fc.array(ruleArb, { maxLength: 12 }), fc.array(pktArb, { minLength: 1, maxLength: 20 }), async (main, sub, pkts) => {
      const lines = ['iptables -N sub', 'iptables -P FORWARD DROP', ...sub.map((r) => lineOf(r, 'sub')), ...main.map((r) => lineOf(r, 'FORWARD'))];
      const results: string[] = [];
      for (const classify of [true, false]) {
        setClassifierEnabled(classify);
        try {
          const e = await engineWith(lines);
          const verdicts = pkts.map((p) => e.nf.hook(Hook.FORWARD, packet({ ...p, sport: 1000 }, 'a', 'b')));
          results.push(JSON.stringify(verdicts) + (await e.run('iptables-save -c')).stdout);
        } finally {
          setClassifierEnabled(true);
        }
      }
      return results[0] === results[1];
    }),
    { numRuns: 60 },
  );
  t.true(classifierCount() - built > 10, 'the generated rule sets were indexed');
});

test.serial('classifier = linear scan for IPv6 prefixes and ports (property)', async (t) => {
  const built = classifierCount();
  const addrs = ['2001:db8::1', '2001:db8::2', '2001:db8:0:1::1', '2001:db8:1::5', 'fe80::1'];
  const ruleArb = fc.record({
    src: fc.option(fc.tuple(fc.constantFrom(...addrs), fc.constantFrom(128, 64, 48, 32)), { nil: undefined }),
    dst: fc.option(fc.constantFrom(...addrs), { nil: undefined }),
    dstInv: fc.boolean(),
    proto: fc.constantFrom('', 'tcp', 'udp'),
    dport: fc.option(fc.integer({ min: 20, max: 23 }), { nil: undefined }),
    target: fc.constantFrom('ACCEPT', 'DROP', ''),
  });
  type RuleValue = typeof ruleArb extends fc.Arbitrary<infer T> ? T : never;
  const lineOf = (r: RuleValue) => {
    let l = 'ip6tables -A FORWARD';
    if (r.src) l += ` -s ${r.src[0]}/${r.src[1]}`;
    if (r.dst) l += `${r.dstInv ? ' !' : ''} -d ${r.dst}`;
    if (r.proto) l += ` -p ${r.proto}`;
    if (r.dport !== undefined && r.proto) l += ` --dport ${r.dport}`;
    if (r.target) l += ` -j ${r.target}`;
    return l;
  };
  const pktArb = fc.record({
    src: fc.constantFrom(...addrs, '2001:db8::99', '2001:db9::1'),
    dst: fc.constantFrom(...addrs),
    proto: fc.constantFrom<'tcp' | 'udp'>('tcp', 'udp'),
    dport: fc.integer({ min: 19, max: 24 }),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(ruleArb, { minLength: 8, maxLength: 40 }), fc.array(pktArb, { minLength: 1, maxLength: 20 }), async (rules, pkts) => {
      const results: string[] = [];
      for (const classify of [true, false]) {
        setClassifierEnabled(classify);
        try {
          const e = await engineWith(['ip6tables -P FORWARD DROP', ...rules.map(lineOf)]);
          const verdicts = pkts.map((p) => e.nf.hook(Hook.FORWARD, packet({ ...p, sport: 1000 }, 'a', 'b')));
          results.push(JSON.stringify(verdicts) + (await e.run('ip6tables-save -c')).stdout);
        } finally {
          setClassifierEnabled(true);
        }
      }
      return results[0] === results[1];
    }),
    { numRuns: 60 },
  );
  t.true(classifierCount() - built > 10, 'the generated rule sets were indexed');
});

test('a target that sends a packet through OUTPUT from deep inside a chain walk leaves the walk intact (re-entrancy)', async (t) => {
  let nfRef: import('../router/netfilter/engine.js').Netfilter | null = null;
  const outputVerdicts: Verdict[] = [];
  const emitter: TargetExtension<null> = {
    kind: 'target', name: 'XEMIT', families: [4], options: [],
    parse: () => null,
    check: () => ({
      target: () => {
        // What the router does with emitLocal: the new packet traverses OUTPUT right away.
        const reply = packet({ src: '192.0.2.1', dst: '198.51.100.1', proto: 'udp', dport: 9 }, null, 'eth0');
        outputVerdicts.push(nfRef!.hook(Hook.OUTPUT, reply));
        return XT_CONTINUE;
      },
    }),
    save: () => '',
  };
  const e = await engineWith(
    [
      'iptables -N a', 'iptables -N b', 'iptables -N o1', 'iptables -N o2',
      'iptables -P INPUT DROP',
      'iptables -A INPUT -j a',
      'iptables -A INPUT -p tcp -j ACCEPT',
      'iptables -A a -j b',
      'iptables -A a -j RETURN',
      'iptables -A b -j XEMIT',
      'iptables -A b -p udp -j DROP',
      'iptables -P OUTPUT DROP',
      'iptables -A OUTPUT -j o1',
      'iptables -A o1 -j o2',
      'iptables -A o2 -p udp --dport 9 -j ACCEPT',
    ],
    [emitter],
  );
  nfRef = e.nf;
  t.is(e.nf.hook(Hook.INPUT, packet(tcp('198.51.100.1', '192.0.2.1', 22), 'eth0')), Verdict.ACCEPT);
  t.deepEqual(outputVerdicts, [Verdict.ACCEPT]);
  const s = (await e.run('iptables-save -c')).stdout;
  t.regex(s, /\[1:40\] -A INPUT -p tcp -j ACCEPT/);
  t.regex(s, /\[1:40\] -A a -j RETURN/);
  t.regex(s, /\[1:28\] -A o2 -p udp -m udp --dport 9 -j ACCEPT/);
  t.regex(s, /:INPUT DROP \[0:0\]/);
});

test('policy counters restart at zero when the table changes, rule counters do not (iptables-legacy)', async (t) => {
  const e = await engineWith(['iptables -A INPUT -p udp -j ACCEPT']);
  e.nf.hook(Hook.INPUT, packet(tcp('1.1.1.1', '2.2.2.2', 80), 'eth0'));
  e.nf.hook(Hook.INPUT, packet({ src: '1.1.1.1', dst: '2.2.2.2', proto: 'udp' }, 'eth0'));
  t.is((await e.run('iptables -S INPUT -v')).stdout, '-P INPUT ACCEPT -c 1 40\n-A INPUT -p udp -c 1 28 -j ACCEPT\n');
  await e.run('iptables -t mangle -A FORWARD -j ACCEPT');
  t.is((await e.run('iptables -S INPUT -v')).stdout, '-P INPUT ACCEPT -c 1 40\n-A INPUT -p udp -c 1 28 -j ACCEPT\n', 'another table: untouched');
  await e.run('iptables -t filter -N x');
  t.is((await e.run('iptables -S INPUT -v')).stdout, '-P INPUT ACCEPT -c 0 0\n-A INPUT -p udp -c 1 28 -j ACCEPT\n');
});

test('a throwing extension drops that packet, is logged, and leaves the engine working', async (t) => {
  let armed = true;
  const faulty: MatchExtension<null> = {
    kind: 'match', name: 'xfaulty', families: [4], options: [],
    parse: () => null,
    check: () => ({
      match: () => {
        if (armed) throw new Error('boom');
        return false;
      },
    }),
    save: () => '',
  };
  const e = await engineWith(['iptables -N deep', 'iptables -A INPUT -j deep', 'iptables -A deep -m xfaulty -j DROP', 'iptables -A INPUT -j ACCEPT'], [faulty]);
  t.is(e.nf.hook(Hook.INPUT, packet(tcp('1.1.1.1', '2.2.2.2', 80), 'eth0')), Verdict.DROP);
  t.regex(e.services.logged[0].line, /extension fault in filter\/INPUT, packet dropped: boom/);
  armed = false;
  for (let i = 0; i < 3; i++) t.is(e.nf.hook(Hook.INPUT, packet(tcp('1.1.1.1', '2.2.2.2', 80), 'eth0')), Verdict.ACCEPT);
});

test.serial('classifier = linear scan for chains made of runs of differently keyed rules (property)', async (t) => {
  const built = classifierCount();
  const blockArb = fc.record({
    kind: fc.constantFrom('src', 'dst24', 'dport', 'sport', 'none'),
    size: fc.integer({ min: 1, max: 20 }),
    seed: fc.integer({ min: 0, max: 1000 }),
    target: fc.constantFrom('ACCEPT', 'DROP', 'RETURN', ''),
  });
  type Block = typeof blockArb extends fc.Arbitrary<infer T> ? T : never;
  const linesOf = (b: Block): string[] => {
    const out: string[] = [];
    for (let i = 0; i < b.size; i++) {
      const v = (b.seed + i * 7) % 12;
      const j = b.target ? ` -j ${b.target}` : '';
      if (b.kind === 'src') out.push(`iptables -A FORWARD -s 10.0.0.${v}${j}`);
      else if (b.kind === 'dst24') out.push(`iptables -A FORWARD -d 10.0.${v}.0/24${j}`);
      else if (b.kind === 'dport') out.push(`iptables -A FORWARD -p tcp --dport ${1000 + v}${j}`);
      else if (b.kind === 'sport') out.push(`iptables -A FORWARD -p udp --sport ${2000 + v}${j}`);
      else out.push(`iptables -A FORWARD -i in${v % 3}${j}`);
    }
    return out;
  };
  const pktArb = fc.record({
    src: fc.constantFrom('10.0.0.1', '10.0.0.5', '10.0.0.11', '10.0.3.1', '192.168.1.1'),
    dst: fc.constantFrom('10.0.0.1', '10.0.5.9', '10.0.11.2', '172.16.0.1'),
    proto: fc.constantFrom<'tcp' | 'udp'>('tcp', 'udp'),
    sport: fc.constantFrom(2000, 2003, 2011, 5000),
    dport: fc.constantFrom(1000, 1005, 1011, 80),
    inIf: fc.constantFrom('in0', 'in1', 'in2', 'in9'),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(blockArb, { minLength: 1, maxLength: 8 }), fc.array(pktArb, { minLength: 1, maxLength: 25 }), async (blocks, pkts) => {
      const lines = ['iptables -P FORWARD DROP', ...blocks.flatMap(linesOf), 'iptables -A FORWARD -j ACCEPT'];
      const results: string[] = [];
      for (const classify of [true, false]) {
        setClassifierEnabled(classify);
        try {
          const e = await engineWith(lines);
          const verdicts = pkts.map((p) => e.nf.hook(Hook.FORWARD, packet({ src: p.src, dst: p.dst, proto: p.proto, sport: p.sport, dport: p.dport }, p.inIf, 'out0')));
          results.push(JSON.stringify(verdicts) + (await e.run('iptables-save -c')).stdout);
        } finally {
          setClassifierEnabled(true);
        }
      }
      return results[0] === results[1];
    }),
    { numRuns: 80 },
  );
  t.true(classifierCount() - built > 20, 'runs were indexed');
});

test('security runs after filter in INPUT, FORWARD and OUTPUT (priority 50), before INPUT nat; DROP there drops what filter accepted', async (t) => {
  const trace: string[] = [];
  const ct = {
    in: (pkt: PacketContext) => (trace.push(`ct:in:${pkt.hook}`), (pkt.ctState = 2), Verdict.ACCEPT),
    confirm: (pkt: PacketContext) => void trace.push(`ct:confirm:${pkt.hook}`),
  };
  const lines: string[] = ['iptables -N ctuser', 'iptables -A ctuser -m state --state INVALID -j DROP'];
  for (const [table, cs] of [['nat', ['INPUT', 'OUTPUT']], ['filter', ['INPUT', 'FORWARD', 'OUTPUT']], ['security', ['INPUT', 'FORWARD', 'OUTPUT']]] as const) {
    for (const c of cs) lines.push(`iptables -t ${table} -A ${c} -j XTRACE`);
  }
  const e = await engineWith(lines, [tracer(trace)], ct);
  const run = (h: Hook) => {
    trace.length = 0;
    const p = packet(tcp('1.1.1.1', '2.2.2.2', 5));
    p.ctState = 2;
    const v = e.nf.hook(h, p);
    return `${trace.join(' ')} => ${v}`;
  };
  t.is(run(Hook.INPUT), 'filter:INPUT:1 security:INPUT:1 nat:INPUT:1 ct:confirm:1 => 1');
  t.is(run(Hook.FORWARD), 'filter:FORWARD:2 security:FORWARD:2 => 1');
  t.is(run(Hook.OUTPUT), 'ct:in:3 nat:OUTPUT:3 filter:OUTPUT:3 security:OUTPUT:3 => 1');
  for (const l of ['iptables -I INPUT -j ACCEPT', 'iptables -t security -I INPUT -p tcp --dport 5 -j DROP']) t.is((await e.run(l)).status, 0, l);
  t.is(run(Hook.INPUT), ' => 0', 'ACCEPTed by filter, dropped by security: nat and confirm never see it');
  const save = (await e.run('iptables-save -c -t security')).stdout;
  // Policy counters restarted with the table change (as in the kernel); XTRACE saw the first INPUT packet only.
  t.regex(save, /^\*security\n:INPUT ACCEPT \[0:0\]\n:FORWARD ACCEPT \[0:0\]\n:OUTPUT ACCEPT \[0:0\]\n\[1:40\] -A INPUT -p tcp -m tcp --dport 5 -j DROP\n\[1:40\] -A INPUT -j XTRACE\n\[1:40\] -A FORWARD -j XTRACE\n\[1:40\] -A OUTPUT -j XTRACE\nCOMMIT\n/m);
  t.regex((await e.run('iptables -t security -L INPUT -n')).stdout, /^Chain INPUT \(policy ACCEPT\)\ntarget +prot opt source +destination +\nDROP +6 +-- +0\.0\.0\.0\/0 +0\.0\.0\.0\/0 +tcp dpt:5\n/);
  const r = await e.run('iptables -t security -A PREROUTING -j ACCEPT');
  t.is(r.status, 1, 'security has no PREROUTING chain');
});

/** A match that hot-drops every packet with TCP destination port `--port`, and never matches. */
function hotdropper(): MatchExtension<number> {
  return {
    kind: 'match', name: 'xhotdrop', families: [4, 6], options: [{ name: 'port', arg: 'required' }],
    parse: (opts) => Number(opts[0]?.value ?? 0),
    check: (port) => ({
      match: (pkt: PacketContext) => {
        if (pkt.dport === port) pkt.hotdrop = true;
        return false;
      },
    }),
    save: (port) => ` --port ${port}`,
  };
}

test('a match that hot-drops drops the packet at once: later rules and the policy never see it, its rule is not counted', async (t) => {
  const e = await engineWith(
    ['iptables -N sub', 'iptables -A sub -m xhotdrop --port 7 -j ACCEPT', 'iptables -A sub -j RETURN', 'iptables -A INPUT -j sub', 'iptables -A INPUT -j ACCEPT', 'iptables -t security -A INPUT -j ACCEPT'],
    [hotdropper()],
  );
  const cases: [number, Verdict][] = [[7, Verdict.DROP], [8, Verdict.ACCEPT], [7, Verdict.DROP]];
  for (const [port, want] of cases) {
    const p = packet(tcp('10.0.0.1', '10.0.0.2', port));
    t.is(e.nf.hook(Hook.INPUT, p), want, `dport ${port}`);
  }
  // A context reused for the next packet starts clean: the engine clears hotdrop at hook entry.
  const reused = packet(tcp('10.0.0.1', '10.0.0.2', 7));
  t.is(e.nf.hook(Hook.INPUT, reused), Verdict.DROP);
  t.true(reused.hotdrop);
  packet(tcp('10.0.0.1', '10.0.0.2', 8), null, null, reused);
  t.is(e.nf.hook(Hook.INPUT, reused), Verdict.ACCEPT);
  const save = (await e.run('iptables-save -c')).stdout;
  t.regex(save, /\[0:0\] -A sub -m xhotdrop --port 7 -j ACCEPT/);
  t.regex(save, /\[5:200\] -A INPUT -j sub/, 'the jump into sub counted every packet');
  t.regex(save, /\[2:80\] -A INPUT -j ACCEPT/, 'only the two port-8 packets reached the rule after the jump');
  t.regex(save, /\[2:80\] -A sub -j RETURN/);
  t.regex((await e.run('iptables-save -c -t security')).stdout, /\[2:80\] -A INPUT -j ACCEPT/, 'a hot-dropped packet leaves the hook: security never sees it');
});

test('CheckEnv.subTarget: the registry target for the family, parsed with iptables words, checked in the caller rule context, destroyed with the caller', async (t) => {
  const events: string[] = [];
  // XSUBMARK: a target with an option parser and a table restriction, the callee.
  const subMark: TargetExtension<number> = {
    kind: 'target', name: 'XSUBMARK', families: [4], tables: ['mangle', 'filter'], options: [{ name: 'set', arg: 'required' }, { name: 'verbose', arg: 'none' }],
    parse: (opts) => {
      const v = opts.find((o) => o.name === 'set')?.value;
      if (v === undefined || v === null) throw new Error('XSUBMARK needs --set');
      return Number(v);
    },
    check: (mark, env) => {
      events.push(`check XSUBMARK ${mark} in ${env.rule.table}/${env.rule.chain}`);
      return {
        target: (pkt: PacketContext) => ((pkt.mark = mark), XT_CONTINUE),
        activate: () => void events.push(`activate XSUBMARK ${mark}`),
        destroy: () => void events.push(`destroy XSUBMARK ${mark}`),
      };
    },
    save: (mark) => ` --set ${mark}`,
  };
  // XCALLER: takes its sub-target's name and words from its own options, the way CHAOS picks DELUDE or TARPIT.
  const caller: TargetExtension<{ name: string; words: string[] }> = {
    kind: 'target', name: 'XCALLER', families: [4], options: [{ name: 'call', arg: 'required' }],
    parse: (opts) => {
      const [name, ...words] = (opts[0]?.value ?? '').split(' ');
      return { name, words };
    },
    check: (p, env) => {
      const sub = env.subTarget(p.name, p.words);
      return {
        target: (pkt: PacketContext) => (sub.target(pkt), Verdict.ACCEPT),
        destroy: () => void events.push('destroy XCALLER'),
      };
    },
    save: (p) => ` --call "${[p.name, ...p.words].join(' ')}"`,
  };
  const e = await engineWith([], [subMark, caller]);
  t.is((await e.run('iptables -A INPUT -j XCALLER --call "XSUBMARK --se=0x2a"')).status, 0, 'prefix and --opt=value, as getopt reads them');
  t.deepEqual(events, ['check XSUBMARK 42 in filter/INPUT', 'activate XSUBMARK 42']);
  const p = packet(tcp('10.0.0.1', '10.0.0.2', 1));
  t.is(e.nf.hook(Hook.INPUT, p), Verdict.ACCEPT);
  t.is(p.mark, 42);
  events.length = 0;
  // Refusals say what iptables says, and leave the running rules alone.
  const refused: [string, number, RegExp][] = [
    ['iptables -A INPUT -j XCALLER --call "XNOSUCH"', 2, /Couldn't load target `XNOSUCH':No such file or directory/],
    ['iptables -A INPUT -j XCALLER --call "XSUBMARK --bogus 1"', 2, /unknown option "--bogus"/],
    ['iptables -A INPUT -j XCALLER --call "XSUBMARK --set"', 2, /option "--set" requires an argument/],
    ['iptables -A INPUT -j XCALLER --call "XSUBMARK ! --verbose --set 1"', 2, /XSUBMARK: option "--verbose" cannot be inverted/],
    ['iptables -t raw -A PREROUTING -j XCALLER --call "XSUBMARK --set 1"', 1, /XSUBMARK target: only valid in mangle\/filter table, not raw/],
  ];
  for (const [line, status, msg] of refused) {
    const r = await e.run(line);
    t.is(r.status, status, line);
    t.regex(r.stderr, msg, line);
  }
  t.deepEqual(events, [], 'nothing checked, nothing destroyed twice');
  // The caller's check fails after its sub-target was checked: the sub-target is destroyed.
  const failing: TargetExtension<null> = {
    kind: 'target', name: 'XFAILAFTER', families: [4], options: [],
    parse: () => null,
    check: (_p, env) => {
      env.subTarget('XSUBMARK', ['--set', '7']);
      throw new Error('refused after the sub-target');
    },
    save: () => '',
  };
  const e2 = await engineWith([], [subMark, failing]);
  events.length = 0;
  t.is((await e2.run('iptables -A INPUT -j XFAILAFTER')).status, 1);
  t.deepEqual(events, ['check XSUBMARK 7 in filter/INPUT', 'destroy XSUBMARK 7']);
  // Deleting the rule destroys the caller, then its sub-target.
  events.length = 0;
  t.is((await e.run('iptables -D INPUT 1')).status, 0);
  t.deepEqual(events, ['destroy XCALLER', 'destroy XSUBMARK 42']);
});
