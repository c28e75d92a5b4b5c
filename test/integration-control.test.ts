/**
 * The control socket and the xtr CLI over a real Unix socket: request
 * framing, error answers that never take the server down, root-only
 * permissions, stdin forwarding, and the "not running" message.
 */
import test from 'ava';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlServer, formatDuration, parseRequest, statusCommands, type StatusSnapshot } from '../router/control.js';
import { readsStdin, sendCommand } from '../router/cli.js';
import { silentLogger } from '../router/log.js';
import { exec, REPO_ROOT } from './helpers/netns.js';

const cliPath = join(REPO_ROOT, 'bin', 'xtr.js');

function snapshot(): StatusSnapshot {
  return {
    version: '0.0.0-test',
    pid: 4242,
    uptimeSeconds: 3725.5,
    interfaces: [
      { name: 'eth0', kind: 'tun', device: 'c0@lab-c', mtu: 1500, addresses: ['198.51.100.1/24'], stats: { rxPackets: 7, rxBytes: 700, txPackets: 5, txBytes: 500, txDropped: 1 }, drops: { 'ttl-exceeded': 2 } },
      { name: 'eth1', kind: 'tun', device: 's0@lab-s', mtu: 1500, addresses: [], stats: { rxPackets: 1, rxBytes: 1, txPackets: 1, txBytes: 1, txDropped: 0 }, drops: { 'ttl-exceeded': 1, 'no-route': 0 } },
      { name: 'xtr0', kind: 'host', device: 'xtr0', mtu: 65535, addresses: [], stats: { rxPackets: 0, rxBytes: 0, txPackets: 2, txBytes: 168, txDropped: 0 } },
    ],
    drops: { 'ttl-exceeded': 3, 'no-route': 0 },
  };
}

async function withServer(fn: (server: ControlServer, socket: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'xtr-ctl-'));
  const socket = join(dir, 'sub', 'ctl.sock');
  const server = new ControlServer(socket, silentLogger());
  server.register(statusCommands(snapshot));
  server.register({
    // Echoes what it was given, so framing and stdin forwarding are observable.
    'iptables-restore': (args, input) => ({ status: 0, stdout: `args=${JSON.stringify(args)} bytes=${input?.length ?? -1}\n`, stderr: '' }),
    boom: () => {
      throw new Error('kaput');
    },
    slow: async (args) => {
      await new Promise((r) => setTimeout(r, Number(args[0] ?? 50)));
      return { status: 0, stdout: `slow ${args[0]}\n`, stderr: '' };
    },
    fails: () => ({ status: 2, stdout: '', stderr: 'bad option\n' }),
  });
  await server.listen();
  try {
    await fn(server, socket);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Sends raw lines on one connection and collects `count` answer lines. */
function rawExchange(socket: string, payload: string, count: number): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socket);
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`only got: ${buf}`));
    }, 5000);
    s.on('connect', () => s.write(payload));
    s.on('data', (c) => {
      buf += c.toString();
      const lines = buf.split('\n').filter(Boolean);
      if (lines.length >= count) {
        clearTimeout(timer);
        s.destroy();
        resolve(lines.map((l) => JSON.parse(l)));
      }
    });
    s.on('error', reject);
  });
}

test('parseRequest names what is wrong', (t) => {
  const cases: [string, string][] = [
    ['{', 'not JSON'],
    ['[1]', 'expected an object'],
    ['{"cmd":""}', '"cmd" must be a non-empty string'],
    ['{"cmd":"x","args":"a"}', '"args" must be an array of strings'],
    ['{"cmd":"x","args":[1]}', '"args" must be an array of strings'],
    ['{"cmd":"x","input":5}', '"input" must be a string or null'],
  ];
  for (const [line, msg] of cases) {
    const r = parseRequest(line);
    t.is(typeof r, 'string', line);
    t.true((r as string).includes(msg), `${line} -> ${r}`);
  }
  t.deepEqual(parseRequest('{"cmd":"status"}'), { cmd: 'status', args: [], input: null });
});

test('formatDuration', (t) => {
  t.is(formatDuration(5), '5s');
  t.is(formatDuration(65), '1m05s');
  t.is(formatDuration(3725.5), '1h02m05s');
  t.is(formatDuration(90061), '1d1h01m01s');
});

test('socket is root-only and status/ping answer', async (t) => {
  await withServer(async (_server, socket) => {
    t.is(statSync(socket).mode & 0o777, 0o600);
    t.deepEqual(await sendCommand(socket, { cmd: 'ping', args: [], input: null }), { status: 0, stdout: 'pong\n', stderr: '' });
    const human = await sendCommand(socket, { cmd: 'status', args: [], input: null });
    t.is(human.status, 0);
    t.regex(human.stdout, /up 1h02m05s/);
    t.regex(human.stdout, /^eth0\s+tun\s+c0@lab-c\s+1500\s+7\s+700\s+5\s+500\s+1\s+2\s+198\.51\.100\.1\/24$/m);
    t.regex(human.stdout, /^  ttl-exceeded\s+3\s+\(eth0 2, eth1 1\)$/m);
    t.notRegex(human.stdout, /no-route/);
    const json = await sendCommand(socket, { cmd: 'status', args: ['--json'], input: null });
    t.deepEqual(JSON.parse(json.stdout), snapshot());
    const bad = await sendCommand(socket, { cmd: 'status', args: ['--bogus'], input: null });
    t.is(bad.status, 2);
    t.regex(bad.stderr, /unknown option --bogus/);
  });
});

