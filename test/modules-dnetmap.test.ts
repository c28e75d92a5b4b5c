/**
 * DNETMAP on the module harness (fake clock, real proc files and state) and
 * on the engine for a restart: bindings from the LRU head, refreshes, the
 * "full" episode, expiry and reuse of the head, PREROUTING's reverse lookup,
 * the proc views (data and _stat, upstream's v3 formats) after each step,
 * every proc write command, the module parameters, and the bindings saved and
 * aged by the downtime across a restart. The NAT service is a recorder: what
 * DNETMAP asks conntrack to bind (side and address) is the assertion; the
 * translation itself is conntrack's (tested with real traffic in
 * test/integration-rawnat-dnetmap.test.ts).
 */
import test from 'ava';
import { CtState, Hook, Verdict } from '../xt/packet.js';
import { XT_CONTINUE } from '../xt/extension.js';
import type { NatRange, NatService, NatSide } from '../xt/nat.js';
import DNETMAP from '../modules/DNETMAP.js';
import { XtHarness, RecordingServices, type Place } from './helpers/xt-harness.js';
import { ip4, ip6, udpDgram } from './modules-fixtures.js';
import { ipv4ToString, ipv6ToString } from '../dataplane/addr.js';
import { loadExtensions } from '../modules/registry.js';
import { Netfilter, netfilterCommands, restoreState, saveState } from '../router/netfilter/index.js';
import { splitLine } from '../router/netfilter/commands.js';
import type { PacketContext } from '../xt/packet.js';

interface NatCall {
  hook: Hook;
  side: NatSide;
  to: string;
}

/** A NAT service that records what it was asked to bind. */
function natRecorder(family: 4 | 6 = 4): { nat: NatService; calls: NatCall[] } {
  const calls: NatCall[] = [];
  return {
    calls,
    nat: {
      setup(pkt: PacketContext, side: NatSide, range: NatRange) {
        const to = family === 4 ? ipv4ToString(range.minAddr[0]) : ipv6ToString(range.minAddr);
        if (family === 4 && range.maxAddr[0] !== range.minAddr[0]) throw new Error('DNETMAP binds one address');
        calls.push({ hook: pkt.hook, side, to });
        return Verdict.ACCEPT;
      },
    },
  };
}

const POST: Place = { table: 'nat', chain: 'POSTROUTING' };
const PRE: Place = { table: 'nat', chain: 'PREROUTING' };
const SRC = 0 as NatSide;
const DST = 1 as NatSide;

function harness(settings: Record<string, unknown> = {}, family: 4 | 6 = 4) {
  const h = new XtHarness({ settings: { DNETMAP: settings } });
  const rec = natRecorder(family);
  Object.assign(h.services, { nat: rec.nat });
  const lines = () => h.services.logged.map((l) => l.line);
  return { h, calls: rec.calls, lines };
}

const out = (h: XtHarness, rule: ReturnType<XtHarness['target']>, src: string, dst = '192.0.2.1') =>
  rule.target(h.packet(ip4(src, dst, udpDgram(1000, 53)), { hook: Hook.POSTROUTING }));
const inb = (h: XtHarness, rule: ReturnType<XtHarness['target']>, dst: string, src = '192.0.2.1') =>
  rule.target(h.packet(ip4(src, dst, udpDgram(53, 1000)), { hook: Hook.PREROUTING }));

const DATA = 'net/xt_DNETMAP/20.0.0.0_30';
const STAT = 'net/xt_DNETMAP/20.0.0.0_30_stat';

