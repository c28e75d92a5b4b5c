/**
 * Queue workers against the real kernel (dataplane/native/workers.c,
 * dataplane/workers.ts), without the router: a TUN with two queues in a
 * namespace of its own, two worker threads, and a JS onBatch that reflects
 * every UDP datagram to its sender (addresses and ports swapped: both
 * checksums stay valid, the one's-complement sums being commutative). 32
 * flows from distinct source ports must all be answered, spread over both
 * workers, and the device's counters must say what moved.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { HEADROOM } from '../dataplane/device.js';
import { loadTunAddon, openTun, type TunDevice } from '../dataplane/tun.js';
import { QueueWorkers, type WorkerRegion } from '../dataplane/workers.js';
import { ip, namespaceWith } from './helpers/device-ns.js';

const BATCH = 16;
const SLOT = 2048;

/** 32 sockets, one datagram each to 10.77.0.2:9; prints how many got their own bytes back within 3 s. */
const SENDER = `
import socket, select, time
socks = []
for i in range(32):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('10.77.0.1', 42000 + i))
    s.sendto(b'flow %d' % i, ('10.77.0.2', 9))
    socks.append(s)
ok = 0
end = time.time() + 3
pending = {s: b'flow %d' % i for i, s in enumerate(socks)}
while pending and time.time() < end:
    r, _, _ = select.select(list(pending), [], [], 0.2)
    for s in r:
        data, src = s.recvfrom(2048)
        if data == pending[s] and src == ('10.77.0.2', 9):
            ok += 1
            del pending[s]
print(ok)
`;

/** A TUN with `queues` queues in a namespace of its own (10.77.0.1/24), removed at teardown. */
function tunInNamespace(t: { teardown(fn: () => void): void }, queues: number): { dev: TunDevice; ns: string } {
  const dev = openTun(`xw${randomBytes(4).toString('hex')}`, { kind: 'tun', queues });
  const ns = namespaceWith(t, dev, { prefix: 'xn-wk-' });
  ip('-n', ns, 'addr', 'add', '10.77.0.1/24', 'dev', dev.name);
  ip('-n', ns, 'link', 'set', dev.name, 'up');
  return { dev, ns };
}

function regions(workers: number): { data: Buffer; regions: WorkerRegion[] } {
  const size = BATCH * SLOT;
  const data = Buffer.alloc(size * workers);
  const list: WorkerRegion[] = [];
  for (let k = 0; k < workers; k++) {
    list.push({ base: k * size, capacity: BATCH, slotSize: SLOT, offsets: new Uint32Array(BATCH), lengths: new Uint32Array(BATCH), gso: new Uint32Array(BATCH) });
  }
  return { data, regions: list };
}

/** Swaps the IPv4 addresses and UDP ports of the datagram at off, in place. */
function reflect(b: Buffer, off: number): boolean {
  if (b[off] >> 4 !== 4 || b[off + 9] !== 17) return false;
  const ihl = (b[off] & 15) * 4;
  const src = b.readUInt32BE(off + 12);
  b.writeUInt32BE(b.readUInt32BE(off + 16), off + 12);
  b.writeUInt32BE(src, off + 16);
  const sport = b.readUInt16BE(off + ihl);
  b.writeUInt16BE(b.readUInt16BE(off + ihl + 2), off + ihl);
  b.writeUInt16BE(sport, off + ihl + 2);
  return true;
}

test.serial('two queue workers: 32 UDP flows reflected by JS, spread over both, counted on the device', async (t) => {
  t.timeout(60_000);
  const { dev, ns } = tunInNamespace(t, 2);
  t.is(dev.queueFds.length, 2, 'two queues opened');
  const { data, regions: rs } = regions(2);
  const out = { offsets: new Uint32Array(BATCH), lengths: new Uint32Array(BATCH) };
  let reflected = 0;
  const workers: QueueWorkers = new QueueWorkers([dev], rs, data, (k) => {
    const r = rs[k];
    const first = workers.first(k, 0);
    let n = 0;
    for (let i = first; i < first + workers.count(k, 0); i++) {
      if (!reflect(data, r.offsets[i])) continue;
      out.offsets[n] = r.offsets[i];
      out.lengths[n++] = r.lengths[i];
    }
    // through the device, as the router writes: the worker holding the batch takes them
    if (n) reflected += dev.write(data, out.offsets, out.lengths, n);
  });
  workers.start();
  t.teardown(() => workers.stop());
  // asynchronously: the batches are processed on this thread's event loop, which a sync exec would block
  const answered = (await promisify(execFile)('ip', ['netns', 'exec', ns, '/usr/bin/python3', '-c', SENDER], { encoding: 'utf8', timeout: 15_000 })).stdout.trim();
  workers.stop();
  t.is(answered, '32', 'every flow got its datagram back');
  t.true(reflected >= 32, `JS reflected ${reflected}`);
  t.true(workers.batches[0] > 0 && workers.batches[1] > 0, `both workers handed batches over (${workers.batches.join(' / ')})`);
  t.true(dev.stats.rxPackets >= 32, `rx ${dev.stats.rxPackets}`);
  t.true(dev.stats.txPackets >= 32, `tx ${dev.stats.txPackets} (folded from the workers)`);
  t.is(dev.stats.txDropped, 0);
});

