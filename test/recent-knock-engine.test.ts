/**
 * Seed 001's port-knocking script and seed 003's recipes, loaded through
 * the real rule engine (`iptables` argv), with packets parsed from bytes
 * walking PREROUTING and INPUT as the router runs them.
 */
import test from 'ava';
import { Hook, Verdict, type InterfaceRef, type PacketContext } from '../xt/packet.js';
import { createNetfilter, runIptables, runProc } from '../router/netfilter/index.js';
import { Conntrack } from '../router/conntrack.js';
import { RecordingServices } from './helpers/xt-harness.js';
import { ctxOf, ip4, tcpSeg, udpDgram } from './modules-fixtures.js';
import { buildIcmp4Error } from '../dataplane/build.js';
import { parseIpv4 } from '../dataplane/addr.js';

const ETH0: InterfaceRef = { name: 'eth0', index: 1, kind: 'tun', mtu: 1500, mac: null };
const ROUTER = '192.0.2.1';

async function engine(script: string) {
  const sent: Buffer[] = [];
  const logs: string[] = [];
  const clock = { now: 0 };
  // The harness's recording services (every RouterServices call answered), with this test's own views of emits, logs and time.
  // An ICMP error REJECT asks for is built as the router builds it (the codec's builder, from the router's address), with no rate limit.
  const icmpError = (pkt: PacketContext, type: number, code: number, info: number) => {
    const out = Buffer.alloc(576);
    const n = buildIcmp4Error(out, 0, pkt, type, code, info, parseIpv4(ROUTER));
    if (n > 0) sent.push(out.subarray(0, n));
    return n > 0;
  };
  const services = Object.assign(new RecordingServices(), { emitLocal: (b: Uint8Array, o: number, n: number) => void sent.push(Buffer.from(b.subarray(o, o + n))), icmpError, log: (_l: number, s: string) => void logs.push(s), now: () => clock.now });
  const nf = await createNetfilter({ services, conntrack: new Conntrack() });
  for (const line of script.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))) {
    const r = runIptables(nf, 4, line.match(/"[^"]*"|\S+/g)!.map((w) => w.replace(/^"|"$/g, '')));
    if (r.status !== 0) throw new Error(`${line}: ${r.stderr}`);
  }
  /** One packet from `src` into the router: PREROUTING then INPUT. */
  const input = (bytes: Buffer): [Verdict, PacketContext] => {
    const p = ctxOf(bytes, clock.now);
    p.inIf = ETH0;
    let v = nf.hook(Hook.PREROUTING, p);
    if (v === Verdict.ACCEPT) v = nf.hook(Hook.INPUT, p);
    return [v, p];
  };
  return { nf, sent, logs, clock, input };
}

const SEED_001 = `
-P INPUT DROP
-A INPUT -i lo -j ACCEPT
-A INPUT -s 10.0.0.0/8 -i eth0 -j DROP
-N icmp-packets
-A icmp-packets -p icmp --icmp-type redirect -j DROP
-A icmp-packets -p icmp --icmp-type echo-request -j ACCEPT
-N syn-flood
-A syn-flood -m limit --limit 1/s --limit-burst 4 -j RETURN
-A syn-flood -j DROP
-N port-knocking
-N knocking-okey
-N knocking-oops
-A port-knocking -p tcp --dport 1223 -m recent --rcheck --hitcount 1 -j knocking-oops
-A port-knocking -p tcp --dport 1223 -m recent --set -j REJECT --reject-with host-prohib
-A port-knocking -p tcp --dport 569 -m recent --rcheck --hitcount 2 -j knocking-oops
-A port-knocking -p tcp --dport 569 -m recent --update --hitcount 1 -j REJECT --reject-with host-prohib
-A port-knocking -p tcp --dport 715 -m recent --rcheck --hitcount 3 -j knocking-oops
-A port-knocking -p tcp --dport 715 -m recent --update --hitcount 2 -j REJECT --reject-with host-prohib
-A port-knocking -p tcp -m recent --remove
-A knocking-okey -m state --state NEW -p tcp -m recent --remove -j ACCEPT
-A knocking-oops -m state --state NEW -p tcp -m recent --remove
-A INPUT -i eth0 -p icmp -j icmp-packets
-A INPUT -p tcp -m state --state ESTABLISHED,RELATED -j ACCEPT
-A INPUT -i eth0 -p tcp --syn -j syn-flood
-A INPUT -i eth0 -p tcp --dport 22 -m state --state NEW -m recent --rcheck --seconds 20 --hitcount 3 -j knocking-okey
-A INPUT -i eth0 -p tcp -j port-knocking
`;

const SYN = 0x02;
const ACK = 0x10;

