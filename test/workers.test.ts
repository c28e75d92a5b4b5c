/**
 * Queue workers (issue 14 item 4, docs/design.md "Queue workers"): with
 * `workers: 2` the lab's devices get two queues each and two native threads
 * do their I/O, while one pipeline on the JS thread sees every packet. The
 * same scenarios run with 1 and 2 workers and must give the same figures:
 *
 * - cross-flow state: 24 UDP flows from one source (distinct source ports,
 *   so the kernel spreads them over the queues) meet `recent --hitcount 10`
 *   on NEW: the first 10 are accepted and recorded, the other 14 dropped,
 *   whichever worker read them; the rule counters say so and the server
 *   receives exactly 10 datagrams;
 * - NAT: 12 concurrent TCP connections MASQUERADEd on eth1, each sending
 *   256 KiB the server hashes back: the reply direction has the translated
 *   tuple, which the kernel may hash to another queue than the original
 *   direction's; every connection must complete with the right hash;
 * - iperf3 --bidir, 4 streams for 3 s: the router drops nothing but the
 *   rules' 14 (a packet read over another's would fail validation);
 * - with 2 workers `xtr status` shows both, each with hand-overs.
 *
 * Bounded: one lab per worker count, every command with a timeout.
 */
import test from 'ava';
import { startLab } from './helpers/netns.js';

const SERVER = '203.0.113.2';

/** Receives UDP datagrams on 7000 for `secs` seconds; prints how many. */
const UDP_SINK = `
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 7000))
s.settimeout(0.2)
n = 0
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        s.recv(2048); n += 1
    except socket.timeout:
        pass
print(n)
`;

/** One datagram from each of 24 source ports, 30 ms apart. */
const UDP_FLOWS = `
import socket, time
for i in range(24):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('0.0.0.0', 41000 + i))
    s.sendto(b'flow %d' % i, ('${SERVER}', 7000))
    s.close()
    time.sleep(0.03)
`;

/** Accepts `n` connections on 7100; answers each with the sha256 of what it sent. */
const TCP_HASHER = `
import hashlib, socket, sys, threading
n = int(sys.argv[1])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('0.0.0.0', 7100)); ls.listen(64); ls.settimeout(60)
def serve(c):
    h = hashlib.sha256()
    while True:
        b = c.recv(65536)
        if not b: break
        h.update(b)
    c.sendall(h.hexdigest().encode()); c.close()
ts = []
for _ in range(n):
    c, _a = ls.accept(); c.settimeout(60)
    t = threading.Thread(target=serve, args=(c,)); t.start(); ts.append(t)
for t in ts: t.join()
`;

/** `n` concurrent connections, each sending 256 KiB of its own bytes; prints how many got the right hash back. */
const TCP_CLIENTS = `
import hashlib, os, socket, sys, threading
n = int(sys.argv[1]); ok = []
def one(i):
    data = os.urandom(256 * 1024)
    s = socket.create_connection(('${SERVER}', 7100), timeout=60)
    s.sendall(data); s.shutdown(socket.SHUT_WR)
    got = b''
    while True:
        b = s.recv(256)
        if not b: break
        got += b
    if got.decode() == hashlib.sha256(data).hexdigest(): ok.append(i)
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
print(len(ok))
`;

const RECENT_RULES = [
  ['-A', 'FORWARD', '-p', 'udp', '--dport', '7000', '-m', 'conntrack', '--ctstate', 'NEW', '-m', 'recent', '--name', 'wk', '--rcheck', '--seconds', '60', '--hitcount', '10', '-j', 'DROP'],
  ['-A', 'FORWARD', '-p', 'udp', '--dport', '7000', '-m', 'conntrack', '--ctstate', 'NEW', '-m', 'recent', '--name', 'wk', '--set', '-j', 'ACCEPT'],
];

