/**
 * NFLOG end to end, xtr next to the kernel: the same rules log some forwarded
 * packets to group 5 (ICMP echo requests, TCP SYNs to port 8080), one rule
 * logs to group 6, the rest pass unlogged. While a known set of packets
 * crosses each router:
 *  - xtr: `xtr nflog -g 5 -w FILE.pcap` (and a pcapng, and `xtr events`);
 *  - kernel: `tcpdump -i nflog:5 -w FILE.pcap` in its router namespace.
 * tcpdump reads both files and sees exactly the logged packets; tshark
 * decodes the same prefix, group and hook from both (and the prefix as the
 * pcapng packet comment); the rule counters (`iptables -L -v -x`) are the
 * kernel's, packets and bytes.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { background, exec, REPO_ROOT, sleep, startLab, uniquePrefix, waitFor, type Background, type Lab } from './helpers/netns.js';
import { ADDR, KernelRouter } from './helpers/kernel-router.js';

const RULES = [
  '*filter',
  ':INPUT ACCEPT [0:0]',
  ':FORWARD ACCEPT [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  '-A FORWARD -p icmp -m icmp --icmp-type 8 -j NFLOG --nflog-prefix "ping " --nflog-group 5',
  '-A FORWARD -p tcp -m tcp --dport 8080 --tcp-flags FIN,SYN,RST,ACK SYN -j NFLOG --nflog-prefix "syn 8080" --nflog-group 5',
  '-A FORWARD -p udp -m udp --dport 9999 -j NFLOG --nflog-prefix "other group" --nflog-group 6',
  '-A FORWARD -p tcp -m tcp --dport 8080',
  'COMMIT',
  '',
].join('\n');

/** IPv6 echo requests to the same group, cut to 60 bytes (--nflog-size): the kernel cuts them the same way. */
const RULES6 = [
  '*filter',
  ':INPUT ACCEPT [0:0]',
  ':FORWARD ACCEPT [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  '-A FORWARD -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j NFLOG --nflog-prefix "ping6 " --nflog-group 5 --nflog-size 60',
  'COMMIT',
  '',
].join('\n');

/** What group 5 must hold, in order: [prefix, protocol, detail]. */
const EXPECTED = [
  ['ping ', 'icmp', 'echo request'],
  ['ping ', 'icmp', 'echo request'],
  ['ping ', 'icmp', 'echo request'],
  ['syn 8080', 'tcp', '8080 S'],
  ['syn 8080', 'tcp', '8080 S'],
  ['ping6 ', 'icmpv6', 'echo request'],
  ['ping6 ', 'icmpv6', 'echo request'],
];

function tools(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  for (const t of ['tcpdump', 'tshark', 'hping3', 'iptables-legacy']) if (spawnSync('which', [t]).status !== 0) return `${t} missing`;
  return null;
}
const why = tools();

/** The same traffic, one packet at a time: 3 pings, 2 SYNs to 8080, a SYN to 9090, a datagram to 9999 (group 6). */
async function traffic(ns: string): Promise<void> {
  const go = async (argv: string[]) => {
    const r = await exec(argv, { netns: ns, timeoutMs: 20_000 });
    // hping3 exits 1 when nothing answers; only a tool that did not run is an error here.
    if (r.code === 127 || r.timedOut) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  };
  await go(['ping', '-c', '3', '-i', '0.2', '-W', '2', ADDR.server]);
  await go(['hping3', '-q', '-S', '-p', '8080', '-c', '2', '-i', 'u200000', ADDR.server]);
  await go(['hping3', '-q', '-S', '-p', '9090', '-c', '1', ADDR.server]);
  await go(['hping3', '-q', '-2', '-p', '9999', '-c', '1', ADDR.server]);
  await go(['ping', '-6', '-c', '2', '-i', '0.2', '-W', '2', ADDR.server6]);
}

/**
 * prefix, group, hook, protocol and what tshark says of each packet of a file. Not the record's
 * length: the kernel adds the Ethernet header attributes its veth gives it (xtr's TUN has none).
 */
function decode(file: string): string[][] {
  const r = spawnSync('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=|', '-e', 'nflog.prefix', '-e', 'nflog.res_id', '-e', 'nflog.hook', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'ip.proto', '-e', 'icmp.type', '-e', 'tcp.dstport', '-e', 'tcp.flags.str', '-e', 'ipv6.src', '-e', 'ipv6.dst', '-e', 'icmpv6.type'], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.status !== 0) throw new Error(`tshark -r ${file}: ${r.stderr}`);
  return r.stdout.trim().split('\n').filter(Boolean).map((l) => l.split('|'));
}

