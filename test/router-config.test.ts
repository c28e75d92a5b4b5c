import test from 'ava';
import { fileURLToPath } from 'node:url';
import { ConfigError, deriveMac, loadConfig, parseConfigText, validateConfig } from '../router/config.js';
import { defaultConfig, defaultConfigDocument } from '../router/default-config.js';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/config/${name}`, import.meta.url));

test('YAML fixture: every key read and normalised', (t) => {
  const c = loadConfig(fixture('lab.yaml'));
  t.is(c.logLevel, 'info');
  t.is(c.control.socket, '/run/xtr/xtr.sock');
  t.is(c.stateDir, '/var/lib/xtr');
  t.deepEqual(c.hostInterface, { name: 'xtr0', mtu: 1500 });
  t.is(c.interfaces.length, 3);
  const [e0, e1, e2] = c.interfaces;
  t.deepEqual(e0, {
    name: 'eth0',
    mode: 'tun',
    mtu: 1500,
    mac: null,
    addresses: ['198.51.100.1/24', '2001:db8:c::1/64'],
    peer: {
      netns: 'xtr-c',
      ifname: 'c0',
      addresses: ['198.51.100.2/24', '198.51.100.3/24', '2001:db8:c::2/64'],
      routes: ['default'],
    },
    attach: null,
    device: 'eth0',
  });
  t.is(e1.mode, 'tap');
  t.is(e1.mac, '02:00:00:00:00:01');
  t.deepEqual(e1.peer!.routes, ['default', { to: '10.9.0.0/16', via: '203.0.113.1' }]);
  t.is(e2.attach, 'veth0');
  t.is(e2.device, 'xtr-eth2');
  t.is(e2.peer, null);
  t.deepEqual(c.routes, [
    { to: '0.0.0.0/0', via: '203.0.113.2', dev: 'eth1' },
    { to: '::/0', via: '2001:db8:5::2', dev: null },
    { to: '10.1.0.0/16', via: null, dev: 'eth2' },
  ]);
  t.deepEqual(c.netfilter, { policy: 'accept' });
  t.deepEqual(c.extensions, { geoip: { dir: '/usr/share/xt_geoip' } });
});

test('JSON fixture: defaults filled in, "default" route normalised, tap MAC derived', (t) => {
  const c = loadConfig(fixture('lab.json'));
  t.is(c.logLevel, 'info');
  t.is(c.stateDir, '/var/lib/xtr');
  t.is(c.interfaces[0].mtu, 1500);
  t.is(c.interfaces[0].mode, 'tun');
  t.is(validateConfig({ interfaces: [{ name: 'a', mtu: 9000 }, { name: 'b' }] }).hostInterface.mtu, 9000);
  t.is(validateConfig({ hostInterface: { mtu: 1400 } }).hostInterface.mtu, 1400);
  t.is(c.interfaces[1].mac, deriveMac('eth1'));
  t.regex(c.interfaces[1].mac!, /^02:/);
  t.not(deriveMac('eth1'), deriveMac('eth2'));
  t.deepEqual(c.routes, [{ to: '0.0.0.0/0', via: '203.0.113.2', dev: null }]);
});

test('bad prefix fixture: error names the path and the value', (t) => {
  const e = t.throws(() => loadConfig(fixture('bad-prefix.yaml')), { instanceOf: ConfigError });
  t.is(e!.message, 'interfaces[1].addresses[0]: "198.51.100.300/24" is not an IPv4/IPv6 prefix');
  t.is((e as ConfigError).path, 'interfaces[1].addresses[0]');
});

test('YAML syntax error names the file', (t) => {
  const e = t.throws(() => loadConfig(fixture('bad-syntax.yaml')), { instanceOf: ConfigError });
  t.true(e!.message.startsWith(`${fixture('bad-syntax.yaml')}: not valid YAML`));
});

test('missing file is a ConfigError', (t) => {
  t.throws(() => loadConfig('/nonexistent/xtr.yaml'), { instanceOf: ConfigError, message: /cannot read config file \/nonexistent\/xtr.yaml/ });
});

test('JSON syntax error', (t) => {
  t.throws(() => parseConfigText('{"interfaces": [', 'x.json'), { instanceOf: ConfigError, message: /^x.json: not valid JSON/ });
});

const tap = { name: 'eth0', mode: 'tap', addresses: ['10.0.0.1/24'] };
const tun = (name: string, addresses: string[] = []) => ({ name, addresses });

const bad: [string, unknown, string][] = [
  ['root not an object', [1], ': expected an object, got a list'],
  ['unknown top-level key', { interface: [] }, 'interface: unknown key (allowed: logLevel, control, stateDir, hostInterface, interfaces, routes, netfilter, extensions, gateway, failOpen, metrics, log, events, offloads, workers, cluster)'],
  ['workers 0', { workers: 0 }, 'workers: 0 must be an integer from 1 to 64 (queue workers, one thread per device queue)'],
  ['workers not an integer', { workers: 1.5 }, 'workers: 1.5 must be an integer from 1 to 64 (queue workers, one thread per device queue)'],
  ['workers past the bound', { workers: 65 }, 'workers: 65 must be an integer from 1 to 64 (queue workers, one thread per device queue)'],
  ['gateway natPorts 65535', { gateway: { natPorts: '61000-65535' } }, 'gateway.natPorts: "61000-65535" is not a port or port range (1-65534, low-high)'],
  ['gateway forwardPorts proto', { gateway: { forwardPorts: ['icmp/1'] } }, 'gateway.forwardPorts[0]: "icmp/1" is not PROTO/PORT[-PORT] (tcp, udp or sctp)'],
  ['gateway unknown key', { gateway: { ports: 1 } }, 'gateway.ports: unknown key (allowed: natPorts, forwardPorts)'],
  ['log level', { logLevel: 'loud' }, 'logLevel: "loud" is not a log level (one of fatal, error, warn, info, debug, trace, silent)'],
  ['socket relative', { control: { socket: 'xtr.sock' } }, 'control.socket: "xtr.sock" must be an absolute path'],
  ['host interface name', { hostInterface: { name: 'a very long interface name' } }, 'hostInterface.name: "a very long interface name" is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)'],
  ['interfaces not a list', { interfaces: { name: 'eth0' } }, 'interfaces: expected a list, got an object'],
  ['interface without name', { interfaces: [{ mode: 'tun' }] }, 'interfaces[0].name: expected a non-empty string, got undefined'],
  ['duplicate interface', { interfaces: [tun('eth0'), tun('eth0')] }, 'interfaces[1].name: interface "eth0" is defined twice'],
  ['bad mode', { interfaces: [{ name: 'eth0', mode: 'tape' }] }, 'interfaces[0].mode: "tape" is not an interface mode (tun or tap)'],
  ['mtu too small', { interfaces: [{ name: 'eth0', mtu: 100 }] }, 'interfaces[0].mtu: 100 is not a valid MTU (an integer from 576 to 65535)'],
  ['mtu not integer', { interfaces: [{ name: 'eth0', mtu: '1500' }] }, 'interfaces[0].mtu: "1500" is not a valid MTU (an integer from 576 to 65535)'],
  ['mac on tun', { interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:01' }] }, 'interfaces[0].mac: only a tap interface has a MAC address'],
  ['bad mac', { interfaces: [{ ...tap, mac: '02:00:00:00:01' }] }, 'interfaces[0].mac: "02:00:00:00:01" is not a MAC address (six hex bytes separated by \':\')'],
  ['multicast mac', { interfaces: [{ ...tap, mac: '01:00:5e:00:00:01' }] }, 'interfaces[0].mac: "01:00:5e:00:00:01" is a multicast MAC address'],
  ['address not a string', { interfaces: [{ name: 'eth0', addresses: [42] }] }, 'interfaces[0].addresses[0]: 42 is not an IPv4/IPv6 prefix'],
  ['v6 prefix too long', { interfaces: [tun('eth0', ['2001:db8::1/129'])] }, 'interfaces[0].addresses[0]: "2001:db8::1/129" is not an IPv4/IPv6 prefix'],
  ['v6 garbage', { interfaces: [tun('eth0', ['2001:db8:::1/64'])] }, 'interfaces[0].addresses[0]: "2001:db8:::1/64" is not an IPv4/IPv6 prefix'],
  ['duplicate address', { interfaces: [tun('eth0', ['10.0.0.1/24']), tun('eth1', ['10.0.0.1/16'])] }, 'interfaces[1].addresses[0]: address "10.0.0.1/16" is already used at interfaces[0].addresses[0]'],
  ['peer and attach', { interfaces: [{ name: 'eth0', attach: 'veth0', peer: { netns: 'n', ifname: 'c0' } }] }, 'interfaces[0]: has both "peer" (link mode) and "attach" (gateway mode); choose one'],
  ['attach on tap', { interfaces: [{ ...tap, attach: 'veth0' }] }, 'interfaces[0].attach: gateway mode (attach) needs mode tun'],
  ['peer without netns', { interfaces: [{ name: 'eth0', peer: { ifname: 'c0' } }] }, 'interfaces[0].peer.netns: expected a non-empty string, got undefined'],
  ['peer bad address', { interfaces: [{ name: 'eth0', peer: { netns: 'n', ifname: 'c0', addresses: ['10.0.0.2/33'] } }] }, 'interfaces[0].peer.addresses[0]: "10.0.0.2/33" is not an IPv4/IPv6 prefix'],
  ['peer same address as router', { interfaces: [{ name: 'eth0', addresses: ['10.0.0.1/24'], peer: { netns: 'n', ifname: 'c0', addresses: ['10.0.0.1/24'] } }] }, 'interfaces[0].peer.addresses[0]: address "10.0.0.1/24" is already used at interfaces[0].addresses[0]'],
  ['peer default without router address', { interfaces: [{ name: 'eth0', peer: { netns: 'n', ifname: 'c0', routes: ['default'] } }] }, 'interfaces[0].peer.routes[0]: "default" needs at least one router address on this interface'],
  ['peer route bad via', { interfaces: [{ name: 'eth0', peer: { netns: 'n', ifname: 'c0', routes: [{ to: '10.0.0.0/8', via: 'x' }] } }] }, 'interfaces[0].peer.routes[0].via: "x" is not an IPv4/IPv6 address'],
  ['peer unknown key', { interfaces: [{ name: 'eth0', peer: { netns: 'n', ifname: 'c0', gateway: 'x' } }] }, 'interfaces[0].peer.gateway: unknown key (allowed: netns, ifname, addresses, routes)'],
  ['route without via or dev', { interfaces: [tun('eth0', ['10.0.0.1/24'])], routes: [{ to: '10.1.0.0/16' }] }, 'routes[0]: needs "via" (a gateway), "dev" (an interface) or both'],
  ['route bad to', { interfaces: [tun('eth0', ['10.0.0.1/24'])], routes: [{ to: '10.1.0.0/40', via: '10.0.0.2' }] }, 'routes[0].to: "10.1.0.0/40" is not an IPv4/IPv6 prefix'],
  ['route host bits', { interfaces: [tun('eth0', ['10.0.0.1/24'])], routes: [{ to: '10.1.0.1/16', via: '10.0.0.2' }] }, 'routes[0].to: "10.1.0.1/16" has host bits set (did you mean 10.1.0.0/16?)'],
  ['route unknown dev', { interfaces: [tun('eth0', ['10.0.0.1/24'])], routes: [{ to: '10.1.0.0/16', dev: 'eth9' }] }, 'routes[0].dev: "eth9" is not an interface defined in interfaces'],
  ['route family mismatch', { interfaces: [tun('eth0', ['10.0.0.1/24', '2001:db8::1/64'])], routes: [{ to: '::/0', via: '10.0.0.2' }] }, 'routes[0].via: gateway "10.0.0.2" is not of the same family as "::/0"'],
  ['route via with prefix', { interfaces: [tun('eth0', ['10.0.0.1/24'])], routes: [{ to: '0.0.0.0/0', via: '10.0.0.2/24' }] }, 'routes[0].via: "10.0.0.2/24" is not an IPv4/IPv6 address'],
  ['route via off-link', { interfaces: [tun('eth0', ['10.0.0.1/24'])], routes: [{ to: '0.0.0.0/0', via: '10.9.0.2' }] }, 'routes[0].via: gateway "10.9.0.2" is not on a connected network (no interface address covers it)'],
  ['route via off-link of dev', { interfaces: [tun('eth0', ['10.0.0.1/24']), tun('eth1', ['10.1.0.1/24'])], routes: [{ to: '0.0.0.0/0', via: '10.1.0.2', dev: 'eth0' }] }, 'routes[0].via: gateway "10.1.0.2" is not on a connected network of eth0 (no interface address covers it)'],
  ['link-local gateway without dev', { interfaces: [tun('eth0', ['2001:db8::1/64'])], routes: [{ to: '::/0', via: 'fe80::1' }] }, 'routes[0].dev: a link-local gateway ("fe80::1") needs "dev"'],
  ['netfilter not an object', { netfilter: 'yes' }, 'netfilter: expected an object, got "yes"'],
  ['interface named like the host interface', { interfaces: [tun('xtr0')] }, 'interfaces[0].device: device name "xtr0" is already used'],
  ['device names clash', { interfaces: [tun('eth0'), { name: 'eth1', device: 'eth0' }] }, 'interfaces[1].device: device name "eth0" is already used'],
  ['same real interface attached twice', { interfaces: [{ name: 'eth0', attach: 'veth0' }, { name: 'eth1', attach: 'veth0' }] }, 'interfaces[1].attach: "veth0" is already attached by interfaces[0]'],
  [
    'same peer name in one namespace',
    { interfaces: [{ name: 'eth0', peer: { netns: 'n', ifname: 'c0' } }, { name: 'eth1', peer: { netns: 'n', ifname: 'c0' } }] },
    'interfaces[1].peer.ifname: "c0" in namespace "n" is already used by interfaces[0]',
  ],
];

for (const [name, doc, message] of bad) {
  test(`invalid config: ${name}`, (t) => {
    const e = t.throws(() => validateConfig(doc), { instanceOf: ConfigError });
    t.is(e!.message, message.startsWith(': ') ? message.slice(2) : message);
  });
}

test('an IPv6 link-local gateway is accepted with its interface', (t) => {
  const c = validateConfig({ interfaces: [{ name: 'eth0', mode: 'tap', addresses: ['2001:db8::1/64'] }], routes: [{ to: '::/0', via: 'FE80::1', dev: 'eth0' }] });
  t.deepEqual(c.routes, [{ to: '::/0', via: 'fe80::1', dev: 'eth0' }]);
});

test('empty document is a valid config with defaults', (t) => {
  const c = validateConfig(null);
  t.is(c.interfaces.length, 0);
  t.is(c.control.socket, '/run/xtr/xtr.sock');
  t.is(c.hostInterface.name, 'xtr0');
});

test('default config: lab addressing with namespace prefix', (t) => {
  const c = defaultConfig('t1-');
  t.deepEqual(
    c.interfaces.map((i) => [i.name, i.peer!.netns, i.peer!.ifname, i.addresses, i.peer!.addresses]),
    [
      ['eth0', 't1-c', 'c0', ['198.51.100.1/24', '2001:db8:c::1/64'], ['198.51.100.2/24', '198.51.100.3/24', '2001:db8:c::2/64']],
      ['eth1', 't1-s', 's0', ['203.0.113.1/24', '2001:db8:5::1/64'], ['203.0.113.2/24', '2001:db8:5::2/64']],
      ['eth2', 't1-m', 'm0', ['192.0.2.1/24', '2001:db8:6::1/64'], ['192.0.2.2/24', '2001:db8:6::2/64']],
    ],
  );
  t.deepEqual(defaultConfig().interfaces[0].peer!.netns, 'xtr-c');
  t.true(defaultConfig({ mode: 'tap' }).interfaces.every((i) => i.mode === 'tap' && i.mac !== null));
  // the document round-trips through validation unchanged in meaning
  t.deepEqual(validateConfig(JSON.parse(JSON.stringify(defaultConfigDocument('t1-')))), c);
});
