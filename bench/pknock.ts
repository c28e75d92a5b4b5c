/**
 * bench:pknock - what pknock costs in the rule engine (Netfilter.hook on
 * prebuilt PacketContexts, FORWARD), as ratios against the same packets
 * through the same rule set without pknock, measured in the same run,
 * alternating, so the shared machine's load swings cancel out:
 *
 *  - packet:  ordinary TCP from sources pknock does not know (one peer lookup);
 *  - allowed: TCP to the guarded port from ALLOWED sources (lookup, match);
 *  - knock:   complete 3-port sequences from fresh sources (peer created,
 *             advanced twice, opened), per knock packet;
 *  - spa:     UDP SPA packets with a wrong HMAC from rotating sources (one
 *             HMAC-SHA256 each): SPA verifications per second.
 *
 * Prints medians over rounds and a last `key=value` line:
 *   ratio_packet= ratio_allowed= ratio_knock= ratio_spa= spa_verify_per_s=
 * (ratio = pps with pknock / pps without; 1.0 = free).
 *
 *   node dist/bench/pknock.js [--rounds 3] [--seconds 0.5]
 */
import { readFileSync } from 'node:fs';
import { Hook, type PacketContext } from '../xt/packet.js';
import { packet, testEngine, type TestEngine } from '../router/netfilter/testkit.js';
import { fmt, median } from './lib.js';

const SERVER = '203.0.113.2';

const BASE = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -p udp -m udp --dport 2000 -j DROP
COMMIT
`;
const PKNOCK = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp -m pknock --knockports 4002,4001,4004 --time 10 --name SSH -m tcp --dport 22 -j ACCEPT
-A FORWARD -p udp -m pknock --knockports 2000 --opensecret s3cret --closesecret cl0se --name SPA -j DROP
COMMIT
`;
/** Sources per knock batch (the table is dropped between batches, outside the timing). */
const BATCH = 16384;

function args(): { rounds: number; seconds: number } {
  const a = { rounds: 3, seconds: 0.5 };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i++) {
    if (v[i] === '--rounds') a.rounds = Math.max(1, Number(v[++i]) | 0);
    else if (v[i] === '--seconds') a.seconds = Math.max(0.05, Number(v[++i]));
    else throw new Error(`bench:pknock: unknown argument ${v[i]} (usage: --rounds N --seconds S)`);
  }
  return a;
}

async function engine(rules: string): Promise<TestEngine> {
  const e = await testEngine([], null, { pknock: { max_peers: BATCH * 2 } });
  const r = await e.run('iptables-restore', rules);
  if (r.status !== 0) throw new Error(`bench:pknock: ${r.stderr}`);
  return e;
}

/** hook() calls per second over `pkts`, each packet's source rotated over `sources` (0 = as built). */
function rate(e: TestEngine, pkts: PacketContext[], seconds: number, sources = 0, base = 0x0a000000): number {
  let n = 0;
  let src = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    for (let k = 0; k < 256; k++) {
      const p = pkts[k % pkts.length];
      if (sources) p.src4 = (base + (src++ % sources)) >>> 0;
      e.nf.hook(Hook.FORWARD, p);
    }
    n += 256;
  }
  return n / seconds;
}

/** Knock packets per second: BATCH fresh sources each doing the 3-port sequence, the table emptied between batches. */
async function knockRate(rules: string, seconds: number): Promise<number> {
  const seq = [4002, 4001, 4004].map((dport) => packet({ src: '10.0.0.1', dst: SERVER, proto: 'tcp', sport: 40000, dport }, 'eth0', 'eth1'));
  let packets = 0;
  let spent = 0;
  let batch = 0;
  while (spent < seconds * 1000) {
    const e = await engine(rules);
    const base = (0x0b000000 + batch++ * BATCH) >>> 0;
    const t0 = performance.now();
    for (let s = 0; s < BATCH; s++) {
      for (let k = 0; k < 3; k++) {
        seq[k].src4 = (base + s) >>> 0;
        e.nf.hook(Hook.FORWARD, seq[k]);
      }
    }
    spent += performance.now() - t0;
    packets += BATCH * 3;
  }
  return (packets / spent) * 1000;
}