/** tcpdump's lines without the time, ICMP ids and ports that differ run to run. */
function tcpdumpLines(file: string): string[] {
  const r = spawnSync('tcpdump', ['-n', '-r', file], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`tcpdump -r ${file}: ${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) =>
      l
        .replace(/^\S+ /, '')
        .replace(/id \d+, seq \d+/, 'id N, seq N')
        .replace(/(\d+\.\d+\.\d+\.\d+)\.\d+ > /, '$1.PORT > ')
        .replace(/seq \d+, win \d+/, 'seq S, win W'),
    );
}

/** `iptables -L FORWARD -v -x -n`: packets, bytes and the rest of each rule line. */
function counterRows(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => /^\s+\d+\s+\d+\s/.test(l))
    .map((l) => l.trim().replace(/\s+/g, ' '));
}

if (why) {
  test('NFLOG end to end next to the kernel', (t) => t.fail(`not run: ${why}`));
} else {
  test('NFLOG end to end: xtr nflog -g 5 -w file.pcap holds exactly the logged packets with their prefixes, as the kernel\'s tcpdump -i nflog:5 does', async (t) => {
    t.timeout(240_000);
    const dir = mkdtempSync(join(tmpdir(), 'ye-nflog-int-'));
    const bgs: Background[] = [];
    let lab: Lab | null = null;
    let kernel: KernelRouter | null = null;
    try {
      [lab, kernel] = await Promise.all([startLab({ prefix: uniquePrefix('ye') }), KernelRouter.create({ prefix: uniquePrefix('ye') })]);
      const x = lab;
      const k = kernel;
      t.is((await x.router.cli(['iptables-restore'], RULES)).code, 0);
      t.is((await x.router.cli(['ip6tables-restore'], RULES6)).code, 0);
      const kr = await k.restore(4, RULES);
      t.is(kr.status, 0, kr.stderr);
      t.is((await k.restore(6, RULES6)).status, 0);
      const n = String(EXPECTED.length);

      // Listeners: xtr's CLI three ways, the kernel's tcpdump on its nflog device.
      const files = { xtr: join(dir, 'xtr.pcap'), xtrng: join(dir, 'xtr.pcapng'), kernel: join(dir, 'kernel.pcap') };
      const cli = (args: string[]) => [process.execPath, join(REPO_ROOT, 'bin', 'xtr.js'), '--socket', x.router.socket, ...args];
      const xtrPcap = background(cli(['nflog', '-g', '5', '-w', files.xtr, '-c', n]));
      const xtrPcapng = background(cli(['nflog', '-g', '5', '-w', files.xtrng, '-c', n]));
      const events = background(cli(['events', '--kind', 'nflog.', '--count', String(EXPECTED.length + 1)]));
      const kernelDump = background(['ip', 'netns', 'exec', k.ns.router, 'tcpdump', '-i', 'nflog:5', '-w', files.kernel, '-c', n]);
      bgs.push(xtrPcap, xtrPcapng, events, kernelDump);
      const listening = await waitFor(
        () => /listening on nflog:5/.test(xtrPcap.stderr()) && /listening on nflog:5/.test(xtrPcapng.stderr()) && /events\.subscribed/.test(events.stdout().toString()) && /listening on nflog:5/.test(kernelDump.stderr()),
        20_000,
      );
      t.true(listening, `listeners: ${xtrPcap.stderr()} | ${kernelDump.stderr()}`);

      await Promise.all([traffic(x.ns.c), traffic(k.ns.client)]);
      const codes = await Promise.all([xtrPcap.wait(20_000), xtrPcapng.wait(20_000), events.wait(20_000), kernelDump.wait(20_000)]);
      t.deepEqual(codes, [0, 0, 0, 0], `exit codes; xtr: ${xtrPcap.stderr()} kernel: ${kernelDump.stderr()}`);
      t.regex(xtrPcap.stderr(), new RegExp(`^${n} packets captured$`, 'm'));

      // tcpdump: the same packets from both routers, the IPv6 ones cut alike.
      const xLines = tcpdumpLines(files.xtr);
      const kLines = tcpdumpLines(files.kernel);
      t.log(['xtr:', ...xLines, 'kernel:', ...kLines].join('\n'));
      t.is(xLines.length, EXPECTED.length);
      t.deepEqual(xLines, kLines);
      t.deepEqual(tcpdumpLines(files.xtrng), xLines, 'the pcapng holds the same packets');

      // tshark: prefix, group, hook (FORWARD = 2) and the packet, the same for both.
      const xd = decode(files.xtr);
      const kd = decode(files.kernel);
      t.deepEqual(xd, kd);
      t.deepEqual(
        xd.map(([prefix, group, hook, src, dst, proto, icmpType, dport, flags, src6, dst6, icmp6Type]) => [
          prefix,
          group,
          hook,
          src || src6,
          dst || dst6,
          proto === '1' ? `icmp ${icmpType}` : proto === '6' ? `tcp ${dport} ${flags?.replace(/·/g, '')}` : `icmpv6 ${icmp6Type}`,
        ]),
        EXPECTED.map(([prefix, proto]) => {
          const v6 = proto === 'icmpv6';
          return [prefix, '5', '2', v6 ? ADDR.client6 : ADDR.client, v6 ? ADDR.server6 : ADDR.server, proto === 'icmp' ? 'icmp 8' : v6 ? 'icmpv6 128' : 'tcp 8080 S'];
        }),
      );
      const comments = spawnSync('tshark', ['-r', files.xtrng, '-T', 'fields', '-e', 'frame.comment'], { encoding: 'utf8' }).stdout.replace(/\n$/, '').split('\n');
      t.deepEqual(comments, EXPECTED.map(([p]) => p), 'pcapng: the prefix is each packet\'s comment');

      // xtr events: one nflog.packet line per logged packet with the prefix and a summary, every group
      // (the group-6 datagram too: events are not a group subscription).
      const ev = events
        .stdout()
        .toString()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((e) => e.kind === 'nflog.packet');
      const evExpected = EXPECTED.map(([p]) => [p, 5, 'FORWARD', 'eth0', 'eth1']);
      evExpected.splice(5, 0, ['other group', 6, 'FORWARD', 'eth0', 'eth1']);
      t.deepEqual(ev.map((e) => [e.prefix, e.group, e.hook, e.in, e.out]), evExpected);
      t.regex(String(ev[0]!.summary), /^ICMP 198\.51\.100\.2 > 203\.0\.113\.2 type 8 code 0 len 84$/);
      t.regex(String(ev[3]!.summary), /^TCP 198\.51\.100\.2:\d+ > 203\.0\.113\.2:8080 \[S\] len 40$/);
      t.like(ev[6], { len: 104, caplen: 60, summary: 'ICMPv6 2001:db8:c::2 > 2001:db8:5::2 type 128 code 0 len 104' });

      // Counters: NFLOG is non-terminating and counts as the kernel does (group 6 had no listener on either).
      await sleep(200);
      const xc = counterRows((await x.router.cli(['iptables', '-L', 'FORWARD', '-v', '-x', '-n'])).stdout);
      const kc = counterRows((await k.iptables(4, ['-L', 'FORWARD', '-v', '-x', '-n'])).stdout);
      t.log(['xtr:', ...xc, 'kernel:', ...kc].join('\n'));
      t.is(xc.length, 4);
      t.deepEqual(xc, kc);
      t.regex(xc[2]!, /^1 \d+ NFLOG/, 'the group-6 rule counted its datagram though no one listened');
      const xc6 = counterRows((await x.router.cli(['ip6tables', '-L', 'FORWARD', '-v', '-x', '-n'])).stdout);
      const kc6 = counterRows((await k.iptables(6, ['-L', 'FORWARD', '-v', '-x', '-n'])).stdout);
      t.deepEqual(xc6, kc6);
      t.regex(xc6[0]!, /^2 208 NFLOG/);
    } finally {
      for (const b of bgs) await b.kill('SIGKILL');
      await Promise.all([lab?.stop(), kernel?.destroy()]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** The TLVs of each LINKTYPE_NFLOG record of a little-endian pcap file: [type, value bytes][]. */
function nflogTlvs(file: string): [number, Buffer][][] {
  const b = readFileSync(file);
  if (b.readUInt32LE(0) !== 0xa1b2c3d4 || b.readUInt32LE(20) !== 239) throw new Error(`${file}: not a little-endian NFLOG pcap`);
  const out: [number, Buffer][][] = [];
  for (let o = 24; o + 16 <= b.length; ) {
    const cap = b.readUInt32LE(o + 8);
    const rec = b.subarray(o + 16, o + 16 + cap);
    const tlvs: [number, Buffer][] = [];
    for (let t = 4; t + 4 <= rec.length; ) {
      const len = rec.readUInt16LE(t);
      if (len < 4) break;
      tlvs.push([rec.readUInt16LE(t + 2), rec.subarray(t + 4, t + len)]);
      t += (len + 3) & ~3;
    }
    out.push(tlvs);
    o += 16 + cap;
  }
  return out;
}

async function macOf(ns: string, dev: string): Promise<string> {
  const r = await exec(['ip', '-j', 'link', 'show', 'dev', dev], { netns: ns });
  return (JSON.parse(r.stdout) as { address: string }[])[0]!.address;
}

if (!why) {
  test('NFLOG on a TAP interface: the record carries the Ethernet attributes in the kernel\'s order (HWADDR = the sender\'s MAC, HWTYPE, HWLEN, HWHEADER)', async (t) => {
    t.timeout(180_000);
    const dir = mkdtempSync(join(tmpdir(), 'ye-nflog-tap-'));
    const bgs: Background[] = [];
    let lab: Lab | null = null;
    let kernel: KernelRouter | null = null;
    try {
      [lab, kernel] = await Promise.all([startLab({ prefix: uniquePrefix('ye'), mode: 'tap' }), KernelRouter.create({ prefix: uniquePrefix('ye') })]);
      const x = lab;
      const k = kernel;
      const rules = RULES.split('\n').filter((l) => !l.includes('--dport')).join('\n');
      t.is((await x.router.cli(['iptables-restore'], rules)).code, 0);
      t.is((await k.restore(4, rules)).status, 0);
      const files = { xtr: join(dir, 'xtr.pcap'), kernel: join(dir, 'kernel.pcap') };
      const xtrPcap = background([process.execPath, join(REPO_ROOT, 'bin', 'xtr.js'), '--socket', x.router.socket, 'nflog', '-g', '5', '-w', files.xtr, '-c', '1']);
      const kernelDump = background(['ip', 'netns', 'exec', k.ns.router, 'tcpdump', '-i', 'nflog:5', '-w', files.kernel, '-c', '1']);
      bgs.push(xtrPcap, kernelDump);
      t.true(await waitFor(() => /listening on nflog:5/.test(xtrPcap.stderr()) && /listening on nflog:5/.test(kernelDump.stderr()), 20_000));
      await Promise.all([
        exec(['ping', '-c', '1', '-W', '2', ADDR.server], { netns: x.ns.c, timeoutMs: 20_000 }),
        exec(['ping', '-c', '1', '-W', '2', ADDR.server], { netns: k.ns.client, timeoutMs: 20_000 }),
      ]);
      t.deepEqual(await Promise.all([xtrPcap.wait(20_000), kernelDump.wait(20_000)]), [0, 0], xtrPcap.stderr());
      const [xr] = nflogTlvs(files.xtr);
      const [kr] = nflogTlvs(files.kernel);
      t.deepEqual(xr!.map(([type]) => type), kr!.map(([type]) => type), 'the same attributes in the same order');
      t.deepEqual(xr!.map(([type]) => type), [1, 10, 4, 5, 8, 15, 17, 16, 3, 9]);
      const hw = (tlvs: [number, Buffer][], type: number) => tlvs.find(([ty]) => ty === type)![1];
      const mac = (b: Buffer) => [...b.subarray(4, 10)].map((v) => v.toString(16).padStart(2, '0')).join(':');
      t.is(mac(hw(xr!, 8)), await macOf(x.ns.c, 'c0'), "xtr: HWADDR is the client's MAC");
      t.is(mac(hw(kr!, 8)), await macOf(k.ns.client, 'c0'), "kernel: HWADDR is the client's MAC");
      for (const tlvs of [xr!, kr!]) {
        t.is(hw(tlvs, 15).readUInt16BE(0), 1, 'HWTYPE ARPHRD_ETHER');
        t.is(hw(tlvs, 17).readUInt16BE(0), 14, 'HWLEN 14');
        t.is(hw(tlvs, 16).length, 14);
        t.is(hw(tlvs, 16).readUInt16BE(12), 0x0800, 'HWHEADER ends in the IPv4 ethertype');
      }
    } finally {
      for (const b of bgs) await b.kill('SIGKILL');
      await Promise.all([lab?.stop(), kernel?.destroy()]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
