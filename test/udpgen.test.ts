/**
 * bench/native/udpgen between two namespaces joined by a veth pair: counts
 * must match exactly at a rate the veth cannot drop, both modes must end by
 * themselves, and bad arguments must be named. No rate is asserted here (rates
 * belong to bench/).
 */
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('../bench/native/', import.meta.url));
const udpgen = `${dir}udpgen`;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
}

/** Runs `udpgen args` inside `ns`; resolves with stdout, rejects on a non-zero exit or a hang. */
function run(ns: string, args: string[], timeoutMs = 15_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, udpgen, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

function fields(line: string): Record<string, number> {
  return Object.fromEntries(line.trim().split(/\s+/).map((kv) => {
    const [k, v] = kv.split('=');
    return [k!, Number(v)];
  }));
}

async function waitListening(ns: string, port: number): Promise<void> {
  for (let i = 0; i < 250; i++) {
    const out = execFileSync('ip', ['netns', 'exec', ns, 'ss', '-Hlun', `sport = :${port}`], { encoding: 'utf8' });
    if (out.includes(`:${port}`)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`udpgen recv never bound port ${port} in ${ns}`);
}

test.before(() => {
  execFileSync('make', ['-s', '-C', dir], { stdio: 'inherit', timeout: 60_000 });
});

/** Two namespaces A and B joined by a veth pair with IPv4 and IPv6 addresses. */
function veth(t: { teardown(fn: () => void): void }): { a: string; b: string } {
  const s = randomBytes(3).toString('hex');
  const a = `xn-ua-${s}`;
  const b = `xn-ub-${s}`;
  ip('netns', 'add', a);
  t.teardown(() => ip('netns', 'del', a));
  ip('netns', 'add', b);
  t.teardown(() => ip('netns', 'del', b));
  ip('link', 'add', `ua${s}`, 'netns', a, 'type', 'veth', 'peer', 'name', `ub${s}`, 'netns', b);
  ip('-n', a, 'addr', 'add', '10.211.0.1/24', 'dev', `ua${s}`);
  ip('-n', b, 'addr', 'add', '10.211.0.2/24', 'dev', `ub${s}`);
  ip('-n', a, 'addr', 'add', 'fd00:211::1/64', 'dev', `ua${s}`, 'nodad');
  ip('-n', b, 'addr', 'add', 'fd00:211::2/64', 'dev', `ub${s}`, 'nodad');
  ip('-n', a, 'link', 'set', `ua${s}`, 'up');
  ip('-n', b, 'link', 'set', `ub${s}`, 'up');
  // resolve neighbours first: datagrams queued behind an unresolved neighbour
  // are dropped beyond unres_qlen, which would make counts depend on timing
  for (const dst of ['10.211.0.2', 'fd00:211::2']) {
    execFileSync('ip', ['netns', 'exec', a, 'ping', '-c', '1', '-w', '5', dst], { stdio: 'ignore', timeout: 10_000 });
  }
  return { a, b };
}

const deliveryCases = [
  { family: 'IPv4', dst: '10.211.0.2', src: '10.211.0.1', size: 64 },
  { family: 'IPv6', dst: 'fd00:211::2', src: 'fd00:211::1', size: 1200 },
];

for (const c of deliveryCases) {
  test.serial(`${c.family}: every datagram sent is received and counted with its payload bytes`, async (t) => {
    const { a, b } = veth(t);
    const sink = run(b, ['recv', '--port', '7100', '--duration', '10', '--idle', '0.5']);
    await waitListening(b, 7100);
    const count = 3000;
    const sent = await run(a, [
      'send', '--dst', c.dst, '--src', c.src, '--port', '7100', '--size', String(c.size),
      '--duration', '10', '--count', String(count), '--rate', '20000', '--batch', '16',
    ]);
    t.is(sent.code, 0, sent.err);
    t.regex(sent.out, /^sent=\d+ pps=\d+\n$/);
    t.is(fields(sent.out).sent, count);
    const got = await sink;
    t.is(got.code, 0, got.err);
    t.regex(got.out, /^received=\d+ pps=\d+ bytes=\d+\n$/);
    const r = fields(got.out);
    t.is(r.received, count);
    t.is(r.bytes, count * c.size);
    t.true(r.pps! > 0);
  });
}

test.serial('both modes stop by themselves after --duration', async (t) => {
  const { a, b } = veth(t);
  const started = Date.now();
  const [sent, got] = await Promise.all([
    run(a, ['send', '--dst', '10.211.0.2', '--port', '7101', '--size', '32', '--duration', '0.5', '--rate', '1000']),
    run(b, ['recv', '--port', '7101', '--duration', '0.5']),
  ]);
  t.is(sent.code, 0, sent.err);
  t.is(got.code, 0, got.err);
  t.true(fields(sent.out).sent! > 0);
  t.true(Date.now() - started < 14_000, 'neither process had to be killed');
});

const badArgs: Array<{ args: string[]; message: RegExp }> = [
  { args: ['send', '--dst', 'not-an-ip', '--port', '1', '--size', '1', '--duration', '1'], message: /--dst not-an-ip: not an IPv4 or IPv6 address/ },
  { args: ['send', '--dst', '10.0.0.1', '--port', '70000', '--size', '1', '--duration', '1'], message: /--port 70000: must be between 1 and 65535/ },
  { args: ['send', '--dst', '10.0.0.1', '--port', '1', '--size', 'big', '--duration', '1'], message: /--size big: not a number/ },
  { args: ['recv', '--port', '1', '--duration', '1', '--bogus'], message: /--bogus.*unknown option/ },
  { args: ['flood'], message: /usage/ },
];

for (const c of badArgs) {
  test(`bad arguments exit 2 naming the problem: ${c.args.join(' ')}`, (t) => {
    const err = t.throws(() => execFileSync(udpgen, c.args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 })) as unknown as {
      status: number;
      stderr: Buffer;
    };
    t.is(err.status, 2);
    t.regex(err.stderr.toString(), c.message);
  });
}
