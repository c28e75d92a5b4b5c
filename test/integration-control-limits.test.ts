/**
 * The control socket's limits on a real router (issue 12 §5, "Control-socket
 * abuse cases"): an over-long line, too much streamed input, too many
 * connections, an idle connection and a client that sends 20,000 commands
 * without reading a reply. Each is refused clearly (an answer the client can
 * read, a log line), nothing already loaded is lost, the router's memory
 * stays bounded and it keeps forwarding.
 *
 * The lab router runs with small limits so the cases are quick:
 * control.maxConnections 8, maxLineBytes 64 KiB, maxInputBytes 256 KiB,
 * idleTimeoutMs 1500.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { bigRuleset } from './helpers/big-ruleset.js';
import { sleep, startLab, uniquePrefix, waitFor, type Lab } from './helpers/netns.js';

const LIMITS = { maxConnections: 8, maxLineBytes: 65536, maxInputBytes: 262144, idleTimeoutMs: 1500 };

let lab: Lab;

test.before(async () => {
  lab = await startLab({
    prefix: uniquePrefix('yc'),
    patch: (doc) => {
      doc.control = { ...(doc.control as object), ...LIMITS };
    },
  });
});

test.after.always(async () => {
  await lab?.stop();
});

/** A raw client connection: what it received, line by line, and whether the router closed it. */
interface Raw {
  sock: net.Socket;
  lines: string[];
  closed: Promise<void>;
  isClosed(): boolean;
}

function connect(socketPath: string): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const lines: string[] = [];
    let buf = '';
    let closed = false;
    const done = new Promise<void>((r) =>
      sock.on('close', () => {
        closed = true;
        r();
      }),
    );
    sock.on('data', (c) => {
      buf += c.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    sock.on('error', () => undefined);
    sock.once('connect', () => resolve({ sock, lines, closed: done, isClosed: () => closed }));
    sock.once('error', reject);
  });
}

const PING = JSON.stringify({ cmd: 'ping', args: [], input: null }) + '\n';

/** The rule set without its comment lines (the save time) and counters. */
async function rules(): Promise<string> {
  const r = await lab.xtr(['iptables-save']);
  return r.stdout.split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/ \[\d+:\d+\]$/, '')).join('\n');
}

function vmRssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]);
}

async function closedWithin(raw: Raw, ms: number): Promise<boolean> {
  return waitFor(() => raw.isClosed(), ms, 20);
}

test.serial('an over-long request line: answered with what is wrong, the connection closed, the rule set kept', async (t) => {
  t.is((await lab.xtr(['iptables', '-A', 'FORWARD', '-s', '10.9.9.9', '-j', 'DROP'])).status, 0);
  const before = await rules();
  const raw = await connect(lab.router.socket);
  // A request before the long line is still answered, in order.
  raw.sock.write(PING + JSON.stringify({ cmd: 'iptables', args: ['-A', 'FORWARD', '-s', 'x'.repeat(100_000)], input: null }) + '\n');
  t.true(await closedWithin(raw, 10_000), 'the router closed the connection');
  t.is(raw.lines.length, 2, raw.lines.join('\n'));
  t.is(JSON.parse(raw.lines[0]).stdout, 'pong\n');
  const refusal = JSON.parse(raw.lines[1]);
  t.is(refusal.status, 2);
  t.regex(refusal.stderr, /request line longer than 65536 bytes \(control\.maxLineBytes\)/);
  t.is(await rules(), before);
  t.regex(lab.router.log(), /"reason":"line-too-long"/);
});

test.serial('iptables-restore input is streamed: a file larger than a line passes; more than control.maxInputBytes is refused, nothing changed', async (t) => {
  const small = bigRuleset(3000, { variant: 7 });
  t.true(small.length > LIMITS.maxLineBytes && small.length < LIMITS.maxInputBytes);
  const ok = await lab.router.cli(['iptables-restore'], small);
  t.is(ok.code, 0, ok.stderr);
  const loaded = await rules();
  t.true(loaded.includes('-A FORWARD -d 192.0.2.99/32 -j DROP'));
  const big = bigRuleset(10_000, { variant: 8 });
  const refused = await lab.router.cli(['iptables-restore'], big);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /input larger than the router holds at once \(control\.maxInputBytes 262144\); nothing was changed/);
  t.is(await rules(), loaded);
  t.regex(lab.router.log(), /"reason":"input-too-large"/);
});