test('bindings, refreshes, the full episode and expiries: proc views after each step (v3 formats, fake clock)', (t) => {
  const { h, calls, lines } = harness();
  const snat = h.target(DNETMAP, '--prefix 20.0.0.0/30', POST);
  const dnat = h.target(DNETMAP, '--prefix 20.0.0.0/30', PRE);
  t.deepEqual(lines(), ['xt_DNETMAP: new prefix 20.0.0.0/30'], 'one prefix object, shared by both rules');
  // Every address of the prefix is listed, free entries as 0.0.0.0 with expiry = creation time.
  t.is(h.readProc(DATA), ['0', '1', '2', '3'].map((i) => `0.0.0.0 -> 20.0.0.${i} --- ttl: 0 lasthit: -600\n`).join(''));
  t.is(h.readProc(STAT), '0 0 4 0 \n');

  t.is(out(h, snat, '10.0.0.1'), Verdict.ACCEPT);
  h.advance(10_000);
  t.is(out(h, snat, '10.0.0.2'), Verdict.ACCEPT);
  t.deepEqual(calls, [
    { hook: Hook.POSTROUTING, side: SRC, to: '20.0.0.0' },
    { hook: Hook.POSTROUTING, side: SRC, to: '20.0.0.1' },
  ]);
  t.is(h.readProc(DATA), [
    '10.0.0.1 -> 20.0.0.0 --- ttl: 590 lasthit: 0\n',
    '10.0.0.2 -> 20.0.0.1 --- ttl: 600 lasthit: 10\n',
    '0.0.0.0 -> 20.0.0.2 --- ttl: -10 lasthit: -600\n',
    '0.0.0.0 -> 20.0.0.3 --- ttl: -10 lasthit: -600\n',
  ].join(''));
  t.is(h.readProc(STAT), '2 0 4 595 \n');

  // A refresh: the same source again 100 s later keeps its address, TTL back to 600.
  h.advance(100_000);
  t.is(out(h, snat, '10.0.0.1'), Verdict.ACCEPT);
  t.is(calls.at(-1)!.to, '20.0.0.0');
  t.regex(h.readProc(DATA), /^10\.0\.0\.1 -> 20\.0\.0\.0 --- ttl: 600 lasthit: 110\n10\.0\.0\.2 -> 20\.0\.0\.1 --- ttl: 500 lasthit: 10\n/);
  t.is(h.readProc(STAT), '2 0 4 550 \n');

  // PREROUTING: a flow to a bound public address is DNATed to its host (and refreshes it).
  t.is(inb(h, dnat, '20.0.0.1'), Verdict.ACCEPT);
  t.deepEqual(calls.at(-1), { hook: Hook.PREROUTING, side: DST, to: '10.0.0.2' });
  t.is(inb(h, dnat, '20.0.0.2'), XT_CONTINUE, 'unbound address: continue');
  t.is(inb(h, dnat, '198.51.100.1'), XT_CONTINUE, 'not a pool address: continue');
  t.is(h.readProc(STAT), '2 0 4 600 \n');

  // Two more hosts take the free entries, a fifth finds the prefix full: logged once per episode.
  t.is(out(h, snat, '10.0.0.3'), Verdict.ACCEPT);
  t.is(out(h, snat, '10.0.0.4'), Verdict.ACCEPT);
  t.is(out(h, snat, '10.0.0.5'), XT_CONTINUE);
  t.is(out(h, snat, '10.0.0.6'), XT_CONTINUE);
  t.deepEqual(lines().filter((l) => l.includes('no free')), ['xt_DNETMAP: ip 10.0.0.5 - no free adresses in prefix 20.0.0.0/30']);
  t.is(h.readProc(STAT), '4 0 4 600 \n');

  // Expiry: 601 s later nothing is active; the expired bindings stay listed with negative TTLs.
  h.advance(601_000);
  t.is(h.readProc(STAT), '0 0 4 0 \n');
  t.regex(h.readProc(DATA), /^10\.0\.0\.1 -> 20\.0\.0\.0 --- ttl: -1 lasthit: 110\n/);
  // The man page: only bound (active) addresses are DNATed - an expired binding is not.
  t.is(inb(h, dnat, '20.0.0.0'), XT_CONTINUE);
  // A new host takes the LRU head (20.0.0.0, refreshed least recently), timing out its old binding.
  t.is(out(h, snat, '10.0.0.9'), Verdict.ACCEPT);
  t.is(calls.at(-1)!.to, '20.0.0.0');
  t.deepEqual(lines().slice(-2), ['xt_DNETMAP: timeout binding 10.0.0.1 -> 20.0.0.0', 'xt_DNETMAP: add binding 10.0.0.9 -> 20.0.0.0']);
  // A host whose binding expired (same prefix) gets it back, refreshed.
  t.is(out(h, snat, '10.0.0.3'), Verdict.ACCEPT);
  t.is(calls.at(-1)!.to, '20.0.0.2');
  t.is(h.readProc(STAT), '2 0 4 600 \n');
  t.is(h.readProc(DATA), [
    '10.0.0.9 -> 20.0.0.0 --- ttl: 600 lasthit: 711\n',
    '10.0.0.2 -> 20.0.0.1 --- ttl: -1 lasthit: 110\n',
    '10.0.0.3 -> 20.0.0.2 --- ttl: 600 lasthit: 711\n',
    '10.0.0.4 -> 20.0.0.3 --- ttl: -1 lasthit: 110\n',
  ].join(''));
  // The full episode ended (a binding was made): the next full prefix is logged again.
  h.destroyAll();
  t.throws(() => h.readProc(DATA), { message: /no proc file/ }, 'the last rule gone: the prefix and its files go');
});

test('--ttl, --reuse, --static, no --prefix, OUTPUT (source, as the man page says)', (t) => {
  const { h, calls } = harness();
  const a = h.target(DNETMAP, '--prefix 20.0.0.0/30 --ttl 200', POST);
  const b = h.target(DNETMAP, '--prefix 20.0.1.0/30', POST);
  const reuse = h.target(DNETMAP, '--prefix 20.0.1.0/30 --reuse', POST);
  const bare = h.target(DNETMAP, '', POST);
  const stat = h.target(DNETMAP, '--prefix 20.0.1.0/30 --static', POST);
  const neg = h.target(DNETMAP, '--prefix 20.0.0.0/30 --ttl -1', POST);
  const output = h.target(DNETMAP, '--prefix 20.0.0.0/30', { table: 'nat', chain: 'OUTPUT' });
  t.is(out(h, a, '10.0.0.1'), Verdict.ACCEPT);
  t.regex(h.readProc(DATA), /^10\.0\.0\.1 -> 20\.0\.0\.0 --- ttl: 200 lasthit: -400\n/, 'lasthit = expiry - default_ttl (upstream)');
  // A rule maps any source bound anywhere (another prefix) while the binding is active.
  t.is(out(h, b, '10.0.0.1'), Verdict.ACCEPT);
  t.is(calls.at(-1)!.to, '20.0.0.0');
  // Rule b (no --ttl) refreshed it with default_ttl; a negative --ttl uses it without refresh.
  h.advance(50_000);
  t.is(out(h, neg, '10.0.0.1'), Verdict.ACCEPT);
  t.regex(h.readProc(DATA), /^10\.0\.0\.1 -> 20\.0\.0\.0 --- ttl: 550 lasthit: 0\n/);
  // No --prefix: maps a bound source, continues for one that would need a new binding.
  t.is(out(h, bare, '10.0.0.1'), Verdict.ACCEPT);
  t.is(out(h, bare, '10.0.0.77'), XT_CONTINUE);
  // --static: never a dynamic binding.
  t.is(out(h, stat, '10.0.0.78'), XT_CONTINUE);
  h.writeProc('net/xt_DNETMAP/20.0.1.0_30', '+10.0.0.78:20.0.1.3\n');
  t.is(out(h, stat, '10.0.0.78'), Verdict.ACCEPT);
  t.is(calls.at(-1)!.to, '20.0.1.3');
  // Expired in another prefix: without --reuse the old binding is timed out and one from this prefix made;
  h.advance(601_000);
  t.is(out(h, reuse, '10.0.0.1'), Verdict.ACCEPT, '--reuse keeps the expired binding of the other prefix');
  t.is(calls.at(-1)!.to, '20.0.0.0');
  h.advance(700_000);
  t.is(out(h, b, '10.0.0.1'), Verdict.ACCEPT);
  t.is(calls.at(-1)!.to, '20.0.1.0');
  t.regex(h.readProc(DATA), /^0\.0\.0\.0 -> 20\.0\.0\.0 /, 'the old binding was freed');
  // OUTPUT: the source is mapped (SNAT), as the man page says (upstream's kernel would rewrite the destination).
  t.is(output.target(h.packet(ip4('10.0.0.50', '192.0.2.1', udpDgram(1, 2)), { hook: Hook.OUTPUT })), Verdict.ACCEPT);
  t.deepEqual(calls.at(-1), { hook: Hook.OUTPUT, side: SRC, to: '20.0.0.1' });
});

