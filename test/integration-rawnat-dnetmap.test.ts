/**
 * RAWSNAT/RAWDNAT and DNETMAP with real traffic through xtr's lab (client
 * 198.51.100.2/.3 on eth0, server 203.0.113.2 on eth1; test/helpers/netns.ts):
 *
 *  - RAWNAT, as the man page sets it up (RAWDNAT in raw PREROUTING, RAWSNAT in
 *    rawpost POSTROUTING, NOTRACK so conntrack stays out), both ways at once:
 *    the client reaches the server's net as 10.55.0.0/24 (fd55::/64) and the
 *    server sees the client's net as 10.66.0.0/24 (fd66::/64). ping and a
 *    socat TCP exchange whose answer carries the peer address the server saw
 *    and the client's payload back; each rule counts; without the rules the
 *    mapped address is unreachable.
 *  - DNETMAP: a POSTROUTING rule binds each client address to one address of
 *    10.77.0.0/30 in LRU order (the server sees it), a PREROUTING rule lets
 *    the server open a connection to the bound address and reach the client;
 *    the proc views show the bindings; a static binding written through proc
 *    is used; the bindings come back after a restart of xtr (SIGTERM, a new
 *    process on the same state directory).
 *  - DNETMAP on an IPv6 pool (xtr only): the server sees the pool address.
 *
 * Namespaces are `xw5b…-`, removed by lab.stop(); every tool has a time limit.
 */
import test from 'ava';
import { startLab, startRouter, uniquePrefix, waitFor, type Lab } from './helpers/netns.js';
import { xtrPrerequisiteProblem } from './helpers/kernel-router.js';

let lab: Lab | null = null;

test.before(async () => {
  if (xtrPrerequisiteProblem()) return;
  lab = await startLab({ prefix: uniquePrefix('xw5b') });
});

test.after.always(async () => {
  await lab?.stop();
});

function need(t: { fail: (m: string) => void }): Lab | null {
  const why = xtrPrerequisiteProblem();
  if (why || !lab) {
    t.fail(`not run: ${why ?? 'lab did not start'}`);
    return null;
  }
  return lab;
}

async function xtr(l: Lab, line: string, input: string | null = null): Promise<string> {
  const words = line.split(' ');
  const r = await l.xtr(words, input);
  if (r.status !== 0) throw new Error(`xtr ${line}: ${r.stderr}`);
  return r.stdout;
}

/** Packet counters of every rule of `table`/`chain` with their target, in order. */
async function counters(l: Lab, family: 4 | 6, table: string, chain: string): Promise<{ pkts: number; target: string }[]> {
  const out = await xtr(l, `${family === 4 ? 'iptables' : 'ip6tables'} -t ${table} -L ${chain} -v -n -x`);
  return out
    .split('\n')
    .slice(2)
    .filter((s) => s.trim() !== '')
    .map((s) => s.trim().split(/\s+/))
    .map((w) => ({ pkts: Number(w[0]), target: w[2] }));
}

/**
 * A socat TCP exchange: the server answers with the peer address it saw and
 * the line the client sent; returns the client's output.
 */
async function exchange(l: Lab, family: 4 | 6, to: string, port: number, payload: string, bind?: string): Promise<string> {
  const listen = family === 4 ? `TCP4-LISTEN:${port},reuseaddr` : `TCP6-LISTEN:${port},reuseaddr,ipv6only=1`;
  const srv = l.background('s', ['timeout', '20', 'socat', listen, 'SYSTEM:\'echo "peer=$SOCAT_PEERADDR"; head -n 1\'']);
  try {
    const up = await waitFor(async () => (await l.exec('s', ['ss', '-ltnH', `sport = :${port}`])).stdout.includes(`:${port}`), 5000);
    if (!up) throw new Error('socat server did not listen');
    const target = family === 4 ? `TCP4:${to}:${port}` : `TCP6:[${to}]:${port}`;
    const r = await l.exec('c', ['timeout', '10', 'socat', '-t', '3', '-', `${target}${bind ? `,bind=${bind}` : ''}`], { input: `${payload}\n`, timeoutMs: 15_000 });
    return r.stdout;
  } finally {
    await srv.kill('SIGKILL');
  }
}

