import test from 'ava';
import { createBatch, HEADROOM } from '../dataplane/device.js';
import { MemDevice, createMemDevicePair } from '../dataplane/memdev.js';

// 20-byte IPv4 header + 8-byte UDP header + "hi": 10.0.0.1:1000 -> 10.0.0.2:2000
const ipv4Udp = Buffer.from('4500001e000100004011669d0a0000010a00000203e807d0000a0000' + '6869', 'hex');
const ipv6Min = Buffer.concat([Buffer.from('60000000000011ff', 'hex'), Buffer.alloc(32)]);
const ethFrame = Buffer.from('ffffffffffff02000000000108060001', 'hex');

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

test('read places packet i at slot start + HEADROOM and counts per batch', (t) => {
  const dev = new MemDevice('m0');
  const batch = createBatch(4, 1500);
  const packets = [ipv4Udp, ipv6Min, ipv4Udp.subarray(0, 20)];
  for (const p of packets) t.true(dev.inject(p));
  t.is(dev.read(batch), 3);
  t.is(batch.count, 3);
  packets.forEach((p, i) => {
    t.is(batch.offsets[i], i * batch.slotSize + HEADROOM);
    t.is(batch.lengths[i], p.length);
    t.deepEqual(batch.data.subarray(batch.offsets[i]!, batch.offsets[i]! + batch.lengths[i]!), p);
  });
  t.is(dev.stats.rxPackets, 3);
  t.is(dev.stats.rxBytes, packets.reduce((s, p) => s + p.length, 0));
  t.is(dev.read(batch), 0);
  t.is(batch.count, 0);
});

test('read stops at capacity and the rest waits for the next read', (t) => {
  const dev = new MemDevice('m0');
  const batch = createBatch(2, 1500);
  for (let i = 0; i < 5; i++) {
    const p = Buffer.from(ipv4Udp);
    p[27] = i; // tag in the payload
    dev.inject(p);
  }
  const seen: number[] = [];
  let n: number;
  while ((n = dev.read(batch)) > 0) {
    t.true(n <= 2);
    for (let i = 0; i < n; i++) seen.push(batch.data[batch.offsets[i]! + 27]!);
  }
  t.deepEqual(seen, [0, 1, 2, 3, 4]);
  t.is(dev.pending, 0);
});

test('a packet larger than the slot is consumed and counted as an rx error', (t) => {
  const dev = new MemDevice('m0');
  const batch = createBatch(4, 64); // slot room = slotSize - HEADROOM = 64
  dev.inject(Buffer.alloc(200, 0x45));
  dev.inject(ipv4Udp);
  t.is(dev.read(batch), 1);
  t.deepEqual(batch.data.subarray(batch.offsets[0]!, batch.offsets[0]! + batch.lengths[0]!), ipv4Udp);
  t.is(dev.stats.rxErrors, 1);
});

test('inject refuses beyond the receive queue limit', (t) => {
  const dev = new MemDevice('m0', { rxQueueLimit: 2 });
  t.true(dev.inject(ipv4Udp));
  t.true(dev.inject(ipv4Udp));
  t.false(dev.inject(ipv4Udp));
  t.is(dev.rxOverruns, 1);
});

const writeCases: Array<{ title: string; kind: 'tun' | 'tap'; packets: Buffer[]; accepted: number[] }> = [
  { title: 'tun accepts IPv4 and IPv6', kind: 'tun', packets: [ipv4Udp, ipv6Min], accepted: [0, 1] },
  {
    title: 'tun refuses a packet that is neither IPv4 nor IPv6 (kernel: EINVAL), the rest still go',
    kind: 'tun',
    packets: [ethFrame, ipv4Udp, Buffer.alloc(0)],
    accepted: [1],
  },
  {
    title: 'tap refuses a frame shorter than an Ethernet header',
    kind: 'tap',
    packets: [ethFrame, ethFrame.subarray(0, 13)],
    accepted: [0],
  },
];

for (const c of writeCases) {
  test(`write: ${c.title}`, (t) => {
    const dev = new MemDevice('m0', { kind: c.kind });
    const batch = createBatch(8, 1500);
    c.packets.forEach((p, i) => {
      batch.data.set(p, batch.offsets[i]!);
      batch.lengths[i] = p.length;
    });
    const n = dev.write(batch.data, batch.offsets, batch.lengths, c.packets.length);
    t.is(n, c.accepted.length);
    t.deepEqual(
      dev.sent,
      c.accepted.map((i) => c.packets[i]),
    );
    t.is(dev.stats.txPackets, c.accepted.length);
    t.is(
      dev.stats.txBytes,
      c.accepted.reduce((s, i) => s + c.packets[i]!.length, 0),
    );
    t.is(dev.stats.txDropped, c.packets.length - c.accepted.length);
  });
}

