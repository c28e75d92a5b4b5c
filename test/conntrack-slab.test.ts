/**
 * The slab table's bookkeeping (router/conntrack/store.ts, table.ts) under
 * random traffic on a small table: TCP opening, answering, closing and
 * resetting, UDP and ICMP flows, SNAT onto a few ports, early drop at a
 * full table, expiry, flushes and masquerade forgetting, over a small
 * address space so slots, tuples and hash chains are reused all the time.
 * After every step the age list, the hash chains and the free list must
 * agree (Conntrack.selfCheck), and a flow's reply must find the flow's own
 * entry, found in the direction whose tuple the packet carries. Deterministic
 * (seeded), bounded in steps.
 */
import test from 'ava';
import fc from 'fast-check';
import { Hook, Verdict, CtState, type PacketContext } from '../xt/packet.js';
import { NatRangeFlag, NatSide, newNatRange } from '../xt/nat.js';
import { Conntrack, ConnEntry, CtStatus } from '../router/conntrack.js';
import { NatCore } from '../router/conntrack/nat-core.js';
import { ipv4ToString } from '../dataplane/addr.js';
import { ctxOf, icmpMsg, ip4, tcpSeg, udpDgram } from './modules-fixtures.js';

const SYN = 0x02, ACK = 0x10, FIN = 0x01, RST = 0x04;
const SERVER = '198.51.100.7';

const range = newNatRange();
range.flags = NatRangeFlag.MAP_IPS | NatRangeFlag.PROTO_SPECIFIED;
range.minAddr[0] = range.maxAddr[0] = 0xc0000201;
range.minPort = 7000;
range.maxPort = 7003;

type Op =
  | { kind: 'tcp'; client: number; port: number; flags: number; reply: boolean; nat: boolean }
  | { kind: 'udp'; client: number; port: number; reply: boolean }
  | { kind: 'ping'; client: number; id: number }
  | { kind: 'time'; ms: number }
  | { kind: 'flush' }
  | { kind: 'masq' };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('tcp' as const), client: fc.nat(5), port: fc.nat(3), flags: fc.constantFrom(SYN, SYN | ACK, ACK, FIN | ACK, RST, RST | ACK), reply: fc.boolean(), nat: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('udp' as const), client: fc.nat(5), port: fc.nat(3), reply: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('ping' as const), client: fc.nat(5), id: fc.nat(3) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('time' as const), ms: fc.constantFrom(10, 1000, 3000, 40_000, 200_000) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('flush' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('masq' as const) }) },
);

function walk(ct: Conntrack, core: NatCore, bytes: Buffer, now: number, nat: boolean): PacketContext {
  const p = ctxOf(bytes, now);
  if (ct.in(p) !== Verdict.ACCEPT) return p;
  p.hook = Hook.PREROUTING;
  ct.nat(Hook.PREROUTING, p);
  p.hook = Hook.POSTROUTING;
  if (nat && p.ct !== null && p.ctState === CtState.NEW && !p.ctReply) core.setup(p, NatSide.SRC, range, { masqIface: 'wan' });
  if (ct.nat(Hook.POSTROUTING, p) !== Verdict.ACCEPT) return p;
  ct.confirm(p);
  return p;
}


test('random traffic on a small table: age list, hash chains and free list stay consistent; replies find their own flow', (t) => {
  fc.assert(
    fc.property(fc.array(op, { minLength: 50, maxLength: 400 }), fc.constantFrom(3, 8, 20), (ops, max) => {
      const ct = new Conntrack({ max, buckets: 4 });
      const core = new NatCore(ct, () => 1);
      ct.setNatHook(core);
      let now = 1000;
      for (const o of ops) {
        if (o.kind === 'time') now += o.ms;
        else if (o.kind === 'flush') ct.flush();
        else if (o.kind === 'masq') core.forgetInterface('wan');
        else if (o.kind === 'ping') walk(ct, core, ip4(`10.0.0.${o.client + 1}`, SERVER, icmpMsg(8, 0, [0, o.id, 0, 1])), now, false);
        else {
          const client = `10.0.0.${o.client + 1}`;
          const sport = 40000 + o.port;
          // A reply goes to where the flow's entry says replies go (its translated address and port), when there is one.
          const orig = ctxOf(o.kind === 'tcp' ? ip4(client, SERVER, tcpSeg(sport, 80, SYN)) : ip4(client, SERVER, udpDgram(sport, 53)), now);
          let to = { addr: client, port: sport };
          if (o.reply) {
            const e = ct.entries(now).find((x) => x.proto === orig.proto && x.orig.src[0] === orig.src4 && x.orig.sport === sport);
            if (e !== undefined) to = { addr: ipv4ToString(e.repl.dst[0]), port: e.repl.dport };
          }
          const bytes =
            o.kind === 'tcp'
              ? o.reply
                ? ip4(SERVER, to.addr, tcpSeg(80, to.port, o.flags, { seq: 5000, ack: 1001 }))
                : ip4(client, SERVER, tcpSeg(sport, 80, o.flags, { seq: 1001, ack: 5001 }))
              : o.reply
                ? ip4(SERVER, to.addr, udpDgram(53, to.port))
                : ip4(client, SERVER, udpDgram(sport, 53));
          const q = ctxOf(bytes, now); // the packet as it arrived (walk's NAT rewrites p)
          const p = walk(ct, core, bytes, now, o.kind === 'tcp' && o.nat);
          const e = p.ct as ConnEntry | null;
          if (e !== null && (e.status & CtStatus.DYING) === 0) {
            // The entry found holds the packet's own tuple in the direction the lookup said.
            const tu = p.ctReply ? e.repl : e.orig;
            if (tu.src[0] !== q.src4 || tu.dst[0] !== q.dst4 || tu.sport !== q.sport || tu.dport !== q.dport) {
              throw new Error(`after ${JSON.stringify(o)}: packet ${q.src4}:${q.sport} > ${q.dst4}:${q.dport} found a flow whose ${p.ctReply ? 'reply' : 'original'} tuple is ${tu.src[0]}:${tu.sport} > ${tu.dst[0]}:${tu.dport}`);
            }
          }
        }
        const bad = ct.selfCheck();
        if (bad !== null) throw new Error(`after ${JSON.stringify(o)}: ${bad}`);
        if (ct.count() > max) throw new Error(`count ${ct.count()} above max ${max}`);
      }
      return true;
    }),
    { numRuns: 150, seed: 12 },
  );
  t.pass();
});

