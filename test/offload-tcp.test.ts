/**
 * Issue 14, end to end: bulk TCP through the lab (client <c> - xtr - server
 * <s>), both ways, IPv4 and IPv6, with the content checked (sha256 of what
 * ncat received against the file sent), across the offload combinations:
 * offloads on and off, MTU 1500 and 9000, a TAP egress (xtr segments the
 * super-packets in software), a TUN egress with offloads off (software
 * segmentation too), and an egress whose MTU is below the server's (the
 * client learns it from frag-needed / packet-too-big, its segments then
 * fit, and no super-packet is refused for its size).
 *
 * tcpdump on the receiving side (full snap length, first packets of each
 * transfer, only what xtr delivered: the receiver's own ACKs leave with the
 * partial checksums of its offloading TUN) checks what arrived: every packet that fits the path MTU is a
 * valid segment with a correct TCP checksum; packets larger than the path
 * MTU appear only where xtr writes super-packets whole (GSO writes carry a
 * partial checksum, which tcpdump reports as incorrect: counted apart).
 *
 * Bounded: XTR_OFFLOAD_TEST_MB (default 48) MiB per transfer, 4 transfers
 * per lab, every command with a timeout.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab, exec, sleep, type Lab } from './helpers/netns.js';

const MB = Number(process.env.XTR_OFFLOAD_TEST_MB ?? 48);

interface Combo {
  title: string;
  tag: string;
  offloads: Record<string, boolean> | false;
  mtu?: number;
  /** eth1 (the server side) as a TAP link */
  tapEgress?: boolean;
  /** xtr's MTU on eth1 below the server's own (path MTU lower on the egress) */
  egressMtu?: number;
  /** super-packets reach the receiver whole (GSO writes) in the client -> server direction */
  superToServer: boolean;
  /**
   * Conntrack on (a FORWARD rule dropping ctstate INVALID): TCP window
   * tracking sees each super-packet once, as the kernel's sees a GRO skb,
   * and must find every one in window (the rule's counter stays 0).
   */
  conntrack?: boolean;
  /** Queue workers (config `workers`): the devices' I/O on that many threads, one per queue. */
  workers?: number;
}

const ON = { csum: true, tso: true, uso: false, gro: true };
const combos: Combo[] = [
  { title: 'offloads on, TUN, MTU 1500, conntrack', tag: 'a', offloads: ON, superToServer: true, conntrack: true },
  { title: 'offloads off, TUN, MTU 1500', tag: 'b', offloads: false, superToServer: false },
  { title: 'offloads on, TUN, MTU 9000, conntrack', tag: 'c', offloads: ON, mtu: 9000, superToServer: true, conntrack: true },
  { title: 'offloads on, TAP egress (software segmentation)', tag: 'd', offloads: ON, tapEgress: true, superToServer: false },
  { title: 'offloads on, egress MTU 1400 below the server\'s 1500', tag: 'e', offloads: ON, egressMtu: 1400, superToServer: true },
  { title: 'offloads on, TUN, MTU 1500, conntrack, 2 queue workers', tag: 'f', offloads: ON, superToServer: true, conntrack: true, workers: 2 },
  { title: 'offloads on, TAP egress, 2 queue workers', tag: 'g', offloads: ON, tapEgress: true, superToServer: false, workers: 2 },
];

