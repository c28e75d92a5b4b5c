/**
 * TCP window tracking against the kernel (nf_conntrack_tcp_be_liberal=0,
 * tcp_loose=1, tcp_max_retrans=3, this machine's defaults): crafted TCP
 * segments (scapy, test/fixtures/differential/agent.py) from the client and
 * the server through a namespace router running the usual
 * `-m state --state INVALID -j DROP` and through xtr, compared on what each
 * end received, the per-state rule counters, and the conntrack entries the
 * flows left (state, timeout, [UNREPLIED]/[ASSURED]).
 *
 * The rule set counts every packet by state: INVALID (dropped), ESTABLISHED,
 * NEW. A packet the kernel ignores (old data, a very late ack, a SYN inside
 * a flow) passes as ESTABLISHED but leaves the entry as it was: the cases
 * make that visible by putting a FIN on such a packet (no FIN_WAIT follows)
 * or by looking at the timeout.
 *
 * Each case's flows use source ports $P, $P+1, ... so they never meet
 * another case's entries. Needs root, ip netns, iptables-legacy, python3
 * with scapy, and a built dist/ for xtr.
 */
import test from 'ava';
import { DiffBench, KernelRouter, XtrRouter, type DiffCase, type DiffResult, type Family, type Topology } from './helpers/kernel-router.js';

/** What a flow's conntrack entry looks like after the case: state, seconds left, flags. */
interface Flow {
  /** Source port offset from $P. */
  port: number;
  state: string;
  timeout: number;
  flags: string;
}

interface WindowCase extends DiffCase {
  family?: Family;
  /** The kernel's entries after the case, as "+N STATE TIMEOUT [FLAGS]" (N = port offset), in port order. */
  flows: string[];
}

const RULES = {
  filter: ['-A FORWARD -m state --state INVALID -j DROP', '-A FORWARD -m state --state ESTABLISHED -j ACCEPT', '-A FORWARD -m state --state NEW -j ACCEPT'],
};

/** A segment from the client (c) or the server (s) of flow $P+port, family 4 unless v6. */
function seg(from: 'c' | 's', port: number, flags: string, seq: number, ack: number, extra = '', payload = 0, v6 = false): string {
  const sp = port === 0 ? '$P' : `$P+${port}`;
  const ip = v6 ? (from === 'c' ? 'IPv6(src=C6,dst=S6)' : 'IPv6(src=S6,dst=C6)') : from === 'c' ? 'IP(src=C,dst=S)' : 'IP(src=S,dst=C)';
  const ports = from === 'c' ? `sport=${sp},dport=80` : `sport=80,dport=${sp}`;
  return `${ip}/TCP(${ports},flags='${flags}',seq=${seq >>> 0},ack=${ack >>> 0}${extra})${payload ? `/Raw(b'x'*${payload})` : ''}`;
}
const c = (port: number, flags: string, seq: number, ack: number, extra = '', payload = 0) => seg('c', port, flags, seq, ack, extra, payload);
const s = (port: number, flags: string, seq: number, ack: number, extra = '', payload = 0) => seg('s', port, flags, seq, ack, extra, payload);
const fromClient = (...packets: string[]) => ({ from: 'client' as const, packets });
const fromServer = (...packets: string[]) => ({ from: 'server' as const, packets });

/** Client SYN 1000, server SYN/ACK 5000, client ACK: the flow is ESTABLISHED and ASSURED. */
function handshake(port: number, o: { cSyn?: string; sSyn?: string; sWin?: number } = {}) {
  return [
    fromClient(c(port, 'S', 1000, 0, o.cSyn ?? '')),
    fromServer(s(port, 'SA', 5000, 1001, `${o.sSyn ?? ''}${o.sWin ? `,window=${o.sWin}` : ''}`)),
    fromClient(c(port, 'A', 1001, 5001)),
  ];
}

