/**
 * ipp2p, ipv4options and length2 with real traffic through the xtr lab
 * (client - xtr - server namespaces, test/helpers/kernel-router.ts):
 *
 *  - a real BitTorrent client on both ends: aria2 seeding in the server
 *    namespace next to a minimal HTTP tracker, aria2 downloading in the
 *    client namespace; xtr counts `-m ipp2p --bit` hits on the tracker
 *    announce and on both peers' handshakes, and the download completes;
 *    the exchange is also captured (tcpdump) and replayed through the
 *    module, whose hits must be exactly the handshakes and announces;
 *  - ipv4options: scapy-built record route, timestamp, LSRR, SSRR and router
 *    alert options counted by per-flag rules in mangle PREROUTING;
 *  - iface and gradm answered by the running router: interface flags of
 *    xtr's own TUN interfaces (by name and as the packet's in/out device),
 *    and the gradm switch flipped with `xtr proc write net/xt_gradm`;
 *  - length2 --layer3 against mainline `-m length` on the kernel reference
 *    (iptables-legacy in a namespace router): the same packets give the same
 *    per-rule counters, IPv4 and IPv6.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import ipp2p from '../modules/ipp2p.js';
import { Hook } from '../xt/packet.js';
import { XtHarness } from './helpers/xt-harness.js';
import { startLab } from './helpers/netns.js';
import { ADDR, KernelRouter, XtrRouter, PacketAgent, REPO_ROOT, counters, nsArgv, run, sleep, startBackground, xtrPrerequisiteProblem, type Family, type Topology } from './helpers/kernel-router.js';

const BT = join(REPO_ROOT, 'test', 'fixtures', 'bittorrent', 'bt.py');

function problem(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  return xtrPrerequisiteProblem();
}
const why = problem();

/** Per-rule packet counts of a table's chain, in rule order. */
async function ruleCounts(topo: Topology, family: Family, table: string, chain: string): Promise<[number, number][]> {
  const snap = await counters(topo, family);
  return snap.rules.filter((r) => r.table === table && r.chain === chain).map((r) => [r.packets, r.bytes]);
}

