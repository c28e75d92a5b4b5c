/**
 * The NAT targets in the rule engine with real conntrack (testEngine +
 * Conntrack + NatCore): MASQUERADE picks the out-interface's address and
 * forgets its flows when that interface's addresses change or it goes down;
 * the nat chains see a flow's first packet only (rule counters count it
 * once, as the kernel's); DNAT/REDIRECT/NETMAP addresses; a target without
 * conntrack NAT drops rather than letting an untranslated packet out.
 */
import test from 'ava';
import { Hook, Verdict, type PacketContext } from '../xt/packet.js';
import type { RouterServices } from '../xt/services.js';
import { Conntrack } from '../router/conntrack.js';
import { NatCore } from '../router/conntrack/nat-core.js';
import { testEngine, packet, ifaceFacts } from '../router/netfilter/testkit.js';
import { ipv4ToString } from '../dataplane/addr.js';

async function lab() {
  const ct = new Conntrack();
  const e = await testEngine([], ct);
  const core = new NatCore(ct, () => e.services.random());
  ct.setNatHook(core);
  (e.services as RouterServices).nat = core;
  e.services.ifaces.set('eth0', ifaceFacts('eth0', ['10.0.0.254/24']));
  e.services.ifaces.set('eth1', ifaceFacts('eth1', ['203.0.113.9/24', '203.0.113.1/24']));
  return { ct, e };
}

/** PREROUTING, FORWARD, POSTROUTING of one forwarded packet; the verdict. */
function forward(nf: { hook(h: Hook, p: PacketContext): number }, p: PacketContext): number {
  for (const h of [Hook.PREROUTING, Hook.FORWARD, Hook.POSTROUTING]) {
    const v = nf.hook(h, p);
    if (v !== Verdict.ACCEPT) return v;
  }
  return Verdict.ACCEPT;
}

test('MASQUERADE: the out-interface address on the next hop subnet; nat chains counted once per flow; flows forgotten when the address changes and when the interface goes down', async (t) => {
  const { ct, e } = await lab();
  t.is((await e.run('iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE')).status, 0);
  e.services.addRoute('203.0.113.0/24', { kind: 0, oif: e.services.ifaces.get('eth1')!, gateway: Uint32Array.of(0xcb007102, 0, 0, 0), mtu: 1500, hopLimit: 64 });
  for (let i = 0; i < 3; i++) {
    const p = packet({ src: '10.0.0.1', dst: '203.0.113.2', proto: 'udp', sport: 5000, dport: 53 }, 'eth0', 'eth1');
    t.is(forward(e.nf, p), Verdict.ACCEPT);
    t.is(ipv4ToString(p.src4), '203.0.113.9');
    t.is(p.sport, 5000);
  }
  const save = (await e.run('iptables-save -c -t nat')).stdout;
  t.regex(save, /\[1:\d+\] -A POSTROUTING -o eth1 -j MASQUERADE/, 'three packets of one flow: the rule counted the first only');
  t.is(ct.count(0), 1);
  // same addresses: nothing happens
  e.nf.state.runTicks(e.services.now() + 1000);
  t.is(ct.count(0), 1);
  e.services.ifaces.set('eth1', ifaceFacts('eth1', ['203.0.113.7/24']));
  e.nf.state.runTicks(e.services.now() + 2000);
  t.is(ct.count(0), 0, 'address changed: flow forgotten');
  const p = packet({ src: '10.0.0.1', dst: '203.0.113.2', proto: 'udp', sport: 5000, dport: 53 }, 'eth0', 'eth1');
  t.is(forward(e.nf, p), Verdict.ACCEPT);
  t.is(ipv4ToString(p.src4), '203.0.113.7', 'the next packet is bound again, to the new address');
  const f = e.services.ifaces.get('eth1')!;
  e.services.ifaces.set('eth1', { ...f, flags: { ...f.flags, up: false, running: false } });
  e.nf.state.runTicks(e.services.now() + 3000);
  t.is(ct.count(0), 0, 'interface down: flow forgotten');
});

test('DNAT port forward, REDIRECT to the in-interface address, NETMAP keeps the host part', async (t) => {
  const { e } = await lab();
  for (const l of [
    'iptables -t nat -A PREROUTING -i eth1 -p tcp --dport 2222 -j DNAT --to-destination 10.0.0.5:22',
    'iptables -t nat -A PREROUTING -i eth0 -p tcp --dport 80 -j REDIRECT --to-ports 3128',
    'iptables -t nat -A PREROUTING -i eth1 -d 192.0.2.0/24 -j NETMAP --to 10.0.0.0/24',
  ])
    t.is((await e.run(l)).status, 0, l);
  const a = packet({ src: '198.51.100.7', dst: '203.0.113.9', proto: 'tcp', sport: 40000, dport: 2222 }, 'eth1', null);
  t.is(e.nf.hook(Hook.PREROUTING, a), Verdict.ACCEPT);
  t.is(`${ipv4ToString(a.dst4)}:${a.dport}`, '10.0.0.5:22');
  const b = packet({ src: '10.0.0.1', dst: '93.184.216.34', proto: 'tcp', sport: 40001, dport: 80 }, 'eth0', null);
  t.is(e.nf.hook(Hook.PREROUTING, b), Verdict.ACCEPT);
  t.is(`${ipv4ToString(b.dst4)}:${b.dport}`, '10.0.0.254:3128');
  const c = packet({ src: '198.51.100.7', dst: '192.0.2.77', proto: 'udp', sport: 40002, dport: 53 }, 'eth1', null);
  t.is(e.nf.hook(Hook.PREROUTING, c), Verdict.ACCEPT);
  t.is(ipv4ToString(c.dst4), '10.0.0.77');
});

test('without conntrack NAT in the services, a NAT target drops the packet rather than sending it untranslated', async (t) => {
  const ct = new Conntrack();
  const e = await testEngine([], ct);
  t.is((await e.run('iptables -t nat -A POSTROUTING -j SNAT --to-source 192.0.2.1')).status, 0);
  const p = packet({ src: '10.0.0.1', dst: '203.0.113.2', proto: 'udp', sport: 5000, dport: 53 }, 'eth0', 'eth1');
  t.is(forward(e.nf, p), Verdict.DROP);
});
