import test from 'ava';
import { PacketContext, type InterfaceRef } from '../xt/packet.js';
import recent, { INITIAL_JIFFIES, jiffiesAt, type RecentTable } from '../modules/recent.js';
import { XtError, type CheckEnv, type MatchInstance, type ParsedOption, type RouterServices, type RuleInfo } from '../xt/extension.js';
import { parseIpv4, parseIpv6 } from '../dataplane/addr.js';
import { ProcFiles, SharedState } from '../router/netfilter/state.js';

/**
 * A router-less CheckEnv over the engine's real state registry and proc files,
 * a settable monotonic and wall clock, and a log sink.
 */
function makeEnv(settings: Record<string, unknown> = {}) {
  const proc = new ProcFiles();
  const logs: string[] = [];
  const clock = { now: 0, wall: 1_000_000 };
  const state = new SharedState(proc, { now: () => clock.now, wallNow: () => clock.wall }, (_l, line) => void logs.push(line));
  const rule: RuleInfo = { family: 4, table: 'filter', chain: 'INPUT', proto: 0, protoInverted: false };
  const services = { emitLocal() {}, log: (_l: number, line: string) => void logs.push(line), now: () => clock.now } as unknown as RouterServices;
  const env = (family: 4 | 6 = 4): CheckEnv => ({
    rule: { ...rule, family },
    hookMask: 1 << 1,
    state,
    proc,
    services,
    settings,
    subTarget: () => {
      throw new Error('recent uses no sub-target');
    },
  });
  /** The live table `name` (the engine's state lookup). */
  const table = (name: string) => state.get<RecentTable>(`recent:${name}`);
  return { env, proc, logs, clock, state, table };
}

function opts(words: string): ParsedOption[] {
  const out: ParsedOption[] = [];
  const w = words.split(' ').filter(Boolean);
  for (let i = 0; i < w.length; i++) {
    let inverted = false;
    if (w[i] === '!') {
      inverted = true;
      i++;
    }
    const name = w[i].replace(/^--/, '');
    const spec = recent.options.find((o) => o.name === name)!;
    const value = spec.arg === 'required' ? w[++i] : null;
    out.push({ name, value, inverted });
  }
  return out;
}

const RULE4: RuleInfo = { family: 4, table: 'filter', chain: 'INPUT', proto: 0, protoInverted: false };
const RULE6: RuleInfo = { ...RULE4, family: 6 };

function rule(envf: ReturnType<typeof makeEnv>, words: string, family: 4 | 6 = 4): MatchInstance {
  const p = recent.parse(opts(words), family === 4 ? RULE4 : RULE6);
  return recent.check(p, envf.env(family));
}

const pkt = new PacketContext();
function from(src: string, ms: number, ttl = 64, dst = '192.0.2.1'): PacketContext {
  pkt.family = 4;
  pkt.src4 = parseIpv4(src);
  pkt.dst4 = parseIpv4(dst);
  pkt.ttl = ttl;
  pkt.now = ms;
  pkt.outIf = null;
  pkt.locallyGenerated = false;
  return pkt;
}

let uniq = 0;
const name = () => `T${++uniq}`;

