/**
 * A random-source SYN flood through xtr (issue 12, floods): what must hold
 * whatever the machine's speed. The lab's FORWARD chain is bench:flood's
 * `-m state` rule set; the server namespace drops (and counts) the flood's
 * SYNs so it never answers into the void. While bench/flood-syn.py floods
 * port 80 from random sources for a few seconds:
 *  - a TCP connection established before the flood fetches a fixed payload
 *    during it, completely and byte for byte;
 *  - ping through the router is not all lost;
 * and afterwards xtr is alive, answers its control socket, forwards again,
 * and its conntrack table holds no more than its bound. No timing is
 * asserted: how many new flows got through is bench:flood's business.
 *
 * Needs root and a built dist/ (npm test does both).
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, sleep, startLab, uniquePrefix, waitFor, type Lab } from './helpers/netns.js';

const SERVER = '203.0.113.2';
const FLOOD_SECONDS = 4;
/** The table's bound: the default nf_conntrack_max (router/conntrack/table.ts). */
const CONNTRACK_MAX = 65536;
const RULES = [
  ['-A', 'FORWARD', '-m', 'state', '--state', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
  ['-A', 'FORWARD', '-p', 'icmp', '-j', 'ACCEPT'],
  ['-A', 'FORWARD', '-p', 'tcp', '--dport', '80', '-m', 'state', '--state', 'NEW', '-j', 'ACCEPT'],
  ['-A', 'FORWARD', '-j', 'DROP'],
];

// The server: one connection; after the client's "go" line it sends the payload file and closes.
const SERVE = `
import socket, sys
data = open(sys.argv[1], 'rb').read()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 80)); s.listen(1); s.settimeout(60)
c, _ = s.accept(); c.settimeout(60)
f = c.makefile('rb'); f.readline()
c.sendall(data); c.shutdown(socket.SHUT_WR); c.close()
`;
// The client: connects (the flow is established before the flood), says "connected", waits for a
// line on stdin, asks, and writes what it receives to a file; prints the byte count.
const FETCH = `
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=10)
print('connected', flush=True)
sys.stdin.readline()
s.settimeout(60)
s.sendall(b'go\\n')
out = open(sys.argv[2], 'wb'); n = 0
while True:
    b = s.recv(65536)
    if not b: break
    out.write(b); n += len(b)
out.close(); print('received', n, flush=True)
`;

let lab: Lab | null = null;
const dir = mkdtempSync(join(tmpdir(), 'xtr-flood-test-'));

test.after.always(async () => {
  if (lab) await lab.stop();
  rmSync(dir, { recursive: true, force: true });
});

test.serial('a SYN flood through a -m state rule set: an established flow completes byte for byte, ping gets through, xtr stays up within its conntrack bound', async (t) => {
  lab = await startLab({ prefix: uniquePrefix('yb'), logLevel: 'warn' });
  const l = lab;
  for (const rule of RULES) {
    const r = await l.xtr(['iptables', ...rule]);
    t.is(r.status, 0, r.stderr);
  }
  await l.run('s', ['iptables-legacy', '-A', 'INPUT', '-p', 'tcp', '--syn', '--dport', '80', '!', '-s', '198.51.100.0/24', '-j', 'DROP']);

  // 2 MiB from a fixed seed (sha256 chain): the same bytes every run.
  const blocks: Buffer[] = [];
  let h = Buffer.from('xtr flood payload');
  for (let i = 0; i < (2 * 1024 * 1024) / 32; i++) blocks.push((h = createHash('sha256').update(h).digest()));
  const payload = Buffer.concat(blocks);
  const payloadFile = join(dir, 'payload.bin');
  const receivedFile = join(dir, 'received.bin');
  writeFileSync(payloadFile, payload);

  const server = l.background('s', ['/usr/bin/python3', '-c', SERVE, payloadFile]);
  await sleep(500);
  const client = l.background('c', ['/usr/bin/python3', '-c', FETCH, SERVER, receivedFile]);
  t.true(await waitFor(() => client.stdout().toString().includes('connected'), 15_000), `client did not connect: ${client.stderr()}`);

  const flood = l.background('c', ['/usr/bin/python3', join(REPO_ROOT, 'bench', 'flood-syn.py'), SERVER, '80', String(FLOOD_SECONDS)]);
  const ping = l.background('c', ['ping', '-n', '-q', '-i', '0.1', '-W', '1', '-w', String(FLOOD_SECONDS), SERVER]);
  await sleep(1000);
  // the established flow's transfer runs inside the flood
  client.proc.stdin!.write('go\n');

  t.is(await flood.wait((FLOOD_SECONDS + 20) * 1000), 0, flood.stderr());
  const sent = Number(/sent=(\d+)/.exec(flood.stdout().toString())?.[1] ?? 0);
  t.true(sent > 1000, `the generator sent ${sent} SYNs`);
  await ping.wait((FLOOD_SECONDS + 10) * 1000);
  const pm = /(\d+) packets transmitted, (\d+) received/.exec(ping.stdout().toString());
  t.truthy(pm, ping.stdout().toString());
  t.true(Number(pm![2]) > 0, `ping through the router during the flood: ${pm![0]}`);

  t.is(await client.wait(90_000), 0, client.stderr());
  await server.wait(10_000);
  t.regex(client.stdout().toString(), new RegExp(`received ${payload.length}\\b`));
  const got = (await l.exec('c', ['sha256sum', receivedFile])).stdout.split(' ')[0];
  t.is(got, createHash('sha256').update(payload).digest('hex'), 'the payload arrived intact');

  // The flood went through the router: the server counted SYNs from foreign sources.
  const counted = Number((await l.run('s', ['iptables-legacy', '-L', 'INPUT', '-v', '-x', '-n'])).split('\n')[2].trim().split(/\s+/)[0]);
  t.true(counted > 0, 'flood SYNs reached the server through xtr');

  // xtr is alive, answers, stays within its bound, and forwards again.
  t.is(l.router.proc.proc.exitCode, null, 'xtr is running');
  t.is((await l.xtr(['ping'])).stdout.trim(), 'pong');
  const count = Number((await l.xtr(['conntrack', '-C'])).stdout.trim());
  t.true(count > 0 && count <= CONNTRACK_MAX, `conntrack -C ${count}`);
  const after = await l.exec('c', ['ping', '-c', '3', '-i', '0.2', '-W', '2', SERVER], { timeoutMs: 15_000 });
  t.regex(after.stdout, / [1-3] received/, after.stdout);
});
