/**
 * Differential tests, IPv6: as differential-v4, with ip6tables rule sets and
 * IPv6 packets (C6/S6/R6 are the lab's IPv6 addresses, `$P` a per-case port).
 */
import test from 'ava';
import { registerDifferentialTests, type DiffCase } from './helpers/kernel-router.js';

const udp = (dport: number | string, ip = '', payload = 0) =>
  `IPv6(src=C6,dst=S6${ip})/UDP(sport=$P,dport=${dport})${payload ? `/Raw(b'x'*${payload})` : ''}`;
const tcp = (dport: number | string, flags: string, extra = '') => `IPv6(src=C6,dst=S6)/TCP(sport=$P,dport=${dport},flags='${flags}',seq=1000${extra})`;
const client = (...packets: string[]) => ({ from: 'client' as const, packets });
const server = (...packets: string[]) => ({ from: 'server' as const, packets });
const C2_6 = "'2001:db8:c::3'";

const cases: DiffCase[] = [
  {
    name: 'v6 -s -d -p with negation, address list',
    rules: {
      filter: [
        '-A FORWARD -s 2001:db8:c::3/128 -j DROP',
        '-A FORWARD ! -s 2001:db8:c::2/128 -p tcp -j DROP',
        '-A FORWARD -d 2001:db8:5::2/128 -p udp --dport 1 -j ACCEPT',
        '-A FORWARD -d 2001:db8:5::9/128 -p udp -j DROP',
        '-A FORWARD -d 2001:db8:5::2/128 -p udp -j DROP',
      ],
    },
    steps: [client(udp(1), udp(1).replace('src=C6', `src=${C2_6}`), udp(2), tcp(80, 'S'))],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'v6 -i -o with + wildcard and negation',
    rules: {
      filter: [
        '-A FORWARD -i eth0 -o eth1 -p udp --dport 1 -j DROP',
        '-A FORWARD -i eth+ -p udp --dport 2 -j DROP',
        '-A FORWARD ! -o eth1 -p udp --sport 4 -j DROP',
        '-A FORWARD ! -i eth0 -p udp --sport 5 -j DROP',
      ],
    },
    steps: [
      client(udp(1), udp(2), udp(3)),
      server('IPv6(src=S6,dst=C6)/UDP(sport=4,dport=$P)', 'IPv6(src=S6,dst=C6)/UDP(sport=5,dport=$P)', 'IPv6(src=S6,dst=C6)/UDP(sport=6,dport=$P)'),
    ],
    expect: { server: 1, client: 1 },
  },
  {
    name: 'v6 tcp ports, --syn, --tcp-flags, --tcp-option',
    rules: {
      filter: [
        '-A FORWARD -p tcp --dport 1000:1999 -j DROP',
        '-A FORWARD -p tcp --syn --tcp-option 2 -j DROP',
        '-A FORWARD -p tcp --tcp-flags ALL NONE -j DROP',
        '-A FORWARD -p tcp --tcp-flags SYN,RST RST -j DROP',
      ],
    },
    steps: [client(tcp(1500, 'S'), tcp(80, 'S', ",options=[('MSS',1400)]"), tcp(81, 'S'), tcp(82, ''), tcp(83, 'R'), tcp(84, 'A'))],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'v6 udp ports and negation',
    rules: { filter: ['-A FORWARD -p udp --sport 53 -j DROP', '-A FORWARD -p udp ! --dport 5:6 -j DROP'] },
    steps: [client('IPv6(src=C6,dst=S6)/UDP(sport=53,dport=5)', udp(5), udp(6), udp(7))],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'v6 icmpv6 --icmpv6-type names, type/code, negation',
    rules: {
      filter: [
        '-A FORWARD -p ipv6-icmp --icmpv6-type echo-request -j DROP',
        '-A FORWARD -p ipv6-icmp --icmpv6-type 1/4 -j DROP',
        '-A FORWARD -p ipv6-icmp ! --icmpv6-type destination-unreachable -j ACCEPT',
        '-A FORWARD -p ipv6-icmp -j DROP',
      ],
    },
    steps: [
      client(
        'IPv6(src=C6,dst=S6)/ICMPv6EchoRequest(id=$P,seq=1)',
        'IPv6(src=C6,dst=S6)/ICMPv6EchoReply(id=$P,seq=2)',
        'IPv6(src=C6,dst=S6)/ICMPv6DestUnreach(code=4)/IPerror6(src=S6,dst=C6)/UDPerror(sport=9,dport=$P)',
        'IPv6(src=C6,dst=S6)/ICMPv6DestUnreach(code=1)/IPerror6(src=S6,dst=C6)/UDPerror(sport=9,dport=$P)',
        'IPv6(src=C6,dst=S6)/ICMPv6PacketTooBig(mtu=1280)/IPerror6(src=S6,dst=C6)/UDPerror(sport=9,dport=$P)',
      ),
    ],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'v6 REJECT --reject-with icmp6-no-route/adm-prohibited/addr-unreachable/port-unreachable (FORWARD)',
    rules: {
      filter: [
        '-A FORWARD -p udp --dport 1 -j REJECT --reject-with icmp6-no-route',
        '-A FORWARD -p udp --dport 2 -j REJECT --reject-with icmp6-adm-prohibited',
        '-A FORWARD -p udp --dport 3 -j REJECT --reject-with icmp6-addr-unreachable',
        '-A FORWARD -p udp --dport 4 -j REJECT',
      ],
    },
    steps: [client(udp(1), udp(2), udp(3, '', 30), udp(4, '', 1300))],
    expect: { server: 0, client: 4 },
  },
  {
    // -p and the port matches look past extension headers to the upper layer.
    name: 'v6 extension headers before UDP; REJECT never answers an ICMPv6 error',
    rules: { filter: ['-A FORWARD -p udp --dport 5 -j DROP', '-A FORWARD -p ipv6-icmp -j REJECT'] },
    steps: [
      client(
        'IPv6(src=C6,dst=S6)/IPv6ExtHdrDestOpt()/UDP(sport=$P,dport=5)',
        'IPv6(src=C6,dst=S6)/IPv6ExtHdrDestOpt()/UDP(sport=$P,dport=6)',
        'IPv6(src=C6,dst=S6)/IPv6ExtHdrHopByHop()/UDP(sport=$P,dport=5)',
        'IPv6(src=C6,dst=S6)/IPv6ExtHdrHopByHop()/IPv6ExtHdrDestOpt()/UDP(sport=$P,dport=7)',
        'IPv6(src=C6,dst=S6)/ICMPv6DestUnreach(code=4)/IPerror6(src=S6,dst=C6)/UDPerror(sport=9,dport=$P)',
        'IPv6(src=C6,dst=S6)/ICMPv6EchoRequest(id=$P,seq=1)',
      ),
    ],
    expect: { server: 2, client: 1 },
  },
  {
    name: 'v6 multiport',
    rules: { filter: ['-A FORWARD -p tcp -m multiport --dports 22,80,1000:2000 -j DROP', '-A FORWARD -p udp -m multiport ! --ports 7,9 -j DROP'] },
    steps: [client(tcp(22, 'S'), tcp(1001, 'S'), tcp(443, 'S'), udp(9), udp(10))],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'v6 state and conntrack: NEW, ESTABLISHED, RELATED, INVALID',
    rules: {
      filter: [
        '-A FORWARD -m conntrack --ctstate INVALID -j DROP',
        '-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT',
        '-A FORWARD -i eth0 -m conntrack --ctstate NEW -j ACCEPT',
        '-A FORWARD -j DROP',
      ],
    },
    steps: [
      client(udp(53), tcp(80, 'S'), tcp(81, 'SF')),
      server('IPv6(src=S6,dst=C6)/UDP(sport=53,dport=$P)', `IPv6(src=S6,dst=C6)/TCP(sport=80,dport=$P,flags='SA',seq=7,ack=1001)`),
      server('IPv6(src=S6,dst=C6)/ICMPv6DestUnreach(code=4)/IPerror6(src=C6,dst=S6,hlim=63)/UDPerror(sport=$P,dport=53)', 'IPv6(src=S6,dst=C6)/UDP(sport=54,dport=$P)'),
    ],
    expect: { server: 2, client: 3 },
  },
  {
    name: 'v6 limit',
    rules: { filter: ['-A FORWARD -p udp -m limit --limit 1/sec --limit-burst 2 -j ACCEPT', '-A FORWARD -p udp -j DROP'] },
    steps: [client(udp(1), udp(2), udp(3), udp(4))],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'v6 MARK, mark, CONNMARK, connmark, comment',
    rules: {
      mangle: ['-A PREROUTING -p udp --dport 7 -j MARK --set-mark 0x5', '-A PREROUTING -i eth0 -p udp --dport 8 -j CONNMARK --set-mark 0x9'],
      filter: [
        '-A FORWARD -m mark --mark 0x5 -m comment --comment "marked 5" -j DROP',
        '-A FORWARD -i eth1 -m connmark --mark 0x9 -j DROP',
      ],
    },
    steps: [client(udp(7), udp(8)), server('IPv6(src=S6,dst=C6)/UDP(sport=8,dport=$P)')],
    expect: { server: 1, client: 0 },
  },
  {
    name: 'v6 length (40-byte header + payload)',
    rules: { filter: ['-A FORWARD -p udp -m length --length 49:100 -j DROP'] },
    steps: [client(udp(1), udp(2, '', 1), udp(3, '', 52), udp(4, '', 53))],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'v6 hl --hl-eq/--hl-lt/--hl-gt as seen in FORWARD',
    rules: { filter: ['-A FORWARD -p udp -m hl --hl-eq 63 -j DROP', '-A FORWARD -p udp -m hl --hl-lt 5 -j DROP', '-A FORWARD -p udp -m hl --hl-gt 250 -j DROP'] },
    steps: [client(udp(1), udp(2, ',hlim=5'), udp(3, ',hlim=6'), udp(4, ',hlim=252'), udp(5, ',hlim=251'))],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'v6 REJECT --reject-with tcp-reset, and in INPUT with the router\'s own answers',
    rules: {
      filter: [
        '-A FORWARD -p tcp --dport 9 -j REJECT --reject-with tcp-reset',
        '-A INPUT -p udp --dport 9 -j REJECT --reject-with icmp6-port-unreachable',
        '-A INPUT -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT',
      ],
    },
    steps: [client(tcp(9, 'S'), 'IPv6(src=C6,dst=R6)/UDP(sport=$P,dport=9)', 'IPv6(src=C6,dst=R6)/ICMPv6EchoRequest(id=$P,seq=1)')],
    expect: { server: 0, client: 3 },
  },
  {
    name: 'v6 iprange',
    rules: { filter: ['-A FORWARD -m iprange --src-range 2001:db8:c::3-2001:db8:c::ff -j DROP', '-A FORWARD -p udp -m iprange ! --dst-range 2001:db8:5::1-2001:db8:5::2 -j DROP'] },
    steps: [client(udp(1).replace('src=C6', `src=${C2_6}`), udp(2))],
    expect: { server: 1, client: 0 },
  },
  {
    name: 'v6 recent --set/--rcheck --hitcount/--update/--rdest/--mask',
    rules: {
      filter: [
        '-A FORWARD -p udp --dport 20 -m recent --name v6a --set',
        '-A FORWARD -p udp --dport 21 -m recent --name v6a --rcheck --hitcount 2 -j DROP',
        '-A FORWARD -p udp --dport 22 -m recent --name v6a --update --seconds 30 -j DROP',
        '-A FORWARD -p udp --dport 23 -m recent --name v6b --rdest --mask ffff:ffff:ffff:ffff:: --set',
        '-A FORWARD -p udp --dport 24 -m recent --name v6b --rdest --rcheck -j DROP',
      ],
    },
    steps: [client(udp(21), udp(20), udp(21), udp(20), udp(21), udp(22), udp(23), udp(24))],
    recent: ['v6a', 'v6b'],
    expect: { server: 5, client: 0 },
  },
  {
    name: 'v6 LOG and NOTRACK/CT --notrack',
    rules: {
      raw: ['-A PREROUTING -p udp --dport 30 -j NOTRACK', '-A PREROUTING -p udp --dport 31 -j CT --notrack'],
      filter: ['-A FORWARD -p udp -j LOG --log-prefix "v6: "', '-A FORWARD -m state --state UNTRACKED -p udp --dport 30 -j DROP', '-A FORWARD -m conntrack --ctstate UNTRACKED,NEW -j ACCEPT', '-A FORWARD -j DROP'],
    },
    steps: [client(udp(30), udp(31), udp(32))],
    expect: { server: 2, client: 0 },
  },
];

registerDifferentialTests(test, 6, cases);
