/**
 * ACCOUNT through the xtr lab with real traffic, read with scripts/iptaccount:
 *
 *  1. a traffic mix (ping with replies, UDP of several sizes) from four IPv4
 *     and three IPv6 client addresses; tcpdump on the client link counts
 *     packets and IP bytes per address and direction; `iptaccount -l` must
 *     print exactly those numbers, address by address, in upstream's format
 *     (the facts sheet's example, byte for byte, built from tcpdump's
 *     counts), and `-a` / `-s` likewise;
 *  2. read-and-flush under continuous traffic: a sender runs while
 *     `iptaccount -l NAME -f` is called again and again; the sum of every read
 *     (and a last one after the sender stopped) equals what was sent, per
 *     address, and what tcpdump counted: nothing lost, nothing counted twice;
 *  3. a restart of the router process (SIGTERM, a new xtr on the same
 *     state directory): ACCOUNT tables, a quota2 counter and a condition
 *     come back with their values and go on counting.
 *
 * Needs root, tcpdump, python3 and a built dist/.
 */
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec, REPO_ROOT, sleep, startLab, startRouter, uniquePrefix, waitFor, type Background, type Lab } from './helpers/netns.js';

const V4 = ['198.51.100.2', '198.51.100.3', '198.51.100.4', '198.51.100.5'];
const V6 = ['2001:db8:c::2', '2001:db8:c::3', '2001:db8:c::4'];
const SERVER4 = '203.0.113.2';
const SERVER6 = '2001:db8:5::2';

const dir = mkdtempSync(join(tmpdir(), 'xw2b-account-'));
let lab: Lab | undefined;

test.before(async () => {
  lab = await startLab({
    prefix: uniquePrefix('xw2b'),
    patch: (doc) => {
      const peer = doc.interfaces[0].peer as { addresses: string[] };
      peer.addresses.push('198.51.100.4/24', '198.51.100.5/24', '2001:db8:c::3/64', '2001:db8:c::4/64');
    },
  });
  for (const line of [
    ['iptables', '-A', 'FORWARD', '-j', 'ACCOUNT', '--addr', '198.51.100.0/24', '--tname', 'mix4'],
    ['ip6tables', '-A', 'FORWARD', '-j', 'ACCOUNT', '--addr', '2001:db8:c::/104', '--tname', 'mix6'],
  ]) {
    const r = await lab.xtr(line);
    if (r.status !== 0) throw new Error(`${line.join(' ')}: ${r.stderr}`);
  }
  // The server drops the UDP quietly (no port unreachable, whose rate limit would make replies vary).
  await lab.run('s', ['iptables-legacy', '-A', 'INPUT', '-p', 'udp', '--dport', '9', '-j', 'DROP']);
  await lab.run('s', ['ip6tables-legacy', '-A', 'INPUT', '-p', 'udp', '--dport', '9', '-j', 'DROP']);
});

test.after.always(async () => {
  await lab?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function iptaccount(l: Lab, args: string[]) {
  return exec(['env', `XTR_SOCKET=${l.router.socket}`, join(REPO_ROOT, 'scripts', 'iptaccount'), ...args], { timeoutMs: 30_000 });
}

/** tcpdump on the client's link, writing a pcap; resolves once it listens. */
async function capture(l: Lab, file: string): Promise<Background> {
  const b = l.background('c', ['tcpdump', '--immediate-mode', '-B', '16384', '-i', 'c0', '-n', '-U', '-w', file, 'ip or ip6']);
  if (!(await waitFor(() => /listening on/.test(b.stderr()), 10_000))) throw new Error(`tcpdump did not start: ${b.stderr()}`);
  return b;
}

/** Per address of `addrs`: [src packets, src bytes, dst packets, dst bytes] of the IP packets in a pcap (IP length). */
function countPcap(file: string, addrs: readonly string[]): Map<string, number[]> {
  const buf = readFileSync(file);
  const le = buf.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const link = u32(20);
  const l2 = link === 1 ? 14 : link === 113 ? 16 : 0;
  const counts = new Map(addrs.map((a) => [a, [0, 0, 0, 0]]));
  const v6text = (o: number) => {
    const g: string[] = [];
    for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(o + 2 * i).toString(16));
    return g.join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:{3,}/, '::');
  };
  for (let off = 24; off + 16 <= buf.length; ) {
    const incl = u32(off + 8);
    const p = off + 16 + l2;
    off += 16 + incl;
    const ver = buf[p] >> 4;
    let src: string;
    let dst: string;
    let len: number;
    if (ver === 4) {
      src = [...buf.subarray(p + 12, p + 16)].join('.');
      dst = [...buf.subarray(p + 16, p + 20)].join('.');
      len = buf.readUInt16BE(p + 2);
    } else if (ver === 6) {
      src = v6text(p + 8);
      dst = v6text(p + 24);
      len = 40 + buf.readUInt16BE(p + 4);
    } else continue;
    // Only what the router forwarded (client <-> server), not what the client said to the router itself.
    const server = ver === 4 ? SERVER4 : SERVER6;
    if (src !== server && dst !== server) continue;
    const s = counts.get(src);
    if (s) (s[0]++, (s[1] += len));
    const d = counts.get(dst);
    if (d) (d[2]++, (d[3] += len));
  }
  return counts;
}

