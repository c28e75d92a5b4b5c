/**
 * Declarative extension state run by the engine (router/netfilter/state.ts,
 * xt/state.ts): one declared key per name shared by rules and kept across an
 * atomic reload, its proc view, persistence through a restart with the
 * downtime, ticks on a fake clock, limits in `xtr status`, saved files that
 * cannot be used refused without losing anything, `xtr ext` commands and
 * SIGHUP reloads through the appliance. The extension is a small fake
 * registered in a test registry next to the real ones.
 */
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hook } from '../xt/packet.js';
import { XtError, type MatchExtension, type RouterServices } from '../xt/extension.js';
import type { ModuleCommand, StateSpec } from '../xt/state.js';
import { loadExtensions, type ExtensionRegistry } from '../modules/registry.js';
import { Netfilter, netfilterCommands, restoreState, saveState } from '../router/netfilter/index.js';
import { splitLine } from '../router/netfilter/commands.js';
import { packet } from '../router/netfilter/testkit.js';
import { extensionCommands } from '../router/commands.js';
import { ControlServer, formatStatus, statusCommands, type StatusSnapshot } from '../router/control.js';
import { buildAppliance } from '../router/appliance.js';
import type { XtrConfig } from '../router/config.js';
import type { Router } from '../router/forward.js';
import type { Logger } from '../router/log.js';

/** What the fake extension keeps per name: the last sources seen (at most MAX), and what the engine did to it. */
interface Seen {
  sources: string[];
  ticks: number[];
  loads: { downtimeMs: number; now: number }[];
}
const MAX = 3;

/** Values created/released per name, across engines (tests run concurrently: each uses its own names). */
const lifecycle = new Map<string, { created: number; released: number }>();
const lifeOf = (name: string) => lifecycle.get(name) ?? lifecycle.set(name, { created: 0, released: 0 }).get(name)!;

function seenSpec(name: string): StateSpec<Seen> {
  return {
    key: `xh4seen:${name}`,
    create: () => {
      lifeOf(name).created++;
      return { sources: [], ticks: [], loads: [] };
    },
    release: () => void lifeOf(name).released++,
    limit: { max: MAX, eviction: 'oldest source first', count: (v) => v.sources.length },
    proc: {
      path: `net/xt_xh4seen/${name}`,
      read: (v) => v.sources.map((s) => `${s}\n`).join(''),
      write: (v, data) => {
        if (data !== '/') throw new XtError(`xh4seen: only "/" (flush) can be written, got ${JSON.stringify(data)}`, 1);
        v.sources.length = 0;
      },
    },
    save: (v) => ({ sources: [...v.sources] }),
    load: (v, saved, downtimeMs, now) => {
      const s = saved as { sources?: unknown };
      if (!Array.isArray(s?.sources) || !s.sources.every((x) => typeof x === 'string')) throw new XtError('xh4seen: saved state is not {sources: [...]}', 1);
      v.sources.push(...s.sources);
      v.loads.push({ downtimeMs, now });
    },
    tick: { everyMs: 1000, run: (v, now) => void v.ticks.push(now) },
  };
}

const seen: MatchExtension<{ name: string }> = {
  kind: 'match',
  name: 'xh4seen',
  families: [4],
  options: [{ name: 'name', arg: 'required' }],
  parse: (opts) => ({ name: opts.find((o) => o.name === 'name')?.value ?? 'DEFAULT' }),
  check(p, env) {
    const spec = seenSpec(p.name);
    const v = env.state.declare(spec);
    return {
      match(pkt) {
        const src = `${pkt.src4 >>> 24}.${(pkt.src4 >>> 16) & 255}.${(pkt.src4 >>> 8) & 255}.${pkt.src4 & 255}`;
        if (v.sources.length >= MAX) v.sources.shift();
        v.sources.push(src);
        return true;
      },
      destroy: () => env.state.release(spec.key),
    };
  },
  save: (p) => ` --name ${p.name}`,
  commands: [
    {
      name: 'xh4seen-count',
      usage: 'NAME',
      run(args, state) {
        if (args.length !== 1) throw new XtError('expected exactly one NAME');
        const v = state.get<Seen>(`xh4seen:${args[0]}`);
        if (!v) throw new XtError(`no table ${JSON.stringify(args[0])}`, 1);
        return `${args[0]} ${v.sources.length}`;
      },
    },
    {
      name: 'xh4seen-tables',
      usage: '',
      run: (_args, state) => state.keys('xh4seen:').join('\n'),
    },
  ],
  reload: (state) => state.keys('xh4seen:').map((k) => `reloaded ${k}`),
};