const RAW4 = [
  '-t raw -A PREROUTING -i eth0 -j NOTRACK',
  '-t raw -A PREROUTING -i eth1 -j NOTRACK',
  '-t raw -A PREROUTING -i eth0 -d 10.55.0.0/24 -j RAWDNAT --to-destination 203.0.113.0/24',
  '-t raw -A PREROUTING -i eth1 -d 10.66.0.0/24 -j RAWDNAT --to-destination 198.51.100.0/24',
  '-t rawpost -A POSTROUTING -o eth1 -s 198.51.100.0/24 -j RAWSNAT --to-source 10.66.0.0/24',
  '-t rawpost -A POSTROUTING -o eth0 -s 203.0.113.0/24 -j RAWSNAT --to-source 10.55.0.0/24',
];
const RAW6 = [
  '-t raw -A PREROUTING -i eth0 -j NOTRACK',
  '-t raw -A PREROUTING -i eth1 -j NOTRACK',
  '-t raw -A PREROUTING -i eth0 -d fd55::/64 -j RAWDNAT --to-destination 2001:db8:5::/64',
  '-t raw -A PREROUTING -i eth1 -d fd66::/64 -j RAWDNAT --to-destination 2001:db8:c::/64',
  '-t rawpost -A POSTROUTING -o eth1 -s 2001:db8:c::/64 -j RAWSNAT --to-source fd66::/64',
  '-t rawpost -A POSTROUTING -o eth0 -s 2001:db8:5::/64 -j RAWSNAT --to-source fd55::/64',
];

test.serial('RAWDNAT + RAWSNAT with NOTRACK: a subnet mapped onto another both ways (ping, socat TCP with content), IPv4 and IPv6', async (t) => {
  const l = need(t);
  if (!l) return;
  for (const [family, rules, mapped, clientSeenAs, ping] of [
    [4, RAW4, '10.55.0.2', '10.66.0.2', 'ping'],
    [6, RAW6, 'fd55::2', 'fd66::2', 'ping'],
  ] as const) {
    const cmd = family === 4 ? 'iptables' : 'ip6tables';
    // Baseline: without the rules the mapped address leads nowhere.
    const before = await l.exec('c', [ping, `-${family}`, '-c', '1', '-W', '1', mapped], { timeoutMs: 10_000 });
    t.not(before.code, 0, `IPv${family}: ${mapped} unreachable without the rules`);
    for (const r of rules) await xtr(l, `${cmd} ${r}`);
    try {
      const p = await l.exec('c', [ping, `-${family}`, '-c', '3', '-i', '0.2', '-W', '2', mapped], { timeoutMs: 15_000 });
      t.is(p.code, 0, `IPv${family} ping ${mapped}: ${p.stdout}${p.stderr}`);
      t.regex(p.stdout, / 0% packet loss/);
      // The echo replies come from the mapped address (RAWSNAT on the way back).
      t.regex(p.stdout, new RegExp(`from ${mapped.replace(/\./g, '\\.')}`));
      const payload = `rawnat-v${family}-${'x'.repeat(600)}`;
      const answer = await exchange(l, family, mapped, 7100 + family, payload);
      // socat prints IPv6 peers in full, bracketed.
      const peer = family === 4 ? clientSeenAs : '[fd66:0000:0000:0000:0000:0000:0000:0002]';
      t.is(answer, `peer=${peer}\n${payload}\n`, 'the server saw the client as the mapped address; the content came back whole');
      const raw = await counters(l, family, 'raw', 'PREROUTING');
      const post = await counters(l, family, 'rawpost', 'POSTROUTING');
      t.deepEqual(raw.map((r) => r.target), ['NOTRACK', 'NOTRACK', 'RAWDNAT', 'RAWDNAT']);
      t.true(raw[2].pkts >= 4 && raw[3].pkts >= 4, `RAWDNAT rules counted both directions: ${JSON.stringify(raw)}`);
      t.true(post[0].pkts >= 4 && post[1].pkts >= 4, `RAWSNAT rules counted both directions: ${JSON.stringify(post)}`);
      // rawpost's save form: always /len.
      t.regex(await xtr(l, `${cmd}-save -t rawpost`), family === 4 ? /-j RAWSNAT --to-source 10\.66\.0\.0\/24/ : /-j RAWSNAT --to-source fd66::\/64/);
    } finally {
      await xtr(l, `${cmd} -t raw -F`);
      await xtr(l, `${cmd} -t rawpost -F`);
    }
  }
});