/** UDP datagrams to the server's port 9 from each (src, count, ip length), round robin, `gap` seconds apart. */
function sender(plan: [string, number, number][], gap: number): string {
  return `
import socket, time, sys
plan = ${JSON.stringify(plan)}
socks = []
for src, n, size in plan:
    fam = socket.AF_INET6 if ':' in src else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((src, 0))
    socks.append([s, fam, n, size])
left = True
while left:
    left = False
    for e in socks:
        s, fam, n, size = e
        if n == 0:
            continue
        left = True
        dst = ('${SERVER6}', 9) if fam == socket.AF_INET6 else ('${SERVER4}', 9)
        s.sendto(b'x' * (size - (48 if fam == socket.AF_INET6 else 28)), dst)
        e[2] = n - 1
    if ${gap} > 0:
        time.sleep(${gap})
`;
}

/** The lines `iptaccount -l` prints for these counts, ascending by address as upstream returns them. */
function expectedListing(name: string, counts: Map<string, number[]>, order: readonly string[]): string {
  const rows = order.filter((a) => counts.get(a)!.some((n, i) => (i === 0 || i === 2) && n > 0));
  let s = `\nlibxt_ACCOUNT_cl userspace accounting tool v1.3\n\nShowing table: ${name}\nRun #0 - ${rows.length} ${rows.length === 1 ? 'item' : 'items'} found\n`;
  for (const a of rows) {
    const [sp, sb, dp, db] = counts.get(a)!;
    s += `IP: ${a} SRC packets: ${sp} bytes: ${sb} DST packets: ${dp} bytes: ${db}\n`;
  }
  return `${s}Finished.\n`;
}

