/**
 * Gateway-mode NAT port choice (router/conntrack/nat-core.ts hostPorts,
 * docs/gateway.md "NAT"): a source translation to an address the gateway's
 * kernel owns takes its port / ICMP echo id from the reserved range (the
 * replies are diverted into xtr by port), intersected with --to-ports when
 * they meet; translations to other addresses and without hostPorts are as
 * the kernel's (the source port kept when free).
 */
import test from 'ava';
import { Hook, Verdict, type PacketContext } from '../xt/packet.js';
import { NatRangeFlag, NatSide, newNatRange, type NatRange } from '../xt/nat.js';
import { Conntrack } from '../router/conntrack.js';
import { NatCore, type HostNatPorts } from '../router/conntrack/nat-core.js';
import { parseIpv4 } from '../dataplane/addr.js';
import { ctxOf, icmpMsg, ip4, udpDgram, tcpSeg } from './modules-fixtures.js';

const GW = '10.2.0.1';
const host: HostNatPorts = { lo: 61000, hi: 65534, owns: (f, a) => f === 4 && a[0] >>> 0 === parseIpv4(GW) >>> 0 };

function range4(addr: string, lo = 0, hi = 0): NatRange {
  const r = newNatRange();
  r.flags = NatRangeFlag.MAP_IPS | (lo || hi ? NatRangeFlag.PROTO_SPECIFIED : 0);
  r.minAddr[0] = r.maxAddr[0] = parseIpv4(addr);
  r.minPort = lo;
  r.maxPort = hi;
  return r;
}

function snat(hostPorts: HostNatPorts | null, bytes: Buffer, r: NatRange): PacketContext {
  const ct = new Conntrack();
  let x = 7;
  const core = new NatCore(ct, () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0));
  core.hostPorts = hostPorts;
  ct.setNatHook(core);
  const p = ctxOf(bytes, 1);
  if (ct.in(p) !== Verdict.ACCEPT) throw new Error('conntrack refused');
  p.hook = Hook.PREROUTING;
  ct.nat(Hook.PREROUTING, p);
  p.hook = Hook.POSTROUTING;
  core.setup(p, NatSide.SRC, r);
  ct.nat(Hook.POSTROUTING, p);
  if (ct.confirm(p) !== Verdict.ACCEPT) throw new Error('confirm refused');
  return p;
}

const sport = (b: Buffer) => b.readUInt16BE(20);
const echoId = (b: Buffer) => b.readUInt16BE(24);

const cases: [string, HostNatPorts | null, Buffer, NatRange, (port: number) => boolean][] = [
  ['UDP to the gateway address: port moved into the range', host, ip4('10.1.0.2', '10.2.0.2', udpDgram(40000, 7001)), range4(GW), (p) => p >= 61000 && p <= 65534],
  ['TCP to the gateway address: port moved into the range', host, ip4('10.1.0.2', '10.2.0.2', tcpSeg(40000, 80, 0x02)), range4(GW), (p) => p >= 61000 && p <= 65534],
  ['a client port already in the range is kept', host, ip4('10.1.0.2', '10.2.0.2', udpDgram(62000, 7001)), range4(GW), (p) => p === 62000],
  ['--to-ports meeting the range: the intersection', host, ip4('10.1.0.2', '10.2.0.2', udpDgram(40000, 7001)), range4(GW, 60000, 61009), (p) => p >= 61000 && p <= 61009],
  ['--to-ports outside the range: the range', host, ip4('10.1.0.2', '10.2.0.2', udpDgram(40000, 7001)), range4(GW, 1000, 2000), (p) => p >= 61000 && p <= 65534],
  ['SNAT to an address the gateway does not own: kernel behaviour (port kept)', host, ip4('10.1.0.2', '10.2.0.2', udpDgram(40000, 7001)), range4('192.0.2.9'), (p) => p === 40000],
  ['no hostPorts (link mode): port kept', null, ip4('10.1.0.2', '10.2.0.2', udpDgram(40000, 7001)), range4(GW), (p) => p === 40000],
];

for (const [name, hp, bytes, r, ok] of cases) {
  test(name, (t) => {
    const p = snat(hp, Buffer.from(bytes), r);
    const b = Buffer.from(p.buf.subarray(p.l3off, p.l3off + p.l3len));
    t.is(b.readUInt32BE(12) >>> 0, parseIpv4(r.minAddr[0] === parseIpv4(GW) ? GW : '192.0.2.9') >>> 0);
    t.true(ok(sport(b)), `port ${sport(b)}`);
  });
}

test('ICMP echo to the gateway address: the echo id moved into the range', (t) => {
  const p = snat(host, ip4('10.1.0.2', '10.2.0.2', icmpMsg(8, 0, [0x12, 0x34, 0, 1])), range4(GW));
  const b = Buffer.from(p.buf.subarray(p.l3off, p.l3off + p.l3len));
  const id = echoId(b);
  t.true(id >= 61000 && id <= 65534, `id ${id}`);
});