test('proc writes: static bindings, remove, flush, persistence flag, refusals (EINVAL, logged)', (t) => {
  const { h, lines } = harness();
  const snat = h.target(DNETMAP, '--prefix 20.0.0.0/30', POST);
  out(h, snat, '10.0.0.1');
  h.writeProc(DATA, '+192.168.9.9:20.0.0.0\n');
  t.deepEqual(lines().slice(-2), ['xt_DNETMAP: timeout binding 10.0.0.1 -> 20.0.0.0', 'xt_DNETMAP: adding static binding 192.168.9.9:20.0.0.0']);
  t.regex(h.readProc(DATA), /^192\.168\.9\.9 -> 20\.0\.0\.0 --- ttl: S lasthit: S\n/);
  t.is(h.readProc(STAT), '0 1 4 0 \n');
  // Re-adding over a static entry is idempotent.
  h.writeProc(DATA, '+192.168.9.9:20.0.0.0\n');
  t.is(h.readProc(STAT), '0 1 4 0 \n');
  const refused = (data: string, log: string | null) => {
    const before = h.readProc(DATA);
    const e = t.throws(() => h.writeProc(DATA, data)) as { errno?: string; status?: number };
    t.is(e.errno, 'EINVAL');
    t.is(lines().at(-1), 'xt_DNETMAP: Error! Invalid option passed via procfs.');
    if (log !== null) t.is(lines().at(-2), log);
    t.is(h.readProc(DATA), before, 'a refused write changes nothing');
  };
  refused('+20.0.0.1:20.0.0.2\n', "xt_DNETMAP: add static binding operation failed - prenat ip can't belong to postnat prefix");
  refused('+1.2.3.4:30.0.0.1\n', 'xt_DNETMAP: add static binding operation failed - postnat ip must belong to postnat prefix');
  refused('-1.1.1.1\n', null);
  refused('Flush\n', null);
  refused('+1.2.3.4\n', null);
  refused('\n', null);
  // Remove by pre-NAT address: the entry becomes dynamic again.
  h.writeProc(DATA, '-192.168.9.9\n');
  t.is(lines().at(-1), 'xt_DNETMAP: remove binding 192.168.9.9 -> 20.0.0.0');
  t.is(h.readProc(STAT), '0 0 4 0 \n');
  out(h, snat, '10.0.0.2');
  out(h, snat, '10.0.0.3');
  t.is(h.readProc(STAT), '2 0 4 600 \n');
  // Remove by post-NAT address.
  h.writeProc(DATA, '-20.0.0.1\n');
  t.is(h.readProc(STAT), '1 0 4 600 \n');
  h.writeProc(DATA, '+8.8.8.8:20.0.0.3\n');
  h.writeProc(DATA, 'flush\n');
  t.is(lines().at(-1), 'xt_DNETMAP: flushing prefix 20.0.0.0/30');
  t.is(h.readProc(STAT), '0 0 4 0 \n');
  t.is(h.readProc(DATA), ['0', '1', '2', '3'].map((i) => `0.0.0.0 -> 20.0.0.${i} --- ttl: 0 lasthit: -600\n`).join(''));
  // The persistent flag: words as upstream logs them; the stat line's fifth field.
  h.writeProc(DATA, '+persistent\n');
  h.writeProc(DATA, '+persistent\n');
  t.deepEqual(lines().slice(-2), ['xt_DNETMAP: prefix 20.0.0.0/30 is now persistent', 'xt_DNETMAP: prefix 20.0.0.0/30 is persistent already - doing nothing']);
  t.is(h.readProc(STAT), '0 0 4 0 persistent\n');
  out(h, snat, '10.0.0.7');
  // A persistent prefix outlives its last rule, bindings and files included.
  h.destroyAll();
  t.regex(h.readProc(DATA), /10\.0\.0\.7 -> 20\.0\.0\.0/);
  h.writeProc(DATA, '-persistent\n');
  h.writeProc(DATA, '-persistent\n');
  t.deepEqual(lines().slice(-2), ['xt_DNETMAP: prefix 20.0.0.0/30 is now non-persistent', 'xt_DNETMAP: prefix 20.0.0.0/30 is not persistent already - doing nothing']);
  // A later rule for the prefix shares the kept object (its bindings).
  const again = h.target(DNETMAP, '--prefix 20.0.0.0/30', POST);
  t.is(out(h, again, '10.0.0.7'), Verdict.ACCEPT);
  t.regex(h.readProc(DATA), /^10\.0\.0\.7 -> 20\.0\.0\.0 /);
  // No longer persistent: deleting that rule, the last one, takes the prefix away.
  h.destroyAll();
  t.throws(() => h.readProc(DATA), { message: /no proc file/ });
});

