/**
 * The native TUN/TAP device against the real kernel: each test opens its
 * device in this (root) namespace, moves it into a namespace of its own with
 * `ip link set DEV netns NS` (the router does the same, and the fd must keep
 * working), and exchanges packets with kernel tools running there.
 */
import test from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createBatch, type PacketBatch } from '../dataplane/device.js';
import { loadTunAddon, openTun, setLinkUp, setMtu, type TunDevice } from '../dataplane/tun.js';
import { ip, namespaceWith, nsExec } from './helpers/device-ns.js';

const PYTHON = '/usr/bin/python3';

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

function suffix(): string {
  return randomBytes(4).toString('hex');
}

function openDevice(t: { teardown(fn: () => void): void }, kind: 'tun' | 'tap', uring = false): TunDevice {
  const dev = openTun(`xt${kind[1]}${suffix()}`, { kind, offloads: uring ? { uring: true } : undefined });
  t.teardown(() => dev.close());
  return dev;
}

/** The read/write tests run twice: one syscall per packet, and batched through io_uring (dataplane/native/uring.h). */
const IO_PATHS: [string, boolean][] = [
  ['', false],
  [' (io_uring)', true],
];

/**
 * Polls `cond` every 20 ms. The bound is counted in polls rather than wall time:
 * the synchronous set-up of concurrent tests (execFileSync of `ip`) can hold the
 * event loop for seconds, and a wall-clock deadline would then expire before
 * the wake-up being waited for ever had a chance to run.
 */
async function waitFor(what: string, cond: () => boolean, polls = 500): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i >= polls) throw new Error(`gave up waiting for ${what} after ${polls} polls`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function packetAt(batch: PacketBatch, i: number): Buffer {
  return batch.data.subarray(batch.offsets[i]!, batch.offsets[i]! + batch.lengths[i]!);
}

/** RFC 1071 one's-complement sum, folded. */
function onesSum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length % 2) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function ipv4Bytes(addr: string): number[] {
  return addr.split('.').map(Number);
}

/** Builds an IPv4/UDP packet by hand, with both checksums computed here. */
function buildIpv4Udp(src: string, dst: string, sport: number, dport: number, payload: Buffer): Buffer {
  const udpLen = 8 + payload.length;
  const pkt = Buffer.alloc(20 + udpLen);
  pkt[0] = 0x45;
  pkt.writeUInt16BE(pkt.length, 2);
  pkt.writeUInt16BE(0x1234, 4); // identification
  pkt.writeUInt16BE(0x4000, 6); // DF
  pkt[8] = 64;
  pkt[9] = 17;
  pkt.set(ipv4Bytes(src), 12);
  pkt.set(ipv4Bytes(dst), 16);
  pkt.writeUInt16BE(~onesSum(pkt.subarray(0, 20)) & 0xffff, 10);
  pkt.writeUInt16BE(sport, 20);
  pkt.writeUInt16BE(dport, 22);
  pkt.writeUInt16BE(udpLen, 24);
  payload.copy(pkt, 28);
  const pseudo = Buffer.alloc(12);
  pseudo.set(ipv4Bytes(src), 0);
  pseudo.set(ipv4Bytes(dst), 4);
  pseudo[9] = 17;
  pseudo.writeUInt16BE(udpLen, 10);
  const csum = ~onesSum(pkt.subarray(20), onesSum(pseudo)) & 0xffff;
  pkt.writeUInt16BE(csum === 0 ? 0xffff : csum, 26);
  return pkt;
}

test('checksum helper matches a known IPv4 header (RFC 1071 example header)', (t) => {
  // header from a capture: 45 00 00 73 00 00 40 00 40 11 [b8 61] c0 a8 00 01 c0 a8 00 c7
  const hdr = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
  t.is(~onesSum(hdr) & 0xffff, 0xb861);
});

/** Sends `count` UDP datagrams from inside `ns` and returns once they are sent. */
function udpSendFrom(ns: string, dst: string, port: number, payloads: string[]): void {
  const script = [
    'import socket, sys',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    'for p in sys.argv[3:]:',
    '    s.sendto(p.encode(), (sys.argv[1], int(sys.argv[2])))',
  ].join('\n');
  nsExec(ns, PYTHON, ['-c', script, dst, String(port), ...payloads]);
}

