/**
 * Child of test/conntrack-memory.test.ts (run as `node --expose-gc --import
 * tsx`): fills a Conntrack to its max with a mix of flows (TCP v4, some of
 * them SNATed onto one address, UDP v4/v6, ICMP echo), overflows it (early
 * drop), checks lookups and tuple uniqueness, lets everything expire, and
 * does it again ROUNDS times; prints one JSON object with what it measured.
 * Memory is V8 heap + external after full GCs, the figure the issue's
 * "bytes per entry" means.
 */
import { Hook, Verdict, CtState, type PacketContext } from '../../xt/packet.js';
import { NatRangeFlag, NatSide, newNatRange } from '../../xt/nat.js';
import { Conntrack, type ConnEntry } from '../../router/conntrack.js';
import { NatCore } from '../../router/conntrack/nat-core.js';
import { parseIpv4, ipv4ToString, ipv6ToString } from '../../dataplane/addr.js';
import { ctxOf, icmpMsg, ip4, ip6, tcpSeg, udpDgram } from '../modules-fixtures.js';

const MAX = Number(process.env.CT_MAX ?? 32768);
const ROUNDS = Number(process.env.CT_ROUNDS ?? 4);
const SERVER4 = '198.51.100.7';
const SERVER6 = '2001:db8:ffff::7';
const NAT_ADDR = '192.0.2.1';
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

function held(): number {
  for (let i = 0; i < 3; i++) gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

const snat = newNatRange();
snat.flags = NatRangeFlag.MAP_IPS | NatRangeFlag.PROTO_SPECIFIED;
snat.minAddr[0] = snat.maxAddr[0] = parseIpv4(NAT_ADDR);
snat.minPort = 1024;
snat.maxPort = 65535;

function table(max: number): { ct: Conntrack; core: NatCore } {
  const ct = new Conntrack({ max });
  let x = 7;
  const core = new NatCore(ct, () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0));
  ct.setNatHook(core);
  return { ct, core };
}

/** The pipeline's walk for a forwarded packet: in, nat PREROUTING, [SNAT], nat POSTROUTING, confirm. */
function forward(ct: Conntrack, core: NatCore, bytes: Buffer, now: number, nat: boolean): PacketContext | null {
  const p = ctxOf(bytes, now);
  if (ct.in(p) !== Verdict.ACCEPT) return null;
  p.hook = Hook.PREROUTING;
  if (ct.nat(Hook.PREROUTING, p) !== Verdict.ACCEPT) return null;
  p.hook = Hook.POSTROUTING;
  if (nat && p.ct !== null && p.ctState === CtState.NEW) core.setup(p, NatSide.SRC, snat);
  if (ct.nat(Hook.POSTROUTING, p) !== Verdict.ACCEPT) return null;
  return ct.confirm(p) === Verdict.ACCEPT ? p : null;
}

/** Flow i of round r: its kind and its client (unique per round and i). */
function client4(r: number, i: number): string {
  return ipv4ToString(((10 << 24) | ((r & 0xff) << 16) | (i & 0xffff)) >>> 0);
}
function client6(r: number, i: number): string {
  return `fd00::${r.toString(16)}:${i.toString(16)}`;
}
const isNat = (i: number) => i % 16 === 0;

function opening(r: number, i: number): Buffer {
  switch (i % 8) {
    case 0:
    case 1:
    case 2:
    case 3:
      // The NATed ones all use source port 40000: their translated reply tuples must still all differ.
      return ip4(client4(r, i), SERVER4, tcpSeg(isNat(i) ? 40000 : 1024 + (i % 50000), 80, 0x02));
    case 4:
    case 5:
      return ip4(client4(r, i), SERVER4, udpDgram(2000 + (i % 1000), 53));
    case 6:
      return ip6(client6(r, i), SERVER6, udpDgram(3000, 53));
    default:
      return ip4(client4(r, i), SERVER4, icmpMsg(8, 0, [(i >> 8) & 0xff, i & 0xff, 0, 1]));
  }
}