const cases: WindowCase[] = [
  {
    name: 'a segment far ahead of the window is INVALID, the flow goes on',
    rules: RULES,
    steps: [
      ...handshake(0),
      fromClient(c(0, 'PA', 1001, 5001, '', 5), c(0, 'PA', 900000000, 5001, '', 8)),
      fromServer(s(0, 'A', 5001, 1006)),
      fromClient(c(0, 'PA', 1006, 5001, '', 5)),
    ],
    // The last 5 bytes are not acked yet: ESTABLISHED is cut to 300 s while data is in flight.
    flows: ['+0 ESTABLISHED 300 [ASSURED]'],
    expect: { server: 4, client: 2 },
  },
  {
    name: 'data behind the window (acked long ago) passes but is not believed: its FIN starts no close',
    rules: RULES,
    steps: [
      ...handshake(0, { sWin: 1000 }),
      fromClient(c(0, 'PA', 1001, 5001, '', 500)),
      fromServer(s(0, 'A', 5001, 1501, ',window=1000')),
      fromClient(c(0, 'PA', 1501, 5001, '', 500)),
      fromServer(s(0, 'A', 5001, 2001, ',window=1000')),
      fromClient(c(0, 'PA', 2001, 5001, '', 500)),
      fromServer(s(0, 'A', 5001, 2501, ',window=1000')),
      // Inside the window: a retransmission, believed (it moves nothing).
      fromClient(c(0, 'PA', 1501, 5001, '', 500)),
      // Ends at 1102, below 2501 - 1000: old data. Passes, and its FIN is ignored.
      fromClient(c(0, 'FA', 1001, 5001, '', 100)),
    ],
    flows: ['+0 ESTABLISHED 432000 [ASSURED]'],
    expect: { server: 7, client: 4 },
  },
  {
    name: 'an ACK of data never sent is INVALID, in either direction',
    rules: RULES,
    steps: [
      ...handshake(0),
      fromClient(c(0, 'A', 1001, 5001 + 100000)),
      fromServer(s(0, 'A', 5001, 1001 + 5000)),
      fromClient(c(0, 'PA', 1001, 5001, '', 5)),
      // A FIN acking the future: INVALID, so no FIN_WAIT either.
      fromServer(s(0, 'FA', 5001, 1006 + 70000)),
    ],
    flows: ['+0 ESTABLISHED 300 [ASSURED]'],
    expect: { server: 3, client: 1 },
  },
  {
    name: 'an ACK more than 66000 behind passes but is not believed; 60000 behind is',
    rules: RULES,
    steps: [
      ...handshake(0),
      fromClient(c(0, 'FA', 1001, 5001 - 70000)),
      ...handshake(1),
      fromClient(c(1, 'FA', 1001, 5001 - 60000)),
    ],
    flows: ['+0 ESTABLISHED 432000 [ASSURED]', '+1 FIN_WAIT 120 [ASSURED]'],
    expect: { server: 6, client: 2 },
  },
  {
    name: 'window scaling from the SYN options: on only when both SYNs offer it',
    rules: RULES,
    steps: [
      // Both offer scale 7: the server's window 512 means 65536 bytes.
      ...handshake(0, { cSyn: ",window=1024,options=[('WScale',7)]", sSyn: ",options=[('WScale',7)]", sWin: 1024 }),
      fromServer(s(0, 'A', 5001, 1001, ',window=512')),
      fromClient(c(0, 'PA', 31001, 5001, '', 10), c(0, 'PA', 1001 + 200000, 5001, '', 10)),
      // Only the client offers it: no scaling, 512 means 512, and 31001 is far beyond.
      ...handshake(1, { cSyn: ",window=1024,options=[('WScale',7)]", sWin: 1024 }),
      fromServer(s(1, 'A', 5001, 1001, ',window=512')),
      fromClient(c(1, 'PA', 1501, 5001, '', 10), c(1, 'PA', 31001, 5001, '', 10)),
      // Only the server offers it: the same.
      ...handshake(2, { sSyn: ",options=[('WScale',7)]", sWin: 1024 }),
      fromServer(s(2, 'A', 5001, 1001, ',window=512')),
      fromClient(c(2, 'PA', 31001, 5001, '', 10)),
      // Scale 14 at most: 20 is read as 14, so 4 * 2^14 = 65536 bytes.
      ...handshake(3, { cSyn: ",options=[('WScale',20)]", sSyn: ",options=[('WScale',20)]" }),
      fromServer(s(3, 'A', 5001, 1001, ',window=4')),
      fromClient(c(3, 'PA', 60001, 5001, '', 10)),
    ],
    flows: ['+0 ESTABLISHED 300 [ASSURED]', '+1 ESTABLISHED 300 [ASSURED]', '+2 ESTABLISHED 432000 [ASSURED]', '+3 ESTABLISHED 300 [ASSURED]'],
    expect: { server: 11, client: 8 },
  },
  {
    name: 'SACK blocks bound the ack when the receiver allowed SACK',
    rules: RULES,
    steps: [
      // The server allowed SACK: a block beyond what it sent is INVALID, one inside is fine.
      ...handshake(0, { cSyn: ",options=[('SAckOK',b'')]", sSyn: ",options=[('SAckOK',b'')]" }),
      fromServer(s(0, 'PA', 5001, 1001, '', 100)),
      fromClient(c(0, 'A', 1001, 5001, ",options=[('NOP',None),('NOP',None),('SAck',(5101,5201))]")),
      fromClient(c(0, 'A', 1001, 5001, ",options=[('NOP',None),('NOP',None),('SAck',(5051,5101))]")),
      // The server did not: SACK blocks are not read at all.
      ...handshake(1, { cSyn: ",options=[('SAckOK',b'')]" }),
      fromServer(s(1, 'PA', 5001, 1001, '', 100)),
      fromClient(c(1, 'A', 1001, 5001, ",options=[('NOP',None),('NOP',None),('SAck',(5101,5201))]")),
      // Only the server allowed it: read, since it is the receiver's permission that counts.
      ...handshake(2, { sSyn: ",options=[('SAckOK',b'')]" }),
      fromServer(s(2, 'PA', 5001, 1001, '', 100)),
      fromClient(c(2, 'A', 1001, 5001, ",options=[('NOP',None),('NOP',None),('SAck',(5101,5201))]")),
    ],
    flows: ['+0 ESTABLISHED 300 [ASSURED]', '+1 ESTABLISHED 300 [ASSURED]', '+2 ESTABLISHED 300 [ASSURED]'],
    expect: { server: 8, client: 6 },
  },
  {
    name: 'resets: at the last ack closes, behind it INVALID, elsewhere in the window keeps the state, outside INVALID',
    rules: RULES,
    steps: [
      ...handshake(0),
      fromClient(c(0, 'PA', 1001, 5001, '', 5)),
      fromServer(s(0, 'A', 5001, 1006)),
      fromClient(c(0, 'R', 1003, 0), c(0, 'R', 1106, 0)),
      ...handshake(1),
      fromClient(c(1, 'PA', 1001, 5001, '', 5)),
      fromServer(s(1, 'A', 5001, 1006)),
      fromClient(c(1, 'R', 1006, 0)),
      ...handshake(2),
      fromClient(c(2, 'PA', 1001, 5001, '', 5)),
      fromServer(s(2, 'A', 5001, 1006)),
      fromClient(c(2, 'R', 1006 + 1000000, 0)),
      // The server's reset right after its own data (a reset "train") closes too.
      ...handshake(3),
      fromServer(s(3, 'PA', 5001, 1001, '', 10)),
      fromServer(s(3, 'R', 5011, 0)),
      // Before the flow is assured: the check is the window's.
      fromClient(c(4, 'S', 1000, 0)),
      fromServer(s(4, 'SA', 5000, 1001)),
      fromClient(c(4, 'R', 1001 + 100000000, 0)),
    ],
    flows: ['+0 ESTABLISHED 10 [ASSURED]', '+1 CLOSE 10 [ASSURED]', '+2 ESTABLISHED 432000 [ASSURED]', '+3 CLOSE 10 [ASSURED]', '+4 SYN_RECV 60'],
    expect: { server: 14, client: 10 },
  },
  {
    name: 'a flow picked up mid-stream: windows are not checked, resets are',
    rules: RULES,
    steps: [
      fromClient(c(0, 'A', 777777, 888888)),
      fromServer(s(0, 'A', 888888, 777777)),
      fromClient(c(0, 'A', 777777, 888888)),
      fromClient(c(0, 'PA', 777777 + 500000000, 888888, '', 5)),
      fromServer(s(0, 'A', 888888, 777777 + 1000000000)),
      // Behind the server's last ack: INVALID even here.
      fromClient(c(0, 'R', 700000, 0)),
      fromClient(c(0, 'R', 777777, 0)),
      // Picked up and never answered.
      fromClient(c(1, 'PA', 123456, 654321, '', 5), c(1, 'PA', 123456 + 300000000, 654321, '', 5)),
      // Picked up and answered once: still not the 5-day timeout (the answer found no reply seen yet).
      fromClient(c(2, 'A', 4444, 5555)),
      fromServer(s(2, 'A', 5555, 4444)),
    ],
    flows: ['+0 CLOSE 10 [ASSURED]', '+1 ESTABLISHED 300 [UNREPLIED]', '+2 ESTABLISHED 300'],
    expect: { server: 7, client: 3 },
  },
  {
    name: 'the same ACK more than tcp_max_retrans times, or a zero window, cuts ESTABLISHED to 300 s',
    rules: RULES,
    steps: [
      ...handshake(0),
      fromServer(s(0, 'A', 5001, 1001), s(0, 'A', 5001, 1001), s(0, 'A', 5001, 1001), s(0, 'A', 5001, 1001)),
      ...handshake(1),
      fromServer(s(1, 'A', 5001, 1001), s(1, 'A', 5001, 1001), s(1, 'A', 5001, 1001)),
      ...handshake(2),
      fromServer(s(2, 'A', 5001, 1001, ',window=0')),
    ],
    flows: ['+0 ESTABLISHED 300 [ASSURED]', '+1 ESTABLISHED 432000 [ASSURED]', '+2 ESTABLISHED 300 [ASSURED]'],
    expect: { server: 6, client: 11 },
  },
  {
    name: 'a SYN inside a flow is let through and ignored; the SYN/ACK answering it brings the table back in step',
    rules: RULES,
    steps: [
      ...handshake(0),
      fromClient(c(0, 'S', 90000, 0)),
      fromServer(s(0, 'SA', 7000, 90001)),
      ...handshake(1),
      fromClient(c(1, 'S', 90000, 0)),
      // Not an answer to that SYN: ignored too, nothing changes.
      fromServer(s(1, 'SA', 7000, 12345)),
    ],
    flows: ['+0 SYN_RECV 60 [ASSURED]', '+1 ESTABLISHED 432000 [ASSURED]'],
    expect: { server: 6, client: 4 },
  },
  {
    name: 'a segment starting past the window by less than a window is not believed, but the ack of its data is valid',
    rules: RULES,
    steps: [
      ...handshake(0, { sWin: 1000 }),
      fromClient(c(0, 'PA', 1001, 5001, '', 900), c(0, 'PA', 2101, 5001, '', 100)),
      fromServer(s(0, 'A', 5001, 2201, ',window=1000')),
      // The same ack one byte further: data never sent.
      ...handshake(1, { sWin: 1000 }),
      fromClient(c(1, 'PA', 1001, 5001, '', 900), c(1, 'PA', 2101, 5001, '', 100)),
      fromServer(s(1, 'A', 5001, 2202, ',window=1000')),
    ],
    flows: ['+0 ESTABLISHED 432000 [ASSURED]', '+1 ESTABLISHED 300 [ASSURED]'],
    expect: { server: 8, client: 3 },
  },
  {
    name: 'a SYN on a closed flow starts a new one after a FIN or the client\'s own reset, not after the server\'s reset',
    rules: RULES,
    steps: [
      ...handshake(0),
      fromClient(c(0, 'FA', 1001, 5001)),
      fromServer(s(0, 'FA', 5001, 1002)),
      fromClient(c(0, 'A', 1002, 5002)),
      fromClient(c(0, 'S', 3000, 0)),
      ...handshake(1),
      fromServer(s(1, 'R', 5001, 0)),
      fromClient(c(1, 'S', 3000, 0)),
      fromServer(s(1, 'SA', 9000, 3001)),
      ...handshake(2),
      fromClient(c(2, 'R', 1001, 0)),
      fromClient(c(2, 'S', 3000, 0)),
    ],
    flows: ['+0 SYN_SENT 120 [UNREPLIED]', '+1 SYN_RECV 60 [ASSURED]', '+2 SYN_SENT 120 [UNREPLIED]'],
    expect: { server: 12, client: 6 },
  },
  {
    name: 'simultaneous open: SYNs cross, both SYN/ACKs, the reply side\'s ACK establishes',
    rules: RULES,
    steps: [
      fromClient(c(0, 'S', 1000, 0, ",options=[('WScale',2)]")),
      fromServer(s(0, 'S', 5000, 0, ",options=[('WScale',2)]")),
      fromClient(c(0, 'SA', 1000, 5001)),
      fromServer(s(0, 'SA', 5000, 1001)),
      fromServer(s(0, 'A', 5001, 1001, ',window=100')),
      fromClient(c(0, 'PA', 1001 + 300, 5001, '', 10)),
    ],
    flows: ['+0 ESTABLISHED 300 [ASSURED]'],
    expect: { server: 3, client: 3 },
  },
  {
    name: 'RFC 5961: the challenge ACK answering a SYN in LAST_ACK is not the last ACK',
    rules: RULES,
    steps: [
      ...handshake(0),
      fromClient(c(0, 'FA', 1001, 5001)),
      fromServer(s(0, 'FA', 5001, 1002)),
      fromClient(c(0, 'S', 3000, 0)),
      fromServer(s(0, 'A', 5002, 1002)),
      // Without the SYN before it, the same ACK ends the flow.
      ...handshake(1),
      fromClient(c(1, 'FA', 1001, 5001)),
      fromServer(s(1, 'FA', 5001, 1002)),
      fromServer(s(1, 'A', 5002, 1002)),
    ],
    flows: ['+0 LAST_ACK 30 [ASSURED]', '+1 TIME_WAIT 120 [ASSURED]'],
    expect: { server: 7, client: 6 },
  },
  {
    name: 'a retransmitted SYN does not extend the entry',
    rules: RULES,
    steps: [fromClient(c(0, 'S', 1000, 0)), { ...fromClient(c(0, 'S', 1000, 0)), delayMs: 6000 }],
    flows: ['+0 SYN_SENT 114 [UNREPLIED]'],
    expect: { server: 2, client: 0 },
  },
  {
    name: 'IPv6: a segment far ahead of the window is INVALID',
    family: 6,
    rules: RULES,
    steps: [
      fromClient(seg('c', 0, 'S', 1000, 0, '', 0, true)),
      fromServer(seg('s', 0, 'SA', 5000, 1001, '', 0, true)),
      fromClient(seg('c', 0, 'A', 1001, 5001, '', 0, true)),
      fromClient(seg('c', 0, 'PA', 1001 + 50000, 5001, '', 5, true), seg('c', 0, 'PA', 1001, 5001, '', 5, true)),
    ],
    flows: ['+0 ESTABLISHED 300 [ASSURED]'],
    expect: { server: 3, client: 1 },
  },
];

