/**
 * Issue 13 §3/§4 without namespaces: what a config reload refuses or applies (diffConfig), which
 * control commands are audited (isChange), the audit hook's records (kernel SO_PEERCRED of a real
 * Unix connection), drop summaries from the counters (DropEvents), the `log` and `events` config
 * keys, pino's ISO time and level names, and the syslog copy: RFC 5424 lines as a syslog daemon
 * receives them on a Unix datagram socket (socat as the daemon), with the severity of each line.
 */
import test from 'ava';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir, hostname } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { ConfigError, validateConfig, type XtrConfig } from '../router/config.js';
import { diffConfig } from '../router/reload.js';
import { controlAudit, isChange, peerCredentials, type AuditRecord } from '../router/audit.js';
import { DropEvents } from '../router/drop-events.js';
import { DROP_COUNT } from '../router/interfaces.js';
import { createLogger, syslogSinks } from '../router/log.js';
import { syslogLine } from '../router/syslog.js';
import { background, waitFor } from './helpers/netns.js';

const base = {
  interfaces: [
    { name: 'eth0', addresses: ['10.1.0.1/24'], peer: { netns: 'a', ifname: 'a0', addresses: ['10.1.0.2/24'], routes: ['default'] } },
    { name: 'wan', addresses: ['10.2.0.1/24'], attach: 'gb' },
  ],
  routes: [{ to: '10.9.0.0/16', via: '10.1.0.2' }],
};
const cfg = (edit: (d: typeof base & Record<string, unknown>) => void = () => undefined): XtrConfig => {
  const d = structuredClone(base) as typeof base & Record<string, unknown>;
  edit(d);
  return validateConfig(d);
};

const diffRows: [string, (d: typeof base & Record<string, unknown>) => void, string[], string[]][] = [
  ['nothing', () => undefined, [], []],
  ['an address of a link-mode interface', (d) => d.interfaces[0].addresses.push('10.3.0.1/24'), [], ['interfaces[0].addresses (eth0): 10.1.0.1/24 -> 10.1.0.1/24 10.3.0.1/24']],
  ['a route', (d) => (d.routes = []), [], ['routes: 1 -> 0']],
  ['log level', (d) => (d.logLevel = 'debug'), [], ['logLevel: info -> debug']],
  ['metrics on', (d) => (d.metrics = { listen: '127.0.0.1:9108' }), [], ['metrics: off -> 127.0.0.1:9108']],
  ['drop interval', (d) => (d.events = { dropIntervalMs: 0 }), [], ['events.dropIntervalMs: 1000 -> 0']],
  ['an interface mode', (d) => ((d.interfaces[0] as Record<string, unknown>).mode = 'tap'), ['interfaces[0].mode', 'interfaces[0].mac'], []],
  ['an MTU', (d) => ((d.interfaces[0] as Record<string, unknown>).mtu = 1400), ['interfaces[0].mtu'], []],
  ['an interface added', (d) => d.interfaces.push({ name: 'eth9', addresses: [] } as never), ['interfaces'], []],
  ['an interface renamed', (d) => (d.interfaces[0].name = 'lan'), ['interfaces'], []],
  ['a gateway-mode address', (d) => d.interfaces[1].addresses.push('10.4.0.1/24'), ['interfaces[1].addresses'], []],
  ['the peer', (d) => (d.interfaces[0].peer!.addresses = ['10.1.0.3/24']), ['interfaces[0].peer'], []],
  ['the control socket', (d) => (d.control = { socket: '/run/other.sock' }), ['control.socket'], []],
  ['stateDir', (d) => (d.stateDir = '/tmp/x'), ['stateDir'], []],
  ['conntrack settings', (d) => (d.netfilter = { conntrack: { max: 100 } }), ['netfilter.conntrack'], []],
  ['log format', (d) => (d.log = { time: 'epoch' }), ['log.time'], []],
  ['failOpen', (d) => (d.failOpen = true), ['failOpen'], []],
  ['workers', (d) => ((d as Record<string, unknown>).workers = 2), ['workers'], []],
  ['offloads', (d) => ((d as Record<string, unknown>).offloads = false), ['offloads'], []],
];
for (const [name, edit, refused, changed] of diffRows) {
  test(`diffConfig: ${name}`, (t) => {
    const d = diffConfig(cfg(), cfg(edit));
    t.deepEqual(d.refused.map((r) => r.path), refused);
    for (const r of d.refused) t.regex(r.why, /restart needed/);
    t.deepEqual(d.changed, changed);
  });
}

