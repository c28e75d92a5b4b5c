/**
 * Rule-engine throughput with 0, 100 and 10,000 non-matching rules in front
 * of an ACCEPT, as ratios to the 0-rule figure measured in the same run.
 *
 * Scenarios are a list: each builds its rule sets and a measure function,
 * and reports packets per second. The first scenario measures the engine
 * alone (Netfilter.hook on prebuilt PacketContexts parsed from real bytes);
 * a through-xtr forwarding scenario (the ops lab) plugs in as another entry
 * of SCENARIOS with the same shape.
 *
 * `npm run bench:rules` (node dist/bench/rules.js). Last line: key=value.
 */
import { Hook, type PacketContext } from '../router/packet.js';
import { setClassifierEnabled } from '../router/netfilter/compile.js';
import { packet, testEngine, type TestEngine } from '../router/netfilter/testkit.js';

interface Result {
  key: string;
  pps: number;
}

interface Scenario {
  name: string;
  /** Measures each rule count; returns pps per count, in order. */
  run(counts: readonly number[]): Promise<Result[]>;
}

const COUNTS = [0, 100, 10_000] as const;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1);

/** `-s 10.x.y.z/32 -j DROP` rules (none matching the test traffic) then ACCEPT, via iptables-restore. */
function sourceRules(n: number): string {
  let s = '*filter\n:FORWARD DROP [0:0]\n';
  for (let i = 0; i < n; i++) s += `-A FORWARD -s 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32 -j DROP\n`;
  return `${s}-A FORWARD -j ACCEPT\nCOMMIT\n`;
}

/** `-p tcp --dport P -j DROP` rules on ports the traffic does not use (the tcp match describes its ports). */
function portRules(n: number): string {
  let s = '*filter\n:FORWARD DROP [0:0]\n';
  for (let i = 0; i < n; i++) s += `-A FORWARD -p tcp -m tcp --dport ${1024 + (i % 60000)} -j DROP\n`;
  return `${s}-A FORWARD -j ACCEPT\nCOMMIT\n`;
}

/** Half address rules, then half port rules: one classifier per run. */
function mixedRules(n: number): string {
  let s = '*filter\n:FORWARD DROP [0:0]\n';
  for (let i = 0; i < n; i++) {
    s += i < n / 2 ? `-A FORWARD -s 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32 -j DROP\n` : `-A FORWARD -p tcp -m tcp --dport ${1024 + (i % 60000)} -j DROP\n`;
  }
  return `${s}-A FORWARD -j ACCEPT\nCOMMIT\n`;
}

function contexts(count: number): PacketContext[] {
  const out: PacketContext[] = [];
  for (let i = 0; i < count; i++) {
    out.push(packet({ src: `192.168.${i >> 8}.${i & 255}`, dst: '172.16.0.1', proto: 'tcp', sport: 40000 + i, dport: 80, payload: 64 }, 'lan0', 'wan0'));
  }
  return out;
}

/** Calls hook() in batches until SECONDS pass; best of three runs. */
function measure(e: TestEngine, pkts: PacketContext[]): number {
  let best = 0;
  for (let round = 0; round < 3; round++) {
    let calls = 0;
    let accepted = 0;
    const start = performance.now();
    const until = start + SECONDS * 1000;
    let now = start;
    while (now < until) {
      for (let k = 0; k < 1000; k++) {
        accepted += e.nf.hook(Hook.FORWARD, pkts[k & (pkts.length - 1)]);
      }
      calls += 1000;
      now = performance.now();
    }
    if (accepted !== calls) throw new Error(`bench: ${calls - accepted} packets were not accepted - the rule set is wrong`);
    best = Math.max(best, calls / ((now - start) / 1000));
  }
  return best;
}

function engineScenario(name: string, rules: (n: number) => string, classify: boolean): Scenario {
  return {
    name,
    async run(counts) {
      const pkts = contexts(64);
      const out: Result[] = [];
      setClassifierEnabled(classify);
      try {
        for (const n of counts) {
          const e = await testEngine();
          const r = await e.run('iptables-restore', rules(n));
          if (r.status !== 0) throw new Error(`bench: restore of ${n} rules failed: ${r.stderr}`);
          out.push({ key: `${name}_${n}`, pps: measure(e, pkts) });
        }
      } finally {
        setClassifierEnabled(true);
      }
      return out;
    },
  };
}

const SCENARIOS: Scenario[] = [
  engineScenario('engine_src', sourceRules, true),
  engineScenario('engine_dport', portRules, true),
  engineScenario('engine_mixed', mixedRules, true),
  // The same engine with the classifier off: what a linear scan costs (for comparison only).
  engineScenario('linear_src', sourceRules, false),
];

async function main(): Promise<void> {
  const fields: string[] = [];
  const ratios = new Map<string, number>();
  // Warm the JIT on the paths every scenario uses so the first 0-rule baseline is not penalised.
  await engineScenario('warmup', sourceRules, true).run([0, 100]);
  for (const s of SCENARIOS) {
    const counts = s.name.startsWith('linear') ? [0, 10_000] : [...COUNTS];
    const results = await s.run(counts);
    const base = results[0].pps;
    for (const r of results) {
      const ratio = r.pps / base;
      console.log(`${r.key.padEnd(22)} ${Math.round(r.pps).toLocaleString('en-US').padStart(12)} hook/s  ratio ${ratio.toFixed(3)}`);
      fields.push(`${r.key}_pps=${Math.round(r.pps)}`);
      ratios.set(r.key, ratio);
    }
  }
  const r100 = Math.min(ratios.get('engine_src_100')!, ratios.get('engine_dport_100')!);
  const r10k = Math.min(ratios.get('engine_src_10000')!, ratios.get('engine_dport_10000')!);
  fields.push(
    `ratio_100=${r100.toFixed(3)}`,
    `ratio_10000=${r10k.toFixed(3)}`,
    `ratio_10000_mixed=${ratios.get('engine_mixed_10000')!.toFixed(3)}`,
    `linear_ratio_10000=${ratios.get('linear_src_10000')!.toFixed(4)}`,
  );
  console.log(fields.join(' '));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
