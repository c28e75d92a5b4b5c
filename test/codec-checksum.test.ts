/**
 * Internet checksum: known values, and RFC 1624 incremental updates equal a
 * full recomputation for random packets and random field changes.
 */
import test from 'ava';
import fc from 'fast-check';
import {
  Ipv4View,
  TcpView,
  UdpView,
  checksum,
  csumReplace16,
  csumReplace2,
  csumReplace4,
  csumReplaceBytes,
  finish,
  fold,
  pseudoSum4,
  pseudoSum6,
  pseudoSum6Words,
  sum16,
  verifies,
} from '../dataplane/index.js';

test('RFC 1071 section 3 example: sum of 0001 f203 f4f5 f6f7 is ddf2', (t) => {
  const b = Buffer.from('0001f203f4f5f6f7', 'hex');
  t.is(fold(sum16(b, 0, 8)), 0xddf2);
  t.is(checksum(b, 0, 8), 0x220d);
});

test('a textbook IPv4 header checksums to b861 and verifies', (t) => {
  const h = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
  t.is(checksum(h, 0, 20), 0xb861);
  h.writeUInt16BE(0xb861, 10);
  t.true(verifies(h, 0, 20));
  h[8] = 0x3f;
  t.false(verifies(h, 0, 20));
});

test('odd length: the last byte is the high byte of a zero-padded word', (t) => {
  const b = Buffer.from([0x12, 0x34, 0x56]);
  t.is(sum16(b, 0, 3), 0x1234 + 0x5600);
  t.is(sum16(b, 1, 1), 0x3400);
});

test('fold handles sums beyond 32 bits', (t) => {
  t.is(fold(0x1_0000_ffff), fold(0xffff + 1));
  t.is(fold(2 ** 40), 0x100); // 2^16 = 1 (mod 0xffff), so 2^40 = 2^8
});

test('pseudoSum6 over buffer addresses equals the word form', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.nat(255), fc.nat(0xfffff), (addrs, proto, len) => {
      const b = Buffer.from(addrs);
      const s = new Uint32Array(4);
      const d = new Uint32Array(4);
      for (let i = 0; i < 4; i++) {
        s[i] = b.readUInt32BE(4 * i);
        d[i] = b.readUInt32BE(16 + 4 * i);
      }
      return fold(pseudoSum6(b, 0, proto, len)) === fold(pseudoSum6Words(s, d, proto, len));
    }),
  );
  t.pass();
});

/** A random IPv4 header (never all zero: the version nibble is 4) with a correct checksum. */
const ipv4Header = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((a) => {
  const b = Buffer.from(a);
  b[0] = 0x45;
  b.writeUInt16BE(0, 10);
  b.writeUInt16BE(checksum(b, 0, 20), 10);
  return b;
});

