/**
 * REJECT through the real router (in-memory devices, the real engine and
 * conntrack): what reaches the wire. REJECT itself only decides and builds
 * RSTs (test/modules-targets.test.ts); the ICMP error, its source address,
 * the one rate limiter it shares with the router's own errors, and the
 * attachment of every reply to the rejected packet's flow belong to the
 * router's services, as icmp_send and nf_ct_attach do in the kernel. These
 * are the rows the module tests pinned when REJECT built its own errors,
 * now checked where the work is done; test/differential-reject.test.ts
 * compares the same replies with the kernel's in namespaces.
 */
import test from 'ava';
import { Conntrack } from '../router/conntrack.js';
import { createNetfilter, netfilterCommands } from '../router/netfilter/index.js';
import { splitLine } from '../router/netfilter/commands.js';
import { verifies, sum16, fold, pseudoSum4, pseudoSum6 } from '../dataplane/checksum.js';
import { ip4, makeLab, udp4, udp6, type Lab } from './router-packets.js';

/** A TCP segment over IPv4 or IPv6 with valid checksums. */
function tcp(family: 4 | 6, src: string, dst: string, sport: number, dport: number, flags: number, seq = 1000): Buffer {
  const th = Buffer.alloc(20);
  th.writeUInt16BE(sport, 0);
  th.writeUInt16BE(dport, 2);
  th.writeUInt32BE(seq, 4);
  th[12] = 5 << 4;
  th[13] = flags;
  th.writeUInt16BE(512, 14);
  const base = family === 4 ? udp4({ src, dst }) : udp6({ src, dst });
  const hl = family === 4 ? 20 : 40;
  const pkt = Buffer.concat([base.subarray(0, hl), th]);
  if (family === 4) {
    pkt[9] = 6;
    pkt.writeUInt16BE(pkt.length, 2);
    pkt.writeUInt16BE(0, 10);
    pkt.writeUInt16BE(0xffff - fold(sum16(pkt, 0, 20, 0)), 10);
    pkt.writeUInt16BE(0xffff - fold(sum16(pkt, 20, 20, pseudoSum4(pkt.readUInt32BE(12), pkt.readUInt32BE(16), 6, 20))), 36);
  } else {
    pkt[6] = 6;
    pkt.writeUInt16BE(20, 4);
    pkt.writeUInt16BE(0xffff - fold(sum16(pkt, 40, 20, pseudoSum6(pkt, 8, 6, 20))), 56);
  }
  return pkt;
}

async function rejectLab(rules: string[], opts: { noDefault?: boolean } = {}): Promise<Lab & { run(line: string): Promise<string> }> {
  const lab = makeLab(opts);
  const nf = await createNetfilter({ services: lab.router.services, conntrack: new Conntrack({ max: 1024 }) });
  lab.router.setNetfilter(nf);
  const commands = netfilterCommands(nf);
  const run = async (line: string) => {
    const words = splitLine(line, 0);
    const r = await commands[words[0]](words.slice(1), null);
    if (r.status !== 0) throw new Error(`${line}: ${r.stderr}`);
    return r.stdout;
  };
  for (const line of rules) await run(line);
  return Object.assign(lab, { run });
}

test('INPUT: the ICMP error comes from the address that was contacted, built as icmp_send builds it', async (t) => {
  const lab = await rejectLab(['iptables -A INPUT -p udp --dport 9 -j REJECT']);
  // The router's address on the other link, reached through eth0.
  const orig = udp4({ src: '198.51.100.2', dst: '203.0.113.1', dport: 9, ttl: 60, payload: 4 });
  orig[1] = 0x10; // TOS
  orig.writeUInt16BE(0, 10);
  orig.writeUInt16BE(0xffff - fold(sum16(orig, 0, 20, 0)), 10);
  lab.eth0.inject(orig);
  lab.pump();
  const sent = lab.eth0.takeSent();
  t.is(sent.length, 1);
  const r = Buffer.from(sent[0]);
  t.is(r.length, 28 + orig.length);
  t.is(r[0], 0x45);
  t.is(r[1], 0xc0 | 0x10, 'TOS: original TOS bits | internetwork control precedence');
  t.is(r.readUInt16BE(2), r.length);
  t.is(r[8], 64);
  t.is(r[9], 1);
  t.is(r.readUInt32BE(12), ip4('203.0.113.1'), 'from the address the packet was sent to');
  t.is(r.readUInt32BE(16), ip4('198.51.100.2'));
  t.true(verifies(r, 0, 20), 'IP header checksum');
  t.deepEqual([r[20], r[21]], [3, 3]);
  t.true(verifies(r, 20, r.length - 20), 'ICMP checksum');
  t.deepEqual(r.subarray(28), orig, 'the whole original is quoted');
});

test('FORWARD: the ICMP error comes from the incoming interface address', async (t) => {
  const lab = await rejectLab(['iptables -A FORWARD -p udp -j REJECT --reject-with icmp-host-prohibited']);
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2' }));
  lab.pump();
  const sent = lab.eth0.takeSent();
  t.is(sent.length, 1);
  t.is(Buffer.from(sent[0]).readUInt32BE(12), ip4('198.51.100.1'));
  t.deepEqual([sent[0][20], sent[0][21]], [3, 10]);
  t.is(lab.eth2.takeSent().length, 0, 'the rejected packet is dropped');
});

