/**
 * The bisection lookups against a linear scan, on random sorted,
 * non-overlapping tables (including empty ones, single-address ranges,
 * ranges touching 0 and the top of the space), probing every range edge and
 * its neighbours plus random addresses. Also the loader's validation.
 */
import test from 'ava';
import fc from 'fast-check';
import { contains4, contains6, decodeTable } from '../geoip-db/loader.js';
import { RangePool4, RangePool6 } from '../geoip-db/ranges.js';
import { v6Words } from '../geoip-db/addr.js';

const u32 = fc.nat({ max: 0xffffffff });
const u128 = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n });

test('contains4 == linear scan', (t) => {
  fc.assert(
    fc.property(fc.array(fc.tuple(u32, u32), { maxLength: 40 }), fc.array(u32, { maxLength: 20 }), fc.boolean(), (pairs, probes, edges) => {
      const pool = new RangePool4();
      for (const [a, b] of pairs) pool.add(Math.min(a, b), edges ? Math.min(Math.min(a, b) + (b % 3), 0xffffffff) : Math.max(a, b));
      const merged = pool.merged();
      const table = decodeTable(pool.encode(), 4, 't');
      const all = [...probes, 0, 0xffffffff];
      for (const x of merged) all.push(x, Math.max(0, x - 1), Math.min(0xffffffff, x + 1));
      return all.every((a) => {
        let linear = false;
        for (let i = 0; i < merged.length; i += 2) if (a >= merged[i]! && a <= merged[i + 1]!) linear = true;
        return contains4(table, a) === linear;
      });
    }),
    { numRuns: 3000 },
  );
  t.pass();
});

test('contains6 == linear scan (ranges sharing high words too)', (t) => {
  const near = fc.tuple(fc.constantFrom(0n, 0x20010db8n << 96n, (1n << 128n) - (1n << 40n)), fc.bigInt({ min: 0n, max: (1n << 40n) - 1n })).map(([base, off]) => base + off);
  const addr = fc.oneof(u128, near);
  fc.assert(
    fc.property(fc.array(fc.tuple(addr, addr), { maxLength: 30 }), fc.array(addr, { maxLength: 20 }), (pairs, probes) => {
      const pool = new RangePool6();
      for (const [a, b] of pairs) pool.add(a < b ? a : b, a < b ? b : a);
      const merged = pool.merged();
      const table = decodeTable(pool.encode(), 6, 't');
      const MAX = (1n << 128n) - 1n;
      const all = [...probes, 0n, MAX];
      for (const [s, e] of merged) all.push(s, e, s === 0n ? s : s - 1n, e === MAX ? e : e + 1n);
      const w = new Uint32Array(4);
      return all.every((a) => contains6(table, v6Words(a, w)) === merged.some(([s, e]) => a >= s && a <= e));
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test('loader refuses unsorted, overlapping and reversed tables (bisection would miss silently)', (t) => {
  const be = (...words: number[]) => {
    const b = Buffer.alloc(words.length * 4);
    words.forEach((w, i) => b.writeUInt32BE(w, i * 4));
    return b;
  };
  t.throws(() => decodeTable(be(10, 20, 5, 6), 4, 'X.iv4'), { message: 'Database file X.iv4: record 1 overlaps or precedes record 0 (not sorted)' });
  t.throws(() => decodeTable(be(10, 20, 20, 30), 4, 'X.iv4'), { message: 'Database file X.iv4: record 1 overlaps or precedes record 0 (not sorted)' });
  t.throws(() => decodeTable(be(10, 9), 4, 'X.iv4'), { message: 'Database file X.iv4: record 0 has begin > end' });
  t.throws(() => decodeTable(Buffer.alloc(40), 6, 'X.iv6'), { message: /X\.iv6 seems to be corrupted \(size 40 is not a multiple of 32\)/ });
  t.deepEqual([...decodeTable(be(10, 20, 21, 30), 4, 'X.iv4')], [10, 20, 21, 30], 'adjacent ranges are fine');
});