interface Clock {
  now: number;
  wall: number;
}

async function registryWith(...extra: MatchExtension<any>[]): Promise<ExtensionRegistry> {
  const registry = await loadExtensions();
  for (const e of extra) registry.add(e, 'netfilter-state.test.ts');
  return registry;
}

function servicesOf(clock: Clock, logs: string[]): RouterServices {
  return { now: () => clock.now, wallNow: () => clock.wall, log: (_l: number, line: string) => void logs.push(line), emitLocal() {} } as unknown as RouterServices;
}

/** An engine over the real extensions plus `seen`, its own clocks and log, and a command runner. */
async function engine(clock: Clock = { now: 0, wall: 1_700_000_000_000 }) {
  const logs: string[] = [];
  const nf = new Netfilter({ registry: await registryWith(seen), services: servicesOf(clock, logs) });
  const table = netfilterCommands(nf, { now: () => new Date(Date.UTC(2026, 0, 1)) });
  const run = async (line: string, input: string | null = null) => {
    const words = splitLine(line, 0);
    return table[words[0]!]!(words.slice(1), input);
  };
  const ok = async (line: string, input: string | null = null) => {
    const r = await run(line, input);
    if (r.status !== 0) throw new Error(`${line}: ${r.stderr}`);
    return r.stdout;
  };
  const from = (src: string) => nf.hook(Hook.INPUT, packet({ src, dst: '192.0.2.1', proto: 'udp', sport: 1000, dport: 53 }, 'eth0'));
  return { nf, clock, logs, run, ok, from };
}

test('declare: one value per key shared by rules, kept across an atomic reload, released with the last rule', async (t) => {
  const e = await engine();
  await e.ok('iptables -A INPUT -m xh4seen --name dA');
  await e.ok('iptables -A INPUT -p udp -m xh4seen --name dA');
  t.is(e.nf.state.refs('xh4seen:dA'), 2);
  t.deepEqual(lifeOf('dA'), { created: 1, released: 0 }, 'created once for two rules');
  e.from('10.0.0.1'); // both rules see it
  // iptables-restore replaces the whole table: the new rules declare before the old ones release.
  await e.ok('iptables-restore', '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m xh4seen --name dA\n-A INPUT -m xh4seen --name dB\nCOMMIT\n');
  t.is(e.nf.state.refs('xh4seen:dA'), 1);
  t.is(e.nf.state.refs('xh4seen:dB'), 1);
  t.is(await e.ok('proc cat net/xt_xh4seen/dA'), '10.0.0.1\n10.0.0.1\n', 'value kept');
  t.deepEqual(lifeOf('dA'), { created: 1, released: 0 }, 'not re-created by the reload');
  t.deepEqual(lifeOf('dB'), { created: 1, released: 0 });
  // A refused restore leaks no reference and keeps nothing it created.
  const bad = await e.run('iptables-restore', '*filter\n-A INPUT -m xh4seen --name dC\n-A INPUT -j NOPE\nCOMMIT\n');
  t.not(bad.status, 0);
  t.is(e.nf.state.refs('xh4seen:dC'), 0);
  t.is(e.nf.state.refs('xh4seen:dA'), 1);
  t.is(lifeOf('dC').created, lifeOf('dC').released);
  await e.ok('iptables -F INPUT');
  t.is(e.nf.state.refs('xh4seen:dA'), 0);
  t.is(e.nf.state.get('xh4seen:dA'), undefined);
  t.deepEqual(lifeOf('dA'), { created: 1, released: 1 }, 'released with the last rule');
  t.deepEqual(lifeOf('dB'), { created: 1, released: 1 });
});