function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

async function main(): Promise<void> {
  const a = args();
  console.log(`bench:pknock: ${a.rounds} rounds x ${a.seconds} s per figure, load ${loadAverage()}`);
  const base = await engine(BASE);
  const pk = await engine(PKNOCK);
  const other = [packet({ src: '198.51.100.2', dst: SERVER, proto: 'tcp', sport: 40000, dport: 80 }, 'eth0', 'eth1')];
  const guarded = [packet({ src: '10.0.0.1', dst: SERVER, proto: 'tcp', sport: 40000, dport: 22 }, 'eth0', 'eth1')];
  // ALLOWED sources for the `allowed` figure: 1024 of them opened once.
  for (let s = 0; s < 1024; s++) {
    for (const dport of [4002, 4001, 4004]) {
      const p = packet({ src: '10.0.0.1', dst: SERVER, proto: 'tcp', sport: 40000, dport }, 'eth0', 'eth1');
      p.src4 = (0x0a000000 + s) >>> 0;
      pk.nf.hook(Hook.FORWARD, p);
    }
  }
  const badSpa = [packet({ src: '10.0.0.1', dst: SERVER, proto: 'udp', sport: 40000, dport: 2000, payload: 65 }, 'eth0', 'eth1')];
  badSpa[0].buf.fill(0x61, badSpa[0].l4off + 8, badSpa[0].l4off + 8 + 65);

  const figures = {
    packet: { base: [] as number[], pk: [] as number[] },
    allowed: { base: [] as number[], pk: [] as number[] },
    knock: { base: [] as number[], pk: [] as number[] },
    spa: { base: [] as number[], pk: [] as number[] },
  };
  rate(base, other, 0.1, 4096);
  rate(pk, other, 0.1, 4096, 0x0c000000);
  for (let r = 0; r < a.rounds; r++) {
    figures.packet.base.push(rate(base, other, a.seconds, 4096, 0x0c000000));
    figures.packet.pk.push(rate(pk, other, a.seconds, 4096, 0x0c000000));
    figures.allowed.base.push(rate(base, guarded, a.seconds, 1024));
    figures.allowed.pk.push(rate(pk, guarded, a.seconds, 1024));
    figures.knock.base.push(await knockRate(BASE, a.seconds));
    figures.knock.pk.push(await knockRate(PKNOCK, a.seconds));
    figures.spa.base.push(rate(base, badSpa, a.seconds, 4096, 0x0d000000));
    figures.spa.pk.push(rate(pk, badSpa, a.seconds, 4096, 0x0d000000));
  }
  const ratio = (f: { base: number[]; pk: number[] }) => median(f.pk.map((v, i) => v / f.base[i]));
  for (const [name, f] of Object.entries(figures)) {
    console.log(`${name.padEnd(8)} without pknock ${fmt(median(f.base)).padStart(11)}/s  with ${fmt(median(f.pk)).padStart(11)}/s  ratio ${ratio(f).toFixed(3)}  (${(1e9 / median(f.pk) - 1e9 / median(f.base)).toFixed(0)} ns more per packet)`);
  }
  console.log(`load ${loadAverage()}`);
  console.log(
    `ratio_packet=${ratio(figures.packet).toFixed(3)} ratio_allowed=${ratio(figures.allowed).toFixed(3)} ratio_knock=${ratio(figures.knock).toFixed(3)} ratio_spa=${ratio(figures.spa).toFixed(3)} spa_verify_per_s=${Math.round(median(figures.spa.pk))}`,
  );
}

main().catch((e) => {
  console.error((e as Error).message);
  process.exit(1);
});
