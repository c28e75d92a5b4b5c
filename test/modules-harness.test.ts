/**
 * The module test harness (test/helpers/xt-harness.ts) itself: option words
 * through the rule parser's getopt, placement refusals in the kernel's words,
 * named state with proc files and ticks on the fake clock, recorded services
 * with set answers, sub-targets. Two small test-registry extensions stand in
 * for real ones.
 */
import test from 'ava';
import { Hook, Verdict, type PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type MatchExtension, type TargetExtension } from '../xt/extension.js';
import { RouteKind } from '../xt/services.js';
import { NfError } from '../router/netfilter/errors.js';
import { XtHarness, options } from './helpers/xt-harness.js';
import { ip4, tcpSeg, udpDgram } from './modules-fixtures.js';

interface Counter {
  hits: number;
  ticks: number;
}

/** -m xcount --name N [--step S]: counts packets in named state, proc file net/xt_xcount/N ("hits ticks"; write a number to set hits), halves hits every second. */
const xcount: MatchExtension<{ name: string; step: number }> = {
  kind: 'match',
  name: 'xcount',
  families: [4, 6],
  hooks: [Hook.PREROUTING, Hook.INPUT],
  options: [
    { name: 'name', arg: 'required' },
    { name: 'step', arg: 'required', invertible: true },
    { name: 'pair', arg: 'required', nargs: 2 },
  ],
  parse(opts) {
    const name = opts.find((o) => o.name === 'name')?.value;
    if (!name) throw new XtError('xcount: --name is required');
    return { name, step: Number(opts.find((o) => o.name === 'step')?.value ?? 1) };
  },
  check(p, env) {
    const key = `xcount:${p.name}`;
    const c = env.state.declare<Counter>({
      key,
      create: () => ({ hits: 0, ticks: 0 }),
      proc: {
        path: `net/xt_xcount/${p.name}`,
        read: (v) => `${v.hits} ${v.ticks}\n`,
        write: (v, data) => {
          if (!/^\d+\n?$/.test(data)) throw new XtError(`xcount: bad value "${data}"`);
          v.hits = Number(data);
        },
      },
      tick: { everyMs: 1000, run: (v) => ((v.hits = v.hits >> 1), v.ticks++) },
    });
    return { match: () => ((c.hits += p.step), true), destroy: () => env.state.release(key) };
  },
  save: (p) => ` --name ${p.name}`,
};

/** -j XPROBE: exercises every service once and returns what route() said. */
const xprobe: TargetExtension<null> = {
  kind: 'target',
  name: 'XPROBE',
  families: [4],
  tables: ['filter', 'security'],
  options: [],
  parse: () => null,
  check(_p, env) {
    return {
      target(pkt: PacketContext) {
        const s = env.services;
        const route = s.route(4, Uint32Array.of(pkt.dst4));
        const eth = s.iface('eth0');
        s.emit(pkt.buf, pkt.l3off, pkt.l3len, { family: 4, ctFrom: pkt, oif: eth?.name });
        s.dup(pkt, { gateway: Uint32Array.of(0x0a000063) });
        s.icmpError(pkt, 3, 13, 0);
        s.log(4, `XPROBE r=${s.random()} now=${s.now()} wall=${s.wallNow()}`);
        return route === null ? Verdict.DROP : route.kind === RouteKind.LOCAL ? Verdict.ACCEPT : XT_CONTINUE;
      },
    };
  },
  save: () => '',
};

test('option words go through the rule parser: iptables messages for bad words, prefixes, --opt=value, nargs', (t) => {
  // [words, parsed options as name=value (! for inverted) or the iptables message]
  const rows: [string, string][] = [
    ['--name a --step 2', 'name=a step=2'],
    ['--na=a ! --st 3', 'name=a !step=3'],
    ['--pair 1 2', 'pair=1 2'],
    ['--pair 1', '--pair requires two args.'],
    ['--name', 'option "--name" requires an argument'],
    ['! --name a', 'xcount: option "--name" cannot be inverted.\n'],
    ['--bogus 1', 'unknown option "--bogus"'],
    ['a', "Bad argument `a'"],
    ['! ! --step 1', 'multiple consecutive ! not allowed'],
  ];
  for (const [words, want] of rows) {
    try {
      const got = options(xcount, words)
        .map((o) => `${o.inverted ? '!' : ''}${o.name}=${o.value}`)
        .join(' ');
      t.is(got, want, words);
    } catch (e) {
      t.true(e instanceof NfError, words);
      t.is((e as NfError).message, want, words);
    }
  }
  const h = new XtHarness();
  const err = t.throws(() => h.parse(xcount, '--step 1'), { instanceOf: NfError });
  t.is(err?.message, 'xcount: --name is required', "the extension's own parse error, as iptables prints it");
  t.is(err?.status, 2);
});

