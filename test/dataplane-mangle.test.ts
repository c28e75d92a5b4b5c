/**
 * dataplane/mangle.ts: address, port and query-id rewrites with incremental
 * checksums.
 *
 * 1. A golden table (test/fixtures/mangle/cases.json, made by scapy with
 *    make-cases.py): each packet rewritten must equal, byte for byte, the
 *    packet scapy builds from scratch with the new fields, every checksum
 *    computed in full (IPv4 header, TCP/UDP/ICMP/ICMPv6, the embedded header
 *    of ICMP errors and their outer checksum).
 * 2. A property: for random packets and random rewrite sequences, the
 *    rewritten bytes equal the packet rebuilt from scratch with the new
 *    fields (incremental == full recomputation), and the PacketContext
 *    equals what parsing the rewritten bytes gives.
 */
import test from 'ava';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import {
  End,
  csumReplace16,
  IcmpInner,
  parseIpv4,
  parseIpv6,
  parsePacket,
  setAddress4,
  setAddress6,
  setIcmpQueryId,
  setInnerAddress4,
  setInnerAddress6,
  setInnerIcmpQueryId,
  setInnerPort,
  setPort,
  verifies,
} from '../dataplane/index.js';
import { PacketContext } from '../xt/packet.js';
import { ctxOf, icmpMsg, ip4, ip6, tcpSeg, udpDgram, type L4 } from './modules-fixtures.js';

type Op = ['addr' | 'port' | 'inner-addr' | 'inner-port', 'src' | 'dst', string | number] | ['id' | 'inner-id', number];

interface GoldenCase {
  name: string;
  ops: Op[];
  before: string;
  after: string;
}

const inner = new IcmpInner();

/** Applies rewrite steps as NAT/RAWNAT would; returns false if a step refused. */
function apply(ctx: PacketContext, ops: readonly Op[]): boolean {
  let located = false;
  for (const op of ops) {
    if (op[0].startsWith('inner') && !located) {
      if (!inner.locate(ctx)) return false;
      located = true;
    }
    if (op[0] === 'id') {
      if (!setIcmpQueryId(ctx, op[1])) return false;
      continue;
    }
    if (op[0] === 'inner-id') {
      if (!setInnerIcmpQueryId(inner, op[1])) return false;
      continue;
    }
    const end = op[1] === 'src' ? End.SRC : End.DST;
    const v = op[2];
    switch (op[0]) {
      case 'addr':
        if (ctx.family === 4) setAddress4(ctx, end, parseIpv4(String(v)));
        else setAddress6(ctx, end, parseIpv6(String(v)));
        break;
      case 'port':
        if (!setPort(ctx, end, Number(v))) return false;
        break;
      case 'inner-addr':
        if (inner.family === 4) setInnerAddress4(inner, end, parseIpv4(String(v)));
        else setInnerAddress6(inner, end, parseIpv6(String(v)));
        break;
      case 'inner-port':
        if (!setInnerPort(inner, end, Number(v))) return false;
        break;
    }
  }
  return true;
}

/** The PacketContext must say what the bytes say after any rewrite. */
function sameContext(t: { deepEqual(a: unknown, b: unknown, m?: string): void }, ctx: PacketContext, name: string): void {
  const again = new PacketContext();
  parsePacket(again, ctx.buf, ctx.l3off, ctx.l3len);
  const pick = (c: PacketContext) => ({ src4: c.src4, dst4: c.dst4, src6: [...c.src6], dst6: [...c.dst6], sport: c.sport, dport: c.dport });
  t.deepEqual(pick(ctx), pick(again), `${name}: context in step with the bytes`);
}

const golden = JSON.parse(readFileSync(new URL('./fixtures/mangle/cases.json', import.meta.url), 'utf8')) as GoldenCase[];

for (const c of golden) {
  test(`golden: ${c.name}`, (t) => {
    const ctx = ctxOf(Buffer.from(c.before, 'hex'));
    const refused = c.name.includes('non-first fragment') ? c.ops.filter((o) => o[0] === 'port') : [];
    // A port rewrite on a non-first fragment is refused (no transport header); the rest applies.
    t.true(apply(ctx, c.ops.filter((o) => !refused.includes(o))), 'every step applied');
    for (const o of refused) t.false(apply(ctx, [o]), 'port on a non-first fragment refused');
    t.is(ctx.buf.toString('hex'), c.after);
    if (ctx.family === 4) t.true(verifies(ctx.buf, ctx.l3off, (ctx.buf[ctx.l3off] & 15) * 4), 'IPv4 header checksum');
    sameContext(t, ctx, c.name);
  });
}

