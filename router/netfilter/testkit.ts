/**
 * Real packet bytes for rule-engine tests and benchmarks: IPv4/IPv6 headers
 * with TCP, UDP or ICMP/ICMPv6 built byte by byte (header checksum filled,
 * as parsePacket verifies it), then parsed by the codec into a
 * PacketContext - so verdict tests exercise the same fields the router
 * fills, never hand-set ones.
 */
import { parsePacket } from '../../dataplane/parse.js';
import { PacketContext, type InterfaceRef } from '../../xt/packet.js';
import { parseIpv6 } from '../../dataplane/addr.js';
import type { CommandResult } from '../commands.js';
import type { Extension } from '../../xt/extension.js';
import { loadExtensions } from '../../modules/registry.js';
import { netfilterCommands, splitLine } from './commands.js';
import { Netfilter, type ConntrackHooks } from './engine.js';

export interface PacketSpec {
  src: string;
  dst: string;
  /** 'tcp' | 'udp' | 'icmp' (ICMPv6 for IPv6 addresses) or a protocol number with no L4 header. */
  proto: 'tcp' | 'udp' | 'icmp' | number;
  sport?: number;
  dport?: number;
  /** TCP flags byte; default SYN. */
  flags?: number;
  icmpType?: number;
  icmpCode?: number;
  ttl?: number;
  payload?: number;
  /** IPv4 fragment offset in 8-byte units (then no L4 header is written) and more-fragments. */
  fragOffset?: number;
  moreFragments?: boolean;
}

function v4(s: string): number {
  const p = s.split('.').map(Number);
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}