test('a row is words, place, packet bytes and the expected answer', (t) => {
  const h = new XtHarness();
  h.services.addRoute('0.0.0.0/0', { kind: RouteKind.UNICAST, oif: null, gateway: null, mtu: 1500, hopLimit: 64 });
  h.services.addRoute('10.0.0.2/32', { kind: RouteKind.LOCAL, oif: null, gateway: null, mtu: 65535, hopLimit: 64 });
  // [words, packet, place, answer]
  const rows: [string, Buffer, Parameters<XtHarness['verdict']>[3], number | boolean][] = [
    ['--name r1', ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2)), {}, true],
    ['--name r1', ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2)), { table: 'raw', chain: 'PREROUTING' }, true],
    ['', ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2)), {}, Verdict.ACCEPT],
    ['', ip4('10.0.0.1', '10.9.9.9', udpDgram(1, 2)), { table: 'security', chain: 'OUTPUT' }, XT_CONTINUE],
  ];
  for (const [words, bytes, place, want] of rows) {
    const got = typeof want === 'boolean' ? h.matches(xcount, words, bytes, place) : h.verdict(xprobe, words, bytes, place);
    t.is(got, want, `${words} ${JSON.stringify(place)}`);
  }
  t.is(h.readProc('net/xt_xcount/r1'), '2 0\n', 'both rows counted into the one named state');
  t.is(h.services.icmpErrors[1].hook, Hook.OUTPUT, 'the packet ran in the place\'s hook');
});

test('check runs the kernel placement checks first, at the place a row names', (t) => {
  const h = new XtHarness();
  // [place, refusal or '' for accepted]
  const rows: [Parameters<XtHarness['target']>[2], string][] = [
    [{}, ''],
    [{ table: 'security', chain: 'FORWARD' }, ''],
    [{ table: 'mangle', chain: 'INPUT' }, 'x_tables: ip_tables: XPROBE target: only valid in filter/security table, not mangle'],
  ];
  for (const [place, want] of rows) {
    if (want === '') t.notThrows(() => h.target(xprobe, '', place), JSON.stringify(place));
    else t.is((t.throws(() => h.target(xprobe, '', place), { instanceOf: NfError }) as NfError).detail, want);
  }
  const hooks = t.throws(() => h.match(xcount, '--name a', { chain: 'sub', hooks: [Hook.INPUT, Hook.FORWARD] }), { instanceOf: NfError });
  t.is(hooks?.detail, 'x_tables: ip_tables: xcount match: used from hooks FORWARD, but only usable from PREROUTING/INPUT');
  t.is(hooks?.status, 1);
});

test('named state: shared by rules, proc file read and written by path, ticks on the fake clock, released with the last rule', (t) => {
  const h = new XtHarness();
  const a = h.match(xcount, '--name a --step 4');
  const b = h.match(xcount, '--name a --step 1', { chain: 'PREROUTING', table: 'raw' });
  const pkt = h.packet(ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2)));
  // [action, proc text after it]
  const steps: [() => void, string][] = [
    [() => a.match(pkt), '4 0\n'],
    [() => b.match(pkt), '5 0\n'],
    [() => h.advance(999), '5 0\n'],
    [() => h.advance(1), '2 1\n'],
    [() => h.writeProc('/proc/net/xt_xcount/a', '40\n'), '40 1\n'],
    // Far behind (3500 >= 2000): one tick, not two; the next is due a period after now (4500).
    [() => h.advance(2500), '20 2\n'],
    [() => h.advance(500), '20 2\n'],
    [() => h.advance(500), '10 3\n'],
  ];
  for (const [i, [act, want]] of steps.entries()) {
    act();
    t.is(h.readProc('net/xt_xcount/a'), want, `step ${i}`);
  }
  t.throws(() => h.writeProc('net/xt_xcount/a', 'x'), { instanceOf: XtError, message: 'xcount: bad value "x"' });
  t.is(h.readProc('net/xt_xcount/a'), '10 3\n', 'a refused write changes nothing');
  t.deepEqual(h.proc.paths(), ['net/xt_xcount/a']);
  t.is(h.state.refs('xcount:a'), 2);
  h.destroyAll();
  t.is(h.state.refs('xcount:a'), 0);
  t.deepEqual(h.proc.paths(), [], 'the proc file goes with the last reference');
});

