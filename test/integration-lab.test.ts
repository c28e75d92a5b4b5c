/**
 * Real traffic through xtr in link mode (the lab topology), TUN and TAP:
 * ping, TCP bulk transfer with content check, UDP, IPv4 and IPv6, local
 * delivery to a listener in the router namespace, traceroute, path-MTU
 * errors, and the status counters.
 *
 * Needs root and a built dist/ (npm test does both).
 */
import test, { type ExecutionContext } from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec, startLab, type Lab, sleep } from './helpers/netns.js';

const modes = ['tun', 'tap'] as const;
const labs = new Map<string, Lab>();
const dir = mkdtempSync(join(tmpdir(), 'xtr-lab-test-'));
// 4 MiB of random bytes: large enough for many windows and retransmits, small enough for 2 shared cores.
const payload = randomBytes(4 * 1024 * 1024);
const payloadFile = join(dir, 'payload.bin');
writeFileSync(payloadFile, payload);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test.before(async () => {
  for (const mode of modes) labs.set(mode, await startLab({ mode }));
});

test.after.always(async () => {
  for (const lab of labs.values()) await lab.stop();
  rmSync(dir, { recursive: true, force: true });
});

function lab(mode: string): Lab {
  const l = labs.get(mode);
  if (!l) throw new Error(`lab ${mode} did not start`);
  return l;
}

type Port = { n: number };
const nextPort: Port = { n: 20000 };
const port = () => String(nextPort.n++);

for (const mode of modes) {
  test.serial(`${mode}: ping client -> server and to the router's own addresses, IPv4 and IPv6`, async (t) => {
    const l = lab(mode);
    for (const dst of ['203.0.113.2', '2001:db8:5::2', '198.51.100.1', '2001:db8:c::1', '203.0.113.1', '192.0.2.2']) {
      const out = await l.run('c', ['ping', '-c', '3', '-i', '0.2', '-W', '2', dst], { timeoutMs: 15_000 });
      t.regex(out, /3 packets transmitted, 3 received/, `${dst}: ${out}`);
    }
    // And from the server side back to the client's second address.
    const back = await l.run('s', ['ping', '-c', '2', '-i', '0.2', '-W', '2', '198.51.100.3'], { timeoutMs: 15_000 });
    t.regex(back, /2 received/);
  });

  test.serial(`${mode}: a TCP listener in the router namespace on 198.51.100.1 is reachable from the client`, async (t) => {
    const l = lab(mode);
    for (const [bind, connect] of [
      ['198.51.100.1', '198.51.100.1'],
      ['2001:db8:c::1', '[2001:db8:c::1]'],
    ]) {
      const p = port();
      const fam = bind.includes(':') ? 'TCP6' : 'TCP4';
      const listener = l.background('r', ['socat', '-T', '10', `${fam}-LISTEN:${p},bind=${bind},reuseaddr`, 'EXEC:/bin/cat']);
      await sleep(300);
      const got = await l.exec('c', ['socat', '-T', '5', '-', `TCP:${connect}:${p}`], { input: 'hello router\n', timeoutMs: 15_000 });
      t.is(got.stdout, 'hello router\n', got.stderr);
      await listener.kill();
    }
  });

  for (const [fam, server] of [
    ['IPv4', '203.0.113.2'],
    ['IPv6', '[2001:db8:5::2]'],
  ] as const) {
    test.serial(`${mode}: ${fam} TCP bulk transfer both ways, content checked (sha256)`, async (t) => {
      const l = lab(mode);
      const listen = fam === 'IPv4' ? 'TCP4-LISTEN' : 'TCP6-LISTEN';
      // client -> server
      let p = port();
      const sink = l.background('s', ['socat', '-u', '-T', '20', `${listen}:${p},reuseaddr`, 'STDOUT']);
      await sleep(300);
      const up = await l.exec('c', ['socat', '-u', '-T', '20', `FILE:${payloadFile}`, `TCP:${server}:${p}`], { timeoutMs: 60_000 });
      t.is(up.code, 0, up.stderr);
      t.is(await sink.wait(30_000), 0, sink.stderr());
      t.is(sink.stdout().length, payload.length);
      t.is(sha(sink.stdout()), sha(payload));
      // server -> client
      p = port();
      const source = l.background('s', ['socat', '-u', '-T', '20', `OPEN:${payloadFile},rdonly`, `${listen}:${p},reuseaddr`]);
      await sleep(300);
      const down = await exec(['socat', '-u', '-T', '20', `TCP:${server}:${p}`, 'STDOUT'], { netns: l.ns.c, binary: true, timeoutMs: 60_000 });
      t.is(down.code, 0, down.stderr);
      t.is(down.stdout.length, payload.length);
      t.is(sha(down.stdout), sha(payload));
      await source.wait(10_000);
    });

    test.serial(`${mode}: ${fam} UDP request/response`, async (t) => {
      const l = lab(mode);
      const p = port();
      const echo = l.background('s', ['socat', '-T', '5', `${fam === 'IPv4' ? 'UDP4' : 'UDP6'}-LISTEN:${p},reuseaddr`, 'PIPE']);
      await sleep(300);
      const msg = `datagram ${randomBytes(8).toString('hex')}\n`;
      const r = await l.exec('c', ['socat', '-T', '3', '-', `UDP:${server}:${p}`], { input: msg, timeoutMs: 10_000 });
      t.is(r.stdout, msg, r.stderr);
      await echo.kill();
    });
  }

  test.serial(`${mode}: traceroute shows xtr as the first hop`, async (t) => {
    const l = lab(mode);
    const v4 = await l.run('c', ['traceroute', '-n', '-q', '1', '-w', '2', '-m', '4', '203.0.113.2'], { timeoutMs: 30_000 });
    t.regex(v4, /^\s*1\s+198\.51\.100\.1\s/m, v4);
    t.regex(v4, /^\s*2\s+203\.0\.113\.2\s/m, v4);
    const v6 = await l.run('c', ['traceroute', '-6', '-n', '-q', '1', '-w', '2', '-m', '4', '2001:db8:5::2'], { timeoutMs: 30_000 });
    t.regex(v6, /^\s*1\s+2001:db8:c::1\s/m, v6);
    t.regex(v6, /^\s*2\s+2001:db8:5::2\s/m, v6);
  });

  test.serial(`${mode}: status counters move with traffic`, async (t) => {
    const l = lab(mode);
    const before = JSON.parse((await l.xtr(['status', '--json'])).stdout);
    await l.run('c', ['ping', '-c', '5', '-i', '0.2', '-W', '2', '203.0.113.2'], { timeoutMs: 15_000 });
    const after = JSON.parse((await l.xtr(['status', '--json'])).stdout);
    const get = (s: { interfaces: { name: string; stats: Record<string, number> }[] }, name: string) => s.interfaces.find((i) => i.name === name)!.stats;
    t.true(get(after, 'eth0').rxPackets >= get(before, 'eth0').rxPackets + 5);
    t.true(get(after, 'eth1').txPackets >= get(before, 'eth1').txPackets + 5);
    t.true(get(after, 'eth1').rxPackets >= get(before, 'eth1').rxPackets + 5);
    t.true(get(after, 'eth0').txBytes > get(before, 'eth0').txBytes);
    t.true(after.uptimeSeconds > 0);
    // The human form through the real CLI.
    const cli = await l.router.cli(['status']);
    t.is(cli.code, 0, cli.stderr);
    t.regex(cli.stdout, new RegExp(`^eth0\\s+${mode}\\s+c0@${l.prefix}c\\s+1500\\s`, 'm'));
    if (mode === 'tap') {
      // xtr resolved the client's MAC itself: its neighbour cache says so.
      t.regex(cli.stdout, /^neighbours:$/m);
      t.regex(cli.stdout, /^ {2}198\.51\.100\.2\s+dev eth0\s+lladdr ([0-9a-f]{2}:){5}[0-9a-f]{2}\s+\S+/m, cli.stdout);
      t.truthy(after.neighbors?.eth1?.some((n: { address: string }) => n.address === '203.0.113.2'));
    }
  });
}