function isUdpTo(pkt: Buffer, port: number): boolean {
  return pkt.length >= 28 && pkt[0]! >> 4 === 4 && pkt[9] === 17 && pkt.readUInt16BE(22) === port;
}

for (const [path, uring] of IO_PATHS) {
  test(`tun: packets sent in the namespace are read in one batch after the device moved there${path}`, (t) => {
    const dev = openDevice(t, 'tun', uring);
    const ns = namespaceWith(t, dev);
    nsExec(ns, 'ip', ['addr', 'add', '10.201.0.1/24', 'dev', dev.name]);
    nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);

    const payloads = Array.from({ length: 20 }, (_, i) => `xtr-batch-${i}`);
    udpSendFrom(ns, '10.201.0.2', 9999, payloads);

    t.is(dev.offloads.uring, uring, 'the io path asked for is in force');
    const batch = createBatch(64, 2048);
    const n = dev.read(batch);
    t.is(n, payloads.length, 'every queued datagram comes out of a single read');
    t.is(batch.count, n);
    for (let i = 0; i < n; i++) {
      const pkt = packetAt(batch, i);
      t.is(batch.offsets[i], i * batch.slotSize + 64);
      t.true(isUdpTo(pkt, 9999), `packet ${i} is UDP to port 9999`);
      t.deepEqual([...pkt.subarray(12, 20)], [10, 201, 0, 1, 10, 201, 0, 2]);
      t.is(pkt.readUInt16BE(2), pkt.length, 'IPv4 total length matches what read returned');
      t.is(pkt.subarray(28).toString(), payloads[i]);
    }
    t.is(dev.stats.rxPackets, n);
    t.is(dev.stats.rxBytes, payloads.reduce((s, p) => s + 28 + p.length, 0));
    t.is(dev.read(batch), 0, 'nothing left: a drained device reads 0 without blocking');
  });

  test(`tun: a read batch stops at capacity and the next read continues${path}`, (t) => {
    const dev = openDevice(t, 'tun', uring);
    const ns = namespaceWith(t, dev);
    nsExec(ns, 'ip', ['addr', 'add', '10.202.0.1/24', 'dev', dev.name]);
    nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);
    udpSendFrom(
      ns,
      '10.202.0.2',
      9999,
      Array.from({ length: 10 }, (_, i) => `p${i}`),
    );
    const batch = createBatch(4, 2048);
    const sizes = [dev.read(batch), dev.read(batch), dev.read(batch), dev.read(batch)];
    t.deepEqual(sizes, [4, 4, 2, 0]);
  });

  test(`tun: a packet longer than its slot is dropped and counted, not returned truncated${path}`, (t) => {
    const dev = openDevice(t, 'tun', uring);
    const ns = namespaceWith(t, dev);
    nsExec(ns, 'ip', ['addr', 'add', '10.212.0.1/24', 'dev', dev.name]);
    nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);
    const batch = createBatch(4, 64); // room for 64 bytes per packet after the headroom
    const room = batch.slotSize - 64;
    // 28 + 36 = 64 bytes fits exactly; 28 + 37 is one byte too long; 28 + 200 far too long
    udpSendFrom(ns, '10.212.0.2', 9999, ['a'.repeat(room - 28), 'b'.repeat(room - 27), 'c'.repeat(200), 'd']);
    t.is(dev.read(batch), 2);
    t.deepEqual([...batch.lengths.subarray(0, 2)], [room, 29]);
    t.is(packetAt(batch, 0).subarray(28).toString(), 'a'.repeat(room - 28));
    t.is(packetAt(batch, 1).subarray(28).toString(), 'd');
    t.is(dev.stats.rxErrors, 2);
    t.is(dev.stats.rxPackets, 2);
  });
}

test('addon: batch geometry that does not fit the buffers is refused before any I/O', (t) => {
  const native = loadTunAddon();
  const dev = openDevice(t, 'tun');
  const batch = createBatch(4, 1500);
  t.throws(() => native.readBatch(dev.fd, batch.data, batch.offsets, batch.lengths, 5, batch.slotSize, 64), {
    instanceOf: RangeError,
  });
  t.throws(() => native.readBatch(dev.fd, batch.data, batch.offsets, batch.lengths, 4, 64, 64), { instanceOf: RangeError });
  t.throws(() => native.readBatch(dev.fd, batch.data, new Float64Array(4) as never, batch.lengths, 4, batch.slotSize, 64), {
    instanceOf: TypeError,
    message: /offsets must be a Uint32Array/,
  });
  batch.offsets[2] = batch.data.length - 10;
  batch.lengths.fill(20);
  t.throws(() => dev.write(batch.data, batch.offsets, batch.lengths, 3), { instanceOf: RangeError, message: /packet 2/ });
  t.is(dev.stats.txPackets + dev.stats.txDropped, 0, 'nothing was written or counted');
  t.throws(() => native.pollStart({}, () => {}), { instanceOf: TypeError, message: /device handle/ });
});

