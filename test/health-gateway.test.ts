/**
 * /healthz and `xtr health` in gateway mode (issue 13, item 2): xtr in a
 * namespace that owns two veth ends, forwarding between two others. Healthy
 * while it forwards; when the kernel's ip_forward sysctl is turned off (what
 * a container started without `--sysctl net.ipv4.ip_forward=1` has) the
 * client's pings stop getting through and the health check says which
 * sysctl; turned back on, healthy again.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Namespaces, exec, run, startRouter, vethPair, waitFor, type RouterProcess } from './helpers/netns.js';

test.serial('gateway mode: /healthz fails while net.ipv4.ip_forward is 0, names it, and recovers', async (t) => {
  const nss = new Namespaces(`xx3-${randomBytes(1).toString('hex')}-`);
  let router: RouterProcess | null = null;
  t.teardown(async () => {
    if (router) await router.stop();
    await nss.cleanup();
  });
  const a = await nss.add('a');
  const g = await nss.add('g');
  const b = await nss.add('b');
  await vethPair({ ns: a, ifname: 'a0', addresses: ['10.1.0.2/24'] }, { ns: g, ifname: 'ga', addresses: ['10.1.0.1/24'] });
  await vethPair({ ns: g, ifname: 'gb', addresses: ['10.2.0.1/24'] }, { ns: b, ifname: 'b0', addresses: ['10.2.0.2/24'] });
  await run(['ip', 'route', 'add', 'default', 'via', '10.1.0.1'], { netns: a });
  await run(['ip', 'route', 'add', 'default', 'via', '10.2.0.1'], { netns: b });
  router = await startRouter({
    netns: g,
    socket: `/run/xtr/${nss.prefix}gw.sock`,
    config: {
      logLevel: 'info',
      interfaces: [
        { name: 'lan', mode: 'tun', mtu: 1500, addresses: ['10.1.0.1/24'], attach: 'ga' },
        { name: 'wan', mode: 'tun', mtu: 1500, addresses: ['10.2.0.1/24'], attach: 'gb' },
      ],
      routes: [],
      metrics: { listen: '127.0.0.1:9108' },
    },
  });
  const healthz = async () => {
    const r = await exec(['curl', '-s', '--max-time', '10', '-o', '-', '-w', '\n%{http_code}', 'http://127.0.0.1:9108/healthz'], { netns: g });
    const nl = r.stdout.lastIndexOf('\n');
    return { code: Number(r.stdout.slice(nl + 1)), body: JSON.parse(r.stdout.slice(0, nl)) as { healthy: boolean; checks: { name: string; ok: boolean; detail: string }[] } };
  };
  const ping = async () => (await exec(['ping', '-n', '-q', '-c', '2', '-i', '0.2', '-W', '1', '10.2.0.2'], { netns: a, timeoutMs: 15_000 })).code;

  t.is(await ping(), 0, 'forwards');
  const h0 = await healthz();
  t.is(h0.code, 200, JSON.stringify(h0.body));
  t.true(h0.body.checks.some((c) => c.name === 'sysctl:net.ipv4.ip_forward' && c.ok));
  t.true(h0.body.checks.some((c) => c.name === 'device:lan (attached ga)' && c.ok));

  await run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=0'], { netns: g });
  t.not(await ping(), 0, 'with ip_forward=0 the gateway no longer forwards');
  const h1 = await healthz();
  t.is(h1.code, 503);
  const bad = h1.body.checks.filter((c) => !c.ok);
  t.deepEqual(bad.map((c) => c.name), ['sysctl:net.ipv4.ip_forward']);
  t.regex(bad[0]!.detail, /net\.ipv4\.ip_forward = 0, needs 1/);
  const cli = await router.cli(['health']);
  t.is(cli.code, 1);
  t.regex(cli.stdout, /FAIL sysctl:net\.ipv4\.ip_forward/);

  await run(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'], { netns: g });
  t.true(await waitFor(async () => (await ping()) === 0, 10_000, 200), 'forwards again');
  t.is((await healthz()).code, 200);
  t.is((await router.cli(['health'])).code, 0);
});