test('refusals change nothing: ports of ICMP, query id of TCP, inner of a non-error', (t) => {
  const rows: [string, Buffer, Op][] = [
    ['port of an echo', ip4('10.0.0.1', '10.0.0.2', icmpMsg(8, 0, [0, 1, 0, 1])), ['port', 'src', 9]],
    ['id of a TCP segment', ip4('10.0.0.1', '10.0.0.2', tcpSeg(1, 2, 2)), ['id', 9]],
    ['inner of an echo', ip4('10.0.0.1', '10.0.0.2', icmpMsg(8, 0, [0, 1, 0, 1], new Array(28).fill(0x45))), ['inner-addr', 'src', '1.2.3.4']],
    ['port of SCTP', ip4('10.0.0.1', '10.0.0.2', { proto: 132, bytes: new Array(12).fill(1), csumAt: -1 }), ['port', 'dst', 9]],
    ['id of ICMPv6 error', ip6('fd00::1', 'fd00::2', icmpMsg(1, 4, [0, 0, 0, 0], [], true)), ['id', 3]],
  ];
  for (const [name, bytes, op] of rows) {
    const ctx = ctxOf(bytes);
    const before = Buffer.from(ctx.buf);
    t.false(apply(ctx, [op]), name);
    t.deepEqual(ctx.buf, before, `${name}: bytes untouched`);
  }
});

test('UDP zero checksum: kept over IPv4 (no checksum), updated over IPv6 (never valid there)', (t) => {
  const v4 = ctxOf(ip4('10.0.0.2', '192.0.2.1', udpDgram(5353, 53, [1, 2, 3])));
  v4.buf.writeUInt16BE(0, 26);
  setAddress4(v4, End.SRC, parseIpv4('198.51.100.1'));
  setPort(v4, End.SRC, 1);
  t.is(v4.buf.readUInt16BE(26), 0);
  const v6 = ctxOf(ip6('fd00::2', '2001:db8::1', udpDgram(5353, 53, [1, 2, 3])));
  v6.buf.writeUInt16BE(0, 46);
  const from = new Uint32Array(v6.src6);
  const to = parseIpv6('2001:db8::99');
  setAddress6(v6, End.SRC, to);
  // Updated as if 0 were a checksum (RFC 1624 from 0), and never left 0.
  t.is(v6.buf.readUInt16BE(46), csumReplace16(0, from, to) || 0xffff);
  t.not(v6.buf.readUInt16BE(46), 0);
});

test('no allocation per rewrite: a long run of rewrites keeps the heap flat', (t) => {
  const ctx = ctxOf(ip6('fd00::2', '2001:db8::1', udpDgram(1000, 53, [1, 2, 3, 4])));
  const a = parseIpv6('2001:db8::9');
  const b = parseIpv6('fd00::2');
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      setAddress6(ctx, End.SRC, i & 1 ? a : b);
      setPort(ctx, End.SRC, i & 0xffff);
    }
  };
  run(100_000); // warm up (JIT)
  globalThis.gc?.();
  const before = process.memoryUsage().heapUsed;
  run(1_000_000);
  const grown = process.memoryUsage().heapUsed - before;
  // 1e6 iterations allocating even 16 bytes each would grow the heap by ~16 MB.
  t.true(grown < 4_000_000, `heap grew ${grown} bytes`);
});

// ---------------------------------------------------------------------------
// Property: incremental == full recomputation.

/** A packet as fields; `build` makes its bytes with every checksum computed in full. */
interface Model {
  family: 4 | 6;
  kind: 'tcp' | 'udp' | 'udp0' | 'echo' | 'frag' | 'error';
  src: string;
  dst: string;
  sport: number;
  dport: number;
  payload: number[];
  /** For 'error': the embedded packet and how many of its bytes the error carries. */
  inner?: Model;
  cut?: number;
}

function l4Of(m: Model): L4 {
  const v6 = m.family === 6;
  switch (m.kind) {
    case 'tcp':
      return tcpSeg(m.sport, m.dport, 0x12, { payload: m.payload, options: [2, 4, 5, 0xb4] });
    case 'udp':
    case 'udp0':
      return udpDgram(m.sport, m.dport, m.payload);
    case 'echo':
      return icmpMsg(v6 ? 128 : 8, 0, [m.sport >> 8, m.sport & 255, 0, 1], m.payload, v6);
    case 'frag':
      if (v6) return { proto: 44, bytes: [6, 0, 0, 0x20, 0, 0, 0x12, 0x34, ...m.payload], csumAt: -1 };
      return { proto: 6, bytes: m.payload, csumAt: -1 };
    case 'error': {
      const whole = build(m.inner!);
      const carried = [...whole.subarray(0, m.cut!)];
      return v6 ? icmpMsg(1, 4, [0, 0, 0, 0], carried, true) : icmpMsg(3, 3, [0, 0, 0, 0], carried);
    }
  }
}

function build(m: Model): Buffer {
  const l4 = l4Of(m);
  const b = m.family === 4 ? ip4(m.src, m.dst, l4, m.kind === 'frag' ? { frag: 5 } : {}) : ip6(m.src, m.dst, l4);
  if (m.kind === 'udp0') b.writeUInt16BE(0, (b[0] & 15) * 4 + 6);
  return b;
}