test('IPv6 default: ICMPv6 port unreachable (1/4) from the contacted address, quoting the packet, valid checksum', async (t) => {
  const lab = await rejectLab(['ip6tables -A INPUT -p udp -j REJECT']);
  const orig = udp6({ src: '2001:db8:c::2', dst: '2001:db8:5::1', payload: 2 });
  lab.eth0.inject(orig);
  lab.pump();
  const sent = lab.eth0.takeSent();
  t.is(sent.length, 1);
  const r = Buffer.from(sent[0]);
  t.is(r.length, 48 + orig.length);
  t.is(r[6], 58);
  t.deepEqual(r.subarray(8, 24), orig.subarray(24, 40), 'source = the address that was contacted');
  t.deepEqual(r.subarray(24, 40), orig.subarray(8, 24));
  t.deepEqual([r[40], r[41]], [1, 4]);
  t.is(fold(sum16(r, 40, r.length - 40, pseudoSum6(r, 8, 58, r.length - 40))), 0xffff);
  t.deepEqual(r.subarray(48), orig);
});

test('ICMP errors are rate-limited per peer like icmp_send (burst 6, then 1 per second); RSTs are not', async (t) => {
  const lab = await rejectLab(['iptables -A INPUT -p udp -j REJECT', 'iptables -A INPUT -p tcp -j REJECT --reject-with tcp-reset']);
  for (let i = 0; i < 8; i++) lab.eth0.inject(udp4({ src: '198.51.100.7', dst: '198.51.100.1', sport: 1000 + i, dport: 53 }));
  lab.pump();
  t.is(lab.eth0.takeSent().length, 6, 'the 7th and 8th within the burst are not sent');
  lab.clock.now += 999;
  lab.eth0.inject(udp4({ src: '198.51.100.7', dst: '198.51.100.1', sport: 2000, dport: 53 }));
  lab.pump();
  t.is(lab.eth0.takeSent().length, 0, 'less than a second later: still limited');
  lab.clock.now += 1;
  lab.eth0.inject(udp4({ src: '198.51.100.7', dst: '198.51.100.1', sport: 2001, dport: 53 }));
  lab.pump();
  t.is(lab.eth0.takeSent().length, 1, 'one more after a second');
  lab.eth0.inject(udp4({ src: '198.51.100.8', dst: '198.51.100.1', sport: 2002, dport: 53 }));
  lab.pump();
  t.is(lab.eth0.takeSent().length, 1, 'another peer has its own bucket');
  for (let i = 0; i < 8; i++) lab.eth0.inject(tcp(4, '198.51.100.9', '198.51.100.1', 3000 + i, 22, 0x02));
  lab.pump();
  const rsts = lab.eth0.takeSent();
  t.is(rsts.length, 8);
  t.true(rsts.every((r) => r[9] === 6 && r[33] === 0x14));
});

test('one limiter: REJECT errors and the router\'s own errors to a peer share its burst', async (t) => {
  const lab = await rejectLab(['iptables -A FORWARD -p udp --dport 9 -j REJECT']);
  for (let i = 0; i < 3; i++) lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', sport: 1000 + i, dport: 9 }));
  // TTL 1: the router's own time exceeded (icmp_send from ip_forward, the same per-peer bucket).
  for (let i = 0; i < 5; i++) lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', sport: 2000 + i, dport: 7, ttl: 1 }));
  lab.pump();
  const sent = lab.eth0.takeSent();
  t.deepEqual(
    sent.map((r) => `${r[20]}/${r[21]}`),
    ['3/3', '3/3', '3/3', '11/0', '11/0', '11/0'],
  );
});

test('replies cross OUTPUT/POSTROUTING attached to the rejected flow (RELATED, reply direction) with their out-interface', async (t) => {
  const lab = await rejectLab([
    'iptables -A FORWARD -p udp --dport 9 -j REJECT',
    'iptables -A FORWARD -p tcp --dport 9 -j REJECT --reject-with tcp-reset',
    'iptables -t mangle -A OUTPUT -m state --state RELATED',
    'iptables -t mangle -A OUTPUT -m state --state NEW,ESTABLISHED,INVALID,UNTRACKED',
    'iptables -t mangle -A OUTPUT -m conntrack --ctdir REPLY -o eth0',
    'iptables -t mangle -A POSTROUTING -m conntrack --ctstate RELATED --ctdir REPLY -o eth0',
  ]);
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', dport: 9 }));
  lab.eth0.inject(tcp(4, '198.51.100.2', '192.0.2.2', 4000, 9, 0x02));
  lab.pump();
  t.is(lab.eth0.takeSent().length, 2);
  const counts = (await lab.run('iptables-save -c -t mangle'))
    .split('\n')
    .filter((l) => l.startsWith('['))
    .map((l) => l.replace(/ .*/, ''));
  t.deepEqual(counts, ['[2:114]', '[0:0]', '[2:114]', '[2:114]']);
});
