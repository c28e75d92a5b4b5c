/**
 * Builders against the Linux kernel: each packet the kernel sent in
 * capture.sh (REJECT tcp-reset, ICMP errors, echo replies, ARP/NDP, the
 * fragments of a large ping) is rebuilt from the packet that provoked it and
 * compared byte for byte. Fields the kernel fills from a counter or a hash
 * (IPv4 identification of ICMP messages, IPv6 auto flow labels) are copied
 * over before comparing, and said so where it happens.
 */
import test from 'ava';
import fc from 'fast-check';
import { PacketContext } from '../xt/packet.js';
import {
  DropReason,
  buildArpReply,
  buildEchoReply,
  buildIcmp4Error,
  buildIcmp6Error,
  buildNeighborAdvert,
  buildNeighborSolicit,
  buildTcpReset,
  checksum,
  fragmentIpv4,
  fragmentIpv6,
  mayReplyWithIcmpError,
  parseIpv4,
  parseIpv6,
  parseMac,
  parsePacket,
  NA_FLAG_OVERRIDE,
  NA_FLAG_ROUTER,
  NA_FLAG_SOLICITED,
} from '../dataplane/index.js';
import { type Frame, l3InHeadroom, pick, scenario } from './fixtures/codec/load.js';

const ctx = new PacketContext();
const out = Buffer.alloc(4096);
const MAC_A = parseMac('02:00:00:00:77:01');
const MAC_B = parseMac('02:00:00:00:77:02');
const B4 = parseIpv4('10.77.0.2');
const B6 = parseIpv6('fd77::2');
const A6 = parseIpv6('fd77::1');

const fromA = (ts: Record<string, string>) => ts['eth.src'] === '02:00:00:00:77:01';
const fromB = (ts: Record<string, string>) => ts['eth.src'] === '02:00:00:00:77:02';

function parse(f: Frame): void {
  const { buf, off, len } = l3InHeadroom(f);
  const r = parsePacket(ctx, buf, off, len);
  if (r !== DropReason.NONE) throw new Error(`${f.scenario}#${f.index} does not parse: ${DropReason[r]}`);
}

const l3 = (f: Frame) => Buffer.from(f.bytes.subarray(14));

/** Copies the kernel's IPv4 ID into ours and refreshes our header checksum. */
function takeIdent(mine: Buffer, kernel: Buffer): void {
  mine.writeUInt16BE(kernel.readUInt16BE(4), 4);
  mine.writeUInt16BE(0, 10);
  mine.writeUInt16BE(checksum(mine, 0, 20), 10);
}

/** Copies the kernel's IPv6 flow label into ours (flow label is not in any checksum). */
function takeFlowLabel(mine: Buffer, kernel: Buffer): void {
  mine.writeUInt32BE(((mine.readUInt32BE(0) & 0xfff00000) | (kernel.readUInt32BE(0) & 0xfffff)) >>> 0, 0);
}

const rejectCases: [string, string][] = [
  ['tcp4_reject_syn', 'SYN: no ACK, so seq 0 and ack = seq + 1'],
  ['tcp4_reject_ack', 'bare ACK: seq = its ack, no ACK flag'],
  ['tcp4_reject_data', 'FIN+PSH with 10 data bytes: ack = seq + 1 + 10'],
  ['tcp6_reject_syn', 'IPv6 SYN'],
];
for (const [name, why] of rejectCases) {
  test(`tcp-reset equals the kernel's REJECT: ${name} (${why})`, (t) => {
    const seg = pick(name, 'the segment from A', (ts) => fromA(ts) && ts['tcp.srcport'] !== undefined);
    const rst = pick(name, 'the kernel RST', (ts) => fromB(ts) && ts['tcp.flags'] !== undefined);
    parse(seg);
    const n = buildTcpReset(out, 0, ctx);
    t.deepEqual(Buffer.from(out.subarray(0, n)), l3(rst));
  });
}

