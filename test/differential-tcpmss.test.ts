/**
 * Differential tests, TCPMSS: the same rules on the kernel (iptables-legacy
 * in a namespace router) and on xtr, SYNs with and without an MSS option sent
 * through with scapy, and what the server receives compared byte for byte
 * (the MSS it sees, lengths, checksums), with per-rule counters and the rule
 * set as iptables-save prints it.
 *
 * `--clamp-mss-to-pmtu` cases use the route MTU, 1500 on every link of both
 * topologies: 1460 for IPv4, 1440 for IPv6.
 */
import test from 'ava';
import { registerDifferentialTests, type DiffCase, type Family } from './helpers/kernel-router.js';

function casesFor(family: Family): DiffCase[] {
  const ip = family === 4 ? 'IP' : 'IPv6';
  const [c, s] = family === 4 ? ['C', 'S'] : ['C6', 'S6'];
  const v = `v${family}`;
  const syn = (opts: string, flags = 'S', payload = '') =>
    `${ip}(src=${c},dst=${s})/TCP(sport=$P,dport=80,flags='${flags}',seq=1000,window=64240,options=[${opts}])${payload ? `/Raw(b'${payload}')` : ''}`;
  /** A SYN whose option bytes are given raw (hex), so their alignment is ours to choose. */
  const rawOpts = (hex: string) =>
    `${ip}(src=${c},dst=${s})/TCP(sport=$P,dport=80,flags='S',seq=1000,window=64240,dataofs=${5 + hex.length / 8})/Raw(bytes.fromhex('${hex}'))`;
  const fromReply = (opts: string) => `${ip}(src=${s},dst=${c})/TCP(sport=80,dport=$P,flags='SA',seq=5000,ack=1001,window=64240,options=[${opts}])`;
  const client = (...packets: string[]) => ({ from: 'client' as const, packets });
  const server = (...packets: string[]) => ({ from: 'server' as const, packets });
  const MSS = (n: number) => `('MSS',${n})`;
  const SACK_WS = "('NOP',None),('NOP',None),('SAckOK',b''),('NOP',None),('WScale',7)";
  return [
    {
      name: `${v} --set-mss 1400 in FORWARD: lowered, kept, added, left alone`,
      rules: { mangle: ['-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400', '-A FORWARD -p tcp'] },
      steps: [
        client(
          syn(`${MSS(1460)},${SACK_WS}`),
          syn(MSS(1200)),
          syn(MSS(1400)),
          syn(''),
          syn(SACK_WS),
          syn(SACK_WS, 'S', 'hello'),
          syn(MSS(1460), 'A'),
          syn(MSS(1460), 'SR'),
        ),
      ],
      expect: { server: 8, client: 0 },
    },
    {
      name: `${v} option walk: EOL stepped over, MSS of wrong length ignored, full header, odd alignment`,
      rules: { mangle: ['-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400'] },
      steps: [
        client(
          rawOpts('00020405b4000000'),
          rawOpts('01020405dc000000'),
          rawOpts('02030501'),
          rawOpts('01'.repeat(40)),
          rawOpts('01'.repeat(36) + '020405b4'),
        ),
      ],
      expect: { server: 5, client: 0 },
    },
    {
      name: `${v} --set-mss 500 and --set-mss 2000: the smaller MSS wins either way`,
      rules: {
        mangle: [
          '-A FORWARD -p tcp -m tcp --dport 80 --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 2000',
          '-A POSTROUTING -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 500',
        ],
      },
      steps: [client(syn(MSS(1460)), syn(''), syn(MSS(300)))],
      expect: { server: 3, client: 0 },
    },
    {
      name: `${v} SYN/ACK from the server lowered by a --tcp-flags SYN SYN rule in the filter table`,
      rules: { filter: ['-A FORWARD -p tcp -m tcp --tcp-flags SYN SYN -j TCPMSS --set-mss 1300'] },
      steps: [server(fromReply(MSS(1460)), fromReply(''))],
      expect: { server: 0, client: 2 },
    },
    {
      name: `${v} --clamp-mss-to-pmtu in FORWARD and POSTROUTING`,
      rules: {
        mangle: [
          '-A FORWARD -p tcp -m tcp --dport 80 --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu',
          '-A POSTROUTING -p tcp -m tcp --dport 81 --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu',
        ],
      },
      steps: [
        client(syn(MSS(9000)), syn(MSS(1000)), syn(''), syn(MSS(65000)).replace('dport=80', 'dport=81')),
      ],
      expect: { server: 4, client: 0 },
    },
  ];
}

/** Forwarded bytes are compared as they are: both routers only decrement TTL and rewrite what TCPMSS rewrites. */
const asIs = (hex: string) => hex;

registerDifferentialTests(test, 4, casesFor(4), { bytes: asIs });
registerDifferentialTests(test, 6, casesFor(6), { bytes: asIs });
