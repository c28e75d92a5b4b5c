/**
 * Issue 14, the router with super-packets (in-memory devices): one pass
 * through the pipeline, TTL decremented once, the segments (not the
 * super-packet) held against the egress MTU, and the egress choice: whole
 * as one GSO write where the device takes it, else segmented in software
 * (TUN without offloads, TAP), and segmented then fragmented for IPv4
 * without DF; a DF super-packet whose segments do not fit gets
 * frag-needed with the MTU.
 */
import test from 'ava';
import type { PacketBatch } from '../dataplane/device.js';
import { MemDevice } from '../dataplane/memdev.js';
import { validateConfig } from '../router/config.js';
import { Router } from '../router/forward.js';
import { silentLogger } from '../router/log.js';
import { Hook, Verdict, type PacketContext } from '../xt/packet.js';

/** A MemDevice that reads super-packets (batch.gso) and records the gso size of what it is given. */
class GsoDevice extends MemDevice {
  readonly maxPacket = 65535;
  readonly sentGso: number[] = [];
  private readonly gsoQueue: number[] = [];
  private nextGso = 0;
  constructor(
    name: string,
    readonly gsoWrites: boolean,
  ) {
    super(name);
  }
  injectSuper(pkt: Uint8Array, gso: number): void {
    this.nextGso = gso;
    this.inject(pkt);
  }
  override inject(bytes: Uint8Array): boolean {
    this.gsoQueue.push(this.nextGso);
    this.nextGso = 0;
    return super.inject(bytes);
  }
  override read(batch: PacketBatch): number {
    const n = super.read(batch);
    for (let i = 0; i < n; i++) batch.gso![i] = this.gsoQueue.shift() ?? 0;
    return n;
  }
  override write(data: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number, gso?: Uint32Array): number {
    for (let i = 0; i < count; i++) this.sentGso.push(gso ? gso[i]! : 0);
    return super.write(data, offsets, lengths, count);
  }
}

function onesSum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length % 2) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** An IPv4 TCP packet 198.51.100.2:40000 -> dst:5201 with `payload` bytes and valid checksums. */
function tcp4(dst: number[], payload: number, o: { df?: boolean; ttl?: number; flags?: number } = {}): Buffer {
  const p = Buffer.alloc(40 + payload);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p.writeUInt16BE(0x1234, 4);
  p.writeUInt16BE(o.df === false ? 0 : 0x4000, 6);
  p[8] = o.ttl ?? 64;
  p[9] = 6;
  p.set([198, 51, 100, 2], 12);
  p.set(dst, 16);
  p.writeUInt16BE(~onesSum(p.subarray(0, 20)) & 0xffff, 10);
  p.writeUInt16BE(40000, 20);
  p.writeUInt16BE(5201, 22);
  p.writeUInt32BE(1000, 24);
  p.writeUInt32BE(1, 28);
  p[32] = 0x50;
  p[33] = o.flags ?? 0x18;
  p.writeUInt16BE(1000, 34);
  for (let i = 40; i < p.length; i++) p[i] = i & 0xff;
  p.writeUInt16BE(~onesSum(p.subarray(20), onesSum(p.subarray(12, 20), 6 + p.length - 20)) & 0xffff, 36);
  return p;
}

function tcpOk(p: Buffer): boolean {
  return onesSum(p.subarray(0, 20)) === 0xffff && onesSum(p.subarray(20), onesSum(p.subarray(12, 20), 6 + p.length - 20)) === 0xffff;
}

