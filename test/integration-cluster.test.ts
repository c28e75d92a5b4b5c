/**
 * Cluster mode (issue 15, docs/cluster.md) end to end: a nats-server with
 * JetStream in its own namespace (store in a temp dir), two xtr lab routers
 * (gateways A and B, each with its client, server and monitor namespaces)
 * whose router namespaces reach NATS over veths.
 *
 *  - a `recent` entry written on A (`xtr proc write`) reaches B's table and B
 *    drops that source; the delay is measured (printed, not asserted);
 *  - quota2 consumed by pings through A then through B stops at the shared
 *    limit (within the batching tolerance of docs/cluster.md);
 *  - a pknock sequence knocked (knockd's `knock`) through A opens the port on B;
 *  - NATS killed (-9): both keep forwarding and enforcing their local state; a
 *    ban written on A meanwhile waits in A's outbox; NATS back (same store):
 *    B catches up and drops that source too.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Namespaces, REPO_ROOT, background, exec, sleep, startLab, uniquePrefix, vethPair, waitFor, type Background, type Lab } from './helpers/netns.js';

const SERVER = '203.0.113.2';
const CLIENT = '198.51.100.2';
const CLIENT_B = '198.51.100.3';
const MONITOR = '192.0.2.2';
const QUOTA = 40;

/** Whether a TCP connection from `src` in `which` to SERVER:8080 is accepted within 2 s. */
async function connects(lab: Lab, which: 'c' | 'm', src: string, port = 8080): Promise<boolean> {
  const r = await lab.exec(which, ['socat', '-T2', '/dev/null', `TCP:${SERVER}:${port},bind=${src},connect-timeout=2`], { timeoutMs: 10_000 });
  return r.code === 0;
}