test('parse errors use iptables 1.8.9 wording and save text matches iptables-save', (t) => {
  const bad: [string, string][] = [
    ['', "recent: you must specify one of `--set', `--rcheck' `--update' or `--remove'"],
    ['--set --rcheck', 'recent: option "--set" cannot be used together with "--rcheck".\n'],
    ['--set --rttl', 'recent: option "--rttl" cannot be used together with "--set".\n'],
    ['--rcheck --reap', 'recent: option "--reap" also requires "--seconds".\n'],
    ['--remove --reap', 'recent: option "--reap" also requires "--seconds".\n'],
    ['--rcheck --seconds 0', 'recent: bad value for option "--seconds", or out of range (1-4294967295).\n'],
    ['--set --set', 'recent: option "--set" can only be used once.\n'],
    ['--set --name a --name b', 'recent: option "--name" can only be used once.\n'],
  ];
  for (const [w, msg] of bad) {
    const e = t.throws(() => recent.parse(opts(w), RULE4), { instanceOf: XtError }, w);
    t.is(e?.message, msg, w);
    t.is((e as XtError).status, 2);
  }
  const good: [string, string][] = [
    ['--set --name X --mask 255.255.255.255 --rsource', ' --set --name X --mask 255.255.255.255 --rsource'],
    ['--set', ' --set --name DEFAULT --mask 255.255.255.255 --rsource'],
    ['! --update --seconds 10 --reap --hitcount 3 --rttl --rdest --mask 255.255.0.0', ' ! --update --seconds 10 --reap --hitcount 3 --rttl --name DEFAULT --mask 255.255.0.0 --rdest'],
    ['--rcheck --seconds 0x10', ' --rcheck --seconds 16 --name DEFAULT --mask 255.255.255.255 --rsource'],
    ['--rcheck --rdest --rsource', ' --rcheck --name DEFAULT --mask 255.255.255.255 --rsource'],
  ];
  for (const [w, saved] of good) t.is(recent.save(recent.parse(opts(w), RULE4)), saved, w);
  t.is(recent.save(recent.parse(opts('--set --mask ffff:ffff::'), RULE6)), ' --set --name DEFAULT --mask ffff:ffff:: --rsource');
  t.is(recent.save(recent.parse(opts('--set'), RULE6)), ' --set --name DEFAULT --mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource');
  t.is(recent.print!(recent.parse(opts('--rcheck --seconds 5 --hitcount 2 --name A'), RULE4)), ' recent: CHECK seconds: 5 hit_count: 2 name: A side: source mask: 255.255.255.255');
});

test('kernel-side checks refuse with status 1, EINVAL (set with seconds, hitcount above the limit or a configured ring, bad names)', (t) => {
  const e = makeEnv();
  for (const w of ['--set --seconds 5', '--set --hitcount 2', '--remove --hitcount 1', '--rcheck --hitcount 65536', '--set --name ..', '--set --name a/b', '--set --name .']) {
    const p = recent.parse(opts(w), RULE4);
    const err = t.throws(() => recent.check(p, e.env()), { instanceOf: XtError }, w);
    t.is((err as XtError).status, 1, w);
    t.is((err as XtError).errno, 'EINVAL', w);
  }
  const hc = t.throws(() => recent.check(recent.parse(opts('--rcheck --hitcount 65536'), RULE4), e.env()));
  t.is(hc?.message, 'xt_recent: hitcount (65536) is larger than allowed maximum (65535)');
  // Unconfigured, the ring grows to fit; a configured ring is fixed and refuses larger hitcounts.
  t.notThrows(() => recent.check(recent.parse(opts('--rcheck --hitcount 21'), RULE4), e.env()));
  const fixed = makeEnv({ recent: { ip_pkt_list_tot: 20 } });
  const old = t.throws(() => recent.check(recent.parse(opts('--rcheck --hitcount 21'), RULE4), fixed.env()));
  t.is(old?.message, 'xt_recent: hitcount (21) is larger than packets to be remembered (20)');
  const big = makeEnv({ recent: { ip_pkt_list_tot: 30 } });
  t.notThrows(() => recent.check(recent.parse(opts('--rcheck --hitcount 21'), RULE4), big.env()));
  t.is(recent.parse(opts(`--set --name ${'a'.repeat(250)}`), RULE4).name.length, 199);
});

test('--set always matches and records; ! --set never matches but records', (t) => {
  const e = makeEnv();
  const n = name();
  const set = rule(e, `--set --name ${n}`);
  const notSet = rule(e, `! --set --name ${n}`);
  const check = rule(e, `--rcheck --name ${n}`);
  t.false(check.match(from('10.0.0.1', 0)));
  t.true(set.match(from('10.0.0.1', 0)));
  t.true(check.match(from('10.0.0.1', 1)));
  t.false(notSet.match(from('10.0.0.2', 2)));
  t.true(check.match(from('10.0.0.2', 3)));
  t.false(notSet.match(from('10.0.0.2', 4)));
  t.is(e.table(n)!.count, 2);
});