test('tcp-reset is refused for a RST, a bad checksum, and a non-first fragment', (t) => {
  const seg = pick('tcp4_reject_syn', 'the SYN', (ts) => fromA(ts) && ts['tcp.flags'] === '0x0002');
  parse(seg);
  t.true(buildTcpReset(out, 0, ctx) > 0);
  ctx.buf[ctx.l4off + 16] ^= 0xff; // TCP checksum
  t.is(buildTcpReset(out, 0, ctx), 0);
  const rst = pick('tcp4_reject_syn', 'the RST', (ts) => fromB(ts) && ts['tcp.flags'] !== undefined);
  parse(rst);
  t.is(buildTcpReset(out, 0, ctx), 0);
  parse(seg);
  ctx.fragmentOffset = 3;
  t.is(buildTcpReset(out, 0, ctx), 0);
});

test("ICMP port unreachable equals the kernel's (ident copied)", (t) => {
  const dgram = pick('udp4_unreach', 'the datagram', (ts) => fromA(ts) && ts['udp.length'] !== undefined);
  const err = pick('udp4_unreach', 'the ICMP error', (ts) => fromB(ts) && ts['icmp.type'] === '3');
  parse(dgram);
  t.true(mayReplyWithIcmpError(ctx));
  const n = buildIcmp4Error(out, 0, ctx, 3, 3, 0, B4);
  const mine = Buffer.from(out.subarray(0, n));
  takeIdent(mine, l3(err));
  t.deepEqual(mine, l3(err));
});

test("ICMP time exceeded equals the kernel's, quoting the packet as received (TTL 1)", (t) => {
  const probe = pick('ping4_ttl1', 'the TTL-1 echo', (ts) => fromA(ts) && ts['icmp.type'] === '8');
  const err = pick('ping4_ttl1', 'the time exceeded', (ts) => fromB(ts) && ts['icmp.type'] === '11');
  parse(probe);
  const n = buildIcmp4Error(out, 0, ctx, 11, 0, 0, B4);
  const mine = Buffer.from(out.subarray(0, n));
  takeIdent(mine, l3(err));
  t.deepEqual(mine, l3(err));
});

test("ICMPv6 port unreachable and time exceeded equal the kernel's (flow label copied)", (t) => {
  for (const [name, type, code] of [
    ['udp6_unreach', 1, 4],
    ['ping6_ttl1', 3, 0],
  ] as const) {
    const orig = pick(name, 'the provoking packet', (ts) => fromA(ts) && (ts['udp.length'] !== undefined || ts['icmpv6.type'] === '128'));
    const err = pick(name, 'the error', (ts) => fromB(ts) && ts['icmpv6.type'] === String(type));
    parse(orig);
    t.true(mayReplyWithIcmpError(ctx, type, code));
    const n = buildIcmp6Error(out, 0, ctx, type, code, 0, B6);
    const mine = Buffer.from(out.subarray(0, n));
    takeFlowLabel(mine, l3(err));
    t.deepEqual(mine, l3(err), name);
  }
});

test("echo replies equal the kernel's (v4 ident, v6 flow label copied)", (t) => {
  const req4 = pick('ping4', 'the echo request', (ts) => fromA(ts) && ts['icmp.type'] === '8');
  const rep4 = pick('ping4', 'the echo reply', (ts) => fromB(ts) && ts['icmp.type'] === '0');
  parse(req4);
  let n = buildEchoReply(out, 0, ctx);
  let mine = Buffer.from(out.subarray(0, n));
  takeIdent(mine, l3(rep4));
  t.deepEqual(mine, l3(rep4));

  const req6 = pick('ping6', 'the echo request', (ts) => fromA(ts) && ts['icmpv6.type'] === '128');
  const rep6 = pick('ping6', 'the echo reply', (ts) => fromB(ts) && ts['icmpv6.type'] === '129');
  parse(req6);
  n = buildEchoReply(out, 0, ctx);
  mine = Buffer.from(out.subarray(0, n));
  takeFlowLabel(mine, l3(rep6));
  t.deepEqual(mine, l3(rep6));
});

