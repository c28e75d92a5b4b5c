/**
 * Connection tracking around TCP resets, against the kernel: a client
 * namespace sends SYNs (raw socket) to a router namespace running
 * iptables-legacy `-m state` rules; the router's own stack answers (RST/ACK
 * from a closed port, SYN/ACK from a listener, which the client's stack then
 * resets). xtr is fed the same client packets through PREROUTING/INPUT and
 * the router's answers through OUTPUT/POSTROUTING. After each step the
 * tracked flows (/proc/net/nf_conntrack vs xtr's table: state, timeout) and
 * the INPUT counters of the NEW / ESTABLISHED / INVALID rules must agree.
 *
 * What the kernel does here (6.x): a reset as the only answer to a SYN
 * removes the entry at once (a retransmitted SYN is NEW again); a reset after
 * the SYN/ACK (an nmap -sS scan) leaves the entry in CLOSE for 10 s, and a
 * new SYN on the same ports replaces it as NEW.
 *
 * Needs root, `ip netns`, iptables-legacy and python3.
 */
import test from 'ava';
import { spawnSync, spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Conntrack, TCP_STATE_NAMES } from '../router/conntrack.js';
import { Hook, Verdict } from '../xt/packet.js';
import { testEngine, type TestEngine } from '../router/netfilter/testkit.js';
import { ctxOf, ip4, tcpSeg } from './modules-fixtures.js';

const ROUTER = '198.51.100.1';
const CLIENT = '198.51.100.10';
const SYN = 0x02, ACK = 0x10, RST = 0x04;

function unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  if (spawnSync('iptables-legacy', ['--version']).status !== 0) return 'no iptables-legacy';
  if (spawnSync('python3', ['-c', 'import socket']).status !== 0) return 'no python3';
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return 'no ip netns';
  return null;
}
const skipReason = unavailable();

