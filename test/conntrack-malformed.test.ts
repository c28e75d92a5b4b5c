/**
 * Malformed and random packets through conntrack, LOG formatting and the
 * matches: nothing throws, and conntrack never tracks what it cannot read.
 */
import test from 'ava';
import fc from 'fast-check';
import { CtState, PacketContext, Verdict } from '../xt/packet.js';
import { parsePacket } from '../dataplane/parse.js';
import { Conntrack } from '../router/conntrack.js';
import { formatLogLine } from '../modules/LOG.js';
import tcp from '../modules/tcp.js';
import { ip4, ip6, icmpMsg, tcpSeg, udpDgram, words } from './modules-fixtures.js';

const tcpOpt = tcp.check(tcp.parse(words(tcp, '--tcp-option 8'), { family: 4, table: 'filter', chain: 'INPUT', proto: 6, protoInverted: false }), {} as never);

function run(ct: Conntrack, buf: Buffer, now: number): void {
  const p = new PacketContext();
  if (parsePacket(p, buf, 0, buf.length) !== 0) return;
  p.now = now;
  if (ct.in(p) === Verdict.ACCEPT) ct.confirm(p);
  formatLogLine(p, 'x ', 0x27);
  tcpOpt.match(p);
}

test('random bytes and mutated real packets never throw', (t) => {
  const ct = new Conntrack({ max: 64 });
  const seeds = [
    ip4('10.0.0.1', '10.0.0.2', tcpSeg(1, 2, 0x02, { options: [2, 4, 5, 0xb4, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0] })),
    ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2, [1, 2, 3])),
    ip4('10.0.0.9', '10.0.0.1', icmpMsg(3, 3, [0, 0, 0, 0], Array.from(ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2))))),
    ip6('2001:db8::1', '2001:db8::2', icmpMsg(1, 4, [0, 0, 0, 0], Array.from(ip6('2001:db8::2', '2001:db8::1', udpDgram(5, 6))), true)),
  ];
  fc.assert(
    fc.property(fc.nat(seeds.length - 1), fc.array(fc.tuple(fc.nat(200), fc.nat(255)), { maxLength: 8 }), fc.nat(100000), (i, flips, now) => {
      const b = Buffer.from(seeds[i]);
      for (const [at, v] of flips) if (at < b.length) b[at] = v;
      run(ct, b, now);
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 120 }), (bytes) => {
      const b = Buffer.from(bytes);
      b[0] = (b[0] & 0x0f) | (bytes.length % 2 ? 0x40 : 0x60);
      run(ct, b, 1);
    }),
    { numRuns: 3000 },
  );
  t.true(ct.count(200000) <= 64);
});

test('an ICMP error quoting a truncated or bogus header is INVALID, not RELATED', (t) => {
  const ct = new Conntrack();
  const inner = Array.from(ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2)));
  for (const quoted of [inner.slice(0, 10), [0x41, ...inner.slice(1)], [0x60, ...inner.slice(1)]]) {
    const p = new PacketContext();
    const b = ip4('10.0.0.9', '10.0.0.1', icmpMsg(3, 3, [0, 0, 0, 0], quoted));
    t.is(parsePacket(p, b, 0, b.length), 0);
    ct.in(p);
    t.is(p.ctState, CtState.INVALID);
  }
});
