import test from 'ava';
import { MemDevice } from '../dataplane/memdev.js';
import { validateConfig } from '../router/config.js';
import { Router } from '../router/forward.js';
import { silentLogger } from '../router/log.js';
import { Hook, Verdict, type PacketContext } from '../xt/packet.js';
import {
  ETH1_MAC,
  SERVER_MAC,
  arp,
  csum,
  eth,
  get16,
  get32,
  ip4,
  ip6,
  ipv4HeaderOk,
  l4v6Ok,
  macAt,
  makeLab,
  ndp,
  udp4,
  udp6,
} from './router-packets.js';

/** Resolves the server on eth1 (TAP) the normal way, so forwarding there needs no resolution afterwards. */
function learnServer(lab: ReturnType<typeof makeLab>) {
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '203.0.113.2' }));
  lab.eth0.inject(udp6({ src: '2001:db8:c::2', dst: '2001:db8:5::2' }));
  lab.pump();
  lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x0806, arp(2, SERVER_MAC, '203.0.113.2', ETH1_MAC, '203.0.113.1')));
  lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x86dd, ndp(136, '2001:db8:5::2', '2001:db8:5::1', '2001:db8:5::2', SERVER_MAC, 0x60)));
  lab.pump();
  lab.eth1.takeSent();
}

test('IPv4 TUN to TUN: TTL decremented, header checksum updated incrementally and valid, rest untouched', (t) => {
  const lab = makeLab();
  for (const ttl of [64, 2, 255, 100]) {
    const pkt = udp4({ src: '198.51.100.2', dst: '192.0.2.2', ttl });
    lab.eth0.inject(pkt);
    lab.pump();
    const [out] = lab.eth2.takeSent();
    t.truthy(out, `ttl ${ttl}`);
    t.is(out.length, pkt.length);
    t.is(out[8], ttl - 1);
    t.true(ipv4HeaderOk(out), `checksum after ttl ${ttl}`);
    // everything but TTL and checksum is byte-identical
    const a = Buffer.from(pkt);
    const b = Buffer.from(out);
    a[8] = b[8] = 0;
    a[10] = a[11] = b[10] = b[11] = 0;
    t.deepEqual(b, a);
  }
  t.is(lab.eth0.takeSent().length, 0);
});

test('IPv4 checksum edge: incremental update agrees with full recomputation for every checksum value', (t) => {
  const lab = makeLab();
  // vary the identification field so the header checksum takes many values, including 0x0000/0xffff neighbours
  let bad = 0;
  for (let id = 0; id < 65536; id += 97) {
    const pkt = udp4({ src: '198.51.100.2', dst: '192.0.2.2', ttl: 7, id });
    lab.eth0.inject(pkt);
  }
  lab.pump();
  for (const out of lab.eth2.takeSent()) if (!ipv4HeaderOk(out) || out[8] !== 6) bad++;
  t.is(bad, 0);
});

test('IPv6 forwarding decrements the hop limit and leaves the rest alone', (t) => {
  const lab = makeLab();
  const pkt = udp6({ src: '2001:db8:c::2', dst: '2001:db8:6::2', hop: 9 });
  lab.eth0.inject(pkt);
  lab.pump();
  const [out] = lab.eth2.takeSent();
  t.is(out[7], 8);
  const a = Buffer.from(pkt);
  a[7] = 8;
  t.deepEqual(Buffer.from(out), a);
});

test('TTL 1: ICMP time exceeded from the ingress interface address, quoting the packet', (t) => {
  const lab = makeLab();
  const pkt = udp4({ src: '198.51.100.2', dst: '192.0.2.2', ttl: 1, payload: 100 });
  lab.eth0.inject(pkt);
  lab.pump();
  t.is(lab.eth2.takeSent().length, 0);
  const [icmp] = lab.eth0.takeSent();
  t.truthy(icmp);
  t.is(icmp[9], 1);
  t.is(get32(icmp, 12), ip4('198.51.100.1'));
  t.is(get32(icmp, 16), ip4('198.51.100.2'));
  t.true(ipv4HeaderOk(icmp));
  t.is(icmp[20], 11);
  t.is(icmp[21], 0);
  t.is(csum(icmp, 20, icmp.length - 20), 0);
  t.deepEqual(Buffer.from(icmp.subarray(28, 28 + pkt.length)), pkt);
  t.is(lab.router.status().drops.ttl_exceeded, 1);
});

