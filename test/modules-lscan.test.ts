/**
 * lscan step by step on the module harness: each sequence is one TCP
 * connection as the remote side's packets reach the rule (flags, conntrack
 * state, payload), with the connmark after each packet and whether each rule
 * variant matches, following matches-facts §11. The connection is a small
 * stand-in for conntrack's entry (the Conn view: a writable mark).
 */
import test from 'ava';
import lscan, { LSCAN_MARK_DEFAULTS, lscanStep } from '../modules/lscan.js';
import { CtState, type PacketContext } from '../xt/packet.js';
import type { Conn } from '../xt/conn.js';
import { XtHarness } from './helpers/xt-harness.js';
import { ip4, ip6, tcpSeg } from './modules-fixtures.js';
import { testEngine } from '../router/netfilter/testkit.js';

const F = 0x01, S = 0x02, R = 0x04, P = 0x08, A = 0x10, U = 0x20;

function conn(): Conn {
  const tuple = { src: new Uint32Array(4), dst: new Uint32Array(4), sport: 0, dport: 0 };
  return { family: 4, proto: 6, orig: tuple, repl: tuple, status: 0, mark: 0, remaining: () => 60, isReply: () => false };
}

type Ct = 'NEW' | 'EST' | 'none' | 'INVALID' | 'UNTRACKED';
/** [flags, conntrack state, payload bytes, connmark after, rules that match (of stealth, synscan, cnscan, grscan)] */
type Step = [number, Ct, number, number, string];

const RULES = ['stealth', 'synscan', 'cnscan', 'grscan'] as const;

interface Sequence {
  name: string;
  steps: Step[];
  v6?: boolean;
}

const SEQUENCES: Sequence[] = [
  { name: 'SYN scan (nmap -sS, open port): SYN, then RST instead of the ACK', steps: [[S, 'NEW', 0, 1, ''], [R, 'EST', 0, 3, 'synscan'], [R, 'EST', 0, 3, 'synscan']] },
  { name: 'SYN to a closed port: nothing more from the scanner, never flagged', steps: [[S, 'NEW', 0, 1, '']] },
  { name: 'connect scan (nmap -sT, open port): SYN, ACK, RST', steps: [[S, 'NEW', 0, 1, ''], [A, 'EST', 0, 4, ''], [R | A, 'EST', 0, 6, 'cnscan']] },
  { name: 'connect scan closed with FIN', steps: [[S, 'NEW', 0, 1, ''], [A, 'EST', 0, 4, ''], [F | A, 'EST', 0, 6, 'cnscan'], [A, 'EST', 0, 6, 'cnscan']] },
  { name: 'banner grab: SYN, ACK, bare ACKs of the banner, FIN', steps: [[S, 'NEW', 0, 1, ''], [A, 'EST', 0, 4, ''], [A, 'EST', 0, 5, ''], [A | P, 'EST', 0, 5, ''], [F | A, 'EST', 0, 7, 'grscan']] },
  { name: 'banner grab ended by RST', steps: [[S, 'NEW', 0, 1, ''], [A, 'EST', 0, 4, ''], [A, 'EST', 0, 5, ''], [R, 'EST', 0, 7, 'grscan']] },
  {
    name: 'a normal exchange: the client sends data, the connection is VALID and stays so through its FIN',
    steps: [[S, 'NEW', 0, 1, ''], [A, 'EST', 0, 4, ''], [P | A, 'EST', 12, 8, ''], [A, 'EST', 0, 8, ''], [F | A, 'EST', 0, 8, ''], [A, 'EST', 0, 8, '']],
  },
  { name: 'data right after the handshake ACK', steps: [[S, 'NEW', 0, 1, ''], [A, 'EST', 0, 4, ''], [A, 'EST', 0, 5, ''], [P | A, 'EST', 5, 8, ''], [F | A, 'EST', 0, 8, '']] },
  { name: 'handshake ACK carrying PSH or URG is not the ACK (ack6): SYN scan', steps: [[S, 'NEW', 0, 1, ''], [A | P, 'EST', 0, 3, 'synscan']] },
  { name: 'ECE/CWR do not count: SYN with ECN, ACK with CWR', steps: [[S | 0xc0, 'NEW', 0, 1, ''], [A | 0x80, 'EST', 0, 4, '']] },
  { name: 'a SYN that conntrack does not call NEW leaves state 0', steps: [[S, 'EST', 0, 0, '']] },
  { name: 'a mid-stream ACK picked up by conntrack: state 0, never flagged', steps: [[A, 'NEW', 0, 0, ''], [A, 'EST', 0, 0, '']] },
  { name: 'FIN scan: no connection', steps: [[F, 'none', 0, -1, 'stealth']] },
  { name: 'XMAS scan: no connection', steps: [[F | P | U, 'INVALID', 0, -1, 'stealth']] },
  { name: 'NULL scan: no connection', steps: [[0, 'INVALID', 0, -1, 'stealth']] },
  { name: 'SYN+FIN: no connection', steps: [[S | F, 'INVALID', 0, -1, 'stealth']] },
  { name: 'ACK without connection (untracked)', steps: [[A, 'UNTRACKED', 0, -1, 'stealth']] },
  { name: 'pure SYN without connection is not stealth', steps: [[S, 'none', 0, -1, '']] },
  { name: 'RST+ACK without connection is not stealth', steps: [[R | A, 'none', 0, -1, '']] },
  { name: 'RST+ACK+FIN without connection is', steps: [[R | A | F, 'none', 0, -1, 'stealth']] },
  { name: 'IPv6: connect scan', v6: true, steps: [[S, 'NEW', 0, 1, ''], [A, 'EST', 0, 4, ''], [R, 'EST', 0, 6, 'cnscan']] },
  { name: 'IPv6: FIN scan', v6: true, steps: [[F, 'INVALID', 0, -1, 'stealth']] },
];