test('tun: onReadable wakes the reader when traffic arrives', async (t) => {
  const dev = openDevice(t, 'tun');
  const ns = namespaceWith(t, dev);
  nsExec(ns, 'ip', ['addr', 'add', '10.203.0.1/24', 'dev', dev.name]);
  nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);
  const batch = createBatch(64, 2048);
  const seen: string[] = [];
  let wakeups = 0;
  dev.onReadable(() => {
    wakeups++;
    while (dev.read(batch) > 0) {
      for (let i = 0; i < batch.count; i++) {
        const pkt = packetAt(batch, i);
        if (isUdpTo(pkt, 7777)) seen.push(pkt.subarray(28).toString());
      }
      if (batch.count < batch.capacity) break;
    }
  });
  // spawned, not exec'd: the event loop must keep running to deliver wake-ups
  const child = spawn('ip', ['netns', 'exec', ns, PYTHON, '-c', 'import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(3):\n    s.sendto(b"wake%d" % i, ("10.203.0.9", 7777)); time.sleep(0.05)'], {
    stdio: 'ignore',
  });
  t.teardown(() => child.kill());
  await waitFor('three datagrams through onReadable', () => seen.length >= 3);
  t.deepEqual(seen, ['wake0', 'wake1', 'wake2']);
  t.true(wakeups >= 1);
});

test('tun: IPv6 datagrams come out as bare IPv6 packets', (t) => {
  const dev = openDevice(t, 'tun');
  const ns = namespaceWith(t, dev, { ipv6: true });
  nsExec(ns, 'ip', ['addr', 'add', 'fd00:208::1/64', 'dev', dev.name, 'nodad']);
  nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);
  const script = [
    'import socket',
    's = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)',
    'for i in range(3):',
    '    s.sendto(b"v6-%d" % i, ("fd00:208::2", 8888))',
  ].join('\n');
  nsExec(ns, PYTHON, ['-c', script]);
  const batch = createBatch(32, 2048);
  const got: string[] = [];
  // the kernel may add its own ICMPv6 (MLD, router solicitation): keep only ours
  while (dev.read(batch) > 0) {
    for (let i = 0; i < batch.count; i++) {
      const pkt = packetAt(batch, i);
      t.is(pkt[0]! >> 4, 6, 'every packet read from this TUN is IPv6');
      t.is(pkt.readUInt16BE(4) + 40, pkt.length, 'payload length matches what read returned');
      if (pkt[6] === 17 && pkt.readUInt16BE(42) === 8888) got.push(pkt.subarray(48).toString());
    }
  }
  t.deepEqual(got, ['v6-0', 'v6-1', 'v6-2']);
});

test('close() from inside a wake-up stops further wake-ups and does not crash', async (t) => {
  const dev = openDevice(t, 'tun');
  const ns = namespaceWith(t, dev);
  nsExec(ns, 'ip', ['addr', 'add', '10.209.0.1/24', 'dev', dev.name]);
  nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);
  let wakeups = 0;
  dev.onReadable(() => {
    wakeups++;
    dev.close(); // nothing read: a level-triggered watcher would fire again if still active
  });
  udpSendFrom(ns, '10.209.0.2', 9, ['a', 'b']);
  await waitFor('the first wake-up', () => wakeups > 0);
  await new Promise((r) => setTimeout(r, 100));
  t.is(wakeups, 1);
  t.true(dev.closed);
  t.is(dev.read(createBatch(1, 2048)), 0);
});

function startUdpListener(t: { teardown(fn: () => void): void }, ns: string, addr: string, port: number): { child: ChildProcess; output: () => string } {
  const child = spawn('ip', ['netns', 'exec', ns, 'socat', '-u', `UDP4-RECV:${port},bind=${addr}`, 'STDOUT'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString('latin1')));
  t.teardown(() => child.kill());
  return { child, output: () => out };
}

