import test from 'ava';
import { createBatch, HEADROOM } from '../dataplane/device.js';

test('createBatch lays slots out with headroom', (t) => {
  const b = createBatch(4, 1500);
  t.is(b.slotSize % 64, 0);
  t.true(b.slotSize >= 1500 + HEADROOM);
  t.is(b.offsets[2], 2 * b.slotSize + HEADROOM);
  t.is(b.data.length, 4 * b.slotSize);
});
