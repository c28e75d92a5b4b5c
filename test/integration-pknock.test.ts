/**
 * pknock through the xtr lab with real clients: knockd's `knock` opens a
 * pknock-guarded port on the server behind the router (FORWARD, policy DROP),
 * step by step in `xtr proc cat net/xt_pknock/NAME`; wrong order, an
 * interleaved wrong port (with --strict; without it progress is kept, as
 * upstream), a too-slow sequence; --autoclose 1 closes after its minute; a
 * second client (the monitor namespace) is unaffected; IPv6 too.
 *
 * SPA packets are built here from the facts sheet with Node's crypto (not
 * xtr's code) and sent by socat; xtr-knock's own SPA must equal them. A flood
 * of 100,000 spoofed first knocks (hping3 --rand-source) leaves the peer
 * table at its cap while a legitimate client gets in. Events stream on the
 * control socket (`xtr events`) and configured actions run without a shell,
 * a delayed one also across a restart of xtr.
 */
import test from 'ava';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, chmodSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, exec, sleep, startLab, startRouter, uniquePrefix, waitFor, type Lab } from './helpers/netns.js';

const SERVER = '203.0.113.2';
const SERVER6 = '2001:db8:5::2';
const CLIENT = '198.51.100.2';
const MONITOR = '192.0.2.2';

const dir = mkdtempSync(join(tmpdir(), 'xw4-pknock-'));
chmodSync(dir, 0o755);
let lab: Lab | undefined;
let labStart = 0;

const RULES = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -p tcp -m pknock --knockports 4002,4001,4004 --time 2 --name SSH -m tcp --dport 22 -j ACCEPT
-A FORWARD -p tcp -m pknock --knockports 5002,5001 --time 5 --autoclose 1 --strict --name AC -m tcp --dport 23 -j ACCEPT
-A FORWARD -p udp -m pknock --knockports 2000 --opensecret s3cret --closesecret cl0se --autoclose 60 --name SPA -j DROP
-A FORWARD -p tcp -m pknock --checkip --name SPA -m tcp --dport 24 -j ACCEPT
COMMIT
`;
const RULES6 = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -p tcp -m pknock --knockports 4002,4001,4004 --time 2 --name SSH6 -m tcp --dport 22 -j ACCEPT
COMMIT
`;

test.before(async () => {
  lab = await startLab({
    prefix: uniquePrefix('xw4'),
    patch: (doc) => {
      doc.extensions = {
        pknock: {
          max_peers: 1000,
          event_rate: 1000,
          actions: [
            { on: 'open', name: 'SSH', argv: ['/usr/bin/touch', `${dir}/open-IP-PORT-NAME`] },
            { on: 'open', name: 'AC', argv: ['/usr/bin/touch', `${dir}/delayed-IP-NAME`], delay: 4 },
            { on: 'open', name: 'SPA', argv: ['/bin/false'] },
            { on: 'open', name: 'SPA', argv: ['/bin/sleep', '30'], timeout: 1 },
          ],
        },
      };
    },
  });
  labStart = Date.now();
  const r = await lab.xtr(['iptables-restore'], RULES);
  if (r.status !== 0) throw new Error(`iptables-restore: ${r.stderr}`);
  const r6 = await lab.xtr(['ip6tables-restore'], RULES6);
  if (r6.status !== 0) throw new Error(`ip6tables-restore: ${r6.stderr}`);
  for (const port of ['22', '23', '24', '25', '26']) {
    lab.background('s', ['socat', `TCP-LISTEN:${port},fork,reuseaddr`, 'SYSTEM:echo open']);
    lab.background('s', ['socat', `TCP6-LISTEN:${port},fork,reuseaddr,ipv6only=1`, 'SYSTEM:echo open']);
  }
  await sleep(300);
});