let file = '';
let fileHash = '';
let dir = '';
test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'xtr-offload-'));
  file = join(dir, 'payload.bin');
  const chunk = 1 << 20;
  const parts: Buffer[] = [];
  for (let i = 0; i < MB; i++) parts.push(randomBytes(chunk));
  const all = Buffer.concat(parts);
  writeFileSync(file, all);
  fileHash = createHash('sha256').update(all).digest('hex');
});
test.after.always(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Capture {
  fits: number;
  fitsBad: number;
  oversize: number;
  /** tcpdump's two lines for the first fitting packet with a bad checksum, to say which it was */
  firstBad?: string;
}

/** Counts the captured TCP packets: fitting the path MTU (and how many with a bad checksum), and larger. */
function readCapture(pcap: string, mtu: number, netns: string): Promise<Capture> {
  return exec(['tcpdump', '-nn', '-vv', '-r', pcap, 'tcp'], { netns, timeoutMs: 60_000 }).then((r) => {
    const c: Capture = { fits: 0, fitsBad: 0, oversize: 0 };
    // one packet = the IP line "(... length N)" / "payload length: N)" followed by the TCP line with its cksum verdict
    const lines = r.stdout.split('\n');
    let len = -1;
    let prev = '';
    for (const line of lines) {
      const m4 = /proto TCP \(6\), length (\d+)\)/.exec(line);
      const m6 = /payload length: (\d+)\)/.exec(line);
      if (m4) len = Number(m4[1]);
      else if (m6) len = Number(m6[1]) + 40;
      const ck = /cksum 0x[0-9a-f]+ \((correct|incorrect[^)]*)\)/.exec(line);
      if (ck && len >= 0) {
        if (len <= mtu) {
          c.fits++;
          if (ck[1] !== 'correct' && c.fitsBad++ === 0) c.firstBad = `${prev.trim()} | ${line.trim()}`;
        } else {
          c.oversize++;
        }
        len = -1;
      }
      prev = line;
    }
    return c;
  });
}

async function transfer(lab: Lab, from: 'c' | 's', to: 'c' | 's', dst: string, port: number, ifname: string, mtu: number) {
  const pcap = join(dir, `${lab.prefix}${from}${to}${port}.pcap`);
  const dump = lab.background(to, ['tcpdump', '-i', ifname, '-nn', '-s', '0', '-c', '600', '-w', pcap, `tcp port ${port} and dst host ${dst}`]);
  const sink = lab.background(to, ['sh', '-c', `timeout 120 ncat -l ${dst.includes(':') ? '-6' : '-4'} -p ${port} --recv-only | sha256sum`]);
  await sleep(700);
  const send = await lab.exec(from, ['sh', '-c', `timeout 120 ncat --send-only ${dst} ${port} < ${file}`], { timeoutMs: 130_000 });
  const code = await sink.wait(130_000);
  await sleep(300);
  await dump.kill('SIGINT');
  await dump.wait(5000).catch(() => undefined);
  const got = sink.stdout().toString().split(/\s/)[0];
  const cap = await readCapture(pcap, mtu, lab.ns[to]);
  rmSync(pcap, { force: true });
  return { sendCode: send.code, sinkCode: code, got, cap };
}