/** The reply to flow i, addressed as the entry's reply tuple says (after NAT). */
function reply(e: ConnEntry, i: number): Buffer {
  const t = e.repl;
  const src = e.family === 4 ? ipv4ToString(t.src[0]) : ipv6ToString(t.src);
  const dst = e.family === 4 ? ipv4ToString(t.dst[0]) : ipv6ToString(t.dst);
  const sport = t.sport;
  const dport = t.dport;
  switch (i % 8) {
    case 0:
    case 1:
    case 2:
    case 3:
      return ip4(src, dst, tcpSeg(sport, dport, 0x12, { seq: 5000, ack: 1 }));
    case 4:
    case 5:
      return ip4(src, dst, udpDgram(sport, dport));
    case 6:
      return ip6(src, dst, udpDgram(sport, dport));
    default:
      return ip4(src, dst, icmpMsg(0, 0, [(i >> 8) & 0xff, i & 0xff, 0, 1]));
  }
}

function tupleKey(e: ConnEntry, reply: boolean): string {
  const t = reply ? e.repl : e.orig;
  return `${e.family}/${e.proto} ${t.src.join('.')} ${t.dst.join('.')} ${t.sport} ${t.dport}`;
}

/** One fill/flood/expiry round's measurements, printed as JSON for test/conntrack-memory.test.ts. */
export interface Round {
  heldBytes: number;
  count: number;
  refused: number;
  earlyDrops: number;
  distinctHandles: number;
  distinctOrig: number;
  distinctRepl: number;
  natFlows: number;
  natDistinctReplyPorts: number;
  repliesChecked: number;
  repliesWrong: number;
  leftAfterExpiry: number;
}

function round(ct: Conntrack, core: NatCore, r: number, now: number): Round {
  const checks = fillAndCheck(ct, core, r, now, ct.max);
  // Measured once the checks' own lists and sets are garbage: what is left is the table at max.
  const heldBytes = held();
  const leftAfterExpiry = ct.count(now + 86_400_000);
  return { ...checks, heldBytes, leftAfterExpiry };
}

function fillAndCheck(ct: Conntrack, core: NatCore, r: number, now: number, n: number): Omit<Round, 'heldBytes' | 'leftAfterExpiry'> {
  let refused = 0;
  const byFlow: ConnEntry[] = [];
  for (let i = 0; i < n; i++) {
    const p = forward(ct, core, opening(r, i), now, isNat(i));
    if (p === null || p.ct === null) refused++;
    else byFlow[i] = p.ct as ConnEntry;
  }
  const count = ct.count(now);
  const live = ct.entries(now);
  const handles = new Set(live);
  const orig = new Set(live.map((e) => tupleKey(e, false)));
  const repl = new Set(live.map((e) => tupleKey(e, true)));
  const natPorts = new Set<number>();
  let natFlows = 0;
  for (const e of live) {
    if (e.repl.dst[0] === parseIpv4(NAT_ADDR)) {
      natFlows++;
      natPorts.add(e.repl.dport);
    }
  }
  // Every 5th flow's reply finds its own entry, in the reply direction.
  let checked = 0;
  let wrong = 0;
  for (let i = 0; i < n; i += 5) {
    const e = byFlow[i];
    if (e === undefined) continue;
    const before = tupleKey(e, false);
    const p = forward(ct, core, reply(e, i), now + 1, false);
    checked++;
    if (p === null || p.ct !== e || !p.ctReply || p.ctState !== CtState.ESTABLISHED || tupleKey(e, false) !== before) wrong++;
  }
  // Overflow: a quarter of max more new flows push out unassured ones (early drop).
  const dropsBefore = ct.earlyDrops;
  for (let i = 0; i < n / 4; i++) forward(ct, core, ip4(client4(r + 100, i), SERVER4, tcpSeg(5555, 80, 0x02)), now + 2, false);
  const earlyDrops = ct.earlyDrops - dropsBefore;
  return {
    count,
    refused,
    earlyDrops,
    distinctHandles: handles.size,
    distinctOrig: orig.size,
    distinctRepl: repl.size,
    natFlows,
    natDistinctReplyPorts: natPorts.size,
    repliesChecked: checked,
    repliesWrong: wrong,
  };
}

// Warm up (compiled code and the fixtures' one-time allocations are not the table's).
{
  const w = table(2048);
  round(w.ct, w.core, 200, 0);
}
const base = held();
const { ct, core } = table(MAX);
const rounds: Round[] = [];
for (let r = 0; r < ROUNDS; r++) rounds.push(round(ct, core, r, r * 100_000_000));
const bytesPerEntry = (rounds[0].heldBytes - base) / MAX;
console.log(JSON.stringify({ max: MAX, base, bytesPerEntry, tableBytes: ct.bytes(), rounds }));