test('--persistent on the creating rule only; the prefix survives its rules', (t) => {
  const { h } = harness();
  const first = h.target(DNETMAP, '--prefix 20.0.0.0/30 --persistent', POST);
  t.is(h.readProc(STAT), '0 0 4 0 persistent\n');
  h.destroyAll();
  t.is(h.readProc(STAT), '0 0 4 0 persistent\n');
  void first;
  const { h: h2 } = harness();
  h2.target(DNETMAP, '--prefix 20.0.0.0/30', POST);
  h2.target(DNETMAP, '--prefix 20.0.0.0/30 --persistent', PRE);
  t.is(h2.readProc(STAT), '0 0 4 0 \n', 'a later rule\'s --persistent does not change an existing prefix');
  h2.destroyAll();
  t.throws(() => h2.readProc(STAT));
});

test('module parameters from settings.DNETMAP: default_ttl, whole_prefix, disable_log, hash_size', (t) => {
  const { h, lines } = harness({ default_ttl: 60, whole_prefix: 0, disable_log: 1, hash_size: 100 });
  const snat = h.target(DNETMAP, '--prefix 20.0.0.0/30', POST);
  t.deepEqual(lines(), ['xt_DNETMAP: bad hash_size parameter value - using defaults', 'xt_DNETMAP: new prefix 20.0.0.0/30']);
  t.is(h.readProc(STAT), '0 0 2 0 \n', 'whole_prefix=0: network and broadcast addresses left out');
  t.is(out(h, snat, '10.0.0.1'), Verdict.ACCEPT);
  t.is(h.readProc(DATA), '10.0.0.1 -> 20.0.0.1 --- ttl: 60 lasthit: 0\n0.0.0.0 -> 20.0.0.2 --- ttl: 0 lasthit: -60\n');
  out(h, snat, '10.0.0.2');
  t.is(out(h, snat, '10.0.0.3'), XT_CONTINUE);
  t.is(lines().length, 2, 'disable_log: no add/full messages');
  // /31 and /32 have no usable entry without the whole prefix: always full.
  const tiny = h.target(DNETMAP, '--prefix 20.0.9.0/31', POST);
  t.is(out(h, tiny, '10.0.0.4'), XT_CONTINUE);
  t.is(h.readProc('net/xt_DNETMAP/20.0.9.0_31_stat'), '0 0 0 0 \n');
  for (const bad of [{ default_ttl: -1 }, { whole_prefix: 2 }, { disable_log: 'yes' }]) {
    const x = harness(bad);
    const e = t.throws(() => x.h.target(DNETMAP, '--prefix 20.0.0.0/30', POST)) as { message: string };
    t.regex(e.message, /^settings\.DNETMAP\./);
  }
});

test('IPv6 pools (beyond upstream): bindings, reverse lookup, proc views and writes', (t) => {
  const { h, calls } = harness({}, 6);
  const place = { family: 6, ...POST } as const;
  const snat = h.target(DNETMAP, '--prefix 2001:db8:20::/126 --ttl 100', place);
  const dnat = h.target(DNETMAP, '--prefix 2001:db8:20::/126', { family: 6, ...PRE });
  t.is(snat.target(h.packet(ip6('fd00::5', '2001:db8::1', udpDgram(1, 2)), { hook: Hook.POSTROUTING })), Verdict.ACCEPT);
  t.deepEqual(calls.at(-1), { hook: Hook.POSTROUTING, side: SRC, to: '2001:db8:20::' });
  t.is(dnat.target(h.packet(ip6('2001:db8::1', '2001:db8:20::', udpDgram(2, 1)), { hook: Hook.PREROUTING })), Verdict.ACCEPT);
  t.deepEqual(calls.at(-1), { hook: Hook.PREROUTING, side: DST, to: 'fd00::5' });
  const data = 'net/xt_DNETMAP/2001:db8:20::_126';
  h.writeProc(data, '+[fd00::9]:[2001:db8:20::3]\n');
  t.is(h.readProc(data), [
    'fd00::5 -> 2001:db8:20:: --- ttl: 600 lasthit: 0\n', // refreshed by the PREROUTING rule (default_ttl)
    ':: -> 2001:db8:20::1 --- ttl: 0 lasthit: -600\n',
    ':: -> 2001:db8:20::2 --- ttl: 0 lasthit: -600\n',
    'fd00::9 -> 2001:db8:20::3 --- ttl: S lasthit: S\n',
  ].join(''));
  t.is(h.readProc(`${data}_stat`), '1 1 4 600 \n');
});

