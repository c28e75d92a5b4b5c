/**
 * Gateway mode: xtr runs in a namespace that owns two real (veth)
 * interfaces and, through policy routing, forwards between two other
 * namespaces - the container-as-gateway placement. Checks that traffic really
 * passes xtr (its counters) and that after a stop only the fail-closed floor
 * of its policy routing stays (issue 12; test/integration-failclosed.test.ts).
 *
 *   a (10.1.0.2, fd00:1::2) --veth-- [ga  g  gb] --veth-- b (10.2.0.2, fd00:2::2)
 *                                     xtr: lan=xtr-lan<-ga, wan=xtr-wan<-gb
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { Namespaces, run, sleep, startRouter, vethPair, background, exec, type RouterProcess } from './helpers/netns.js';

test.serial('gateway mode forwards between two namespaces through xtr, and cleans up its policy routing', async (t) => {
  const nss = new Namespaces();
  let router: RouterProcess | null = null;
  const bgs: ReturnType<typeof background>[] = [];
  t.teardown(async () => {
    for (const b of bgs) await b.kill('SIGKILL');
    if (router) await router.stop();
    await nss.cleanup();
  });
  const a = await nss.add('a');
  const g = await nss.add('g');
  const b = await nss.add('b');
  await vethPair({ ns: a, ifname: 'a0', addresses: ['10.1.0.2/24', 'fd00:1::2/64'] }, { ns: g, ifname: 'ga', addresses: ['10.1.0.1/24', 'fd00:1::1/64'] });
  await vethPair({ ns: g, ifname: 'gb', addresses: ['10.2.0.1/24', 'fd00:2::1/64'] }, { ns: b, ifname: 'b0', addresses: ['10.2.0.2/24', 'fd00:2::2/64'] });
  await run(['ip', 'route', 'add', 'default', 'via', '10.1.0.1'], { netns: a });
  await run(['ip', '-6', 'route', 'add', 'default', 'via', 'fd00:1::1'], { netns: a });
  await run(['ip', 'route', 'add', 'default', 'via', '10.2.0.1'], { netns: b });
  await run(['ip', '-6', 'route', 'add', 'default', 'via', 'fd00:2::1'], { netns: b });

  router = await startRouter({
    netns: g,
    socket: `/run/xtr/${nss.prefix}gw.sock`,
    config: {
      logLevel: 'info',
      interfaces: [
        { name: 'lan', mode: 'tun', mtu: 1500, addresses: ['10.1.0.1/24', 'fd00:1::1/64'], attach: 'ga' },
        { name: 'wan', mode: 'tun', mtu: 1500, addresses: ['10.2.0.1/24', 'fd00:2::1/64'], attach: 'gb' },
      ],
      routes: [],
    },
  });

  const rules = await run(['ip', 'rule', 'show'], { netns: g });
  t.regex(rules, /iif ga lookup \d+/);
  t.regex(rules, /iif xtr-lan lookup main/);
  t.regex(await run(['ip', '-6', 'rule', 'show'], { netns: g }), /iif gb lookup \d+/);

  const before = JSON.parse((await router.xtr(['status', '--json'])).stdout);
  for (const dst of ['10.2.0.2', 'fd00:2::2']) {
    const out = await run(['ping', '-c', '4', '-i', '0.2', '-W', '2', dst], { netns: a, timeoutMs: 15_000 });
    t.regex(out, /4 packets transmitted, 4 received/, out);
  }
  const after = JSON.parse((await router.xtr(['status', '--json'])).stdout);
  const stat = (s: { interfaces: { name: string; stats: Record<string, number> }[] }, n: string) => s.interfaces.find((i) => i.name === n)!.stats;
  // 8 echo requests in on lan and out on wan, 8 replies the other way: they went through xtr.
  t.true(stat(after, 'lan').rxPackets - stat(before, 'lan').rxPackets >= 8);
  t.true(stat(after, 'wan').txPackets - stat(before, 'wan').txPackets >= 8);
  t.true(stat(after, 'wan').rxPackets - stat(before, 'wan').rxPackets >= 8);
  t.true(stat(after, 'lan').txPackets - stat(before, 'lan').txPackets >= 8);

  // The TTL is decremented by the kernel into the TUN, by xtr, and by the kernel
  // out of it: the gateway answers hops 1-3 (hop 2 is xtr's own time-exceeded,
  // which the kernel must let out of the TUN despite its local source address).
  const tr = await run(['traceroute', '-n', '-q', '1', '-w', '2', '-m', '6', '10.2.0.2'], { netns: a, timeoutMs: 40_000 });
  t.regex(tr, /^\s*2\s+10\.1\.0\.1\s/m, tr);
  t.regex(tr, /^\s*4\s+10\.2\.0\.2\s/m, tr);
  const tr6 = await run(['traceroute', '-6', '-n', '-q', '1', '-w', '2', '-m', '6', 'fd00:2::2'], { netns: a, timeoutMs: 40_000 });
  t.regex(tr6, /^\s*2\s+fd00:1::1\s/m, tr6);
  t.regex(tr6, /^\s*4\s+fd00:2::2\s/m, tr6);

  // TCP with a content check, b -> a.
  const data = randomBytes(1024 * 1024);
  const sink = background(['socat', '-u', '-T', '20', 'TCP4-LISTEN:7001,reuseaddr', 'STDOUT'], { netns: a });
  bgs.push(sink);
  await sleep(300);
  const sent = await exec(['socat', '-u', '-T', '20', 'STDIN', 'TCP:10.1.0.2:7001'], { netns: b, input: data, timeoutMs: 60_000 });
  t.is(sent.code, 0, sent.stderr);
  t.is(await sink.wait(30_000), 0);
  const h = (x: Buffer) => createHash('sha256').update(x).digest('hex');
  t.is(h(sink.stdout()), h(data));

  // The gateway's own address is still answered by its own stack (local table first).
  t.regex(await run(['ping', '-c', '1', '-W', '2', '10.1.0.1'], { netns: a }), /1 received/);

  t.is(await router.stop(), 0, router.log());
  router = null;
  // Fail closed: the diversions stay and lead to the blackhole; nothing leads into the gone TUNs.
  const left = (await run(['ip', 'rule', 'show'], { netns: g })) + (await run(['ip', '-6', 'rule', 'show'], { netns: g }));
  t.regex(left, /iif ga lookup \d+/, left);
  t.regex(left, /iif gb lookup \d+/, left);
  const routes = (await run(['ip', 'route', 'show', 'table', 'all'], { netns: g })) + (await run(['ip', '-6', 'route', 'show', 'table', 'all'], { netns: g }));
  t.notRegex(routes, /dev xtr-/, routes);
  t.regex(routes, /blackhole default table \d+/, routes);
  t.notRegex(await run(['ip', 'link', 'show'], { netns: g }), /xtr-lan|xtr-wan/);
});
