/**
 * Conntrack NAT's core (router/conntrack/nat-core.ts) on byte fixtures:
 * checksums after every rewrite, the zero UDP checksum kept zero in both
 * families (nf_nat's udp_manip_pkt), port choice and range exhaustion
 * (the flow refused at confirm and counted as insert_failed), the null
 * binding moving a port another flow's translation took, and ICMP errors'
 * embedded packets translated back.
 */
import test from 'ava';
import { Hook, Verdict, type PacketContext } from '../xt/packet.js';
import { NatRangeFlag, NatSide, newNatRange, type NatRange } from '../xt/nat.js';
import { Conntrack } from '../router/conntrack.js';
import { NatCore } from '../router/conntrack/nat-core.js';
import { parseIpv4, parseIpv6 } from '../dataplane/addr.js';
import { pseudoSum4, pseudoSum6, verifies, checksum } from '../dataplane/checksum.js';
import { ctxOf, icmpMsg, ip4, ip6, udpDgram, tcpSeg } from './modules-fixtures.js';

function setup(seed = 1) {
  const ct = new Conntrack();
  let x = seed;
  const core = new NatCore(ct, () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0));
  ct.setNatHook(core);
  return { ct, core };
}

function range4(addr: string, lo = 0, hi = 0, flags = 0): NatRange {
  const r = newNatRange();
  r.flags = NatRangeFlag.MAP_IPS | flags | (lo || hi ? NatRangeFlag.PROTO_SPECIFIED : 0);
  r.minAddr[0] = r.maxAddr[0] = parseIpv4(addr);
  r.minPort = lo;
  r.maxPort = hi;
  return r;
}
function range6(addr: string): NatRange {
  const r = newNatRange();
  r.flags = NatRangeFlag.MAP_IPS;
  r.minAddr.set(parseIpv6(addr));
  r.maxAddr.set(parseIpv6(addr));
  return r;
}

/** A forwarded packet's walk: conntrack in, PREROUTING nat, an SNAT in POSTROUTING (if given), nat, confirm. */
function forward(ct: Conntrack, core: NatCore, bytes: Buffer, now: number, snat?: NatRange): { p: PacketContext; v: number } {
  const p = ctxOf(bytes, now);
  if (ct.in(p) !== Verdict.ACCEPT) return { p, v: Verdict.DROP };
  p.hook = Hook.PREROUTING;
  if (ct.nat(Hook.PREROUTING, p) !== Verdict.ACCEPT) return { p, v: Verdict.DROP };
  p.hook = Hook.POSTROUTING;
  if (snat && p.ct !== null && !p.ct.isReply(p)) core.setup(p, NatSide.SRC, snat);
  if (ct.nat(Hook.POSTROUTING, p) !== Verdict.ACCEPT) return { p, v: Verdict.DROP };
  return { p, v: ct.confirm(p) };
}

const l4ok4 = (b: Buffer) => verifies(b, 20, b.length - 20, b[9] === 1 ? 0 : pseudoSum4(b.readUInt32BE(12), b.readUInt32BE(16), b[9], b.length - 20));
const l4ok6 = (b: Buffer) => verifies(b, 40, b.length - 40, pseudoSum6(b, 8, b[6], b.length - 40));
const ipok = (b: Buffer) => checksum(b, 0, 20) === 0;

test('SNAT v4 TCP: source and port rewritten, IP and TCP checksums right; the reply is rewritten back', (t) => {
  const { ct, core } = setup();
  const { p, v } = forward(ct, core, ip4('10.0.0.1', '198.51.100.7', tcpSeg(1000, 80, 0x02)), 1, range4('192.0.2.1', 2000, 2000));
  t.is(v, Verdict.ACCEPT);
  const b = Buffer.from(p.buf.subarray(p.l3off, p.l3off + p.l3len));
  t.is(b.readUInt32BE(12), parseIpv4('192.0.2.1'));
  t.is(b.readUInt16BE(20), 2000);
  t.true(ipok(b));
  t.true(l4ok4(b));
  const r = forward(ct, core, ip4('198.51.100.7', '192.0.2.1', tcpSeg(80, 2000, 0x12, { ack: 1 })), 2).p;
  const rb = Buffer.from(r.buf.subarray(r.l3off, r.l3off + r.l3len));
  t.is(rb.readUInt32BE(16), parseIpv4('10.0.0.1'));
  t.is(rb.readUInt16BE(22), 1000);
  t.true(ipok(rb));
  t.true(l4ok4(rb));
});