test('hop limit 1: ICMPv6 time exceeded from the ingress interface address', (t) => {
  const lab = makeLab();
  lab.eth0.inject(udp6({ src: '2001:db8:c::2', dst: '2001:db8:6::2', hop: 1 }));
  lab.pump();
  const [icmp] = lab.eth0.takeSent();
  t.is(icmp[6], 58);
  t.deepEqual([...icmp.subarray(8, 24)], [...Buffer.from('20010db8000c00000000000000000001', 'hex')]);
  t.is(icmp[40], 3);
  t.is(icmp[41], 0);
  t.true(l4v6Ok(icmp));
  t.is(lab.eth2.takeSent().length, 0);
});

test('no route: ICMP net unreachable / ICMPv6 no route, counted', (t) => {
  const lab = makeLab({ noDefault: true });
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '8.8.8.8' }));
  lab.eth0.inject(udp6({ src: '2001:db8:c::2', dst: '2001:4860::8888' }));
  lab.pump();
  const [u4, u6] = lab.eth0.takeSent();
  t.is(u4[20], 3);
  t.is(u4[21], 0);
  t.is(get32(u4, 12), ip4('198.51.100.1'));
  t.is(u6[40], 1);
  t.is(u6[41], 0);
  t.true(l4v6Ok(u6));
  t.is(lab.router.status().drops.no_route, 2);
  t.is(lab.router.status().interfaces[0].drops.no_route, 2);
});

test('DF set and larger than the egress MTU: fragmentation needed with the MTU', (t) => {
  const lab = makeLab();
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', df: true, payload: 1400 }));
  lab.pump();
  t.is(lab.eth2.takeSent().length, 0);
  const [icmp] = lab.eth0.takeSent();
  t.is(icmp[20], 3);
  t.is(icmp[21], 4);
  t.is(get16(icmp, 26), 1280);
  t.is(lab.router.status().drops.too_big, 1);
});

test('IPv6 larger than the egress MTU: packet too big with the MTU', (t) => {
  const lab = makeLab();
  lab.eth0.inject(udp6({ src: '2001:db8:c::2', dst: '2001:db8:6::2', payload: 1300 }));
  lab.pump();
  t.is(lab.eth2.takeSent().length, 0);
  const [icmp] = lab.eth0.takeSent();
  t.is(icmp[40], 2);
  t.is(get32(icmp, 44), 1280);
  t.true(l4v6Ok(icmp));
});

test('DF clear and larger than the egress MTU: fragmented, fragments reassemble to the original', (t) => {
  const lab = makeLab();
  const pkt = udp4({ src: '198.51.100.2', dst: '192.0.2.2', payload: 1472, ttl: 30 });
  lab.eth0.inject(pkt);
  lab.pump();
  const frags = lab.eth2.takeSent();
  t.is(frags.length, 2);
  const data = Buffer.alloc(pkt.length - 20);
  let covered = 0;
  frags.forEach((f, i) => {
    t.true(f.length <= 1280);
    t.true(ipv4HeaderOk(f));
    t.is(f[8], 29);
    const ff = get16(f, 6);
    t.is((ff & 0x2000) !== 0, i < frags.length - 1, `MF of fragment ${i}`);
    const off = (ff & 0x1fff) * 8;
    f.copy(data, off, 20);
    covered += f.length - 20;
  });
  t.is(covered, pkt.length - 20);
  t.deepEqual(data, pkt.subarray(20));
});

test('local delivery: packets for the router\'s addresses go unchanged into the host interface', (t) => {
  const lab = makeLab();
  const p4 = udp4({ src: '198.51.100.2', dst: '203.0.113.1', ttl: 1 });
  const p6 = udp6({ src: '2001:db8:c::2', dst: '2001:db8:c::1', hop: 1 });
  lab.eth0.inject(p4);
  lab.eth0.inject(p6);
  lab.pump();
  t.deepEqual(lab.host.takeSent(), [p4, p6]);
  t.is(lab.eth0.takeSent().length, 0);
});