test('--rcheck --seconds uses timestamps; --hitcount counts stamps in the window', (t) => {
  const e = makeEnv();
  const n = name();
  const set = rule(e, `--set --name ${n}`);
  const within = rule(e, `--rcheck --seconds 20 --name ${n}`);
  const three = rule(e, `--rcheck --seconds 20 --hitcount 3 --name ${n}`);
  const threeEver = rule(e, `--rcheck --hitcount 3 --name ${n}`);
  set.match(from('10.0.0.1', 0));
  set.match(from('10.0.0.1', 5000));
  t.false(three.match(from('10.0.0.1', 6000)));
  set.match(from('10.0.0.1', 10000));
  t.true(three.match(from('10.0.0.1', 20000)), 'stamps 0,5,10 s all within 20 s at t=20 s');
  t.false(three.match(from('10.0.0.1', 20001)), 'stamp at 0 s is now older than the window');
  t.true(threeEver.match(from('10.0.0.1', 999999)), 'without --seconds, 3 stored stamps are enough');
  t.true(within.match(from('10.0.0.1', 30000)), 'last seen at 10 s');
  t.false(within.match(from('10.0.0.1', 30001)));
});

test('--update refreshes only when the final (inverted) result is true; --rcheck never does', (t) => {
  const e = makeEnv();
  const n = name();
  const set = rule(e, `--set --name ${n}`);
  const update = rule(e, `--update --seconds 10 --name ${n}`);
  const notUpdate = rule(e, `! --update --seconds 10 --name ${n}`);
  const rcheck = rule(e, `--rcheck --seconds 10 --name ${n}`);
  const table = () => e.table(n)!;
  set.match(from('10.0.0.1', 0));
  t.true(rcheck.match(from('10.0.0.1', 9000)));
  t.is(table().head!.nstamps, 1, 'rcheck does not add a stamp');
  t.true(update.match(from('10.0.0.1', 9000)));
  t.is(table().head!.nstamps, 2, 'a matching update adds a stamp');
  t.false(update.match(from('10.0.0.1', 30000)));
  t.is(table().head!.nstamps, 2, 'a non-matching update does not');
  t.true(notUpdate.match(from('10.0.0.1', 30000)), '! --update: not seen within 10 s -> true');
  t.is(table().head!.nstamps, 3, '! --update refreshes when its inverted result is true');
  t.false(notUpdate.match(from('10.0.0.1', 31000)));
  t.is(table().head!.nstamps, 3);
  t.false(update.match(from('10.0.0.9', 0)), 'unknown address: no match, no entry');
  t.is(table().count, 1);
});

test('--remove deletes and matches; absent address does not match', (t) => {
  const e = makeEnv();
  const n = name();
  const set = rule(e, `--set --name ${n}`);
  const remove = rule(e, `--remove --name ${n}`);
  t.false(remove.match(from('10.0.0.1', 0)));
  set.match(from('10.0.0.1', 0));
  t.true(remove.match(from('10.0.0.1', 1)));
  t.false(remove.match(from('10.0.0.1', 2)));
  t.is(e.table(n)!.count, 0);
});

test('ring keeps ip_pkt_list_tot stamps, oldest overwritten; hitcount capped by the ring', (t) => {
  const e = makeEnv({ recent: { ip_pkt_list_tot: 3 } });
  const n = name();
  const set = rule(e, `--set --name ${n}`);
  const three = rule(e, `--rcheck --hitcount 3 --seconds 100 --name ${n}`);
  for (let i = 0; i < 5; i++) set.match(from('10.0.0.1', i * 1000));
  const entry = e.table(n)!.head!;
  t.is(entry.nstamps, 3);
  t.is(entry.index, 2, '5 stamps into a ring of 3: slot 2 holds the newest');
  t.deepEqual(Array.from(entry.stamps), [3000, 4000, 2000].map((ms) => jiffiesAt(ms)));
  t.true(three.match(from('10.0.0.1', 5000)));
  const err = t.throws(() => rule(e, `--rcheck --hitcount 4 --name ${n}`));
  t.is((err as XtError).status, 1);
});

