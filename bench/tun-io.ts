/**
 * How fast the TUN device moves packets between the kernel and JS, against a
 * kernel-only baseline measured in the same run:
 *
 *   baseline   udpgen send -> veth -> udpgen recv (two namespaces, no xtr)
 *   tun read   udpgen send -> route via TUN -> openTun().read() in this process
 *   tun write  openTun().write() of 64-packet batches -> udpgen recv in the namespace
 *
 * Usage: node dist/bench/tun-io.js [seconds=3] [--uring]   (or node --import tsx bench/tun-io.ts)
 * --uring moves the batches through io_uring (offloads.uring, dataplane/native/uring.h) instead
 * of one syscall per packet; run both to compare the two paths on a machine.
 * Needs root, `ip`, and bench/native/udpgen (make -C bench/native).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBatch } from '../dataplane/device.js';
import { openTun } from '../dataplane/tun.js';

const uring = process.argv.includes('--uring');
const positional = process.argv.slice(2).filter((a) => a !== '--uring');
const seconds = Number(positional[0] ?? 3);
if (!(seconds > 0 && seconds <= 60)) throw new Error(`tun-io: seconds must be in (0, 60], got ${positional[0]}`);
const offloads = uring ? { uring: true } : undefined;

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('tun-io: repository root not found');
    dir = up;
  }
  return dir;
}
const udpgen = join(repoRoot(), 'bench', 'native', 'udpgen');
if (!existsSync(udpgen)) throw new Error(`tun-io: ${udpgen} missing; run make -C bench/native`);

const tag = randomBytes(3).toString('hex');
const namespaces: string[] = [];
function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'inherit'], timeout: 10_000 });
}
function netns(role: string): string {
  const ns = `xn-bt${role}-${tag}`;
  ip('netns', 'add', ns);
  namespaces.push(ns);
  return ns;
}

/** Runs udpgen in `ns`; resolves with its one result line parsed into numbers. */
function udpgenIn(ns: string, args: string[]): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, udpgen, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 15) * 1000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`udpgen ${args[0]} in ${ns} exited ${code}`));
      resolve(Object.fromEntries(out.trim().split(/\s+/).map((kv) => [kv.split('=')[0]!, Number(kv.split('=')[1])])));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function baseline(): Promise<number> {
  const a = netns('a');
  const b = netns('b');
  ip('link', 'add', `bta${tag}`, 'netns', a, 'type', 'veth', 'peer', 'name', `btb${tag}`, 'netns', b);
  ip('-n', a, 'addr', 'add', '10.230.0.1/24', 'dev', `bta${tag}`);
  ip('-n', b, 'addr', 'add', '10.230.0.2/24', 'dev', `btb${tag}`);
  ip('-n', a, 'link', 'set', `bta${tag}`, 'up');
  ip('-n', b, 'link', 'set', `btb${tag}`, 'up');
  execFileSync('ip', ['netns', 'exec', a, 'ping', '-c1', '-w5', '10.230.0.2'], { stdio: 'ignore' });
  const sink = udpgenIn(b, ['recv', '--port', '7300', '--duration', String(seconds + 5), '--idle', '0.5']);
  await sleep(200);
  await udpgenIn(a, ['send', '--dst', '10.230.0.2', '--port', '7300', '--size', '64', '--duration', String(seconds)]);
  return (await sink).pps!;
}

async function tunRead(): Promise<{ pps: number; perCpuSecond: number; perWake: number }> {
  const dev = openTun(`btr${tag}`, { kind: 'tun', offloads });
  if (uring && !dev.offloads.uring) throw new Error('tun-io: --uring, but io_uring is not available here');
  try {
    const ns = netns('r');
    ip('link', 'set', dev.name, 'netns', ns);
    ip('-n', ns, 'addr', 'add', '10.231.0.1/24', 'dev', dev.name);
    ip('-n', ns, 'link', 'set', dev.name, 'up');
    const batch = createBatch(256, 2048);
    let packets = 0;
    let wakes = 0;
    let first = 0;
    let last = 0;
    const cpu0 = process.cpuUsage();
    dev.onReadable(() => {
      wakes++;
      let n: number;
      while ((n = dev.read(batch)) > 0) {
        if (first === 0) first = performance.now();
        packets += n;
        last = performance.now();
        if (n < batch.capacity) break;
      }
    });
    await udpgenIn(ns, ['send', '--dst', '10.231.0.2', '--port', '9', '--size', '64', '--duration', String(seconds)]);
    await sleep(100);
    const cpu = process.cpuUsage(cpu0);
    const span = (last - first) / 1000;
    return { pps: packets / span, perCpuSecond: packets / ((cpu.user + cpu.system) / 1e6), perWake: packets / wakes };
  } finally {
    dev.close();
  }
}