test('host interface output is routed out the right link without TTL change', (t) => {
  const lab = makeLab();
  learnServer(lab);
  lab.eth1.takeSent();
  const toClient = udp4({ src: '198.51.100.1', dst: '198.51.100.3', ttl: 64 });
  const toMonitor6 = udp6({ src: '2001:db8:6::1', dst: '2001:db8:6::2' });
  const toInternet = udp4({ src: '203.0.113.1', dst: '8.8.4.4' });
  lab.host.inject(toClient);
  lab.host.inject(toMonitor6);
  lab.host.inject(toInternet);
  lab.pump();
  t.deepEqual(lab.eth0.takeSent(), [toClient]);
  t.deepEqual(lab.eth2.takeSent(), [toMonitor6]);
  const [frame] = lab.eth1.takeSent();
  t.is(macAt(frame, 0), SERVER_MAC);
  t.is(macAt(frame, 6), ETH1_MAC);
  t.is(get16(frame, 12), 0x0800);
  t.deepEqual(frame.subarray(14), toInternet);
});

test('host output too big with DF: frag-needed goes back to the local stack', (t) => {
  const lab = makeLab();
  lab.host.inject(udp4({ src: '192.0.2.1', dst: '192.0.2.2', df: true, payload: 1400 }));
  lab.pump();
  t.is(lab.eth2.takeSent().length, 0);
  const [icmp] = lab.host.takeSent();
  t.is(icmp[20], 3);
  t.is(icmp[21], 4);
  t.is(get16(icmp, 26), 1280);
  t.is(get32(icmp, 16), ip4('192.0.2.1'));
});

test('TAP: ARP requests for the router\'s address are answered, others ignored', (t) => {
  const lab = makeLab();
  lab.eth1.inject(eth(0xffffffffffff, SERVER_MAC, 0x0806, arp(1, SERVER_MAC, '203.0.113.2', 0, '203.0.113.1')));
  lab.eth1.inject(eth(0xffffffffffff, SERVER_MAC, 0x0806, arp(1, SERVER_MAC, '203.0.113.2', 0, '203.0.113.9')));
  lab.pump();
  const sent = lab.eth1.takeSent();
  t.is(sent.length, 1);
  const r = sent[0];
  t.is(macAt(r, 0), SERVER_MAC);
  t.is(macAt(r, 6), ETH1_MAC);
  t.is(get16(r, 12), 0x0806);
  t.is(get16(r, 14 + 6), 2);
  t.is(macAt(r, 14 + 8), ETH1_MAC);
  t.is(get32(r, 14 + 14), ip4('203.0.113.1'));
  t.is(macAt(r, 14 + 18), SERVER_MAC);
  t.is(get32(r, 14 + 24), ip4('203.0.113.2'));
  // the request taught the router the server's MAC: forwarding needs no ARP now
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '203.0.113.2' }));
  lab.pump();
  const [f] = lab.eth1.takeSent();
  t.is(get16(f, 12), 0x0800);
  t.is(macAt(f, 0), SERVER_MAC);
});

test('TAP: next hop resolution queues packets, sends ARP, releases them on the reply', (t) => {
  const lab = makeLab();
  const p1 = udp4({ src: '198.51.100.2', dst: '10.1.2.3', id: 1 });
  const p2 = udp4({ src: '198.51.100.2', dst: '10.1.2.3', id: 2 });
  lab.eth0.inject(p1);
  lab.eth0.inject(p2);
  lab.pump();
  const [req, ...rest] = lab.eth1.takeSent();
  t.is(rest.length, 0, 'one ARP request for two queued packets');
  t.is(macAt(req, 0), 0xffffffffffff);
  t.is(get16(req, 12), 0x0806);
  t.is(get16(req, 14 + 6), 1);
  t.is(get32(req, 14 + 14), ip4('203.0.113.1'));
  t.is(get32(req, 14 + 24), ip4('203.0.113.2'), 'resolves the gateway, not the destination');
  lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x0806, arp(2, SERVER_MAC, '203.0.113.2', ETH1_MAC, '203.0.113.1')));
  lab.pump();
  const out = lab.eth1.takeSent();
  t.is(out.length, 2);
  t.is(get16(out[0], 14 + 4), 1);
  t.is(get16(out[1], 14 + 4), 2);
  for (const f of out) {
    t.is(macAt(f, 0), SERVER_MAC);
    t.is(f[14 + 8], 63);
  }
  const st = lab.router.status().interfaces.find((i) => i.name === 'eth1')!;
  t.deepEqual(st.neighbors!.map((n) => [n.address, n.mac, n.state]), [['203.0.113.2', '02:aa:bb:cc:dd:02', 'REACHABLE']]);
});