/** The TCP entries of ports base..base+15 as "+N STATE TIMEOUT [FLAGS]" (kernel /proc/net/nf_conntrack or `xtr conntrack -L`). */
function parseFlows(text: string, base: number): Flow[] {
  const out: Flow[] = [];
  for (const line of text.split('\n')) {
    const m = /\btcp\s+6 (\d+) (\S+) src=\S+ dst=\S+ sport=(\d+) dport=80 (.*)$/.exec(line);
    if (!m) continue;
    const port = Number(m[3]) - base;
    if (port < 0 || port > 15) continue;
    const flags = ['UNREPLIED', 'ASSURED'].filter((f) => m[4].includes(`[${f}]`)).map((f) => `[${f}]`).join(' ');
    out.push({ port, state: m[2], timeout: Number(m[1]), flags });
  }
  return out.sort((a, b) => a.port - b.port);
}

async function readFlows(topo: Topology, base: number): Promise<Flow[]> {
  const r = await topo.runScript(topo.kind === 'kernel' ? 'cat /proc/net/nf_conntrack' : 'xtr conntrack -L 2>/dev/null');
  if (r.status !== 0) throw new Error(`${topo.kind}: reading conntrack failed: ${r.stderr}`);
  return parseFlows(r.stdout, base);
}

/**
 * Same entries, and seconds left within `slack` below `b`'s (a case runs for a
 * few seconds after its first flow's last packet; the timeout classes 10, 60,
 * 120, 300, 432000 are far apart).
 */
