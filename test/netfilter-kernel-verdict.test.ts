/**
 * Verdict differential against the kernel: the same rule set in the kernel
 * (iptables-legacy in a router namespace) and in xtr, the same crafted
 * packets (bytes from the test kit) sent to both - into the kernel from a
 * client namespace over a veth pair, into xtr through PREROUTING and INPUT
 * with the real conntrack - and then the same per-rule counters in INPUT and
 * the user chains. OUTPUT is not compared: the kernel's own replies (RSTs
 * from a closed port) pass there and xtr's test has no TCP stack.
 *
 * Needs root, `ip netns`, iptables-legacy and python3 (raw socket sender).
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Conntrack } from '../router/conntrack.js';
import { Hook, Verdict } from '../xt/packet.js';
import { splitLine } from '../router/netfilter/commands.js';
import { packet, packetBytes, testEngine, type PacketSpec, type TestEngine } from '../router/netfilter/testkit.js';

function unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  if (spawnSync('iptables-legacy', ['--version']).status !== 0) return 'no iptables-legacy';
  if (spawnSync('python3', ['-c', 'import socket']).status !== 0) return 'no python3';
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return 'no ip netns';
  return null;
}
const skipReason = unavailable();

const ROUTER_ADDR = '198.51.100.1';
const CLIENT_ADDR = '198.51.100.10';

const SENDER = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
b = bytes.fromhex(sys.argv[1])
s.sendto(b, (sys.argv[2], 0))
`;

class Lab {
  readonly id = `${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;
  readonly router = `xekr${this.id}`;
  readonly client = `xekc${this.id}`;

  private sh(args: string[]): string {
    const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8', timeout: 20_000 });
    if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  up(): void {
    this.sh(['ip', 'netns', 'add', this.router]);
    this.sh(['ip', 'netns', 'add', this.client]);
    this.sh(['ip', 'link', 'add', `xek${this.id}a`, 'type', 'veth', 'peer', 'name', `xek${this.id}b`]);
    this.sh(['ip', 'link', 'set', `xek${this.id}a`, 'netns', this.router]);
    this.sh(['ip', 'link', 'set', `xek${this.id}b`, 'netns', this.client]);
    const inR = ['ip', 'netns', 'exec', this.router];
    const inC = ['ip', 'netns', 'exec', this.client];
    this.sh([...inR, 'ip', 'link', 'set', `xek${this.id}a`, 'name', 'eth0']);
    this.sh([...inR, 'ip', 'addr', 'add', `${ROUTER_ADDR}/24`, 'dev', 'eth0']);
    this.sh([...inR, 'ip', 'link', 'set', 'eth0', 'up']);
    this.sh([...inR, 'ip', 'link', 'set', 'lo', 'up']);
    this.sh([...inR, 'sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.eth0.rp_filter=0']);
    this.sh([...inC, 'ip', 'addr', 'add', `${CLIENT_ADDR}/24`, 'dev', `xek${this.id}b`]);
    this.sh([...inC, 'ip', 'link', 'set', `xek${this.id}b`, 'up']);
    this.sh([...inC, 'ip', 'link', 'set', 'lo', 'up']);
    // Let the link come up before anything is sent.
    for (let i = 0; i < 50; i++) {
      if (spawnSync('ip', [...inC.slice(1), 'ping', '-c1', '-W1', ROUTER_ADDR].slice(0), { encoding: 'utf8' }).status === 0) break;
    }
  }

  iptables(line: string): number {
    const words = splitLine(line, 0);
    return spawnSync('ip', ['netns', 'exec', this.router, `${words[0]}-legacy`, ...words.slice(1)], { encoding: 'utf8' }).status ?? -1;
  }

  send(bytes: Buffer, dst: string): void {
    this.sh(['ip', 'netns', 'exec', this.client, 'python3', '-c', SENDER, bytes.toString('hex'), dst]);
  }

  save(): string {
    return this.sh(['ip', 'netns', 'exec', this.router, 'iptables-legacy-save', '-c']);
  }

  down(): void {
    spawnSync('ip', ['netns', 'del', this.router]);
    spawnSync('ip', ['netns', 'del', this.client]);
  }
}

/** Counter lines of INPUT and user chains (":INPUT DROP [p:b]" and "[p:b] -A INPUT ..."), filter table only. */
function inputCounters(save: string): string[] {
  const filter = save.split('*filter')[1]?.split('COMMIT')[0] ?? '';
  return filter
    .split('\n')
    .filter((l) => /^:INPUT |^\[\d+:\d+\] -A (?!OUTPUT |FORWARD )/.test(l) || /^:(?!INPUT|OUTPUT|FORWARD)/.test(l));
}

