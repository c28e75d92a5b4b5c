/**
 * psd and lscan against real scanners through the xtr lab (client -> xtr ->
 * server): nmap -sS -sT -sF -sX -sN -sA -sU, an hping3 SYN sweep
 * (masscan-style: one SYN per port, no retries, a millisecond apart), a
 * banner grab and a normal client, each from its own client address so each
 * row is judged alone. The server listens on 21 (sends a banner), 22, 80,
 * 443 and UDP 53; tcpdump on the server's link sees what got through.
 *
 * 1. lscan: per scanning address, counting rules `-s ADDR -m lscan --X` for
 *    each of --stealth --synscan --cnscan --grscan in FORWARD on packets from
 *    the client link; the table says which of them must count packets.
 * 2. psd: `-m psd` -> a chain that LOGs and DROPs. Every scan of privileged
 *    ports (weight 3) is detected on its 7th new port: exactly 6 distinct
 *    ports reach the server and the rest is dropped, the LOG names the
 *    scanner, net/xt_psd shows its weight; an ACK scan creates no entry
 *    (upstream: TCP with ACK never starts one) and gets through whole; the
 *    normal client (5 connections with data to 3 ports) is never flagged.
 *
 * Needs root, nmap, hping3, tcpdump, python3 and a built dist/.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { sleep, startLab, uniquePrefix, waitFor, type Background, type Lab } from './helpers/netns.js';

const SERVER4 = '203.0.113.2';
const SERVER6 = '2001:db8:5::2';
const NORMAL = '198.51.100.3';
const PORTS_OPEN = [21, 22, 80, 443];

const SERVER_PY = `
import socket, threading
def tcp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(('::', port)); s.listen(128)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, port), daemon=True).start()
def serve(c, port):
    try:
        c.settimeout(5)
        if port == 21: c.sendall(b'220 xtr lab ftp\\r\\n')
        while True:
            d = c.recv(4096)
            if not d: break
            c.sendall(d)
    except Exception: pass
    finally: c.close()
def udp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(('::', 53))
    while True:
        d, a = s.recvfrom(2048); s.sendto(d, a)
for p in ${JSON.stringify(PORTS_OPEN)}: threading.Thread(target=tcp, args=(p,), daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
print('ready', flush=True)
threading.Event().wait(600)
`;

/** A client that connects from `src`, exchanges data (or only reads the banner) and closes; prints ok per connection. */
function clientPy(src: string, dst: string, ports: number[], send: boolean): string {
  return `
import socket
for p in ${JSON.stringify(ports)}:
    fam = socket.AF_INET6 if ':' in ${JSON.stringify(dst)} else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(5)
    s.bind((${JSON.stringify(src)}, 0)); s.connect((${JSON.stringify(dst)}, p))
    if ${send ? 'True' : 'False'}:
        s.sendall(b'hello %d\\n' % p); got = b''
        while len(got) < 8: got += s.recv(100)
    elif p == 21:
        got = s.recv(100)
    s.close(); print('ok', p, flush=True)
`;
}

type Scan = { name: string; src: string; argv: (src: string) => string[]; tool: 'nmap' | 'hping3' | 'python' };

const nmap = (flag: string, ports: string, v6 = false) => (src: string) => [
  'nmap', flag, ...(v6 ? ['-6'] : []), ...(flag === '-sT' ? [] : ['-S', src, '-e', 'c0']), '-Pn', '-n', '-T4', '--max-retries', '0', '--host-timeout', '60s', '-p', ports, v6 ? SERVER6 : SERVER4,
];

