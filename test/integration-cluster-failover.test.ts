/**
 * Conntrack failover (issue 15 item 3, docs/cluster.md "Conntrack failover"):
 * two xtr gateways in gateway mode share a virtual address on each side and
 * a NATS server in its own namespace; the active one streams its established
 * flows (router/cluster/ct-sync.ts), the standby keeps them in its external
 * cache and imports them on `xtr cluster commit`.
 *
 *   c 10.1.0.10 --[sw: bridge brl]-- ga lan 10.1.0.2 (+VIP .1)  ga wan 10.2.0.2 (+VIP .1) --[sw: bridge brw]-- s 10.2.0.10
 *                                --  gb lan 10.1.0.3            gb wan 10.2.0.3            --
 *   ga nats0 10.250.1.2 -- n 10.250.1.1 (nats-server -js) -- gb nats0 10.250.2.2
 *
 * Rules on both: ESTABLISHED,RELATED accepted, NEW only as a SYN to 5001,
 * everything else dropped: a flow the standby has no entry for is dropped
 * there (xtr's loose pickup makes a mid-stream segment NEW, as the kernel's).
 *
 *  1. negative control, the addresses moved BY HAND (ip addr del/add,
 *     neighbour caches flushed): a transfer through A, the addresses moved
 *     to B without a commit: B drops the flow, the transfer stalls;
 *  2. keepalived (VRRPv3, advert_int 0.1, unicast peers; a vrrp_script
 *     asks each xtr `ping` over its control socket; notify_master runs
 *     `xtr cluster commit`) owns the addresses: a transfer through A, A's
 *     xtr killed -9; A's keepalived goes to FAULT and drops the addresses,
 *     B becomes MASTER (gratuitous ARPs) and commits: the transfer completes
 *     through B, sha256 equal; B's conntrack -L shows the flow; each address
 *     on one gateway only.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Namespaces, REPO_ROOT, background, exec, run, sleep, startRouter, uniquePrefix, vethPair, waitFor, type Background, type RouterProcess } from './helpers/netns.js';

const SERVER = '10.2.0.10';
const PORT = 5001;
const VIPS = [
  ['lan', '10.1.0.1/24'],
  ['wan', '10.2.0.1/24'],
] as const;
/** Bytes per transfer and the client's rate (tc tbf): several seconds long. */
const SIZE = 12 * 1024 * 1024;
const RATE = '24mbit';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test.serial('conntrack failover: a transfer survives kill -9 of the active gateway through the standby that imported its flow', async (t) => {
  const prefix = uniquePrefix('yj');
  const nss = new Namespaces(prefix);
  const store = mkdtempSync(join(tmpdir(), `xtr-nats-${prefix}`));
  const routers: RouterProcess[] = [];
  const kaDir = mkdtempSync(join(tmpdir(), `xtr-ka-${prefix}`));
  const keepaliveds: Background[] = [];
  const bgs: Background[] = [];
  const bg = (ns: string, argv: string[], input?: Buffer) => {
    const b = background(argv, { netns: ns, input });
    bgs.push(b);
    return b;
  };
  try {
    const sw = await nss.add('sw');
    const c = await nss.add('c');
    const s = await nss.add('s');
    const ga = await nss.add('ga');
    const gb = await nss.add('gb');
    const n = await nss.add('n');
    for (const br of ['brl', 'brw']) {
      await run(['ip', '-n', sw, 'link', 'add', br, 'type', 'bridge']);
      await run(['ip', '-n', sw, 'link', 'set', br, 'up']);
    }
    const port = async (ns: string, ifname: string, addr: string[], swName: string, br: string) => {
      await vethPair({ ns, ifname, addresses: addr }, { ns: sw, ifname: swName });
      await run(['ip', '-n', sw, 'link', 'set', swName, 'master', br]);
    };
    await port(c, 'eth0', ['10.1.0.10/24'], 'pc', 'brl');
    await port(s, 'eth0', ['10.2.0.10/24'], 'ps', 'brw');
    await port(ga, 'lan', ['10.1.0.2/24'], 'pal', 'brl');
    await port(ga, 'wan', ['10.2.0.2/24'], 'paw', 'brw');
    await port(gb, 'lan', ['10.1.0.3/24'], 'pbl', 'brl');
    await port(gb, 'wan', ['10.2.0.3/24'], 'pbw', 'brw');
    await run(['ip', '-n', c, 'route', 'add', 'default', 'via', '10.1.0.1']);
    await run(['ip', '-n', s, 'route', 'add', 'default', 'via', '10.2.0.1']);
    await run(['tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'tbf', 'rate', RATE, 'burst', '32kb', 'latency', '400ms'], { netns: c });
    await vethPair({ ns: n, ifname: 'na', addresses: ['10.250.1.1/24'] }, { ns: ga, ifname: 'nats0', addresses: ['10.250.1.2/24'] });
    await vethPair({ ns: n, ifname: 'nb', addresses: ['10.250.2.1/24'] }, { ns: gb, ifname: 'nats0', addresses: ['10.250.2.2/24'] });
    bg(n, ['nats-server', '-js', '-sd', store, '-a', '0.0.0.0', '-p', '4222']);

    const gws = [
      { ns: ga, id: 'gwA', lan: '10.1.0.2/24', wan: '10.2.0.2/24', nats: 'nats://10.250.1.1:4222' },
      { ns: gb, id: 'gwB', lan: '10.1.0.3/24', wan: '10.2.0.3/24', nats: 'nats://10.250.2.1:4222' },
    ];
    for (const g of gws) {
      const r = await startRouter({
        netns: g.ns,
        socket: `/run/xtr/${prefix}${g.id}.sock`,
        config: {
          logLevel: 'info',
          interfaces: [
            { name: 'lan', mode: 'tun', mtu: 1500, addresses: [g.lan], attach: 'lan' },
            { name: 'wan', mode: 'tun', mtu: 1500, addresses: [g.wan], attach: 'wan' },
          ],
          routes: [],
          cluster: { name: 'yjlab', gateway: g.id, servers: [g.nats], shared: ['conntrack'], flushMs: 20 },
        },
      });
      routers.push(r);
      for (const rule of [
        ['-A', 'FORWARD', '-m', 'state', '--state', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'],
        ['-A', 'FORWARD', '-p', 'tcp', '--syn', '--dport', String(PORT), '-m', 'state', '--state', 'NEW', '-j', 'ACCEPT'],
        ['-A', 'FORWARD', '-j', 'DROP'],
      ]) {
        const res = await r.xtr(['iptables', ...rule]);
        t.is(res.status, 0, res.stderr);
      }
    }
    const [ra, rb] = routers;
    for (const r of routers) {
      t.true(await waitFor(async () => JSON.parse((await r.xtr(['cluster', 'status', '--json'])).stdout).connected === true, 20_000, 100), 'connected to NATS');
    }

    const vipTo = async (from: string, to: string) => {
      for (const [dev, addr] of VIPS) {
        await exec(['ip', '-n', from, 'addr', 'del', addr, 'dev', dev]);
        await run(['ip', '-n', to, 'addr', 'add', addr, 'dev', dev]);
      }
      // What keepalived's gratuitous ARPs do: the hosts learn the new owner's MAC.
      await run(['ip', '-n', c, 'neigh', 'flush', 'dev', 'eth0']);
      await run(['ip', '-n', s, 'neigh', 'flush', 'dev', 'eth0']);
    };
    const vipOwners = async () => {
      const out: string[] = [];
      for (const [name, ns] of [['A', ga], ['B', gb]] as const) {
        const a = await run(['ip', '-n', ns, '-4', 'addr', 'show']);
        for (const [, addr] of VIPS) if (a.includes(`inet ${addr} `)) out.push(`${name}:${addr}`);
      }
      return out;
    };
    for (const [dev, addr] of VIPS) await run(['ip', '-n', ga, 'addr', 'add', addr, 'dev', dev]);
    t.deepEqual(await vipOwners(), ['A:10.1.0.1/24', 'A:10.2.0.1/24']);

    /** Starts a sink on the server and a rate-limited sender on the client; resolves once `min` bytes arrived. */
    const transfer = async (data: Buffer, min: number) => {
      const sink = bg(s, ['socat', '-u', '-T', '60', `TCP4-LISTEN:${PORT},reuseaddr`, 'STDOUT']);
      await sleep(300);
      const t0 = Date.now();
      const sender = bg(c, ['socat', '-u', '-T', '60', 'STDIN', `TCP:${SERVER}:${PORT}`], data);
      t.true(await waitFor(() => sink.stdout().length >= min, 30_000, 20), `${min} bytes arrived through A`);
      return { sink, sender, t0 };
    };
    /** Our flow in `xtr cluster conntrack` of B (its external cache). */
    const cachedOnB = async () => (await rb.xtr(['cluster', 'conntrack'])).stdout.split('\n').filter((l) => l.includes(`-${PORT} `));
    const entryOnB = async () => (await rb.xtr(['conntrack', '-L'])).stdout.split('\n').filter((l) => l.includes(`dport=${PORT} `) && l.includes('ESTABLISHED'));

    // 1. Negative control: the addresses go to B, B imports nothing: the flow is dropped there.
    {
      const data = randomBytes(SIZE);
      const { sink, sender } = await transfer(data, 1 << 20);
      t.true(await waitFor(async () => (await cachedOnB()).length === 1, 5000, 20), 'B cached the flow');
      await vipTo(ga, gb);
      await sleep(1000);
      const at = sink.stdout().length;
      await sleep(4000);
      const grew = sink.stdout().length - at;
      t.log(`negative control (no commit on B): ${grew} bytes in 4 s after the move (${at} of ${SIZE} before)`);
      t.true(grew < 64 * 1024, `the transfer stalls without the entry (${grew} bytes)`);
      t.is(sender.proc.exitCode, null, 'the sender is not done');
      t.deepEqual(await entryOnB(), [], 'B has no entry for it');
      const st = (await rb.xtr(['iptables', '-L', 'FORWARD', '-v', '-n', '-x'])).stdout;
      t.log(st);
      await sender.kill('SIGKILL');
      await sink.kill('SIGKILL');
      await vipTo(gb, ga);
    }

    // 2. keepalived owns the addresses; kill -9 of A's xtr during a transfer; B takes over and commits.
    for (const [dev, addr] of VIPS) await exec(['ip', '-n', ga, 'addr', 'del', addr, 'dev', dev]);
    const commitLog = join(kaDir, 'notify-gwB.log');
    // A first, so that B never is MASTER alone before A is up.
    const gwKa = [
      { ns: ga, id: 'gwA', prio: 150, self: '10.1.0.2', peer: '10.1.0.3' },
      { ns: gb, id: 'gwB', prio: 100, self: '10.1.0.3', peer: '10.1.0.2' },
    ];
    for (const g of gwKa) {
      const sock = `/run/xtr/${prefix}${g.id}.sock`;
      // `xtr ping` over the control socket, without a node start-up per check (track_process does not work in a namespace).
      const check = join(kaDir, `check-${g.id}.sh`);
      writeFileSync(check, `#!/bin/sh\nprintf '%s\\n' '{"cmd":"ping","args":[],"input":null}' | timeout 2 socat -t 2 - UNIX-CONNECT:${sock} 2>/dev/null | grep -q pong\n`);
      const notify = join(kaDir, `notify-${g.id}.sh`);
      writeFileSync(notify, `#!/bin/sh\necho "$(date +%s%3N) master" >> ${join(kaDir, `notify-${g.id}.log`)}\n${process.execPath} ${join(REPO_ROOT, 'bin', 'xtr.js')} --socket ${sock} cluster commit >> ${join(kaDir, `notify-${g.id}.log`)} 2>&1\n`);
      chmodSync(check, 0o755);
      chmodSync(notify, 0o755);
      const conf = join(kaDir, `${g.id}.conf`);
      writeFileSync(conf, [
        'global_defs {',
        '  script_user root',
        '  vrrp_version 3',
        `  router_id ${g.id}`,
        '}',
        'vrrp_script xtr_alive {',
        `  script "${check}"`,
        // Two failed checks (under a load of 15 on two cores one check can be late): 1-3 s to notice a dead xtr.
        '  interval 1',
        '  timeout 2',
        '  fall 2',
        '  rise 2',
        '}',
        'vrrp_instance yjlab {',
        '  state BACKUP',
        '  interface lan',
        '  virtual_router_id 57',
        `  priority ${g.prio}`,
        '  advert_int 0.1',
        `  unicast_src_ip ${g.self}`,
        `  unicast_peer { ${g.peer} }`,
        '  virtual_ipaddress {',
        ...VIPS.map(([dev, addr]) => `    ${addr} dev ${dev}`),
        '  }',
        '  track_script { xtr_alive }',
        `  notify_master "${notify}"`,
        '}',
        '',
      ].join('\n'));
      const p = (n: string) => join(kaDir, `${g.id}.${n}.pid`);
      if (g.id === 'gwB') await waitFor(async () => (await vipOwners()).length === 2, 20_000, 50);
      const ka = background(['keepalived', '-n', '-l', '-D', '-P', '-f', conf, '-p', p('main'), '-r', p('vrrp'), '-c', p('checkers')], { netns: g.ns });
      keepaliveds.push(ka);
    }
    t.true(await waitFor(async () => (await vipOwners()).join() === 'A:10.1.0.1/24,A:10.2.0.1/24', 20_000, 50), `A is MASTER: ${(await vipOwners()).join()}`);
    {
      const data = randomBytes(SIZE);
      // The control's flow is still cached (its end never reached A): this flow is the new line.
      const id = (l: string) => l.split(' ')[0];
      const old = new Set((await cachedOnB()).map(id));
      const { sink, sender, t0 } = await transfer(data, 2 << 20);
      t.true(await waitFor(async () => (await cachedOnB()).some((l) => !old.has(id(l))), 5000, 20), 'B cached the flow');
      const cached = (await cachedOnB()).filter((l) => !old.has(id(l)));
      t.log(`B's external cache before the kill: ${cached.join(' | ')}`);
      // A flap before the kill (a late check under load) would make this a different test: say so.
      t.deepEqual(await vipOwners(), ['A:10.1.0.1/24', 'A:10.2.0.1/24'], 'A is still MASTER before the kill');
      const before = sink.stdout().length;
      const tKill = Date.now();
      ra.proc.proc.kill('SIGKILL');
      t.true(await waitFor(async () => (await vipOwners()).includes('B:10.1.0.1/24'), 20_000, 10), 'B took the address');
      const tVip = Date.now() - tKill;
      t.true(await waitFor(() => existsSync(commitLog) && readFileSync(commitLog, 'utf8').includes('committed'), 20_000, 10), 'B\'s notify script committed');
      const tCommit = Date.now() - tKill;
      t.log(`B's notify_master: ${readFileSync(commitLog, 'utf8').trim()}`);
      const entry = await entryOnB();
      t.true(entry.some((l) => cached.some((c) => l.includes(`sport=${c.split(' ')[0].split('-')[4]} `))), 'B has the flow in its table');
      t.log(`B's conntrack -L: ${entry.join(' | ')}`);
      t.true(await waitFor(() => sink.stdout().length > before + 65536, 20_000, 10), 'data flows again through B');
      const resumed = Date.now() - tKill;
      t.is(await sender.wait(60_000), 0, sender.stderr());
      t.is(await sink.wait(30_000), 0, sink.stderr());
      const got = sink.stdout();
      t.is(got.length, data.length);
      t.is(sha(got), sha(data), 'sha256 of what arrived equals what was sent');
      t.log(`transfer of ${SIZE} bytes at ${RATE}: ${before} bytes before the kill; after it: address on B ${tVip} ms, commit done ${tCommit} ms, 64 KiB more through B ${resumed} ms; done in ${Date.now() - t0} ms`);
      const owners = await vipOwners();
      t.deepEqual(owners, ['B:10.1.0.1/24', 'B:10.2.0.1/24'], 'each address on one gateway only (A in FAULT dropped them)');
      t.log((await rb.xtr(['cluster', 'status'])).stdout);
    }
    const transitions = (k: Background) => (k.stdout().toString() + k.stderr()).split('\n').filter((l) => /Entering|FAULT|VRRP_Script/.test(l)).join('; ');
    t.log(`keepalived A: ${transitions(keepaliveds[0])}`);
    t.log(`keepalived B: ${transitions(keepaliveds[1])}`);
  } finally {
    // keepalived: SIGTERM (it removes its addresses and ends its children), then by pid file whatever is left.
    for (const k of keepaliveds) await k.kill('SIGTERM');
    for (const f of ['gwA', 'gwB'].flatMap((g) => ['main', 'vrrp', 'checkers'].map((n) => join(kaDir, `${g}.${n}.pid`)))) {
      const pid = existsSync(f) ? Number(readFileSync(f, 'utf8').trim()) : 0;
      if (pid > 1 && existsSync(`/proc/${pid}/comm`) && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'keepalived') {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    rmSync(kaDir, { recursive: true, force: true });
    for (const b of bgs) await b.kill('SIGKILL');
    for (const r of routers) await r.stop();
    await nss.cleanup();
    rmSync(store, { recursive: true, force: true });
  }
});