test.serial('DNETMAP IPv6 pool (beyond upstream): the server sees the pool address, replies come back', async (t) => {
  const l = need(t);
  if (!l) return;
  await xtr(l, 'ip6tables -t nat -A POSTROUTING -o eth1 -s 2001:db8:c::/64 -j DNETMAP --prefix fd77::/126 --ttl 30');
  try {
    t.is(await exchange(l, 6, '2001:db8:5::2', 7301, 'dnetmap-v6'), 'peer=[fd77:0000:0000:0000:0000:0000:0000:0000]\ndnetmap-v6\n');
    t.regex(await xtr(l, 'proc cat net/xt_DNETMAP/fd77::_126'), /^2001:db8:c::2 -> fd77:: --- ttl: (30|29) lasthit: -?\d+\n/);
    t.regex(await xtr(l, 'proc cat net/xt_DNETMAP/fd77::_126_stat'), /^1 0 4 (30|29) \n$/);
  } finally {
    await xtr(l, 'ip6tables -t nat -F');
  }
});

test.serial('DNETMAP: LRU bindings SNAT the clients, PREROUTING reaches a bound client, proc views, static binding, restart keeps them', async (t) => {
  const l = need(t);
  if (!l) return;
  await xtr(l, 'iptables -t nat -A POSTROUTING -o eth1 -s 198.51.100.0/24 -j DNETMAP --prefix 10.77.0.0/30');
  await xtr(l, 'iptables -t nat -A PREROUTING -i eth1 -d 10.77.0.0/30 -j DNETMAP --prefix 10.77.0.0/30');
  try {
    t.is(await xtr(l, 'proc cat net/xt_DNETMAP/10.77.0.0_30_stat'), '0 0 4 0 \n');
    // Client .2 then .3: the first two addresses of the pool, in LRU order.
    t.is(await exchange(l, 4, '203.0.113.2', 7201, 'dnetmap-a'), 'peer=10.77.0.0\ndnetmap-a\n');
    t.is(await exchange(l, 4, '203.0.113.2', 7202, 'dnetmap-b', '198.51.100.3'), 'peer=10.77.0.1\ndnetmap-b\n');
    // The same host again keeps its address.
    t.is(await exchange(l, 4, '203.0.113.2', 7203, 'dnetmap-c'), 'peer=10.77.0.0\ndnetmap-c\n');
    const data = await xtr(l, 'proc cat net/xt_DNETMAP/10.77.0.0_30');
    const lines = data.trimEnd().split('\n');
    t.regex(lines[0], /^198\.51\.100\.2 -> 10\.77\.0\.0 --- ttl: (600|599) lasthit: \d+$/);
    t.regex(lines[1], /^198\.51\.100\.3 -> 10\.77\.0\.1 --- ttl: (600|599|598|597) lasthit: \d+$/);
    t.regex(lines[2], /^0\.0\.0\.0 -> 10\.77\.0\.2 --- ttl: -?\d+ lasthit: -\d+$/);
    t.regex(await xtr(l, 'proc cat net/xt_DNETMAP/10.77.0.0_30_stat'), /^2 0 4 (600|599|598|597) \n$/);

    // The server opens a connection to the bound address: PREROUTING DNATs it to the client.
    const port = 7210;
    const srv = l.background('c', ['timeout', '20', 'socat', `TCP4-LISTEN:${port},reuseaddr`, 'SYSTEM:\'echo "peer=$SOCAT_PEERADDR me=$SOCAT_SOCKADDR"; head -n 1\'']);
    try {
      await waitFor(async () => (await l.exec('c', ['ss', '-ltnH', `sport = :${port}`])).stdout.includes(`:${port}`), 5000);
      const r = await l.exec('s', ['timeout', '10', 'socat', '-t', '3', '-', `TCP4:10.77.0.1:${port}`], { input: 'inbound\n', timeoutMs: 15_000 });
      t.is(r.stdout, 'peer=203.0.113.2 me=198.51.100.3\ninbound\n', 'reached the host bound to 10.77.0.1');
      // An unbound pool address is not translated: no client answers there.
      const none = await l.exec('s', ['timeout', '5', 'socat', '-T', '2', '-', `TCP4:10.77.0.3:${port},connect-timeout=2`], { input: 'x\n', timeoutMs: 10_000 });
      t.not(none.code, 0);
    } finally {
      await srv.kill('SIGKILL');
    }

    // A static binding written through proc: the next flow of that host uses it.
    await xtr(l, 'proc write net/xt_DNETMAP/10.77.0.0_30 -198.51.100.3');
    await xtr(l, 'proc write net/xt_DNETMAP/10.77.0.0_30 +198.51.100.3:10.77.0.3');
    t.regex(await xtr(l, 'proc cat net/xt_DNETMAP/10.77.0.0_30'), /198\.51\.100\.3 -> 10\.77\.0\.3 --- ttl: S lasthit: S\n$/);
    t.is(await exchange(l, 4, '203.0.113.2', 7204, 'dnetmap-static', '198.51.100.3'), 'peer=10.77.0.3\ndnetmap-static\n');
    t.regex(await xtr(l, 'proc cat net/xt_DNETMAP/10.77.0.0_30_stat'), /^1 1 4 \d+ \n$/);
    // A refused write says why and changes nothing.
    const bad = await l.xtr(['proc', 'write', 'net/xt_DNETMAP/10.77.0.0_30', '+10.77.0.2:10.77.0.1']);
    t.not(bad.status, 0);
    t.regex(bad.stderr, /Invalid option passed via procfs/);

    // Restart: SIGTERM, a new process on the same config and state directory.
    const before = await xtr(l, 'proc cat net/xt_DNETMAP/10.77.0.0_30');
    const r = l.router;
    t.is(await r.stop(), 0);
    const socket = r.socket;
    const cfg = { ...l.config };
    const again = await startRouter({ netns: l.ns.r, config: cfg, socket });
    try {
      const after = await again.xtr(['proc', 'cat', 'net/xt_DNETMAP/10.77.0.0_30']);
      t.is(after.status, 0, after.stderr);
      const pairs = (s: string) => s.split('\n').filter(Boolean).map((x) => x.replace(/ --- ttl: -?\d+ lasthit: -?\d+$/, ''));
      t.deepEqual(pairs(after.stdout), pairs(before), 'the same bindings after the restart');
      t.regex(after.stdout, /198\.51\.100\.3 -> 10\.77\.0\.3 --- ttl: S lasthit: S/);
      // And they act: client .2 is still 10.77.0.0.
      const l2 = { ...l, xtr: again.xtr } as Lab;
      t.is(await exchange(l2, 4, '203.0.113.2', 7205, 'after-restart'), 'peer=10.77.0.0\nafter-restart\n');
      await again.xtr(['iptables', '-t', 'nat', '-F']);
    } finally {
      await again.stop();
    }
  } finally {
    // The lab's router was stopped above in the normal path; if not, clean the rules.
    await l.xtr(['iptables', '-t', 'nat', '-F']).catch(() => undefined);
  }
});
