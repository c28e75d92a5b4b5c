/**
 * Differential tests, REJECT's replies as part of the original's flow: the
 * kernel's nf_send_reset / nf_send_unreach attach the RST or ICMP error to the
 * rejected packet's conntrack entry (nf_ct_attach), so the reply crosses
 * OUTPUT and POSTROUTING with a conntrack state and direction and with its
 * out-interface set. Each case rejects in INPUT or FORWARD (tcp-reset and
 * port-unreachable, IPv4 and IPv6, new flows and established ones, towards
 * the client and the server) under the same counting rules in PREROUTING,
 * OUTPUT and POSTROUTING (`-m state`, `-m conntrack --ctstate/--ctdir/--ctstatus`,
 * `-o`), and compares per-rule counters and the replies' bytes with the
 * kernel's (the IPv4 id and header checksum, and the IPv6 flow label, masked:
 * they differ by design). Follow-up packets show the flow survives the reply
 * as it does in the kernel (a RST the router sends does not close it).
 */
import test from 'ava';
import { registerDifferentialTests, type DiffCase, type Family } from './helpers/kernel-router.js';

const STATES = ['NEW', 'ESTABLISHED', 'RELATED', 'INVALID', 'UNTRACKED'];

/** Rules without a target: they only count what crosses PREROUTING, OUTPUT and POSTROUTING. */
function countingRules(): Pick<DiffCase['rules'], 'mangle' | 'filter'> & { mangle: string[]; filter: string[] } {
  return {
    mangle: [
      ...STATES.map((s) => `-A PREROUTING -m state --state ${s}`),
      ...STATES.map((s) => `-A OUTPUT -m state --state ${s}`),
      '-A OUTPUT -m conntrack --ctdir ORIGINAL',
      '-A OUTPUT -m conntrack --ctdir REPLY',
      '-A OUTPUT -m conntrack --ctstatus CONFIRMED',
      '-A OUTPUT -o eth0',
      '-A OUTPUT -o eth1',
      ...STATES.map((s) => `-A POSTROUTING -m conntrack --ctstate ${s}`),
      '-A POSTROUTING -m conntrack --ctdir ORIGINAL',
      '-A POSTROUTING -m conntrack --ctdir REPLY',
      '-A POSTROUTING -m conntrack --ctstatus CONFIRMED',
      '-A POSTROUTING -o eth0',
      '-A POSTROUTING -o eth1',
      '-A POSTROUTING -m conntrack --ctstate RELATED --ctdir REPLY -o eth0',
      '-A POSTROUTING -m conntrack --ctstate RELATED --ctdir REPLY -o eth1',
    ],
    filter: [
      '-A OUTPUT -m conntrack --ctstate RELATED --ctdir REPLY -o eth0',
      '-A OUTPUT -m conntrack --ctstate RELATED --ctdir REPLY -o eth1',
      '-A OUTPUT -m conntrack --ctstate RELATED --ctdir ORIGINAL',
      '-A OUTPUT -m state --state NEW,INVALID,UNTRACKED',
      '-A OUTPUT -m state --state ESTABLISHED',
    ],
  };
}