test.serial('iptaccount -l equals tcpdump per address for a v4 and v6 traffic mix; -a, -l, -s in upstream format', async (t) => {
  const l = lab!;
  const pcap = join(dir, 'mix.pcap');
  const tcpdump = await capture(l, pcap);
  // Ping from three v4 and two v6 addresses (echo replies count as destination traffic), UDP from all.
  const pings: string[][] = [
    ['ping', '-n', '-q', '-c', '5', '-i', '0.02', '-s', '100', '-I', V4[0], SERVER4],
    ['ping', '-n', '-q', '-c', '3', '-i', '0.02', '-s', '1000', '-I', V4[1], SERVER4],
    ['ping', '-n', '-q', '-c', '7', '-i', '0.02', '-s', '56', '-I', V4[3], SERVER4],
    ['ping', '-6', '-n', '-q', '-c', '4', '-i', '0.02', '-s', '200', '-I', V6[0], SERVER6],
    ['ping', '-6', '-n', '-q', '-c', '2', '-i', '0.02', '-s', '1200', '-I', V6[2], SERVER6],
  ];
  for (const p of pings) await l.run('c', p, { timeoutMs: 20_000 });
  const udp = await l.exec('c', ['python3', '-c', sender([[V4[0], 3, 300], [V4[2], 11, 80], [V4[3], 2, 1400], [V6[1], 6, 500], [V6[2], 1, 90]], 0.002)], { timeoutMs: 20_000 });
  t.is(udp.code, 0, udp.stderr);
  await sleep(300);
  await tcpdump.kill('SIGINT');
  const c4 = countPcap(pcap, V4);
  const c6 = countPcap(pcap, V6);
  t.log(JSON.stringify([...c4, ...c6]), tcpdump.stderr());
  // The mix is what the test says it is: every address but one IPv6 has traffic in it.
  t.deepEqual([...c4.values()].map((c) => c[0] > 0), [true, true, true, true]);
  t.is(c4.get(V4[0])![2], 5, 'five echo replies to the first address');

  const l4 = await iptaccount(l, ['-l', 'mix4']);
  t.is(l4.code, 0, l4.stderr);
  t.is(l4.stdout, expectedListing('mix4', c4, V4));
  const l6 = await iptaccount(l, ['-l', 'mix6']);
  t.is(l6.stdout, expectedListing('mix6', c6, V6));

  const all = await iptaccount(l, ['-a']);
  t.is(all.stdout, '\nlibxt_ACCOUNT_cl userspace accounting tool v1.3\n\nFound table: mix4\nFound table: mix6\nFinished.\n');
  const csv = await iptaccount(l, ['-s', '-l', 'mix4']);
  const csvRows = V4.filter((a) => c4.get(a)![0] + c4.get(a)![2] > 0).map((a) => `${a};${c4.get(a)!.join(';')}\n`);
  t.is(csv.stdout, `\nlibxt_ACCOUNT_cl userspace accounting tool v1.3\n\nIP;SRC packets;SRC bytes;DST packets;DST bytes\n${csvRows.join('')}Finished.\n`);
  const usage = await iptaccount(l, ['-u']);
  t.is(usage.stdout, '\nlibxt_ACCOUNT_cl userspace accounting tool v1.3\n\nCurrent kernel handle usage: 0\nFinished.\n');
  const missing = await iptaccount(l, ['-l', 'nosuch']);
  t.is(missing.code, 1);
  t.is(missing.stdout, "\nlibxt_ACCOUNT_cl userspace accounting tool v1.3\n\nShowing table: nosuch\nRead failed: Can't get table information from kernel. Does it exist?\n");
  // Leave the tables empty for the next test.
  t.is((await iptaccount(l, ['-f', '-l', 'mix4'])).stdout, expectedListing('mix4', c4, V4));
  t.is((await iptaccount(l, ['-f', '-l', 'mix6'])).code, 0);
  t.regex((await iptaccount(l, ['-l', 'mix4'])).stdout, /Run #0 - 0 items found\nFinished\.\n$/);
});

test.serial('-f under continuous traffic: the reads add up to what was sent and to tcpdump, per address', async (t) => {
  const l = lab!;
  const pcap = join(dir, 'flush.pcap');
  const tcpdump = await capture(l, pcap);
  const plan: [string, number, number][] = [
    [V4[0], 400, 100],
    [V4[1], 400, 200],
    [V4[2], 400, 60],
    [V6[0], 400, 120],
    [V6[2], 400, 300],
  ];
  const send = l.background('c', ['python3', '-c', sender(plan, 0.004)]);
  const sums = new Map<string, number[]>();
  const addRead = (csv: string) => {
    for (const line of csv.split('\n')) {
      const f = line.split(';');
      if (f.length !== 5 || f[0] === 'IP') continue;
      const s = sums.get(f[0]) ?? [0, 0, 0, 0];
      for (let i = 0; i < 4; i++) s[i] += Number(f[i + 1]);
      sums.set(f[0], s);
    }
  };
  let reads = 0;
  let nonEmpty = 0;
  const end = Date.now() + 30_000;
  while (send.proc.exitCode === null && Date.now() < end) {
    for (const name of ['mix4', 'mix6']) {
      const r = await iptaccount(l, ['-f', '-s', '-l', name]);
      t.is(r.code, 0, r.stdout);
      reads++;
      if (r.stdout.split('\n').length > 7) nonEmpty++;
      addRead(r.stdout);
    }
  }
  t.is(await send.wait(10_000), 0, send.stderr());
  await sleep(300);
  for (const name of ['mix4', 'mix6']) addRead((await iptaccount(l, ['-f', '-s', '-l', name])).stdout);
  await tcpdump.kill('SIGINT');
  t.log(`${reads} reads while sending, ${nonEmpty} of them with traffic`, tcpdump.stderr());
  t.true(nonEmpty >= 4, 'the reads happened while traffic flowed');
  const dumped = countPcap(pcap, [...V4, ...V6]);
  // tcpdump is the witness only when it says it missed nothing: on a loaded machine its own
  // buffer can drop ("N packets dropped by kernel"), which says nothing about xtr's counts.
  const tcpdumpDropped = Number(/(\d+) packets? dropped by kernel/.exec(tcpdump.stderr())?.[1] ?? '0');
  for (const [src, n, size] of plan) {
    t.deepEqual(sums.get(src), [n, n * size, 0, 0], `${src}: sum of the reads = what was sent`);
    if (tcpdumpDropped === 0) t.deepEqual(dumped.get(src), [n, n * size, 0, 0], `${src}: tcpdump saw the same`);
  }
  if (tcpdumpDropped > 0) t.log(`tcpdump dropped ${tcpdumpDropped} packet(s) itself: its per-address counts were not compared`);
  t.deepEqual([...sums.keys()].sort(), plan.map((p) => p[0]).sort());
});

test.serial('a restart of xtr keeps ACCOUNT tables, quota2 counters and conditions', async (t) => {
  const l = lab!;
  for (const line of [
    'iptables -I FORWARD -m quota2 --name keep --quota 100000',
    'iptables -I FORWARD -m condition --condition keepc',
  ]) t.is((await l.xtr(line.split(' '))).status, 0, line);
  t.is((await l.xtr(['proc', 'write', 'net/nf_condition/keepc', '1\n'])).status, 0);
  await l.run('c', ['python3', '-c', sender([[V4[1], 7, 100], [V6[1], 3, 200]], 0.002)], { timeoutMs: 20_000 });
  await sleep(200);
  const before4 = (await iptaccount(l, ['-l', 'mix4'])).stdout;
  const before6 = (await iptaccount(l, ['-l', 'mix6'])).stdout;
  t.regex(before4, /IP: 198\.51\.100\.3 SRC packets: 7 bytes: 700 DST packets: 0 bytes: 0\n/);
  t.regex(before6, /IP: 2001:db8:c::3 SRC packets: 3 bytes: 600 DST packets: 0 bytes: 0\n/);
  const quotaBefore = (await l.xtr(['proc', 'cat', 'net/xt_quota/keep'])).stdout;
  t.is(quotaBefore, `${100000 - 700}\n`, 'the IPv4 quota2 rule counted the 7 datagrams');
  t.is(await l.router.stop(), 0, 'xtr stopped on SIGTERM');
  const again = await startRouter({ netns: l.ns.r, config: l.config, socket: l.router.socket });
  try {
    const ask = (args: string[]) => exec(['env', `XTR_SOCKET=${again.socket}`, join(REPO_ROOT, 'scripts', 'iptaccount'), ...args], { timeoutMs: 30_000 });
    t.is((await ask(['-l', 'mix4'])).stdout, before4);
    t.is((await ask(['-l', 'mix6'])).stdout, before6);
    t.is((await ask(['-a'])).stdout, '\nlibxt_ACCOUNT_cl userspace accounting tool v1.3\n\nFound table: mix4\nFound table: mix6\nFinished.\n');
    t.is((await again.xtr(['proc', 'cat', 'net/xt_quota/keep'])).stdout, quotaBefore);
    t.is((await again.xtr(['proc', 'cat', 'net/nf_condition/keepc'])).stdout, '1\n');
    // And they go on counting.
    await l.run('c', ['python3', '-c', sender([[V4[1], 2, 100]], 0.002)], { timeoutMs: 20_000 });
    await sleep(200);
    t.regex((await ask(['-l', 'mix4'])).stdout, /IP: 198\.51\.100\.3 SRC packets: 9 bytes: 900 /);
    t.is((await again.xtr(['proc', 'cat', 'net/xt_quota/keep'])).stdout, `${100000 - 900}\n`);
  } finally {
    await again.stop();
  }
});