for (const combo of combos) {
  test.serial(`offload tcp: ${combo.title}: ${MB} MiB each way, IPv4 and IPv6, content and checksums`, async (t) => {
    t.timeout(600_000);
    const lab = await startLab({
      prefix: `yh${combo.tag}${process.pid % 1000}`,
      logLevel: 'warn',
      patch: (doc) => {
        const d = doc as Record<string, unknown> & { interfaces: Record<string, unknown>[] };
        d.offloads = combo.offloads;
        delete d.metrics;
        if (combo.mtu) for (const i of d.interfaces) i.mtu = combo.mtu;
        if (combo.tapEgress) {
          d.interfaces[1].mode = 'tap';
          d.interfaces[1].mac = '02:00:00:00:01:01';
        }
        if (combo.egressMtu) d.interfaces[1].mtu = combo.egressMtu;
        if (combo.workers) d.workers = combo.workers;
      },
    });
    try {
      const linkMtu = combo.mtu ?? 1500;
      if (combo.egressMtu) await lab.run('s', ['ip', 'link', 'set', 's0', 'mtu', String(linkMtu)]);
      await lab.run('c', ['ping', '-c', '1', '-W', '3', '203.0.113.2']);
      await lab.run('c', ['ping', '-c', '1', '-W', '3', '2001:db8:5::2']).catch(async () => {
        await sleep(2000); // IPv6 DAD on fresh links
        await lab.run('c', ['ping', '-c', '1', '-W', '3', '2001:db8:5::2']);
      });
      const INVALID = ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP'];
      if (combo.conntrack) {
        for (const cmd of ['iptables', 'ip6tables']) {
          const r = await lab.xtr([cmd, ...INVALID]);
          t.is(r.status, 0, r.stderr);
        }
      }
      let port = 5100;
      for (const [fam, cAddr, sAddr] of [
        ['IPv4', '198.51.100.2', '203.0.113.2'],
        ['IPv6', '2001:db8:c::2', '2001:db8:5::2'],
      ] as const) {
        for (const [from, to, dst, ifname] of [
          ['c', 's', sAddr, 's0'],
          ['s', 'c', cAddr, 'c0'],
        ] as const) {
          // An ordinary segment is never larger than the path's smallest MTU: xtr's on the egress, and, once
          // the client has learned it (the c->s transfer runs first), the MSS the client advertises to the
          // server for s->c. Anything larger is a GSO write, whose checksum is partial, even one that fits the
          // receiving link: with egress MTU 1400 the server's segments carry 1328 bytes (IPv6), and a
          // super-packet of 1328 + 64 bytes is 1464 bytes on a 1500-byte link (a flake before this bound).
          const pathMtu = combo.egressMtu ?? linkMtu;
          const r = await transfer(lab, from, to, dst, port++, ifname, pathMtu);
          const what = `${fam} ${from}->${to}`;
          t.is(r.sendCode, 0, `${what}: ncat sent`);
          t.is(r.got, fileHash, `${what}: sha256 of what arrived`);
          t.true(r.cap.fits + r.cap.oversize > 10, `${what}: packets captured (${JSON.stringify(r.cap)})`);
          t.is(r.cap.fitsBad, 0, `${what}: every segment that fits the path MTU has a correct checksum (${JSON.stringify(r.cap)})`);
          if (!combo.offloads || (from === 'c' && !combo.superToServer)) {
            t.is(r.cap.oversize, 0, `${what}: nothing larger than the MTU arrives without GSO writes (${JSON.stringify(r.cap)})`);
          }
          t.log(`${what}: ${JSON.stringify(r.cap)}`);
        }
      }
      if (combo.conntrack) {
        for (const cmd of ['iptables-save', 'ip6tables-save']) {
          const save = (await lab.xtr([cmd, '-c'])).stdout;
          const line = save.split('\n').find((l) => l.includes('--ctstate INVALID'));
          t.truthy(line, `${cmd}: the INVALID rule is loaded`);
          t.regex(line ?? '', /^\[0:0\]/, `${cmd}: no super-packet or segment was out of window (${line})`);
        }
      }
      const st = JSON.parse((await lab.xtr(['status', '--json'])).stdout) as { interfaces: { name: string; offloads?: Record<string, unknown> }[]; drops: Record<string, number> };
      const eth0 = st.interfaces.find((i) => i.name === 'eth0')!;
      t.log(JSON.stringify(st.interfaces.map((i) => [i.name, i.offloads])), JSON.stringify(st.drops));
      if (combo.workers) {
        const w = (st as { router?: { workers?: { links: string[]; handovers: number[] } } }).router?.workers;
        t.is(w?.handovers.length, combo.workers, `${combo.workers} queue workers run (${JSON.stringify(w)})`);
        t.true((w?.handovers ?? []).reduce((a, b) => a + b, 0) > 0, 'the workers handed batches over');
      }
      if (combo.offloads) {
        t.true(eth0.offloads?.tso4 === true, 'TSO4 in force on eth0');
        t.true(Number(eth0.offloads?.rxSuperPackets) > 0, 'super-packets were read');
      } else {
        t.is(Number(eth0.offloads?.rxSuperPackets ?? 0), 0);
      }
    } finally {
      await lab.stop();
    }
  });
}