const v4addr = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'));
const v6addr = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((w) => w.map((x) => x.toString(16)).join(':'));
const payload = fc.array(fc.nat(255), { maxLength: 40 });

function simple(family: 4 | 6, kinds: Model['kind'][]): fc.Arbitrary<Model> {
  const addr = family === 4 ? v4addr : v6addr;
  return fc.record({
    family: fc.constant(family),
    kind: fc.constantFrom(...kinds),
    src: addr,
    dst: addr,
    sport: fc.nat(0xffff),
    dport: fc.nat(0xffff),
    payload,
  });
}

function model(family: 4 | 6): fc.Arbitrary<Model> {
  const plain: Model['kind'][] = family === 4 ? ['tcp', 'udp', 'udp0', 'echo', 'frag'] : ['tcp', 'udp', 'echo', 'frag'];
  const error = fc
    .tuple(simple(family, family === 4 ? ['tcp', 'udp', 'udp0', 'echo'] : ['tcp', 'udp', 'echo']), simple(family, ['tcp']), fc.boolean())
    .map(([inside, outer, short]): Model => {
      const ipLen = family === 4 ? 20 : 40;
      const l4whole = inside.kind === 'tcp' ? 24 : 8;
      // An error carries the first 8 transport bytes for sure, often more: never part of a header in between.
      const cut = short ? ipLen + 8 : ipLen + l4whole + Math.min(inside.payload.length, 12);
      return { ...outer, kind: 'error', payload: [], inner: inside, cut };
    });
  return fc.oneof(simple(family, plain), error);
}

/** A rewrite step on the model: [op, end, value] with the value drawn for its family. */
function steps(family: 4 | 6): fc.Arbitrary<Op[]> {
  const addr = family === 4 ? v4addr : v6addr;
  const end = fc.constantFrom<'src' | 'dst'>('src', 'dst');
  return fc.array(
    fc.oneof(
      fc.tuple(fc.constantFrom<'addr' | 'inner-addr'>('addr', 'inner-addr'), end, addr),
      fc.tuple(fc.constantFrom<'port' | 'inner-port'>('port', 'inner-port'), end, fc.nat(0xffff)),
      fc.tuple(fc.constantFrom<'id' | 'inner-id'>('id', 'inner-id'), fc.nat(0xffff)),
    ) as fc.Arbitrary<Op>,
    { minLength: 1, maxLength: 5 },
  );
}

/** Applies a step to the model; false if mangle.ts must refuse it (the model then stays as it was). */
function applyToModel(m: Model, op: Op): boolean {
  const target = op[0].startsWith('inner') ? m.inner : m;
  if (!target) return false;
  const portsOk = (x: Model) => x.kind === 'tcp' || x.kind === 'udp' || x.kind === 'udp0';
  switch (op[0]) {
    case 'addr':
    case 'inner-addr':
      if (op[1] === 'src') target.src = String(op[2]);
      else target.dst = String(op[2]);
      return true;
    case 'port':
    case 'inner-port':
      if (!portsOk(target)) return false;
      if (op[1] === 'src') target.sport = Number(op[2]);
      else target.dport = Number(op[2]);
      return true;
    case 'id':
    case 'inner-id':
      if (target.kind !== 'echo') return false;
      target.sport = op[1];
      return true;
  }
}

for (const family of [4, 6] as const) {
  test(`property: IPv${family} rewrites equal a full rebuild and keep the context in step`, (t) => {
    fc.assert(
      fc.property(model(family), steps(family), (m, ops) => {
        const ctx = ctxOf(build(m));
        const expected = structuredClone(m);
        for (const op of ops) {
          const ok = applyToModel(expected, op);
          const before = Buffer.from(ctx.buf);
          // Each step alone: a refused step must leave the bytes as they were.
          const did = apply(ctx, [op]);
          if (did !== ok) throw new Error(`step ${JSON.stringify(op)} on ${m.kind}: mangle said ${did}, model ${ok}`);
          if (!did && !ctx.buf.equals(before)) throw new Error('a refused step changed bytes');
        }
        const want = build(expected);
        if (!ctx.buf.equals(want)) throw new Error(`bytes differ:\n got  ${ctx.buf.toString('hex')}\n want ${want.toString('hex')}`);
        const again = new PacketContext();
        parsePacket(again, ctx.buf, ctx.l3off, ctx.l3len);
        for (const k of ['src4', 'dst4', 'sport', 'dport'] as const) if (again[k] !== ctx[k]) throw new Error(`ctx.${k} out of step`);
        if (again.src6.join() !== ctx.src6.join() || again.dst6.join() !== ctx.dst6.join()) throw new Error('ctx IPv6 address out of step');
        return true;
      }),
      { numRuns: 3000 },
    );
    t.pass();
  });
}