test.after.always(async () => {
  await lab?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Whether a TCP connection from namespace `which` to the server's port gets through (socat reads "open"). */
async function reaches(l: Lab, which: 'c' | 'm', port: number, host = SERVER): Promise<boolean> {
  const target = host.includes(':') ? `TCP6:[${host}]:${port}` : `TCP:${host}:${port}`;
  const r = await l.exec(which, ['timeout', '4', 'socat', '-T1', '-', `${target},connect-timeout=1`], { input: '', timeoutMs: 10_000 });
  return r.stdout.includes('open');
}

const knock = (l: Lab, which: 'c' | 'm', args: string[]) => l.run(which, ['knock', ...args], { timeoutMs: 20_000 });
const proc = async (l: Lab, name: string) => (await l.xtr(['proc', 'cat', `net/xt_pknock/${name}`])).stdout;

/** Subscribes to `xtr events` on the control socket; lines collected as they come. */
function subscribe(socket: string, prefix = 'pknock.'): { events: Record<string, unknown>[]; close(): void; ready: Promise<void> } {
  const events: Record<string, unknown>[] = [];
  const sock = net.connect(socket);
  let buf = '';
  let readyResolve: () => void;
  const ready = new Promise<void>((r) => (readyResolve = r));
  sock.on('connect', () => sock.write(JSON.stringify({ cmd: 'events', args: ['--kind', prefix] }) + '\n'));
  sock.on('data', (c) => {
    buf += c.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const e = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
      buf = buf.slice(nl + 1);
      if (e.kind === 'events.subscribed') readyResolve();
      else events.push(e);
    }
  });
  sock.on('error', () => undefined);
  return { events, ready, close: () => sock.destroy() };
}

/** The facts sheet's SPA payload, made here: hex(HMAC-SHA256(secret, IPv4 || u32le(minute))) + "\n". */
function spa(secret: string, src: string, minute = Math.floor(Date.now() / 60000)): Buffer {
  const msg = Buffer.alloc(8);
  src.split('.').forEach((o, i) => msg.writeUInt8(Number(o), i));
  msg.writeUInt32LE(minute, 4);
  return Buffer.from(createHmac('sha256', secret).update(msg).digest('hex') + '\n', 'latin1');
}

const sendSpa = (l: Lab, which: 'c' | 'm', payload: Buffer) => l.run(which, ['socat', '-u', '-', `UDP:${SERVER}:2000`], { input: payload, timeoutMs: 10_000 });

test.serial('knockd\'s knock opens the SSH rule step by step; wrong order, too slow and a wrong port under --strict do not; the monitor is unaffected', async (t) => {
  const l = lab!;
  const sub = subscribe(l.router.socket);
  await sub.ready;
  try {
    t.false(await reaches(l, 'c', 22), 'closed before any knock');
    // Wrong order: 4001 first (no peer), 4002 starts a sequence, 4004 is a wrong knock (ignored without --strict).
    await knock(l, 'c', [SERVER, '4001', '4002', '4004']);
    t.regex(await proc(l, 'SSH'), /^src=198\.51\.100\.2 proto=TCP status=MATCHING accepted_knock_count=1 expir_time=\d \[secs\] \n$/);
    t.false(await reaches(l, 'c', 22), 'wrong order does not open');
    // Too slow: 3 s between knocks with --time 2.
    await waitFor(async () => (await proc(l, 'SSH')) === '', 8000, 200);
    await knock(l, 'c', ['-d', '3500', SERVER, '4002', '4001', '4004']);
    t.false(await reaches(l, 'c', 22), 'a too-slow sequence does not open');
    await waitFor(async () => (await proc(l, 'SSH')) === '', 8000, 200);
    // The right sequence, one knock at a time, with the proc view after each.
    await knock(l, 'c', [SERVER, '4002']);
    t.regex(await proc(l, 'SSH'), /^src=198\.51\.100\.2 proto=TCP status=MATCHING accepted_knock_count=1 expir_time=[12] \[secs\] \n$/);
    await knock(l, 'c', [SERVER, '4001']);
    t.regex(await proc(l, 'SSH'), /^src=198\.51\.100\.2 proto=TCP status=MATCHING accepted_knock_count=2 expir_time=[12] \[secs\] \n$/);
    await knock(l, 'c', [SERVER, '4004']);
    t.is(await proc(l, 'SSH'), 'src=198.51.100.2 proto=TCP status=ALLOWED accepted_knock_count=3 \n');
    t.true(await reaches(l, 'c', 22), 'open after the sequence');
    t.false(await reaches(l, 'c', 23), 'only the guarded port');
    t.false(await reaches(l, 'm', 22), 'the second client is unaffected');

    // --strict (rule AC): a wrong port in between forgets the peer.
    await knock(l, 'm', [SERVER, '5002', '9999', '5001']);
    t.is(await proc(l, 'AC'), '', 'the wrong knock forgot the peer');
    t.false(await reaches(l, 'm', 23), 'an interleaved wrong port under --strict does not open');
    // Without --strict (rule SSH) the wrong port is ignored and progress kept: upstream opens.
    await knock(l, 'm', [SERVER, '4002', '9999', '4001', '4004']);
    t.true(await reaches(l, 'm', 22), 'without --strict the interleaved wrong port is ignored (upstream)');
    // The monitor opens AC properly (its autoclose minute starts now) - the second-last test checks it closes.
    await knock(l, 'm', [SERVER, '5002', '5001']);
    acOpenedAt = Date.now();
    t.true(await reaches(l, 'm', 23));
    t.false(await reaches(l, 'c', 23), 'and the client does not get AC');
    t.regex(await proc(l, 'AC'), /^src=192\.0\.2\.2 proto=TCP status=ALLOWED accepted_knock_count=2 autoclose_time=(5\d|60) \[secs\] \n$/);

    const kinds = sub.events.map((e) => `${e.kind}:${e.name}:${e.ip}:${e.reason ?? e.mode ?? ''}`);
    t.true(kinds.includes('pknock.failed:SSH:198.51.100.2:wrong-port'), kinds.join('\n'));
    t.true(kinds.includes('pknock.open:SSH:198.51.100.2:sequence'), kinds.join('\n'));
    t.true(kinds.includes('pknock.failed:AC:192.0.2.2:wrong-port'), kinds.join('\n'));
    t.true(kinds.includes('pknock.open:AC:192.0.2.2:sequence'), kinds.join('\n'));
    t.true(kinds.some((k) => /^pknock\.failed:SSH:198\.51\.100\.2:(too-slow|expired)$/.test(k)), kinds.join('\n'));
    // The action on SSH opens ran with the substitutions (no shell: the file name is the argv word).
    t.true(await waitFor(() => existsSync(join(dir, 'open-198.51.100.2-4004-SSH')), 5000), readdirSync(dir).join(' '));
    t.true(existsSync(join(dir, 'open-192.0.2.2-4004-SSH')));
  } finally {
    sub.close();
  }
});

let acOpenedAt = 0;

test.serial('IPv6: knock -6 opens the SSH6 rule', async (t) => {
  const l = lab!;
  t.false(await reaches(l, 'c', 22, SERVER6));
  await knock(l, 'c', ['-6', SERVER6, '4002', '4001', '4004']);
  t.is(await proc(l, 'SSH6'), 'src=2001:db8:c::2 proto=TCP status=ALLOWED accepted_knock_count=3 \n');
  t.true(await reaches(l, 'c', 22, SERVER6));
  t.false(await reaches(l, 'm', 22, '2001:db8:5::2'));
});

test.serial('SPA with packets built from the facts sheet: opens and closes; replay, another minute, another address\'s HMAC, a second open in the minute are refused', async (t) => {
  const l = lab!;
  const sub = subscribe(l.router.socket);
  await sub.ready;
  try {
    // Stay inside one minute for the same-minute cases.
    const sec = new Date().getSeconds();
    if (sec > 40) await sleep((61 - sec) * 1000);
    const minute = Math.floor(Date.now() / 60000);
    const open = spa('s3cret', CLIENT, minute);
    // xtr-knock makes the same bytes.
    const mine = await exec(['env', 'XTR_KNOCK_SECRET=s3cret', join(REPO_ROOT, 'scripts', 'xtr-knock'), '--spa', '--print', '-s', CLIENT, '--minute', String(minute), SERVER, '2000'], {
      binary: true,
    });
    t.deepEqual(Buffer.from(mine.stdout), open, 'xtr-knock --spa builds the facts sheet\'s payload');

    await sendSpa(l, 'c', spa('s3cret', CLIENT, minute - 1));
    await sendSpa(l, 'c', spa('s3cret', CLIENT, minute + 2));
    await sendSpa(l, 'c', spa('s3cret', MONITOR, minute));
    t.false(await reaches(l, 'c', 24), 'other minutes and another address\'s HMAC do not open');
    await sendSpa(l, 'c', open);
    t.true(await reaches(l, 'c', 24), 'the SPA packet opens');
    t.false(await reaches(l, 'm', 24), 'for its source only');
    t.regex(await proc(l, 'SPA'), /^src=198\.51\.100\.2 proto=UDP status=ALLOWED accepted_knock_count=1 autoclose_time=\d+ \[secs\] \n$/);
    await sendSpa(l, 'c', spa('cl0se', CLIENT, minute));
    t.false(await reaches(l, 'c', 24), 'the close secret closes');
    await sendSpa(l, 'c', open);
    t.false(await reaches(l, 'c', 24), 'the captured open packet replayed does not reopen');
    const kinds = sub.events.filter((e) => e.name === 'SPA').map((e) => `${e.kind}:${e.reason ?? e.mode}`);
    t.deepEqual(kinds, ['pknock.failed:bad-hmac', 'pknock.failed:bad-hmac', 'pknock.failed:bad-hmac', 'pknock.open:spa', 'pknock.close:closesecret', 'pknock.refused:rate-limit'], kinds.join('\n'));
    // The failing and the hanging action were logged; the hang (killed after 1 s) never held up the packets above.
    t.true(await waitFor(() => /action \[\\"\/bin\/sleep\\",\\"30\\"\] for pknock\.open: timeout/.test(l.router.log()), 5000), 'hanging action killed and logged');
    t.regex(l.router.log(), /action \[\\"\/bin\/false\\"\] for pknock\.open: exit 1/);
    // The next minute, xtr-knock (secret from a file) opens again.
    await sleep((61 - new Date().getSeconds()) * 1000);
    const secretFile = join(dir, 'secret');
    await exec(['sh', '-c', `printf 's3cret\\n' > ${secretFile}`]);
    await l.run('c', [join(REPO_ROOT, 'scripts', 'xtr-knock'), '--spa', '--secret-file', secretFile, SERVER, '2000'], { timeoutMs: 20_000 });
    t.true(await reaches(l, 'c', 24), 'xtr-knock --spa opens');
  } finally {
    sub.close();
  }
});

test.serial('a flood of 100,000 spoofed first knocks: the table stays at its cap, RSS bounded, a legitimate client gets in during it', async (t) => {
  const l = lab!;
  const pid = l.router.proc.proc.pid!;
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  const rssBefore = rss();
  const flood = l.background('c', ['timeout', '90', 'hping3', '-q', '-S', '-p', '4002', '--rand-source', '-i', 'u20', '-c', '100000', SERVER]);
  try {
    // During the flood the monitor (another link) knocks and gets in.
    await sleep(1500);
    await knock(l, 'm', [SERVER, '4002', '4001', '4004']);
    const status = (await l.xtr(['ext', 'pknock', 'SSH'])).stdout;
    t.regex(status, /peers \d+\/1000/);
    t.true(await reaches(l, 'm', 22), `the legitimate client got in during the flood (${status.trim()})`);
  } finally {
    await flood.wait(120_000);
  }
  const status = (await l.xtr(['ext', 'pknock', 'SSH'])).stdout;
  const peers = Number(/peers (\d+)\/1000/.exec(status)![1]);
  const evicted = Number(/evicted (\d+)/.exec(status)![1]);
  t.log(status.trim(), `rss ${rssBefore} kB -> ${rss()} kB`);
  t.true(peers <= 1000 && peers >= 900, `table at its cap: ${status}`);
  t.true(evicted > 50_000, `most of the 100,000 first knocks were evicted in turn: ${status}`);
  t.true(rss() - rssBefore < 150_000, `RSS bounded: ${rssBefore} -> ${rss()} kB`);
  // ALLOWED peers survive the flood.
  t.regex(await proc(l, 'SSH'), /src=192\.0\.2\.2 proto=TCP status=ALLOWED/);
});

test.serial('encrypted knocks (knockcode): xtr-knock --code opens exactly the encoded port for exactly its address; replays and a wrong key do nothing', async (t) => {
  const l = lab!;
  const key = join(dir, 'kc.key');
  const wrong = join(dir, 'kc-wrong.key');
  await exec(['sh', '-c', `printf '%s\\n' ${'ab'.repeat(32)} > ${key}; printf '%s\\n' ${'cd'.repeat(32)} > ${wrong}`]);
  for (const line of [
    `-I FORWARD 2 -p udp -m knockcode --name KC --span 20000:20127 --span 30000:30127 --key-file ${key} -j DROP`,
    '-I FORWARD 3 -p tcp -m knockcode --name KC --granted -j ACCEPT',
  ]) {
    const r = await l.xtr(['iptables', ...line.split(' ')]);
    t.is(r.status, 0, r.stderr);
  }
  const sub = subscribe(l.router.socket, 'knockcode.');
  await sub.ready;
  try {
    const tool = join(REPO_ROOT, 'scripts', 'xtr-knock');
    const span = ['--span', '20000:20127', '--span', '30000:30127'];
    // The knock ports for the client, sent by knockd's knock (UDP, 2 ms apart).
    const printed = await exec([tool, '--code', ...span, '--key-file', key, '--open', '25:tcp', '-s', CLIENT, '--print', SERVER]);
    const ports = printed.stdout.trim().split(' ');
    t.is(ports.length, 31);
    t.false(await reaches(l, 'c', 25));
    await knock(l, 'c', ['-u', '-d', '2', SERVER, ...ports]);
    t.true(await waitFor(() => reaches(l, 'c', 25), 3000, 200), 'the encoded port opens');
    t.false(await reaches(l, 'c', 26), 'only the encoded port');
    t.false(await reaches(l, 'm', 25), 'only for the encoded address');
    t.regex((await l.xtr(['proc', 'cat', 'net/xt_knockcode/KC'])).stdout, /^src=198\.51\.100\.2 port=25 proto=tcp expires_in=\d+\n$/);
    // The captured knocks replayed: from the client (replay), from the monitor (its address is not the sealed one).
    await knock(l, 'c', ['-u', '-d', '2', SERVER, ...ports]);
    await knock(l, 'm', ['-u', '-d', '2', SERVER, ...ports]);
    t.false(await reaches(l, 'm', 25));
    // A wrong key from the monitor, then the right one (xtr-knock sending the UDP knocks itself).
    await l.run('m', [tool, '--code', '-u', ...span, '--key-file', wrong, '--open', '25:tcp', SERVER], { timeoutMs: 20_000 });
    t.false(await reaches(l, 'm', 25), 'a wrong key does nothing');
    await l.run('m', [tool, '--code', '-u', ...span, '--key-file', key, '--open', '26', SERVER], { timeoutMs: 20_000 });
    t.true(await waitFor(() => reaches(l, 'm', 26), 3000, 200), 'the monitor opens its own port');
    t.false(await reaches(l, 'm', 25));
    const kinds = sub.events.filter((e) => String(e.kind).startsWith('knockcode.')).map((e) => `${e.kind}:${e.ip}:${e.reason ?? e.port}`);
    t.deepEqual(kinds, [
      'knockcode.open:198.51.100.2:25',
      'knockcode.refused:198.51.100.2:replay',
      'knockcode.failed:192.0.2.2:decrypt',
      'knockcode.failed:192.0.2.2:decrypt',
      'knockcode.open:192.0.2.2:26',
    ]);
  } finally {
    sub.close();
  }
});

test.serial('--autoclose 1 closes the AC rule after its minute', async (t) => {
  const l = lab!;
  const left = acOpenedAt + 62_000 - Date.now();
  if (left > 0) await sleep(left);
  t.false(await reaches(l, 'm', 23), 'closed after the autoclose minute');
  t.false((await proc(l, 'AC')).includes('192.0.2.2'));
});

test.serial('a delayed action runs after its delay, also when xtr restarted in between', async (t) => {
  const l = lab!;
  // The client opens AC and xtr restarts before the action's 4 s delay is over.
  const marker = join(dir, 'delayed-198.51.100.2-AC');
  await knock(l, 'c', [SERVER, '5002', '5001']);
  await sleep(300);
  t.false(existsSync(marker), 'not yet: the action waits 4 s');
  t.is(await l.router.stop(), 0);
  const again = await startRouter({ netns: l.ns.r, config: l.config, socket: l.router.socket });
  try {
    t.true(await waitFor(() => existsSync(marker), 15_000), 'the delayed action ran after the restart');
    // The rule (with its secrets, kept in xtr's own state file) and the open peer came back.
    const save = (await again.xtr(['iptables-save'])).stdout;
    t.regex(save, /--knockports 2000 {2}--autoclose 60 {2}--name SPA {2}--opensecret {2}--closesecret /);
    t.notRegex(save, /s3cret|cl0se/, 'iptables-save does not print secrets');
    t.regex((await again.xtr(['proc', 'cat', 'net/xt_pknock/AC'])).stdout, /src=198\.51\.100\.2 proto=TCP status=ALLOWED/);
  } finally {
    await again.stop();
  }
});
