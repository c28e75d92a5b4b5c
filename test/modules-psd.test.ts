/**
 * psd step by step on the module harness (fake clock, real state and proc
 * files): each row of a sequence is one packet (time, source, protocol,
 * destination port, TCP flags) and whether the rule matches it, following
 * scanlogd's algorithm as matches-facts §12 gives it. Then the table's
 * bounds (circular list, chain cut) as seen through net/xt_psd, and the
 * option/save tables through the real engine.
 */
import test from 'ava';
import psd, { PsdTable, PSD_DEFAULTS } from '../modules/psd.js';
import { XtHarness } from './helpers/xt-harness.js';
import { ip4, ip6, tcpSeg, udpDgram, icmpMsg } from './modules-fixtures.js';
import { testEngine } from '../router/netfilter/testkit.js';

const SYN = 0x02;
const ACK = 0x10;
const RST = 0x04;
const DST4 = '203.0.113.2';
const DST6 = '2001:db8:5::2';

type Proto = 'tcp' | 'udp' | 'udplite' | 'icmp';
/** [ms since start, source, protocol, dport, TCP flags, matches?] */
type Step = [number, string, Proto, number, number, boolean];

function bytesOf(src: string, proto: Proto, dport: number, flags: number, frag = 0): Buffer {
  const v6 = src.includes(':');
  const l4 =
    proto === 'tcp' ? tcpSeg(40000, dport, flags) : proto === 'icmp' ? icmpMsg(v6 ? 128 : 8, 0, [0, 1, 0, 1], [], v6) : { ...udpDgram(40000, dport), proto: proto === 'udp' ? 17 : 136 };
  return v6 ? ip6(src, DST6, l4) : ip4(src, DST4, l4, { frag });
}

interface Sequence {
  name: string;
  rules: string[];
  family?: 4 | 6;
  settings?: Record<string, unknown>;
  steps: Step[];
  /** Lines the proc view must hold at the end (regexps), per family file. */
  proc?: RegExp[];
}

const A = '198.51.100.7';
const B = '198.51.100.8';
const lo = (n: number) => 20 + n; // privileged ports 21, 22, ...
const hi = (n: number) => 2000 + n;