async function compare(t: import('ava').ExecutionContext, rules: string[], traffic: PacketSpec[], spacingMs: number) {
  const lab = new Lab();
  const ct = new Conntrack({ max: 4096 });
  let e: TestEngine;
  try {
    lab.up();
    e = await testEngine([], ct);
    for (const line of rules) {
      const k = lab.iptables(line);
      const x = (await e.run(line)).status;
      t.is(x, k, `status of ${line}`);
    }
    for (const spec of traffic) {
      lab.send(packetBytes(spec), spec.dst);
      const p = packet(spec, 'eth0');
      p.now = performance.now();
      e.services.clock = p.now;
      if (e.nf.hook(Hook.PREROUTING, p) === Verdict.ACCEPT) e.nf.hook(Hook.INPUT, p);
      if (spacingMs > 0) await sleep(spacingMs);
    }
    await sleep(300);
    const kernel = inputCounters(lab.save());
    const xtr = inputCounters((await e.run('iptables-save -c')).stdout);
    t.log(kernel.join('\n'));
    t.true(kernel.filter((l) => !l.includes('[0:0]')).length >= 3, 'the traffic reached several rules');
    t.deepEqual(xtr, kernel);
  } finally {
    lab.down();
  }
}

const syn = (src: string, dport: number, sport: number): PacketSpec => ({ src, dst: ROUTER_ADDR, proto: 'tcp', sport, dport, flags: 0x02 });

const run = skipReason ? test.skip : test.serial;

run(`kernel vs xtr counters: stateless matches${skipReason ? ` (skipped: ${skipReason})` : ''}`, async (t) => {
  const rules = [
    'iptables -P INPUT DROP',
    'iptables -N web',
    'iptables -A INPUT -i eth0 -p icmp --icmp-type echo-request -m length --length 0:100 -j ACCEPT',
    'iptables -A INPUT -p icmp -j DROP',
    'iptables -A INPUT -s 198.51.100.0/28 -p tcp -m multiport --dports 80,443 -j web',
    'iptables -A INPUT -p udp --dport 53 -m ttl --ttl-gt 10 -j ACCEPT',
    'iptables -A INPUT -p udp -m iprange --src-range 198.51.100.20-198.51.100.30 -j DROP',
    'iptables -A INPUT -p tcp --tcp-flags SYN,ACK SYN ! --dport 22 -j DROP',
    'iptables -A web -p tcp --dport 443 -j ACCEPT',
    'iptables -A web -m comment --comment "plain http" -j RETURN',
    'iptables -A INPUT -p tcp -j ACCEPT',
  ];
  const traffic: PacketSpec[] = [
    { src: CLIENT_ADDR, dst: ROUTER_ADDR, proto: 'icmp', icmpType: 8, payload: 20 },
    { src: CLIENT_ADDR, dst: ROUTER_ADDR, proto: 'icmp', icmpType: 8, payload: 200 },
    { src: CLIENT_ADDR, dst: ROUTER_ADDR, proto: 'udp', dport: 53, ttl: 64 },
    { src: CLIENT_ADDR, dst: ROUTER_ADDR, proto: 'udp', dport: 53, ttl: 5 },
    { src: '198.51.100.25', dst: ROUTER_ADDR, proto: 'udp', dport: 5353 },
    syn(CLIENT_ADDR, 443, 41000),
    syn(CLIENT_ADDR, 80, 41001),
    syn('198.51.100.40', 443, 41002),
    syn(CLIENT_ADDR, 22, 41003),
    { src: CLIENT_ADDR, dst: ROUTER_ADDR, proto: 'tcp', sport: 41004, dport: 22, flags: 0x12 },
  ];
  await compare(t, rules, traffic, 0);
});