test('echo reply built in place over the request equals the one built elsewhere', (t) => {
  for (const f of [
    pick('ping4', 'v4 request', (ts) => ts['icmp.type'] === '8'),
    pick('ping4_rr', 'v4 request with options', (ts) => ts['icmp.type'] === '8'),
    pick('ping6', 'v6 request', (ts) => ts['icmpv6.type'] === '128'),
  ]) {
    const { buf, off, len } = l3InHeadroom(f);
    parsePacket(ctx, buf, off, len);
    const n1 = buildEchoReply(out, 0, ctx);
    const elsewhere = Buffer.from(out.subarray(0, n1));
    const n2 = buildEchoReply(buf, off, ctx);
    t.is(n2, n1);
    takeIdentIf4(elsewhere, buf.subarray(off, off + n2));
    t.deepEqual(Buffer.from(buf.subarray(off, off + n2)), elsewhere, f.scenario);
    t.is(parsePacket(ctx, buf, off, n2), 0);
  }
});

function takeIdentIf4(mine: Buffer, other: Uint8Array): void {
  if (mine[0] >> 4 === 4) takeIdent(mine, Buffer.from(other));
}

test('ICMP errors built in place in the headroom equal the ones built elsewhere', (t) => {
  const v4 = pick('udp4_unreach', 'the datagram', (ts) => fromA(ts) && ts['udp.length'] !== undefined);
  let { buf, off, len } = l3InHeadroom(v4);
  parsePacket(ctx, buf, off, len);
  let n = buildIcmp4Error(out, 0, ctx, 3, 3, 0, B4);
  let elsewhere = Buffer.from(out.subarray(0, n));
  t.is(buildIcmp4Error(buf, off - 28, ctx, 3, 3, 0, B4), n);
  takeIdent(elsewhere, buf.subarray(off - 28));
  t.deepEqual(Buffer.from(buf.subarray(off - 28, off - 28 + n)), elsewhere);

  const v6 = pick('udp6_unreach', 'the datagram', (ts) => fromA(ts) && ts['udp.length'] !== undefined);
  ({ buf, off, len } = l3InHeadroom(v6));
  parsePacket(ctx, buf, off, len);
  n = buildIcmp6Error(out, 0, ctx, 1, 4, 0, B6);
  elsewhere = Buffer.from(out.subarray(0, n));
  t.is(buildIcmp6Error(buf, off - 48, ctx, 1, 4, 0, B6), n);
  t.deepEqual(Buffer.from(buf.subarray(off - 48, off - 48 + n)), elsewhere);
});

test('ICMP errors quote at most 576 (v4) / 1280 (v6) bytes in all, like the kernel', (t) => {
  const big4 = pick('ping4_frag', 'the first 1500-byte fragment', (ts) => fromA(ts) && ts['ip.len'] === '1500');
  parse(big4);
  const n4 = buildIcmp4Error(out, 0, ctx, 3, 4, 1400, B4);
  t.is(n4, 576);
  t.is(out.readUInt16BE(2), 576);
  t.is(out.readUInt16BE(20 + 6), 1400); // next-hop MTU
  t.is(checksum(out, 20, n4 - 20), 0);
  const big6 = pick('ping6_frag', 'the first fragment', (ts) => fromA(ts) && ts['ipv6.fraghdr.offset'] === '0');
  parse(big6);
  const n6 = buildIcmp6Error(out, 0, ctx, 2, 0, 1400, B6);
  t.is(n6, 1280);
  t.is(out.readUInt16BE(4), 1240);
  t.is(out.readUInt32BE(44), 1400);
  t.is(buildIcmp6Error(out.subarray(0, 1000), 0, ctx, 2, 0, 1400, B6), 0, 'refuses when the output does not fit');
});