test('a zero UDP checksum stays zero through NAT in both families; a real one is updated', (t) => {
  const { ct, core } = setup();
  const z4 = ip4('10.0.0.1', '198.51.100.7', udpDgram(1000, 53, [1, 2, 3]));
  z4.writeUInt16BE(0, 26);
  const a = forward(ct, core, z4, 1, range4('192.0.2.1', 3000, 3000)).p;
  t.is(a.buf.readUInt16BE(a.l4off + 6), 0);
  t.is(a.buf.readUInt16BE(a.l4off), 3000);
  const z6 = ip6('2001:db8::1', '2001:db8:5::2', udpDgram(1000, 53, [1, 2, 3]));
  z6.writeUInt16BE(0, 46);
  const b = forward(ct, core, z6, 1, range6('2001:db8:9::1')).p;
  t.is(b.buf.readUInt16BE(b.l4off + 6), 0, 'IPv6 UDP checksum 0 left alone, as nf_nat does');
  const c6 = ip6('2001:db8::1', '2001:db8:5::2', udpDgram(1001, 53, [1, 2, 3]));
  const c = forward(ct, core, c6, 1, range6('2001:db8:9::1')).p;
  const cb = Buffer.from(c.buf.subarray(c.l3off, c.l3off + c.l3len));
  t.not(cb.readUInt16BE(46), 0);
  t.true(l4ok6(cb));
});

test('port kept when free; two clients with the same source port: the second moves within 1024-65535', (t) => {
  const { ct, core } = setup();
  const masq = range4('192.0.2.1');
  const a = forward(ct, core, ip4('10.0.0.1', '198.51.100.7', udpDgram(5000, 53)), 1, masq).p;
  t.is(a.sport, 5000);
  const b = forward(ct, core, ip4('10.0.0.2', '198.51.100.7', udpDgram(5000, 53)), 1, masq).p;
  t.not(b.sport, 5000);
  t.true(b.sport >= 1024 && b.sport <= 65535);
  // a low source port stays in its class (1-511)
  forward(ct, core, ip4('10.0.0.1', '198.51.100.7', udpDgram(123, 53)), 1, masq);
  const d = forward(ct, core, ip4('10.0.0.2', '198.51.100.7', udpDgram(123, 53)), 1, masq).p;
  t.true(d.sport >= 1 && d.sport <= 511 && d.sport !== 123);
});

test('range exhausted: the new flow is bound to a taken tuple, refused at confirm and counted (insert_failed)', (t) => {
  const { ct, core } = setup();
  const r = range4('192.0.2.1', 20000, 20001);
  const seen = new Set<number>();
  for (const c of ['10.0.0.1', '10.0.0.2']) {
    const { p, v } = forward(ct, core, ip4(c, '198.51.100.7', udpDgram(41000, 7)), 1, r);
    t.is(v, Verdict.ACCEPT);
    seen.add(p.sport);
  }
  t.deepEqual([...seen].sort(), [20000, 20001]);
  const { v } = forward(ct, core, ip4('10.0.0.3', '198.51.100.7', udpDgram(41000, 7)), 1, r);
  t.is(v, Verdict.DROP);
  t.is(ct.insertFailed, 1);
  t.is(ct.count(1), 2, 'nothing already tracked was lost');
});

test('null binding: a flow whose tuple another flow\'s translation took gets another port', (t) => {
  const { ct, core } = setup();
  forward(ct, core, ip4('10.0.0.1', '198.51.100.7', udpDgram(1000, 53)), 1, range4('192.0.2.1', 2000, 2000));
  // the router's own 192.0.2.1:2000 -> same server: untranslated, its reply tuple is the first flow's
  const { p, v } = forward(ct, core, ip4('192.0.2.1', '198.51.100.7', udpDgram(2000, 53)), 1);
  t.is(v, Verdict.ACCEPT);
  t.not(p.sport, 2000);
  t.true(p.sport >= 1024);
});

test('ICMP error about a masqueraded flow: outer destination and the embedded packet translated back, checksums right', (t) => {
  const { ct, core } = setup();
  const out = forward(ct, core, ip4('10.0.0.1', '198.51.100.7', udpDgram(5000, 33434)), 1, range4('192.0.2.1', 6000, 6000)).p;
  const quoted = Buffer.from(out.buf.subarray(out.l3off, out.l3off + 28));
  const err = ip4('203.0.113.9', '192.0.2.1', icmpMsg(11, 0, [0, 0, 0, 0], [...quoted]));
  const p = forward(ct, core, err, 2).p;
  const b = Buffer.from(p.buf.subarray(p.l3off, p.l3off + p.l3len));
  t.is(b.readUInt32BE(16), parseIpv4('10.0.0.1'));
  t.is(b.readUInt32BE(28 + 12), parseIpv4('10.0.0.1'), 'embedded source');
  t.is(b.readUInt16BE(48), 5000, 'embedded source port');
  t.true(ipok(b));
  t.true(checksum(b, 28, 20) === 0, 'embedded IP header checksum');
  t.true(verifies(b, 20, b.length - 20), 'ICMP checksum');
});