function csum(b: Buffer, off: number, len: number, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < len; i += 2) sum += b.readUInt16BE(off + i);
  if (len & 1) sum += b[off + len - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function l4(spec: PacketSpec, six: boolean): { proto: number; bytes: Buffer } {
  const payload = spec.payload ?? 0;
  if (spec.proto === 'tcp') {
    const b = Buffer.alloc(20 + payload);
    b.writeUInt16BE(spec.sport ?? 40000, 0);
    b.writeUInt16BE(spec.dport ?? 80, 2);
    b.writeUInt32BE(1000, 4);
    b[12] = 5 << 4;
    b[13] = spec.flags ?? 0x02;
    b.writeUInt16BE(65535, 14);
    return { proto: 6, bytes: b };
  }
  if (spec.proto === 'udp') {
    const b = Buffer.alloc(8 + payload);
    b.writeUInt16BE(spec.sport ?? 40000, 0);
    b.writeUInt16BE(spec.dport ?? 53, 2);
    b.writeUInt16BE(8 + payload, 4);
    return { proto: 17, bytes: b };
  }
  if (spec.proto === 'icmp') {
    const b = Buffer.alloc(8 + payload);
    b[0] = spec.icmpType ?? (six ? 128 : 8);
    b[1] = spec.icmpCode ?? 0;
    if (!six) b.writeUInt16BE(csum(b, 0, b.length), 2);
    return { proto: six ? 58 : 1, bytes: b };
  }
  return { proto: spec.proto, bytes: Buffer.alloc(payload) };
}

/** TCP/UDP/ICMPv6 checksum over the pseudo-header (addresses given as src||dst bytes), as a sender fills it. */
function fillL4Checksum(l4: Buffer, proto: number, addrs: Buffer): void {
  const at = proto === 6 ? 16 : proto === 17 ? 6 : proto === 58 ? 2 : -1;
  if (at < 0) return;
  const pseudo = Buffer.alloc(addrs.length + 8);
  addrs.copy(pseudo, 0);
  pseudo.writeUInt32BE(l4.length, addrs.length);
  pseudo[addrs.length + 7] = proto;
  l4.writeUInt16BE(0, at);
  const sum = csum(Buffer.concat([pseudo, l4]), 0, pseudo.length + l4.length);
  l4.writeUInt16BE(proto === 17 && sum === 0 ? 0xffff : sum, at);
}

/** The packet's bytes (IPv6 when the addresses contain ':'). */
export function packetBytes(spec: PacketSpec): Buffer {
  const six = spec.src.includes(':');
  const { proto, bytes } = spec.fragOffset ? { proto: typeof spec.proto === 'number' ? spec.proto : spec.proto === 'tcp' ? 6 : spec.proto === 'udp' ? 17 : 1, bytes: Buffer.alloc(spec.payload ?? 16) } : l4(spec, six);
  if (!six) {
    const h = Buffer.alloc(20);
    h[0] = 0x45;
    h.writeUInt16BE(20 + bytes.length, 2);
    h.writeUInt16BE(0x1234, 4);
    h.writeUInt16BE(((spec.moreFragments ? 1 : 0) << 13) | (spec.fragOffset ?? 0), 6);
    h[8] = spec.ttl ?? 64;
    h[9] = proto;
    h.writeUInt32BE(v4(spec.src), 12);
    h.writeUInt32BE(v4(spec.dst), 16);
    h.writeUInt16BE(csum(h, 0, 20), 10);
    if (!spec.fragOffset && !spec.moreFragments) fillL4Checksum(bytes, proto, h.subarray(12, 20));
    return Buffer.concat([h, bytes]);
  }
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(bytes.length, 4);
  h[6] = proto;
  h[7] = spec.ttl ?? 64;
  const s = parseIpv6(spec.src);
  const d = parseIpv6(spec.dst);
  for (let i = 0; i < 4; i++) {
    h.writeUInt32BE(s[i], 8 + 4 * i);
    h.writeUInt32BE(d[i], 24 + 4 * i);
  }
  fillL4Checksum(bytes, proto, h.subarray(8, 40));
  return Buffer.concat([h, bytes]);
}

export function iface(name: string, index = 1): InterfaceRef {
  return { name, index, kind: 'tun', mtu: 1500, mac: null };
}

/** A PacketContext parsed from real bytes; throws if the codec would drop the packet. */
export function packet(spec: PacketSpec, inIf: string | null = null, outIf: string | null = null, ctx = new PacketContext()): PacketContext {
  const b = packetBytes(spec);
  const reason = parsePacket(ctx, b, 0, b.length);
  if (reason !== 0) throw new Error(`testkit: parsePacket refused the packet (reason ${reason})`);
  ctx.inIf = inIf === null ? null : iface(inIf);
  ctx.outIf = outIf === null ? null : iface(outIf, 2);
  return ctx;
}

/** Services that record what targets log or emit, with a settable clock. */
export class RecordingServices {
  readonly logged: { level: number; line: string }[] = [];
  readonly emitted: { bytes: Buffer; family: 4 | 6 }[] = [];
  clock = 0;
  emitLocal(bytes: Uint8Array, offset: number, length: number, family: 4 | 6): void {
    this.emitted.push({ bytes: Buffer.from(bytes.subarray(offset, offset + length)), family });
  }
  log(level: number, line: string): void {
    this.logged.push({ level, line });
  }
  now(): number {
    return this.clock;
  }
}

export interface TestEngine {
  nf: Netfilter;
  services: RecordingServices;
  /** Runs a command line as the CLI would pass it ("iptables -A INPUT ..."), words split like a shell (double quotes). */
  run(line: string, input?: string | null): Promise<CommandResult>;
}

/**
 * An engine over the real modules/ extensions (plus `extra` records), with a
 * fixed save clock; `settings` are the extension settings of the config file.
 */
export async function testEngine(
  extra: readonly Extension[] = [],
  conntrack: ConntrackHooks | null = null,
  settings: Readonly<Record<string, unknown>> = {},
): Promise<TestEngine> {
  const registry = await loadExtensions();
  for (const e of extra) registry.add(e, 'test');
  const services = new RecordingServices();
  const nf = new Netfilter({ registry, services, conntrack, settings });
  const table = netfilterCommands(nf, { now: () => new Date(Date.UTC(2026, 0, 1, 0, 0, 0)) });
  return {
    nf,
    services,
    async run(line: string, input: string | null = null) {
      const words = splitLine(line, 0);
      const handler = table[words[0]];
      if (!handler) throw new Error(`testkit: no command ${words[0]}`);
      return handler(words.slice(1), input);
    },
  };
}