test.serial('outside a batch the device writes itself; the native calls refuse a worker not handing one over', (t) => {
  const { dev } = tunInNamespace(t, 2);
  const { data, regions: rs } = regions(2);
  const workers = new QueueWorkers([dev], rs, data, () => undefined);
  workers.start();
  t.teardown(() => workers.stop());
  // a datagram to nobody: the kernel takes it (and drops it) - what matters is who wrote it
  const pkt = Buffer.from('4500001c000040004011000a0a4d00020a4d000100090009000800000000', 'hex');
  pkt.copy(data, HEADROOM);
  const tx0 = dev.stats.txPackets;
  t.is(dev.write(data, Uint32Array.of(HEADROOM), Uint32Array.of(28), 1), 1, 'written by the device itself');
  t.is(dev.stats.txPackets, tx0 + 1);
  const native = loadTunAddon();
  const handle = (workers as unknown as { handle: object }).handle;
  t.throws(() => native.workersFlush(handle, 5), { message: /workersFlush: worker out of range/ });
  workers.stop();
  workers.stop(); // idempotent
  t.is(dev.deferWrites, null, 'stop hands writing back to the device');
  // (checked once stopped: while running, a worker may be holding a batch of its own at any moment)
  t.throws(() => native.workersWrite(handle, 0, 0, Uint32Array.of(HEADROOM), Uint32Array.of(28), 1), { message: /workersWrite: the worker is not handing a batch to JS/ });
  t.throws(() => native.workersFlush(handle, 0), { message: /workersFlush: the worker is not handing a batch to JS/ });
});

test('workersStart refuses a configuration that does not fit, naming what', (t) => {
  const native = loadTunAddon();
  const base = { data: Buffer.alloc(1024), headroom: HEADROOM, devices: [{ fds: [0], vnet: true, mode: 1, uring: false }], counts: new Int32Array(2), readInfo: new Float64Array(5), txStats: new Float64Array(8), onBatch: () => undefined };
  const region = { base: 0, capacity: 4, slotSize: 2048, offsets: new Uint32Array(4), lengths: new Uint32Array(4), gso: new Uint32Array(4) };
  t.throws(() => native.workersStart({ ...base, regions: [region] }), { message: /a region lies outside data/ });
  t.throws(() => native.workersStart({ ...base, regions: [] }), { message: /regions must be an array of 1 to 64/ });
  t.throws(() => native.workersStart({ ...base, devices: [{ fds: [0, 1], vnet: true, mode: 1, uring: false }], regions: [{ ...region, slotSize: 128 }] }), { message: /one fd per worker/ });
  t.throws(() => native.workersStart({ ...base, regions: [{ ...region, slotSize: 128 }], txStats: new Float64Array(1) }), { message: /readInfo\/txStats\/counts too short/ });
});

test('openTun queues: N fds, all closed with the device', (t) => {
  const fds = () => readdirSync('/proc/self/fd').length;
  const before = fds();
  const dev = openTun(`xw${randomBytes(4).toString('hex')}`, { kind: 'tun', queues: 3 });
  t.is(dev.queueFds.length, 3);
  t.is(new Set(dev.queueFds).size, 3);
  t.is(fds(), before + 3);
  dev.close();
  t.is(fds(), before);
  t.throws(() => openTun('xwbad', { kind: 'tun', queues: 0 }), { message: /queues must be an integer from 1 to 64/ });
});
