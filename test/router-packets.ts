/**
 * Hand-built packets and a small lab of in-memory devices for the router
 * tests. Packets are assembled byte by byte here (not with the codec's
 * builders) so the router is checked against an independent encoding.
 */
import { MemDevice } from '../dataplane/memdev.js';
import { validateConfig, type XtrConfig } from '../router/config.js';
import { Router, type Netfilter } from '../router/forward.js';
import { silentLogger } from '../router/log.js';
import { parseIPv4, parseIPv6 } from '../router/routing.js';

export function ip4(s: string): number {
  const a = parseIPv4(s);
  if (a < 0) throw new Error(`bad IPv4 ${s}`);
  return a;
}
export function ip6(s: string): Uint32Array {
  const a = parseIPv6(s);
  if (!a) throw new Error(`bad IPv6 ${s}`);
  return a;
}

function sum(b: Uint8Array, off: number, len: number, acc = 0): number {
  for (let i = 0; i + 1 < len; i += 2) acc += (b[off + i] << 8) | b[off + i + 1];
  if (len & 1) acc += b[off + len - 1] << 8;
  return acc;
}
export function csum(b: Uint8Array, off: number, len: number, acc = 0): number {
  let s = sum(b, off, len, acc);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}
function put16(b: Uint8Array, o: number, v: number) {
  b[o] = (v >>> 8) & 255;
  b[o + 1] = v & 255;
}
function put32(b: Uint8Array, o: number, v: number) {
  put16(b, o, v >>> 16);
  put16(b, o + 2, v & 0xffff);
}
export function get16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}
export function get32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

export interface Udp4Options {
  src: string;
  dst: string;
  ttl?: number;
  payload?: number;
  df?: boolean;
  sport?: number;
  dport?: number;
  id?: number;
}

/** IPv4 + UDP with valid checksums; the payload is bytes 0,1,2,... */
export function udp4(o: Udp4Options): Buffer {
  const payload = o.payload ?? 18;
  const b = Buffer.alloc(28 + payload);
  b[0] = 0x45;
  put16(b, 2, b.length);
  put16(b, 4, o.id ?? 0x1234);
  put16(b, 6, o.df ? 0x4000 : 0);
  b[8] = o.ttl ?? 64;
  b[9] = 17;
  put32(b, 12, ip4(o.src));
  put32(b, 16, ip4(o.dst));
  put16(b, 10, csum(b, 0, 20));
  put16(b, 20, o.sport ?? 40000);
  put16(b, 22, o.dport ?? 9);
  put16(b, 24, 8 + payload);
  for (let i = 0; i < payload; i++) b[28 + i] = i & 255;
  const pseudo = sum(b, 12, 8) + 17 + 8 + payload;
  put16(b, 26, csum(b, 20, 8 + payload, pseudo) || 0xffff);
  return b;
}

export interface Udp6Options {
  src: string;
  dst: string;
  hop?: number;
  payload?: number;
}

export function udp6(o: Udp6Options): Buffer {
  const payload = o.payload ?? 18;
  const b = Buffer.alloc(48 + payload);
  put32(b, 0, 0x60000000);
  put16(b, 4, 8 + payload);
  b[6] = 17;
  b[7] = o.hop ?? 64;
  const s = ip6(o.src);
  const d = ip6(o.dst);
  for (let i = 0; i < 4; i++) {
    put32(b, 8 + 4 * i, s[i]);
    put32(b, 24 + 4 * i, d[i]);
  }
  put16(b, 40, 40000);
  put16(b, 42, 9);
  put16(b, 44, 8 + payload);
  for (let i = 0; i < payload; i++) b[48 + i] = i & 255;
  const pseudo = sum(b, 8, 32) + 17 + 8 + payload;
  put16(b, 46, csum(b, 40, 8 + payload, pseudo) || 0xffff);
  return b;
}

/** Ethernet frame around `payload`. */
export function eth(dst: number, src: number, type: number, payload: Uint8Array): Buffer {
  const b = Buffer.alloc(14 + payload.length);
  put16(b, 0, Math.floor(dst / 2 ** 32));
  put32(b, 2, dst % 2 ** 32);
  put16(b, 6, Math.floor(src / 2 ** 32));
  put32(b, 8, src % 2 ** 32);
  put16(b, 12, type);
  b.set(payload, 14);
  return b;
}

export function mac(s: string): number {
  return parseInt(s.replace(/:/g, ''), 16);
}
export function macAt(b: Uint8Array, o: number): number {
  return get16(b, o) * 2 ** 32 + get32(b, o + 2);
}