function sameFlows(a: Flow[], b: Flow[], slack: { below: number; above: number }): boolean {
  return a.length === b.length && a.every((f, i) => {
    const d = b[i].timeout - f.timeout;
    return f.port === b[i].port && f.state === b[i].state && f.flags === b[i].flags && d <= slack.below && -d <= slack.above;
  });
}
/** The kernel against the case's nominal timeouts; xtr against the kernel, read at about the same moment. */
const NOMINAL = { below: 15, above: 0 };
const READ_APART = { below: 3, above: 3 };
const show = (flows: Flow[]) => flows.map((f) => `+${f.port} ${f.state} ${f.timeout}${f.flags ? ` ${f.flags}` : ''}`);

interface Outcome {
  diff: DiffResult;
  flows: Flow[];
}

type Side = { topo?: Topology; bench?: DiffBench; ready: Promise<DiffBench>; results: Map<string, Promise<Outcome>> };

function side(create: () => Promise<Topology>): Side {
  const sd: Side = { ready: Promise.reject(new Error('not started')), results: new Map() };
  sd.ready.catch(() => {});
  sd.ready = (async () => {
    sd.topo = await create();
    sd.bench = await DiffBench.create(sd.topo);
    return sd.bench;
  })();
  sd.ready.catch(() => {});
  let chain: Promise<unknown> = sd.ready;
  cases.forEach((wc, i) => {
    const base = 30000 + i * 16;
    const p = chain
      .catch(() => {})
      .then(async () => {
        const bench = await sd.ready;
        const diff = await bench.runCase(wc, wc.family ?? 4, base);
        return { diff, flows: await readFlows(sd.topo!, base) };
      });
    p.catch(() => {});
    sd.results.set(wc.name, p);
    chain = p;
  });
  return sd;
}