test('the spec\'s proc view is registered with the key and goes with it; writes go through the spec, refusals say why', async (t) => {
  const e = await engine();
  await e.ok('iptables -A INPUT -m xh4seen --name P');
  t.true((await e.ok('proc ls')).split('\n').includes('net/xt_xh4seen/P'));
  e.from('10.0.0.7');
  t.is(await e.ok('proc cat /proc/net/xt_xh4seen/P'), '10.0.0.7\n');
  const refused = await e.run('proc write net/xt_xh4seen/P +1.2.3.4');
  t.is(refused.status, 1);
  t.is(refused.stderr, 'proc: net/xt_xh4seen/P: xh4seen: only "/" (flush) can be written, got "+1.2.3.4"\n');
  await e.ok('proc write net/xt_xh4seen/P /');
  t.is(await e.ok('proc cat net/xt_xh4seen/P'), '');
  await e.ok('iptables -D INPUT 1');
  t.false((await e.ok('proc ls')).split('\n').includes('net/xt_xh4seen/P'));
  t.is((await e.run('proc cat net/xt_xh4seen/P')).status, 1);
});

test('save -> restart -> load: the saved picture comes back when the rule declares the key, told the downtime', async (t) => {
  const e = await engine({ now: 5_000, wall: 1_700_000_000_000 });
  await e.ok('iptables -A INPUT -m xh4seen --name S');
  await e.ok('iptables -A INPUT -m xh4seen --name T');
  for (const a of ['10.0.0.1', '10.0.0.2']) e.from(a);
  const file = saveState(e.nf);
  const saved = JSON.parse(file);
  t.is(saved.format, 'xtr-netfilter/2');
  t.is(saved.state.savedAt, 1_700_000_000_000);
  t.deepEqual(saved.state.entries['xh4seen:S'], { sources: ['10.0.0.1', '10.0.0.2'] });

  // A new engine (new process): monotonic clock restarts, 90 s of wall time went by.
  const after = await engine({ now: 12, wall: 1_700_000_090_000 });
  const report = restoreState(after.nf, file);
  t.deepEqual(report.notes, []);
  t.is(await after.ok('proc cat net/xt_xh4seen/S'), '10.0.0.1\n10.0.0.2\n');
  t.deepEqual(after.nf.state.get<Seen>('xh4seen:S')!.loads, [{ downtimeMs: 90_000, now: 12 }]);
  t.is((await after.ok('iptables -S INPUT')).trim(), '-P INPUT ACCEPT\n-A INPUT -m xh4seen --name S\n-A INPUT -m xh4seen --name T');
  // The snapshot is only for the restore: a key declared later starts empty.
  await after.ok('iptables -F INPUT');
  await after.ok('iptables -A INPUT -m xh4seen --name S');
  t.is(await after.ok('proc cat net/xt_xh4seen/S'), '');
  // A wall clock that went backwards is no downtime, not a negative one.
  const back = await engine({ now: 0, wall: 1_600_000_000_000 });
  restoreState(back.nf, file);
  t.is(back.nf.state.get<Seen>('xh4seen:S')!.loads[0]!.downtimeMs, 0);
});

test('ticks run every everyMs of the monotonic clock (driven by a fake one), once when late, and stop with the key', async (t) => {
  const e = await engine({ now: 0, wall: 0 });
  await e.ok('iptables -A INPUT -m xh4seen --name K');
  const v = e.nf.state.get<Seen>('xh4seen:K')!;
  e.nf.state.runTicks(999);
  t.deepEqual(v.ticks, []);
  e.nf.state.runTicks(1000);
  e.nf.state.runTicks(1500);
  t.deepEqual(v.ticks, [1000]);
  e.nf.state.runTicks(2000);
  t.deepEqual(v.ticks, [1000, 2000]);
  e.nf.state.runTicks(9000); // seven periods late: one run, next due a period later
  e.nf.state.runTicks(9500);
  e.nf.state.runTicks(10_000);
  t.deepEqual(v.ticks, [1000, 2000, 9000, 10_000]);
  t.is(e.nf.state.nextTickAt(), 11_000);
  await e.ok('iptables -F INPUT');
  e.nf.state.runTicks(20_000);
  t.deepEqual(v.ticks, [1000, 2000, 9000, 10_000]);
  t.is(e.nf.state.nextTickAt(), Infinity);
});