/** ARP request/reply payload (28 bytes). */
export function arp(op: number, sha: number, spa: string, tha: number, tpa: string): Buffer {
  const b = Buffer.alloc(28);
  put16(b, 0, 1);
  put16(b, 2, 0x0800);
  b[4] = 6;
  b[5] = 4;
  put16(b, 6, op);
  put16(b, 8, Math.floor(sha / 2 ** 32));
  put32(b, 10, sha % 2 ** 32);
  put32(b, 14, ip4(spa));
  put16(b, 18, Math.floor(tha / 2 ** 32));
  put32(b, 20, tha % 2 ** 32);
  put32(b, 24, ip4(tpa));
  return b;
}

/** IPv6 + NS or NA (hop limit 255) with a link-layer address option, checksummed. */
export function ndp(type: 135 | 136, src: string, dst: string, target: string, lladdr: number, flags = 0): Buffer {
  const b = Buffer.alloc(40 + 32);
  put32(b, 0, 0x60000000);
  put16(b, 4, 32);
  b[6] = 58;
  b[7] = 255;
  const s = ip6(src);
  const d = ip6(dst);
  const t = ip6(target);
  for (let i = 0; i < 4; i++) {
    put32(b, 8 + 4 * i, s[i]);
    put32(b, 24 + 4 * i, d[i]);
    put32(b, 48 + 4 * i, t[i]);
  }
  b[40] = type;
  b[44] = flags;
  b[64] = type === 135 ? 1 : 2;
  b[65] = 1;
  put16(b, 66, Math.floor(lladdr / 2 ** 32));
  put32(b, 68, lladdr % 2 ** 32);
  const pseudo = sum(b, 8, 32) + 58 + 32;
  put16(b, 42, csum(b, 40, 32, pseudo));
  return b;
}

/** True if the IPv4 header checksum verifies. */
export function ipv4HeaderOk(b: Uint8Array, off = 0): boolean {
  return csum(b, off, (b[off] & 15) * 4) === 0;
}

/** True if the ICMPv6/UDP/TCP checksum over an IPv6 packet without extension headers verifies. */
export function l4v6Ok(b: Uint8Array, off = 0): boolean {
  const plen = get16(b, off + 4);
  const pseudo = sum(b, off + 8, 32) + b[off + 6] + plen;
  return csum(b, off + 40, plen, pseudo) === 0;
}

export interface Lab {
  router: Router;
  config: XtrConfig;
  eth0: MemDevice;
  eth1: MemDevice;
  eth2: MemDevice;
  host: MemDevice;
  clock: { now: number };
  calls: string[];
  /** Reads everything pending on every device through the router. */
  pump(): void;
}

export const ETH1_MAC = mac('02:00:00:00:01:01');
export const SERVER_MAC = mac('02:aa:bb:cc:dd:02');

/**
 * eth0 (tun, client side), eth1 (tap, server side), eth2 (tun, MTU 1280,
 * monitor side), a host interface, a static route 10.0.0.0/8 via the server
 * and, unless noDefault, default routes via the server.
 */
export function makeLab(opts: { noDefault?: boolean; netfilter?: Netfilter; eth1Mtu?: number } = {}): Lab {
  const config = validateConfig({
    hostInterface: { name: 'xtr0' },
    interfaces: [
      { name: 'eth0', mode: 'tun', addresses: ['198.51.100.1/24', '2001:db8:c::1/64'] },
      { name: 'eth1', mode: 'tap', mtu: opts.eth1Mtu ?? 1500, mac: '02:00:00:00:01:01', addresses: ['203.0.113.1/24', '2001:db8:5::1/64'] },
      { name: 'eth2', mode: 'tun', mtu: 1280, addresses: ['192.0.2.1/24', '2001:db8:6::1/64'] },
    ],
    routes: [
      { to: '10.0.0.0/8', via: '203.0.113.2' },
      ...(opts.noDefault ? [] : [{ to: 'default', via: '203.0.113.2' }, { to: '::/0', via: '2001:db8:5::2' }]),
    ],
  });
  const eth0 = new MemDevice('eth0');
  const eth1 = new MemDevice('eth1', { kind: 'tap' });
  const eth2 = new MemDevice('eth2');
  const host = new MemDevice('xtr0');
  const clock = { now: 1000 };
  const router = new Router({
    config,
    devices: new Map([
      ['eth0', eth0],
      ['eth1', eth1],
      ['eth2', eth2],
    ]),
    host,
    logger: silentLogger(),
    clock: () => clock.now,
    tickMs: 3_600_000,
  });
  const calls: string[] = [];
  if (opts.netfilter) router.setNetfilter(opts.netfilter);
  router.start();
  const lab: Lab = {
    router,
    config,
    eth0,
    eth1,
    eth2,
    host,
    clock,
    calls,
    pump() {
      for (let round = 0; round < 4; round++) {
        for (const ri of router.interfaces.slice(1)) if ((ri.device as MemDevice).pending) router.drain(ri);
      }
    },
  };
  return lab;
}