test.serial('connection cap: the connection over control.maxConnections gets an error and is closed; a freed slot serves again', async (t) => {
  const open: Raw[] = [];
  try {
    for (let i = 0; i < LIMITS.maxConnections; i++) {
      const raw = await connect(lab.router.socket);
      raw.sock.write(PING);
      open.push(raw);
    }
    t.true(await waitFor(() => open.every((r) => r.lines.length === 1), 10_000), 'every connection under the cap is served');
    const extra = await connect(lab.router.socket);
    t.true(await closedWithin(extra, 10_000));
    t.is(extra.lines.length, 1);
    const refusal = JSON.parse(extra.lines[0]);
    t.is(refusal.status, 1);
    t.regex(refusal.stderr, /at most 8 control connections at once \(control\.maxConnections\)/);
    t.regex(lab.router.log(), /"reason":"connection-cap"/);
    open.pop()!.sock.destroy();
    t.true(await waitFor(async () => (await lab.xtr(['ping']).catch(() => ({ stdout: '' }))).stdout === 'pong\n', 10_000));
  } finally {
    for (const r of open) r.sock.destroy();
  }
});

test.serial('idle timeout: a connection with nothing in progress is closed; an events stream is not', async (t) => {
  const silent = await connect(lab.router.socket);
  const used = await connect(lab.router.socket);
  used.sock.write(PING);
  const events = await connect(lab.router.socket);
  events.sock.write(JSON.stringify({ cmd: 'events', args: [], input: null }) + '\n');
  try {
    t.true(await closedWithin(silent, 15_000), 'a connection that sent nothing is closed');
    t.true(await closedWithin(used, 15_000), 'a connection idle after its answer is closed');
    t.is(used.lines.length, 1);
    t.regex(lab.router.log(), /"reason":"idle"/);
    // Well past the idle timeout, the subscriber is still connected.
    await sleep(LIMITS.idleTimeoutMs * 2);
    t.false(events.isClosed(), 'the events stream stays open');
    t.regex(events.lines[0] ?? '', /"kind":"events\.subscribed"/);
  } finally {
    events.sock.destroy();
  }
});

test.serial('20,000 commands and no reply read: bounded RSS, other clients served, forwarding goes on, the non-reader dropped', async (t) => {
  t.is((await lab.router.cli(['iptables-restore'], bigRuleset(300, { variant: 9 }))).code, 0);
  const pid = lab.router.proc.proc.pid!;
  const before = vmRssKb(pid);
  const ping = lab.background('c', ['ping', '-n', '-c', '60', '-i', '0.05', '-W', '5', '203.0.113.2']);
  const abuser = await connect(lab.router.socket);
  // It never reads: its socket's buffers fill, then the router's replies wait for it.
  abuser.sock.pause();
  const request = JSON.stringify({ cmd: 'iptables', args: ['-S'], input: null }) + '\n';
  abuser.sock.write(request.repeat(20_000));
  let peak = before;
  let othersServed = 0;
  const end = Date.now() + 8000;
  while (!abuser.isClosed() && Date.now() < end) {
    peak = Math.max(peak, vmRssKb(pid));
    if ((await lab.xtr(['ping'])).stdout === 'pong\n') othersServed++;
    await sleep(100);
  }
  peak = Math.max(peak, vmRssKb(pid));
  t.true(abuser.isClosed(), 'the router dropped the client that read nothing');
  t.regex(lab.router.log(), /"reason":"not-reading"/);
  t.true(othersServed > 0, 'another client was answered during the abuse');
  const code = await ping.wait(30_000);
  const out = ping.stdout().toString();
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  t.truthy(m, out);
  t.log(`VmRSS before ${before} kB, peak ${peak} kB (+${((peak - before) / 1024).toFixed(1)} MB); ping ${m![2]}/${m![1]}; other clients answered ${othersServed} times`);
  t.is(code, 0, out);
  t.is(Number(m![2]), 60, 'every ping through the router was answered');
  t.true(peak - before < 40 * 1024, `RSS grew ${peak - before} kB`);
});
