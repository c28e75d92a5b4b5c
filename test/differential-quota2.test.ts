/**
 * quota2 against the kernel's mainline `quota` match where their semantics
 * overlap (a byte countdown, plain and inverted, IPv4 and IPv6): the kernel
 * router (iptables-legacy in a namespace) runs `-m quota --quota N`, xtr's lab
 * runs `-m quota2 --quota N`, the same scapy packets go through both, and
 * what the server received and every rule and policy counter must agree at
 * and after exhaustion (a packet bigger than what is left empties the quota
 * in both).
 *
 * The rule texts differ by design (quota vs quota2), so only the counters
 * and what was received are compared.
 */
import test from 'ava';
import { DiffBench, KernelRouter, XtrRouter, type DiffCase, type DiffResult, type Family } from './helpers/kernel-router.js';

interface Pair {
  name: string;
  family: Family;
  /** `-m MATCH` options: the same for quota and quota2. */
  opts: string;
  sizes: number[];
  expectServer: number;
}

const PAIRS: Pair[] = [
  // 1000 bytes: 300+300+300 pass, 200 exceeds the 100 left and empties it, then nothing (not even 28 bytes).
  { name: 'v4 countdown: exact exhaustion, a larger packet empties what is left', family: 4, opts: '--quota 1000', sizes: [300, 300, 300, 200, 28, 100], expectServer: 3 },
  { name: 'v4 inverted: matches (ACCEPT) only once the quota is spent', family: 4, opts: '! --quota 700', sizes: [300, 300, 300, 100, 28], expectServer: 3 },
  { name: 'v4 quota exactly the packet sizes', family: 4, opts: '--quota 600', sizes: [300, 300, 28], expectServer: 2 },
  { name: 'v6 countdown', family: 6, opts: '--quota 1000', sizes: [400, 400, 300, 100], expectServer: 2 },
  { name: 'v6 inverted', family: 6, opts: '! --quota 500', sizes: [400, 400, 100, 60], expectServer: 3 },
];

function caseOf(p: Pair, match: 'quota' | 'quota2'): DiffCase {
  const [ip, c, s, hdr] = p.family === 4 ? ['IP', 'C', 'S', 28] : ['IPv6', 'C6', 'S6', 48];
  return {
    name: p.name,
    rules: { filter: [`-A FORWARD -p udp -m ${match} ${p.opts} -j ACCEPT`, '-A FORWARD -p udp -j DROP'] },
    steps: [{ from: 'client', packets: p.sizes.map((n) => `${ip}(src=${c},dst=${s})/UDP(sport=$P,dport=9)/Raw(b'q'*${n - hdr})`), gapMs: 20 }],
    expect: { server: p.expectServer, client: 0 },
  };
}

let kernel: { topo: KernelRouter; bench: DiffBench } | null = null;
let xtr: { topo: XtrRouter; bench: DiffBench } | null = null;
const results = new Map<string, Promise<[DiffResult, DiffResult]>>();

test.before(async () => {
  const [kt, xt] = await Promise.all([KernelRouter.create(), XtrRouter.create()]);
  kernel = { topo: kt, bench: await DiffBench.create(kt) };
  xtr = { topo: xt, bench: await DiffBench.create(xt) };
  let chain: Promise<unknown> = Promise.resolve();
  PAIRS.forEach((p, i) => {
    const r = chain.then(async () => Promise.all([kernel!.bench.runCase(caseOf(p, 'quota'), p.family, 23000 + i * 16), xtr!.bench.runCase(caseOf(p, 'quota2'), p.family, 23000 + i * 16)]));
    r.catch(() => {});
    results.set(p.name, r);
    chain = r.catch(() => {});
  });
});

test.after.always(async () => {
  for (const side of [kernel, xtr]) {
    await side?.bench.destroy().catch(() => {});
    await side?.topo.destroy().catch(() => {});
  }
});

for (const p of PAIRS) {
  test.serial(`quota2 = kernel quota: ${p.name}`, async (t) => {
    const [k, x] = await results.get(p.name)!;
    t.is(k.restore, 0, `kernel refused: ${k.counters.join(' ')}`);
    t.is(x.restore, 0, `xtr refused: ${x.counters.join(' ')}`);
    t.is(k.server.length, p.expectServer, `the kernel let ${k.server.length} through:\n${k.server.join('\n')}`);
    t.deepEqual(x.server, k.server, 'what the server received');
    t.deepEqual(x.client, k.client);
    t.deepEqual(x.counters, k.counters, 'policy and per-rule counters');
  });
}