test('parameter problem carries the pointer', (t) => {
  parse(pick('ping4', 'the request', (ts) => ts['icmp.type'] === '8'));
  buildIcmp4Error(out, 0, ctx, 12, 0, 9, B4);
  t.is(out[24], 9);
  parse(pick('ping6', 'the request', (ts) => ts['icmpv6.type'] === '128'));
  buildIcmp6Error(out, 0, ctx, 4, 0, 6, B6);
  t.is(out.readUInt32BE(44), 6);
});

test("ARP reply equals the kernel's", (t) => {
  const req = pick('ping4', 'the ARP request from A', (ts) => fromA(ts) && ts['arp.opcode'] === '1');
  const rep = pick('ping4', 'the ARP reply from B', (ts) => fromB(ts) && ts['arp.opcode'] === '2');
  const n = buildArpReply(out, 0, req.bytes, 14, MAC_B);
  t.deepEqual(Buffer.from(out.subarray(0, n)), rep.bytes);
});

test("neighbour advertisement and solicitation equal the kernel's", (t) => {
  const na = pick('ping6', 'the NA from B', (ts) => fromB(ts) && ts['icmpv6.type'] === '136');
  // B forwards, so the kernel sets the router flag along with solicited and override.
  let n = buildNeighborAdvert(out, 0, MAC_B, MAC_A, B6, A6, B6, NA_FLAG_ROUTER | NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE);
  t.deepEqual(Buffer.from(out.subarray(0, n)), na.bytes);
  const ns = pick('ping6', 'the NS from A for fd77::2', (ts) => fromA(ts) && ts['icmpv6.nd.ns.target_address'] === 'fd77::2');
  n = buildNeighborSolicit(out, 0, MAC_A, A6, B6);
  t.deepEqual(Buffer.from(out.subarray(0, n)), ns.bytes);
});

/** Rebuilds the unfragmented IPv4 packet from its fragments (header of the first, offset/MF cleared). */
function reassemble4(frags: Buffer[]): Buffer {
  const hl = (frags[0][0] & 15) * 4;
  const parts = [...frags].sort((a, b) => (a.readUInt16BE(6) & 0x1fff) - (b.readUInt16BE(6) & 0x1fff));
  const payload = Buffer.concat(parts.map((p) => p.subarray(hl, p.readUInt16BE(2))));
  const h = Buffer.from(parts[0].subarray(0, hl));
  h.writeUInt16BE(hl + payload.length, 2);
  h.writeUInt16BE(h.readUInt16BE(6) & 0xc000, 6); // keep DF (and the reserved bit), clear MF and offset
  h.writeUInt16BE(0, 10);
  h.writeUInt16BE(checksum(h, 0, hl), 10);
  return Buffer.concat([h, payload]);
}

test("IPv4 fragmentation of the reassembled ping equals the kernel's fragments", (t) => {
  const kernel = scenario('ping4_frag').filter((f) => fromA(f.ts) && f.ts['ip.version'] === '4').map(l3);
  t.is(kernel.length, 3);
  const whole = reassemble4(kernel);
  const offs = new Uint32Array(8);
  const lens = new Uint32Array(8);
  const count = fragmentIpv4(whole, 0, whole.length, 1500, out, 0, offs, lens);
  t.is(count, 3);
  for (let k = 0; k < count; k++) t.deepEqual(Buffer.from(out.subarray(offs[k], offs[k] + lens[k])), kernel[k], `fragment ${k}`);
});