const SEQUENCES: Sequence[] = [
  {
    name: 'defaults: 7 new privileged ports within 3 s reach 21; the 7th and every later new port match, listed ports never',
    rules: [''],
    steps: [
      ...[1, 2, 3, 4, 5, 6].map((n): Step => [n * 100, A, 'tcp', lo(n), SYN, false]),
      [700, A, 'tcp', lo(7), SYN, true],
      [800, A, 'tcp', lo(8), SYN, true],
      [900, A, 'tcp', lo(1), SYN, false],
      [950, A, 'tcp', lo(7), SYN, true], // 7 was not added when it crossed the threshold, and weight stays 21 once reached
    ],
    proc: [/^198\.51\.100\.7 weight=21 ports=6 age_ms=0 last=tcp\/21,tcp\/22,tcp\/23,tcp\/24,tcp\/25,tcp\/26$/m],
  },
  {
    name: 'defaults: high ports weigh 1, the 21st reaches the threshold; 1023 is privileged, 1024 is not',
    rules: [''],
    steps: [
      [0, A, 'tcp', 1023, SYN, false], // 3
      ...Array.from({ length: 17 }, (_, k): Step => [10 + k, A, 'tcp', 1024 + k, SYN, false]), // 3 + 17 = 20
      [100, A, 'tcp', 5000, SYN, true], // 21
    ],
  },
  {
    name: 'the first packet of a source never matches, even with threshold 1',
    rules: ['--psd-weight-threshold 1'],
    steps: [
      [0, A, 'tcp', 22, SYN, false],
      [1, A, 'tcp', 23, SYN, true],
      [2, A, 'tcp', 22, SYN, false],
    ],
  },
  {
    name: 'a gap longer than the delay forgets the source (3000 ms is still recent, 3001 is not)',
    rules: [''],
    steps: [
      ...[1, 2, 3, 4, 5].map((n): Step => [n * 3000, A, 'tcp', lo(n), SYN, false]), // gaps of exactly 3 s: weight 15
      [18001, A, 'tcp', lo(6), SYN, false], // 3001 ms: stale, starts again at 3
      ...[7, 8, 9, 10, 11].map((n): Step => [18001 + n, A, 'tcp', lo(n), SYN, false]), // 18
      [18100, A, 'tcp', lo(12), SYN, true], // 21
    ],
  },
  {
    name: 'packets to listed ports do not refresh the timer',
    rules: [''],
    steps: [
      [0, A, 'tcp', 22, SYN, false],
      [2900, A, 'tcp', 22, SYN, false],
      [3100, A, 'tcp', 23, SYN, false], // stale: 3100 ms since the last new port
    ],
    proc: [/^198\.51\.100\.7 weight=3 ports=1 age_ms=0 last=tcp\/23$/m],
  },
  {
    name: 'delay threshold in hundredths: --psd-delay-threshold 50 is 500 ms',
    rules: ['--psd-delay-threshold 50 --psd-weight-threshold 6'],
    steps: [
      [0, A, 'tcp', 22, SYN, false],
      [500, A, 'tcp', 23, SYN, true],
      [1001, A, 'tcp', 24, SYN, false],
    ],
  },
  {
    name: 'TCP with ACK from an unknown source creates nothing; a pure RST does',
    rules: ['--psd-weight-threshold 4'],
    steps: [
      [0, A, 'tcp', 22, ACK, false],
      [1, A, 'tcp', 23, SYN, false], // new entry: 3
      [2, B, 'tcp', 22, RST, false], // new entry for B: 3
      [3, B, 'tcp', 23, SYN, true], // 6 >= 4
    ],
  },
  {
    name: 'a known source: ACK or RST to a new port neither counts nor refreshes',
    rules: [''],
    steps: [
      ...[1, 2, 3, 4, 5, 6].map((n): Step => [n, A, 'tcp', lo(n), SYN, false]),
      [10, A, 'tcp', lo(7), ACK | SYN, false],
      [11, A, 'tcp', lo(8), RST, false],
      [12, A, 'tcp', lo(9), SYN, true],
    ],
  },
  {
    name: 'UDP and UDP-Lite count; the same port over another protocol is a new port (v3)',
    rules: ['--psd-weight-threshold 9'],
    steps: [
      [0, A, 'udp', 53, 0, false],
      [1, A, 'tcp', 53, SYN, false],
      [2, A, 'udplite', 53, 0, true],
      [3, A, 'udp', 53, 0, false],
    ],
  },
  {
    name: 'ICMP, source 0.0.0.0 and non-first fragments are never looked at',
    rules: ['--psd-weight-threshold 1'],
    steps: [
      [0, A, 'icmp', 0, 0, false],
      [1, '0.0.0.0', 'udp', 67, 0, false],
      [2, '0.0.0.0', 'udp', 68, 0, false],
    ],
    proc: [/^# psd ipv4: sources=0\/256 /],
  },
  {
    name: 'weights add up past 255 (a 32-bit count, see docs/compat.md)',
    rules: ['--psd-weight-threshold 300 --psd-lo-ports-weight 100'],
    steps: [
      [0, A, 'tcp', 1, SYN, false],
      [1, A, 'tcp', 2, SYN, false],
      [2, A, 'tcp', 3, SYN, true],
    ],
  },
  {
    name: 'at most 20 ports remembered: a 21st new port counts but is not stored',
    rules: ['--psd-weight-threshold 10000'],
    steps: [...Array.from({ length: 22 }, (_, k): Step => [k, A, 'tcp', hi(k), SYN, false])],
    proc: [/^198\.51\.100\.7 weight=22 ports=20 /m],
  },
  {
    name: 'two rules share the entry: the second sees the port the first listed',
    rules: ['--psd-weight-threshold 100', '--psd-weight-threshold 3'],
    steps: [
      [0, A, 'tcp', 22, SYN, false],
      [1, A, 'tcp', 23, SYN, false], // rule 1 adds 23 (weight 6); rule 2 sees it listed
    ],
  },
  {
    name: 'IPv6 sources, the same algorithm over the four-word address',
    family: 6,
    rules: [''],
    steps: [
      ...[1, 2, 3, 4, 5, 6].map((n): Step => [n, '2001:db8:c::2', 'tcp', lo(n), SYN, false]),
      [7, '2001:db8:c::3', 'tcp', lo(1), SYN, false],
      [8, '2001:db8:c::2', 'tcp', lo(7), SYN, true],
      [9, '::', 'tcp', lo(8), SYN, false],
    ],
    proc: [/^2001:db8:c::2 weight=21 ports=6 /m, /^2001:db8:c::3 weight=3 ports=1 /m],
  },
  {
    name: 'hosts=4: the fifth source takes the oldest-created slot',
    rules: [''],
    settings: { psd: { hosts: 4 } },
    steps: [1, 2, 3, 4, 5].map((n): Step => [n, `10.0.0.${n}`, 'tcp', 22, SYN, false]),
    proc: [/^# psd ipv4: sources=4\/4 hash=512 chain_max=16 ports_per_host=20 evicted=1 chain_cut=0$/m, /^10\.0\.0\.5 /m],
  },
  {
    name: 'one bucket, chain_max=3: a new source arriving at a full chain cuts its oldest entry',
    rules: ['--psd-weight-threshold 6'],
    settings: { psd: { hash_size: 1, chain_max: 3 } },
    steps: [
      [0, '10.0.0.1', 'tcp', 22, SYN, false],
      [1, '10.0.0.2', 'tcp', 22, SYN, false],
      [2, '10.0.0.3', 'tcp', 22, SYN, false],
      [3, '10.0.0.4', 'tcp', 22, SYN, false], // cuts 10.0.0.1
      [4, '10.0.0.1', 'tcp', 23, SYN, false], // a new source again (cuts 10.0.0.2)
      [5, '10.0.0.3', 'tcp', 23, SYN, true], // still known: 6
    ],
    proc: [/chain_cut=2$/m, /^# psd ipv4: sources=3\/256 /],
  },
];

for (const seq of SEQUENCES) {
  test(`psd: ${seq.name}`, (t) => {
    const h = new XtHarness({ settings: seq.settings });
    const family = seq.family ?? 4;
    const place = { family } as const;
    const rules = seq.rules.map((w) => h.match(psd, w, place));
    const start = h.services.clock;
    for (const [ms, src, proto, dport, flags, expected] of seq.steps) {
      const now = start + ms;
      // As the engine would run them: rule by rule, the first match ends the walk (here: the rule matched).
      let got = false;
      for (const r of rules) {
        if (r.match(h.packet(bytesOf(src, proto, dport, flags), { now }))) {
          got = true;
          break;
        }
      }
      t.is(got, expected, `${ms} ms ${src} ${proto}/${dport} flags ${flags}`);
    }
    if (seq.proc) {
      const text = h.readProc(`net/xt_psd/ipv${family}`);
      for (const re of seq.proc) t.regex(text, re, text);
    }
    h.destroyAll();
  });
}

test('psd: a non-first IPv4 fragment is not looked at', (t) => {
  const h = new XtHarness();
  const m = h.match(psd, '--psd-weight-threshold 1');
  t.false(m.match(h.packet(bytesOf(A, 'udp', 1, 0))));
  // Offset 8 (64 bytes): no transport header in it.
  t.false(m.match(h.packet(bytesOf(A, 'udp', 2, 0, 8))));
  t.regex(h.readProc('net/xt_psd/ipv4'), /^198\.51\.100\.7 weight=3 ports=1 /m);
});

test('psd: the table is shared state released with the last rule; "clear" empties it, anything else is refused', (t) => {
  const h = new XtHarness();
  h.match(psd, '');
  h.match(psd, '--psd-weight-threshold 5');
  const m = h.match(psd, '');
  m.match(h.packet(bytesOf(A, 'tcp', 22, SYN)));
  t.regex(h.readProc('net/xt_psd/ipv4'), /sources=1\/256/);
  t.throws(() => h.writeProc('net/xt_psd/ipv4', 'flush\n'), { message: /only "clear" is understood/ });
  h.writeProc('net/xt_psd/ipv4', 'clear\n');
  t.regex(h.readProc('net/xt_psd/ipv4'), /sources=0\/256/);
  h.destroyAll();
  t.throws(() => h.readProc('net/xt_psd/ipv4'), { message: /no proc file/ });
});

test('psd: bad settings are refused at rule check', (t) => {
  for (const [settings, msg] of [
    [{ hosts: 0 }, 'settings.psd.hosts: 0: must be an integer 1..1048576'],
    [{ hash_size: 500 }, 'settings.psd.hash_size: 500: must be an integer 1..1048576, a power of two'],
    [{ ports_per_host: 256 }, 'settings.psd.ports_per_host: 256: must be an integer 1..255'],
  ] as const) {
    const h = new XtHarness({ settings: { psd: settings } });
    t.throws(() => h.match(psd, ''), { message: msg });
  }
});

test('psd: the hash folds the address in hash-size steps (scanlogd), IPv6 words XORed first', (t) => {
  const tb = new PsdTable(4, { hosts: 4, hashSize: 512, chainMax: 16, portsPerHost: 20 });
  // 0xc6336407: 0xc6336407 ^ 0x00631932 ^ 0x0000318c ^ 0x18 ^ 0 -> low 9 bits
  let v = 0xc6336407;
  let want = 0;
  while (v !== 0) {
    want ^= v;
    v >>>= 9;
  }
  t.is(tb.hash(0xc6336407), want & 511);
  const tb6 = new PsdTable(6, { hosts: 4, hashSize: 512, chainMax: 16, portsPerHost: 20 });
  t.is(tb6.hash(new Uint32Array([0x20010db8, 0, 0, 2])), tb.hash((0x20010db8 ^ 2) >>> 0));
  t.deepEqual(PSD_DEFAULTS, { weightThreshold: 21, delayThreshold: 300, loPortsWeight: 3, hiPortsWeight: 1 });
});

/** [command line, status, stderr (parameter problems: the whole text iptables-legacy 1.8.9 printed)] */
const COMMANDS: [string, number, string][] = [
  ['iptables -A INPUT -m psd --psd-weight-threshold x -j DROP', 2, "iptables v1.8.9 (xtr): bad --psd-weight-threshold 'x'\nTry `iptables -h' or 'iptables --help' for more information.\n"],
  ['iptables -A INPUT -m psd --psd-delay-threshold 10001 -j DROP', 2, "iptables v1.8.9 (xtr): bad --psd-delay-threshold '10001'\nTry `iptables -h' or 'iptables --help' for more information.\n"],
  ['iptables -A INPUT -m psd --psd-lo-ports-weight -1 -j DROP', 2, "iptables v1.8.9 (xtr): bad --psd-lo-ports-weight '-1'\nTry `iptables -h' or 'iptables --help' for more information.\n"],
  ['iptables -A INPUT -m psd --psd-hi-ports-weight 1 --psd-hi-ports-weight 2 -j DROP', 2, "iptables v1.8.9 (xtr): Can't specify --psd-hi-ports-weight twice\nTry `iptables -h' or 'iptables --help' for more information.\n"],
];

test('psd: option errors in libxt_psd\'s words; kernel refusals; nothing loaded is lost; save and list text', async (t) => {
  const e = await testEngine();
  t.is((await e.run('iptables -A INPUT -p tcp -m psd -j DROP')).status, 0);
  for (const [line, status, stderr] of COMMANDS) {
    const r = await e.run(line);
    t.is(r.status, status, line);
    t.is(r.stderr, stderr, line);
  }
  for (const line of ['iptables -A INPUT -m psd --psd-weight-threshold 0', 'iptables -A INPUT -m psd --psd-lo-ports-weight 0 --psd-hi-ports-weight 0']) {
    const r = await e.run(line);
    t.is(r.status, 1, line);
    t.regex(r.stderr, /^iptables: Invalid argument\. Run `dmesg' for more information\.\n/, line);
  }
  t.is((await e.run('iptables -A INPUT -m psd ! --psd-weight-threshold 0x10 --psd-delay-threshold 010')).status, 0);
  t.is((await e.run('ip6tables -A INPUT -m psd --psd-hi-ports-weight 0')).status, 0);
  t.is(
    (await e.run('iptables -S INPUT')).stdout,
    '-P INPUT ACCEPT\n' +
      '-A INPUT -p tcp -m psd --psd-weight-threshold 21 --psd-delay-threshold 300 --psd-lo-ports-weight 3 --psd-hi-ports-weight 1  -j DROP\n' +
      '-A INPUT -m psd --psd-weight-threshold 16 --psd-delay-threshold 8 --psd-lo-ports-weight 3 --psd-hi-ports-weight 1 \n',
  );
  t.is((await e.run('ip6tables -S INPUT')).stdout, '-P INPUT ACCEPT\n-A INPUT -m psd --psd-weight-threshold 21 --psd-delay-threshold 300 --psd-lo-ports-weight 3 --psd-hi-ports-weight 0 \n');
  const list = (await e.run('iptables -L INPUT -n')).stdout;
  t.regex(list, /DROP +6 +-- +0\.0\.0\.0\/0 +0\.0\.0\.0\/0 +-m psd --psd-weight-threshold 21 --psd-delay-threshold 300 --psd-lo-ports-weight 3 --psd-hi-ports-weight 1 \n/);
});

test('psd allocates nothing per packet (coarse heap check: new sources, evictions, lookups, IPv4 and IPv6)', (t) => {
  const h = new XtHarness({ settings: { psd: { hosts: 64 } } });
  const m4 = h.match(psd, '--psd-weight-threshold 50');
  const m6 = h.match(psd, '--psd-weight-threshold 50', { family: 6 });
  const p4 = h.packet(bytesOf(A, 'tcp', 1, SYN));
  const p6 = h.packet(bytesOf('2001:db8:c::2', 'udp', 1, 0));
  let hits = 0;
  const round = (n: number, base: number) => {
    for (let i = 0; i < n; i++) {
      // 200 sources over a 64-slot table, each to a run of ports: creation, lookup, eviction, matches.
      p4.src4 = (0x0a000000 + (i % 200)) >>> 0;
      p4.dport = (i >> 3) & 0xffff;
      p4.now = base + i;
      p6.src6[3] = i % 200;
      p6.dport = (i >> 3) & 0xffff;
      p6.now = base + i;
      if (m4.match(p4)) hits++;
      if (m6.match(p6)) hits++;
    }
  };
  round(50_000, 0);
  const grown: number[] = [];
  for (let r = 1; r <= 5; r++) {
    const before = process.memoryUsage().heapUsed;
    round(100_000, r * 1_000_000);
    grown.push(process.memoryUsage().heapUsed - before);
  }
  grown.sort((a, b) => a - b);
  t.true(hits >= 0);
  // One 16-byte heap number per packet would be 3.2 MB a round.
  t.true(grown[2] < 1_000_000, `heap growth per round: ${grown.join(', ')} bytes`);
});
