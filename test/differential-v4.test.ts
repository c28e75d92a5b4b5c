/**
 * Differential tests, IPv4: each case loads a small rule set into the kernel
 * reference (iptables-restore in a namespace router) and into xtr, sends the
 * same crafted packets from the client (and the server, for replies), and
 * compares what each end received, the per-rule counters and recent tables.
 * Packets are scapy expressions run by test/fixtures/differential/agent.py;
 * C/C2/R/S are the lab's addresses, `$P` a source port unique to the case.
 */
import test from 'ava';
import { registerDifferentialTests, type DiffCase } from './helpers/kernel-router.js';

const udp = (dport: number | string, ip = '', payload = 0) =>
  `IP(src=C,dst=S${ip})/UDP(sport=$P,dport=${dport})${payload ? `/Raw(b'x'*${payload})` : ''}`;
const tcp = (dport: number | string, flags: string, extra = '', ip = '') =>
  `IP(src=C,dst=S${ip})/TCP(sport=$P,dport=${dport},flags='${flags}',seq=1000${extra})`;
const client = (...packets: string[]) => ({ from: 'client' as const, packets });
const server = (...packets: string[]) => ({ from: 'server' as const, packets });

const cases: DiffCase[] = [
  {
    // First: before any case loads conntrack into the router namespace (which would reassemble).
    name: '-f: non-first fragments',
    rules: { filter: ['-A FORWARD -f -j DROP'] },
    steps: [client(`fragment(IP(src=C,dst=S,id=77)/UDP(sport=$P,dport=9)/Raw(b'x'*100), fragsize=48)`)],
    expect: { server: 1, client: 0 },
  },
  {
    name: '-s -d -p with negation',
    rules: {
      filter: [
        '-A FORWARD -s 198.51.100.3/32 -j DROP',
        '-A FORWARD ! -s 198.51.100.2/32 -p tcp -j DROP',
        '-A FORWARD -d 203.0.113.2/32 -p udp -j ACCEPT',
        '-A FORWARD -p tcp -j DROP',
      ],
    },
    steps: [
      client(udp(1), udp(1).replace('src=C,', 'src=C2,'), tcp(80, 'S'), tcp(80, 'S').replace('src=C,', 'src=C2,')),
    ],
    expect: { server: 1, client: 0 },
  },
  {
    name: '-d address list expands to one rule per address',
    rules: { filter: ['-A FORWARD -d 203.0.113.2/32 -p udp --dport 5 -j DROP', '-A FORWARD -d 203.0.113.9/32 -p udp --dport 5 -j DROP'] },
    steps: [client(udp(5), udp(6))],
    expect: { server: 1, client: 0 },
  },
  {
    name: '-p by number and name, ! -p',
    rules: { filter: ['-A FORWARD -p 47 -j DROP', '-A FORWARD -p tcp -j ACCEPT', '-A FORWARD ! -p udp -j DROP'] },
    steps: [client('IP(src=C,dst=S)/GRE()', udp(7), tcp(7, 'S'), 'IP(src=C,dst=S,proto=253)/Raw(b"abcd")')],
    expect: { server: 2, client: 0 },
  },
  {
    name: '-i -o with + wildcard and negation',
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
      server('IP(src=S,dst=C)/UDP(sport=4,dport=$P)', 'IP(src=S,dst=C)/UDP(sport=5,dport=$P)', 'IP(src=S,dst=C)/UDP(sport=6,dport=$P)'),
    ],
    expect: { server: 1, client: 1 },
  },
  {
    name: 'tcp --sport/--dport ranges and negation',
    rules: {
      filter: ['-A FORWARD -p tcp --sport 20000:29999 --dport 80 -j DROP', '-A FORWARD -p tcp ! --dport 0:1023 -j DROP'],
    },
    steps: [client(tcp(80, 'S'), tcp(443, 'S'), tcp(8080, 'S'), `IP(src=C,dst=S)/TCP(sport=40000,dport=80,flags='S')`)],
    expect: { server: 2, client: 0 },
  },
  {
    // The kernel rate-limits ICMP errors per destination (burst 6, then 1/s):
    // REJECT cases send at most 4 each and sit far apart in this table (this one
    // first, the prohibited ones last), so no case depends on the bucket's refill.
    name: 'REJECT --reject-with icmp-net/host/port/proto-unreachable (FORWARD)',
    rules: {
      filter: [
        '-A FORWARD -p udp --dport 1 -j REJECT --reject-with icmp-net-unreachable',
        '-A FORWARD -p udp --dport 2 -j REJECT --reject-with icmp-host-unreachable',
        '-A FORWARD -p udp --dport 3 -j REJECT --reject-with icmp-port-unreachable',
        '-A FORWARD -p udp --dport 4 -j REJECT --reject-with icmp-proto-unreachable',
      ],
    },
    steps: [client(udp(1), udp(2), udp(3, '', 20), udp(4))],
    expect: { server: 0, client: 4 },
  },
  {
    name: 'tcp --syn and --tcp-flags',
    rules: {
      filter: [
        '-A FORWARD -p tcp --syn -j DROP',
        '-A FORWARD -p tcp --tcp-flags SYN,RST,ACK,FIN RST -j DROP',
        '-A FORWARD -p tcp --tcp-flags ALL NONE -j DROP',
        '-A FORWARD -p tcp --tcp-flags ALL FIN,URG,PSH -j DROP',
        '-A FORWARD -p tcp ! --tcp-flags ACK ACK -j DROP',
      ],
    },
    steps: [client(tcp(80, 'S'), tcp(81, 'SA'), tcp(82, 'R'), tcp(83, ''), tcp(84, 'FPU'), tcp(85, 'A'), tcp(86, 'FA'), tcp(87, 'F'))],
    expect: { server: 3, client: 0 },
  },
  {
    name: 'tcp --tcp-option',
    rules: { filter: ['-A FORWARD -p tcp --tcp-option 2 -j DROP', '-A FORWARD -p tcp ! --tcp-option 8 -j DROP'] },
    steps: [
      client(
        tcp(80, 'S', ",options=[('MSS',1460)]"),
        tcp(81, 'S', ",options=[('Timestamp',(1,0))]"),
        tcp(82, 'S'),
        tcp(83, 'S', ",options=[('NOP',None),('NOP',None),('Timestamp',(5,0)),('WScale',7)]"),
      ),
    ],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'udp --sport --dport ranges and negation',
    rules: {
      filter: ['-A FORWARD -p udp --sport 53 -j DROP', '-A FORWARD -p udp --dport 1000:2000 -j DROP', '-A FORWARD -p udp ! --dport 5 -j ACCEPT', '-A FORWARD -p udp -j DROP'],
    },
    steps: [client('IP(src=C,dst=S)/UDP(sport=53,dport=9)', udp(1000), udp(2000), udp(2001), udp(5))],
    expect: { server: 1, client: 0 },
  },
  {
    name: 'icmp --icmp-type names, type/code, negation',
    rules: {
      filter: [
        '-A FORWARD -p icmp --icmp-type echo-request -j DROP',
        '-A FORWARD -p icmp --icmp-type 3/3 -j DROP',
        '-A FORWARD -p icmp --icmp-type host-unreachable -j DROP',
        '-A FORWARD -p icmp ! --icmp-type destination-unreachable -j ACCEPT',
        '-A FORWARD -p icmp -j DROP',
      ],
    },
    steps: [
      client(
        'IP(src=C,dst=S)/ICMP(type=8,id=$P,seq=1)',
        'IP(src=C,dst=S)/ICMP(type=0,id=$P,seq=2)',
        'IP(src=C,dst=S)/ICMP(type=3,code=3)/IPerror(src=S,dst=C)/UDPerror(sport=9,dport=$P)',
        'IP(src=C,dst=S)/ICMP(type=3,code=1)/IPerror(src=S,dst=C)/UDPerror(sport=9,dport=$P)',
        'IP(src=C,dst=S)/ICMP(type=3,code=0)/IPerror(src=S,dst=C)/UDPerror(sport=9,dport=$P)',
        'IP(src=C,dst=S)/ICMP(type=13,id=$P)',
      ),
    ],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'multiport --dports --sports --ports and negation',
    rules: {
      filter: [
        '-A FORWARD -p tcp -m multiport --dports 22,80,1000:2000 -j DROP',
        '-A FORWARD -p udp -m multiport --sports 53,123 -j DROP',
        '-A FORWARD -p udp -m multiport --ports 7,9 -j DROP',
        '-A FORWARD -p tcp -m multiport ! --dports 443,8443 -j DROP',
      ],
    },
    steps: [
      client(tcp(22, 'S'), tcp(1500, 'S'), tcp(443, 'S'), tcp(25, 'S'), 'IP(src=C,dst=S)/UDP(sport=123,dport=5000)', udp(9), 'IP(src=C,dst=S)/UDP(sport=7,dport=5001)', udp(10)),
    ],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'state: NEW (not only SYN), ESTABLISHED, INVALID',
    rules: {
      filter: [
        '-A FORWARD -m state --state INVALID -j DROP',
        '-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT',
        '-A FORWARD -p tcp --syn -m state --state NEW -j ACCEPT',
        '-A FORWARD -m state --state NEW -j DROP',
      ],
    },
    steps: [
      client(tcp(80, 'S')),
      server(`IP(src=S,dst=C)/TCP(sport=80,dport=$P,flags='SA',seq=5000,ack=1001)`),
      client(`IP(src=C,dst=S)/TCP(sport=$P,dport=80,flags='A',seq=1001,ack=5001)`),
      client(tcp(81, 'A'), tcp(82, 'SF'), tcp(83, 'R')),
    ],
    expect: { server: 2, client: 1 },
  },
  {
    // The common "-m state --state INVALID -j DROP": the kernel tracks TCP
    // windows, so a segment far outside the window is INVALID.
    name: 'state INVALID for a segment outside the TCP window',
    rules: { filter: ['-A FORWARD -m state --state INVALID -j DROP', '-A FORWARD -m state --state NEW,ESTABLISHED -j ACCEPT', '-A FORWARD -j DROP'] },
    steps: [
      client(tcp(80, 'S')),
      server(`IP(src=S,dst=C)/TCP(sport=80,dport=$P,flags='SA',seq=5000,ack=1001,window=8192)`),
      client(`IP(src=C,dst=S)/TCP(sport=$P,dport=80,flags='A',seq=1001,ack=5001,window=8192)`),
      client(`IP(src=C,dst=S)/TCP(sport=$P,dport=80,flags='PA',seq=1001,ack=5001,window=8192)/Raw(b'hello')`),
      client(`IP(src=C,dst=S)/TCP(sport=$P,dport=80,flags='PA',seq=900000000,ack=5001,window=8192)/Raw(b'far away')`),
    ],
    expect: { server: 3, client: 1 },
  },
  {
    name: 'conntrack --ctstate NEW, ESTABLISHED, RELATED (ICMP error for a tracked flow)',
    rules: {
      filter: [
        '-A FORWARD -m conntrack --ctstate RELATED -j ACCEPT',
        '-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT',
        '-A FORWARD -i eth0 -m conntrack --ctstate NEW -j ACCEPT',
        '-A FORWARD -j DROP',
      ],
    },
    steps: [
      client(udp(53)),
      server('IP(src=S,dst=C)/UDP(sport=53,dport=$P)'),
      server('IP(src=S,dst=C)/ICMP(type=3,code=3)/IPerror(src=C,dst=S,ttl=63)/UDPerror(sport=$P,dport=53)'),
      server('IP(src=S,dst=C)/UDP(sport=9999,dport=$P)'),
    ],
    expect: { server: 1, client: 2 },
  },
  {
    name: 'REJECT --reject-with tcp-reset (SYN, and data with ACK)',
    rules: { filter: ['-A FORWARD -p tcp --dport 9 -j REJECT --reject-with tcp-reset'] },
    steps: [client(tcp(9, 'S'), tcp(9, 'PA', ',ack=77') + "/Raw(b'hello')")],
    expect: { server: 0, client: 2 },
  },
  {
    // With a conntrack rule loaded the kernel reassembles before the filter table
    // (and fragments again on output): `-f` sees no fragment at all.
    name: '-f with conntrack in use: fragments are reassembled before the rules',
    rules: { filter: ['-A FORWARD -f -j DROP', '-A FORWARD -m state --state NEW -j ACCEPT'] },
    steps: [client(`fragment(IP(src=C,dst=S,id=78)/UDP(sport=$P,dport=9)/Raw(b'x'*100), fragsize=48)`)],
    expect: { server: 3, client: 0 },
  },
  {
    name: 'limit --limit --limit-burst',
    rules: { filter: ['-A FORWARD -p udp -m limit --limit 2/sec --limit-burst 3 -j ACCEPT', '-A FORWARD -p udp -j DROP'] },
    steps: [client(udp(1), udp(2), udp(3), udp(4), udp(5), udp(6))],
    expect: { server: 3, client: 0 },
  },
  {
    name: 'MARK --set-mark/--set-xmark and mark --mark value/mask',
    rules: {
      mangle: ['-A PREROUTING -p udp --dport 7 -j MARK --set-mark 0x5', '-A PREROUTING -p udp --dport 8 -j MARK --set-xmark 0x4/0x6', '-A PREROUTING -p udp --dport 9 -j MARK --set-mark 0x2'],
      filter: ['-A FORWARD -m mark --mark 0x5 -j DROP', '-A FORWARD -m mark --mark 0x4/0x4 -j DROP', '-A FORWARD -m mark ! --mark 0x0 -j ACCEPT', '-A FORWARD -p udp -j DROP'],
    },
    steps: [client(udp(7), udp(8), udp(9), udp(10))],
    expect: { server: 1, client: 0 },
  },
  {
    name: 'CONNMARK --set-mark, --save-mark/--restore-mark and connmark',
    rules: {
      mangle: [
        '-A PREROUTING -i eth0 -p udp --dport 9 -j CONNMARK --set-mark 0x7',
        '-A PREROUTING -i eth0 -p udp --dport 10 -j MARK --set-mark 0x3',
        '-A PREROUTING -i eth0 -p udp --dport 10 -j CONNMARK --save-mark',
        '-A PREROUTING -i eth1 -j CONNMARK --restore-mark',
      ],
      filter: ['-A FORWARD -i eth1 -m connmark --mark 0x7 -j DROP', '-A FORWARD -i eth1 -m mark --mark 0x3 -j DROP'],
    },
    steps: [
      client(udp(9), udp(10), udp(11)),
      server('IP(src=S,dst=C)/UDP(sport=9,dport=$P)', 'IP(src=S,dst=C)/UDP(sport=10,dport=$P)', 'IP(src=S,dst=C)/UDP(sport=11,dport=$P)'),
    ],
    expect: { server: 3, client: 1 },
  },
  {
    name: 'comment',
    rules: { filter: ['-A FORWARD -p udp -m udp --dport 11 -m comment --comment "drop port 11" -j DROP'] },
    steps: [client(udp(11), udp(12))],
    expect: { server: 1, client: 0 },
  },
  {
    name: 'length ranges and negation',
    rules: { filter: ['-A FORWARD -p udp -m length --length 100:200 -j DROP', '-A FORWARD -p udp -m length ! --length 0:40 -j DROP'] },
    steps: [client(udp(1), udp(2, '', 12), udp(3, '', 13), udp(4, '', 72), udp(5, '', 100), udp(6, '', 172), udp(7, '', 173))],
    expect: { server: 2, client: 0 },
  },
  {
    // In FORWARD the TTL has already been decremented (64 sent, 63 seen).
    name: 'ttl --ttl-eq/--ttl-lt/--ttl-gt as seen in FORWARD',
    rules: { filter: ['-A FORWARD -p udp -m ttl --ttl-eq 63 -j DROP', '-A FORWARD -p udp -m ttl --ttl-lt 10 -j DROP', '-A FORWARD -p udp -m ttl --ttl-gt 200 -j DROP'] },
    steps: [client(udp(1), udp(2, ',ttl=64'), udp(3, ',ttl=65'), udp(4, ',ttl=10'), udp(5, ',ttl=11'), udp(6, ',ttl=202'), udp(7, ',ttl=201'))],
    expect: { server: 3, client: 0 },
  },
  {
    name: 'iprange --src-range/--dst-range and negation',
    rules: {
      filter: [
        '-A FORWARD -m iprange --src-range 198.51.100.3-198.51.100.10 -j DROP',
        '-A FORWARD -p udp -m iprange --dst-range 203.0.113.2-203.0.113.2 --src-range 198.51.100.1-198.51.100.2 -j ACCEPT',
        '-A FORWARD -m iprange ! --dst-range 203.0.113.0-203.0.113.1 -j DROP',
      ],
    },
    steps: [client(udp(1).replace('src=C,', 'src=C2,'), udp(2), tcp(3, 'S'))],
    expect: { server: 1, client: 0 },
  },
  {
    name: 'recent --set/--rcheck --hitcount/--update --seconds/--rdest/--mask/--rttl',
    rules: {
      filter: [
        '-A FORWARD -p udp --dport 20 -m recent --name r1 --set',
        '-A FORWARD -p udp --dport 21 -m recent --name r1 --rcheck --hitcount 2 -j DROP',
        '-A FORWARD -p udp --dport 22 -m recent --name r1 --update --seconds 30 -j DROP',
        '-A FORWARD -p udp --dport 23 -m recent --name r2 --rdest --mask 255.255.255.0 --set',
        '-A FORWARD -p udp --dport 24 -m recent --name r2 --rcheck --rdest -j DROP',
        '-A FORWARD -p udp --dport 25 -m recent --name r1 --rcheck --rttl -j DROP',
        '-A FORWARD -p udp --dport 26 -m recent --name r1 ! --rcheck -j DROP',
        '-A FORWARD -p udp --dport 27 -m recent --name r1 --remove',
      ],
    },
    steps: [
      client(udp(21), udp(20), udp(21), udp(20), udp(21), udp(22), udp(23), udp(24)),
      client(udp(25, ',ttl=30'), udp(25), udp(26), udp(27), udp(26), udp(26).replace('src=C,', 'src=C2,')),
    ],
    recent: ['r1', 'r2'],
    expect: { server: 8, client: 0 },
  },
  {
    // --reap looks only at the least recently updated entry of the whole table,
    // and only when the packet's own address was found.
    name: 'recent --seconds --reap and ! --update',
    rules: {
      filter: [
        '-A FORWARD -p udp --dport 40 -m recent --name rp --set',
        '-A FORWARD -p udp --dport 41 -m recent --name rp --rcheck --seconds 1 --reap -j DROP',
        '-A FORWARD -p udp --dport 42 -m recent --name nu ! --update -j DROP',
      ],
    },
    steps: [
      client(udp(40), udp(40).replace('src=C,', 'src=C2,'), udp(42), udp(42)),
      { from: 'client', delayMs: 1300, packets: [udp(41).replace('src=C,', 'src=C2,'), udp(41)] },
    ],
    recent: ['rp', 'nu'],
    // ! --update on an absent address matches and creates nothing: both port-42 packets dropped.
    expect: { server: 4, client: 0 },
  },
  {
    name: 'ttl in INPUT is the TTL as received',
    rules: { filter: ['-A INPUT -p udp -m ttl --ttl-eq 64 -j DROP', '-A INPUT -p udp -m ttl --ttl-eq 63 -j DROP'] },
    steps: [client('IP(src=C,dst=R)/UDP(sport=$P,dport=7)', 'IP(src=C,dst=R,ttl=63)/UDP(sport=$P,dport=8)', 'IP(src=C,dst=R,ttl=62)/UDP(sport=$P,dport=9)')],
    // The third reaches the router's stack, which answers port-unreachable.
    expect: { server: 0, client: 1 },
  },
  {
    name: 'REJECT never answers an ICMP error or a RST',
    rules: { filter: ['-A FORWARD -p icmp -j REJECT', '-A FORWARD -p tcp -j REJECT --reject-with tcp-reset'] },
    steps: [
      client(
        'IP(src=C,dst=S)/ICMP(type=3,code=3)/IPerror(src=S,dst=C)/UDPerror(sport=9,dport=$P)',
        'IP(src=C,dst=S)/ICMP(type=8,id=$P,seq=1)',
        tcp(5, 'R'),
        tcp(5, 'S'),
      ),
    ],
    expect: { server: 0, client: 2 },
  },
  {
    name: 'REJECT in INPUT and what the router itself answers (OUTPUT)',
    rules: {
      filter: [
        '-A INPUT -p udp --dport 9 -j REJECT',
        '-A INPUT -p tcp --dport 10 -j REJECT --reject-with tcp-reset',
        '-A INPUT -p icmp --icmp-type echo-request -j ACCEPT',
        '-A OUTPUT -p icmp --icmp-type echo-reply -j ACCEPT',
        '-A OUTPUT -p icmp -j DROP',
      ],
    },
    steps: [client('IP(src=C,dst=R)/UDP(sport=$P,dport=9)', `IP(src=C,dst=R)/TCP(sport=$P,dport=10,flags='S',seq=9)`, 'IP(src=C,dst=R)/ICMP(type=8,id=$P,seq=3)/Raw(b"ping")')],
    expect: { server: 0, client: 2 },
  },
  {
    name: 'LOG with prefix and level (counters only; the packet goes on)',
    rules: { filter: ['-A FORWARD -p udp -j LOG --log-prefix "diff: " --log-level 4', '-A FORWARD -p udp --dport 2 -j LOG --log-level debug --log-tcp-options', '-A FORWARD -p udp --dport 2 -j DROP'] },
    steps: [client(udp(1), udp(2))],
    expect: { server: 1, client: 0 },
  },
  {
    name: 'NOTRACK and CT --notrack make UNTRACKED',
    rules: {
      raw: ['-A PREROUTING -p udp --dport 30 -j NOTRACK', '-A PREROUTING -p udp --dport 31 -j CT --notrack'],
      filter: ['-A FORWARD -m state --state UNTRACKED -p udp --dport 30 -j DROP', '-A FORWARD -m conntrack --ctstate UNTRACKED -j ACCEPT', '-A FORWARD -m conntrack --ctstate NEW -j ACCEPT', '-A FORWARD -j DROP'],
    },
    steps: [client(udp(30), udp(31), udp(32))],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'user chains: jump, goto, RETURN, policy DROP',
    rules: {
      filter: [
        '-P FORWARD DROP',
        '-N c1',
        '-N c2',
        '-A FORWARD -p udp -j c1',
        '-A FORWARD -p udp --dport 3 -j ACCEPT',
        '-A c1 -p udp --dport 1 -j RETURN',
        '-A c1 -p udp --dport 2 -g c2',
        '-A c1 -p udp --dport 3 -j RETURN',
        '-A c1 -j ACCEPT',
        '-A c2 -j RETURN',
      ],
    },
    steps: [client(udp(1), udp(2), udp(3), udp(4))],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'REJECT --reject-with icmp-net/host/admin-prohibited and the default (FORWARD)',
    rules: {
      filter: [
        '-A FORWARD -p udp --dport 5 -j REJECT --reject-with icmp-net-prohibited',
        '-A FORWARD -p udp --dport 6 -j REJECT --reject-with icmp-host-prohibited',
        '-A FORWARD -p udp --dport 7 -j REJECT --reject-with icmp-admin-prohibited',
        '-A FORWARD -p udp --dport 8 -j REJECT',
      ],
    },
    steps: [client(udp(5), udp(6), udp(7), udp(8, '', 600))],
    expect: { server: 0, client: 4 },
  },
];

registerDifferentialTests(test, 4, cases);