test('rule placement: nat table, PREROUTING/POSTROUTING/OUTPUT only (the kernel refuses others)', (t) => {
  const { h } = harness();
  for (const place of [{ table: 'filter', chain: 'FORWARD' }, { table: 'mangle', chain: 'POSTROUTING' }, { table: 'nat', chain: 'INPUT' }] as const) {
    const e = t.throws(() => h.target(DNETMAP, '--prefix 20.0.0.0/30', place)) as { status?: number };
    t.is(e.status, 1);
  }
  t.throws(() => h.readProc(DATA), undefined, 'a refused rule leaves no prefix behind');
});

/** [family, words, error | null, save] — errors as libxt_DNETMAP prints them (targets-facts §6). */
const PARSE: [4 | 6, string, string | null, string][] = [
  [4, '', null, ''],
  [4, '--prefix 20.0.0.0/26 --reuse --static --persistent --ttl 200', null, ' --prefix 20.0.0.0/26 --reuse --static --persistent --ttl 200'],
  [4, '--ttl 200 --persistent --prefix 20.0.0.0/255.255.255.192', null, ' --prefix 20.0.0.0/26 --persistent --ttl 200'],
  [4, '--prefix 20.0.0.5', null, ' --prefix 20.0.0.5/32'],
  [4, '--prefix 20.0.0.0/0x18', null, ' --prefix 20.0.0.0/24'],
  [4, '--ttl 200abc', null, ' --ttl 200'],
  [4, '--ttl abc', null, ' --ttl 0'],
  [4, '--ttl -5', null, ' --ttl -5'],
  [4, '--ttl 4294967496', null, ' --ttl 200'],
  [4, '--prefix 20.0.0.0/0', 'Netmask needed', ''],
  [4, '--prefix 20.0.0.0/0.0.0.0', 'Netmask needed', ''],
  [4, '--prefix 20.0.0.0/8', 'Max netmask size is /16', ''],
  [4, '--prefix 20.0.0.0/255.0.0.0', 'Max netmask size is /16', ''],
  [4, '--prefix 20.0.0.1/24', 'Bad network address "20.0.0.1/24"', ''],
  [4, '--prefix 20.0.0/24', 'Bad IP address "20.0.0"', ''],
  [4, '--prefix foo', 'Bad IP address "foo"', ''],
  [4, '--prefix 20.0.0.0/33', 'Bad netmask "33"', ''],
  [4, '--prefix 20.0.0.0/x', 'Bad netmask "x"', ''],
  [4, '--prefix 20.0.0.0/255.255.0.300', 'Bad netmask "255.255.0.300"', ''],
  [4, '--prefix 20.0.0.0/24 --prefix 20.0.0.0/24', 'DNETMAP: "--prefix" option may only be specified once', ''],
  [4, '! --prefix 20.0.0.0/24', 'DNETMAP: "--prefix" option cannot be inverted', ''],
  [4, '--reuse --reuse', 'DNETMAP: "--reuse" option may only be specified once', ''],
  [4, '! --static', 'DNETMAP: "--static" option cannot be inverted', ''],
  [4, '--persistent --persistent', 'DNETMAP: "--persistent" option may only be specified once', ''],
  [4, '--ttl 1 --ttl 2', 'DNETMAP: "--ttl" option may only be specified once', ''],
  [4, '! --ttl 1', 'DNETMAP: "--ttl" option cannot be inverted', ''],
  [6, '--prefix 2001:db8::/112', null, ' --prefix 2001:db8::/112'],
  [6, '--prefix 2001:db8::/64', 'Max netmask size is /112', ''],
  [6, '--prefix 2001:db8::1/112', 'Bad network address "2001:db8::1/112"', ''],
  [6, '--prefix 20.0.0.0/24', 'Bad IP address "20.0.0.0"', ''],
];

for (const [family, words, error, save] of PARSE) {
  test(`DNETMAP parse (IPv${family}): ${words || '(no option)'}`, (t) => {
    const h = new XtHarness();
    const place = { family, ...POST };
    if (error !== null) {
      const e = t.throws(() => h.parse(DNETMAP, words, place)) as { status?: number; message: string };
      t.is(e.status, 2);
      t.is(e.message.trimEnd(), error);
      return;
    }
    const p = h.parse(DNETMAP, words, place);
    t.is(DNETMAP.save(p), save);
    t.is(DNETMAP.print!(p, true), ` -j DNETMAP${save}`);
  });
}

// ------------------------------------------------------------------ restart

async function engine(services: RecordingServices) {
  const nf = new Netfilter({ registry: await loadExtensions(), services });
  const table = netfilterCommands(nf, { now: () => new Date(Date.UTC(2026, 0, 1)) });
  const ok = async (line: string) => {
    const words = splitLine(line, 0);
    const r = await table[words[0]!]!(words.slice(1), null);
    if (r.status !== 0) throw new Error(`${line}: ${r.stderr}`);
    return r.stdout;
  };
  const h = new XtHarness();
  const from = (src: string) => {
    const b = ip4(src, '192.0.2.1', udpDgram(1000, 53));
    const pkt = h.packet(b, { hook: Hook.POSTROUTING });
    pkt.ctState = CtState.NEW;
    pkt.now = services.clock;
    return nf.hook(Hook.POSTROUTING, pkt);
  };
  return { nf, ok, from };
}