test('TAP: unanswered ARP fails after three probes and the sender gets host unreachable', (t) => {
  const lab = makeLab();
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '203.0.113.77' }));
  lab.pump();
  t.is(lab.eth1.takeSent().length, 1);
  for (let i = 0; i < 3; i++) {
    lab.clock.now += 1000;
    lab.router.tick();
  }
  t.is(lab.eth1.takeSent().length, 2, 'two more broadcast probes');
  const [icmp] = lab.eth0.takeSent();
  t.truthy(icmp);
  t.is(icmp[20], 3);
  t.is(icmp[21], 1);
  t.is(get32(icmp, 16), ip4('198.51.100.2'));
  const st = lab.router.status();
  t.is(st.drops.neighbor_failed, 1);
  t.is(st.interfaces.find((i) => i.name === 'eth1')!.neighbors![0].state, 'FAILED');
});

test('TAP: neighbour entries age REACHABLE -> STALE -> DELAY -> PROBE (unicast) -> REACHABLE', (t) => {
  const lab = makeLab();
  learnServer(lab);
  lab.eth1.takeSent();
  const state = () => lab.router.status().interfaces.find((i) => i.name === 'eth1')!.neighbors!.find((n) => n.address === '203.0.113.2')!.state;
  t.is(state(), 'REACHABLE');
  lab.clock.now += 31_000;
  lab.router.tick();
  t.is(state(), 'STALE');
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '203.0.113.2' }));
  lab.pump();
  t.is(lab.eth1.takeSent().length, 1, 'a stale entry is still used');
  t.is(state(), 'DELAY');
  lab.clock.now += 5_000;
  lab.router.tick();
  t.is(state(), 'PROBE');
  const [probe] = lab.eth1.takeSent();
  t.is(macAt(probe, 0), SERVER_MAC, 'unicast probe');
  lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x0806, arp(2, SERVER_MAC, '203.0.113.2', ETH1_MAC, '203.0.113.1')));
  lab.pump();
  t.is(state(), 'REACHABLE');
});

test('TAP: neighbour solicitation for the router is answered with an NA carrying its MAC', (t) => {
  const lab = makeLab();
  const snm = 'ff02::1:ff00:1';
  lab.eth1.inject(eth(0x3333ff000001, SERVER_MAC, 0x86dd, ndp(135, '2001:db8:5::2', snm, '2001:db8:5::1', SERVER_MAC)));
  lab.pump();
  const [na] = lab.eth1.takeSent();
  t.truthy(na);
  t.is(macAt(na, 0), SERVER_MAC);
  t.is(macAt(na, 6), ETH1_MAC);
  const ip = na.subarray(14);
  t.is(ip[7], 255);
  t.is(ip[40], 136);
  t.is(ip[44] & 0x40, 0x40, 'solicited');
  t.deepEqual([...ip.subarray(24, 40)], [...Buffer.from('20010db8000500000000000000000002', 'hex')]);
  t.deepEqual([...ip.subarray(48, 64)], [...Buffer.from('20010db8000500000000000000000001', 'hex')]);
  t.is(ip[64], 2);
  t.is(macAt(ip, 66), ETH1_MAC);
  t.true(l4v6Ok(ip));
});

test('TAP: IPv6 next hop resolved by NS to the solicited-node group, released on NA', (t) => {
  const lab = makeLab();
  const pkt = udp6({ src: '2001:db8:c::2', dst: '2001:db8:5::2' });
  lab.eth0.inject(pkt);
  lab.pump();
  const [ns] = lab.eth1.takeSent();
  t.is(macAt(ns, 0), 0x3333ff000002);
  const ip = ns.subarray(14);
  t.is(ip[40], 135);
  t.deepEqual([...ip.subarray(24, 40)], [...Buffer.from('ff0200000000000000000001ff000002', 'hex')]);
  t.true(l4v6Ok(ip));
  lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x86dd, ndp(136, '2001:db8:5::2', '2001:db8:5::1', '2001:db8:5::2', SERVER_MAC, 0x60)));
  lab.pump();
  const [f] = lab.eth1.takeSent();
  t.is(macAt(f, 0), SERVER_MAC);
  t.is(get16(f, 12), 0x86dd);
  t.is(f[14 + 7], 63);
  t.deepEqual(f.subarray(14 + 8), pkt.subarray(8));
});