function scans(ports: string, hpingCount: number): Scan[] {
  return [
    { name: 'nmap -sS', src: '198.51.100.10', tool: 'nmap', argv: nmap('-sS', ports) },
    { name: 'nmap -sT', src: '198.51.100.2', tool: 'nmap', argv: nmap('-sT', ports) },
    { name: 'nmap -sF', src: '198.51.100.12', tool: 'nmap', argv: nmap('-sF', ports) },
    { name: 'nmap -sX', src: '198.51.100.13', tool: 'nmap', argv: nmap('-sX', ports) },
    { name: 'nmap -sN', src: '198.51.100.14', tool: 'nmap', argv: nmap('-sN', ports) },
    { name: 'nmap -sA', src: '198.51.100.15', tool: 'nmap', argv: nmap('-sA', ports) },
    { name: 'nmap -sU', src: '198.51.100.16', tool: 'nmap', argv: nmap('-sU', ports) },
    { name: 'hping3 SYN sweep', src: '198.51.100.17', tool: 'hping3', argv: (src) => ['hping3', '-S', '-a', src, '-p', '++1', '-i', 'u1000', '-c', String(hpingCount), '-q', SERVER4] },
    { name: 'nmap -6 -sS', src: '2001:db8:c::10', tool: 'nmap', argv: nmap('-sS', ports, true) },
    { name: 'nmap -6 -sF', src: '2001:db8:c::11', tool: 'nmap', argv: nmap('-sF', ports, true) },
    { name: 'banner grab (connect, read, close)', src: '198.51.100.18', tool: 'python', argv: (src) => ['python3', '-c', clientPy(src, SERVER4, [21], false)] },
    { name: 'normal client (5 connections with data)', src: NORMAL, tool: 'python', argv: (src) => ['python3', '-c', clientPy(src, SERVER4, [22, 80, 443, 80, 22], true)] },
  ];
}

function unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  for (const tool of ['nmap', 'hping3', 'tcpdump', 'python3']) if (spawnSync('which', [tool]).status !== 0) return `${tool} not installed`;
  return null;
}
const why = unavailable();