test('restart: bindings, static entries, the persistent flag and the LRU order come back, TTLs aged by the downtime', async (t) => {
  const s1 = new RecordingServices();
  const rec = natRecorder();
  Object.assign(s1, { nat: rec.nat });
  s1.clock = 5_000;
  const a = await engine(s1);
  await a.ok('iptables -t nat -A POSTROUTING -s 10.0.0.0/24 -j DNETMAP --prefix 20.0.0.0/30 --ttl 300');
  await a.ok('iptables -t nat -A PREROUTING -d 20.0.0.0/30 -j DNETMAP --prefix 20.0.0.0/30');
  a.from('10.0.0.1');
  s1.advance(20_000);
  a.from('10.0.0.2');
  t.deepEqual(rec.calls.map((c) => c.to), ['20.0.0.0', '20.0.0.1']);
  await a.ok('proc write net/xt_DNETMAP/20.0.0.0_30 +192.168.7.7:20.0.0.3');
  await a.ok('proc write net/xt_DNETMAP/20.0.0.0_30 +persistent');
  const before = await a.ok('proc cat net/xt_DNETMAP/20.0.0.0_30');
  t.is(before, [
    '10.0.0.1 -> 20.0.0.0 --- ttl: 280 lasthit: -295\n',
    '10.0.0.2 -> 20.0.0.1 --- ttl: 300 lasthit: -275\n',
    '0.0.0.0 -> 20.0.0.2 --- ttl: -20 lasthit: -595\n',
    '192.168.7.7 -> 20.0.0.3 --- ttl: S lasthit: S\n',
  ].join(''));
  const file = saveState(a.nf);

  // A new process: monotonic clock from 1 s, 100 s of wall time went by.
  const s2 = new RecordingServices();
  const rec2 = natRecorder();
  Object.assign(s2, { nat: rec2.nat });
  s2.clock = 1_000;
  s2.wallClock = s1.wallClock + 100_000;
  const b = await engine(s2);
  t.deepEqual(restoreState(b.nf, file).notes, []);
  t.is(await b.ok('proc cat net/xt_DNETMAP/20.0.0.0_30'), [
    '10.0.0.1 -> 20.0.0.0 --- ttl: 180 lasthit: -419\n',
    '10.0.0.2 -> 20.0.0.1 --- ttl: 200 lasthit: -399\n',
    '0.0.0.0 -> 20.0.0.2 --- ttl: 0 lasthit: -599\n', // a free entry restarts as a new one
    '192.168.7.7 -> 20.0.0.3 --- ttl: S lasthit: S\n',
  ].join(''));
  t.is(await b.ok('proc cat net/xt_DNETMAP/20.0.0.0_30_stat'), '2 1 4 190 persistent\n');
  // The bindings act: 10.0.0.2 keeps its address; a new host takes the LRU head (20.0.0.2, never used).
  b.from('10.0.0.2');
  b.from('10.0.0.3');
  t.deepEqual(rec2.calls.map((c) => c.to), ['20.0.0.1', '20.0.0.2']);
  // Past the aged TTL the restored binding has expired: its address is the next to go.
  s2.advance(181_000);
  b.from('10.0.0.4');
  t.is(rec2.calls.at(-1)!.to, '20.0.0.0');
});

// ------------------------------------------------------------------ bad input through the commands

const TRY = "Try `iptables -h' or 'iptables --help' for more information.\n";
const EINVAL = "iptables: Invalid argument. Run `dmesg' for more information.\n";

/**
 * [line, status, whole stderr]. libxtables-style words end in "\n" (iptables then
 * prints a blank line before its hint), xtables_param_act's do not. No reference
 * parser runs here: Debian's libxt_DNETMAP.so is an empty stub and libxt_RAWNAT
 * left xtables-addons in 2.4, so the words are those of libxt_DNETMAP.c /
 * libxt_RAWNAT.c (targets-facts §6, §11) in iptables 1.8.9's framing.
 */
const BAD: [string, number, string][] = [
  ['iptables -t nat -A POSTROUTING -j DNETMAP --prefix 20.0.0.0/8', 2, `iptables v1.8.9 (xtr): Max netmask size is /16\n\n${TRY}`],
  ['iptables -t nat -A POSTROUTING -j DNETMAP --prefix 20.0.0.0/0', 2, `iptables v1.8.9 (xtr): Netmask needed\n\n${TRY}`],
  ['iptables -t nat -A POSTROUTING -j DNETMAP --prefix 20.0.0.1/24', 2, `iptables v1.8.9 (xtr): Bad network address "20.0.0.1/24"\n\n${TRY}`],
  ['iptables -t nat -A POSTROUTING -j DNETMAP --prefix 20.0.0/24', 2, `iptables v1.8.9 (xtr): Bad IP address "20.0.0"\n\n${TRY}`],
  ['iptables -t nat -A POSTROUTING -j DNETMAP --prefix 20.0.0.0/33', 2, `iptables v1.8.9 (xtr): Bad netmask "33"\n\n${TRY}`],
  ['iptables -t nat -A POSTROUTING -j DNETMAP --reuse --reuse', 2, `iptables v1.8.9 (xtr): DNETMAP: "--reuse" option may only be specified once\n${TRY}`],
  ['iptables -t nat -A POSTROUTING -j DNETMAP ! --prefix 20.0.0.0/24', 2, `iptables v1.8.9 (xtr): DNETMAP: "--prefix" option cannot be inverted\n${TRY}`],
  ['iptables -t nat -A INPUT -j DNETMAP --prefix 20.0.0.0/30', 1, `${EINVAL}x_tables: ip_tables: DNETMAP target: used from hooks INPUT, but only usable from PREROUTING/POSTROUTING/OUTPUT\n`],
  ['iptables -t rawpost -A POSTROUTING -j RAWSNAT', 2, `iptables v1.8.9 (xtr): RAWSNAT: "--to-source" is required.\n${TRY}`],
  ['iptables -t raw -A PREROUTING -j RAWDNAT --to-destination 10.0.0.0/40', 2, `iptables v1.8.9 (xtr): RAWDNAT: Bad value for "--to-destination" option: "10.0.0.0"\n${TRY}`],
  ['iptables -t filter -A FORWARD -j RAWSNAT --to-source 10.0.0.1', 1, `${EINVAL}xt_RAWNAT may only be used in the "raw" or "rawpost" table.\n`],
  ['iptables -t nat -A POSTROUTING -j RAWDNAT --to-destination 10.0.0.1', 1, `${EINVAL}xt_RAWNAT may only be used in the "raw" or "rawpost" table.\n`],
];