function onesSum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length % 2) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

async function tunWrite(): Promise<{ pps: number; received: number; accepted: number }> {
  const dev = openTun(`btw${tag}`, { kind: 'tun', offloads });
  if (uring && !dev.offloads.uring) throw new Error('tun-io: --uring, but io_uring is not available here');
  try {
    const ns = netns('w');
    ip('link', 'set', dev.name, 'netns', ns);
    ip('-n', ns, 'addr', 'add', '10.232.0.1/24', 'dev', dev.name);
    ip('-n', ns, 'link', 'set', dev.name, 'up');
    const sink = udpgenIn(ns, ['recv', '--port', '7301', '--duration', String(seconds + 5), '--idle', '0.5']);
    await sleep(200);
    // 10.232.0.2:40000 -> 10.232.0.1:7301, 64 bytes of payload
    const pkt = Buffer.alloc(28 + 64);
    pkt[0] = 0x45;
    pkt.writeUInt16BE(pkt.length, 2);
    pkt[8] = 64;
    pkt[9] = 17;
    pkt.set([10, 232, 0, 2, 10, 232, 0, 1], 12);
    pkt.writeUInt16BE(~onesSum(pkt.subarray(0, 20)) & 0xffff, 10);
    pkt.writeUInt16BE(40000, 20);
    pkt.writeUInt16BE(7301, 22);
    pkt.writeUInt16BE(72, 24);
    const pseudo = Buffer.from([10, 232, 0, 2, 10, 232, 0, 1, 0, 17, 0, 72]);
    pkt.writeUInt16BE(~onesSum(pkt.subarray(20), onesSum(pseudo)) & 0xffff, 26);
    const batch = createBatch(64, 2048);
    for (let i = 0; i < 64; i++) {
      batch.data.set(pkt, batch.offsets[i]!);
      batch.lengths[i] = pkt.length;
    }
    const t0 = performance.now();
    let accepted = 0;
    // bounded by time; yields to the loop between bursts so the sink's child stays serviced
    while (performance.now() - t0 < seconds * 1000) {
      for (let k = 0; k < 100; k++) accepted += dev.write(batch.data, batch.offsets, batch.lengths, 64);
      await new Promise((r) => setImmediate(r));
    }
    const r = await sink;
    return { pps: r.pps!, received: r.received!, accepted };
  } finally {
    dev.close();
  }
}

try {
  const base = await baseline();
  const read = await tunRead();
  const write = await tunWrite();
  const ratio = (x: number) => (x / base).toFixed(2);
  console.log(`io path   ${uring ? 'io_uring, one enter per batch' : 'one syscall per packet'}`);
  console.log(`baseline  veth udpgen->udpgen       ${base.toFixed(0)} pps`);
  console.log(
    `tun read  udpgen->TUN->JS read()     ${read.pps.toFixed(0)} pps  ratio ${ratio(read.pps)}  ` +
      `(${read.perCpuSecond.toFixed(0)} pkts per reader CPU-second, ${read.perWake.toFixed(1)} pkts per wake-up)`,
  );
  console.log(
    `tun write JS write()->TUN->udpgen    ${write.pps.toFixed(0)} pps  ratio ${ratio(write.pps)}  ` +
      `(accepted ${write.accepted}, received ${write.received})`,
  );
} finally {
  for (const ns of namespaces) {
    try {
      ip('netns', 'del', ns);
    } catch {
      /* already gone */
    }
  }
}