test('services: calls recorded with their options, route/iface answers set by the test, clocks and random() deterministic', (t) => {
  const run = (setup: (h: XtHarness) => void) => {
    const h = new XtHarness({ seed: 7 });
    setup(h);
    const inst = h.target(xprobe);
    h.services.advance(1500);
    const pkt = h.packet(ip4('10.0.0.1', '192.0.2.7', tcpSeg(1000, 80, 0x02)), { hook: Hook.FORWARD, inIf: 'eth1' });
    return { h, pkt, verdict: inst.target(pkt) };
  };
  // [routes, verdict]: no route drops, LOCAL accepts, the longest prefix decides
  const routes: [[string, RouteKind][], number][] = [
    [[], Verdict.DROP],
    [[['0.0.0.0/0', RouteKind.UNICAST]], XT_CONTINUE],
    [[['0.0.0.0/0', RouteKind.UNICAST], ['192.0.2.7/32', RouteKind.LOCAL]], Verdict.ACCEPT],
    [[['192.0.2.7/32', RouteKind.LOCAL], ['192.0.2.0/24', RouteKind.UNREACHABLE]], Verdict.ACCEPT],
    [[['192.0.2.0/25', RouteKind.UNICAST], ['192.0.2.128/25', RouteKind.LOCAL]], XT_CONTINUE],
  ];
  for (const [rows, want] of routes) {
    const { verdict } = run((h) => {
      for (const [prefix, kind] of rows) h.services.addRoute(prefix, { kind, oif: null, gateway: null, mtu: 1500, hopLimit: 64 });
    });
    t.is(verdict, want, JSON.stringify(rows));
  }
  const { h, pkt } = run((h) => h.addIface('eth0', ['10.0.0.254/24', '2001:db8::1/64']));
  t.is(h.services.iface('eth0')?.addrs4[0], 0x0a0000fe);
  t.deepEqual(h.services.iface('eth0')?.prefixes6, [64]);
  t.is(h.services.iface('nosuch'), null);
  t.is(h.services.emitted.length, 1);
  t.is(h.services.emitted[0].how.ctFrom, pkt, 'emit options recorded as given');
  t.is(h.services.emitted[0].how.oif, 'eth0');
  t.deepEqual(h.services.emitted[0].bytes, ip4('10.0.0.1', '192.0.2.7', tcpSeg(1000, 80, 0x02)));
  t.is(h.services.dups[0].hook, Hook.FORWARD);
  t.deepEqual([...h.services.dups[0].how.gateway], [0x0a000063]);
  t.like(h.services.icmpErrors[0], { family: 4, hook: Hook.FORWARD, type: 3, code: 13, info: 0 });
  const line = h.services.logged[0].line;
  t.regex(line, /^XPROBE r=\d+ now=1500 wall=1767225601500$/);
  t.is(run(() => undefined).h.services.logged[0].line, line, 'same seed, same random()');
  t.not(new XtHarness({ seed: 8 }).services.random(), new XtHarness({ seed: 7 }).services.random());
});

test('sub-targets resolve through the harness registry as in the engine, and are destroyed with their caller', (t) => {
  const events: string[] = [];
  const callee: TargetExtension<number> = {
    kind: 'target', name: 'XCALLEE', families: [4], tables: ['filter'], options: [{ name: 'n', arg: 'required' }],
    parse: (o) => Number(o[0]?.value),
    check: (n) => ({ target: () => XT_CONTINUE, destroy: () => void events.push(`destroy callee ${n}`) }),
    save: () => '',
  };
  const caller: TargetExtension<null> = {
    kind: 'target', name: 'XCALLER', families: [4], options: [],
    parse: () => null,
    check: (_p, env) => {
      const sub = env.subTarget('XCALLEE', ['--n', '5']);
      return { target: (p: PacketContext) => sub.target(p), destroy: () => void events.push('destroy caller') };
    },
    save: () => '',
  };
  const h = new XtHarness({ extensions: [callee] });
  t.is(h.target(caller).target(h.packet(ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2)))), XT_CONTINUE);
  h.destroyAll();
  t.deepEqual(events, ['destroy caller', 'destroy callee 5']);
  const raw = t.throws(() => h.target(caller, '', { table: 'raw', chain: 'OUTPUT' }), { instanceOf: NfError });
  t.is(raw?.detail, 'x_tables: ip_tables: XCALLEE target: only valid in filter table, not raw');
  t.throws(() => new XtHarness().target(caller), { instanceOf: NfError, message: "Couldn't load target `XCALLEE':No such file or directory\n" });
});