test('bad input: each refusal in iptables\' words, and nothing already loaded is lost (rules, bindings, proc files)', async (t) => {
  const { testEngine } = await import('../router/netfilter/testkit.js');
  const e = await testEngine();
  const rec = natRecorder();
  Object.assign(e.services, { nat: rec.nat });
  for (const line of [
    'iptables -t nat -A POSTROUTING -s 10.0.0.0/24 -j DNETMAP --prefix 20.0.0.0/30',
    'iptables -t raw -A PREROUTING -d 10.55.0.0/24 -j RAWDNAT --to-destination 203.0.113.0/24',
    'iptables -t rawpost -A POSTROUTING -s 203.0.113.0/24 -j RAWSNAT --to-source 10.55.0.0/24',
  ]) t.is((await e.run(line)).status, 0);
  await e.run('proc write net/xt_DNETMAP/20.0.0.0_30 +192.168.1.1:20.0.0.2');
  // Per table: a refused filter line brings the filter table into being, as referencing it loads iptable_filter.
  const save = async () => {
    let text = '';
    for (const table of ['nat', 'raw', 'rawpost']) text += (await e.run(`iptables-save -t ${table}`)).stdout.replace(/^#.*\n/gm, '');
    return text;
  };
  const proc = async () => (await e.run('proc cat net/xt_DNETMAP/20.0.0.0_30')).stdout;
  const rules = await save();
  const bindings = await proc();
  t.regex(bindings, /192\.168\.1\.1 -> 20\.0\.0\.2 --- ttl: S/);
  for (const [line, status, stderr] of BAD) {
    const r = await e.run(line);
    t.is(r.status, status, line);
    t.is(r.stderr, stderr, line);
  }
  // iptables-restore: one bad line refuses the whole table, the running set stays.
  const restore = await e.run('iptables-restore', '*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j DNETMAP --prefix 20.0.1.0/30\n-A POSTROUTING -j DNETMAP --prefix 20.0.0.0/8\nCOMMIT\n');
  t.is(restore.status, 2);
  t.regex(restore.stderr, /Max netmask size is \/16/);
  t.is(await save(), rules, 'the rule set is as it was');
  t.is(await proc(), bindings, 'the prefix and its bindings are as they were');
  t.is((await e.run('proc cat net/xt_DNETMAP/20.0.1.0_30')).status === 0, false, 'the refused restore left no prefix behind');
});

// ------------------------------------------------------------------ the rewrites, through conntrack NAT

/**
 * DNETMAP's bindings applied by the real conntrack NAT (router/conntrack's
 * NatCore behind services.nat), as a packet walks conntrack -> nat PREROUTING
 * -> nat POSTROUTING -> confirm. Each row's expected packet is built from
 * scratch by the fixture builders (every checksum computed in full) with the
 * translated addresses; the bytes must equal it, and the checksums are
 * recomputed over the result as well.
 */
import { Conntrack } from '../router/conntrack.js';
import { NatCore } from '../router/conntrack/nat-core.js';
import { ctxOf, icmpMsg, tcpSeg } from './modules-fixtures.js';
import { checksum, pseudoSum4, pseudoSum6, verifies } from '../dataplane/checksum.js';

function natWorld(family: 4 | 6, rules: [string, Place][]) {
  const h = new XtHarness();
  const ct = new Conntrack();
  let x = 7;
  const core = new NatCore(ct, () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0));
  ct.setNatHook(core);
  Object.assign(h.services, { nat: core });
  const insts = rules.map(([words, place]) => ({ inst: h.target(DNETMAP, words, { family, ...place }), hook: place.chain === 'PREROUTING' ? Hook.PREROUTING : Hook.POSTROUTING }));
  /** One forwarded packet's walk; returns the bytes that leave and the verdict. */
  const walk = (bytes: Buffer): { out: Buffer; v: number } => {
    const p = ctxOf(bytes, h.services.clock);
    if (ct.in(p) !== Verdict.ACCEPT) return { out: bytes, v: Verdict.DROP };
    for (const hook of [Hook.PREROUTING, Hook.POSTROUTING]) {
      p.hook = hook;
      // The nat chains see a flow's first packet only (the engine's natChainsWanted).
      // POSTROUTING's rule stands for `-s <private net> -j DNETMAP` (the harness has no -s match).
      if (p.ctState === CtState.NEW) for (const r of insts) if (r.hook === hook && (hook === Hook.PREROUTING || isPrivate(p)) && r.inst.target(p) !== XT_CONTINUE) break;
      if (ct.nat(hook, p) !== Verdict.ACCEPT) return { out: bytes, v: Verdict.DROP };
    }
    const v = ct.confirm(p);
    return { out: Buffer.from(p.buf.subarray(p.l3off, p.l3off + p.l3len)), v };
  };
  return { h, walk };
}