test('a throwing tick is logged and the other keys still tick', async (t) => {
  const e = await engine({ now: 0, wall: 0 });
  const boom: StateSpec<{ n: number }> = { key: 'xh4boom', create: () => ({ n: 0 }), tick: { everyMs: 10, run: () => { throw new Error('bad tick'); } } };
  e.nf.state.declare(boom);
  await e.ok('iptables -A INPUT -m xh4seen --name K');
  e.nf.state.runTicks(1000);
  t.deepEqual(e.nf.state.get<Seen>('xh4seen:K')!.ticks, [1000]);
  t.true(e.logs.some((l) => l === 'xtr state xh4boom: tick failed: bad tick'));
  e.nf.state.release('xh4boom');
});

test('the one timer drives ticks on the real monotonic clock (bounded wait)', async (t) => {
  const logs: string[] = [];
  const nf = new Netfilter({ registry: await registryWith(), services: { now: () => performance.now(), log: (_l: number, s: string) => void logs.push(s) } as unknown as RouterServices });
  let runs = 0;
  nf.state.declare({ key: 'xh4timer', create: () => ({}), tick: { everyMs: 20, run: () => void runs++ } });
  nf.state.startTimer();
  for (let i = 0; i < 250 && runs < 2; i++) await new Promise((r) => setTimeout(r, 20));
  t.true(runs >= 2, `ticks ran ${runs} times`);
  nf.close();
  const stopped = runs;
  await new Promise((r) => setTimeout(r, 100));
  t.is(runs, stopped, 'no tick after close');
});