test('a handle is its slot: entries are reused, never duplicated, and a detached ConnEntry has a store of its own', (t) => {
  const ct = new Conntrack({ max: 4 });
  const seen = new Set<ConnEntry>();
  for (let round = 0; round < 300; round++) {
    const p = ctxOf(ip4(`10.1.${round >> 8}.${round & 255}`, SERVER, udpDgram(1000, 53)), round * 60_000);
    t.is(ct.in(p), Verdict.ACCEPT);
    ct.confirm(p);
    seen.add(p.ct as ConnEntry);
  }
  t.is(ct.selfCheck(), null);
  // 300 flows, each expired before the next: slots come back after the free list's slack, so handles repeat.
  t.true(seen.size <= ct.store.allocated, `${seen.size} handles for ${ct.store.allocated} slots`);
  t.true(ct.store.allocated <= 4 + 1024);
  const a = new ConnEntry();
  const b = new ConnEntry();
  a.mark = 7;
  t.is(b.mark, 0);
  t.not(a.store, b.store);
});

test('recycled slots: a dropped new flow\'s slot comes back, and a later fragment of a dead flow never joins the flow that took its slot', (t) => {
  const ct = new Conntrack({ max: 4 });
  // New flows whose first packet never confirms (dropped by the rules): their slots return through the unconfirmed ring.
  const first = ctxOf(ip4('10.2.0.1', SERVER, udpDgram(1, 53)), 0);
  ct.in(first);
  const unconfirmed = first.ct as ConnEntry;
  for (let i = 0; i < 3000; i++) ct.in(ctxOf(ip4(`10.3.${i >> 8}.${i & 255}`, SERVER, udpDgram(2, 53)), 0));
  t.true((unconfirmed.status & CtStatus.DYING) !== 0, 'freed once pushed out of the ring');
  t.true(ct.store.allocated <= 4 + 1024, `${ct.store.allocated} slots for 3,001 dropped new flows`);
  t.is(ct.selfCheck(), null);

  // A first fragment attaches its datagram to flow F; F is flushed and its slot reused by another flow.
  const frag = ctxOf(ip4('10.4.0.1', SERVER, udpDgram(5000, 53, [1, 2, 3, 4, 5, 6, 7, 8]), { id: 77, mf: true }), 1);
  t.is(ct.in(frag), Verdict.ACCEPT);
  ct.confirm(frag);
  const f = frag.ct as ConnEntry;
  t.not(f, null);
  ct.flush();
  let reused: ConnEntry | null = null;
  for (let i = 0; i < 5000 && reused === null; i++) {
    const p = ctxOf(ip4(`10.5.${i >> 8}.${i & 255}`, SERVER, udpDgram(3, 53)), 2);
    ct.in(p);
    ct.confirm(p);
    if (p.ct === f) reused = p.ct as ConnEntry;
  }
  t.is(reused, f, 'the slot was handed out again');
  t.is((f.status & CtStatus.DYING), 0, 'and now holds a live flow');
  const later = ctxOf(ip4('10.4.0.1', SERVER, { proto: 17, bytes: [9, 9, 9, 9, 9, 9, 9, 9], csumAt: -1 }, { id: 77, frag: 2 }), 3);
  t.is(ct.in(later), Verdict.ACCEPT);
  t.is(later.ct, null, 'the later fragment does not join the slot\'s new flow');
  t.is(later.ctState, CtState.INVALID);
});
