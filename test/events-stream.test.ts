/**
 * The general event stream (platform): services.event logs and publishes;
 * the control socket fans events out to `xtr events` subscribers as JSON
 * lines, filtered by kind prefix; a subscriber that stops reading loses
 * events (counted, then announced with an `events.dropped` line) instead of
 * growing the router's memory or slowing the publisher; the real CLI prints
 * the stream.
 */
import test from 'ava';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlServer, EVENTS_MAX_QUEUED_BYTES } from '../router/control.js';
import { EventHub, Services } from '../router/services.js';
import { exec, REPO_ROOT, waitFor } from './helpers/netns.js';

const quiet = { info() {}, warn() {}, error() {} };

async function server() {
  const dir = mkdtempSync(join(tmpdir(), 'xw4-events-'));
  const socket = join(dir, 'xtr.sock');
  const c = new ControlServer(socket, quiet);
  const hub = new EventHub();
  c.setEventSource(hub);
  c.register({ ping: () => ({ status: 0, stdout: 'pong\n', stderr: '' }) });
  await c.listen();
  return { c, hub, socket, close: async () => (await c.close(), rmSync(dir, { recursive: true, force: true })) };
}

function subscriber(socket: string, args: string[] = []) {
  const lines: Record<string, unknown>[] = [];
  const sock = net.connect(socket);
  let buf = '';
  sock.on('connect', () => sock.write(JSON.stringify({ cmd: 'events', args }) + '\n'));
  sock.on('data', (d) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, nl)));
      buf = buf.slice(nl + 1);
    }
  });
  return { sock, lines };
}

test('services.event: one pino line with the fields, one published event', (t) => {
  const logged: unknown[] = [];
  const logger = { info: (o: unknown, m: string) => logged.push([o, m]) } as never;
  const s = new Services({ injectLocal() {} }, logger);
  const seen: unknown[] = [];
  s.events.subscribe((e) => seen.push([e.kind, e.fields]));
  s.event('pknock.open', { name: 'SSH', ip: '10.0.0.2' });
  t.deepEqual(logged, [[{ name: 'SSH', ip: '10.0.0.2', event: 'pknock.open' }, 'pknock.open']]);
  t.deepEqual(seen, [['pknock.open', { name: 'SSH', ip: '10.0.0.2' }]]);
});

test('subscribers get JSON lines filtered by kind; commands go on meanwhile; a closed subscriber is dropped', async (t) => {
  const s = await server();
  try {
    const all = subscriber(s.socket);
    const some = subscriber(s.socket, ['--kind', 'pknock.']);
    t.true(await waitFor(() => all.lines.length > 0 && some.lines.length > 0, 5000));
    t.like(all.lines[0], { kind: 'events.subscribed' });
    s.hub.publish({ kind: 'pknock.open', time: 1, fields: { ip: '10.0.0.2' } });
    s.hub.publish({ kind: 'psd.scan', time: 2, fields: { ip: '10.0.0.3' } });
    t.true(await waitFor(() => all.lines.length === 3 && some.lines.length === 2, 5000));
    t.deepEqual(all.lines.slice(1), [
      { ip: '10.0.0.2', kind: 'pknock.open', time: 1 },
      { ip: '10.0.0.3', kind: 'psd.scan', time: 2 },
    ]);
    t.deepEqual(some.lines[1], { ip: '10.0.0.2', kind: 'pknock.open', time: 1 });
    t.is((await s.c.execute({ cmd: 'ping', args: [], input: null })).stdout, 'pong\n');
    all.sock.destroy();
    some.sock.destroy();
    await waitFor(() => (s.hub as unknown as { listeners: Set<unknown> }).listeners.size === 0, 5000);
    t.is(s.hub.subscribers, 0);
  } finally {
    await s.close();
  }
});

test('a subscriber that does not read loses events (counted, announced) rather than growing memory', async (t) => {
  const s = await server();
  try {
    const slow = subscriber(s.socket);
    t.true(await waitFor(() => slow.lines.length === 1, 5000));
    slow.sock.pause();
    const big = 'x'.repeat(4096);
    const n = Math.ceil((EVENTS_MAX_QUEUED_BYTES * 8) / 4096);
    for (let i = 0; i < n; i++) s.hub.publish({ kind: 'test.big', time: i, fields: { big } });
    t.true(s.c.eventsDropped > 0, `dropped ${s.c.eventsDropped} of ${n}`);
    slow.sock.resume();
    // Once the queued lines have drained, the next event fits again (published until it arrives).
    t.true(
      await waitFor(() => {
        if (slow.lines.some((l) => l.kind === 'test.after')) return true;
        s.hub.publish({ kind: 'test.after', time: n, fields: {} });
        return false;
      }, 10_000, 100),
    );
    const dropped = slow.lines.filter((l) => l.kind === 'events.dropped').reduce((a, l) => a + Number(l.count), 0);
    const got = slow.lines.filter((l) => l.kind === 'test.big').length;
    t.true(got < n && dropped >= n - got, `received ${got} + announced dropped ${dropped} of ${n}`);
    t.is(s.c.eventsDropped, dropped, 'every drop was announced before the next delivered event');
    slow.sock.destroy();
  } finally {
    await s.close();
  }
});

test('the CLI: xtr events --count N prints N events and exits; bad arguments are refused', async (t) => {
  const s = await server();
  try {
    const cli = exec([process.execPath, '--import', 'tsx', join(REPO_ROOT, 'bin', 'xtr.js'), '--socket', s.socket, 'events', '--kind', 'a.', '--count', '2'], { timeoutMs: 20_000 });
    await waitFor(() => s.hub.subscribers === 1, 10_000);
    for (const kind of ['b.x', 'a.one', 'a.two', 'a.three']) s.hub.publish({ kind, time: 0, fields: {} });
    const r = await cli;
    t.is(r.code, 0, r.stderr);
    t.deepEqual(
      r.stdout.trim().split('\n').map((l) => JSON.parse(l).kind),
      ['events.subscribed', 'a.one', 'a.two'],
    );
    const bad = await exec([process.execPath, '--import', 'tsx', join(REPO_ROOT, 'bin', 'xtr.js'), '--socket', s.socket, 'events', '--bogus'], { timeoutMs: 20_000 });
    t.is(bad.code, 2);
    t.regex(bad.stderr, /xtr events: unknown argument "--bogus"/);
  } finally {
    await s.close();
  }
});
