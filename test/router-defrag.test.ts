/**
 * The router's defragmentation (router/forward.ts): while the netfilter
 * engine says conntrack is in use, fragments are reassembled before
 * PREROUTING and OUTPUT, the hooks see whole datagrams, and egress sends
 * them as fragments again like the kernel (the original fragments when they
 * fit, else frag_max_size / MTU chunks, frag-needed / packet-too-big only
 * when a fragment itself was too big). Without conntrack fragments pass the
 * hooks one by one. In-memory devices; the namespace differential tests
 * compare the same against the kernel.
 */
import test from 'ava';
import type { Netfilter } from '../router/forward.js';
import { HOOK_NAMES, Verdict, type Family, type PacketContext, type Hook } from '../xt/packet.js';
import { frag4, frag6, v6, whole6 } from './fragments.js';
import { ETH1_MAC, SERVER_MAC, arp, eth, get16, ipv4HeaderOk, macAt, makeLab, ndp, udp4, udp6 } from './router-packets.js';

/** A netfilter stand-in: records what each hook sees; conntrack in use per family as given. */
function recorder(inUse: Record<Family, boolean>, verdict: (h: Hook, ctx: PacketContext) => Verdict = () => Verdict.ACCEPT) {
  const seen: string[] = [];
  const nf: Netfilter = {
    hook(h, ctx) {
      seen.push(`${HOOK_NAMES[h]} ${ctx.l3len}${ctx.isFragment ? ' frag' : ''} dport=${ctx.dport}`);
      return verdict(h, ctx);
    },
    conntrackInUse: (f) => inUse[f],
  };
  return { nf, seen, inUse };
}

/** What the router must send for a forwarded fragment: TTL / hop limit one less, header checksum valid. */
function forwarded(f: Buffer): Buffer {
  const b = Buffer.from(f);
  if (b[0] >> 4 === 4) {
    b[8]--;
    b.writeUInt16BE(0, 10);
    let s = 0;
    for (let i = 0; i < 20; i += 2) s += b.readUInt16BE(i);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    b.writeUInt16BE(~s & 0xffff, 10);
  } else {
    b[7]--;
  }
  return b;
}

const D = udp4({ src: '198.51.100.2', dst: '192.0.2.2', payload: 200, id: 78 });
const CUTS: [number, number][] = [
  [0, 48],
  [48, 96],
  [96, 208],
];

test('conntrack in use: the hooks see one whole IPv4 datagram, egress sends the original fragments again', (t) => {
  const r = recorder({ 4: true, 6: true });
  const lab = makeLab({ netfilter: r.nf });
  const frags = CUTS.map(([s, e]) => frag4(D, s, e));
  for (const f of [frags[1], frags[2], frags[0]]) lab.eth0.inject(f);
  lab.pump();
  t.deepEqual(r.seen, ['PREROUTING 228 dport=9', 'FORWARD 228 dport=9', 'POSTROUTING 228 dport=9']);
  const out = lab.eth2.takeSent();
  t.deepEqual(out, frags.map(forwarded), 'in offset order, as they came, TTL 63');
  for (const o of out) t.true(ipv4HeaderOk(o));
  t.deepEqual(lab.router.status().drops, {});
});

test('no conntrack: fragments go through the hooks one by one (-f matches them) and out as they are', (t) => {
  const r = recorder({ 4: false, 6: false });
  const lab = makeLab({ netfilter: r.nf });
  const frags = CUTS.map(([s, e]) => frag4(D, s, e));
  for (const f of frags) lab.eth0.inject(f);
  lab.pump();
  t.deepEqual(r.seen.filter((s) => s.startsWith('PREROUTING')), ['PREROUTING 68 frag dport=9', 'PREROUTING 68 frag dport=0', 'PREROUTING 132 frag dport=0']);
  t.deepEqual(lab.eth2.takeSent(), frags.map(forwarded));
  t.is(lab.router.reassembly4.stats.requests, 0);
});

test('conntrack only for IPv6: IPv4 fragments are left alone', (t) => {
  const r = recorder({ 4: false, 6: true });
  const lab = makeLab({ netfilter: r.nf });
  for (const [s, e] of CUTS) lab.eth0.inject(frag4(D, s, e));
  lab.pump();
  t.is(lab.eth2.takeSent().length, 3);
  t.is(r.seen.filter((s) => s.startsWith('PREROUTING')).length, 3);
});