const CT: Record<Exclude<Ct, 'none'>, CtState> = { NEW: CtState.NEW, EST: CtState.ESTABLISHED, INVALID: CtState.INVALID, UNTRACKED: CtState.UNTRACKED };

function packetFor(h: XtHarness, flags: number, payload: number, v6: boolean, seq = 1000): PacketContext {
  const seg = tcpSeg(40000, 22, flags, { seq, payload: new Array(payload).fill(0x61) });
  return h.packet(v6 ? ip6('2001:db8:c::2', '2001:db8:5::2', seg) : ip4('198.51.100.2', '203.0.113.2', seg), { inIf: 'eth0' });
}

for (const seq of SEQUENCES) {
  test(`lscan: ${seq.name}`, (t) => {
    const h = new XtHarness();
    const place = { family: seq.v6 ? 6 : 4, proto: 'tcp', chain: 'FORWARD' } as const;
    const insts = RULES.map((r) => h.match(lscan, `--${r}`, place));
    const c = conn();
    seq.steps.forEach(([flags, ct, payload, markAfter, want], k) => {
      const got: string[] = [];
      // Each rule variant sees its own copy of the packet, as if it were the only lscan rule: the
      // first one steps the connection, the others see the packet mark 9 and only read it.
      insts.forEach((inst, r) => {
        const pkt = packetFor(h, flags, payload, seq.v6 ?? false);
        if (ct !== 'none') {
          pkt.ct = ct === 'INVALID' || ct === 'UNTRACKED' ? null : c;
          pkt.ctState = CT[ct];
        }
        if (r > 0 && ct !== 'none' && pkt.ct) pkt.mark = LSCAN_MARK_DEFAULTS.seen;
        if (inst.match(pkt)) got.push(RULES[r]);
        if (r === 0 && pkt.ct) t.is(pkt.mark, 9, `step ${k}: packet mark after the state machine`);
      });
      t.is(got.join(','), want, `step ${k}: flags 0x${flags.toString(16)} ${ct}`);
      if (markAfter >= 0) t.is(c.mark, markAfter, `step ${k}: connmark`);
    });
    h.destroyAll();
  });
}

test('lscan: a pure RST without a connection is false while the warning is rate-allowed (10 per 5 s), then matches', (t) => {
  const h = new XtHarness();
  const m = h.match(lscan, '--stealth', { proto: 'tcp' });
  const got: boolean[] = [];
  for (let k = 0; k < 12; k++) got.push(m.match(packetFor(h, R, 0, false)));
  t.deepEqual(got, [...new Array(10).fill(false), true, true]);
  t.is(h.services.logged.filter((l) => l.line === 'xt_lscan: Warning: Pure RST received').length, 10);
  h.advance(5000);
  t.false(m.match(h.packet(ip4('198.51.100.2', '203.0.113.2', tcpSeg(1, 2, R)))));
});

test('lscan: --mirai matches an IPv4 segment whose sequence number is the destination address, before any state', (t) => {
  const h = new XtHarness();
  const m = h.match(lscan, '--mirai', { proto: 'tcp' });
  const c = conn();
  const hit = packetFor(h, S, 0, false, 0xcb007102); // 203.0.113.2
  hit.ct = c;
  hit.ctState = CtState.NEW;
  t.true(m.match(hit));
  t.is(c.mark, 0, 'no state change');
  t.is(hit.mark, 0);
  t.false(m.match(packetFor(h, S, 0, false, 0xcb007103)));
  const m6 = h.match(lscan, '--mirai', { proto: 'tcp', family: 6 });
  t.false(m6.match(packetFor(h, S, 0, true, 0)), 'IPv6: never');
});