test('csumReplace2 after changing any header word equals a full recomputation', (t) => {
  fc.assert(
    fc.property(ipv4Header, fc.integer({ min: 0, max: 9 }), fc.nat(0xffff), (h, word, value) => {
      if (word === 5) return true; // the checksum word itself
      if (word === 0) value = 0x4500 | (value & 0xff); // keep the header non-zero
      const old = h.readUInt16BE(2 * word);
      const inc = csumReplace2(h.readUInt16BE(10), old, value);
      h.writeUInt16BE(value, 2 * word);
      h.writeUInt16BE(0, 10);
      const full = checksum(h, 0, 20);
      h.writeUInt16BE(inc, 10);
      return inc === full && verifies(h, 0, 20);
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test('csumReplace4 for an address change equals recomputing the header', (t) => {
  fc.assert(
    fc.property(ipv4Header, fc.boolean(), fc.nat(0xffffffff), (h, isSrc, addr) => {
      const v = new Ipv4View().point(h, 0, 20);
      const old = isSrc ? v.src : v.dst;
      const inc = csumReplace4(v.checksum, old, addr);
      if (isSrc) v.src = addr;
      else v.dst = addr;
      v.fillChecksum();
      return inc === v.checksum;
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test('Ipv4View.decrementTtl and address setters keep the header checksum valid', (t) => {
  fc.assert(
    fc.property(ipv4Header, fc.nat(0xffffffff), fc.nat(0xffffffff), (h, s, d) => {
      const v = new Ipv4View().point(h, 0, 20);
      v.decrementTtl();
      v.setSrcUpdatingChecksum(s);
      v.setDstUpdatingChecksum(d);
      const kept = v.checksum;
      v.fillChecksum();
      return v.verifyChecksum() && kept === v.checksum;
    }),
    { numRuns: 1000 },
  );
  t.pass();
});

/** A TCP segment (header + payload) with random content and a valid IPv4 checksum. */
const tcpSegment = fc
  .tuple(fc.uint8Array({ minLength: 20, maxLength: 80, size: 'max' }), fc.nat(0xffffffff), fc.nat(0xffffffff))
  .map(([a, src, dst]) => {
    const b = Buffer.from(a);
    b[12] = 5 << 4;
    const v = new TcpView().point(b, 0, b.length);
    v.fillChecksum4(src, dst);
    return { b, v, src, dst };
  });

test('TCP: NAT-style rewrite of address (pseudo-header) and port, incrementally, equals recomputation', (t) => {
  fc.assert(
    fc.property(tcpSegment, fc.nat(0xffffffff), fc.nat(0xffff), ({ v, src, dst }, newSrc, newPort) => {
      let c = csumReplace4(v.checksum, src, newSrc);
      c = csumReplace2(c, v.srcPort, newPort);
      v.srcPort = newPort;
      const inc = c;
      v.fillChecksum4(newSrc, dst);
      return inc === v.checksum && v.verifyChecksum4(newSrc, dst);
    }),
    { numRuns: 1000 },
  );
  t.pass();
});

test('TCP: sequence number rewrite with csumReplace4', (t) => {
  fc.assert(
    fc.property(tcpSegment, fc.nat(0xffffffff), ({ v, src, dst }, seq) => {
      const inc = csumReplace4(v.checksum, v.seq, seq);
      v.seq = seq;
      v.fillChecksum4(src, dst);
      return inc === v.checksum;
    }),
    { numRuns: 1000 },
  );
  t.pass();
});

test('UDP over IPv6: csumReplace16 and csumReplaceBytes for an address change equal recomputation', (t) => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 40, maxLength: 40 }),
      fc.uint8Array({ minLength: 8, maxLength: 60, size: 'max' }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      (hdr, payload, newAddr) => {
        const b = Buffer.concat([Buffer.from(hdr), Buffer.from(payload)]);
        b[0] = 0x60;
        b.writeUInt16BE(payload.length, 4);
        const u = new UdpView().point(b, 40, payload.length);
        u.length = payload.length;
        u.fillChecksum6(b, 8);
        const from = new Uint32Array(4);
        const to = new Uint32Array(4);
        for (let i = 0; i < 4; i++) {
          from[i] = b.readUInt32BE(8 + 4 * i);
          to[i] = Buffer.from(newAddr).readUInt32BE(4 * i);
        }
        const inc16 = csumReplace16(u.checksum, from, to, true);
        const incBytes = csumReplaceBytes(u.checksum, b, 8, newAddr, 0, 16, true);
        b.set(newAddr, 8);
        u.fillChecksum6(b, 8);
        return inc16 === u.checksum && incBytes === u.checksum && u.verifyChecksum6(b, 8);
      },
    ),
    { numRuns: 1000 },
  );
  t.pass();
});

test('UDP rule: a 0 checksum (none) is never updated; a computed 0 is sent as ffff', (t) => {
  t.is(csumReplace2(0, 0x1234, 0x4321, true), 0);
  t.is(csumReplace4(0, 1, 2, true), 0);
  t.is(csumReplace16(0, new Uint32Array(4), new Uint32Array([1, 2, 3, 4]), true), 0);
  // Pick the new word so that the updated one's-complement sum is all ones: checksum 0 -> ffff.
  const b = Buffer.from('04d2003500100000deadbeefcafef00d', 'hex');
  const u = new UdpView().point(b, 0, 16);
  u.fillChecksum4(0x0a000001, 0x0a000002);
  const old = u.srcPort;
  const x = fold((~u.checksum & 0xffff) + (~old & 0xffff));
  const newPort = 0xffff - x;
  const c = csumReplace2(u.checksum, old, newPort, true);
  t.is(c, 0xffff);
  t.is(csumReplace2(u.checksum, old, newPort, false), 0);
  u.srcPort = newPort;
  u.checksum = c;
  t.true(u.verifyChecksum4(0x0a000001, 0x0a000002));
  u.fillChecksum4(0x0a000001, 0x0a000002);
  t.is(u.checksum, 0xffff);
});

test('UDP over IPv4 with checksum 0 verifies (absent); over IPv6 it does not', (t) => {
  const b = Buffer.alloc(48);
  b[0] = 0x60;
  const u = new UdpView().point(b, 40, 8);
  u.length = 8;
  u.checksum = 0;
  t.true(u.verifyChecksum4(1, 2));
  t.false(u.verifyChecksum6(b, 8));
});

test('finish and sum16 compose across ranges (even-length head)', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100, size: 'max' }), fc.uint8Array({ maxLength: 101, size: 'max' }), (a, c) => {
      if (a.length % 2) return true;
      const whole = Buffer.concat([Buffer.from(a), Buffer.from(c)]);
      return finish(sum16(c, 0, c.length, sum16(a, 0, a.length))) === checksum(whole, 0, whole.length);
    }),
  );
  t.pass();
});

test('pseudoSum4 matches a checksum over an explicit pseudo-header', (t) => {
  fc.assert(
    fc.property(fc.nat(0xffffffff), fc.nat(0xffffffff), fc.nat(255), fc.nat(0xffff), (s, d, p, l) => {
      const ph = Buffer.alloc(12);
      ph.writeUInt32BE(s, 0);
      ph.writeUInt32BE(d, 4);
      ph[9] = p;
      ph.writeUInt16BE(l, 10);
      return fold(pseudoSum4(s, d, p, l)) === fold(sum16(ph, 0, 12));
    }),
  );
  t.pass();
});