test('fragments larger than the egress MTU: cut to the MTU; with DF, frag-needed naming the MTU', (t) => {
  const big = udp4({ src: '198.51.100.2', dst: '192.0.2.2', payload: 2972, id: 9 }); // 3000 bytes, fragments of 1480
  for (const df of [false, true]) {
    const r = recorder({ 4: true, 6: true });
    const lab = makeLab({ netfilter: r.nf });
    for (let s = 0; s < 2980; s += 1480) lab.eth0.inject(frag4(big, s, Math.min(s + 1480, 2980), { df }));
    lab.pump();
    const out = lab.eth2.takeSent();
    if (!df) {
      // eth2 MTU 1280: 1256 data bytes per fragment (ip_do_fragment's slow path)
      t.deepEqual(out.map((o) => [o.length, o.readUInt16BE(6) & 0x1fff, (o.readUInt16BE(6) & 0x2000) !== 0]), [
        [1276, 0, true],
        [1276, 157, true],
        [488, 314, false],
      ]);
      t.deepEqual(Buffer.concat(out.map((o) => o.subarray(20))), big.subarray(20));
    } else {
      t.is(out.length, 0);
      const [icmp] = lab.eth0.takeSent();
      t.is(icmp[20], 3);
      t.is(icmp[21], 4);
      t.is(get16(icmp, 26), 1280);
      t.is(get16(icmp, 28 + 2), 3000, 'the error quotes the reassembled datagram');
    }
  }
});

test('a reassembled datagram with DF larger than the MTU but made of fragments that fit is forwarded as those fragments', (t) => {
  const r = recorder({ 4: true, 6: true });
  const lab = makeLab({ netfilter: r.nf });
  const big = udp4({ src: '198.51.100.2', dst: '192.0.2.2', payload: 2972, id: 10 });
  const frags: Buffer[] = [];
  for (let s = 0; s < 2980; s += 1000) frags.push(frag4(big, s, Math.min(s + 1000, 2980), { df: true }));
  for (const f of frags) lab.eth0.inject(f);
  lab.pump();
  const out = lab.eth2.takeSent();
  t.deepEqual(
    out,
    frags.map((f) => {
      const g = forwarded(f);
      g.writeUInt16BE(g.readUInt16BE(6) & ~0x4000, 6); // the kernel's fast path clears DF
      g.writeUInt16BE(0, 10);
      let s = 0;
      for (let i = 0; i < 20; i += 2) s += g.readUInt16BE(i);
      while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
      g.writeUInt16BE(~s & 0xffff, 10);
      return g;
    }),
  );
  t.is(lab.eth0.takeSent().length, 0, 'no frag-needed');
});

test('IPv6: whole datagram through the hooks, out again as the original fragments; packet too big only for a too big fragment', (t) => {
  const r = recorder({ 4: true, 6: true });
  const lab = makeLab({ netfilter: r.nf });
  const p = v6({ hbh: true, dst: '2001:db8:6::2' });
  const cuts: [number, number][] = [
    [0, 48],
    [48, 72],
    [72, 208],
  ];
  const frags = cuts.map(([s, e]) => frag6(p, s, e));
  for (const f of [frags[2], frags[0], frags[1]]) lab.eth0.inject(f);
  lab.pump();
  t.deepEqual(r.seen, [`PREROUTING ${whole6(p).length} dport=9`, `FORWARD ${whole6(p).length} dport=9`, `POSTROUTING ${whole6(p).length} dport=9`]);
  t.deepEqual(lab.eth2.takeSent(), frags.map(forwarded));
  // 1400-byte fragments cannot leave through MTU 1280: packet too big, naming 1280
  const big = v6({ payload: 3000, dst: '2001:db8:6::2', ident: 7 });
  for (let s = 0; s < big.data.length; s += 1400) lab.eth0.inject(frag6(big, s, Math.min(s + 1400, big.data.length)));
  // 1000-byte fragments of the same size of datagram can
  const ok = v6({ payload: 3000, dst: '2001:db8:6::2', ident: 8 });
  const okFrags: Buffer[] = [];
  for (let s = 0; s < ok.data.length; s += 1000) okFrags.push(frag6(ok, s, Math.min(s + 1000, ok.data.length)));
  for (const f of okFrags) lab.eth0.inject(f);
  lab.pump();
  t.deepEqual(lab.eth2.takeSent(), okFrags.map(forwarded));
  const [ptb] = lab.eth0.takeSent();
  t.is(ptb[40], 2);
  t.is(ptb.readUInt32BE(44), 1280);
});

