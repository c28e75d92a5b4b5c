/**
 * Real TCP through xtr with window tracking doing its job: the usual
 * `-m state --state INVALID -j DROP` in FORWARD, Linux endpoints that
 * negotiate window scaling (checked on the wire: wscale in both SYNs), and
 * bulk transfers both ways whose content is checked (sha256). A window
 * scale ignored or misapplied would make in-flight data look beyond the
 * window and drop it; the INVALID rule must count nothing and the flows
 * must end in TIME_WAIT as the FINs were tracked.
 *
 * Needs root and a built dist/.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec, sleep, startLab, type Lab } from './helpers/netns.js';

const dir = mkdtempSync(join(tmpdir(), 'xtr-tcpwindow-'));
// 6 MiB: many times any window, so the scaled windows are exercised well past 64 KiB.
const payload = randomBytes(6 * 1024 * 1024);
const payloadFile = join(dir, 'payload.bin');
writeFileSync(payloadFile, payload);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let lab: Lab | undefined;
test.before(async () => {
  lab = await startLab({ mode: 'tun' });
  for (const args of [
    ['iptables', '-A', 'FORWARD', '-m', 'state', '--state', 'INVALID', '-j', 'DROP'],
    ['iptables', '-A', 'FORWARD', '-m', 'state', '--state', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
    ['iptables', '-A', 'FORWARD', '-m', 'state', '--state', 'NEW', '-j', 'ACCEPT'],
    ['iptables', '-P', 'FORWARD', 'DROP'],
    ['ip6tables', '-A', 'FORWARD', '-m', 'state', '--state', 'INVALID', '-j', 'DROP'],
    ['ip6tables', '-A', 'FORWARD', '-m', 'state', '--state', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
    ['ip6tables', '-A', 'FORWARD', '-m', 'state', '--state', 'NEW', '-j', 'ACCEPT'],
  ]) {
    const r = await lab.xtr(args);
    if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  }
  // Window scaling is on by default; say so, so the test does not depend on the host's setting.
  for (const w of ['c', 's'] as const) await lab.run(w, ['sysctl', '-qw', 'net.ipv4.tcp_window_scaling=1']);
});

test.after.always(async () => {
  await lab?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Packets counted by the INVALID rule of FORWARD (iptables-save -c). */
async function invalidCount(l: Lab, cmd: 'iptables-save' | 'ip6tables-save'): Promise<number> {
  const save = await l.xtr([cmd, '-c']);
  const m = /^\[(\d+):\d+\] -A FORWARD -m state --state INVALID -j DROP$/m.exec(String(save.stdout));
  if (!m) throw new Error(`no INVALID rule in:\n${save.stdout}`);
  return Number(m[1]);
}

let nextPort = 21000;

for (const [fam, server, listen, save] of [
  ['IPv4', '203.0.113.2', 'TCP4-LISTEN', 'iptables-save'],
  ['IPv6', '[2001:db8:5::2]', 'TCP6-LISTEN', 'ip6tables-save'],
] as const) {
  test.serial(`${fam}: bulk transfers both ways with window scaling through "--state INVALID -j DROP": nothing INVALID, content intact`, async (t) => {
    const l = lab!;
    // client -> server, with the handshake captured to see the window scale offered both ways
    let port = String(nextPort++);
    // SYN and SYN/ACK (tcpdump's tcp[] does not reach into IPv6: the flags byte is at 40 + 13 there).
    const synOnly = fam === 'IPv4' ? 'tcp[tcpflags] & tcp-syn != 0' : 'ip6[53] & 2 != 0';
    const capture = l.background('c', ['tcpdump', '-l', '-nn', '-c', '2', '-i', 'c0', `tcp port ${port} and ${synOnly}`]);
    await sleep(500);
    const sink = l.background('s', ['socat', '-u', '-T', '20', `${listen}:${port},reuseaddr`, 'STDOUT']);
    await sleep(300);
    const up = await l.exec('c', ['socat', '-u', '-T', '20', `FILE:${payloadFile}`, `TCP:${server}:${port}`], { timeoutMs: 90_000 });
    t.is(up.code, 0, up.stderr);
    t.is(await sink.wait(30_000), 0, sink.stderr());
    t.is(sink.stdout().length, payload.length);
    t.is(sha(sink.stdout()), sha(payload));
    await capture.wait(5000);
    const syns = capture.stdout().toString('utf8');
    t.is((syns.match(/wscale \d+/g) ?? []).length, 2, `window scale in the SYN and the SYN/ACK:\n${syns}`);

    // server -> client
    port = String(nextPort++);
    const source = l.background('s', ['socat', '-u', '-T', '20', `OPEN:${payloadFile},rdonly`, `${listen}:${port},reuseaddr`]);
    await sleep(300);
    const down = await exec(['socat', '-u', '-T', '20', `TCP:${server}:${port}`, 'STDOUT'], { netns: l.ns.c, binary: true, timeoutMs: 90_000 });
    t.is(down.code, 0, down.stderr);
    t.is(down.stdout.length, payload.length);
    t.is(sha(down.stdout), sha(payload));
    await source.wait(10_000);

    t.is(await invalidCount(l, save), 0, 'packets xtr classified INVALID');
    // Both flows were tracked to their end: FIN, FIN, last ACK.
    const ct = await l.xtr(['conntrack', '-L', '-f', fam === 'IPv4' ? 'ipv4' : 'ipv6', '-p', 'tcp']);
    const ours = String(ct.stdout)
      .split('\n')
      .filter((line) => new RegExp(`dport=(${nextPort - 2}|${nextPort - 1}) `).test(line));
    t.is(ours.length, 2, String(ct.stdout));
    for (const line of ours) t.regex(line, /^tcp\s+6 \d+ TIME_WAIT .*\[ASSURED\]/);
  });
}
