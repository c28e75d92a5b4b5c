/**
 * Differential tests, IPv6 fragments: with a conntrack rule loaded the
 * kernel reassembles before the rules (nf_defrag_ipv6 / nf_ct_frag6_gather)
 * and sends the datagram on as fragments again; without one, only a first
 * fragment carries ports. Fragments are cut by hand from one datagram built
 * by scapy. See docs/compat.md "fragments".
 */
import test from 'ava';
import { registerDifferentialTests, type DiffCase } from './helpers/kernel-router.js';

/** The fragmentable bytes of a datagram from the client to the server (what follows the Fragment header). */
const udpBytes = (payload: number, pre = '') => `bytes(IPv6(src=C6,dst=S6)/${pre}UDP(sport=$P,dport=9)/Raw(b'x'*${payload}))[40:]`;
const tcpBytes = (payload: number) => `bytes(IPv6(src=C6,dst=S6)/TCP(sport=$P,dport=9,flags='S',seq=1000)/Raw(b'x'*${payload}))[40:]`;

interface Frag {
  id: number;
  bytes: string;
  start: number;
  end: number;
  last?: boolean;
  nh?: number;
  /** Extension headers before the Fragment header (scapy layers ending in '/'). */
  unfrag?: string;
}

function frag(f: Frag): string {
  return `IPv6(src=C6,dst=S6)/${f.unfrag ?? ''}IPv6ExtHdrFragment(nh=${f.nh ?? 17},id=${f.id},offset=${f.start / 8},m=${f.last ? 0 : 1})/Raw((${f.bytes})[${f.start}:${f.end}])`;
}

function cut(id: number, bytes: string, len: number, cuts: number[], order?: number[], extra: Partial<Frag> = {}): string[] {
  const edges = [0, ...cuts, len];
  const frags = edges.slice(0, -1).map((s, i) => frag({ id, bytes, start: s, end: edges[i + 1], last: i === edges.length - 2, ...extra }));
  return (order ?? frags.map((_, i) => i)).map((i) => frags[i]);
}

const client = (...packets: string[]) => ({ from: 'client' as const, packets });

const PORTS_ONLY = ['-P FORWARD DROP', '-A FORWARD -p udp --dport 9 -j ACCEPT'];
const WITH_CT = ['-P FORWARD DROP', '-A FORWARD -m state --state INVALID -j DROP', '-A FORWARD -p udp --dport 9 -m state --state NEW -j ACCEPT'];

const cases: DiffCase[] = [
  {
    name: 'no conntrack: only the first fragment has ports, the others meet the policy',
    rules: { filter: PORTS_ONLY },
    steps: [client(...cut(201, udpBytes(200), 208, [48, 96]))],
    expect: { server: 1, client: 0 },
  },
  {
    name: 'conntrack: unequal fragments out of order with a duplicate are reassembled and leave as they came',
    rules: { filter: WITH_CT },
    steps: [client(...cut(202, udpBytes(200), 208, [48, 72], [2, 0, 0, 1]))],
    expect: { server: 3, client: 0 },
  },
  {
    name: 'conntrack: overlapping fragments discard the datagram (RFC 5722)',
    rules: { filter: WITH_CT },
    steps: [
      client(
        frag({ id: 203, bytes: udpBytes(200), start: 0, end: 48 }),
        frag({ id: 203, bytes: udpBytes(200), start: 40, end: 96 }),
        frag({ id: 203, bytes: udpBytes(200), start: 96, end: 208, last: true }),
      ),
    ],
    expect: { server: 0, client: 0 },
  },
  {
    name: 'conntrack: Hop-by-Hop before the Fragment header stays in every fragment',
    rules: { filter: WITH_CT },
    steps: [client(...cut(204, udpBytes(200), 208, [48, 96], [1, 2, 0], { unfrag: 'IPv6ExtHdrHopByHop()/' }))],
    expect: { server: 3, client: 0 },
  },
  {
    name: 'conntrack: Destination Options after the Fragment header; the datagram leaves with it unfragmentable',
    rules: { filter: WITH_CT },
    steps: [client(...cut(205, udpBytes(200, 'IPv6ExtHdrDestOpt()/'), 216, [48], undefined, { nh: 60 }))],
    expect: { server: 1, client: 0 },
  },
  {
    name: 'conntrack: an atomic fragment loses its Fragment header',
    rules: { filter: WITH_CT },
    steps: [client(frag({ id: 206, bytes: udpBytes(200), start: 0, end: 208, last: true }))],
    expect: { server: 1, client: 0 },
  },
  {
    name: 'conntrack: 1000-byte fragments of a 3000-byte datagram leave as they came (not cut to 1280)',
    rules: { filter: WITH_CT },
    steps: [client(...cut(207, udpBytes(3000), 3008, [1000, 2000, 3000]))],
    expect: { server: 4, client: 0 },
  },
  {
    name: 'conntrack: a first fragment without its whole TCP header is not reassembled; it meets the rules as INVALID',
    rules: { filter: ['-P FORWARD DROP', '-A FORWARD -m state --state INVALID', '-A FORWARD -p tcp -j ACCEPT'] },
    steps: [client(...cut(208, tcpBytes(100), 120, [8], undefined, { nh: 6 }))],
    expect: { server: 1, client: 0 },
  },
  {
    name: 'conntrack rules gone: fragments meet the rules one by one again',
    rules: { filter: PORTS_ONLY },
    steps: [client(...cut(209, udpBytes(200), 208, [48, 96]))],
    expect: { server: 1, client: 0 },
  },
];

registerDifferentialTests(test, 6, cases);