test('TAP ingress: frames for another MAC and unknown ethertypes are counted drops; IP over TAP is routed', (t) => {
  const lab = makeLab();
  learnServer(lab);
  lab.eth1.inject(eth(0x020000000999, SERVER_MAC, 0x0800, udp4({ src: '203.0.113.2', dst: '198.51.100.2' })));
  lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x88cc, Buffer.alloc(40)));
  lab.eth1.inject(Buffer.alloc(10));
  const good = udp4({ src: '203.0.113.2', dst: '198.51.100.2' });
  lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x0800, Buffer.concat([good, Buffer.alloc(6)]))); // with link padding
  lab.pump();
  const d = lab.router.status().interfaces.find((i) => i.name === 'eth1')!.drops;
  t.is(d.other_host, 1);
  t.is(d.unknown_ethertype, 1);
  const [out] = lab.eth0.takeSent();
  t.is(out.length, good.length, 'padding stripped');
});

test('netfilter seam: hooks in kernel order with the right interfaces; DROP is counted', (t) => {
  const seen: string[] = [];
  let dropAt: Hook | -1 = -1;
  const lab = makeLab({
    netfilter: {
      hook(hook: Hook, ctx: PacketContext) {
        seen.push(`${['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'][hook]} in=${ctx.inIf?.name ?? '-'} out=${ctx.outIf?.name ?? '-'} local=${ctx.locallyGenerated} ttl=${ctx.ttl}`);
        return hook === dropAt ? Verdict.DROP : Verdict.ACCEPT;
      },
    },
  });
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', ttl: 10 }));
  lab.pump();
  t.deepEqual(seen.splice(0), [
    'PREROUTING in=eth0 out=- local=false ttl=10',
    'FORWARD in=eth0 out=eth2 local=false ttl=9',
    'POSTROUTING in=eth0 out=eth2 local=false ttl=9',
  ]);
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '198.51.100.1' }));
  lab.pump();
  t.deepEqual(seen.splice(0), ['PREROUTING in=eth0 out=- local=false ttl=64', 'INPUT in=eth0 out=- local=false ttl=64']);
  lab.host.inject(udp4({ src: '192.0.2.1', dst: '192.0.2.2' }));
  lab.pump();
  t.deepEqual(seen.splice(0), ['OUTPUT in=- out=eth2 local=true ttl=64', 'POSTROUTING in=- out=eth2 local=true ttl=64']);
  // xtr's own ICMP error takes the OUTPUT path too
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', ttl: 1 }));
  lab.pump();
  t.deepEqual(seen.splice(0), [
    'PREROUTING in=eth0 out=- local=false ttl=1',
    'OUTPUT in=- out=eth0 local=true ttl=64',
    'POSTROUTING in=- out=eth0 local=true ttl=64',
  ]);
  lab.eth0.takeSent();
  lab.eth2.takeSent();
  dropAt = Hook.FORWARD;
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2' }));
  lab.pump();
  t.is(lab.eth2.takeSent().length, 0);
  t.is(lab.router.status().drops.netfilter, 1);
  seen.length = 0;
  lab.host.takeSent();
  dropAt = Hook.PREROUTING;
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '198.51.100.1' }));
  lab.pump();
  t.deepEqual(seen, ['PREROUTING in=eth0 out=- local=false ttl=64']);
  t.is(lab.host.takeSent().length, 0);
});

test('STOLEN verdict: packet consumed silently', (t) => {
  const lab = makeLab({ netfilter: { hook: (h) => (h === Hook.FORWARD ? Verdict.STOLEN : Verdict.ACCEPT) } });
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2' }));
  lab.pump();
  t.is(lab.eth2.takeSent().length, 0);
  t.deepEqual(lab.router.status().drops, {});
});

test('services.emitLocal sends a packet through OUTPUT, also from inside a hook', (t) => {
  const lab = makeLab();
  const reply = udp4({ src: '198.51.100.1', dst: '198.51.100.2', dport: 7 });
  lab.router.services.emitLocal(reply, 0, reply.length, 4);
  t.deepEqual(lab.eth0.takeSent(), [reply]);
  // a target emitting while another packet is in the pipeline (REJECT-like)
  lab.router.setNetfilter({
    hook(hook, ctx) {
      if (hook === Hook.FORWARD && ctx.dport === 25) {
        lab.router.services.emitLocal(reply, 0, reply.length, 4);
        return Verdict.DROP;
      }
      return Verdict.ACCEPT;
    },
  });
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', dport: 25 }));
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', dport: 26 }));
  lab.pump();
  t.deepEqual(lab.eth0.takeSent(), [reply]);
  t.is(lab.eth2.takeSent().length, 1);
});