test.serial('tun: MTU errors reach the sender (frag-needed / packet-too-big learned as path MTU)', async (t) => {
  await mtuCheck(t, 'tun');
});

test.serial('tap: MTU errors reach the sender (frag-needed / packet-too-big learned as path MTU)', async (t) => {
  await mtuCheck(t, 'tap');
});

/** A lab whose server link has MTU 1280: DF traffic larger than that must be refused with the MTU. */
async function mtuCheck(t: ExecutionContext, mode: 'tun' | 'tap'): Promise<void> {
  const l = await startLab({
    mode,
    patch: (doc) => {
      doc.interfaces[1].mtu = 1280;
    },
  });
  try {
    const v4 = await l.exec('c', ['ping', '-M', 'do', '-s', '1400', '-c', '2', '-i', '0.3', '-W', '2', '203.0.113.2'], { timeoutMs: 15_000 });
    t.regex(v4.stdout + v4.stderr, /(Frag needed and DF set \(mtu = 1280\)|mtu ?= ?1280)/i, v4.stdout + v4.stderr);
    const route4 = await l.run('c', ['ip', 'route', 'get', '203.0.113.2']);
    t.regex(route4, /mtu 1280/, route4);
    // DF clear: xtr fragments and the echo comes back.
    const frag = await l.exec('c', ['ping', '-M', 'dont', '-s', '1400', '-c', '2', '-i', '0.3', '-W', '2', '203.0.113.2'], { timeoutMs: 15_000 });
    t.regex(frag.stdout, /2 received/, frag.stdout + frag.stderr);
    const v6 = await l.exec('c', ['ping', '-6', '-M', 'do', '-s', '1400', '-c', '2', '-i', '0.3', '-W', '2', '2001:db8:5::2'], { timeoutMs: 15_000 });
    t.regex(v6.stdout + v6.stderr, /(Packet too big: mtu=1280|mtu ?= ?1280)/i, v6.stdout + v6.stderr);
    const route6 = await l.run('c', ['ip', '-6', 'route', 'get', '2001:db8:5::2']);
    t.regex(route6, /mtu 1280/, route6);
    // And TCP still moves data across the narrower link (MSS / PMTU do their job).
    const p = port();
    const sink = l.background('s', ['socat', '-u', '-T', '20', `TCP4-LISTEN:${p},reuseaddr`, 'STDOUT']);
    await sleep(300);
    const up = await l.exec('c', ['socat', '-u', '-T', '20', `FILE:${payloadFile}`, `TCP:203.0.113.2:${p}`], { timeoutMs: 60_000 });
    t.is(up.code, 0, up.stderr);
    await sink.wait(30_000);
    t.is(sha(sink.stdout()), sha(payload));
  } finally {
    await l.stop();
  }
}
