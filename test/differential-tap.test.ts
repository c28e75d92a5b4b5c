/**
 * Differential tests with xtr's lab in TAP mode (Ethernet links, as the kernel
 * reference's veth pairs are): the `mac` match, which needs a link-layer
 * source, and a few cases re-run over TAP to show the rule engine sees the
 * same packets there. `$CMAC` is each topology's own client MAC.
 */
import test from 'ava';
import { registerDifferentialTests, type DiffCase } from './helpers/kernel-router.js';

const udp = (dport: number) => `IP(src=C,dst=S)/UDP(sport=$P,dport=${dport})`;
const client = (...packets: string[]) => ({ from: 'client' as const, packets });
const server = (...packets: string[]) => ({ from: 'server' as const, packets });

const cases: DiffCase[] = [
  {
    name: 'tap: mac --mac-source and negation',
    rules: {
      mangle: ['-A PREROUTING -m mac --mac-source $CMAC -p udp --dport 1 -j MARK --set-mark 0x1'],
      filter: [
        '-A FORWARD -m mark --mark 0x1 -j DROP',
        '-A FORWARD -p udp --dport 2 -m mac ! --mac-source 02:00:00:00:00:01 -j DROP',
        '-A FORWARD -p udp --dport 3 -m mac --mac-source 02:00:00:00:00:01 -j DROP',
      ],
    },
    steps: [client(udp(1), udp(2), udp(3), udp(4))],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'tap: state with replies from the server side',
    rules: { filter: ['-A FORWARD -m state --state ESTABLISHED -j ACCEPT', '-A FORWARD -i eth0 -m state --state NEW -j ACCEPT', '-A FORWARD -j DROP'] },
    steps: [client(udp(53)), server('IP(src=S,dst=C)/UDP(sport=53,dport=$P)', 'IP(src=S,dst=C)/UDP(sport=54,dport=$P)')],
    expect: { server: 1, client: 1 },
  },
  {
    name: 'tap: REJECT icmp-port-unreachable and tcp-reset',
    rules: { filter: ['-A FORWARD -p udp --dport 7 -j REJECT', '-A FORWARD -p tcp --dport 7 -j REJECT --reject-with tcp-reset'] },
    steps: [client(udp(7), `IP(src=C,dst=S)/TCP(sport=$P,dport=7,flags='S',seq=42)`)],
    expect: { server: 0, client: 2 },
  },
];

registerDifferentialTests(test, 4, cases, { xtrMode: 'tap' });