function makeLab(eth2GsoWrites: boolean, hook?: (h: Hook, ctx: PacketContext) => void) {
  const config = validateConfig({
    hostInterface: { name: 'xtr0' },
    interfaces: [
      { name: 'eth0', mode: 'tun', addresses: ['198.51.100.1/24'] },
      { name: 'eth2', mode: 'tun', mtu: 1280, addresses: ['192.0.2.1/24'] },
    ],
    routes: [],
  });
  const eth0 = new GsoDevice('eth0', true);
  const eth2 = new GsoDevice('eth2', eth2GsoWrites);
  const router = new Router({
    config,
    devices: new Map<string, MemDevice>([
      ['eth0', eth0],
      ['eth2', eth2],
    ]),
    host: new MemDevice('xtr0'),
    logger: silentLogger(),
    clock: () => 1000,
    tickMs: 3_600_000,
  });
  if (hook) router.setNetfilter({ hook: (h, ctx) => (hook(h, ctx), Verdict.ACCEPT) });
  router.start();
  const pump = () => {
    for (let r = 0; r < 4; r++) for (const ri of router.interfaces.slice(1)) if ((ri.device as MemDevice).pending) router.drain(ri);
  };
  return { router, eth0, eth2, pump };
}

const DST = [192, 0, 2, 2];

test('a super-packet whose segments fit goes through the hooks once, TTL decremented once, and leaves whole as one GSO write', (t) => {
  const seen: string[] = [];
  const names = new Map<Hook, string>([
    [Hook.PREROUTING, 'PREROUTING'],
    [Hook.FORWARD, 'FORWARD'],
    [Hook.POSTROUTING, 'POSTROUTING'],
  ]);
  const lab = makeLab(true, (h, ctx) => seen.push(`${names.get(h) ?? h} ${ctx.l3len}`));
  const sp = tcp4(DST, 4200);
  lab.eth0.injectSuper(sp, 1000);
  lab.pump();
  t.deepEqual(seen, ['PREROUTING 4240', 'FORWARD 4240', 'POSTROUTING 4240']);
  const out = lab.eth2.takeSent();
  t.is(out.length, 1);
  t.is(out[0]!.length, 4240, 'larger than the 1280 MTU: its 1040-byte segments are what must fit');
  t.is(out[0]![8], 63);
  t.deepEqual(lab.eth2.sentGso, [1000]);
  t.is(lab.eth0.takeSent().length, 0, 'no frag-needed');
  lab.router.stop();
});

test('a super-packet read with a partial checksum (pseudo-header sum only) is marked csumPartial and its segments leave with valid checksums', (t) => {
  const partial: boolean[] = [];
  const lab = makeLab(false, (h, ctx) => {
    if (h === Hook.FORWARD) partial.push(ctx.csumPartial);
  });
  const sp = tcp4(DST, 2500);
  // as dataplane/native/tun.c leaves it: the folded pseudo-header sum with the super-packet's TCP length
  sp.writeUInt16BE(onesSum(sp.subarray(12, 20), 6 + sp.length - 20), 36);
  t.false(tcpOk(sp));
  lab.eth0.injectSuper(sp, 1000);
  lab.eth0.inject(tcp4(DST, 100));
  lab.pump();
  t.deepEqual(partial, [true, false], 'the super-packet is partial, the ordinary packet after it is not');
  const out = lab.eth2.takeSent();
  t.deepEqual(out.map((p) => p.length - 40), [1000, 1000, 500, 100]);
  for (const [k, p] of out.entries()) t.true(tcpOk(p), `packet ${k}: checksums valid`);
  lab.router.stop();
});

test('a TUN egress without GSO writes gets the segments, cut in software with valid checksums', (t) => {
  const lab = makeLab(false);
  lab.eth0.injectSuper(tcp4(DST, 4200), 1000);
  lab.pump();
  const out = lab.eth2.takeSent();
  t.deepEqual(
    out.map((p) => p.length),
    [1040, 1040, 1040, 1040, 240],
  );
  out.forEach((p, k) => {
    t.true(tcpOk(p), `segment ${k}`);
    t.is(p[8], 63, 'TTL decremented once, in every segment');
    t.is(p.readUInt32BE(24), 1000 + k * 1000);
    t.is(p[33], k === 4 ? 0x18 : 0x10, 'PSH on the last only');
  });
  t.deepEqual(lab.eth2.sentGso, [0, 0, 0, 0, 0]);
  lab.router.stop();
});

