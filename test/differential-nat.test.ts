/**
 * Conntrack NAT against the kernel: the same nat rule set is loaded into the
 * kernel reference router (iptables-legacy in a namespace) and into xtr, the
 * same real clients run through each, and what the far ends saw, what the
 * clients got back, `conntrack -L` and the nat rules' counters are compared.
 *
 * Rules (IPv4 and IPv6 alike):
 *   PREROUTING  -i eth1 -p tcp --dport 2222 -j DNAT --to-destination <client>:22   (port forward)
 *   POSTROUTING -o eth1 -p udp --sport 41000:41999 -j SNAT --to-source <router>:20000-20001
 *   POSTROUTING -o eth1 -j MASQUERADE
 * Traffic: UDP request/answer (the server sees the router's address, the
 * source port kept), a socat TCP transfer with a content check, ping, the
 * port forward from the server side, and three flows forced onto the SNAT
 * range of two ports: both ports used, one each, and the third flow dropped
 * (compared as properties: which port a flow gets is random in both).
 */
import test, { type ExecutionContext } from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADDR, KernelRouter, REPO_ROOT, XtrRouter, nsArgv, run, sleep, startBackground, xtrPrerequisiteProblem, type Family, type Topology } from './helpers/kernel-router.js';

const PEER = join(REPO_ROOT, 'test', 'fixtures', 'xw5a', 'natpeer.py');
const PY = '/usr/bin/python3';

function unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  return xtrPrerequisiteProblem();
}

interface Seen {
  restore: string;
  udp: string;
  tcp: string;
  tcpSha: string;
  ping: string;
  forward: string;
  clash: string[];
  stats: string;
  conntrack: string[];
  counters: string[];
}

const A = (family: Family) =>
  family === 4
    ? { c: ADDR.client as string, c2: ADDR.client2 as string, r: ADDR.routerServerSide, rIn: ADDR.routerClientSide, s: ADDR.server, any: '0.0.0.0', br: (a: string) => a }
    : { c: ADDR.client6 as string, c2: ADDR.client6 as string, r: ADDR.router6ServerSide, rIn: ADDR.router6ClientSide, s: ADDR.server6, any: '::', br: (a: string) => `[${a}]` };

function rules(family: Family): string {
  const a = A(family);
  return [
    '*nat',
    `-A PREROUTING -i eth1 -p tcp --dport 2222 -j DNAT --to-destination ${a.br(a.c)}:22`,
    `-A POSTROUTING -o eth1 -p udp --sport 41000:41999 -j SNAT --to-source ${a.br(a.r)}:20000-20001`,
    '-A POSTROUTING -o eth1 -j MASQUERADE',
    'COMMIT',
    '',
  ].join('\n');
}

/** The tuples of `conntrack -L` lines (timeouts, states and flags dropped), sorted. */
export function tuples(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const proto = /^(\w+)\s+\d+\s/.exec(line)?.[1];
    if (!proto) continue;
    const parts = [...line.matchAll(/(src|dst|sport|dport|type|code|id)=(\S+)/g)].map((m) => `${m[1]}=${m[2]}`);
    // ping chooses its echo id: compared as "kept" (same id in both tuples) or "changed"
    const ids = parts.filter((x) => x.startsWith('id='));
    const text = parts.map((x) => (x.startsWith('id=') ? (ids[0] === ids[1] ? 'id=<kept>' : 'id=<changed>') : x)).join(' ');
    out.push(`${proto} ${text}`);
  }
  return out.sort();
}