const changeRows: [string, string[], boolean][] = [
  ['iptables', ['-A', 'INPUT', '-j', 'DROP'], true],
  ['iptables', ['-t', 'nat', '-I', 'POSTROUTING', '1', '-j', 'MASQUERADE'], true],
  ['ip6tables', ['--flush'], true],
  ['iptables', ['-vZ'], true],
  ['iptables', ['-P', 'FORWARD', 'DROP'], true],
  ['iptables', ['-nvL'], false],
  ['iptables', ['-S', 'INPUT'], false],
  ['iptables', ['-C', 'INPUT', '-p', 'tcp', '-j', 'ACCEPT'], false],
  ['iptables', ['-L', '-n', '-v', '-x'], false],
  ['iptables-restore', [], true],
  ['iptables-restore', ['-n'], true],
  ['iptables-restore', ['-t'], false],
  ['iptables-save', [], false],
  ['conntrack', ['-L'], false],
  ['conntrack', ['-F'], true],
  ['proc', ['cat', 'xt_recent/SSH'], false],
  ['proc', ['write', 'xt_recent/SSH', '/'], true],
  ['ext', ['pknock', 'list'], true],
  ['ext', ['--help'], false],
  ['reload', [], true],
  ['reload-databases', [], true],
  ['save', [], true],
  ['status', ['--json'], false],
  ['events', [], false],
];
test('isChange: which control commands are audited', (t) => {
  for (const [cmd, args, want] of changeRows) t.is(isChange(cmd, args), want, `${cmd} ${args.join(' ')}`);
});