test('lscan: the packet mark stops a second lscan rule from stepping the connection; VALID always re-runs', (t) => {
  const h = new XtHarness();
  const m = h.match(lscan, '--synscan', { proto: 'tcp' });
  const c = conn();
  const p1 = packetFor(h, S, 0, false);
  p1.ct = c;
  p1.ctState = CtState.NEW;
  m.match(p1);
  t.is(c.mark, 1);
  t.false(m.match(p1), 'same packet again: mark 9, no step');
  t.is(c.mark, 1);
  c.mark = 8;
  const p2 = packetFor(h, S, 0, false);
  p2.ct = c;
  p2.ctState = CtState.NEW;
  p2.mark = 9;
  m.match(p2);
  t.is(c.mark, 1, 'VALID re-ran although the packet carries mark 9 (a new SYN on a VALID connection)');
});

test('lscan: narrowed masks from settings.lscan keep the other connmark/mark bits', (t) => {
  const h = new XtHarness({ settings: { lscan: { connmark_mask: 0xf, packet_mask: 0xf0, mark_seen: 0x90 } } });
  const m = h.match(lscan, '--synscan', { proto: 'tcp' });
  const c = conn();
  c.mark = 0xab00;
  const p = packetFor(h, S, 0, false);
  p.ct = c;
  p.ctState = CtState.NEW;
  p.mark = 0x1203;
  m.match(p);
  t.is(c.mark, 0xab01);
  t.is(p.mark, 0x1293);
  t.throws(() => new XtHarness({ settings: { lscan: { mark_valid: -1 } } }).match(lscan, '', { proto: 'tcp' }), { message: 'settings.lscan.mark_valid: -1: must be an integer 0..4294967295' });
});

test('lscan: the step function on loopback (both directions seen)', (t) => {
  const m = LSCAN_MARK_DEFAULTS;
  t.is(lscanStep(m, 1, false, true, S | A, 0), 1);
  t.is(lscanStep(m, 1, false, true, R | A, 0), 2);
  t.is(lscanStep(m, 1, false, false, S | A, 0), 3);
  t.is(lscanStep(m, 4, false, true, A, 0), 8, 'loopback: no ESTAB2');
});

test('lscan: options, -p tcp required, save and list text as libxt_lscan', async (t) => {
  const e = await testEngine();
  for (const line of [
    'iptables -A INPUT -p tcp -m lscan --stealth --synscan --cnscan --grscan --mirai -j DROP',
    'iptables -A INPUT -p tcp -m lscan --grscan --stealth --stealth',
    'iptables -A INPUT -p tcp -m lscan ! --cnscan',
    'iptables -A INPUT -p tcp -m lscan',
    'ip6tables -A INPUT -p tcp -m lscan --synscan',
  ]) {
    const r = await e.run(line);
    t.is(r.status, 0, `${line}: ${r.stderr}`);
  }
  const bad = await e.run('iptables -A INPUT -m lscan --stealth');
  t.is(bad.status, 1);
  t.regex(bad.stderr, /^iptables: Invalid argument\. Run `dmesg' for more information\.\n/);
  t.is((await e.run('iptables -A INPUT -p tcp -m lscan --bogus')).status, 2);
  t.is(
    (await e.run('iptables -S INPUT')).stdout,
    '-P INPUT ACCEPT\n' +
      '-A INPUT -p tcp -m lscan --stealth  --synscan  --cnscan  --grscan  --mirai  -j DROP\n' +
      '-A INPUT -p tcp -m lscan --stealth  --grscan \n' +
      '-A INPUT -p tcp -m lscan --cnscan \n' +
      '-A INPUT -p tcp -m lscan\n',
  );
  t.regex((await e.run('iptables -L INPUT -n')).stdout, /DROP +6 +-- +0\.0\.0\.0\/0 +0\.0\.0\.0\/0 +-m lscan --stealth  --synscan  --cnscan  --grscan  --mirai \n/);
});

test('lscan allocates nothing per packet (coarse heap check: connections stepped through every state)', (t) => {
  const h = new XtHarness();
  const m = h.match(lscan, '--stealth --synscan --cnscan --grscan', { proto: 'tcp' });
  const c = conn();
  const pkt = packetFor(h, S, 0, false);
  const flagsAt = pkt.l4off + 13;
  const FLOW = [S, A, A, F | A, S, R, S, A, P | A, F];
  const round = (n: number) => {
    let hits = 0;
    for (let i = 0; i < n; i++) {
      const k = i % FLOW.length;
      if (k === 0 || k === 4 || k === 6) c.mark = 0;
      pkt.buf[flagsAt] = FLOW[k];
      pkt.ctState = FLOW[k] === S ? CtState.NEW : CtState.ESTABLISHED;
      pkt.ct = i % 7 === 0 ? null : c;
      pkt.mark = 0;
      if (m.match(pkt)) hits++;
    }
    return hits;
  };
  t.true(round(50_000) > 0);
  const grown: number[] = [];
  for (let r = 0; r < 5; r++) {
    const before = process.memoryUsage().heapUsed;
    round(100_000);
    grown.push(process.memoryUsage().heapUsed - before);
  }
  grown.sort((a, b) => a - b);
  t.true(grown[2] < 1_000_000, `heap growth per round: ${grown.join(', ')} bytes`);
});