test('malformed packets are counted by reason, never thrown', (t) => {
  const lab = makeLab();
  const good = udp4({ src: '198.51.100.2', dst: '192.0.2.2' });
  const badSum = Buffer.from(good);
  badSum[10] ^= 0xff;
  const shortTotal = Buffer.from(good.subarray(0, 24));
  const badVersion = Buffer.from(good);
  badVersion[0] = 0x35;
  lab.eth0.inject(badSum);
  lab.eth0.inject(shortTotal);
  lab.eth0.inject(Buffer.from([0x45, 0, 0]));
  lab.pump();
  const d = lab.router.status().interfaces[0].drops;
  t.is(d.bad_ip_checksum, 1);
  t.is(d.bad_total_length, 1);
  t.is(d.truncated_header, 1);
  // random bytes on every interface (TUN needs a 4/6 nibble to get past the device)
  let seed = 7;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
  t.notThrows(() => {
    for (let i = 0; i < 3000; i++) {
      const len = 1 + (rnd() % 120);
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = rnd();
      const ip = Buffer.from(b);
      ip[0] = (i & 1 ? 0x40 : 0x60) | (ip[0] & 0x0f);
      lab.eth0.inject(ip);
      lab.host.inject(ip);
      const frame = Buffer.concat([Buffer.from('020000000101aabbccddeeff', 'hex'), Buffer.from([[0x08, 0x86, 0x08][i % 3], [0x00, 0xdd, 0x06][i % 3]]), b]);
      lab.eth1.inject(frame);
      if (i % 50 === 0) lab.pump();
    }
    lab.pump();
  });
});

test('status: interfaces, counters, routes, uptime', (t) => {
  const lab = makeLab();
  lab.clock.now += 2500;
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2' }));
  lab.pump();
  const s = lab.router.status();
  t.is(s.uptimeSeconds, 2.5);
  t.deepEqual(
    s.interfaces.map((i) => [i.name, i.kind, i.mtu]),
    [
      ['eth0', 'tun', 1500],
      ['eth1', 'tap', 1500],
      ['eth2', 'tun', 1280],
      ['xtr0', 'host', 1500],
    ],
  );
  t.is(s.interfaces[0].rxPackets, 1);
  t.is(s.interfaces[2].txPackets, 1);
  t.is(s.interfaces[1].mac, '02:00:00:00:01:01');
  t.deepEqual(s.routes.filter((r) => r.kind === 'gateway').map((r) => `${r.to} via ${r.via} dev ${r.dev}`), [
    '10.0.0.0/8 via 203.0.113.2 dev eth1',
    '0.0.0.0/0 via 203.0.113.2 dev eth1',
    '::/0 via 2001:db8:5::2 dev eth1',
  ]);
  t.true(s.routes.some((r) => r.to === '198.51.100.1/32' && r.kind === 'local' && r.dev === 'xtr0'));
  t.true(s.routes.some((r) => r.to === '2001:db8:6::/64' && r.kind === 'connected' && r.dev === 'eth2'));
});

test('ICMP errors are rate limited like the kernel: per peer burst 6 then 1/s, 50 burst overall', (t) => {
  const lab = makeLab({ noDefault: true });
  for (let i = 0; i < 10; i++) lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '8.8.8.8' }));
  lab.pump();
  t.is(lab.eth0.takeSent().length, 6, 'one peer: burst of 6');
  lab.clock.now += 999;
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '8.8.8.8' }));
  lab.pump();
  t.is(lab.eth0.takeSent().length, 0, 'less than a second later: still limited');
  lab.clock.now += 1;
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '8.8.8.8' }));
  lab.pump();
  t.is(lab.eth0.takeSent().length, 1, 'one more after a second');
  // path-MTU errors are exempt from the per-peer limit
  for (let i = 0; i < 10; i++) lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', df: true, payload: 1400 }));
  lab.pump();
  t.is(lab.eth0.takeSent().length, 10);
  // the global bucket (50, refilled 1/ms) caps many peers at once
  lab.clock.now += 100_000;
  for (let i = 0; i < 80; i++) lab.eth0.inject(udp4({ src: `198.51.100.${(i % 250) + 2}`, dst: '8.8.8.8' }));
  lab.pump();
  t.is(lab.eth0.takeSent().length, 50);
});