test('table full: the least recently updated entry is evicted first', (t) => {
  const e = makeEnv({ recent: { ip_list_tot: 3 } });
  const n = name();
  const set = rule(e, `--set --name ${n}`);
  const check = rule(e, `--rcheck --name ${n}`);
  set.match(from('10.0.0.1', 0));
  set.match(from('10.0.0.2', 1));
  set.match(from('10.0.0.3', 2));
  set.match(from('10.0.0.1', 3)); // refresh .1: .2 is now the LRU head
  set.match(from('10.0.0.4', 4));
  t.false(check.match(from('10.0.0.2', 5)), '.2 evicted');
  for (const a of ['10.0.0.1', '10.0.0.3', '10.0.0.4']) t.true(check.match(from(a, 5)), a);
  t.is(e.table(n)!.count, 3);
});

test('--reap removes at most the LRU-oldest entry, only on the found path, never the working entry', (t) => {
  const e = makeEnv();
  const n = name();
  const set = rule(e, `--set --name ${n}`);
  const reap = rule(e, `--rcheck --seconds 10 --reap --name ${n}`);
  set.match(from('10.0.0.1', 0));
  set.match(from('10.0.0.2', 1000));
  set.match(from('10.0.0.3', 50000));
  const table = e.table(n)!;
  t.false(reap.match(from('10.0.0.9', 60000)), 'unknown address: nothing reaped');
  t.is(table.count, 3);
  t.true(reap.match(from('10.0.0.3', 55000)));
  t.is(table.count, 2, 'the head (.1) was stale and is gone');
  t.is(table.head!.addr[0], parseIpv4('10.0.0.2'), 'only one entry per packet');
  t.true(reap.match(from('10.0.0.3', 55000)));
  t.is(table.count, 1);
  t.false(reap.match(from('10.0.0.3', 70000)), '.3 is stale itself, but is the working entry');
  t.is(table.count, 1);
});

test('--rttl: TTL must equal the stored one (0 matches any); forwarded packets count TTL as received', (t) => {
  const e = makeEnv();
  const n = name();
  const set = rule(e, `--set --name ${n}`);
  const rttl = rule(e, `--rcheck --rttl --name ${n}`);
  const plain = rule(e, `--rcheck --name ${n}`);
  set.match(from('10.0.0.1', 0, 64));
  t.true(rttl.match(from('10.0.0.1', 1, 64)));
  t.false(rttl.match(from('10.0.0.1', 1, 63)));
  t.true(plain.match(from('10.0.0.1', 1, 63)));
  const fwd = from('10.0.0.1', 1, 63);
  fwd.outIf = { name: 'eth1', index: 2, kind: 'tun', mtu: 1500, mac: null } as InterfaceRef;
  t.true(rttl.match(fwd), 'FORWARD sees TTL 63 after decrement: 64 as received');
  // A procfs-added entry has ttl 0 and so satisfies any --rttl lookup.
  e.proc.get(`net/xt_recent/${n}`)!.write!('+10.0.0.7\n');
  t.true(rttl.match(from('10.0.0.7', 2, 5)));
});

test('the first rule fixes the table mask; --rdest records the destination', (t) => {
  const e = makeEnv();
  const n = name();
  const set24 = rule(e, `--set --name ${n} --mask 255.255.255.0`);
  const check32 = rule(e, `--rcheck --name ${n} --mask 255.255.255.255`);
  const checkDst = rule(e, `--rcheck --rdest --name ${n}`);
  set24.match(from('10.1.2.3', 0));
  t.true(check32.match(from('10.1.2.99', 1)), 'later rule mask ignored: table mask /24 applies');
  t.false(check32.match(from('10.1.3.3', 1)));
  t.true(checkDst.match(from('192.0.2.200', 1, 64, '10.1.2.50')));
  t.is(e.proc.get(`net/xt_recent/${n}`)!.read().split(' ')[0], 'src=10.1.2.0');
});