/** A Unix socket pair through a real listener: [server end, client end]. */
async function connectedPair(t: { teardown(f: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'yd-audit-'));
  const path = join(dir, 's.sock');
  let serverEnd: net.Socket | null = null;
  const server = net.createServer((s) => (serverEnd = s));
  await new Promise<void>((r) => server.listen(path, r));
  const client = net.connect(path);
  await waitFor(() => serverEnd !== null, 5000);
  t.teardown(() => {
    client.destroy();
    serverEnd?.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { server: serverEnd!, client };
}

test('peerCredentials: the kernel names this process as the peer (SO_PEERCRED)', async (t) => {
  const { server } = await connectedPair(t);
  const cred = await peerCredentials(server);
  t.is(cred.pid, process.pid);
  t.is(cred.uid, process.getuid!());
  t.is(cred.comm, readFileSync('/proc/self/comm', 'utf8').trim());
});

test('controlAudit: one record per changing command with argv, exit status, input size and the first error line; none for a listing', async (t) => {
  const { server } = await connectedPair(t);
  const lines: [object, string | undefined][] = [];
  const events: { kind: string; fields: Readonly<Record<string, unknown>> }[] = [];
  const hook = controlAudit({ info: (o, m) => lines.push([o, m]) }, { publish: (e) => events.push(e) });
  t.is(await hook(server, { cmd: 'iptables', args: ['-L'], input: null }), null);
  const done = await hook(server, { cmd: 'iptables-restore', args: [], input: '*filter\nCOMMIT\n' });
  done!({ status: 1, stdout: '', stderr: '\niptables-restore: line 2 failed\nmore\n' });
  await waitFor(() => lines.length === 1, 5000);
  const rec = lines[0][0] as AuditRecord;
  t.is(lines[0][1], 'audit');
  t.like(rec, { audit: true, argv: ['iptables-restore'], exitStatus: 1, inputBytes: 15, error: 'iptables-restore: line 2 failed', peer: { pid: process.pid } });
  t.is(events.length, 1);
  t.is(events[0].kind, 'rule-change');
  t.false('audit' in events[0].fields);
  t.like(events[0].fields, { argv: ['iptables-restore'], exitStatus: 1 });
});

test('controlAudit: a failed peer lookup is said, not guessed', async (t) => {
  const { server } = await connectedPair(t);
  const lines: object[] = [];
  const hook = controlAudit({ info: (o) => lines.push(o) }, null, () => Promise.reject(new Error('no perl')));
  (await hook(server, { cmd: 'save', args: [], input: null }))!({ status: 0, stdout: '', stderr: '' });
  await waitFor(() => lines.length === 1, 5000);
  t.like(lines[0], { peer: null, peerError: 'no perl', exitStatus: 0 });
});

test('DropEvents: one summary per reason that grew, with the interfaces, and nothing for an interval without drops', (t) => {
  const eth0 = { name: 'eth0', drops: new Float64Array(DROP_COUNT) };
  const eth1 = { name: 'eth1', drops: new Float64Array(DROP_COUNT) };
  const router = { interfaces: [null, eth0, eth1], localDrops: new Float64Array(DROP_COUNT) } as never;
  const seen: { kind: string; fields: Record<string, unknown> }[] = [];
  const d = new DropEvents(router, { publish: (e) => seen.push(e as never) });
  eth0.drops[64] = 5; // before the start: not reported
  d.setInterval(60_000);
  t.is(d.flush(), 0);
  eth0.drops[64] += 3;
  eth1.drops[64] += 2;
  eth1.drops[67] += 1;
  t.is(d.flush(), 2);
  t.deepEqual(
    seen.map((e) => [e.kind, e.fields]),
    [
      ['drop', { reason: 'no_route', count: 5, intervalMs: 60_000, interfaces: { eth0: 3, eth1: 2 } }],
      ['drop', { reason: 'netfilter', count: 1, intervalMs: 60_000, interfaces: { eth1: 1 } }],
    ],
  );
  t.is(d.flush(), 0);
  d.stop();
});

test('config: log and events keys, defaults and errors', (t) => {
  const c = validateConfig({});
  t.deepEqual(c.log, { time: 'iso', levels: 'label', syslog: null });
  t.deepEqual(c.events, { dropIntervalMs: 1000 });
  t.deepEqual(validateConfig({ log: { syslog: true } }).log.syslog, { path: '/dev/log', facility: 'daemon', level: 'info', tag: 'xtr' });
  t.deepEqual(validateConfig({ log: { time: 'epoch', levels: 'number', syslog: { path: '/run/x.sock', facility: 'local3', level: 'warn', tag: 'gw1' } } }).log, {
    time: 'epoch',
    levels: 'number',
    syslog: { path: '/run/x.sock', facility: 'local3', level: 'warn', tag: 'gw1' },
  });
  const rows: [unknown, string][] = [
    [{ log: { time: 'local' } }, 'log.time: "local" must be iso or epoch'],
    [{ log: { levels: 'names' } }, 'log.levels: "names" must be label or number'],
    [{ log: { syslog: { facility: 'daemons' } } }, 'log.syslog.facility: "daemons" is not a syslog facility'],
    [{ log: { syslog: { path: 'dev/log' } } }, 'log.syslog.path: "dev/log" must be an absolute path'],
    [{ log: { syslog: { tag: 'x tr' } } }, 'log.syslog.tag: "x tr" must be 1-48 printable ASCII characters without spaces'],
    [{ log: { color: true } }, 'log.color: unknown key'],
    [{ events: { dropIntervalMs: 10 } }, 'events.dropIntervalMs: 10 must be 0 (off) or an integer number of milliseconds from 100 to 3600000'],
  ];
  for (const [doc, msg] of rows) {
    const e = t.throws(() => validateConfig(doc), { instanceOf: ConfigError });
    t.true(e!.message.startsWith(msg), `${e!.message} / ${msg}`);
  }
});

function capture(opts: Parameters<typeof createLogger>[0]) {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, logger: createLogger({ level: 'debug', pretty: false, destination: stream, ...opts }) };
}

test('log: ISO time and level names by default; epoch and numbers when configured', (t) => {
  const a = capture({});
  a.logger.warn({ x: 1 }, 'hello');
  t.is(a.lines[0].level, 'warn');
  t.regex(String(a.lines[0].time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const b = capture({ time: 'epoch', levels: 'number' });
  b.logger.warn({ x: 1 }, 'hello');
  t.is(b.lines[0].level, 40);
  t.is(typeof b.lines[0].time, 'number');
});

test('syslogLine: severities from the level, the line\'s own syslog severity, notice for audit; fields as JSON', (t) => {
  const rows: [Record<string, unknown>, string | null][] = [
    [{ level: 'info', time: 'x', pid: 1, hostname: 'h', name: 'xtr', msg: 'router started', routes4: 3 }, '<30>router started {"routes4":3}\n'],
    [{ level: 30, msg: 'numeric level' }, '<30>numeric level\n'],
    [{ level: 'warn', msg: 'w' }, '<28>w\n'],
    [{ level: 'error', msg: 'e' }, '<27>e\n'],
    [{ level: 'fatal', msg: 'f' }, '<26>f\n'],
    [{ level: 'debug', msg: 'd' }, null],
    [{ level: 'warn', syslog: 1, msg: 'IN=eth0 OUT= SRC=10.0.0.1' }, '<25>IN=eth0 OUT= SRC=10.0.0.1 {"syslog":1}\n'],
    [{ level: 'info', audit: true, argv: ['iptables', '-F'], msg: 'audit' }, '<29>audit {"audit":true,"argv":["iptables","-F"]}\n'],
    [{ level: 'info', msg: 'two\nlines' }, '<30>two lines\n'],
  ];
  for (const [line, want] of rows) t.is(syslogLine(JSON.stringify(line), 3, 30), want, JSON.stringify(line));
  t.is(syslogLine('not json', 3, 30), null);
});

test.serial('syslog: RFC 5424 datagrams on a Unix socket (socat as the daemon), one per line, with header and severity', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'yd-syslog-'));
  const sock = join(dir, 'log.sock');
  const out = join(dir, 'received');
  // socat receives the datagrams and writes them one after the other (logger sends no newline):
  // the messages are split where the next RFC 5424 header `<PRI>1 ` starts.
  const daemon = background(['socat', '-u', `UNIX-RECV:${sock}`, '-'], { stdoutFile: out });
  const received = () => (existsSync(out) ? readFileSync(out, 'utf8').split(/(?=<\d{1,3}>1 )/).filter(Boolean) : []);
  try {
    t.true(await waitFor(() => existsSync(sock), 5000), 'socat listens');
    const { logger } = capture({ syslog: { path: sock, facility: 'local3', level: 'info', tag: 'xtr-test' } });
    logger.info({ routes4: 3 }, 'router started');
    logger.warn('careful');
    logger.error({ err: 'boom' }, 'failed');
    logger.debug('not sent: below log.syslog.level');
    logger.info({ audit: true, argv: ['iptables', '-A', 'INPUT', '-j', 'DROP'], exitStatus: 0 }, 'audit');
    t.true(await waitFor(() => received().length >= 4, 15_000), `four datagrams: ${received().join(' | ')}; socat: ${daemon.stderr()}`);
    const got = received();
    // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG (RFC 5424 section 6)
    const header = /^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}(?:Z|[+-]\d\d:\d\d)) (\S+) (\S+) (\d+) (\S+) (\S+) (.*)$/;
    const parsed = got.map((l) => {
      const m = header.exec(l);
      t.truthy(m, l);
      return { pri: Number(m![1]), host: m![3], app: m![4], procid: Number(m![5]), msgid: m![6], sd: m![7], msg: m![8] };
    });
    const byMsg = (p: string) => parsed.find((x) => x.msg.startsWith(p));
    // local3 = 19: 19*8 + severity.
    t.like(byMsg('router started'), { pri: 19 * 8 + 6, app: 'xtr-test', procid: process.pid, msgid: '-', sd: '-', msg: 'router started {"routes4":3}' });
    t.like(byMsg('careful'), { pri: 19 * 8 + 4 });
    t.like(byMsg('failed'), { pri: 19 * 8 + 3, msg: 'failed {"err":"boom"}' });
    t.like(byMsg('audit'), { pri: 19 * 8 + 5 });
    t.is(parsed[0].host, hostname());
    t.false(got.some((l) => l.includes('not sent')));
  } finally {
    for (const sink of syslogSinks) await sink.close();
    await daemon.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
