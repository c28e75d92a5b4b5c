/**
 * Gateway mode as a NAT gateway (docs/gateway.md "NAT"): xtr in a
 * namespace owning two real (veth) interfaces, MASQUERADE out of `wan`, and
 * a server namespace with no route back to the LAN, so only the translation
 * can make replies come back.
 *
 * The replies are addressed to the gateway's own address. xtr binds such a
 * translation to a port (ICMP echo id) from `gateway.natPorts`, and policy
 * rules placed before the kernel's `local` rule (moved from pref 0 to 100)
 * divert TCP/UDP to those ports and IPv4 ICMP for the gateway's addresses
 * into xtr; what is not a NATed flow's xtr hands back into the kernel
 * through the TUN it came from, so the gateway's own traffic keeps working.
 * A DNAT port forward diverts the ports listed in `gateway.forwardPorts`.
 *
 *   a (10.1.0.2) --veth-- [ga  g  gb] --veth-- b (10.2.0.2, no route to 10.1.0.0/24)
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Namespaces, REPO_ROOT, run, sleep, startRouter, vethPair, background, exec, type RouterProcess } from './helpers/netns.js';

const PEER = join(REPO_ROOT, 'test', 'fixtures', 'xw5a', 'natpeer.py');

async function topology(nss: Namespaces) {
  const a = await nss.add('a');
  const g = await nss.add('g');
  const b = await nss.add('b');
  await vethPair({ ns: a, ifname: 'a0', addresses: ['10.1.0.2/24'] }, { ns: g, ifname: 'ga', addresses: ['10.1.0.1/24'] });
  await vethPair({ ns: g, ifname: 'gb', addresses: ['10.2.0.1/24'] }, { ns: b, ifname: 'b0', addresses: ['10.2.0.2/24'] });
  await run(['ip', 'route', 'add', 'default', 'via', '10.1.0.1'], { netns: a });
  return { a, g, b };
}

function gatewayConfig(gateway?: object) {
  return {
    logLevel: 'info',
    interfaces: [
      { name: 'lan', mode: 'tun', mtu: 1500, addresses: ['10.1.0.1/24'], attach: 'ga' },
      { name: 'wan', mode: 'tun', mtu: 1500, addresses: ['10.2.0.1/24'], attach: 'gb' },
    ],
    routes: [],
    ...(gateway ? { gateway } : {}),
  };
}

test.serial('gateway mode: MASQUERADE out of wan - the server sees the gateway address, the client gets the answer (UDP, TCP with content, ping); the gateway\'s own traffic still works; rules undone on exit', async (t) => {
  const nss = new Namespaces('xx2-gn');
  let router: RouterProcess | null = null;
  const bgs: ReturnType<typeof background>[] = [];
  t.teardown(async () => {
    for (const x of bgs) await x.kill('SIGKILL');
    if (router) await router.stop();
    await nss.cleanup();
  });
  const { a, g, b } = await topology(nss);
  // An ephemeral range overlapping the NAT range: xtr reserves its range (ip_local_reserved_ports) and restores it at stop.
  await run(['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=32768 64000'], { netns: g });
  const rulesBefore = await run(['ip', 'rule', 'show'], { netns: g });
  router = await startRouter({ netns: g, socket: `/run/xtr/${nss.prefix}gw.sock`, config: gatewayConfig() });
  const rules = await run(['ip', 'rule', 'show'], { netns: g });
  t.log(rules);
  t.notRegex(rules, /^0:\s+from all lookup local/m, 'the local rule moved after the diversion rules');
  t.regex(rules, /^100:\s+from all lookup local/m);
  t.regex(rules, /^90:\s+from all to 10\.2\.0\.1 iif gb ipproto (tcp|6) dport 61000-65534 lookup/m);

  t.is((await run(['cat', '/proc/sys/net/ipv4/ip_local_reserved_ports'], { netns: g })).trim(), '61000-65534');
  const r = await router.xtr(['iptables', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-j', 'MASQUERADE']);
  t.is(r.status, 0, r.stderr);
  const srv = background(['/usr/bin/python3', PEER, 'serve', '0.0.0.0', '7001', '7002', '30'], { netns: b });
  bgs.push(srv);
  await sleep(800);

  // UDP: the server sees the gateway's address and a port of the NAT range; the answer reaches the client.
  const seen = (await exec(['/usr/bin/python3', PEER, 'udp', '10.1.0.2', '40000', '10.2.0.2', '7001'], { netns: a })).stdout.trim();
  t.log((await router.xtr(['conntrack', '-L'])).stdout);
  const m = /^10\.2\.0\.1 (\d+)$/.exec(seen);
  t.truthy(m, `server saw: ${seen}`);
  if (m) t.true(Number(m[1]) >= 61000 && Number(m[1]) <= 65534, `NAT port ${m[1]} in 61000-65534`);

  // TCP transfer with a content check, through the NAT.
  const data = randomBytes(256 * 1024);
  const sha = createHash('sha256').update(data).digest('hex');
  const tcp = await exec(['socat', '-t', '5', '-', 'TCP:10.2.0.2:7002'], { netns: a, input: data, timeoutMs: 20_000 });
  const tm = /^10\.2\.0\.1 (\d+) ([0-9a-f]{64})$/.exec(tcp.stdout.trim());
  t.truthy(tm, `tcp answer: ${tcp.stdout} ${tcp.stderr}`);
  if (tm) {
    t.true(Number(tm[1]) >= 61000 && Number(tm[1]) <= 65534, `TCP NAT port ${tm[1]}`);
    t.is(tm[2], sha);
  }

  // Ping through the NAT (echo id translated into the range, replies diverted by the ICMP rule).
  const ping = await exec(['ping', '-c', '3', '-i', '0.2', '-W', '2', '10.2.0.2'], { netns: a, timeoutMs: 15_000 });
  t.regex(ping.stdout, /3 received/, ping.stdout + ping.stderr);

  // An ICMP error about a NATed flow (port unreachable from the server's kernel, sent to the
  // gateway address) is diverted, translated and reaches the client's socket.
  const refused = await exec(['/usr/bin/python3', '-c', [
    'import socket',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    "s.bind(('10.1.0.2', 40001)); s.connect(('10.2.0.2', 7999)); s.settimeout(3); s.send(b'x')",
    'try:\n    s.recv(100); print("answer")\nexcept ConnectionRefusedError:\n    print("refused")\nexcept socket.timeout:\n    print("timeout")',
  ].join('\n')], { netns: a, timeoutMs: 10_000 });
  t.is(refused.stdout.trim(), 'refused', refused.stderr);

  // The gateway's own traffic: ping (ICMP is diverted and handed back), UDP and TCP (ports outside the range).
  const gping = await exec(['ping', '-c', '3', '-i', '0.2', '-W', '2', '10.2.0.2'], { netns: g, timeoutMs: 15_000 });
  t.regex(gping.stdout, /3 received/, gping.stdout + gping.stderr);
  const gudp = (await exec(['/usr/bin/python3', PEER, 'udp', '10.2.0.1', '0', '10.2.0.2', '7001'], { netns: g })).stdout.trim();
  t.regex(gudp, /^10\.2\.0\.1 \d+$/);
  const small = randomBytes(4096);
  const gtcp = await exec(['socat', '-t', '5', '-', 'TCP:10.2.0.2:7002'], { netns: g, input: small, timeoutMs: 20_000 });
  t.regex(gtcp.stdout.trim(), new RegExp(`^10\\.2\\.0\\.1 \\d+ ${createHash('sha256').update(small).digest('hex')}$`));
  // The server pings the gateway: echo request diverted into xtr, handed back, answered by the kernel.
  const bping = await exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', '10.2.0.1'], { netns: b, timeoutMs: 15_000 });
  t.regex(bping.stdout, /2 received/, bping.stdout + bping.stderr);

  // Stopped: the local rule is back at pref 0 and the NAT rules (90, 100) are gone. The interface
  // rules (7800-7899) are the gateway placement's: whether they stay at stop (fail closed) is not this test's.
  await router.stop();
  router = null;
  const notIface = (txt: string) => txt.split('\n').filter((l) => !/^78\d\d:/.test(l)).join('\n');
  t.is(notIface(await run(['ip', 'rule', 'show'], { netns: g })), notIface(rulesBefore));
  t.is((await run(['cat', '/proc/sys/net/ipv4/ip_local_reserved_ports'], { netns: g })).trim(), '');
});

test.serial('gateway mode: DNAT port forward on the gateway address (gateway.forwardPorts) reaches a LAN host and answers', async (t) => {
  const nss = new Namespaces('xx2-gd');
  let router: RouterProcess | null = null;
  const bgs: ReturnType<typeof background>[] = [];
  t.teardown(async () => {
    for (const x of bgs) await x.kill('SIGKILL');
    if (router) await router.stop();
    await nss.cleanup();
  });
  const { a, g, b } = await topology(nss);
  router = await startRouter({ netns: g, socket: `/run/xtr/${nss.prefix}gw.sock`, config: gatewayConfig({ forwardPorts: ['tcp/2222', 'udp/2223'] }) });
  for (const rule of [
    ['-A', 'PREROUTING', '-i', 'wan', '-p', 'tcp', '--dport', '2222', '-j', 'DNAT', '--to-destination', '10.1.0.2:7002'],
    ['-A', 'PREROUTING', '-i', 'wan', '-p', 'udp', '--dport', '2223', '-j', 'DNAT', '--to-destination', '10.1.0.2:7001'],
  ]) {
    const r = await router.xtr(['iptables', '-t', 'nat', ...rule]);
    t.is(r.status, 0, r.stderr);
  }
  const srv = background(['/usr/bin/python3', PEER, 'serve', '0.0.0.0', '7001', '7002', '30'], { netns: a });
  bgs.push(srv);
  await sleep(800);
  const data = randomBytes(64 * 1024);
  const tcp = await exec(['socat', '-t', '5', '-', 'TCP:10.2.0.1:2222'], { netns: b, input: data, timeoutMs: 20_000 });
  t.is(tcp.stdout.trim().replace(/ \d+ /, ' P '), `10.2.0.2 P ${createHash('sha256').update(data).digest('hex')}`, tcp.stderr);
  const udp = (await exec(['/usr/bin/python3', PEER, 'udp', '10.2.0.2', '45000', '10.2.0.1', '2223'], { netns: b })).stdout.trim();
  t.is(udp, '10.2.0.2 45000');
  t.log((await router.xtr(['conntrack', '-L'])).stdout);
  // A port not forwarded still belongs to the gateway's kernel: nothing listens, so a refusal from it.
  const closed = await exec(['socat', '-T', '2', '-', 'TCP:10.2.0.1:2224,connect-timeout=2'], { netns: b, input: 'x', timeoutMs: 10_000 });
  t.regex(closed.stderr, /Connection refused/);
});

test.serial('gateway mode: NAT66 MASQUERADE out of wan (TCP and UDP; the IPv6 local rule moved and put back)', async (t) => {
  const nss = new Namespaces('xx2-g6');
  let router: RouterProcess | null = null;
  const bgs: ReturnType<typeof background>[] = [];
  t.teardown(async () => {
    for (const x of bgs) await x.kill('SIGKILL');
    if (router) await router.stop();
    await nss.cleanup();
  });
  const a = await nss.add('a');
  const g = await nss.add('g');
  const b = await nss.add('b');
  await vethPair({ ns: a, ifname: 'a0', addresses: ['fd00:1::2/64'] }, { ns: g, ifname: 'ga', addresses: ['fd00:1::1/64'] });
  await vethPair({ ns: g, ifname: 'gb', addresses: ['fd00:2::1/64'] }, { ns: b, ifname: 'b0', addresses: ['fd00:2::2/64'] });
  await run(['ip', '-6', 'route', 'add', 'default', 'via', 'fd00:1::1'], { netns: a });
  const before = await run(['ip', '-6', 'rule', 'show'], { netns: g });
  router = await startRouter({
    netns: g,
    socket: `/run/xtr/${nss.prefix}gw.sock`,
    config: {
      logLevel: 'info',
      interfaces: [
        { name: 'lan', mode: 'tun', mtu: 1500, addresses: ['fd00:1::1/64'], attach: 'ga' },
        { name: 'wan', mode: 'tun', mtu: 1500, addresses: ['fd00:2::1/64'], attach: 'gb' },
      ],
      routes: [],
    },
  });
  const rules = await run(['ip', '-6', 'rule', 'show'], { netns: g });
  t.regex(rules, /^100:\s+from all lookup local/m, rules);
  t.notRegex(rules, /^0:\s+from all lookup local/m);
  t.notRegex(rules, /ipv6-icmp|ipproto 58/, 'ICMPv6 (neighbour discovery) is not diverted');
  const r = await router.xtr(['ip6tables', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-j', 'MASQUERADE']);
  t.is(r.status, 0, r.stderr);
  bgs.push(background(['/usr/bin/python3', PEER, 'serve', '::', '7001', '7002', '30'], { netns: b }));
  await sleep(800);
  const seen = (await exec(['/usr/bin/python3', PEER, 'udp', 'fd00:1::2', '40000', 'fd00:2::2', '7001'], { netns: a })).stdout.trim();
  const m = /^fd00:2::1 (\d+)$/.exec(seen);
  t.truthy(m, `server saw: ${seen}`);
  if (m) t.true(Number(m[1]) >= 61000 && Number(m[1]) <= 65534, `NAT port ${m[1]}`);
  const data = randomBytes(64 * 1024);
  const tcp = await exec(['socat', '-t', '5', '-', 'TCP6:[fd00:2::2]:7002'], { netns: a, input: data, timeoutMs: 20_000 });
  t.regex(tcp.stdout.trim(), new RegExp(`^fd00:2::1 6[0-9]{4} ${createHash('sha256').update(data).digest('hex')}$`), tcp.stderr);
  // The gateway's own IPv6 traffic: ping (ICMPv6 not diverted) and TCP.
  const gping = await exec(['ping', '-6', '-c', '2', '-i', '0.2', '-W', '2', 'fd00:2::2'], { netns: g, timeoutMs: 15_000 });
  t.regex(gping.stdout, /2 received/, gping.stdout + gping.stderr);
  await router.stop();
  router = null;
  const notIface = (txt: string) => txt.split('\n').filter((l) => !/^78\d\d:/.test(l)).join('\n');
  t.is(notIface(await run(['ip', '-6', 'rule', 'show'], { netns: g })), notIface(before));
});