let kernel: Side | undefined;
let xtr: Side | undefined;

test.before(() => {
  kernel = side(() => KernelRouter.create());
  xtr = side(() => XtrRouter.create());
});

test.after.always(async () => {
  for (const sd of [kernel, xtr]) {
    if (!sd) continue;
    await Promise.allSettled([...sd.results.values()]);
    await sd.bench?.destroy().catch(() => {});
    await sd.topo?.destroy().catch(() => {});
  }
});

for (const wc of cases) {
  test.serial(`kernel: ${wc.name}`, async (t) => {
    const k = await kernel!.results.get(wc.name)!;
    t.is(k.diff.restore, 0, `the kernel refused the rule set: ${k.diff.counters.join(' ')}`);
    t.log([...k.diff.server.map((p) => `server got: ${p}`), ...k.diff.client.map((p) => `client got: ${p}`), ...k.diff.counters.filter((l) => !l.endsWith('[0:0]')), ...show(k.flows)].join('\n'));
    t.deepEqual({ server: k.diff.server.length, client: k.diff.client.length }, wc.expect, 'packets received at each end');
    const want = wc.flows.map((f) => {
      const [port, state, timeout, ...flags] = f.split(' ');
      return { port: Number(port), state, timeout: Number(timeout), flags: flags.join(' ') };
    });
    t.true(sameFlows(k.flows, want, NOMINAL), `the kernel's entries: ${show(k.flows).join(', ')}; the case says ${wc.flows.join(', ')}`);
  });
  test.serial(`xtr = kernel: ${wc.name}`, async (t) => {
    let x: Outcome;
    try {
      await xtr!.ready;
      x = await xtr!.results.get(wc.name)!;
    } catch (err) {
      t.fail(`xtr side not available: ${(err as Error).message}`);
      return;
    }
    const k = await kernel!.results.get(wc.name)!;
    t.is(x.diff.restore, k.diff.restore, 'restore status');
    t.deepEqual(x.diff.server, k.diff.server, 'what the server side received');
    t.deepEqual(x.diff.client, k.diff.client, 'what the client side received');
    t.deepEqual(x.diff.counters, k.diff.counters, 'per-state rule counters');
    t.true(sameFlows(x.flows, k.flows, READ_APART), `conntrack entries: xtr ${show(x.flows).join(', ')}; kernel ${show(k.flows).join(', ')}`);
  });
}