async function waitListening(ns: string, port: number): Promise<void> {
  await waitFor(`UDP listener on port ${port} in ${ns}`, () =>
    nsExec(ns, 'ss', ['-Hlun', `sport = :${port}`]).includes(`:${port}`),
  );
}

for (const [path, uring] of IO_PATHS) {
  test(`tun: a hand-built IPv4/UDP packet written to the device reaches a socat listener in the namespace${path}`, async (t) => {
    const dev = openDevice(t, 'tun', uring);
    const ns = namespaceWith(t, dev);
    nsExec(ns, 'ip', ['addr', 'add', '10.204.0.1/24', 'dev', dev.name]);
    nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);
    const listener = startUdpListener(t, ns, '10.204.0.1', 5555);
    await waitListening(ns, 5555);

    const batch = createBatch(8, 2048);
    const payloads = ['hello-from-xtr;', 'second-datagram;'];
    payloads.forEach((p, i) => {
      const pkt = buildIpv4Udp('10.204.0.2', '10.204.0.1', 40000 + i, 5555, Buffer.from(p));
      batch.data.set(pkt, batch.offsets[i]!);
      batch.lengths[i] = pkt.length;
    });
    t.is(dev.write(batch.data, batch.offsets, batch.lengths, payloads.length), payloads.length);
    await waitFor('socat to print both payloads', () => listener.output() === payloads.join(''));
    t.is(listener.output(), payloads.join(''));
    t.is(dev.stats.txPackets, 2);
    t.is(dev.stats.txBytes, payloads.reduce((s, p) => s + 28 + p.length, 0));
    t.is(dev.stats.txDropped, 0);
  });

  test(`tun: a packet with a wrong UDP checksum is written but the kernel drops it${path}`, async (t) => {
    // proves the previous test's delivery depends on the checksums being right
    const dev = openDevice(t, 'tun', uring);
    const ns = namespaceWith(t, dev);
    nsExec(ns, 'ip', ['addr', 'add', '10.205.0.1/24', 'dev', dev.name]);
    nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);
    const listener = startUdpListener(t, ns, '10.205.0.1', 5556);
    await waitListening(ns, 5556);
    const batch = createBatch(2, 2048);
    const bad = buildIpv4Udp('10.205.0.2', '10.205.0.1', 40000, 5556, Buffer.from('corrupt;'));
    bad[27] ^= 0x55;
    const good = buildIpv4Udp('10.205.0.2', '10.205.0.1', 40001, 5556, Buffer.from('good;'));
    batch.data.set(bad, batch.offsets[0]!);
    batch.lengths[0] = bad.length;
    batch.data.set(good, batch.offsets[1]!);
    batch.lengths[1] = good.length;
    t.is(dev.write(batch.data, batch.offsets, batch.lengths, 2), 2);
    await waitFor('the good datagram', () => listener.output().includes('good;'));
    t.is(listener.output(), 'good;');
  });

  test(`tun: a write that is not IP is refused by the kernel and counted as dropped; the rest of the batch goes${path}`, (t) => {
    const dev = openDevice(t, 'tun', uring);
    const ns = namespaceWith(t, dev);
    nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);
    const batch = createBatch(2, 2048);
    batch.data.fill(0x00, batch.offsets[0]!, batch.offsets[0]! + 40); // version nibble 0
    batch.lengths[0] = 40;
    const good = buildIpv4Udp('10.206.0.2', '10.206.0.1', 1, 2, Buffer.from('x'));
    batch.data.set(good, batch.offsets[1]!);
    batch.lengths[1] = good.length;
    t.is(dev.write(batch.data, batch.offsets, batch.lengths, 2), 1);
    t.is(dev.stats.txDropped, 1);
    t.is(dev.lastError?.code, 'EINVAL');
  });
}