test('IPv6 atomic fragment: reassembled without its Fragment header and sent whole', (t) => {
  const r = recorder({ 4: true, 6: true });
  const lab = makeLab({ netfilter: r.nf });
  const p = v6({ dst: '2001:db8:6::2' });
  lab.eth0.inject(frag6(p, 0, p.data.length, false));
  lab.pump();
  t.deepEqual(lab.eth2.takeSent(), [forwarded(whole6(p))]);
});

test('local delivery gets the whole datagram; the local stack\'s fragments are reassembled before OUTPUT and sent as they came', (t) => {
  const r = recorder({ 4: true, 6: true });
  const lab = makeLab({ netfilter: r.nf });
  const toRouter = udp4({ src: '198.51.100.2', dst: '198.51.100.1', payload: 200, id: 5 });
  for (const [s, e] of CUTS) lab.eth0.inject(frag4(toRouter, s, e));
  lab.pump();
  t.deepEqual(lab.host.takeSent(), [toRouter]);
  t.deepEqual(r.seen, ['PREROUTING 228 dport=9', 'INPUT 228 dport=9']);
  r.seen.length = 0;
  const fromHost = udp4({ src: '192.0.2.1', dst: '192.0.2.2', payload: 200, id: 6 });
  const frags = CUTS.map(([s, e]) => frag4(fromHost, s, e));
  for (const f of frags) lab.host.inject(f);
  lab.pump();
  t.deepEqual(r.seen, ['OUTPUT 228 dport=9', 'POSTROUTING 228 dport=9']);
  t.deepEqual(lab.eth2.takeSent(), frags, 'no TTL change on output');
});

test('TAP: the reassembled datagram keeps the link header in front (mac match), egress fragments get Ethernet headers', (t) => {
  let srcMac = -1;
  const r = recorder({ 4: true, 6: true }, (h, ctx) => {
    if (h === 0 && ctx.l2off >= 0) srcMac = macAt(ctx.buf, ctx.l2off + 6);
    return Verdict.ACCEPT;
  });
  const lab = makeLab({ netfilter: r.nf });
  // learn the server's MAC on eth1 (packets towards it start resolution; the replies complete it)
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '203.0.113.2' }));
  lab.eth0.inject(udp6({ src: '2001:db8:c::2', dst: '2001:db8:5::2' }));
  lab.pump();
  lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x0806, arp(2, SERVER_MAC, '203.0.113.2', ETH1_MAC, '203.0.113.1')));
  lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x86dd, ndp(136, '2001:db8:5::2', '2001:db8:5::1', '2001:db8:5::2', SERVER_MAC, 0x60)));
  lab.pump();
  lab.eth1.takeSent();
  lab.eth0.takeSent();
  srcMac = -1;
  const fromServer = udp4({ src: '203.0.113.2', dst: '198.51.100.2', payload: 200, id: 11 });
  for (const [s, e] of CUTS) lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x0800, frag4(fromServer, s, e)));
  lab.pump();
  t.is(srcMac, SERVER_MAC);
  t.deepEqual(lab.eth0.takeSent(), CUTS.map(([s, e]) => forwarded(frag4(fromServer, s, e))));
  const p = v6({ src: '2001:db8:c::2', dst: '2001:db8:5::2' });
  const frags = CUTS.map(([s, e]) => frag6(p, s, e));
  for (const f of frags) lab.eth0.inject(f);
  lab.pump();
  const out = lab.eth1.takeSent();
  t.is(out.length, 3);
  for (let k = 0; k < 3; k++) {
    t.is(macAt(out[k], 0), SERVER_MAC);
    t.is(get16(out[k], 12), 0x86dd);
    t.deepEqual(out[k].subarray(14), forwarded(frags[k]));
  }
});

test('refused fragments are counted as reassembly drops; an incomplete datagram sends nothing', (t) => {
  const r = recorder({ 4: true, 6: true });
  const lab = makeLab({ netfilter: r.nf });
  lab.eth0.inject(frag4(D, 0, 48));
  lab.eth0.inject(frag4(D, 40, 96));
  lab.eth0.inject(frag4(D, 96, 208));
  lab.pump();
  t.is(lab.eth2.takeSent().length, 0);
  t.deepEqual(r.seen, []);
  t.deepEqual(lab.router.status().drops, { reassembly: 1 });
  t.is(lab.router.reassembly4.stats.overlaps, 1);
});