test('write on a full transmit queue drops the rest of the batch (EAGAIN)', (t) => {
  const dev = new MemDevice('m0', { txQueueLimit: 3 });
  const batch = createBatch(5, 1500);
  for (let i = 0; i < 5; i++) {
    batch.data.set(ipv4Udp, batch.offsets[i]!);
    batch.lengths[i] = ipv4Udp.length;
  }
  t.is(dev.write(batch.data, batch.offsets, batch.lengths, 5), 3);
  t.is(dev.stats.txDropped, 2);
  t.is(dev.takeSent().length, 3);
  t.is(dev.write(batch.data, batch.offsets, batch.lengths, 2), 2);
});

test('write honours moved offsets (header stripped in place)', (t) => {
  const dev = new MemDevice('m0', { kind: 'tun' });
  const batch = createBatch(1, 1500);
  const frame = Buffer.concat([Buffer.from('0200000000020200000000010800', 'hex'), ipv4Udp]);
  batch.data.set(frame, batch.offsets[0]!);
  batch.offsets[0]! += 14;
  batch.lengths[0] = frame.length - 14;
  t.is(dev.write(batch.data, batch.offsets, batch.lengths, 1), 1);
  t.deepEqual(dev.sent[0], ipv4Udp);
});

test('write rejects a packet outside the buffer before writing anything', (t) => {
  const dev = new MemDevice('m0');
  const batch = createBatch(2, 1500);
  batch.data.set(ipv4Udp, batch.offsets[0]!);
  batch.lengths[0] = ipv4Udp.length;
  batch.offsets[1] = batch.data.length - 4;
  batch.lengths[1] = 20;
  t.throws(() => dev.write(batch.data, batch.offsets, batch.lengths, 2), { instanceOf: RangeError, message: /packet 1/ });
  t.is(dev.sent.length, 0);
  t.is(dev.stats.txPackets, 0);
});

test('onReadable fires asynchronously, and again while packets remain', async (t) => {
  const dev = new MemDevice('m0');
  const batch = createBatch(1, 1500);
  const got: number[] = [];
  let calls = 0;
  dev.onReadable(() => {
    calls++;
    // read only one per wake-up to check the level-triggered re-fire
    dev.read(batch);
    got.push(batch.count);
  });
  dev.inject(ipv4Udp);
  dev.inject(ipv4Udp);
  t.is(calls, 0, 'not synchronous with inject');
  for (let i = 0; i < 5 && calls < 2; i++) await nextTurn();
  t.is(calls, 2);
  t.deepEqual(got, [1, 1]);
  await nextTurn();
  t.is(calls, 2, 'no wake-up with an empty queue');
});

test('onReadable registered after packets arrived still fires', async (t) => {
  const dev = new MemDevice('m0');
  dev.inject(ipv4Udp);
  let fired = false;
  dev.onReadable(() => {
    fired = true;
    dev.read(createBatch(4, 1500));
  });
  await nextTurn();
  t.true(fired);
});

test('a pair delivers writes to the peer and wakes it', async (t) => {
  const [a, b] = createMemDevicePair(['a0', 'b0']);
  const batch = createBatch(4, 1500);
  batch.data.set(ipv4Udp, batch.offsets[0]!);
  batch.lengths[0] = ipv4Udp.length;
  const received = new Promise<Buffer>((resolve) => {
    const rx = createBatch(4, 1500);
    b.onReadable(() => {
      b.read(rx);
      resolve(Buffer.from(rx.data.subarray(rx.offsets[0]!, rx.offsets[0]! + rx.lengths[0]!)));
    });
  });
  t.is(a.write(batch.data, batch.offsets, batch.lengths, 1), 1);
  t.deepEqual(await received, ipv4Udp);
  t.is(a.sent.length, 0);
  t.is(b.stats.rxPackets, 1);
});

test('close is idempotent; a closed device reads nothing and drops writes', async (t) => {
  const dev = new MemDevice('m0');
  let fired = false;
  dev.onReadable(() => (fired = true));
  dev.inject(ipv4Udp);
  dev.close();
  dev.close();
  await nextTurn();
  t.false(fired);
  const batch = createBatch(1, 1500);
  t.is(dev.read(batch), 0);
  batch.data.set(ipv4Udp, batch.offsets[0]!);
  batch.lengths[0] = ipv4Udp.length;
  t.is(dev.write(batch.data, batch.offsets, batch.lengths, 1), 0);
  t.is(dev.stats.txDropped, 1);
  t.false(dev.inject(ipv4Udp));
  t.throws(() => dev.onReadable(() => {}), { message: /after close/ });
});