test('bad requests get errors and the connection keeps working', async (t) => {
  await withServer(async (_server, socket) => {
    const answers = await rawExchange(
      socket,
      ['not json', '{"cmd":"nosuch"}', '{"cmd":"boom"}', '{"cmd":"fails"}', '{"cmd":"ping"}', ''].join('\n'),
      5,
    );
    t.is(answers[0].status, 2);
    t.regex(String(answers[0].stderr), /not JSON/);
    t.is(answers[1].status, 2);
    t.regex(String(answers[1].stderr), /unknown command "nosuch"; known: .*iptables-restore.*ping.*status/);
    t.is(answers[2].status, 1);
    t.regex(String(answers[2].stderr), /boom: internal error: kaput/);
    t.deepEqual(answers[3], { status: 2, stdout: '', stderr: 'bad option\n' });
    t.is(answers[4].stdout, 'pong\n');
  });
});

test('commands run one at a time, answers in request order', async (t) => {
  await withServer(async (_server, socket) => {
    const started = Date.now();
    const [a, b] = await Promise.all([
      sendCommand(socket, { cmd: 'slow', args: ['150'], input: null }),
      sendCommand(socket, { cmd: 'slow', args: ['150'], input: null }),
    ]);
    t.is(a.stdout, 'slow 150\n');
    t.is(b.stdout, 'slow 150\n');
    // Serialised: the second waited for the first (not a performance assertion: a lower bound).
    t.true(Date.now() - started >= 290);
  });
});

test('a command name registered twice is refused', (t) => {
  const server = new ControlServer('/nonexistent/x.sock', silentLogger());
  server.register({ a: () => ({ status: 0, stdout: '', stderr: '' }) });
  t.throws(() => server.register({ a: () => ({ status: 0, stdout: '', stderr: '' }) }), { message: /registered twice/ });
});

test('a second server on a live socket is refused; a stale socket file is replaced', async (t) => {
  await withServer(async (_server, socket) => {
    const other = new ControlServer(socket, silentLogger());
    await t.throwsAsync(() => other.listen(), { message: /another xtr is already listening/ });
  });
  const dir = mkdtempSync(join(tmpdir(), 'xtr-ctl-'));
  const socket = join(dir, 'stale.sock');
  // A socket file with no listener, as a killed router leaves it (bound, never listening).
  const made = await exec(['python3', '-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', socket]);
  t.is(made.code, 0, made.stderr);
  t.true(existsSync(socket));
  const server = new ControlServer(socket, silentLogger());
  server.register(statusCommands(snapshot));
  try {
    await server.listen();
    t.is((await sendCommand(socket, { cmd: 'ping', args: [], input: null })).stdout, 'pong\n');
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  t.false(existsSync(socket));
});

test('which commands read stdin', (t) => {
  t.true(readsStdin('iptables-restore', []));
  t.true(readsStdin('ip6tables-restore', ['--noflush']));
  t.true(readsStdin('proc', ['write', 'xt_recent/foo']));
  t.false(readsStdin('proc', ['write', 'xt_recent/foo', '+1.2.3.4']));
  t.false(readsStdin('status', []));
});

test('the xtr CLI forwards args and stdin, prints and exits with the status', async (t) => {
  t.true(existsSync(join(REPO_ROOT, 'dist', 'router', 'cli.js')), 'dist/ is built (npm run build)');
  await withServer(async (_server, socket) => {
    const r = await exec([process.execPath, cliPath, '--socket', socket, 'iptables-restore', '--noflush'], { input: '*filter\nCOMMIT\n' });
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, 'args=["--noflush"] bytes=15\n');
    const f = await exec(['env', `XTR_SOCKET=${socket}`, process.execPath, cliPath, 'fails']);
    t.is(f.code, 2);
    t.is(f.stderr, 'bad option\n');
    const st = await exec(['env', `XTR_SOCKET=${socket}`, process.execPath, cliPath, 'status', '--json']);
    t.is(st.code, 0);
    t.is(JSON.parse(st.stdout).pid, 4242);
  });
  const gone = await exec([process.execPath, cliPath, '--socket', '/run/xtr/definitely-not-here.sock', 'status']);
  t.is(gone.code, 1);
  t.regex(gone.stderr, /router is not running .*definitely-not-here\.sock/);
  const usage = await exec([process.execPath, cliPath]);
  t.is(usage.code, 2);
  t.regex(usage.stderr, /usage: xtr/);
});
