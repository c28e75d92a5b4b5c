/**
 * Host-interface planning (what xtr0 carries) and the prefix arithmetic it
 * uses, table-driven; the kernel side is covered by integration-lab.
 */
import test from 'ava';
import { networkOf, planHostInterface, prefixContains } from '../router/hostif.js';
import { Placement } from '../router/placement.js';
import { defaultConfig } from '../router/default-config.js';

test('networkOf masks host bits (IPv4, IPv6, edge lengths)', (t) => {
  const cases: [string, string][] = [
    ['198.51.100.7/24', '198.51.100.0/24'],
    ['203.0.113.1/32', '203.0.113.1/32'],
    ['10.1.2.3/0', '0.0.0.0/0'],
    ['10.255.255.255/9', '10.128.0.0/9'],
    ['2001:db8:c::1/64', '2001:db8:c::/64'],
    ['2001:db8:c:1:2:3:4:5/48', '2001:db8:c::/48'],
    ['fe80::1:2/10', 'fe80::/10'],
    ['::ffff:192.0.2.1/120', '::ffff:c000:200/120'],
    ['2001:db8::1/128', '2001:db8::1/128'],
    ['1:0:0:2:0:0:0:3/128', '1:0:0:2::3/128'],
  ];
  for (const [input, want] of cases) t.is(networkOf(input), want, input);
  for (const bad of ['198.51.100.300/24', '10.0.0.1/33', '2001:db8::1::2/64', 'x/1', '2001:db8:c::1/129']) {
    t.throws(() => networkOf(bad), undefined, bad);
  }
});

test('prefixContains', (t) => {
  t.true(prefixContains('203.0.113.1/24', '203.0.113.254'));
  t.false(prefixContains('203.0.113.1/24', '203.0.114.1'));
  t.true(prefixContains('2001:db8:5::1/64', '2001:db8:5::ffff'));
  t.false(prefixContains('2001:db8:5::1/64', '203.0.113.1'));
});

test('the lab host interface carries every router address and routes every prefix with the right source', (t) => {
  const cfg = defaultConfig({ prefix: 'p-' });
  const plan = planHostInterface({ name: 'xtr0', interfaces: cfg.interfaces, routes: cfg.routes });
  t.deepEqual(plan.addresses.sort(), [
    '192.0.2.1/32',
    '198.51.100.1/32',
    '2001:db8:5::1/128',
    '2001:db8:6::1/128',
    '2001:db8:c::1/128',
    '203.0.113.1/32',
  ]);
  t.deepEqual(
    plan.routes.map((r) => `${r.to} src ${r.src}`).sort(),
    [
      '192.0.2.0/24 src 192.0.2.1',
      '198.51.100.0/24 src 198.51.100.1',
      '2001:db8:5::/64 src 2001:db8:5::1',
      '2001:db8:6::/64 src 2001:db8:6::1',
      '2001:db8:c::/64 src 2001:db8:c::1',
      '203.0.113.0/24 src 203.0.113.1',
    ],
  );
  t.is(plan.mtu, 1500);
});

test('routed prefixes go through the host interface with the egress link address as source', (t) => {
  const plan = planHostInterface({
    name: 'xtr0',
    mtu: 9000,
    interfaces: [
      { name: 'lan', mode: 'tun', mtu: 1500, addresses: ['10.0.0.1/24', 'fd00::1/64'] },
      { name: 'wan', mode: 'tun', mtu: 1400, addresses: ['192.0.2.10/29', '2001:db8::a/64'] },
    ],
    routes: [
      { to: '0.0.0.0/0', via: '192.0.2.9', dev: null },
      { to: '::/0', via: '2001:db8::1', dev: 'wan' },
      { to: '172.16.0.0/12', via: '10.0.0.254', dev: 'lan' },
      { to: '10.0.0.0/24', via: null, dev: 'lan' },
    ],
  });
  t.is(plan.mtu, 9000);
  const byTo = Object.fromEntries(plan.routes.map((r) => [r.to, r.src]));
  t.is(byTo['0.0.0.0/0'], '192.0.2.10');
  t.is(byTo['::/0'], '2001:db8::a');
  t.is(byTo['172.16.0.0/12'], '10.0.0.1');
  t.is(plan.routes.filter((r) => r.to === '10.0.0.0/24').length, 1, 'a route equal to a connected prefix is not duplicated');
});

test('device names: link mode opens the config device and moves it, gateway mode prefixes xtr-', (t) => {
  t.is(Placement.deviceName({ name: 'eth0', mode: 'tun', device: 'eth0', peer: { netns: 'n', ifname: 'c0' } }), 'eth0');
  t.is(Placement.deviceName({ name: 'eth0', mode: 'tun', device: 'eth0', attach: 'eth0' }), 'xtr-eth0');
  t.is(Placement.deviceName({ name: 'lan', mode: 'tun', device: 'tunlan', attach: 'eth0' }), 'tunlan');
});

test('preflight refuses what gateway mode cannot do, before any side effect', async (t) => {
  await t.throwsAsync(() => Placement.preflight([{ name: 'x', mode: 'tap', attach: 'lo' }]), { message: /supports mode tun only/ });
  await t.throwsAsync(() => Placement.preflight([{ name: 'x', mode: 'tun', attach: 'nosuchif0' }]), { message: /no interface named nosuchif0/ });
  await t.throwsAsync(() => Placement.preflight([{ name: 'averyverylongname', mode: 'tun', attach: 'lo' }]), { message: /longer than 15/ });
});