run(`kernel vs xtr counters: seed-001 port knocking with conntrack, recent, limit and REJECT${skipReason ? ` (skipped: ${skipReason})` : ''}`, async (t) => {
  const rules = [
    'iptables -P INPUT DROP',
    'iptables -A INPUT -i lo -j ACCEPT',
    'iptables -A INPUT -s 10.0.0.0/8 -i eth0 -j DROP',
    'iptables -N syn-flood',
    'iptables -A syn-flood -m limit --limit 1/s --limit-burst 4 -j RETURN',
    'iptables -A syn-flood -j DROP',
    'iptables -N port-knocking',
    'iptables -N knocking-okey',
    'iptables -N knocking-oops',
    'iptables -A port-knocking -p tcp --dport 1223 -m recent --rcheck --hitcount 1 -j knocking-oops',
    'iptables -A port-knocking -p tcp --dport 1223 -m recent --set -j REJECT --reject-with host-prohib',
    'iptables -A port-knocking -p tcp --dport 569 -m recent --rcheck --hitcount 2 -j knocking-oops',
    'iptables -A port-knocking -p tcp --dport 569 -m recent --update --hitcount 1 -j REJECT --reject-with host-prohib',
    'iptables -A port-knocking -p tcp --dport 715 -m recent --rcheck --hitcount 3 -j knocking-oops',
    'iptables -A port-knocking -p tcp --dport 715 -m recent --update --hitcount 2 -j REJECT --reject-with host-prohib',
    'iptables -A port-knocking -p tcp -m recent --remove',
    'iptables -A knocking-okey -m state --state NEW -p tcp -m recent --remove -j ACCEPT',
    'iptables -A knocking-oops -m state --state NEW -p tcp -m recent --remove',
    'iptables -A INPUT -p tcp -m state --state ESTABLISHED,RELATED -j ACCEPT',
    'iptables -A INPUT -i eth0 -p tcp --syn -j syn-flood',
    'iptables -A INPUT -i eth0 -p tcp --dport 22 -m state --state NEW -m recent --rcheck --seconds 20 --hitcount 3 -j knocking-okey',
    'iptables -A INPUT -i eth0 -p tcp -j port-knocking',
  ];
  const B = '198.51.100.20';
  let sport = 42000;
  const s = (src: string, port: number) => syn(src, port, sport++);
  const traffic: PacketSpec[] = [
    s(CLIENT_ADDR, 22),
    s(CLIENT_ADDR, 1223), s(CLIENT_ADDR, 569), s(CLIENT_ADDR, 715),
    s(B, 22),
    s(CLIENT_ADDR, 22),
    s(CLIENT_ADDR, 569), s(CLIENT_ADDR, 1223), s(CLIENT_ADDR, 715), s(CLIENT_ADDR, 22),
    s(CLIENT_ADDR, 1223), s(CLIENT_ADDR, 569), s(CLIENT_ADDR, 4444), s(CLIENT_ADDR, 715), s(CLIENT_ADDR, 22),
  ];
  // More than a second apart, so the syn-flood limit never runs dry in either.
  await compare(t, rules, traffic, 1100);
});

run(`kernel vs xtr counters: port ranges as udp, tcp, multiport and conntrack parse them${skipReason ? ` (skipped: ${skipReason})` : ''}`, async (t) => {
  const rules = [
    // libxt_udp keeps a reversed range: it never matches, and negated it matches every port.
    'iptables -A INPUT -p udp --dport 5:3',
    'iptables -A INPUT -p udp ! --dport 5:3',
    // getaddrinfo numbers: cut to 16 bits (70000 is 4464); names of any protocol (ssh is tcp-only in /etc/services).
    'iptables -A INPUT -p udp --sport 70000',
    'iptables -A INPUT -p udp --dport ssh',
    'iptables -A INPUT -p udp --dport " +53:"',
    // libxt_tcp and multiport read numbers base 0.
    'iptables -A INPUT -p tcp --dport 0x50',
    'iptables -A INPUT -p tcp --dport 010:011',
    'iptables -A INPUT -p udp -m multiport --dports 0x10:0x20,+60',
    // conntrack's port options are libxtables port ranges too.
    'iptables -A INPUT -m conntrack --ctorigdstport 60:50',
    'iptables -A INPUT -m conntrack ! --ctorigdstport 60:50',
    'iptables -A INPUT -m conntrack --ctorigsrcport 70000',
  ];
  const udp = (sport: number, dport: number): PacketSpec => ({ src: CLIENT_ADDR, dst: ROUTER_ADDR, proto: 'udp', sport, dport });
  const traffic: PacketSpec[] = [
    udp(40000, 4),
    udp(4464, 22),
    udp(40001, 53),
    udp(40002, 16),
    udp(40003, 60),
    udp(40004, 5),
    syn(CLIENT_ADDR, 80, 41000),
    syn(CLIENT_ADDR, 9, 41001),
    syn(CLIENT_ADDR, 10, 41002),
  ];
  await compare(t, rules, traffic, 0);
});