/** The rule's `-s 10.0.0.0/8` / `-s fd00::/16`. */
function isPrivate(p: PacketContext): boolean {
  return p.family === 4 ? p.src4 >>> 24 === 10 : p.src6[0] >>> 16 === 0xfd00;
}

function checksumsVerify(b: Buffer): boolean {
  if (b[0] >> 4 === 4) {
    const ihl = (b[0] & 15) * 4;
    const ps = b[9] === 1 ? 0 : pseudoSum4(b.readUInt32BE(12), b.readUInt32BE(16), b[9], b.length - ihl);
    return checksum(b, 0, ihl) === 0 && verifies(b, ihl, b.length - ihl, ps);
  }
  return verifies(b, 40, b.length - 40, pseudoSum6(b, 8, b[6], b.length - 40));
}

const SNAT4: [string, Place][] = [['--prefix 20.0.0.0/30', POST], ['--prefix 20.0.0.0/30', PRE]];
const SNAT6: [string, Place][] = [['--prefix fd20::/126', POST], ['--prefix fd20::/126', PRE]];
const synA = tcpSeg(40000, 80, 0x02, { seq: 7 });
const synAck = tcpSeg(80, 40000, 0x12, { seq: 99, ack: 8 });
const q = udpDgram(5353, 53, [1, 2, 3]);
const a = udpDgram(53, 5353, [4, 5, 6, 7]);
const ping4 = icmpMsg(8, 0, [0x12, 0x34, 0, 1], [0x61]);
const pong4 = icmpMsg(0, 0, [0x12, 0x34, 0, 1], [0x61]);
const ping6 = icmpMsg(128, 0, [0x12, 0x34, 0, 1], [0x61], true);
const pong6 = icmpMsg(129, 0, [0x12, 0x34, 0, 1], [0x61], true);

/** [name, family, [before, after] packets of one flow in order]. */
const FLOWS: [string, 4 | 6, [Buffer, Buffer][]][] = [
  ['v4 TCP: SYN SNATed to the pool address, SYN/ACK DNATed back', 4, [
    [ip4('10.0.0.1', '198.51.100.7', synA), ip4('20.0.0.0', '198.51.100.7', synA)],
    [ip4('198.51.100.7', '20.0.0.0', synAck), ip4('198.51.100.7', '10.0.0.1', synAck)],
  ]],
  ['v4 UDP request and answer', 4, [
    [ip4('10.0.0.1', '198.51.100.7', q), ip4('20.0.0.0', '198.51.100.7', q)],
    [ip4('198.51.100.7', '20.0.0.0', a), ip4('198.51.100.7', '10.0.0.1', a)],
  ]],
  ['v4 ICMP echo and reply', 4, [
    [ip4('10.0.0.1', '198.51.100.7', ping4), ip4('20.0.0.0', '198.51.100.7', ping4)],
    [ip4('198.51.100.7', '20.0.0.0', pong4), ip4('198.51.100.7', '10.0.0.1', pong4)],
  ]],
  ['v4 a second host gets the next address', 4, [
    [ip4('10.0.0.1', '198.51.100.7', q), ip4('20.0.0.0', '198.51.100.7', q)],
    [ip4('10.0.0.2', '198.51.100.7', q), ip4('20.0.0.1', '198.51.100.7', q)],
  ]],
  ['v4 inbound to a bound address: PREROUTING DNATs it to the host, the answer leaves from the pool address', 4, [
    [ip4('10.0.0.1', '198.51.100.7', q), ip4('20.0.0.0', '198.51.100.7', q)],
    [ip4('198.51.100.9', '20.0.0.0', tcpSeg(5555, 22, 0x02)), ip4('198.51.100.9', '10.0.0.1', tcpSeg(5555, 22, 0x02))],
    [ip4('10.0.0.1', '198.51.100.9', tcpSeg(22, 5555, 0x12, { ack: 1001 })), ip4('20.0.0.0', '198.51.100.9', tcpSeg(22, 5555, 0x12, { ack: 1001 }))],
  ]],
  ['v6 TCP: SYN SNATed to the pool address, SYN/ACK DNATed back', 6, [
    [ip6('fd00::1', '2001:db8::7', synA), ip6('fd20::', '2001:db8::7', synA)],
    [ip6('2001:db8::7', 'fd20::', synAck), ip6('2001:db8::7', 'fd00::1', synAck)],
  ]],
  ['v6 UDP and ICMPv6 echo (pseudo-header checksums)', 6, [
    [ip6('fd00::1', '2001:db8::7', q), ip6('fd20::', '2001:db8::7', q)],
    [ip6('2001:db8::7', 'fd20::', a), ip6('2001:db8::7', 'fd00::1', a)],
    [ip6('fd00::1', '2001:db8::7', ping6), ip6('fd20::', '2001:db8::7', ping6)],
    [ip6('2001:db8::7', 'fd20::', pong6), ip6('2001:db8::7', 'fd00::1', pong6)],
  ]],
];

for (const [name, family, steps] of FLOWS) {
  test(`DNETMAP rewrite through conntrack NAT: ${name}`, (t) => {
    const { h, walk } = natWorld(family, family === 4 ? SNAT4 : SNAT6);
    for (const [before, after] of steps) {
      const { out, v } = walk(before);
      t.is(v, Verdict.ACCEPT);
      t.is(out.toString('hex'), after.toString('hex'));
      t.true(checksumsVerify(out), 'checksums verify when recomputed in full');
      h.advance(1000);
    }
  });
}