test('DF set and segments larger than the egress MTU: frag-needed with the MTU, nothing forwarded', (t) => {
  const lab = makeLab(true);
  lab.eth0.injectSuper(tcp4(DST, 4200), 1400);
  lab.pump();
  t.is(lab.eth2.takeSent().length, 0);
  const back = lab.eth0.takeSent();
  t.is(back.length, 1);
  t.is(back[0]![9], 1, 'ICMP');
  t.deepEqual([back[0]![20], back[0]![21]], [3, 4], 'fragmentation needed');
  t.is(back[0]!.readUInt16BE(26), 1280, 'next-hop MTU');
  lab.router.stop();
});

test('DF clear and segments larger than the egress MTU: segmented, then each segment fragmented', (t) => {
  const lab = makeLab(true);
  lab.eth0.injectSuper(tcp4(DST, 2800, { df: false }), 1400);
  lab.pump();
  const out = lab.eth2.takeSent();
  t.is(out.length, 4, 'two 1440-byte segments, two fragments each');
  for (const p of out) {
    t.true(p.length <= 1280);
    t.is(onesSum(p.subarray(0, 20)), 0xffff);
  }
  const payload = out.reduce((n, p) => n + p.length - 20, 0);
  t.is(payload, 2 * (20 + 1400));
  lab.router.stop();
});

test('an ordinary packet read next to a super-packet is not taken for one', (t) => {
  const lab = makeLab(true);
  lab.eth0.injectSuper(tcp4(DST, 4200), 1000);
  lab.eth0.inject(tcp4(DST, 100));
  lab.pump();
  t.deepEqual(lab.eth2.sentGso, [1000, 0]);
  lab.router.stop();
});

test('a clone of a super-packet (services.dup, TEE) keeps its gso_size: written whole, not refused as too big', (t) => {
  let lab: ReturnType<typeof makeLab> | null = null;
  const gw = new Uint32Array([0xc0000203]); // 192.0.2.3, on eth2's link
  lab = makeLab(true, (h, ctx) => {
    if (h === Hook.FORWARD) lab!.router.services.dup(ctx, { gateway: gw });
  });
  lab.eth0.injectSuper(tcp4(DST, 4200), 1000);
  lab.pump();
  const out = lab.eth2.takeSent();
  t.is(out.length, 2, 'the original and its clone');
  t.deepEqual(lab.eth2.sentGso, [1000, 1000]);
  t.is(lab.eth0.takeSent().length, 0, 'no ICMP error about the clone');
  lab.router.stop();
});

test('metrics: offloads in force and super-packet counters per interface', async (t) => {
  const { createRegistry } = await import('../router/metrics.js');
  const { HealthMonitor } = await import('../router/health.js');
  const { defaultConfig } = await import('../router/default-config.js');
  const { offloadStatus } = await import('../router/offloads-config.js');
  const dev = {
    offloads: { csum: true, tso4: true, tso6: false, uso: false, gsoWrites: true, gro: true },
    stats: { rxSuperPackets: 12, txSuperWrites: 7, txGsoWrites: 2, txGsoPackets: 9 },
  };
  const snap = {
    version: '0',
    pid: 1,
    uptimeSeconds: 1,
    interfaces: [
      { name: 'eth0', kind: 'tun' as const, device: 'c0', mtu: 1500, addresses: [], stats: { rxPackets: 1, rxBytes: 1, txPackets: 1, txBytes: 1, txDropped: 0 }, offloads: offloadStatus(dev) },
    ],
    drops: {},
  };
  const health = new HealthMonitor({ config: defaultConfig('xx4-r-'), gateway: false, running: () => true, rulesLoaded: () => true }, 1000);
  const reg = await createRegistry({ status: () => snap, conntrack: () => ({ count: () => 0, max: 1, earlyDrops: 0, insertFailed: 0, tableFullDrops: 0 }), health });
  const text = await reg.metrics();
  t.regex(text, /^xtr_interface_offload\{interface="eth0",offload="tso4"\} 1$/m);
  t.regex(text, /^xtr_interface_offload\{interface="eth0",offload="tso6"\} 0$/m);
  t.regex(text, /^xtr_interface_super_packets_total\{interface="eth0",direction="rx"\} 12$/m);
  t.regex(text, /^xtr_interface_super_packets_total\{interface="eth0",direction="tx"\} 7$/m);
});