for (const workers of [1, 2]) {
  test.serial(`${workers} queue worker(s): recent across 24 flows, 12 MASQUERADEd TCP connections, status`, async (t) => {
    t.timeout(240_000);
    const lab = await startLab({
      prefix: `wk${workers}${process.pid % 1000}-`,
      logLevel: 'warn',
      patch: (d) => {
        (d as Record<string, unknown>).workers = workers;
        delete d.metrics;
      },
    });
    try {
      await lab.run('c', ['ping', '-c', '1', '-W', '3', SERVER]);
      for (const r of RECENT_RULES) {
        const res = await lab.xtr(['iptables', ...r]);
        t.is(res.status, 0, res.stderr);
      }
      const masq = await lab.xtr(['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth1', '-j', 'MASQUERADE']);
      t.is(masq.status, 0, masq.stderr);

      // cross-flow state: one source's recent entry, whichever queue each flow came by
      const sink = lab.background('s', ['timeout', '20', '/usr/bin/python3', '-c', UDP_SINK, '4']);
      await new Promise((r) => setTimeout(r, 500));
      await lab.run('c', ['timeout', '20', '/usr/bin/python3', '-c', UDP_FLOWS]);
      await sink.wait(20_000);
      t.is(sink.stdout().toString().trim(), '10', 'the server received the first 10 flows only');
      const save = (await lab.xtr(['iptables-save', '-c'])).stdout;
      const counter = (what: string) => /^\[(\d+):\d+\]/.exec(save.split('\n').find((l) => l.includes('--dport 7000') && l.includes(what)) ?? '')?.[1];
      t.is(counter('-j DROP'), '14', `flows 11-24 dropped by --hitcount 10 (${save})`);
      t.is(counter('-j ACCEPT'), '10', 'flows 1-10 accepted and recorded');

      // NAT: replies come back with the translated tuple
      const hasher = lab.background('s', ['timeout', '90', '/usr/bin/python3', '-c', TCP_HASHER, '12']);
      await new Promise((r) => setTimeout(r, 500));
      const ok = await lab.run('c', ['timeout', '90', '/usr/bin/python3', '-c', TCP_CLIENTS, '12'], { timeoutMs: 100_000 });
      await hasher.wait(10_000).catch(() => undefined);
      t.is(ok.trim(), '12', 'every MASQUERADEd connection completed with its content intact');

      // bulk both ways at once: each pass of a worker then reads both links' queues into one region
      const srv = lab.background('s', ['timeout', '30', 'iperf3', '-s', '-1']);
      await new Promise((r) => setTimeout(r, 400));
      const bulk = await lab.exec('c', ['timeout', '30', 'iperf3', '-c', SERVER, '-t', '3', '-P', '4', '--bidir', '-J'], { timeoutMs: 40_000 });
      t.is(bulk.code, 0, bulk.stderr);
      await srv.wait(5000).catch(() => undefined);

      const st = JSON.parse((await lab.xtr(['status', '--json'])).stdout) as { drops: Record<string, number>; router?: { workers?: { links: string[]; handovers: number[] } } };
      // the rules' 14 drops only: a worker reading one device's packets over another's (a bad
      // length, a truncated frame) would show here even where TCP retransmits hide it
      t.deepEqual(
        Object.entries(st.drops).filter(([, n]) => n > 0),
        [['netfilter', 14]],
        'no drops but the rules\'',
      );
      const text = (await lab.xtr(['status'])).stdout;
      if (workers === 1) {
        t.is(st.router?.workers, undefined, 'no workers section with one worker');
        t.notRegex(text, /^workers:/m);
      } else {
        const w = st.router?.workers;
        t.deepEqual(w?.links, ['eth0', 'eth1', 'eth2']);
        t.is(w?.handovers.length, 2);
        t.true((w?.handovers ?? []).every((n) => n > 0), `both workers handed batches over (${JSON.stringify(w)})`);
        t.regex(text, /^workers: 2 \(links eth0, eth1, eth2\), hand-overs \d+ \/ \d+$/m);
      }
    } finally {
      await lab.stop();
    }
  });
}
