/**
 * Differential tests, IPv4 fragments: the kernel reassembles before the
 * rules while conntrack is in use in the namespace (nf_defrag_ipv4) and
 * sends the datagram on as fragments again; without conntrack every
 * fragment meets the rules. Each case's fragments are cut by hand (sizes,
 * order, duplicates, overlaps, flags) from one datagram built by scapy.
 * See docs/compat.md "fragments".
 */
import test from 'ava';
import { registerDifferentialTests, type DiffCase } from './helpers/kernel-router.js';

/** The transport bytes of a datagram from the client to `dst`. */
const udpBytes = (payload: number, dst = 'S') => `bytes(IP(src=C,dst=${dst})/UDP(sport=$P,dport=9)/Raw(b'x'*${payload}))[20:]`;
const tcpBytes = (payload: number) => `bytes(IP(src=C,dst=S)/TCP(sport=$P,dport=9,flags='S',seq=1000)/Raw(b'x'*${payload}))[20:]`;
const icmpBytes = (payload: number, dst = 'R') => `bytes(IP(src=C,dst=${dst})/ICMP(id=$P,seq=1)/Raw(b'x'*${payload}))[20:]`;

interface Frag {
  id: number;
  bytes: string;
  start: number;
  end: number;
  last?: boolean;
  proto?: number;
  ttl?: number;
  df?: boolean;
  dst?: string;
}

/** One fragment as a scapy expression: data bytes [start, end) of `bytes`. */
function frag(f: Frag): string {
  const flags = (f.df ? 2 : 0) | (f.last ? 0 : 1);
  return `IP(src=C,dst=${f.dst ?? 'S'},id=${f.id},proto=${f.proto ?? 17},flags=${flags},frag=${f.start / 8},ttl=${f.ttl ?? 64})/Raw((${f.bytes})[${f.start}:${f.end}])`;
}

/** The fragments of `bytes` (total `len`) cut at `cuts`, in the order `order`. */
function cut(id: number, bytes: string, len: number, cuts: number[], order?: number[], extra: Partial<Frag> = {}): string[] {
  const edges = [0, ...cuts, len];
  const frags = edges.slice(0, -1).map((s, i) => frag({ id, bytes, start: s, end: edges[i + 1], last: i === edges.length - 2, ...extra }));
  return (order ?? frags.map((_, i) => i)).map((i) => frags[i]);
}

const client = (...packets: string[]) => ({ from: 'client' as const, packets });

const FILTER_CT = ['-A FORWARD -f -j DROP', '-A FORWARD -m state --state INVALID -j DROP', '-A FORWARD -m state --state NEW,ESTABLISHED -j ACCEPT'];

const cases: DiffCase[] = [
  {
    // First, while nothing in this namespace has used conntrack yet.
    name: 'no conntrack: -f drops the non-first fragments, the first one passes',
    rules: { filter: ['-A FORWARD -f -j DROP', '-A FORWARD -p udp --dport 9 -j ACCEPT'] },
    steps: [client(...cut(101, udpBytes(200), 208, [48, 96]))],
    expect: { server: 1, client: 0 },
  },
  {
    name: 'conntrack: unequal fragments out of order with a duplicate leave as they came, in offset order',
    rules: { filter: FILTER_CT },
    steps: [client(...cut(102, udpBytes(200), 208, [48, 72], [2, 0, 0, 1]))],
    expect: { server: 3, client: 0 },
  },
  {
    name: 'conntrack: a duplicate inside a run is dropped, the datagram completes',
    rules: { filter: FILTER_CT },
    steps: [
      client(
        frag({ id: 103, bytes: udpBytes(200), start: 160, end: 208, last: true }),
        frag({ id: 103, bytes: udpBytes(200), start: 0, end: 48 }),
        frag({ id: 103, bytes: udpBytes(200), start: 48, end: 96 }),
        frag({ id: 103, bytes: udpBytes(200), start: 8, end: 40 }),
        frag({ id: 103, bytes: udpBytes(200), start: 96, end: 160 }),
      ),
    ],
    expect: { server: 4, client: 0 },
  },
  {
    name: 'conntrack: overlapping fragments discard the whole datagram',
    rules: { filter: FILTER_CT },
    steps: [
      client(
        frag({ id: 104, bytes: udpBytes(200), start: 0, end: 48 }),
        frag({ id: 104, bytes: udpBytes(200), start: 40, end: 96 }),
        frag({ id: 104, bytes: udpBytes(200), start: 96, end: 208, last: true }),
      ),
    ],
    expect: { server: 0, client: 0 },
  },
  {
    name: 'conntrack: an overlap spanning two runs discards the datagram too',
    rules: { filter: FILTER_CT },
    steps: [
      client(
        frag({ id: 105, bytes: udpBytes(200), start: 160, end: 208, last: true }),
        frag({ id: 105, bytes: udpBytes(200), start: 0, end: 48 }),
        frag({ id: 105, bytes: udpBytes(200), start: 48, end: 96 }),
        frag({ id: 105, bytes: udpBytes(200), start: 40, end: 56 }),
        frag({ id: 105, bytes: udpBytes(200), start: 96, end: 160 }),
      ),
    ],
    expect: { server: 0, client: 0 },
  },
  {
    name: 'conntrack: the offset-0 fragment gives the datagram its TTL, whatever came first',
    rules: { filter: FILTER_CT },
    steps: [client(frag({ id: 106, bytes: udpBytes(200), start: 48, end: 208, last: true, ttl: 20 }), frag({ id: 106, bytes: udpBytes(200), start: 0, end: 48, ttl: 30 }))],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'conntrack: a TCP first fragment shorter than the TCP header is reassembled, sent on in frag_max_size pieces',
    rules: { filter: FILTER_CT },
    steps: [client(...cut(107, tcpBytes(100), 120, [8], undefined, { proto: 6 }))],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'conntrack: DF fragments that each fit pass as fragments, no frag-needed',
    rules: { filter: FILTER_CT },
    steps: [client(...cut(108, udpBytes(2500), 2508, [1000, 2000], undefined, { df: true }))],
    expect: { server: 3, client: 0 },
  },
  {
    name: 'conntrack in INPUT and OUTPUT: a fragmented ping to the router, the reply fragmented by the local stack',
    rules: {
      filter: ['-A INPUT -f -j DROP', '-A INPUT -m state --state NEW -j ACCEPT', '-A OUTPUT -f -j DROP', '-A OUTPUT -m state --state ESTABLISHED -j ACCEPT'],
    },
    steps: [client(...cut(109, icmpBytes(3000), 3008, [1480, 2960], undefined, { proto: 1, dst: 'R' }))],
    expect: { server: 0, client: 3 },
  },
  {
    // After the conntrack cases: with no rule needing conntrack any more, fragments meet the rules again.
    name: 'conntrack rules gone: -f drops non-first fragments again',
    rules: { filter: ['-A FORWARD -f -j DROP'] },
    steps: [client(...cut(110, udpBytes(200), 208, [48, 96]))],
    expect: { server: 1, client: 0 },
  },
];

registerDifferentialTests(test, 4, cases);
