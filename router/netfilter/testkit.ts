/**
 * Real packet bytes for rule-engine tests and benchmarks: IPv4/IPv6 headers
 * with TCP, UDP or ICMP/ICMPv6 built byte by byte (header checksum filled,
 * as parsePacket verifies it), then parsed by the codec into a
 * PacketContext - so verdict tests exercise the same fields the router
 * fills, never hand-set ones.
 */
import { parsePacket } from '../../dataplane/parse.js';
import { PacketContext, type Family, type Hook, type InterfaceRef } from '../../xt/packet.js';
import { parseIpv4, parseIpv6, prefixMaskWord } from '../../dataplane/addr.js';
import type { ApplianceAction, DupOptions, EmitOptions, EventFields, IfaceFacts, RouteFacts, RouterServices } from '../../xt/services.js';
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

/** What an extension emitted through services.emit / emitLocal (bytes copied at the call). */
export interface EmittedPacket {
  readonly bytes: Buffer;
  readonly family: Family;
  readonly how: EmitOptions;
}

/** A services.dup call: the clone as it was when taken, and where it was to go. */
export interface DupCall {
  readonly bytes: Buffer;
  readonly hook: Hook;
  readonly how: DupOptions;
}

/** A services.icmpError call: the packet the error is about (bytes copied) and the ICMP fields. */
export interface IcmpErrorCall {
  readonly pkt: Buffer;
  readonly family: Family;
  readonly hook: Hook;
  readonly type: number;
  readonly code: number;
  readonly info: number;
}

/** Wall clock the fake services start at: 2026-01-01T00:00:00Z (the save clock of testEngine). */
export const FAKE_WALL_START = Date.UTC(2026, 0, 1, 0, 0, 0);

/**
 * RouterServices for tests: every call is recorded, the answers of
 * route()/iface()/emit()/dup()/icmpError() are set by the test, the clocks
 * are fake (monotonic `clock`, wall `wallClock`, moved together by advance())
 * and random() is a seeded xorshift32, so a test that uses randomness
 * replays the same numbers on every run.
 */
export class RecordingServices implements RouterServices {
  readonly logged: { level: number; line: string }[] = [];
  readonly emitted: EmittedPacket[] = [];
  readonly dups: DupCall[] = [];
  readonly icmpErrors: IcmpErrorCall[] = [];
  /** Monotonic milliseconds now() returns; tests set it or call advance(). */
  clock = 0;
  /** Wall-clock milliseconds wallNow() returns. */
  wallClock = FAKE_WALL_START;
  /** What emit() and dup() return (false: could not be queued / not sent). */
  emitResult = true;
  dupResult = true;
  /** What icmpError() returns (false: rate-limited or not allowed); the call is recorded either way. */
  icmpErrorResult = true;
  /** Interfaces iface() knows, by config name (see ifaceFacts()). */
  readonly ifaces = new Map<string, IfaceFacts>();
  private readonly routes: { family: Family; net: Uint32Array; len: number; facts: RouteFacts }[] = [];
  private rng: number;

  constructor(seed = 0x2545f491) {
    this.rng = seed >>> 0 || 1;
  }

  /** Moves both clocks forward. */
  advance(ms: number): void {
    this.clock += ms;
    this.wallClock += ms;
  }

  /** Reseeds random(). */
  seed(seed: number): void {
    this.rng = seed >>> 0 || 1;
  }

  /** route() answers `facts` for destinations in `prefix` ("10.0.0.0/8", "2001:db8::/32", "0.0.0.0/0"); longest prefix wins. */
  addRoute(prefix: string, facts: RouteFacts): void {
    const [addr, lenText] = prefix.split('/');
    const family: Family = addr.includes(':') ? 6 : 4;
    const net = family === 4 ? Uint32Array.of(parseIpv4(addr)) : parseIpv6(addr);
    const len = lenText === undefined ? (family === 4 ? 32 : 128) : Number(lenText);
    this.routes.push({ family, net, len, facts });
  }

  emit(bytes: Uint8Array, offset: number, length: number, how: EmitOptions): boolean {
    this.emitted.push({ bytes: Buffer.from(bytes.subarray(offset, offset + length)), family: how.family, how });
    return this.emitResult;
  }

  emitLocal(bytes: Uint8Array, offset: number, length: number, family: Family): void {
    this.emitted.push({ bytes: Buffer.from(bytes.subarray(offset, offset + length)), family, how: { family } });
  }