test('seed 001: the right knock sequence opens ssh for that client only; wrong order, interleaving, slowness do not', async (t) => {
  const e = await engine(SEED_001);
  let sport = 30000;
  const syn = (client: string, dport: number) => {
    e.clock.now += 1100; // a knock client waits for each REJECT; also keeps syn-flood's 1/s limit happy
    return e.input(ip4(client, ROUTER, tcpSeg(++sport, dport, SYN)))[0];
  };
  const A = '198.51.100.7';
  const B = '198.51.100.8';
  t.is(syn(A, 22), Verdict.DROP, 'closed before knocking');
  for (const port of [1223, 569, 715]) t.is(syn(A, port), Verdict.DROP, `knock ${port} is rejected`);
  t.is(e.sent.length, 3);
  t.deepEqual(e.sent.map((b) => [b[20], b[21]]), [[3, 10], [3, 10], [3, 10]], 'icmp host-prohibited for each knock');
  t.is(syn(B, 22), Verdict.DROP, 'another client is unaffected');
  const [open, p] = e.input(ip4(A, ROUTER, tcpSeg(++sport, 22, SYN)));
  t.is(open, Verdict.ACCEPT, 'ssh opens after 1223, 569, 715');
  // The rest of that connection is ESTABLISHED (the reply leaves through OUTPUT/POSTROUTING).
  const reply = ctxOf(ip4(ROUTER, A, tcpSeg(22, sport, SYN | ACK)), e.clock.now);
  reply.outIf = ETH0;
  reply.locallyGenerated = true;
  t.is(e.nf.hook(Hook.OUTPUT, reply), Verdict.ACCEPT);
  t.is(e.nf.hook(Hook.POSTROUTING, reply), Verdict.ACCEPT);
  t.is(e.input(ip4(A, ROUTER, tcpSeg(sport, 22, ACK)))[0], Verdict.ACCEPT);
  void p;
  t.is(syn(A, 22), Verdict.DROP, 'knocking-okey removed the entry: a new connection needs a new knock');
  // wrong order
  for (const port of [569, 1223, 715]) syn(A, port);
  t.is(syn(A, 22), Verdict.DROP, 'wrong order');
  // interleaved wrong port
  runProc(e.nf, ['write', 'net/xt_recent/DEFAULT', '/'], null);
  for (const port of [1223, 569, 8080, 715]) syn(A, port);
  t.is(syn(A, 22), Verdict.DROP, 'interleaved wrong port');
  // too slow: more than 20 s between the first knock and ssh
  syn(A, 1223);
  e.clock.now += 10_000;
  syn(A, 569);
  e.clock.now += 10_000;
  syn(A, 715);
  t.is(syn(A, 22), Verdict.DROP, 'too slow');
  // and once more, in time
  runProc(e.nf, ['write', 'net/xt_recent/DEFAULT', '/'], null);
  for (const port of [1223, 569, 715]) syn(A, port);
  t.is(syn(A, 22), Verdict.ACCEPT);
});

test('seed 003: log once then suppress, auth port via procfs write, quick IDS', async (t) => {
  const e = await engine(`
-A INPUT -p udp --dport 138 -m recent --name udp-138 --rcheck --seconds 300 -j DROP
-A INPUT -p udp --dport 138 -m recent --name udp-138 --set
-A INPUT -j LOG --log-prefix "INPUT-drop "
-A INPUT -j DROP
-A FORWARD -m recent --name noplacelike --rcheck --seconds 60 -j DROP
-A FORWARD -i eth0 -d 127.0.0.0/8 -m recent --name noplacelike --set -j DROP
-A FORWARD -m recent --name noplacelike --update --seconds 60 -j DROP
-N auth
-A auth -p tcp --dport 80 -m recent --name authok --rcheck -j ACCEPT
-A auth -j DROP
`);
  const bcast = () => e.input(ip4('198.51.100.9', ROUTER, udpDgram(138, 138)));
  e.clock.now = 1000;
  t.is(bcast()[0], Verdict.DROP);
  t.is(e.logs.length, 1, 'the first one is logged');
  t.true(e.logs[0].startsWith('INPUT-drop IN=eth0 OUT= MAC= SRC=198.51.100.9 DST=192.0.2.1 LEN=28 '));
  for (let i = 0; i < 5; i++) bcast();
  t.is(e.logs.length, 1, 'the rest are dropped before the LOG rule');
  e.clock.now += 301_000;
  bcast();
  t.is(e.logs.length, 2, 'after 300 s quiet, the next one is logged again');

  // Auth port: the authenticator writes +IP into the table; no rule change needed.
  const auth = e.nf.proc.get('net/xt_recent/authok');
  t.truthy(auth);
  t.is(runProc(e.nf, ['write', 'net/xt_recent/authok', '198.51.100.20'], null).status, 1, 'a bare address is refused, as on Linux');
  t.is(runProc(e.nf, ['write', 'net/xt_recent/authok', '+198.51.100.20'], null).status, 0);
  t.regex(runProc(e.nf, ['cat', 'net/xt_recent/authok'], null).stdout, /^src=198\.51\.100\.20 ttl: 0 /);

  // Quick & dirty IDS in FORWARD: a spoofed 127/8 destination blacklists the source for 60 s.
  const fwd = (src: string, dst: string) => {
    const p = ctxOf(ip4(src, dst, tcpSeg(1, 80, SYN)), e.clock.now);
    p.inIf = ETH0;
    p.outIf = { ...ETH0, name: 'eth1', index: 2 };
    e.nf.hook(Hook.PREROUTING, p);
    return e.nf.hook(Hook.FORWARD, p);
  };
  t.is(fwd('203.0.113.5', '198.18.0.1'), Verdict.ACCEPT);
  t.is(fwd('203.0.113.5', '127.0.0.1'), Verdict.DROP);
  t.is(fwd('203.0.113.5', '198.18.0.1'), Verdict.DROP, 'blacklisted');
  t.is(fwd('203.0.113.6', '198.18.0.1'), Verdict.ACCEPT, 'others pass');
  e.clock.now += 61_000;
  t.is(fwd('203.0.113.5', '198.18.0.1'), Verdict.ACCEPT, 'forgotten after 60 s without packets');
});