test('procfs read format: uncompressed IPv6, last_seen, oldest_pkt, stamps', (t) => {
  const e = makeEnv({ recent: { ip_list_tot: 1 } });
  const n = name();
  const set6 = rule(e, `--set --name ${n}`, 6);
  const p = new PacketContext();
  p.family = 6;
  parseIpv6('2001:db8::1').forEach((w, i) => (p.src6[i] = w));
  p.ttl = 64;
  p.now = 1000;
  set6.match(p);
  p.now = 2500;
  set6.match(p);
  const j1 = INITIAL_JIFFIES + 1000;
  const j2 = INITIAL_JIFFIES + 2500;
  t.is(e.proc.get(`net/xt_recent/${n}`)!.read(), `src=2001:0db8:0000:0000:0000:0000:0000:0001 ttl: 64 last_seen: ${j2} oldest_pkt: 2 ${j1}, ${j2}\n`);
});

test('procfs writes: +addr, -addr, / flush; bare address and garbage refused; unmasked, ttl 0', (t) => {
  const e = makeEnv();
  const n = name();
  rule(e, `--set --name ${n} --mask 255.255.255.0`);
  const check = rule(e, `--rcheck --name ${n}`);
  const f = e.proc.get(`net/xt_recent/${n}`)!;
  e.clock.now = 42;
  f.write!('+10.0.0.5\n');
  t.is(f.read(), `src=10.0.0.5 ttl: 0 last_seen: ${INITIAL_JIFFIES + 42} oldest_pkt: 1 ${INITIAL_JIFFIES + 42}\n`, 'not masked');
  t.false(check.match(from('10.0.0.5', 50)), 'a packet lookup is masked (10.0.0.0) and misses the unmasked entry');
  f.write!('+10.0.0.5');
  t.regex(f.read(), /oldest_pkt: 2 /, 'adding an existing address adds a stamp');
  f.write!('+2001:db8::5');
  t.is(e.table(n)!.count, 2);
  f.write!('-10.0.0.5\n');
  f.write!('-10.9.9.9');
  t.is(e.table(n)!.count, 1);
  f.write!('/');
  t.is(f.read(), '');
  for (const bad of ['10.0.0.1', 'clear', '+10.0.0', '+10.0.0.1 junk', '+zz::1::2']) {
    const err = t.throws(() => f.write!(bad), { instanceOf: XtError }, bad);
    t.is((err as XtError).status, 1);
  }
});

test('tables are shared by name, survive a reload that keeps the name, vanish with the last rule', (t) => {
  const e = makeEnv();
  const n = name();
  const a = rule(e, `--set --name ${n}`);
  a.match(from('10.0.0.1', 0));
  // Atomic replace: the new rule is checked before the old one is destroyed.
  const b = rule(e, `--rcheck --name ${n}`);
  a.destroy!();
  t.true(b.match(from('10.0.0.1', 1)));
  t.truthy(e.proc.get(`net/xt_recent/${n}`));
  b.destroy!();
  t.is(e.proc.get(`net/xt_recent/${n}`), undefined);
  t.is(e.table(n), undefined);
});

test('saved state (the engine\'s persistence) keeps entries and ages stamps by the downtime', (t) => {
  const e = makeEnv();
  const n = name();
  const set = rule(e, `--set --name ${n}`);
  const within = rule(e, `--rcheck --seconds 60 --name ${n}`);
  set.match(from('10.0.0.1', 1000));
  set.match(from('10.0.0.2', 2000));
  e.clock.now = 11000;
  e.clock.wall = 1_000_000;
  const saved = JSON.parse(JSON.stringify(e.state.exportAll()));
  t.is(saved.entries[`recent:${n}`].entries.length, 2);
  within.destroy!();
  set.destroy!();
  // "Restart": a new engine state; the table does not exist yet and is filled when a rule declares it.
  const e2 = makeEnv();
  e2.clock.wall = 1_000_000 + 45_000;
  e2.state.expectSaved(saved);
  e2.clock.now = 0;
  const check = rule(e2, `--rcheck --seconds 60 --name ${n}`);
  t.deepEqual(e2.state.expectSaved(null), [], 'the saved table was taken');
  t.is(e2.table(n)!.count, 2);
  // .1 was 10 s old at snapshot + 45 s down = 55 s; .2 54 s.
  t.true(check.match(from('10.0.0.1', 4999)));
  t.false(check.match(from('10.0.0.1', 5001)));
  t.true(check.match(from('10.0.0.2', 5001)));
  t.is(e2.table(n)!.head!.addr[0], parseIpv4('10.0.0.1'), 'LRU order kept');
});