test('tun (io_uring): a batch larger than one ring submission (256) is written in order, in chunks', async (t) => {
  const dev = openDevice(t, 'tun', true);
  t.true(dev.offloads.uring);
  const ns = namespaceWith(t, dev);
  nsExec(ns, 'ip', ['addr', 'add', '10.207.0.1/24', 'dev', dev.name]);
  nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);
  // a receiver with a 4 MiB buffer (SO_RCVBUFFORCE; socat's is capped at rmem_max, which 270 datagrams overflow)
  const script = [
    'import socket, sys',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    's.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)',
    "s.bind(('10.207.0.1', 5557))",
    's.settimeout(10)',
    'got = []',
    'try:',
    '    while len(got) < int(sys.argv[1]):',
    "        got.append(s.recv(2048).decode())",
    'except socket.timeout:',
    '    pass',
    "sys.stdout.write(''.join(got))",
  ].join('\n');
  const count = 270;
  const child = spawn('ip', ['netns', 'exec', ns, PYTHON, '-c', script, String(count)], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => child.kill());
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString('latin1')));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString('latin1')));
  // 'close', not 'exit': 'exit' may come before the last of stdout has been read
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  await waitListening(ns, 5557);
  const batch = createBatch(count, 256);
  const payloads = Array.from({ length: count }, (_, i) => `d${i};`);
  payloads.forEach((p, i) => {
    const pkt = buildIpv4Udp('10.207.0.2', '10.207.0.1', 40000, 5557, Buffer.from(p));
    batch.data.set(pkt, batch.offsets[i]!);
    batch.lengths[i] = pkt.length;
  });
  t.is(dev.write(batch.data, batch.offsets, batch.lengths, count), count);
  await exited;
  const why = () => {
    const snmp = nsExec(ns, 'cat', ['/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Udp:') || l.startsWith('Ip:')).join(' | ');
    const link = nsExec(ns, 'ip', ['-s', '-s', 'link', 'show', dev.name]).replace(/\s+/g, ' ');
    return `receiver's stderr: ${err.trim() || 'none'}; ${JSON.stringify(dev.stats)}; ${snmp}; ${link}`;
  };
  t.is(out, payloads.join(''), out === payloads.join('') ? 'all of them, in the order written' : `all of them, in the order written (${why()})`);
  t.is(dev.stats.txDropped, 0);
});

test('XTR_URING=0 keeps io_uring off whatever the offloads ask', (t) => {
  const before = process.env.XTR_URING;
  process.env.XTR_URING = '0';
  try {
    t.false(openDevice(t, 'tun', true).offloads.uring);
  } finally {
    if (before === undefined) delete process.env.XTR_URING;
    else process.env.XTR_URING = before;
  }
  t.true(openDevice(t, 'tun', true).offloads.uring);
});

test('tap: the kernel ARP request arrives as an Ethernet frame and a hand-built ARP reply is accepted', async (t) => {
  const dev = openDevice(t, 'tap');
  t.is(dev.kind, 'tap');
  const ns = namespaceWith(t, dev);
  nsExec(ns, 'ip', ['addr', 'add', '10.207.0.1/24', 'dev', dev.name]);
  nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);
  const link = JSON.parse(nsExec(ns, 'ip', ['-j', 'link', 'show', dev.name])) as Array<{ address: string }>;
  const tapMac = Buffer.from(link[0]!.address.replace(/:/g, ''), 'hex');

  const batch = createBatch(16, 2048);
  let request: Buffer | undefined;
  dev.onReadable(() => {
    while (dev.read(batch) > 0) {
      for (let i = 0; i < batch.count; i++) {
        const f = packetAt(batch, i);
        if (f.length >= 42 && f.readUInt16BE(12) === 0x0806 && f.readUInt16BE(20) === 1) request = Buffer.from(f);
      }
      if (batch.count < batch.capacity) break;
    }
  });
  // one ping resolves 10.207.0.2 over the TAP: the kernel sends an ARP request
  const ping = spawn('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '3', '10.207.0.2'], { stdio: 'ignore' });
  t.teardown(() => ping.kill());
  await waitFor('an ARP request on the TAP', () => request !== undefined);
  const req = request!;
  t.deepEqual(req.subarray(0, 6), Buffer.alloc(6, 0xff), 'broadcast destination');
  t.deepEqual(req.subarray(6, 12), tapMac, 'source is the TAP MAC');
  t.deepEqual([...req.subarray(28, 32)], [10, 207, 0, 1], 'sender IP');
  t.deepEqual([...req.subarray(38, 42)], [10, 207, 0, 2], 'target IP');

  // answer as 10.207.0.2 with a MAC of our own
  const peerMac = Buffer.from('020000c0ffee', 'hex');
  const reply = Buffer.alloc(42);
  tapMac.copy(reply, 0);
  peerMac.copy(reply, 6);
  reply.writeUInt16BE(0x0806, 12);
  reply.writeUInt16BE(1, 14); // Ethernet
  reply.writeUInt16BE(0x0800, 16); // IPv4
  reply[18] = 6;
  reply[19] = 4;
  reply.writeUInt16BE(2, 20); // reply
  peerMac.copy(reply, 22);
  reply.set([10, 207, 0, 2], 28);
  tapMac.copy(reply, 32);
  reply.set([10, 207, 0, 1], 38);
  const out = createBatch(1, 2048);
  out.data.set(reply, out.offsets[0]!);
  out.lengths[0] = reply.length;
  t.is(dev.write(out.data, out.offsets, out.lengths, 1), 1);
  await waitFor('the neighbour entry learnt from our reply', () =>
    nsExec(ns, 'ip', ['neigh', 'show', '10.207.0.2', 'dev', dev.name]).includes('02:00:00:c0:ff:ee'),
  );
  t.pass();
});