test("IPv6 fragmentation of the reassembled ping equals the kernel's fragments", (t) => {
  const kernel = scenario('ping6_frag').filter((f) => fromA(f.ts) && f.ts['ipv6.fraghdr.ident'] !== undefined).map(l3);
  t.is(kernel.length, 3);
  const parts = [...kernel].sort((a, b) => (a.readUInt16BE(42) & 0xfff8) - (b.readUInt16BE(42) & 0xfff8));
  const payload = Buffer.concat(parts.map((p) => p.subarray(48, 40 + p.readUInt16BE(4))));
  const h = Buffer.from(parts[0].subarray(0, 40));
  h[6] = parts[0][40];
  h.writeUInt16BE(payload.length, 4);
  const whole = Buffer.concat([h, payload]);
  const offs = new Uint32Array(8);
  const lens = new Uint32Array(8);
  const count = fragmentIpv6(whole, 0, whole.length, 1500, parts[0].readUInt32BE(44), out, 0, offs, lens);
  t.is(count, 3);
  for (let k = 0; k < count; k++) t.deepEqual(Buffer.from(out.subarray(offs[k], offs[k] + lens[k])), kernel[k], `fragment ${k}`);
});

test('IPv4 fragmentation: non-copied options (record route) become NOPs after the first fragment', (t) => {
  const rr = l3(pick('ping4_rr', 'the request with RR', (ts) => fromA(ts) && ts['icmp.type'] === '8'));
  // Add a copied option too: rewrite the leading NOP + RR start as-is, and put a copied router alert (148) at the end.
  const offs = new Uint32Array(8);
  const lens = new Uint32Array(8);
  const count = fragmentIpv4(rr, 0, rr.length, 60 + 16, out, 0, offs, lens);
  t.true(count > 1);
  const first = out.subarray(offs[0], offs[0] + 60);
  t.deepEqual(Buffer.from(first.subarray(20, 60)), rr.subarray(20, 60));
  const second = out.subarray(offs[1], offs[1] + 60);
  t.is(second[0], 0x4f);
  t.true(second.subarray(20, 60).every((b, i) => b === 1 || rr[20 + i] === 0), 'RR replaced by NOPs, END kept');
});

/** A random IPv4 packet, possibly with a copied (LSRR-like, type 0x83) and a non-copied (RR) option. */
const packet4 = fc
  .tuple(fc.uint8Array({ minLength: 0, maxLength: 3000, size: 'max' }), fc.boolean(), fc.boolean(), fc.nat(0xffff))
  .map(([payload, withOpts, df, id]) => {
    const opts = withOpts ? Buffer.from([0x83, 7, 4, 1, 2, 3, 4, 7, 7, 4, 0, 0, 0, 0, 1, 0]) : Buffer.alloc(0);
    const hl = 20 + opts.length;
    const b = Buffer.alloc(hl + payload.length);
    b[0] = 0x40 | (hl / 4);
    b.writeUInt16BE(b.length, 2);
    b.writeUInt16BE(id, 4);
    b.writeUInt16BE(df ? 0x4000 : 0, 6);
    b[8] = 64;
    b[9] = 253; // experimental protocol: random bytes are a valid payload
    b.writeUInt32BE(0x0a000001, 12);
    b.writeUInt32BE(0x0a000002, 16);
    opts.copy(b, 20);
    Buffer.from(payload).copy(b, hl);
    b.writeUInt16BE(checksum(b, 0, hl), 10);
    return b;
  });