  dup(pkt: PacketContext, how: DupOptions): boolean {
    this.dups.push({ bytes: Buffer.from(pkt.buf.subarray(pkt.l3off, pkt.l3off + pkt.l3len)), hook: pkt.hook, how });
    return this.dupResult;
  }

  route(family: Family, dst: Uint32Array): RouteFacts | null {
    let best: { len: number; facts: RouteFacts } | null = null;
    for (const r of this.routes) {
      if (r.family !== family || (best !== null && r.len <= best.len)) continue;
      let inside = true;
      for (let w = 0; w < r.net.length && inside; w++) {
        const m = prefixMaskWord(r.len, w);
        inside = ((dst[w] & m) >>> 0) === ((r.net[w] & m) >>> 0);
      }
      if (inside) best = r;
    }
    return best?.facts ?? null;
  }

  iface(name: string): IfaceFacts | null {
    return this.ifaces.get(name) ?? null;
  }

  icmpError(pkt: PacketContext, type: number, code: number, info: number): boolean {
    this.icmpErrors.push({ pkt: Buffer.from(pkt.buf.subarray(pkt.l3off, pkt.l3off + pkt.l3len)), family: pkt.family, hook: pkt.hook, type, code, info });
    return this.icmpErrorResult;
  }

  random(): number {
    // xorshift32: a fixed sequence per seed.
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    return this.rng;
  }

  log(level: number, line: string): void {
    this.logged.push({ level, line });
  }

  now(): number {
    return this.clock;
  }

  wallNow(): number {
    return this.wallClock;
  }

  /** ApplianceActions asked for, in order. */
  readonly applianceActions: ApplianceAction[] = [];
  /** What applianceAction() returns (false: not offered). */
  applianceActionResult = true;

  applianceAction(action: ApplianceAction): boolean {
    this.applianceActions.push(action);
    return this.applianceActionResult;
  }

  /** Events reported, in order, with the fake wall clock at the time. */
  readonly events: { kind: string; time: number; fields: EventFields }[] = [];

  event(kind: string, fields: EventFields): void {
    this.events.push({ kind, time: this.wallClock, fields });
  }

  /** Packets handed to the packet log (NFLOG), in order: the bytes copied as the router would. */
  readonly nflogged: NflogCall[] = [];

  nflog(pkt: PacketContext, group: number, prefix: string, caplen: number): void {
    const end = pkt.l3off + Math.max(0, Math.min(caplen, pkt.l3len));
    this.nflogged.push({ group, prefix, hook: pkt.hook, length: pkt.l3len, bytes: Buffer.from(pkt.buf.subarray(pkt.l3off, end)) });
  }
}

/** One services.nflog() call as RecordingServices keeps it. */
export interface NflogCall {
  group: number;
  prefix: string;
  hook: Hook;
  /** The packet's length; `bytes` holds the first caplen of them. */
  length: number;
  bytes: Buffer;
}

/** IfaceFacts for tests: a running TUN with MTU 1500 and the given addresses ("10.0.0.1/24", "2001:db8::1/64"). */
export function ifaceFacts(name: string, addrs: readonly string[] = [], more: Partial<IfaceFacts> = {}): IfaceFacts {
  const a4 = addrs.filter((a) => !a.includes(':'));
  const a6 = addrs.filter((a) => a.includes(':'));
  const len = (a: string, max: number) => (a.includes('/') ? Number(a.split('/')[1]) : max);
  return {
    ref: iface(name, more.ref?.index ?? 1),
    name,
    mtu: 1500,
    kind: 'tun',
    mac: null,
    addrs4: a4.map((a) => parseIpv4(a.split('/')[0])),
    addrs6: a6.map((a) => parseIpv6(a.split('/')[0])),
    prefixes4: a4.map((a) => len(a, 32)),
    prefixes6: a6.map((a) => len(a, 128)),
    flags: { up: true, running: true, lowerUp: true, broadcast: false, multicast: false, pointopoint: true, loopback: false, noarp: true, promisc: false, dynamic: false, dormant: false },
    ...more,
  };
}

export interface TestEngine {
  nf: Netfilter;
  services: RecordingServices;
  /** Runs a command line as the CLI would pass it ("iptables -A INPUT ..."), words split like a shell (double quotes). */
  run(line: string, input?: string | null): Promise<CommandResult>;
}

/**
 * An engine over the real modules/ extensions (plus `extra` records), with
 * recording services and a fixed save clock; `settings` are the extension
 * settings of the config file.
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