/** Ones' complement sum of 16-bit words (odd tail padded), unfolded. */
function sum16(b: Buffer, from: number, to: number, seed = 0): number {
  let sum = seed;
  for (let i = from; i < to; i += 2) sum += (b[i]! << 8) | (i + 1 < to ? b[i + 1]! : 0);
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/**
 * One received packet as compared: IPv4 id and header checksum and the IPv6
 * flow label zeroed (they differ by design), and a TCP/UDP checksum replaced
 * by `ok` when it is right. The kernel's veth hands its own RSTs over with
 * CHECKSUM_PARTIAL, so the receiver reads the pseudo-header sum instead of the
 * final checksum: that counts as right too (the sender's NIC would finish it).
 * A wrong checksum stays in the bytes and shows as a difference.
 */
function maskByDesign(hex: string): string {
  const b = Buffer.from(hex, 'hex');
  const version = b[0]! >> 4;
  let l4: number;
  let proto: number;
  let pseudo: number;
  if (version === 4 && b.length >= 20) {
    b.writeUInt16BE(0, 4);
    b.writeUInt16BE(0, 10);
    l4 = (b[0]! & 15) * 4;
    proto = b[9]!;
    pseudo = sum16(b, 12, 20, proto + (b.length - l4));
    if ((b.readUInt16BE(6) & 0x3fff) !== 0) return b.toString('hex'); // a fragment: its L4 checksum covers the whole datagram
  } else if (version === 6 && b.length >= 40) {
    b[1] = b[1]! & 0xf0;
    b[2] = 0;
    b[3] = 0;
    l4 = 40;
    proto = b[6]!;
    pseudo = sum16(b, 8, 40, proto + (b.length - l4));
  } else {
    return hex;
  }
  const at = proto === 6 ? l4 + 16 : proto === 17 ? l4 + 6 : -1;
  if (at < 0 || at + 2 > b.length) return b.toString('hex');
  const field = b.readUInt16BE(at);
  const full = fold(sum16(b, l4, b.length, pseudo));
  const ok = full === 0xffff || (proto === 17 && version === 4 && field === 0) || field === fold(pseudo);
  const text = b.toString('hex');
  return ok ? `${text.slice(0, at * 2)}<ok>${text.slice(at * 2 + 4)}` : text;
}

interface Lab {
  /** scapy layer, its TTL field, and the client/server/router names (agent.py's ENV; rs: the router's server-side address). */
  ip: string;
  ttl: string;
  c: string;
  s: string;
  r: string;
  rs: string;
  portUnreach: string;
}

function casesFor(family: Family): DiffCase[] {
  const L: Lab =
    family === 4
      ? { ip: 'IP', ttl: 'ttl', c: 'C', s: 'S', r: 'R', rs: 'RS', portUnreach: 'icmp-port-unreachable' }
      : { ip: 'IPv6', ttl: 'hlim', c: 'C6', s: 'S6', r: 'R6', rs: 'RS6', portUnreach: 'icmp6-port-unreachable' };
  const v = `v${family}`;
  const udp = (src: string, dst: string, sport: string, dport: string | number, payload = 0) =>
    `${L.ip}(src=${src},dst=${dst})/UDP(sport=${sport},dport=${dport})${payload ? `/Raw(b'x'*${payload})` : ''}`;
  const tcp = (src: string, dst: string, sport: string | number, dport: string | number, flags: string, extra = '', payload = '') =>
    `${L.ip}(src=${src},dst=${dst})/TCP(sport=${sport},dport=${dport},flags='${flags}'${extra})${payload ? `/Raw(b'${payload}')` : ''}`;
  const client = (...packets: string[]) => ({ from: 'client' as const, packets });
  const server = (...packets: string[]) => ({ from: 'server' as const, packets });
  const withCounting = (mangle: string[], filter: string[]): DiffCase['rules'] => {
    const count = countingRules();
    return { mangle: [...count.mangle, ...mangle], filter: [...filter, ...count.filter] };
  };
  return [
    {
      // Sent twice: the rejected SYN's entry is never confirmed, so the second SYN is NEW again.
      name: `${v} FORWARD tcp-reset for a SYN: the RST in OUTPUT/POSTROUTING`,
      rules: withCounting([], ['-A FORWARD -p tcp --dport 9 -j REJECT --reject-with tcp-reset']),
      steps: [client(tcp(L.c, L.s, '$P', 9, 'S', ',seq=1000')), client(tcp(L.c, L.s, '$P', 9, 'S', ',seq=1000'))],
      expect: { server: 0, client: 2 },
    },
    {
      name: `${v} FORWARD tcp-reset inside an established flow, and the flow after it`,
      rules: withCounting([], ['-A FORWARD -p tcp --dport 80 -m state --state ESTABLISHED --tcp-flags PSH PSH -j REJECT --reject-with tcp-reset']),
      steps: [
        client(tcp(L.c, L.s, '$P', 80, 'S', ',seq=1000,window=8192')),
        server(tcp(L.s, L.c, 80, '$P', 'SA', ',seq=5000,ack=1001,window=8192')),
        client(tcp(L.c, L.s, '$P', 80, 'A', ',seq=1001,ack=5001,window=8192')),
        client(tcp(L.c, L.s, '$P', 80, 'PA', ',seq=1001,ack=5001,window=8192', 'hello')),
        client(tcp(L.c, L.s, '$P', 80, 'A', ',seq=1001,ack=5001,window=8192')),
        server(tcp(L.s, L.c, 80, '$P', 'A', ',seq=5001,ack=1001,window=8192')),
      ],
      expect: { server: 3, client: 3 },
    },
    {
      // The kernel limits ICMP errors per destination (burst 6): at most 2 per destination per case.
      name: `${v} FORWARD ${L.portUnreach} for new UDP flows, towards the client and the server`,
      rules: withCounting([], [`-A FORWARD -p udp --dport 9 -j REJECT --reject-with ${L.portUnreach}`]),
      steps: [client(udp(L.c, L.s, '$P', 9), udp(L.c, L.s, '$P', 9, 20)), server(udp(L.s, L.c, '$P', 9))],
      expect: { server: 1, client: 2 },
    },
    {
      name: `${v} FORWARD ${L.portUnreach} inside an established UDP flow, and the flow after it`,
      rules: withCounting([], [`-A FORWARD -p udp --dport 53 -m state --state ESTABLISHED -i eth0 -j REJECT --reject-with ${L.portUnreach}`]),
      steps: [
        client(udp(L.c, L.s, '$P', 53)),
        server(udp(L.s, L.c, '53', '$P')),
        client(udp(L.c, L.s, '$P', 53, 8)),
        server(udp(L.s, L.c, '53', '$P')),
      ],
      expect: { server: 1, client: 3 },
    },
    {
      name: `${v} INPUT tcp-reset and ${L.portUnreach} (the router's own addresses)`,
      rules: withCounting(
        [],
        [
          '-A INPUT -p tcp --dport 10 -j REJECT --reject-with tcp-reset',
          `-A INPUT -p udp --dport 9 -j REJECT --reject-with ${L.portUnreach}`,
        ],
      ),
      steps: [client(tcp(L.c, L.r, '$P', 10, 'S', ',seq=77'), udp(L.c, L.r, '$P', 9), udp(L.c, L.rs, '$P', 9))],
      // The last one went to the router's address on the server side: icmp_send answers from it.
      expect: { server: 0, client: 3 },
    },
    {
      // Last, after a pause that refills the client's bucket (6 tokens, one a second at the slowest):
      // REJECT's errors and the router's own (hop limit exceeded) spend the same per-peer burst of 6.
      name: `${v} one ICMP rate limiter: REJECT's errors and the router's own to one peer share its burst of 6`,
      rules: withCounting([], [`-A FORWARD -p udp --dport 9 -j REJECT --reject-with ${L.portUnreach}`]),
      steps: [
        {
          from: 'client',
          delayMs: 6500,
          packets: [
            ...[0, 1, 2].map(() => udp(L.c, L.s, '$P', 9)),
            ...[0, 1, 2, 3, 4].map(() => udp(L.c, L.s + `,${L.ttl}=1`, '$P', 7)),
          ],
        },
      ],
      expect: { server: 0, client: 6 },
    },
  ];
}

// Both families in one file: they run on separate topologies (one per family and side).
registerDifferentialTests(test, 4, casesFor(4), { bytes: maskByDesign });
registerDifferentialTests(test, 6, casesFor(6), { bytes: maskByDesign });