test('IPv4 fragmentation property: fragments fit, align, parse, and reassemble to the original', (t) => {
  const offs = new Uint32Array(128); // 3000 bytes at MTU 68 with options: 94 fragments
  const lens = new Uint32Array(128);
  const frag = Buffer.alloc(8192);
  fc.assert(
    fc.property(packet4, fc.integer({ min: 68, max: 1600 }), (p, mtu) => {
      const n = fragmentIpv4(p, 0, p.length, mtu, frag, 0, offs, lens);
      if (n < 0) return false;
      const frags: Buffer[] = [];
      for (let k = 0; k < n; k++) {
        const f = Buffer.from(frag.subarray(offs[k], offs[k] + lens[k]));
        if (f.length > Math.max(mtu, p.length)) return false;
        if (parsePacket(ctx, f, 0, f.length) !== 0) return false;
        const ff = f.readUInt16BE(6);
        if (((ff & 0x2000) !== 0) !== (k < n - 1)) return false;
        if (k < n - 1 && (f.length - (f[0] & 15) * 4) % 8 !== 0) return false;
        if (k > 0 && f[0] === 0x49) {
          // LSRR (copied) survives into every fragment; RR (not copied) becomes NOPs.
          if (f[20] !== 0x83 || !f.subarray(27, 34).every((x) => x === 1)) return false;
        }
        frags.push(f);
      }
      const back = reassemble4(frags);
      return back.equals(p);
    }),
    { numRuns: 300, endOnFailure: true }, // shrinking kilobyte packets takes minutes
  );
  t.pass();
});

test('fragmentation refuses an MTU with no room for 8 data bytes and a too small output', (t) => {
  const p = l3(pick('ping4', 'the request', (ts) => ts['icmp.type'] === '8'));
  const offs = new Uint32Array(64);
  const lens = new Uint32Array(64);
  t.is(fragmentIpv4(p, 0, p.length, 27, out, 0, offs, lens), -1);
  t.is(fragmentIpv4(p, 0, p.length, 28, out.subarray(0, 50), 0, offs, lens), -1);
  t.is(fragmentIpv4(p, 0, p.length, 28, out, 0, offs.subarray(0, 2), lens), -1);
  t.is(fragmentIpv4(p, 0, p.length, 28, out, 0, offs, lens), Math.ceil(64 / 8));
});

test('mayReplyWithIcmpError: the kernel rules', (t) => {
  const req4 = pick('ping4', 'the echo request', (ts) => ts['icmp.type'] === '8');
  const err4 = pick('udp4_unreach', 'an ICMP error', (ts) => ts['icmp.type'] === '3');
  const udp4 = pick('udp4_unreach', 'the datagram', (ts) => fromA(ts) && ts['udp.length'] !== undefined);
  const req6 = pick('ping6', 'the echo request', (ts) => ts['icmpv6.type'] === '128');
  const err6 = pick('udp6_unreach', 'an ICMPv6 error', (ts) => ts['icmpv6.type'] === '1');
  const frag4 = pick('ping4_frag', 'a later fragment', (ts) => Number(ts['ip.frag_offset']) > 0);
  const first4 = pick('ping4_frag', 'the first fragment', (ts) => ts['ip.frag_offset'] === '0' && ts['ip.flags.mf'] === '1');
  const dhcp = pick('dhcp_discover', 'the broadcast DISCOVER from 0.0.0.0', (ts) => ts['dhcp.type'] === '1');
  const mld = pick('link_up6', 'an MLD report to a multicast group', (ts) => ts['ipv6.nxt'] === '0');
  const cases: [string, Frame, boolean, ((c: PacketContext) => void)?, number?, number?][] = [
    ['echo request', req4, true],
    ['UDP datagram', udp4, true],
    ['ICMP error', err4, false],
    ['non-first fragment', frag4, false],
    ['first fragment', first4, true],
    ['broadcast from 0.0.0.0', dhcp, false],
    ['to a multicast group', req4, false, (c) => (c.dst4 = parseIpv4('224.0.0.5'))],
    ['from 127.0.0.1', req4, false, (c) => (c.src4 = parseIpv4('127.0.0.1'))],
    ['from class E', req4, false, (c) => (c.src4 = parseIpv4('240.0.0.1'))],
    ['ICMP with unknown type 40', req4, false, (c) => (c.icmpType = 40)],
    ['echo request v6', req6, true],
    ['ICMPv6 error', err6, false],
    ['v6 to a multicast group', mld, false],
    ['v6 to multicast, packet too big', mld, true, undefined, 2, 0],
    ['v6 to multicast, param problem code 2', mld, true, undefined, 4, 2],
    ['v6 from ::', req6, false, (c) => c.src6.fill(0)],
    ['v6 from multicast', req6, false, (c) => (c.src6[0] = 0xff020000)],
  ];
  for (const [name, f, expect, tweak, type, code] of cases) {
    parse(f);
    tweak?.(ctx);
    t.is(mayReplyWithIcmpError(ctx, type, code), expect, name);
  }
});