if (why !== null) {
  test('detection matches in the lab', (t) => t.fail(`cannot run: ${why}`));
} else {
  test.serial('ipp2p --bit matches a real BitTorrent exchange (aria2 tracker announce and peer handshakes) through xtr', async (t) => {
    if ((await run(['aria2c', '--version'])).status !== 0) return t.fail('aria2c missing (scripts/ensure-setup installs aria2)');
    const topo = await XtrRouter.create({ prefix: `xw3b${randomBytes(2).toString('hex')}-` });
    const dir = mkdtempSync(join(tmpdir(), 'xw3b-bt-'));
    const bg: ReturnType<typeof startBackground>[] = [];
    try {
      const seedDir = join(dir, 'seed');
      const getDir = join(dir, 'get');
      for (const d of [seedDir, getDir]) (await run(['mkdir', '-p', d]));
      chmodSync(dir, 0o755);
      writeFileSync(join(seedDir, 'payload.bin'), randomBytes(200_000));
      const torrent = join(dir, 'payload.torrent');
      const r = await run(['/usr/bin/python3', BT, 'torrent', join(seedDir, 'payload.bin'), `http://${ADDR.server}:6969/announce`, torrent]);
      t.is(r.status, 0, r.stderr);
      const rules = [
        '*filter',
        ':INPUT ACCEPT [0:0]',
        ':FORWARD ACCEPT [0:0]',
        ':OUTPUT ACCEPT [0:0]',
        '-A FORWARD -p tcp --dport 6969 -m ipp2p --bit',
        '-A FORWARD -p tcp --dport 6881 -m ipp2p --bit',
        '-A FORWARD -p tcp --sport 6881 -m ipp2p --bit',
        '-A FORWARD -m ipp2p --edk --dc --gnu --kazaa --apple --soul --ares --mute --waste --xdcc',
        'COMMIT',
        '',
      ].join('\n');
      const loaded = await topo.restore(4, rules);
      t.is(loaded.status, 0, loaded.stderr);
      bg.push(startBackground(nsArgv(topo.ns.server, ['/usr/bin/python3', BT, 'tracker', '6969', ADDR.server, '6881']), { maxLifetimeMs: 60_000 }));
      const common = ['--enable-dht=false', '--enable-dht6=false', '--bt-enable-lpd=false', '--enable-peer-exchange=false', '--bt-require-crypto=false', '--bt-min-crypto-level=plain', '--console-log-level=warn', '--summary-interval=0', '--check-certificate=false'];
      bg.push(startBackground(nsArgv(topo.ns.server, ['aria2c', ...common, '--dir', seedDir, '--listen-port=6881', '--seed-ratio=0', '--seed-time=1', '-V', '--bt-seed-unverified=true', torrent]), { maxLifetimeMs: 60_000 }));
      const pcap = join(dir, 'client.pcap');
      const capture = startBackground(nsArgv(topo.ns.client, ['tcpdump', '-i', 'c0', '-U', '-n', '-w', pcap, 'tcp']), { maxLifetimeMs: 60_000 });
      bg.push(capture);
      await sleep(1500);
      const get = await run(nsArgv(topo.ns.client, ['aria2c', ...common, '--dir', getDir, '--listen-port=6882', '--seed-time=0', '--bt-stop-timeout=20', torrent]), { timeoutMs: 40_000 });
      const done = existsSync(join(getDir, 'payload.bin')) && readFileSync(join(getDir, 'payload.bin')).equals(readFileSync(join(seedDir, 'payload.bin')));
      t.true(done, `download did not complete: ${get.stdout}${get.stderr}`);
      const c = await ruleCounts(topo, 4, 'filter', 'FORWARD');
      t.true(c[0][0] >= 1, `tracker announce (GET /announce?info_hash=...) matched: ${JSON.stringify(c)}`);
      t.true(c[1][0] >= 1, `client's handshake to the seeder matched: ${JSON.stringify(c)}`);
      t.true(c[2][0] >= 1, `seeder's handshake back matched: ${JSON.stringify(c)}`);
      t.is(c[3][0], 0, `no other protocol's signature fired on BitTorrent traffic: ${JSON.stringify(c)}`);
      t.log(`ipp2p --bit hits: announce ${c[0][0]}, client->seeder ${c[1][0]}, seeder->client ${c[2][0]}; other protocols ${c[3][0]}`);

      // The same exchange captured at the client and replayed through the module: the hits are
      // the real handshakes (0x13 "BitTorrent protocol") and the announce, and nothing else.
      await sleep(300);
      await capture.stop();
      const hex = (await run(['/usr/bin/python3', BT, 'packets', pcap])).stdout.trim().split('\n').filter((l) => l.length > 0);
      t.true(hex.length > 10, `captured ${hex.length} packets`);
      const h = new XtHarness();
      const m = h.match(ipp2p, '--bit', { chain: 'FORWARD' });
      const hits = hex.map((x) => Buffer.from(x, 'hex')).filter((p) => m.match(h.packet(p, { hook: Hook.FORWARD })));
      const payloadOf = (p: Buffer) => p.subarray(20 + (p[20 + 12] >> 4) * 4);
      const handshakes = hits.filter((p) => payloadOf(p).subarray(0, 20).equals(Buffer.from('\x13BitTorrent protocol', 'latin1')));
      const announces = hits.filter((p) => payloadOf(p).toString('latin1').startsWith('GET /announce?info_hash='));
      t.is(handshakes.length, 2, 'both handshakes in the capture match');
      t.is(hits.length, handshakes.length + announces.length, 'every hit is a handshake or an announce');
      t.true(announces.length >= 1);
      t.log(`capture: ${hex.length} packets, ${hits.length} --bit hits (${handshakes.length} handshakes, ${announces.length} announces); first handshake ${payloadOf(handshakes[0]).subarray(0, 28).toString('hex')}`);
    } finally {
      for (const b of bg) await b.stop();
      await topo.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.serial('ipv4options: scapy-built RR, timestamp, LSRR, SSRR and router-alert options counted through xtr', async (t) => {
    const topo = await XtrRouter.create({ prefix: `xw3b${randomBytes(2).toString('hex')}-` });
    let agent: PacketAgent | null = null;
    try {
      const flags = ['record-route', 'timestamp', 'lsrr', 'ssrr', 'router-alert', '!record-route', 'lsrr,ssrr --any', 'record-route,router-alert'];
      const rules = ['*mangle', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]'];
      for (const f of flags) rules.push(`-A PREROUTING -s ${ADDR.client} -p udp --dport 9 -m ipv4options --flags ${f}`);
      rules.push('COMMIT', '');
      const loaded = await topo.restore(4, rules.join('\n'));
      t.is(loaded.status, 0, loaded.stderr);
      agent = await PacketAgent.start(topo.ns.client, 'c0', ADDR.routerClientSide, ADDR.router6ClientSide);
      const base = 'IP(src=C, dst=S, options=[%s])/UDP(sport=4000, dport=9)/Raw(b"x")';
      const sent: [string, string][] = [
        ['none', 'IP(src=C, dst=S)/UDP(sport=4000, dport=9)/Raw(b"x")'],
        ['rr', base.replace('%s', 'IPOption_RR(routers=["10.0.0.1"])')],
        ['ts', base.replace('%s', 'IPOption_Timestamp(flg=0, timestamp=0)')],
        ['lsrr', base.replace('%s', 'IPOption_LSRR(routers=[S])')],
        ['ssrr', base.replace('%s', 'IPOption_SSRR(routers=[S])')],
        ['ra', base.replace('%s', 'IPOption_Router_Alert()')],
        ['rr+ra', base.replace('%s', 'IPOption_RR(routers=["10.0.0.1"]), IPOption_Router_Alert()')],
      ];
      await agent.send(sent.map(([, e]) => e), 20);
      await sleep(500);
      const c = (await ruleCounts(topo, 4, 'mangle', 'PREROUTING')).map(([p]) => p);
      // Packets per rule, from the facts: RR in rr and rr+ra; TS in ts; LSRR; SSRR; RA in ra and rr+ra;
      // !RR in none, ts, lsrr, ssrr, ra; lsrr or ssrr; RR and RA together only in rr+ra.
      t.deepEqual(c, [2, 1, 1, 1, 2, 5, 2, 1], `counters per --flags rule (${flags.join(' | ')})`);
    } finally {
      await agent?.stop();
      await topo.destroy();
    }
  });

  test.serial('iface flags of xtr\'s own interfaces and the gradm switch, through the running router', async (t) => {
    const lab = await startLab({ prefix: `xw3b${randomBytes(2).toString('hex')}-`, mode: 'tun' });
    let agent: PacketAgent | null = null;
    try {
      const rules = [
        '*filter',
        ':INPUT ACCEPT [0:0]',
        ':FORWARD ACCEPT [0:0]',
        ':OUTPUT ACCEPT [0:0]',
        `-A FORWARD -s ${ADDR.client} -m iface --dev-in --up --running --lower-up --pointopoint --noarp`,
        `-A FORWARD -s ${ADDR.client} -m iface --iface eth0 --up ! --broadcast ! --loopback ! --promisc`,
        `-A FORWARD -s ${ADDR.client} -m iface --iface eth9 ! --up`,
        `-A FORWARD -s ${ADDR.client} -m iface --dev-out --broadcast`,
        `-A FORWARD -s ${ADDR.client} -m iface --dev-out --arp`,
        `-A FORWARD -s ${ADDR.client} -m gradm --enabled`,
        `-A FORWARD -s ${ADDR.client} -m gradm --disabled`,
        'COMMIT',
        '',
      ].join('\n');
      const loaded = await lab.xtr(['iptables-restore'], rules);
      t.is(loaded.status, 0, loaded.stderr);
      agent = await PacketAgent.start(lab.ns.c, 'c0', ADDR.routerClientSide, ADDR.router6ClientSide);
      const burst = Array.from({ length: 3 }, (_, i) => `IP(src=C, dst=S)/UDP(sport=${5000 + i}, dport=9)/Raw(b"x")`);
      const counts = async () => {
        const save = (await lab.xtr(['iptables-save', '-c'])).stdout;
        return [...save.matchAll(/^\[(\d+):\d+\] -A FORWARD/gm)].map((m) => Number(m[1]));
      };
      await agent.send(burst, 20);
      await sleep(300);
      t.deepEqual(await counts(), [3, 3, 0, 0, 0, 0, 3], 'TUN eth0 in, eth1 out: UP RUNNING LOWER_UP POINTOPOINT NOARP; gradm off by default');
      t.is((await lab.xtr(['proc', 'cat', 'net/xt_gradm'])).stdout, 'disabled\n');
      const flip = await lab.xtr(['proc', 'write', 'net/xt_gradm', 'enabled\n']);
      t.is(flip.status, 0, flip.stderr);
      await agent.send(burst, 20);
      await sleep(300);
      t.deepEqual(await counts(), [6, 6, 0, 0, 0, 3, 3], 'after `xtr proc write net/xt_gradm enabled`');
    } finally {
      await agent?.stop();
      await lab.stop();
    }
  });

  test.serial('length2 --layer3 counts what mainline -m length counts on the kernel, same packets, IPv4 and IPv6', async (t) => {
    const ranges = ['0:99', '100:500', '! --length 0:1000', '64', '1228'];
    const ruleText = (m: 'length' | 'length2', src: string) =>
      ranges.map((r) => {
        const spec = r.startsWith('!') ? r : `--length ${r}`;
        return `-A FORWARD -s ${src} ${m === 'length' ? '-m length' : '-m length2 --layer3'} ${spec}`;
      });
    const restore = (m: 'length' | 'length2', src: string) => ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ...ruleText(m, src), 'COMMIT', ''].join('\n');
    const sizes = [10, 36, 72, 300, 999, 1200];
    const packets4 = sizes.map((n) => `IP(src=C, dst=S)/UDP(sport=4000, dport=9)/Raw(b"a" * ${n})`);
    const packets6 = sizes.map((n) => `IPv6(src=C6, dst=S6)/UDP(sport=4000, dport=9)/Raw(b"a" * ${n})`);
    const results: Record<string, Record<Family, [number, number][]>> = {};
    for (const kind of ['kernel', 'xtr'] as const) {
      const prefix = `xw3b${randomBytes(2).toString('hex')}-`;
      const topo: Topology = kind === 'kernel' ? await KernelRouter.create({ prefix }) : await XtrRouter.create({ prefix });
      let agent: PacketAgent | null = null;
      try {
        const m = kind === 'kernel' ? 'length' : 'length2';
        for (const [family, src] of [[4, ADDR.client], [6, ADDR.client6]] as const) {
          const r = await topo.restore(family, restore(m, src));
          t.is(r.status, 0, `${kind} IPv${family}: ${r.stderr}`);
        }
        agent = await PacketAgent.start(topo.ns.client, 'c0', ADDR.routerClientSide, ADDR.router6ClientSide);
        await agent.send([...packets4, ...packets6], 20);
        await sleep(500);
        results[kind] = { 4: await ruleCounts(topo, 4, 'filter', 'FORWARD'), 6: await ruleCounts(topo, 6, 'filter', 'FORWARD') };
      } finally {
        await agent?.stop();
        await topo.destroy();
      }
    }
    t.deepEqual(results.xtr, results.kernel, 'per-rule [packets, bytes]: xtr length2 --layer3 vs kernel length');
    // And the counts are what the lengths say (not all zero): IPv4 lengths 38 64 100 328 1027 1228.
    t.deepEqual(results.kernel[4].map(([p]) => p), [2, 2, 2, 1, 1]);
    t.log(JSON.stringify(results.kernel));
  });
}
