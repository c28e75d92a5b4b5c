/**
 * What a conntrack entry costs: fills a Conntrack (the class the router
 * uses, no namespaces) with N TCP flows opened by a SYN, the worst case
 * (TCP carries window-tracking state), and reports V8 heap + external
 * memory per entry after a full GC; then runs a "flood": the table kept full
 * while ROUNDS × max further new flows push out the oldest (early drop), all
 * of it expires, and memory is measured again.
 *
 *   node --expose-gc dist/bench/ct-memory.js [--max N] [--fill N] [--flood-rounds R]
 *
 * heap+external is what the entries hold (typed-array slabs are external
 * memory, objects are heap); RSS is printed too but includes whatever the
 * allocator keeps. The last line is `key=value` for scripts.
 */
import { PacketContext, Verdict } from '../xt/packet.js';
import { parsePacket } from '../dataplane/parse.js';
import { checksum } from '../dataplane/checksum.js';
import { Conntrack } from '../router/conntrack.js';

interface Args {
  max: number;
  fill: number;
  floodRounds: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { max: 65536, fill: -1, floodRounds: 3 };
  for (let i = 0; i < argv.length; i++) {
    const v = Number(argv[i + 1]);
    if (argv[i] === '--max') a.max = v;
    else if (argv[i] === '--fill') a.fill = v;
    else if (argv[i] === '--flood-rounds') a.floodRounds = v;
    else throw new Error(`ct-memory: unknown argument ${argv[i]} (--max N, --fill N, --flood-rounds R)`);
    i++;
  }
  if (a.fill < 0) a.fill = a.max;
  for (const [k, v] of Object.entries(a)) if (!Number.isInteger(v) || v < 0 || v > 4_000_000) throw new Error(`--${k} must be an integer from 0 to 4000000`);
  if (a.fill > a.max) throw new Error('--fill must not exceed --max');
  return a;
}

const gc = (globalThis as { gc?: () => void }).gc;

function settle(): void {
  for (let i = 0; i < 3; i++) gc!();
}

function memory(): { held: number; rss: number } {
  settle();
  const m = process.memoryUsage();
  return { held: m.heapUsed + m.external, rss: m.rss };
}

/**
 * One IPv4 TCP SYN, rewritten in place per flow (source address and port):
 * the bench allocates nothing per flow itself, so what grows is conntrack's.
 */
class SynSource {
  readonly buf = Buffer.alloc(40);
  readonly ctx = new PacketContext();

  constructor() {
    const b = this.buf;
    b[0] = 0x45;
    b.writeUInt16BE(40, 2);
    b[8] = 64;
    b[9] = 6;
    b.writeUInt32BE(0xc6336407, 16); // 198.51.100.7
    b.writeUInt16BE(80, 22);
    b.writeUInt32BE(1, 24); // seq
    b[32] = 0x50; // data offset 5
    b[33] = 0x02; // SYN
    b.writeUInt16BE(64240, 34);
  }

  /** The SYN of flow i (distinct for i < 2^32), parsed into ctx at time now. */
  packet(i: number, now: number): PacketContext {
    const b = this.buf;
    b.writeUInt32BE((0x0a000000 | (i >>> 8)) >>> 0, 12);
    b.writeUInt16BE(1024 + (i & 0xff), 20);
    b.writeUInt16BE(0, 10);
    b.writeUInt16BE(checksum(b, 0, 20), 10);
    const ctx = this.ctx;
    if (parsePacket(ctx, b, 0, 40) !== 0) throw new Error('ct-memory: the SYN does not parse');
    ctx.now = now;
    return ctx;
  }
}

function main(): void {
  if (gc === undefined) throw new Error('ct-memory: run with node --expose-gc');
  const args = parseArgs(process.argv.slice(2));
  const src = new SynSource();
  src.packet(0, 0);
  const base = memory();
  const ct = new Conntrack({ max: args.max });
  const empty = memory();
  let now = 1000;
  for (let i = 0; i < args.fill; i++) {
    const p = src.packet(i, now);
    if (ct.in(p) === Verdict.ACCEPT) ct.confirm(p);
  }
  const count = ct.count();
  const full = memory();
  const perEntry = (full.held - base.held) / count;
  console.log(`max=${args.max} filled=${count} table_empty_bytes=${empty.held - base.held}`);
  console.log(`full: heap+external ${((full.held - base.held) / 1048576).toFixed(1)} MiB, ${perEntry.toFixed(1)} bytes/entry (table included), rss ${(full.rss / 1048576).toFixed(1)} MiB`);

  // Flood: new flows at a full table (early drop of the unassured oldest), then everything expires.
  let next = args.fill;
  let peakRss = full.rss;
  for (let r = 0; r < args.floodRounds; r++) {
    for (let i = 0; i < args.max; i++, next++) {
      const p = src.packet(next, now);
      if (ct.in(p) === Verdict.ACCEPT) ct.confirm(p);
    }
    now += 10;
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }
  const flooded = memory();
  now += 3_600_000;
  const left = ct.count(now);
  const expired = memory();
  console.log(`after flood (${args.floodRounds}x${args.max} new flows): heap+external ${((flooded.held - base.held) / 1048576).toFixed(1)} MiB, rss ${(flooded.rss / 1048576).toFixed(1)} MiB (peak ${(peakRss / 1048576).toFixed(1)} MiB)`);
  console.log(`after expiry (${left} left): heap+external ${((expired.held - base.held) / 1048576).toFixed(1)} MiB, rss ${(expired.rss / 1048576).toFixed(1)} MiB; baseline rss ${(base.rss / 1048576).toFixed(1)} MiB`);
  console.log(
    `bytes_per_entry=${perEntry.toFixed(1)} full_table_mib=${((full.held - base.held) / 1048576).toFixed(1)} after_flood_mib=${((flooded.held - base.held) / 1048576).toFixed(1)} ` +
      `after_expiry_mib=${((expired.held - base.held) / 1048576).toFixed(1)} rss_base_mib=${(base.rss / 1048576).toFixed(1)} rss_peak_mib=${(peakRss / 1048576).toFixed(1)} rss_after_mib=${(expired.rss / 1048576).toFixed(1)}`,
  );
}

main();