test('echo reply is refused for anything but an echo request', (t) => {
  parse(pick('ping4', 'the echo reply', (ts) => ts['icmp.type'] === '0'));
  t.is(buildEchoReply(out, 0, ctx), 0);
  parse(pick('tcp4_reject_syn', 'a TCP segment', (ts) => ts['tcp.flags'] === '0x0002'));
  t.is(buildEchoReply(out, 0, ctx), 0);
  parse(pick('ping6', 'the echo reply', (ts) => ts['icmpv6.type'] === '129'));
  t.is(buildEchoReply(out, 0, ctx), 0);
});

test('IPv6 fragmentation keeps Hop-by-Hop and Routing in every fragment and fragments the rest', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 600, size: 'max' }), fc.integer({ min: 80, max: 1500 }), fc.nat(0xffffffff), (payload, mtu, ident) => {
      // IPv6 | HbH (8, PadN) | Routing (24) | DestOpts (8) | payload (protocol 253)
      const ext = Buffer.from([43, 0, 1, 4, 0, 0, 0, 0, 60, 2, 0, 0, 0, 0, 0, 0, ...new Array(16).fill(0), 253, 0, 1, 4, 0, 0, 0, 0]);
      const p = Buffer.alloc(40 + ext.length + payload.length);
      p.writeUInt32BE(0x60000000, 0);
      p.writeUInt16BE(ext.length + payload.length, 4);
      p[6] = 0;
      p[7] = 64;
      p.writeUInt32BE(0x20010db8, 8);
      p.writeUInt32BE(0x20010db8, 24);
      ext.copy(p, 40);
      Buffer.from(payload).copy(p, 40 + ext.length);
      const offs = new Uint32Array(128); // 608 bytes at 8 per fragment: 76
      const lens = new Uint32Array(128);
      const frag = Buffer.alloc(8192);
      const n = fragmentIpv6(p, 0, p.length, mtu, ident, frag, 0, offs, lens);
      // 72 unfragmentable bytes + 8 of Fragment header leave no room for 8 data bytes below MTU 88.
      if (mtu < 88) return n === -1;
      if (n < 1) return false;
      const data: Buffer[] = [];
      for (let k = 0; k < n; k++) {
        const f = Buffer.from(frag.subarray(offs[k], offs[k] + lens[k]));
        if (f.length > Math.max(mtu, p.length + 8)) return false;
        if (parsePacket(ctx, f, 0, f.length) !== 0) return false;
        // Unfragmentable part (40 + HbH 8 + Routing 24) repeated, Routing now says "Fragment follows".
        if (!f.subarray(0, 4).equals(p.subarray(0, 4)) || f[6] !== 0 || !f.subarray(8, 40).equals(p.subarray(8, 40))) return false;
        if (f[48] !== 44 || !f.subarray(40, 48).equals(p.subarray(40, 48)) || !f.subarray(49, 72).equals(p.subarray(49, 72))) return false;
        const fh = 72;
        if (f[fh] !== 60 || f.readUInt32BE(fh + 4) !== ident) return false;
        const fo = f.readUInt16BE(fh + 2);
        if (((fo & 1) === 1) !== (k < n - 1)) return false;
        if ((fo & 0xfff8) !== data.reduce((a, d) => a + d.length, 0)) return false;
        data.push(f.subarray(fh + 8));
      }
      return Buffer.concat(data).equals(p.subarray(72));
    }),
    { numRuns: 200, endOnFailure: true },
  );
  t.pass();
});
