/**
 * Differential tests, TCPMSS: the same rules on the kernel (iptables-legacy
 * in a namespace router) and on xtr, SYNs with and without an MSS option sent
 * through with scapy, and what the server receives compared byte for byte
 * (the MSS it sees, lengths, checksums), with per-rule counters and the rule
 * set as iptables-save prints it.
 *
 * `--clamp-mss-to-pmtu` cases use the route MTU, 1500 on every link of both
 * topologies: 1460 for IPv4, 1440 for IPv6.
 *
 * Also: rule lines (bad options, rules the kernel refuses, accepted ones) run
 * through iptables-legacy in a throwaway namespace and through xtr's command
 * code; status, stderr (whole for option errors; for kernel refusals the
 * iptables line, then xtr adds what the kernel logged), iptables-save and
 * `-L -n -v` must agree.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { registerDifferentialTests, type DiffCase, type Family } from './helpers/kernel-router.js';
import { splitLine } from '../router/netfilter/commands.js';
import { testEngine } from '../router/netfilter/testkit.js';

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

/** Rule lines run on both, in order, in one namespace / one engine. */
const LINES = [
  'iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 65516',
  'ip6tables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 65496',
  'iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss abc',
  'iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss -1',
  "iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss ''",
  'iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS',
  'iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1 --set-mss 2',
  'iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss abc --set-mss 2',
  'iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu --clamp-mss-to-pmtu',
  'iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400 --bogus',
  'iptables -t mangle -A FORWARD -p tcp -j TCPMSS --set-mss 1400',
  'iptables -t mangle -A FORWARD -p tcp ! --syn -j TCPMSS --set-mss 1400',
  'iptables -t mangle -A FORWARD -p udp -j TCPMSS --set-mss 1400',
  'iptables -t mangle -A FORWARD -j TCPMSS --set-mss 1400',
  'iptables -t mangle -A PREROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu',
  'iptables -t mangle -A INPUT -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu',
  'iptables -t raw -A PREROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu',
  'ip6tables -t mangle -A PREROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu',
  'ip6tables -t mangle -A FORWARD -p tcp -j TCPMSS --set-mss 1400',
  'iptables -t mangle -A FORWARD -p tcp --syn -j TCPMSS --set-mss 1400',
  'iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 65515',
  'iptables -t mangle -A FORWARD -p tcp --tcp-flags ACK SYN -j TCPMSS --set-mss 0x500',
  'iptables -t mangle -A PREROUTING -p tcp --syn -j TCPMSS --set-mss 010',
  'iptables -t mangle -A POSTROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu --set-mss 1000',
  'iptables -t mangle -A OUTPUT -p tcp --syn -j TCPMSS --set-mss 1000 --clamp-mss-to-pmtu',
  'iptables -A FORWARD -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu',
  'iptables -t nat -A POSTROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu',
  'ip6tables -t mangle -A FORWARD -p tcp --syn -j TCPMSS --set-mss 65495',
  'ip6tables -t mangle -A POSTROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu',
  'iptables -t mangle -N clamp',
  'iptables -t mangle -A clamp -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu',
  'iptables -t mangle -A FORWARD -j clamp',
  'iptables -t mangle -A PREROUTING -j clamp',
];

const TOOLS_ROOT = process.getuid?.() === 0 && spawnSync('iptables-legacy', ['--version'], { encoding: 'utf8' }).stdout?.includes('v1.8.9');

test('rule lines: statuses, messages, save and list as iptables-legacy 1.8.9', async (t) => {
  if (!TOOLS_ROOT) {
    t.fail('not run: needs root and iptables-legacy 1.8.9');
    return;
  }
  const ns = `xh2-tcpmss-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8' });
  t.is(add.status, 0, add.stderr);
  const kernel = (words: string[]) => {
    const [base, ...suffix] = words[0]!.split('-');
    const r = spawnSync('ip', ['netns', 'exec', ns, [`${base}-legacy`, ...suffix].join('-'), ...words.slice(1)], { encoding: 'utf8', timeout: 20_000 });
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  const norm = (s: string) => s.replace(/\(legacy\)/g, '(xtr)').replace(/ on .*$/gm, ' on <TIME>');
  try {
    const e = await testEngine();
    for (const line of LINES) {
      const words = splitLine(line, 0);
      const k = kernel(words);
      const x = await e.run(line);
      t.is(x.status, k.status, `${line}: status (xtr said ${x.stderr})`);
      if (k.status === 2) t.is(x.stderr, norm(k.stderr), `${line}: stderr`);
      else if (k.status === 1) t.is(x.stderr.split('\n')[0], norm(k.stderr).split('\n')[0], `${line}: stderr`);
    }
    for (const cmd of ['iptables', 'ip6tables']) {
      for (const table of ['mangle', 'filter', 'nat', 'raw']) {
        const k = kernel([`${cmd}-save`, '-t', table]);
        const x = await e.run(`${cmd}-save -t ${table}`);
        t.is(norm(x.stdout), norm(k.stdout), `${cmd}-save -t ${table}`);
        const kl = kernel([cmd, '-t', table, '-L', '-n', '-v']);
        const xl = await e.run(`${cmd} -t ${table} -L -n -v`);
        t.is(xl.stdout, kl.stdout, `${cmd} -t ${table} -L -n -v`);
      }
    }
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
});