const SENDER = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], 0))
`;
const LISTENER = `
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 8080)); s.listen(16)
print('ready', flush=True)
time.sleep(120)
`;

const RULES = [
  'iptables -A INPUT -p tcp -m state --state NEW',
  'iptables -A INPUT -p tcp -m state --state ESTABLISHED',
  'iptables -A INPUT -p tcp -m state --state INVALID',
];

class Lab {
  readonly id = `${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;
  readonly router = `xfctr${this.id}`;
  readonly client = `xfctc${this.id}`;
  private listener: ChildProcess | null = null;

  private sh(args: string[]): string {
    const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8', timeout: 20_000 });
    if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }
  inRouter(args: string[]): string {
    return this.sh(['ip', 'netns', 'exec', this.router, ...args]);
  }

  async up(): Promise<void> {
    this.sh(['ip', 'netns', 'add', this.router]);
    this.sh(['ip', 'netns', 'add', this.client]);
    const a = `xfct${this.id}a`;
    const b = `xfct${this.id}b`;
    this.sh(['ip', 'link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
    this.sh(['ip', 'link', 'set', a, 'netns', this.router]);
    this.sh(['ip', 'link', 'set', b, 'netns', this.client]);
    this.inRouter(['ip', 'addr', 'add', `${ROUTER}/24`, 'dev', a]);
    this.inRouter(['ip', 'link', 'set', a, 'up']);
    this.sh(['ip', 'netns', 'exec', this.client, 'ip', 'addr', 'add', `${CLIENT}/24`, 'dev', b]);
    this.sh(['ip', 'netns', 'exec', this.client, 'ip', 'link', 'set', b, 'up']);
    // The router answers at once: no delay for neighbour discovery on the first packet.
    const mac = this.sh(['ip', 'netns', 'exec', this.client, 'cat', `/sys/class/net/${b}/address`]).trim();
    this.inRouter(['ip', 'neigh', 'replace', CLIENT, 'lladdr', mac, 'dev', a, 'nud', 'permanent']);
    this.listener = spawn('ip', ['netns', 'exec', this.router, 'python3', '-c', LISTENER], { stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise<void>((resolve, reject) => {
      this.listener!.stdout!.once('data', () => resolve());
      this.listener!.once('exit', (c) => reject(new Error(`listener exited ${c}`)));
    });
  }

  send(bytes: Buffer): void {
    this.sh(['ip', 'netns', 'exec', this.client, 'python3', '-c', SENDER, bytes.toString('hex'), ROUTER]);
  }

  /** "sport>dport STATE" of the router's TCP flows with the client, and each timeout. */
  flows(): { flow: string; timeout: number }[] {
    const out: { flow: string; timeout: number }[] = [];
    for (const line of this.inRouter(['cat', '/proc/net/nf_conntrack']).split('\n')) {
      const m = /\btcp\s+6 (\d+) (\S+) src=(\S+) dst=\S+ sport=(\d+) dport=(\d+)/.exec(line);
      if (m && m[3] === CLIENT) out.push({ flow: `${m[4]}>${m[5]} ${m[2]}`, timeout: Number(m[1]) });
    }
    return out.sort((x, y) => (x.flow < y.flow ? -1 : 1));
  }

  down(): void {
    if (this.listener && this.listener.exitCode === null) this.listener.kill();
    spawnSync('ip', ['netns', 'del', this.router]);
    spawnSync('ip', ['netns', 'del', this.client]);
  }
}

function xtrFlows(ct: Conntrack, now: number): { flow: string; timeout: number }[] {
  return ct
    .entries(now)
    .filter((e) => e.proto === 6)
    .map((e) => ({ flow: `${e.orig.sport}>${e.orig.dport} ${TCP_STATE_NAMES[e.tcpState]}`, timeout: e.remaining(now) }))
    .sort((x, y) => (x.flow < y.flow ? -1 : 1));
}

function counters(saveText: string): string[] {
  return saveText.split('\n').filter((l) => l.startsWith('[') && l.includes('-A INPUT'));
}

(skipReason ? test.skip : test.serial)(`kernel vs xtr: conntrack after resets (closed port, SYN scan), retransmitted SYNs${skipReason ? ` (skipped: ${skipReason})` : ''}`, async (t) => {
  const lab = new Lab();
  const ct = new Conntrack({ max: 4096 });
  let e: TestEngine;
  try {
    await lab.up();
    e = await testEngine([], ct);
    for (const line of RULES) {
      lab.inRouter(['iptables-legacy', ...line.split(' ').slice(1)]);
      t.is((await e.run(line)).status, 0, line);
    }
    const fromClient = (bytes: Buffer) => {
      lab.send(bytes);
      const p = ctxOf(bytes, performance.now());
      p.inIf = { name: 'eth0', index: 1, kind: 'tun', mtu: 1500, mac: null };
      if (e.nf.hook(Hook.PREROUTING, p) === Verdict.ACCEPT) e.nf.hook(Hook.INPUT, p);
    };
    // What the router's own stack sends back (the kernel does it by itself; xtr's test has no TCP stack).
    const fromRouter = (bytes: Buffer) => {
      const p = ctxOf(bytes, performance.now());
      p.outIf = { name: 'eth0', index: 1, kind: 'tun', mtu: 1500, mac: null };
      p.locallyGenerated = true;
      if (e.nf.hook(Hook.OUTPUT, p) === Verdict.ACCEPT) e.nf.hook(Hook.POSTROUTING, p);
    };
    const check = async (step: string, expected: string[]) => {
      await sleep(200);
      const now = performance.now();
      const kernel = lab.flows();
      t.deepEqual(kernel.map((f) => f.flow), expected, `the kernel's flows after: ${step}`);
      const xtr = xtrFlows(ct, now);
      t.deepEqual(xtr.map((f) => f.flow), kernel.map((f) => f.flow), `flows after: ${step}`);
      for (const [i, k] of kernel.entries()) t.true(Math.abs(k.timeout - (xtr[i]?.timeout ?? -99)) <= 1, `timeout of ${k.flow} after ${step}: kernel ${k.timeout}, xtr ${xtr[i]?.timeout}`);
      t.deepEqual(counters((await e.run('iptables-save -c')).stdout), counters(lab.inRouter(['iptables-legacy-save', '-c'])), `INPUT counters after: ${step}`);
    };

    // 1. A closed port: the only answer is RST/ACK, and the entry goes at once.
    fromClient(ip4(CLIENT, ROUTER, tcpSeg(40000, 9, SYN, { seq: 1000 })));
    fromRouter(ip4(ROUTER, CLIENT, tcpSeg(9, 40000, RST | ACK, { seq: 0, ack: 1001, win: 0 })));
    await check('SYN to a closed port, answered by RST', []);
    // 2. The client retransmits the same SYN: NEW again, and reset again.
    fromClient(ip4(CLIENT, ROUTER, tcpSeg(40000, 9, SYN, { seq: 1000 })));
    fromRouter(ip4(ROUTER, CLIENT, tcpSeg(9, 40000, RST | ACK, { seq: 0, ack: 1001, win: 0 })));
    await check('the retransmitted SYN', []);
    // 3. An open port, SYN scan style: SYN, the router's SYN/ACK, the client's stack resets (seq = isn + 1).
    fromClient(ip4(CLIENT, ROUTER, tcpSeg(40001, 8080, SYN, { seq: 5000 })));
    fromRouter(ip4(ROUTER, CLIENT, tcpSeg(8080, 40001, SYN | ACK, { seq: 77, ack: 5001, win: 64240 })));
    // The client's kernel answers the SYN/ACK with a reset by itself; xtr gets the same reset.
    fromClientXtrOnly(ip4(CLIENT, ROUTER, tcpSeg(40001, 8080, RST, { seq: 5001, win: 0 })));
    await check('SYN, SYN/ACK, RST (the entry stays in CLOSE)', ['40001>8080 CLOSE']);
    // 4. A new SYN on the same ports while CLOSE: the old entry is replaced, the SYN is NEW.
    fromClient(ip4(CLIENT, ROUTER, tcpSeg(40001, 8080, SYN, { seq: 9000 })));
    fromRouter(ip4(ROUTER, CLIENT, tcpSeg(8080, 40001, SYN | ACK, { seq: 99, ack: 9001, win: 64240 })));
    fromClientXtrOnly(ip4(CLIENT, ROUTER, tcpSeg(40001, 8080, RST, { seq: 9001, win: 0 })));
    await check('a new SYN on the same ports while CLOSE', ['40001>8080 CLOSE']);
    const save = (await e.run('iptables-save -c')).stdout;
    t.regex(save, /\[4:\d+\] -A INPUT -p tcp -m state --state NEW/, 'every SYN was NEW');
    t.regex(save, /\[2:\d+\] -A INPUT -p tcp -m state --state ESTABLISHED/, 'the client\'s resets were ESTABLISHED');

    function fromClientXtrOnly(bytes: Buffer) {
      const p = ctxOf(bytes, performance.now());
      p.inIf = { name: 'eth0', index: 1, kind: 'tun', mtu: 1500, mac: null };
      if (e.nf.hook(Hook.PREROUTING, p) === Verdict.ACCEPT) e.nf.hook(Hook.INPUT, p);
    }
  } finally {
    lab.down();
  }
});