test('no ICMP error about ICMP errors or non-first fragments', (t) => {
  const lab = makeLab({ noDefault: true });
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '8.8.8.8' }));
  lab.pump();
  const [err] = lab.eth0.takeSent();
  // send that error back at the router towards an unroutable place: no error about an error
  const copy = Buffer.from(err);
  copy.writeUInt32BE(ip4('198.51.100.2'), 12);
  copy.writeUInt32BE(ip4('9.9.9.9'), 16);
  copy.writeUInt16BE(0, 10);
  copy.writeUInt16BE(csum(copy, 0, 20), 10);
  lab.eth0.inject(copy);
  // a non-first fragment without a route: dropped silently too
  const frag = udp4({ src: '198.51.100.2', dst: '8.8.8.8' });
  frag.writeUInt16BE(0x2000 | 10, 6);
  frag.writeUInt16BE(0, 10);
  frag.writeUInt16BE(csum(frag, 0, 20), 10);
  lab.eth0.inject(frag);
  lab.pump();
  t.is(lab.eth0.takeSent().length, 0);
  t.is(lab.router.status().drops.no_route, 3);
});

/** udp4 with IPv4 options (padded to 4 bytes) inserted after the fixed header. */
function withOptions(pkt: Buffer, options: number[]): Buffer {
  const opts = Buffer.alloc((options.length + 3) & ~3);
  Buffer.from(options).copy(opts);
  const b = Buffer.concat([pkt.subarray(0, 20), opts, pkt.subarray(20)]);
  b[0] = 0x40 | ((20 + opts.length) >> 2);
  b.writeUInt16BE(b.length, 2);
  b.writeUInt16BE(0, 10);
  b.writeUInt16BE(csum(b, 0, 20 + opts.length), 10);
  return b;
}

test('martians and directed broadcasts are dropped, not forwarded', (t) => {
  const lab = makeLab();
  const cases: [Buffer, string][] = [
    [udp4({ src: '127.0.0.1', dst: '192.0.2.2' }), 'martian'],
    [udp4({ src: '0.1.2.3', dst: '192.0.2.2' }), 'martian'],
    [udp4({ src: '224.0.0.5', dst: '192.0.2.2' }), 'martian'],
    [udp4({ src: '198.51.100.2', dst: '127.0.0.1' }), 'martian'],
    [udp6({ src: '::1', dst: '2001:db8:6::2' }), 'martian'],
    [udp6({ src: 'ff02::1', dst: '2001:db8:6::2' }), 'martian'],
    [udp4({ src: '198.51.100.2', dst: '192.0.2.255' }), 'multicast'],
    [udp4({ src: '198.51.100.2', dst: '224.0.0.251' }), 'multicast'],
    [udp6({ src: '2001:db8:c::2', dst: 'ff02::fb' }), 'multicast'],
    [udp6({ src: 'fe80::2', dst: '2001:db8:6::2' }), 'link_local'],
  ];
  for (const [pkt] of cases) lab.eth0.inject(pkt);
  lab.pump();
  t.is(lab.eth2.takeSent().length + lab.eth0.takeSent().length + lab.host.takeSent().length, 0);
  const want: Record<string, number> = {};
  for (const [, reason] of cases) want[reason] = (want[reason] ?? 0) + 1;
  t.deepEqual(lab.router.status().interfaces[0].drops, want);
});

test('IPv4 options: source-routed packets dropped; Record Route gets the egress address', (t) => {
  const lab = makeLab();
  const base = udp4({ src: '198.51.100.2', dst: '192.0.2.2' });
  lab.eth0.inject(withOptions(base, [131, 7, 4, 192, 0, 2, 2])); // LSRR
  lab.pump();
  t.is(lab.eth2.takeSent().length, 0);
  t.is(lab.router.status().drops.source_route, 1);
  const rr = withOptions(base, [7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0]); // RR with two slots
  lab.eth0.inject(rr);
  lab.pump();
  const [out] = lab.eth2.takeSent();
  t.true(ipv4HeaderOk(out));
  t.is(out[22], 8, 'pointer advanced');
  t.is(get32(out, 23), ip4('192.0.2.1'));
  t.is(get32(out, 27), 0);
  t.deepEqual(out.subarray(32), rr.subarray(32));
});