test('tap: a frame shorter than an Ethernet header is refused and counted as dropped', (t) => {
  const dev = openDevice(t, 'tap');
  const ns = namespaceWith(t, dev);
  nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);
  const batch = createBatch(1, 2048);
  batch.lengths[0] = 10;
  t.is(dev.write(batch.data, batch.offsets, batch.lengths, 1), 0);
  t.is(dev.stats.txDropped, 1);
});

test('open: kernel-chosen name, EBUSY on a second single-queue open, several queues with multiQueue', (t) => {
  const auto = openTun('', { kind: 'tun' });
  t.teardown(() => auto.close());
  t.regex(auto.name, /^tun\d+$/);

  const name = `xtq${suffix()}`;
  const first = openTun(name, { kind: 'tun' });
  t.teardown(() => first.close());
  const err = t.throws(() => openTun(name, { kind: 'tun' })) as NodeJS.ErrnoException;
  t.is(err.code, 'EBUSY');
  t.regex(err.message, new RegExp(name));
  first.close();

  const mq = `xtm${suffix()}`;
  const q0 = openTun(mq, { kind: 'tun', multiQueue: true });
  const q1 = openTun(mq, { kind: 'tun', multiQueue: true });
  t.teardown(() => {
    q0.close();
    q1.close();
  });
  t.is(q0.name, mq);
  t.is(q1.name, mq);
  t.not(q0.fd, q1.fd);
});

test('setMtu and setLinkUp act on the device in the caller\'s namespace', (t) => {
  const dev = openDevice(t, 'tap');
  // stays in this namespace: keep the kernel from sending IPv6 ND on it
  sh('sysctl', ['-qw', `net.ipv6.conf.${dev.name}.disable_ipv6=1`]);
  setMtu(dev.name, 1400);
  setLinkUp(dev.name, true);
  const [link] = JSON.parse(ip('-j', 'link', 'show', dev.name)) as Array<{ mtu: number; flags: string[] }>;
  t.is(link!.mtu, 1400);
  t.true(link!.flags.includes('UP'));
  setLinkUp(dev.name, false);
  const [down] = JSON.parse(ip('-j', 'link', 'show', dev.name)) as Array<{ flags: string[] }>;
  t.false(down!.flags.includes('UP'));
  const err = t.throws(() => setMtu(`xtnone${suffix()}`, 1400)) as NodeJS.ErrnoException;
  t.is(err.code, 'ENODEV');
});

test('open: bad names and kinds fail with a message naming the problem', (t) => {
  t.throws(() => openTun('this-name-is-too-long', { kind: 'tun' }), { instanceOf: RangeError, message: /at most 15 bytes/ });
  t.throws(() => openTun('a b', { kind: 'tun' }), { instanceOf: RangeError });
  t.throws(() => openTun('x0', { kind: 'eth' as 'tun' }), { instanceOf: TypeError, message: /kind must be/ });
});

test('a deleted link ends reads with EBADFD and stops wake-ups instead of spinning', async (t) => {
  const dev = openDevice(t, 'tun');
  const ns = namespaceWith(t, dev);
  nsExec(ns, 'ip', ['link', 'set', dev.name, 'up']);
  let wakeups = 0;
  const batch = createBatch(8, 2048);
  dev.onReadable(() => {
    wakeups++;
    dev.read(batch);
  });
  nsExec(ns, 'ip', ['link', 'del', dev.name]);
  await waitFor('the read error', () => dev.lastError !== null);
  t.is(dev.lastError!.code, 'EBADFD');
  const seen = wakeups;
  await new Promise((r) => setTimeout(r, 100));
  t.is(wakeups, seen, 'no further wake-ups after the error');
  t.is(dev.read(batch), 0);
});