async function scenario(topo: Topology, family: Family): Promise<Seen> {
  const a = A(family);
  const ip = family === 4 ? [] : ['-6'];
  const seen: Seen = { restore: '', udp: '', tcp: '', tcpSha: '', ping: '', forward: '', clash: [], stats: '', conntrack: [], counters: [] };
  const r = await topo.restore(family, rules(family));
  seen.restore = `${r.status} ${r.stderr.trim()}`;
  if (family === 6) {
    // a second client address for the clash flows
    await run(['ip', '-n', topo.ns.client, 'addr', 'add', '2001:db8:c::3/64', 'dev', 'c0', 'nodad']);
    a.c2 = '2001:db8:c::3';
  }
  const server = startBackground(nsArgv(topo.ns.server, [PY, PEER, 'serve', a.any, '7001', '7002', '40']), { maxLifetimeMs: 60_000 });
  const inside = startBackground(nsArgv(topo.ns.client, ['socat', `TCP${family === 6 ? '6' : ''}-LISTEN:22,reuseaddr,fork`, 'SYSTEM:echo inside $SOCAT_PEERADDR']), { maxLifetimeMs: 60_000 });
  const dir = mkdtempSync(join(tmpdir(), 'xw5a-nat-'));
  try {
    for (let i = 0; i < 50 && !server.output().stdout.includes('ready'); i++) await sleep(100);
    await sleep(200);
    // UDP request/answer: the server sees the router's outside address, the port kept
    seen.udp = (await topo.exec(topo.ns.client, [PY, PEER, 'udp', a.c, '40000', a.s, '7001'])).stdout.trim();
    // socat TCP transfer with a content check
    const data = randomBytes(300_000).toString('base64');
    const sha = createHash('sha256').update(data).digest('hex');
    const t = await topo.exec(topo.ns.client, ['socat', '-t', '5', '-', `TCP${family === 6 ? '6' : ''}:${a.br(a.s)}:7002,sourceport=40100,bind=${a.br(a.c)}`], { timeoutMs: 20_000, input: data });
    const words = t.stdout.trim().split(' ');
    seen.tcp = words.slice(0, 2).join(' ');
    seen.tcpSha = words[2] === sha ? 'content ok' : `content differs (${t.stdout.trim()} ${t.stderr.trim()})`;
    // ping: the echo id is free, so kept; the reply reaches the client
    const p = await topo.exec(topo.ns.client, ['ping', ...ip, '-c', '2', '-i', '0.2', '-W', '2', a.s]);
    seen.ping = /2 received/.test(p.stdout) ? '2 received' : p.stdout.trim().split('\n').slice(-2).join(' ');
    // port forward from the outside: the inside host answers, seeing the server's own address
    const f = await topo.exec(topo.ns.server, ['socat', '-t', '3', '-', `TCP${family === 6 ? '6' : ''}:${a.br(a.r)}:2222,sourceport=39000`], { timeoutMs: 10_000 });
    seen.forward = f.stdout.trim().replace(/:\d+$/, '');
    // three flows onto a two-port SNAT range
    const c1 = (await topo.exec(topo.ns.client, [PY, PEER, 'udp', a.c, '41000', a.s, '7001'])).stdout.trim();
    const c2 = (await topo.exec(topo.ns.client, [PY, PEER, 'udp', a.c2, '41000', a.s, '7001'])).stdout.trim();
    const c3 = (await topo.exec(topo.ns.client, [PY, PEER, 'udp', a.c, '41001', a.s, '7001', '1'])).stdout.trim();
    const port = (s: string) => Number(s.split(' ')[1]);
    seen.clash = [
      `first: ${c1.split(' ')[0]} port in range ${port(c1) >= 20000 && port(c1) <= 20001}`,
      `second: ${c2.split(' ')[0]} port in range ${port(c2) >= 20000 && port(c2) <= 20001}`,
      `distinct ${port(c1) !== port(c2)}`,
      `third: ${c3}`,
    ];
    const stats = (await topo.runScript(topo.kind === 'kernel' ? 'conntrack -S' : 'xtr conntrack -S')).stdout;
    const sum = (k: string) => [...stats.matchAll(new RegExp(`\\b${k}=(\\d+)`, 'g'))].reduce((n, m) => n + Number(m[1]), 0);
    seen.stats = `insert_failed=${sum('insert_failed')} drop=${sum('drop')} clash_resolve=${sum('clash_resolve')}`;
    const list = topo.kind === 'kernel' ? 'conntrack -L 2>/dev/null' : 'xtr conntrack -L 2>/dev/null';
    // the range flows' ports are random: compared by the properties above
    seen.conntrack = tuples((await topo.runScript(list)).stdout).filter((l) => !/sport=4100[01] /.test(l));
    const save = await topo.save(family);
    seen.counters = save
      .split('\n')
      .filter((l) => l.startsWith('['))
      .map((l) => l.replace(/^\[(\d+):\d+\]/, '[$1]'));
    return seen;
  } finally {
    await server.stop();
    await inside.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function compare(t: ExecutionContext, family: Family): Promise<void> {
  const kernel = await KernelRouter.create({ prefix: `xw5a-k${family}` });
  let k: Seen;
  try {
    k = await scenario(kernel, family);
  } finally {
    await kernel.destroy();
  }
  const xtr = await XtrRouter.create({ prefix: `xw5a-x${family}` });
  let x: Seen;
  try {
    x = await scenario(xtr, family);
  } catch (e) {
    t.log(xtr.log());
    throw e;
  } finally {
    await xtr.destroy();
  }
  t.log('kernel', k);
  const a = A(family);
  // the kernel's own behaviour is what xtr is held to; these say the scenario exercised what it claims
  t.is(k.udp, `${a.r} 40000`);
  t.is(k.tcpSha, 'content ok');
  t.deepEqual(x, k);
}

const why = unavailable();
if (why) {
  test('NAT differential', (t) => t.fail(`not run: ${why}`));
} else {
  test.serial('IPv4: MASQUERADE, SNAT onto a two-port range, DNAT port forward - same as the kernel', (t) => compare(t, 4));
  test.serial('IPv6: MASQUERADE, SNAT onto a two-port range, DNAT port forward - same as the kernel', (t) => compare(t, 6));
}