test('fragmentation onto a TAP link: fragments wait for ARP together, then leave in order with Ethernet headers', (t) => {
  const lab = makeLab({ eth1Mtu: 1000 });
  const pkt = udp4({ src: '198.51.100.2', dst: '203.0.113.2', payload: 1400 });
  lab.eth0.inject(pkt);
  lab.pump();
  const [req, ...none] = lab.eth1.takeSent();
  t.is(get16(req, 12), 0x0806);
  t.is(none.length, 0);
  lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x0806, arp(2, SERVER_MAC, '203.0.113.2', ETH1_MAC, '203.0.113.1')));
  lab.pump();
  const frags = lab.eth1.takeSent();
  t.is(frags.length, 2);
  const data = Buffer.alloc(pkt.length - 20);
  for (const f of frags) {
    t.is(macAt(f, 0), SERVER_MAC);
    t.is(get16(f, 12), 0x0800);
    const ip = f.subarray(14);
    t.true(ip.length <= 1000);
    t.true(ipv4HeaderOk(ip));
    ip.copy(data, (get16(ip, 6) & 0x1fff) * 8, 20);
  }
  t.deepEqual(data, pkt.subarray(20));
  // resolved now: the next oversized packet is fragmented straight out
  lab.eth0.inject(pkt);
  lab.pump();
  t.is(lab.eth1.takeSent().length, 2);
});

test('an exception in a hook costs that packet only: counted, the rest of the batch goes on', (t) => {
  const lab = makeLab({
    netfilter: {
      hook(hook, ctx) {
        if (hook === Hook.FORWARD && ctx.dport === 13) throw new Error('extension bug');
        return Verdict.ACCEPT;
      },
    },
  });
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', dport: 13 }));
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', dport: 14 }));
  t.notThrows(() => lab.pump());
  t.is(lab.eth2.takeSent().length, 1);
  t.is(lab.router.status().drops.internal_error, 1);
});

test('IPv6 default route via a link-local gateway on a TAP link is resolved by NDP', (t) => {
  const config = validateConfig({
    interfaces: [
      { name: 'eth0', addresses: ['2001:db8:c::1/64'] },
      { name: 'eth1', mode: 'tap', mac: '02:00:00:00:01:01', addresses: ['2001:db8:5::1/64'] },
    ],
    routes: [{ to: '::/0', via: 'fe80::1', dev: 'eth1' }],
  });
  const eth0 = new MemDevice('eth0');
  const eth1 = new MemDevice('eth1', { kind: 'tap' });
  const r = new Router({ config, devices: new Map([['eth0', eth0], ['eth1', eth1]]), host: null, logger: silentLogger() });
  r.start();
  const pkt = udp6({ src: '2001:db8:c::2', dst: '2001:4860::1' });
  eth0.inject(pkt);
  r.drain(r.interfaces[1]);
  const [ns] = eth1.takeSent();
  t.is(macAt(ns, 0), 0x3333ff000001);
  t.deepEqual([...ns.subarray(14 + 48, 14 + 64)], [...Buffer.from('fe800000000000000000000000000001', 'hex')]);
  eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x86dd, ndp(136, 'fe80::1', '2001:db8:5::1', 'fe80::1', SERVER_MAC, 0xe0)));
  r.drain(r.interfaces[2]);
  const [f] = eth1.takeSent();
  t.is(macAt(f, 0), SERVER_MAC);
  t.deepEqual(f.subarray(14 + 8), pkt.subarray(8));
  r.stop();
  eth0.close();
  eth1.close();
});

test('readBatches counts each read that returned packets by its size bucket (status and xtr_read_batches_total)', async (t) => {
  const { batchBuckets } = await import('../router/status.js');
  const lab = makeLab();
  const before = lab.router.status().readBatches;
  for (let i = 0; i < 3; i++) lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2' }));
  lab.pump();
  t.is(lab.eth2.takeSent().length, 3);
  const after = lab.router.status().readBatches;
  t.is((after['2-3'] ?? 0) - (before['2-3'] ?? 0), 1, 'one read of three packets');
  const counts = new Float64Array(32);
  for (const n of [1, 1, 2, 3, 4, 64, 127, 128]) counts[31 - Math.clz32(n)]++;
  t.deepEqual(batchBuckets(counts), { '1': 2, '2-3': 2, '4-7': 1, '64-127': 2, '128-255': 1 });
});