test('limits: status lists each declared key with rules, entries/max, eviction and proc path', async (t) => {
  const e = await engine();
  await e.ok('iptables -A INPUT -m xh4seen --name L');
  await e.ok('iptables -A INPUT -m xh4seen --name L');
  await e.ok('iptables -A INPUT -m recent --name xh4R --set');
  for (const a of ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']) e.from(a);
  const report = e.nf.state.report();
  t.deepEqual(report, [
    { key: 'recent:xh4R', refs: 1, entries: 4, max: 200, eviction: 'least recently updated entry (LRU head)', proc: 'net/xt_recent/xh4R' },
    { key: 'xh4seen:L', refs: 2, entries: 3, max: 3, eviction: 'oldest source first', proc: 'net/xt_xh4seen/L' },
  ]);
  const snapshot: StatusSnapshot = { version: 't', pid: 1, uptimeSeconds: 1, interfaces: [], drops: {}, state: report };
  const human = await statusCommands(() => snapshot).status!([], null);
  t.is(human.status, 0);
  t.true(human.stdout.includes('extension state:\n'));
  t.regex(human.stdout, /^ {2}recent:xh4R +1 +4\/200 +least recently updated entry \(LRU head\) +\/proc\/net\/xt_recent\/xh4R$/m);
  t.regex(human.stdout, /^ {2}xh4seen:L +2 +3\/3 +oldest source first +\/proc\/net\/xt_xh4seen\/L$/m);
  const json = JSON.parse((await statusCommands(() => snapshot).status!(['--json'], null)).stdout);
  t.deepEqual(json.state, report);
  t.false(formatStatus({ ...snapshot, state: [] }).includes('extension state'), 'nothing declared: no section');
});

test('saved files that cannot be used: refused with a message, nothing loaded is lost', async (t) => {
  const e = await engine();
  await e.ok('iptables -A INPUT -m xh4seen --name G');
  e.from('10.0.0.9');
  const rulesBefore = await e.ok('iptables-save');
  const cases: [string, RegExp][] = [
    ['{"format": "xtr-netfilter/2", "ipv4": "', /netfilter state: not JSON/],
    ['[]', /netfilter state: unknown format undefined/],
    ['{"format": "xtr-netfilter/9", "ipv4": "", "ipv6": ""}', /unknown format "xtr-netfilter\/9" \(expected xtr-netfilter\/2\)/],
    ['{"format": "xtr-netfilter/2", "ipv4": "", "ipv6": "", "state": {"entries": {}}}', /"state" must be \{savedAt/],
    ['{"format": "xtr-netfilter/2", "ipv4": 4, "ipv6": "", "state": {"savedAt": 1, "entries": {}}}', /"ipv4" and "ipv6" must be iptables-save texts/],
    [
      JSON.stringify({ format: 'xtr-netfilter/2', ipv4: '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m xh4seen --name G\n-A INPUT -j NOPE\nCOMMIT\n', ipv6: '', state: { savedAt: 1, entries: { 'xh4seen:G': { sources: ['1.1.1.1'] } } } }),
      /netfilter state: .*NOPE/,
    ],
  ];
  for (const [text, message] of cases) {
    t.throws(() => restoreState(e.nf, text), { message }, text.slice(0, 60));
    t.is(await e.ok('iptables-save'), rulesBefore, `rules kept: ${text.slice(0, 40)}`);
    t.is(await e.ok('proc cat net/xt_xh4seen/G'), '10.0.0.9\n', `state kept: ${text.slice(0, 40)}`);
  }
  // The failed restore's snapshot does not linger: a key declared now starts empty.
  await e.ok('iptables -A INPUT -m xh4seen --name H');
  t.is(await e.ok('proc cat net/xt_xh4seen/H'), '');
});

test('one key\'s bad saved picture: that key starts empty (logged), the rules and the other keys are restored', async (t) => {
  const e = await engine();
  const file = JSON.stringify({
    format: 'xtr-netfilter/2',
    ipv4: '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m xh4seen --name OK\n-A INPUT -m xh4seen --name BAD\nCOMMIT\n',
    ipv6: '',
    state: { savedAt: 1_700_000_000_000, entries: { 'xh4seen:OK': { sources: ['10.0.0.1'] }, 'xh4seen:BAD': { sources: 7 }, 'xh4seen:GONE': { sources: [] } } },
  });
  const { notes } = restoreState(e.nf, file);
  t.is(await e.ok('proc cat net/xt_xh4seen/OK'), '10.0.0.1\n');
  t.is(await e.ok('proc cat net/xt_xh4seen/BAD'), '');
  t.true(e.logs.includes('xtr state xh4seen:BAD: saved data not restored, starting empty: xh4seen: saved state is not {sources: [...]}'));
  t.deepEqual(notes, ['saved state of xh4seen:GONE not restored: no rule declares it']);
  t.is(e.nf.state.refs('xh4seen:BAD'), 1);
});

test('a file of the previous format (xtr-netfilter/1) restores its rules and says which extension state it could not', async (t) => {
  const e = await engine();
  const v1 = JSON.stringify({
    format: 'xtr-netfilter/1',
    ipv4: '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m recent --set --name old --mask 255.255.255.255 --rsource\nCOMMIT\n',
    ipv6: '',
    proc: { 'net/xt_recent/old': '{"takenAt":1,"tables":[{"name":"old","entries":[]}]}' },
  });
  const { notes } = restoreState(e.nf, v1);
  t.deepEqual(notes, ['written by an older xtr (xtr-netfilter/1): extension state of net/xt_recent/old not restored (rules are)']);
  t.is(await e.ok('iptables -S INPUT'), '-P INPUT ACCEPT\n-A INPUT -m recent --set --name old --mask 255.255.255.255 --rsource\n');
});

test('xtr ext: extensions\' commands registered once from the registry; unknown commands and bad arguments exit 2', async (t) => {
  const e = await engine();
  const registry = await registryWith(seen);
  const ext = extensionCommands(registry.all(), e.nf.state).ext!;
  await e.ok('iptables -A INPUT -m xh4seen --name A');
  e.from('10.0.0.1');
  t.deepEqual(await ext(['xh4seen-count', 'A'], null), { status: 0, stdout: 'A 1\n', stderr: '' });
  t.deepEqual(await ext(['xh4seen-tables'], null), { status: 0, stdout: 'xh4seen:A\n', stderr: '' });
  t.deepEqual(await ext(['xh4seen-count'], null), { status: 2, stdout: '', stderr: 'xtr ext xh4seen-count: expected exactly one NAME\nusage: xtr ext xh4seen-count NAME\n' });
  t.deepEqual(await ext(['xh4seen-count', 'Z'], null), { status: 1, stdout: '', stderr: 'xtr ext xh4seen-count: no table "Z"\nusage: xtr ext xh4seen-count NAME\n' });
  const unknown = await ext(['nosuch'], null);
  t.is(unknown.status, 2);
  // The real extensions' commands (ACCOUNT's `account`, ...) are listed too, sorted with the test's.
  t.regex(unknown.stderr, /^xtr ext: unknown command "nosuch"; known: (\S+, )*xh4seen-count, xh4seen-tables(, \S+)*\n$/);
  const none = await ext([], null);
  t.is(none.status, 2);
  t.regex(none.stderr, /^xtr ext: which command\? usage: xtr ext COMMAND \[ARGS\.\.\.\]\n( {2}xtr ext .*\n)* {2}xtr ext xh4seen-count NAME {4}\(xh4seen\)\n/);
  t.is((await ext(['--help'], null)).status, 0);
  // Two extensions offering one name: a start-up error naming both.
  const clash: MatchExtension<null> = { ...seen, name: 'xh4clash', commands: [{ name: 'xh4seen-count', usage: '', run: () => '' } as ModuleCommand] } as unknown as MatchExtension<null>;
  t.throws(() => extensionCommands([...registry.all(), clash], e.nf.state), { message: 'extension command "xh4seen-count" is offered by both xh4seen and xh4clash' });
});

test('appliance: rules and state persist to stateDir and come back after a restart; ext and reload-databases reach the extensions', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xh4-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = { stateDir: dir, netfilter: {}, extensions: {} } as unknown as XtrConfig;
  const lines: string[] = [];
  const log = { info: (_o: object, m?: string) => void lines.push(`info ${m}`), warn: (_o: object, m?: string) => void lines.push(`warn ${m}`), error: (o: object, m?: string) => void lines.push(`error ${m} ${JSON.stringify(o)}`) } as unknown as Logger;
  const clock: Clock = { now: 0, wall: 1_700_000_000_000 };
  const routerOf = () => ({ services: servicesOf(clock, []) }) as unknown as Router;
  const registry = await registryWith(seen);

  const app = buildAppliance(config, routerOf(), log, registry);
  t.teardown(() => app.netfilter.close());
  t.is((await app.commands.iptables!(['-A', 'INPUT', '-m', 'xh4seen', '--name', 'A'], null)).status, 0);
  app.netfilter.hook(Hook.INPUT, packet({ src: '10.0.0.5', dst: '192.0.2.1', proto: 'udp', sport: 1, dport: 2 }, 'eth0'));
  t.deepEqual(await app.commands.ext!(['xh4seen-count', 'A'], null), { status: 0, stdout: 'A 1\n', stderr: '' });
  // As the control socket dispatches it (`xtr ext ...` from the CLI).
  const control = new ControlServer(join(dir, 'unused.sock'), log);
  control.register(app.commands);
  t.deepEqual(await control.execute({ cmd: 'ext', args: ['xh4seen-count', 'A'], input: null }), { status: 0, stdout: 'A 1\n', stderr: '' });
  const unknown = await control.execute({ cmd: 'ext', args: ['xh4nope'], input: null });
  t.is(unknown.status, 2);
  t.regex(unknown.stderr, /^xtr ext: unknown command "xh4nope"; known: .*xh4seen-count/);
  const reload = await app.commands['reload-databases']!([], null);
  t.is(reload.stdout, 'reloaded xh4seen:A\n');
  t.is(app.reloadDatabases(), 'reloaded xh4seen:A');
  t.is((await app.commands.save!([], null)).status, 0);
  const saved = JSON.parse(readFileSync(join(dir, 'netfilter.json'), 'utf8'));
  t.deepEqual(saved.state.entries['xh4seen:A'], { sources: ['10.0.0.5'] });

  // Restart: a new appliance on the same stateDir, 30 s later.
  clock.wall += 30_000;
  const again = buildAppliance(config, routerOf(), log, registry);
  t.teardown(() => again.netfilter.close());
  t.is((await again.commands.proc!(['cat', 'net/xt_xh4seen/A'], null)).stdout, '10.0.0.5\n');
  t.deepEqual(again.netfilter.state.get<Seen>('xh4seen:A')!.loads, [{ downtimeMs: 30_000, now: 0 }]);
  t.true(lines.includes('info restored rules and extension state'));

  // A state file that does not load is set aside, reported, and the appliance starts empty.
  writeFileSync(join(dir, 'netfilter.json'), '{"format": "xtr-netfilter/2", "ipv4": ');
  const fresh = buildAppliance(config, routerOf(), log, registry);
  t.teardown(() => fresh.netfilter.close());
  t.is(fresh.netfilter.state.report().length, 0);
  t.true(lines.some((l) => l.startsWith('error saved state could not be restored; starting with an empty rule set') && l.includes('not JSON')));
});