async function xtrOk(lab: Lab, args: string[]): Promise<string> {
  const r = await lab.xtr(args);
  if (r.status !== 0) throw new Error(`xtr ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function withLab(body: (lab: Lab) => Promise<void>): Promise<void> {
  const lab = await startLab({
    prefix: uniquePrefix('xw3a'),
    patch: (doc) => {
      const peer = doc.interfaces[0].peer as { addresses: string[] };
      for (let k = 10; k <= 19; k++) peer.addresses.push(`198.51.100.${k}/24`);
      peer.addresses.push('2001:db8:c::10/64', '2001:db8:c::11/64');
    },
  });
  try {
    // nmap/hping3 raw probes: the client kernel answers SYN/ACKs with RST, as a scanner host does.
    await lab.run('c', ['sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0']);
    const server = lab.background('s', ['python3', '-c', SERVER_PY]);
    if (!(await waitFor(() => server.stdout().toString().includes('ready'), 15_000))) throw new Error(`server: ${server.stderr()}`);
    await sleep(2500); // IPv6 addresses (DAD) on the client link
    await body(lab);
  } finally {
    await lab.stop();
  }
}

async function runScan(lab: Lab, s: Scan): Promise<string> {
  const r = await lab.exec('c', s.argv(s.src), { timeoutMs: 90_000 });
  if (r.timedOut) throw new Error(`${s.name}: timed out`);
  if (s.tool === 'python' && r.code !== 0) throw new Error(`${s.name}: ${r.stderr}`);
  return r.stdout + r.stderr;
}

/**
 * tcpdump on the server's link (what arrives at the server) or the client's (what the scanners sent), one line per packet.
 * `-s 128`: headers are all that is read, and with the default 256 KiB snapshot libpcap's ring holds only a few
 * dozen frames, so a scanner's burst overflowed it ("62 packets dropped by kernel" while the link counted all).
 */
async function capture(lab: Lab, side: 's' | 'c'): Promise<Background> {
  const b = lab.background(side, ['tcpdump', '-i', `${side}0`, '-s', '128', '-B', '8192', '-n', '-l', '-t', '--immediate-mode', `dst host ${SERVER4} or dst host ${SERVER6}`]);
  await waitFor(() => b.stderr().includes('listening on'), 10_000);
  return b;
}

/** How LOG writes the address: IPv6 in full (2001:0db8:000c:...), as the kernel's %pI6. */
function logAddr(a: string): string {
  if (!a.includes(':')) return a;
  const [head, tail] = a.split('::');
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const groups = [...h, ...new Array(8 - h.length - tl.length).fill('0'), ...tl];
  return groups.map((g) => g.padStart(4, '0')).join(':');
}

/** Distinct destination ports each source reached the server on. */
function portsBySource(tcpdumpText: string): Map<string, Set<number>> {
  const out = new Map<string, Set<number>>();
  for (const line of tcpdumpText.split('\n')) {
    const m = /^IP6? (\S+)\.(\d+) > (\S+)\.(\d+):/.exec(line);
    if (!m) continue;
    const set = out.get(m[1]) ?? new Set<number>();
    set.add(Number(m[4]));
    out.set(m[1], set);
  }
  return out;
}

/** Packet counts of the rules of a chain, in order (`-L CHAIN -v -x -n`). */
async function ruleCounts(lab: Lab, family: 4 | 6, chain: string): Promise<number[]> {
  const text = await xtrOk(lab, [family === 4 ? 'iptables' : 'ip6tables', '-L', chain, '-v', '-x', '-n']);
  return text.split('\n').slice(2).filter((l) => l.trim() !== '').map((l) => Number(l.trim().split(/\s+/)[0]));
}

const LSCAN_FLAGS = ['stealth', 'synscan', 'cnscan', 'grscan'] as const;

/** Scan -> the lscan options that must count its packets (the others must count none). */
const LSCAN_EXPECTED: Record<string, string[]> = {
  'nmap -sS': ['synscan'],
  'nmap -sT': ['cnscan'],
  'nmap -sF': ['stealth'],
  'nmap -sX': ['stealth'],
  'nmap -sN': ['stealth'],
  // conntrack picks a lone ACK up as a connection (nf_conntrack_tcp_loose=1): no scan pattern lscan knows.
  'nmap -sA': [],
  'nmap -sU': [],
  'hping3 SYN sweep': ['synscan'],
  'nmap -6 -sS': ['synscan'],
  'nmap -6 -sF': ['stealth'],
  'banner grab (connect, read, close)': ['grscan'],
  'normal client (5 connections with data)': [],
};

(why ? test.skip : test.serial)(`lscan: real scanners through the xtr lab, scan type x lscan option${why ? ` (skipped: ${why})` : ''}`, async (t) => {
  t.timeout(600_000);
  await withLab(async (lab) => {
    const all = scans('21,22,80,443,1000-1010', 60);
    for (const s of all) {
      const ipt = s.src.includes(':') ? 'ip6tables' : 'iptables';
      for (const f of LSCAN_FLAGS) await xtrOk(lab, [ipt, '-A', 'FORWARD', '-i', 'eth0', '-p', 'tcp', '-s', s.src, '-m', 'lscan', `--${f}`]);
    }
    for (const s of all) await runScan(lab, s);
    await sleep(1500);
    const counts4 = await ruleCounts(lab, 4, 'FORWARD');
    const counts6 = await ruleCounts(lab, 6, 'FORWARD');
    let i4 = 0;
    let i6 = 0;
    const table: string[] = [];
    for (const s of all) {
      const counts = s.src.includes(':') ? counts6.slice(i6, (i6 += 4)) : counts4.slice(i4, (i4 += 4));
      const flagged = LSCAN_FLAGS.filter((_, k) => counts[k] > 0);
      table.push(`${s.name.padEnd(42)} ${flagged.join(',') || '-'}  (${LSCAN_FLAGS.map((f, k) => `${f}=${counts[k]}`).join(' ')})`);
      t.deepEqual(flagged, LSCAN_EXPECTED[s.name], `${s.name}: ${LSCAN_FLAGS.map((f, k) => `${f}=${counts[k]}`).join(' ')}`);
    }
    t.log(`scan type x lscan option that matched:\n${table.join('\n')}`);
  });
});

(why ? test.skip : test.serial)(`psd: real scanners through the xtr lab, detected on the 7th new privileged port and dropped after; a normal client never${why ? ` (skipped: ${why})` : ''}`, async (t) => {
  t.timeout(600_000);
  await withLab(async (lab) => {
    for (const ipt of ['iptables', 'ip6tables']) {
      await xtrOk(lab, [ipt, '-N', 'PSD']);
      await xtrOk(lab, [ipt, '-A', 'PSD', '-j', 'LOG', '--log-prefix', 'PSD ']);
      await xtrOk(lab, [ipt, '-A', 'PSD', '-j', 'DROP']);
      await xtrOk(lab, [ipt, '-A', 'FORWARD', '-i', 'eth0', '-m', 'psd', '-j', 'PSD']);
    }
    const cap = await capture(lab, 's');
    const capSent = await capture(lab, 'c');
    const all = scans('1-60', 200);
    for (const s of all) await runScan(lab, s);
    await sleep(1500);
    await cap.kill('SIGINT');
    await capSent.kill('SIGINT');
    const reached = portsBySource(cap.stdout().toString());
    const sent = portsBySource(capSent.stdout().toString());
    const proc4 = await xtrOk(lab, ['proc', 'cat', 'net/xt_psd/ipv4']);
    const proc6 = await xtrOk(lab, ['proc', 'cat', 'net/xt_psd/ipv6']);
    const log = lab.router.log();
    const table: string[] = [];
    for (const s of all) {
      const ports0 = reached.get(s.src)?.size ?? 0;
      const entry0 = new RegExp(`^${s.src.replace(/\./g, '\\.')} weight=(\\d+) `, 'm').exec(s.src.includes(':') ? proc6 : proc4);
      table.push(`${s.name.padEnd(42)} ports reaching the server=${ports0} weight=${entry0?.[1] ?? '-'} logged=${log.includes(`SRC=${logAddr(s.src)} `)} sent=${sent.get(s.src)?.size ?? 0}`);
    }
    t.log(`scan type x psd outcome:\n${table.join('\n')}`);
    for (const s of all) {
      const ports = reached.get(s.src)?.size ?? 0;
      const entry = new RegExp(`^${s.src.replace(/\./g, '\\.')} weight=(\\d+) `, 'm').exec(s.src.includes(':') ? proc6 : proc4);
      const logged = log.includes(`SRC=${logAddr(s.src)} `);
      if (s.name.startsWith('normal')) {
        t.is(ports, 3, 'the normal client reached its 3 ports');
        t.is(entry?.[1], '9', 'weight 3 x 3 ports, below 21');
        t.false(logged, 'never flagged');
      } else if (s.name === 'nmap -sA') {
        t.is(ports, sent.get(s.src)?.size ?? -1, 'an ACK scan creates no psd entry: all it sent gets through');
        t.true(ports > 6);
        t.is(entry, null);
        t.false(logged);
      } else if (s.name.startsWith('banner')) {
        t.is(ports, 1);
        t.false(logged);
      } else {
        t.true((sent.get(s.src)?.size ?? 0) > 6, `${s.name}: sent to more than 6 ports`);
        t.is(ports, 6, `${s.name}: detected on the 7th new privileged port (weight 7 x 3 = 21), the rest dropped`);
        t.is(entry?.[1], '21', `${s.name}: weight reached the threshold`);
        t.true(logged, `${s.name}: LOG names the scanner`);
      }
    }
    const [logCount, dropCount] = await ruleCounts(lab, 4, 'PSD');
    t.is(logCount, dropCount);
    t.true(dropCount > 0);
  });
});