async function clusterStatus(lab: Lab): Promise<Record<string, unknown>> {
  const r = await lab.xtr(['cluster', 'status', '--json']);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

async function recentHas(lab: Lab, addr: string): Promise<boolean> {
  const r = await lab.xtr(['proc', 'cat', 'net/xt_recent/BAN']);
  return r.stdout.includes(`src=${addr} `);
}

/** Echo replies of `count` pings from the client (source .3) to the server. */
async function pings(lab: Lab, count: number): Promise<number> {
  const r = await lab.exec('c', ['ping', '-n', '-q', '-c', String(count), '-i', '0.05', '-W', '1', '-I', CLIENT_B, SERVER], { timeoutMs: 30_000 });
  const m = /(\d+) received/.exec(r.stdout);
  return m ? Number(m[1]) : -1;
}

test.serial('two gateways share recent, quota2, pknock and ACCOUNT over NATS JetStream; NATS down: local enforcement, catch-up after', async (t) => {
  const prefix = uniquePrefix('yi');
  const nss = new Namespaces(prefix);
  const store = mkdtempSync(join(tmpdir(), `xtr-nats-${prefix}`));
  const labs: Lab[] = [];
  let nats: Background | null = null;
  const startNats = (ns: string) => background(['nats-server', '-js', '-sd', store, '-a', '0.0.0.0', '-p', '4222'], { netns: ns });
  try {
    const n = await nss.add('n');
    nats = startNats(n);
    for (const [i, gw] of [[1, 'gwA'], [2, 'gwB']] as const) {
      const lab = await startLab({
        prefix: `${prefix}${gw === 'gwA' ? 'a' : 'b'}-`,
        patch: (doc) => {
          doc.metrics = { listen: '127.0.0.1:9108' };
          doc.cluster = { name: 'yilab', gateway: gw, servers: [`nats://10.250.${i}.1:4222`], shared: ['recent', 'quota2', 'pknock', 'account'], flushMs: 20 };
        },
      });
      labs.push(lab);
      await vethPair({ ns: n, ifname: `nats${i}`, addresses: [`10.250.${i}.1/24`] }, { ns: lab.ns.r, ifname: 'nats0', addresses: [`10.250.${i}.2/24`] });
      for (const rule of [
        ['-A', 'FORWARD', '-j', 'ACCOUNT', '--addr', '203.0.113.0/24', '--tname', 'NET'],
        ['-A', 'FORWARD', '-p', 'tcp', '-m', 'recent', '--name', 'BAN', '--rcheck', '--seconds', '600', '-j', 'DROP'],
        ['-A', 'FORWARD', '-p', 'icmp', '--icmp-type', 'echo-request', '-m', 'quota2', '--name', 'Q', '--quota', String(QUOTA), '--packets', '-j', 'ACCEPT'],
        ['-A', 'FORWARD', '-p', 'icmp', '--icmp-type', 'echo-request', '-j', 'DROP'],
        ['-A', 'FORWARD', '-p', 'tcp', '-m', 'pknock', '--knockports', '4002,4001', '--time', '5', '--name', 'KN', '-m', 'tcp', '--dport', '8081', '-j', 'ACCEPT'],
        ['-A', 'FORWARD', '-p', 'tcp', '--dport', '8081', '-j', 'DROP'],
      ]) {
        const r = await lab.xtr(['iptables', ...rule]);
        t.is(r.status, 0, r.stderr);
      }
      lab.background('s', ['socat', 'TCP-LISTEN:8080,fork,reuseaddr', '/dev/null']);
      lab.background('s', ['socat', 'TCP-LISTEN:8081,fork,reuseaddr', '/dev/null']);
    }
    const [a, b] = labs;
    for (const lab of labs) t.true(await waitFor(async () => (await clusterStatus(lab)).connected === true, 20_000, 100), 'connected to NATS');
    t.true(await waitFor(() => connects(b, 'c', CLIENT), 5000, 200), 'B forwards before the ban');

    // 1. recent: written on A, dropped on B.
    const t0 = Date.now();
    t.is((await a.xtr(['proc', 'write', 'net/xt_recent/BAN', `+${CLIENT}`])).status, 0);
    t.true(await waitFor(() => recentHas(b, CLIENT), 10_000, 5), 'B learnt the ban');
    const delay = Date.now() - t0;
    const sb = await clusterStatus(b);
    t.log(`recent +${CLIENT} on A seen in B's table after ${delay} ms (upper bound: includes two xtr CLI round trips); B's record lag ${JSON.stringify(sb.peers)}`);
    t.false(await connects(b, 'c', CLIENT), 'B drops the banned source');
    t.true(await connects(b, 'c', CLIENT_B), 'B forwards another source');

    // 2. quota2: 30 pings through A, then 30 through B; the shared quota is 40 echo requests.
    const viaA = await pings(a, 30);
    await sleep(300);
    const viaB = await pings(b, 30);
    t.log(`quota2 Q=${QUOTA} packets: ${viaA} replies through A, ${viaB} through B, total ${viaA + viaB}`);
    t.is(viaA, 30);
    // Tolerance (docs/cluster.md): what a gateway consumes within one flush + propagation of the other's total; sequential pings: 0.
    t.true(viaA + viaB >= QUOTA - 2 && viaA + viaB <= QUOTA + 2, `total ${viaA + viaB} within 2 of ${QUOTA}`);
    const qa = (await a.xtr(['proc', 'cat', 'net/xt_quota/Q'])).stdout.trim();
    const qb = (await b.xtr(['proc', 'cat', 'net/xt_quota/Q'])).stdout.trim();
    t.log(`quota counters after: A ${qa}, B ${qb}`);
    t.is(qa, '0');
    t.is(qb, '0');

    // ACCOUNT: B's fleet view is the sum of both gateways' tables (A's reaches B within its 1 s re-export).
    const sums = (text: string) => {
      const m = new Map<string, number[]>();
      for (const line of text.trim().split('\n').filter(Boolean)) {
        const [addr, ...n] = line.split(' ');
        const cur = m.get(addr) ?? [0, 0, 0, 0];
        m.set(addr, cur.map((v, i) => v + Number(n[i])));
      }
      return m;
    };
    const readA = (await a.xtr(['ext', 'account', 'read', 'NET'])).stdout;
    const readB = (await b.xtr(['ext', 'account', 'read', 'NET'])).stdout;
    const want = sums(readA + readB);
    let fleetText = '';
    const fleetOk = await waitFor(async () => {
      fleetText = (await b.xtr(['ext', 'account', 'read-fleet', 'NET'])).stdout;
      return JSON.stringify([...sums(fleetText)]) === JSON.stringify([...want]);
    }, 10_000, 200);
    t.log(`ACCOUNT NET: A ${JSON.stringify(readA)}, B ${JSON.stringify(readB)}, fleet on B ${JSON.stringify(fleetText)}`);
    t.true(fleetOk, 'read-fleet on B = A + B');
    // The user's tool: iptaccount -g prints the same fleet sums in iptaccount's format.
    const tool = await exec(['env', `XTR_SOCKET=${b.router.socket}`, join(REPO_ROOT, 'scripts', 'iptaccount'), '-g', '-l', 'NET']);
    t.is(tool.code, 0, tool.stderr);
    const toolSums = new Map<string, number[]>();
    for (const m of tool.stdout.matchAll(/^IP: (\S+) SRC packets: (\d+) bytes: (\d+) DST packets: (\d+) bytes: (\d+)$/gm)) toolSums.set(m[1]!, [m[2], m[3], m[4], m[5]].map(Number));
    t.deepEqual([...toolSums].sort(), [...want].sort(), `iptaccount -g -l NET on B:\n${tool.stdout}`);

    // 3. pknock: a knock sequence through A opens the guarded port on B too.
    t.false(await connects(b, 'm', MONITOR, 8081), 'B: closed before the knock');
    await a.run('m', ['knock', SERVER, '4002', '4001'], { timeoutMs: 20_000 });
    t.regex((await a.xtr(['proc', 'cat', 'net/xt_pknock/KN'])).stdout, /status=ALLOWED/);
    t.true(await waitFor(async () => /src=192\.0\.2\.2 .*status=ALLOWED/.test((await b.xtr(['proc', 'cat', 'net/xt_pknock/KN'])).stdout), 10_000, 20), 'B: the peer is ALLOWED');
    t.true(await connects(b, 'm', MONITOR, 8081), 'B: open after the knock on A');
    t.false(await connects(b, 'c', CLIENT_B, 8081), 'B: only for the source that knocked');

    // 4. NATS killed: both keep forwarding and enforcing local state.
    await nats.kill('SIGKILL');
    nats = null;
    t.true(await waitFor(async () => (await clusterStatus(a)).connected === false, 10_000, 100), 'A sees NATS gone');
    for (const lab of labs) {
      t.true(await connects(lab, 'c', CLIENT_B), `${lab.prefix}: forwards with NATS down`);
      t.false(await connects(lab, 'c', CLIENT), `${lab.prefix}: still drops the banned source`);
    }
    t.is((await a.xtr(['proc', 'write', 'net/xt_recent/BAN', `+${MONITOR}`])).status, 0);
    await sleep(500);
    t.false(await recentHas(b, MONITOR), 'no way to B while NATS is down');
    t.true(await connects(b, 'm', MONITOR), 'B still forwards the monitor');
    t.false(await connects(a, 'm', MONITOR), 'A drops it at once (local)');
    const down = await clusterStatus(a);
    t.log(`A while NATS is down: outbox ${down.outbox}, dropped ${down.dropped}`);
    t.true((down.outbox as number) >= 1, 'the change waits in A\'s outbox');

    // 5. NATS back with its store: A publishes its outbox, B catches up.
    const t1 = Date.now();
    nats = startNats(n);
    t.true(await waitFor(() => recentHas(b, MONITOR), 30_000, 20), 'B caught up with the ban made while NATS was down');
    t.log(`NATS restarted: B had the ban made during the outage ${Date.now() - t1} ms later`);
    t.false(await connects(b, 'm', MONITOR), 'B drops the monitor now');
    const after = await clusterStatus(a);
    t.is(after.outbox, 0);
    t.is(after.connected, true);
    t.log((await b.xtr(['cluster', 'status'])).stdout);
    // The same figures on B's Prometheus endpoint.
    const metrics = await b.run('r', ['curl', '-sf', 'http://127.0.0.1:9108/metrics']);
    t.regex(metrics, /^xtr_cluster_connected 1$/m);
    t.regex(metrics, /^xtr_cluster_dropped_updates_total 0$/m);
    t.regex(metrics, /^xtr_cluster_outbox_records 0$/m);
    t.regex(metrics, /^xtr_cluster_applied_total [1-9]\d*$/m);
    t.regex(metrics, /^xtr_cluster_lag_seconds\{quantile="0\.99"\} [0-9.e-]+$/m);
    t.regex(metrics, /^xtr_cluster_peer_last_seen_timestamp_seconds\{peer="gwA"\} \d/m);
  } finally {
    for (const lab of labs) await lab.stop();
    await nats?.kill('SIGKILL');
    await nss.cleanup();
    rmSync(store, { recursive: true, force: true });
  }
});

test.serial('NATS credentials from a password file: the right password connects, a wrong one never does', async (t) => {
  const prefix = uniquePrefix('yi');
  const nss = new Namespaces(prefix);
  const dir = mkdtempSync(join(tmpdir(), `xtr-nats-${prefix}`));
  const labs: Lab[] = [];
  let nats: Background | null = null;
  try {
    const n = await nss.add('n');
    nats = background(['nats-server', '-js', '-sd', join(dir, 'store'), '-a', '0.0.0.0', '-p', '4222', '--user', 'xtr', '--pass', 's3cret-pw'], { netns: n });
    writeFileSync(join(dir, 'good'), 's3cret-pw\n', { mode: 0o600 });
    writeFileSync(join(dir, 'bad'), 'wrong\n', { mode: 0o600 });
    for (const [i, file] of [[1, 'good'], [2, 'bad']] as const) {
      const lab = await startLab({
        prefix: `${prefix}${file[0]}-`,
        patch: (doc) => {
          doc.metrics = null;
          doc.cluster = { name: 'auth', gateway: `gw${i}`, servers: [`nats://10.250.${i}.1:4222`], credentials: { user: 'xtr', passwordFile: join(dir, file) } };
        },
      });
      labs.push(lab);
      await vethPair({ ns: n, ifname: `nats${i}`, addresses: [`10.250.${i}.1/24`] }, { ns: lab.ns.r, ifname: 'nats0', addresses: [`10.250.${i}.2/24`] });
    }
    const connected = async (lab: Lab) => JSON.parse((await lab.xtr(['cluster', 'status', '--json'])).stdout).connected === true;
    t.true(await waitFor(() => connected(labs[0]), 20_000, 100), 'the right password connects');
    await sleep(2000);
    t.false(await connected(labs[1]), 'a wrong password does not');
    // It still forwards: cluster mode never stands in the packet path.
    t.is((await labs[1].exec('c', ['ping', '-c', '1', '-W', '2', SERVER], { timeoutMs: 10_000 })).code, 0);
  } finally {
    for (const lab of labs) await lab.stop();
    await nats?.kill('SIGKILL');
    await nss.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});
