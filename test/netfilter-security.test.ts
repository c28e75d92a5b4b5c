/**
 * The `security` table against the kernel's (iptables-legacy in throwaway
 * namespaces): listing, -S, iptables-save (nothing until the table is used),
 * restore, which targets it accepts, and where it sits on the hooks - after
 * filter in INPUT, FORWARD and OUTPUT, so a packet filter ACCEPTs still
 * traverses it and its DROP drops - compared by the rule and policy
 * counters real traffic leaves in both.
 *
 * Needs root, `ip netns`, iptables-legacy 1.8.9, python3 (raw socket sender)
 * and ping; otherwise skipped with the reason.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Hook, Verdict } from '../xt/packet.js';
import { splitLine } from '../router/netfilter/commands.js';
import { packet, packetBytes, testEngine, type PacketSpec } from '../router/netfilter/testkit.js';

function unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  const probe = spawnSync('iptables-legacy', ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0 || !/v1\.8\.9/.test(probe.stdout)) return 'iptables-legacy 1.8.9 not installed';
  if (spawnSync('python3', ['-c', 'import socket']).status !== 0) return 'no python3';
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return 'ip netns not available';
  return null;
}
const skipReason = unavailable();
const run = skipReason ? test.skip : test.serial;
const suffix = skipReason ? ` (skipped: ${skipReason})` : '';

const uid = () => `${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;

function sh(args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8', input, timeout: 20_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function must(args: string[]): string {
  const r = sh(args);
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** iptables -> iptables-legacy, iptables-save -> iptables-legacy-save, inside `ns`. */
function kernel(ns: string, line: string, input?: string) {
  const words = splitLine(line, 0);
  const [base, ...rest] = words[0].split('-');
  return sh(['ip', 'netns', 'exec', ns, [`${base}-legacy`, ...rest].join('-'), ...words.slice(1)], input);
}

const norm = (s: string) => s.replace(/\(legacy\)/g, '(xtr)').replace(/ on .*$/gm, ' on <TIME>');

// Each line goes to both; status, first stderr line and stdout must agree. Listing lines print.
const LINES: readonly string[] = [
  'iptables-save',
  'ip6tables-save',
  'iptables -t security -L',
  'iptables-save',
  'iptables -t security -S',
  'ip6tables -t security -L -n -v',
  'ip6tables-save',
  'iptables -L -n',
  'iptables-save',
  'iptables -t security -A INPUT -s 10.0.0.0/8 -j DROP',
  'iptables -t security -A FORWARD -i eth0 -p tcp --dport 22 -j ACCEPT',
  'iptables -t security -N sec',
  'iptables -t security -A OUTPUT -j sec',
  'iptables -t security -A sec -m comment --comment "secmark would go here" -j RETURN',
  'iptables -t security -A INPUT -j LOG --log-prefix "sec "',
  'iptables -t security -A INPUT -j MARK --set-mark 1',
  'iptables -t security -A INPUT -j CONNMARK --set-mark 1',
  'iptables -t security -A INPUT -j REJECT',
  'iptables -t security -A INPUT -j NOTRACK',
  'iptables -t security -A INPUT -j CT --notrack',
  'iptables -t security -A PREROUTING -j ACCEPT',
  'iptables -t security -A POSTROUTING -j ACCEPT',
  'iptables -t security -P INPUT DROP',
  'iptables -t security -P FORWARD ACCEPT',
  'iptables -t security -L -n -v --line-numbers',
  'iptables -t security -S',
  'iptables -t security -L INPUT 1 -n',
  'iptables-save',
  'iptables-save -t security -c',
  'ip6tables -t security -A INPUT -s 2001:db8::/32 -j DROP',
  'ip6tables -t security -S',
  'ip6tables-save',
  'iptables -t security -F',
  'iptables -t security -X',
  'iptables -t security -P INPUT ACCEPT',
  'iptables-save',
];