/**
 * Open TUN/TAP fds of this process. Counting every fd is not a leak check:
 * libuv's threads and earlier tests' child pipes close fds on their own.
 */
function openTunFds(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === '/dev/net/tun') n++;
    } catch {
      // closed between the listing and the readlink
    }
  }
  return n;
}

test.serial('open/close many times leaks no fd; close is idempotent', (t) => {
  const before = openTunFds();
  for (let i = 0; i < 200; i++) {
    const dev = openTun(`xtl${suffix()}`, { kind: i % 2 ? 'tap' : 'tun' });
    if (i % 3 === 0) dev.onReadable(() => {});
    if (i % 5 === 0) dev.pause();
    t.is(openTunFds(), before + 1, 'the open device holds one /dev/net/tun fd');
    dev.close();
    dev.close();
  }
  t.is(openTunFds(), before);
});

const here = fileURLToPath(new URL('.', import.meta.url));

/** Runs a script in a fresh node process and returns its exit code and output; fails if it hangs. */
function runChild(script: string, timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--expose-gc', '--input-type=module', '-e', script], {
      cwd: here,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out });
    });
  });
}

const tunModule = new URL('../dataplane/tun.ts', import.meta.url).href;

const exitCases: Array<{ title: string; body: string }> = [
  {
    title: 'closed after polling',
    body: `const d = openTun('', { kind: 'tun' }); d.onReadable(() => {}); d.close(); d.close();`,
  },
  {
    title: 'closed later from a timer while polling',
    body: `const d = openTun('xtw${suffix()}', { kind: 'tun' }); d.onReadable(() => {}); setTimeout(() => d.close(), 10);`,
  },
  {
    title: 'left open but unref()ed',
    body: `const d = openTun('', { kind: 'tap' }); d.onReadable(() => {}); d.unref();`,
  },
  {
    // the worker's loop and the addon go away with it: its watchers must be closed first
    title: 'polled in a worker thread that is terminated',
    body: [
      `const { Worker } = await import('node:worker_threads');`,
      `const { readdirSync } = await import('node:fs');`,
      `const addonPath = ${JSON.stringify(fileURLToPath(new URL('../build/Release/xtr_tun.node', import.meta.url)))};`,
      `const fds = () => readdirSync('/proc/self/fd').length;`,
      `const before = fds();`,
      `for (let i = 0; i < 3; i++) {`,
      `  const w = new Worker("const n = require(" + JSON.stringify(addonPath) + "); const d = n.open('', i % 2 === 1, false); n.pollStart(d.handle, () => {}); n.open('', false, false); require('node:worker_threads').parentPort.postMessage('up');".replace('i % 2', String(i % 2)), { eval: true, execArgv: [] });`,
      `  await new Promise((resolve, reject) => { w.on('message', () => w.terminate()); w.on('error', reject); w.on('exit', resolve); });`,
      `}`,
      `openTun('', { kind: 'tun' }).close(); // the main thread's copy of the addon still works`,
      `if (fds() !== before) { console.log('fd delta', fds() - before); process.exit(3); }`,
    ].join('\n'),
  },
  {
    // unpolled devices are collected and their fds closed by the finalizer; a
    // device with an active watcher stays alive, like an open socket would
    title: 'dropped without close and collected',
    body: [
      `const { readdirSync } = await import('node:fs');`,
      `const fds = () => readdirSync('/proc/self/fd').length;`,
      `const before = fds();`,
      `(() => { for (let i = 0; i < 50; i++) { const d = openTun('', { kind: 'tun' }); if (i % 2) { d.onReadable(() => {}); d.unref(); } } })();`,
      `for (let i = 0; i < 5; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 20)); }`,
      `if (fds() - before !== 25) { console.log('fds still open:', fds() - before); process.exit(3); }`,
    ].join('\n'),
  },
];

for (const c of exitCases) {
  test(`process exits by itself when a device is ${c.title}`, async (t) => {
    const r = await runChild(`import { openTun } from ${JSON.stringify(tunModule)};\n${c.body}\nconsole.log('done');`);
    t.is(r.signal, null, `the process had to be killed: ${r.out}`);
    t.is(r.code, 0, r.out);
    t.regex(r.out, /done/);
  });
}