test('port-knocking chain of seed 001 (three knocks in order, then ssh)', (t) => {
  // port-knocking rules evaluated in order for one client; a real chain walk lives in the engine tests.
  const e = makeEnv();
  const r = (w: string) => rule(e, w);
  const oops1 = r('--rcheck --hitcount 1');
  const set = r('--set');
  const oops2 = r('--rcheck --hitcount 2');
  const upd1 = r('--update --hitcount 1');
  const oops3 = r('--rcheck --hitcount 3');
  const upd2 = r('--update --hitcount 2');
  const remove = r('--remove');
  const ok = r('--rcheck --seconds 20 --hitcount 3');
  const knock = (port: number, ms: number, src = '198.51.100.7') => {
    const p = from(src, ms);
    if (port === 22) return ok.match(p) ? 'open' : 'closed';
    if (port === 1223) return oops1.match(p) ? (remove.match(p), 'oops') : (set.match(p), 'k1');
    if (port === 569) return oops2.match(p) ? (remove.match(p), 'oops') : upd1.match(p) ? 'k2' : (remove.match(p), 'reset');
    if (port === 715) return oops3.match(p) ? (remove.match(p), 'oops') : upd2.match(p) ? 'k3' : (remove.match(p), 'reset');
    remove.match(p);
    return 'reset';
  };
  t.is(knock(22, 0), 'closed');
  t.is(knock(1223, 100), 'k1');
  t.is(knock(569, 200), 'k2');
  t.is(knock(715, 300), 'k3');
  t.is(knock(22, 400, '198.51.100.8'), 'closed', 'another client is unaffected');
  t.is(knock(22, 400), 'open');
  // wrong order
  e.table('DEFAULT')!.flush();
  t.is(knock(569, 1000), 'reset');
  t.is(knock(1223, 1100), 'k1');
  t.is(knock(715, 1200), 'reset');
  t.is(knock(22, 1300), 'closed');
  // interleaved wrong port
  t.is(knock(1223, 2000), 'k1');
  t.is(knock(569, 2100), 'k2');
  t.is(knock(8080, 2150), 'reset');
  t.is(knock(715, 2200), 'reset');
  t.is(knock(22, 2300), 'closed');
  // too slow: the three stamps must all be within 20 s of the ssh attempt
  t.is(knock(1223, 10_000), 'k1');
  t.is(knock(569, 15_000), 'k2');
  t.is(knock(715, 20_000), 'k3');
  t.is(knock(22, 31_000), 'closed');
});

test('a saved table comes back through its proc view after a restart; a picture it cannot take leaves it empty, logged', (t) => {
  const e = makeEnv();
  const n = name();
  const set = rule(e, `--set --name ${n}`);
  e.clock.now = 5000;
  set.match(from('10.0.0.1', 1000));
  set.match(from('10.0.0.1', 3000));
  const saved = e.state.exportAll();
  set.destroy!();
  const e2 = makeEnv();
  e2.clock.wall = saved.savedAt + 50;
  e2.state.expectSaved(saved);
  const check = rule(e2, `--rcheck --seconds 10 --hitcount 2 --name ${n}`);
  const f = e2.proc.get(`net/xt_recent/${n}`)!.read();
  t.regex(f, /^src=10\.0\.0\.1 ttl: 64 last_seen: \d+ oldest_pkt: 2 \d+, \d+\n$/);
  // stamps were 4 s and 2 s old at save time, plus 50 ms of downtime
  t.true(check.match(from('10.0.0.1', 5900)));
  t.false(check.match(from('10.0.0.1', 6100)));
  const e3 = makeEnv();
  e3.state.expectSaved({ savedAt: 0, entries: { [`recent:${n}`]: { x: 1 } } });
  rule(e3, `--rcheck --name ${n}`);
  t.is(e3.table(n)!.count, 0);
  t.regex(e3.logs.join('\n'), new RegExp(`recent:${n}: saved data not restored, starting empty: xt_recent: ${n}: saved state is not a recent table snapshot`));
});