run(`kernel vs xtr: security table listing, -S, save, targets it takes${suffix}`, async (t) => {
  const ns = `xh6-sec${uid()}`;
  must(['ip', 'netns', 'add', ns]);
  try {
    const e = await testEngine();
    for (const line of LINES) {
      const k = kernel(ns, line);
      const x = await e.run(line);
      t.is(x.status, k.status, `status of ${line}\nkernel: ${k.stderr}\nxtr: ${x.stderr}`);
      if (k.status !== 0) t.is(norm(x.stderr).split('\n')[0], norm(k.stderr).split('\n')[0], `message of ${line}`);
      t.is(norm(x.stdout), norm(k.stdout), `output of ${line}`);
    }
    const restore = '*security\n:INPUT ACCEPT [3:4]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:chk - [0:0]\n[1:2] -A INPUT -p udp -j chk\n-A chk -j RETURN\nCOMMIT\n';
    for (const cmd of ['iptables-restore -c', 'ip6tables-restore']) {
      const k = kernel(ns, cmd, restore);
      const x = await e.run(cmd, restore);
      t.is(x.status, k.status, `${cmd}: ${k.stderr} / ${x.stderr}`);
    }
    for (const cmd of ['iptables-save -c', 'ip6tables-save -c']) t.is(norm((await e.run(cmd)).stdout), norm(kernel(ns, cmd).stdout), cmd);
  } finally {
    sh(['ip', 'netns', 'del', ns]);
  }
});

const ROUTER = '198.51.100.1';
const CLIENT = '198.51.100.10';
const BEYOND = '203.0.113.1';

const SENDER = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], 0))
`;

/** filter and security rules whose counters tell the order: filter ACCEPT then security DROP, filter DROP never reaching security. */
const RULES: readonly string[] = [
  'iptables -A INPUT -p udp --dport 7 -j ACCEPT',
  'iptables -A INPUT -p udp --dport 8 -j DROP',
  'iptables -t security -A INPUT -p udp --dport 7 -j DROP',
  'iptables -t security -A INPUT -p udp',
  'iptables -A FORWARD -d 203.0.113.0/24 -j ACCEPT',
  'iptables -t security -A FORWARD -d 203.0.113.5 -j DROP',
  'iptables -t security -A FORWARD -d 203.0.113.0/24',
  'iptables -A OUTPUT -d 203.0.113.0/24 -p icmp -j ACCEPT',
  'iptables -t security -A OUTPUT -d 203.0.113.0/24 -p icmp',
];

/** Traffic: [what, packet, how xtr takes it]. */
const udp = (dst: string, dport: number): PacketSpec => ({ src: CLIENT, dst, proto: 'udp', sport: 40000, dport, payload: 4 });
const TRAFFIC: readonly [PacketSpec, 'input' | 'forward'][] = [
  [udp(ROUTER, 7), 'input'],
  [udp(ROUTER, 7), 'input'],
  [udp(ROUTER, 8), 'input'],
  [udp(ROUTER, 9), 'input'],
  [udp('203.0.113.5', 9), 'forward'],
  [udp('203.0.113.6', 9), 'forward'],
  [udp('203.0.113.6', 10), 'forward'],
];

/** Rule counter lines of every chain, and the INPUT/FORWARD policy lines, of the filter and security tables. */
function counters(save: string): string[] {
  const out: string[] = [];
  for (const table of ['filter', 'security']) {
    const body = save.split(`*${table}\n`)[1]?.split('COMMIT')[0] ?? '';
    out.push(`*${table}`, ...body.split('\n').filter((l) => /^:(INPUT|FORWARD) |^\[\d+:\d+\] -A /.test(l)));
  }
  return out;
}

run(`kernel vs xtr: security runs after filter on INPUT, FORWARD and OUTPUT (counters from real traffic)${suffix}`, async (t) => {
  const id = uid();
  const router = `xh6-sr${id}`;
  const client = `xh6-sc${id}`;
  const sink = `xh6-sk${id}`;
  const inR = ['ip', 'netns', 'exec', router];
  const inC = ['ip', 'netns', 'exec', client];
  try {
    must(['ip', 'netns', 'add', router]);
    must(['ip', 'netns', 'add', client]);
    must(['ip', 'link', 'add', `xh6s${id}a`, 'type', 'veth', 'peer', 'name', `xh6s${id}b`]);
    must(['ip', 'link', 'set', `xh6s${id}a`, 'netns', router]);
    must(['ip', 'link', 'set', `xh6s${id}b`, 'netns', client]);
    must([...inR, 'ip', 'link', 'set', `xh6s${id}a`, 'name', 'eth0']);
    must([...inR, 'ip', 'addr', 'add', `${ROUTER}/24`, 'dev', 'eth0']);
    must([...inR, 'ip', 'link', 'set', 'eth0', 'up']);
    must([...inR, 'ip', 'link', 'set', 'lo', 'up']);
    // Beyond the router: a link to a namespace with no addresses (nobody answers ARP, so what is sent there
    // goes no further) so FORWARD and OUTPUT have somewhere to go.
    must(['ip', 'netns', 'add', sink]);
    must(['ip', 'link', 'add', `xh6s${id}c`, 'type', 'veth', 'peer', 'name', `xh6s${id}d`]);
    must(['ip', 'link', 'set', `xh6s${id}c`, 'netns', router]);
    must(['ip', 'link', 'set', `xh6s${id}d`, 'netns', sink]);
    must([...inR, 'ip', 'link', 'set', `xh6s${id}c`, 'name', 'eth1']);
    must([...inR, 'ip', 'addr', 'add', `${BEYOND}/24`, 'dev', 'eth1']);
    must([...inR, 'ip', 'link', 'set', 'eth1', 'up']);
    must(['ip', 'netns', 'exec', sink, 'ip', 'link', 'set', `xh6s${id}d`, 'up']);
    must([...inR, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.eth0.rp_filter=0']);
    must([...inC, 'ip', 'addr', 'add', `${CLIENT}/24`, 'dev', `xh6s${id}b`]);
    must([...inC, 'ip', 'link', 'set', `xh6s${id}b`, 'up']);
    must([...inC, 'ip', 'route', 'add', '203.0.113.0/24', 'via', ROUTER]);
    for (let i = 0; i < 20 && sh([...inC, 'ping', '-c1', '-W1', ROUTER]).status !== 0; i++);

    const e = await testEngine();
    for (const line of RULES) {
      const k = kernel(router, line);
      t.is((await e.run(line)).status, k.status, `${line}: ${k.stderr}`);
    }
    for (const [spec, path] of TRAFFIC) {
      must([...inC, 'python3', '-c', SENDER, packetBytes(spec).toString('hex'), spec.dst]);
      const p = packet(spec, 'eth0', path === 'forward' ? 'eth1' : null);
      if (e.nf.hook(Hook.PREROUTING, p) !== Verdict.ACCEPT) continue;
      if (path === 'input') e.nf.hook(Hook.INPUT, p);
      else {
        p.ttl--; // the forwarding path decrements TTL before FORWARD (the byte count is unchanged)
        e.nf.hook(Hook.FORWARD, p);
      }
    }
    // OUTPUT: one echo request the router sends itself (84 bytes: 20 + 8 + 56 of ping's payload).
    sh([...inR, 'ping', '-c1', '-W1', '-I', BEYOND, '203.0.113.9']);
    const ping = packet({ src: BEYOND, dst: '203.0.113.9', proto: 'icmp', payload: 56 }, null, 'eth1');
    if (e.nf.hook(Hook.OUTPUT, ping) === Verdict.ACCEPT) e.nf.hook(Hook.POSTROUTING, ping);
    await sleep(200);

    const k = counters(must([...inR, 'iptables-legacy-save', '-c']));
    const x = counters((await e.run('iptables-save -c')).stdout);
    t.log(k.join('\n'));
    t.deepEqual(x, k);
    // What the comparison shows, in words (so a kernel that differs is noticed, not just matched).
    const has = (re: RegExp) => t.true(k.some((l) => re.test(l)), String(re));
    has(/^\[2:64\] -A INPUT -p udp -m udp --dport 7 -j ACCEPT$/);
    has(/^\[2:64\] -A INPUT -p udp -m udp --dport 7 -j DROP$/);
    has(/^\[1:32\] -A INPUT -p udp$/);
    has(/^\[1:32\] -A FORWARD -d 203\.0\.113\.5\/32 -j DROP$/);
    has(/^\[2:64\] -A FORWARD -d 203\.0\.113\.0\/24$/);
    has(/^\[1:84\] -A OUTPUT -d 203\.0\.113\.0\/24 -p icmp$/);
  } finally {
    for (const ns of [router, client, sink]) sh(['ip', 'netns', 'del', ns]);
  }
});
