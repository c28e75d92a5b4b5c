/**
 * RouterServices for extensions: packets they originate (REJECT, TARPIT,
 * ECHO, TEE copies) enter the OUTPUT path as locally generated, ICMP errors
 * go through the router's one rate limiter, route and interface facts come
 * from xtr's own tables, log lines go to the process logger, and time is the
 * router's monotonic clock.
 *
 * The packet work (emit, dup, icmpError) is the Router's (router/forward.ts:
 * it owns the scratch arena and the pending queue); this file answers the
 * questions about routes and interfaces and keeps the clock and randomness.
 */
import { randomBytes } from 'node:crypto';
import type { Family, PacketContext } from '../xt/packet.js';
import {
  RouteKind as FactKind,
  type ApplianceAction,
  type DupOptions,
  type EmitOptions,
  type EventFields,
  type IfaceFacts,
  type IfaceFlags,
  type RouteFacts,
} from '../xt/services.js';
import type { RouterServices } from '../xt/extension.js';
import type { NatService } from '../xt/nat.js';
import type { RouterInterface } from './interfaces.js';
import { syslogToPino, type Logger } from './log.js';
import { PacketLogHub, eventFields, recordOf } from './packet-log.js';
import { RouteKind, type RouteTable4, type RouteTable6 } from './routing.js';

/** What the services need from the router: a way to inject a locally generated packet. */
export interface LocalPacketSink {
  /** Copies the packet and sends it through OUTPUT -> routing -> POSTROUTING. */
  injectLocal(bytes: Uint8Array, offset: number, length: number, family: Family): void;
}

/** The router as the services reach it (router/forward.ts Router). */
export interface ServicesBackend extends LocalPacketSink {
  emitPacket(bytes: Uint8Array, offset: number, length: number, how: EmitOptions): boolean;
  dupPacket(pkt: PacketContext, how: DupOptions): boolean;
  sendIcmpError(pkt: PacketContext, type: number, code: number, info: number): boolean;
  /** Interfaces by index (0 unused). */
  readonly interfaces: readonly RouterInterface[];
  readonly host: RouterInterface | null;
  readonly routes4: RouteTable4;
  readonly routes6: RouteTable6;
}

/** One event as subscribers receive it: kind, wall-clock time (ms since the epoch), fields. */
export interface RouterEvent {
  readonly kind: string;
  readonly time: number;
  readonly fields: EventFields;
}

/**
 * The router's general event stream (services.event): extensions publish,
 * the control server fans events out to `xtr events` subscribers. A listener
 * is called synchronously and must not block (the control server queues on
 * the socket and drops what a slow subscriber cannot take); a listener that
 * throws is removed rather than allowed to break the publisher.
 */
export class EventHub {
  private readonly listeners = new Set<(e: RouterEvent) => void>();
  /** Events published since start. */
  published = 0;

  subscribe(listener: (e: RouterEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get subscribers(): number {
    return this.listeners.size;
  }

  publish(e: RouterEvent): void {
    this.published++;
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        this.listeners.delete(l);
      }
    }
  }
}

/** Monotonic milliseconds (performance.now is monotonic and cheap). */
export function monotonicMs(): number {
  return performance.now();
}

/** ip_default_ttl / hop_limit: what a locally generated packet starts with. */
const LOCAL_HOP_LIMIT = 64;

export class Services implements RouterServices {
  /**
   * `clock`: the router's clock, so extensions and ctx.now agree (tests
   * substitute a fake one). `backend`: the router; without one (unit tests
   * of the log and clock) emit() only injects and the packet services throw.
   */
  constructor(
    private readonly sink: LocalPacketSink,
    private readonly logger: Logger,
    private readonly clock: () => number = monotonicMs,
    private readonly backend: ServicesBackend | null = null,
  ) {}

  emitLocal(bytes: Uint8Array, offset: number, length: number, family: Family): void {
    this.sink.injectLocal(bytes, offset, length, family);
  }

  emit(bytes: Uint8Array, offset: number, length: number, how: EmitOptions): boolean {
    if (this.backend === null) {
      this.sink.injectLocal(bytes, offset, length, how.family);
      return true;
    }
    return this.backend.emitPacket(bytes, offset, length, how);
  }

  dup(pkt: PacketContext, how: DupOptions): boolean {
    return this.router('dup').dupPacket(pkt, how);
  }

  icmpError(pkt: PacketContext, type: number, code: number, info: number): boolean {
    return this.router('icmpError').sendIcmpError(pkt, type, code, info);
  }

  /**
   * ip_route_output's answer for a locally generated packet to `dst`: own
   * addresses are LOCAL (no oif), a connected subnet's broadcast address
   * BROADCAST, multicast MULTICAST (no multicast routing: no oif), else
   * UNICAST with the next hop (the destination itself when on-link).
   */
  route(family: Family, dst: Uint32Array): RouteFacts | null {
    const b = this.router('route');
    if (family === 4) {
      const d = dst[0] >>> 0;
      if (d >>> 28 === 0xe || d === 0xffffffff) return this.facts(d === 0xffffffff ? FactKind.BROADCAST : FactKind.MULTICAST, null, null);
      const id = b.routes4.lookup(d);
      if (id < 0) return null;
      const kind = b.routes4.kind[id];
      const ri = b.interfaces[b.routes4.ifIndex[id]];
      if (kind === RouteKind.LOCAL) return this.facts(FactKind.LOCAL, null, null, ri.mtu);
      const oif = this.factsOf(ri);
      if (kind === RouteKind.CONNECTED && d === b.routes4.broadcast[id]) return this.facts(FactKind.BROADCAST, oif, null);
      const gw = this.routeGateway4;
      gw[0] = b.routes4.nextHop(id, d);
      return this.facts(FactKind.UNICAST, oif, gw);
    }
    if (dst[0] >>> 24 === 0xff) return this.facts(FactKind.MULTICAST, null, null);
    const id = b.routes6.lookup(dst);
    if (id < 0) return null;
    const ri = b.interfaces[b.routes6.ifIndex[id]];
    if (b.routes6.kind[id] === RouteKind.LOCAL) return this.facts(FactKind.LOCAL, null, null, ri.mtu);
    const gw = this.routeGateway;
    b.routes6.nextHop(id, dst, gw);
    return this.facts(FactKind.UNICAST, this.factsOf(ri), gw);
  }

  /** route()'s answer and next hop, reused by every call (the contract: valid until the next call). */
  private readonly routeGateway = new Uint32Array(4);
  private readonly routeGateway4 = new Uint32Array(1);
  private readonly routeAnswer: { -readonly [K in keyof RouteFacts]: RouteFacts[K] } = { kind: FactKind.UNICAST, oif: null, gateway: null, mtu: 0, hopLimit: LOCAL_HOP_LIMIT };

  private facts(kind: FactKind, oif: IfaceFacts | null, gateway: Uint32Array | null, mtu = oif?.mtu ?? 0): RouteFacts {
    const r = this.routeAnswer;
    r.kind = kind;
    r.oif = oif;
    r.gateway = gateway;
    r.mtu = mtu;
    r.hopLimit = LOCAL_HOP_LIMIT;
    return r;
  }

  iface(name: string): IfaceFacts | null {
    const b = this.router('iface');
    for (let i = 1; i < b.interfaces.length; i++) if (b.interfaces[i].name === name) return this.factsOf(b.interfaces[i]);
    return null;
  }

  /** Facts per interface index, rebuilt only when the device's state changes. */
  private readonly ifaceCache: (IfaceFacts | null)[] = [];

  private factsOf(ri: RouterInterface): IfaceFacts {
    const up = deviceUp(ri);
    const cached = this.ifaceCache[ri.index];
    if (cached && cached.flags.up === up) return cached;
    const made = ifaceFacts(ri, up);
    this.ifaceCache[ri.index] = made;
    return made;
  }

  private router(what: string): ServicesBackend {
    if (this.backend === null) throw new Error(`services.${what}: no router behind these services`);
    return this.backend;
  }

  /** Random words drawn from the OS in blocks of 1 KiB (one syscall per 256 calls). */
  private readonly randomPool = new Uint32Array(256);
  private randomLeft = 0;
  random(): number {
    if (this.randomLeft === 0) {
      const b = randomBytes(1024);
      this.randomPool.set(new Uint32Array(b.buffer, b.byteOffset, 256));
      this.randomLeft = 256;
    }
    return this.randomPool[--this.randomLeft];
  }

  wallNow(): number {
    return Date.now();
  }

  /** Kernel-style lines (LOG, LOGMARK) keep their text as the message; `syslog` keeps the severity. */
  log(level: number, line: string): void {
    const method = syslogToPino(level);
    this.logger[method]({ syslog: level }, line);
  }

  now(): number {
    return this.clock();
  }

  /**
   * Who carries out ApplianceActions: set by the appliance (router/appliance.ts),
   * which owns persistence, conntrack and the process; null = none offered.
   */
  applianceHandler: ((action: ApplianceAction) => boolean) | null = null;

  applianceAction(action: ApplianceAction): boolean {
    return this.applianceHandler?.(action) ?? false;
  }

  /** Conntrack NAT (xt/nat.ts), installed by the appliance with its conntrack; undefined until then. */
  nat: NatService | undefined = undefined;

  /** The event stream `xtr events` subscribes to (router/control.ts). */
  readonly events = new EventHub();

  /** One pino line (`event: kind` plus the fields) and one published event. */
  event(kind: string, fields: EventFields): void {
    this.logger.info({ ...fields, event: kind }, kind);
    this.events.publish({ kind, time: Date.now(), fields });
  }

  /** NFLOG's listeners (`xtr nflog`, router/packet-log.ts). */
  readonly packetLog = new PacketLogHub();

  /**
   * NFLOG: one record to the group's listeners and one `nflog.packet` event
   * to `xtr events` subscribers, built only when either exists. No pino line:
   * NFLOG delivers to listeners, it is not a syslog target (LOG is).
   */
  nflog(pkt: PacketContext, group: number, prefix: string, caplen: number): void {
    const wanted = this.packetLog.wanted(group);
    if (!wanted && this.events.subscribers === 0) return;
    const record = recordOf(pkt, group, prefix, caplen);
    if (wanted) this.packetLog.publish(record);
    if (this.events.subscribers !== 0) this.events.publish({ kind: 'nflog.packet', time: Date.now(), fields: eventFields(record) });
  }
}

/**
 * Whether the interface's device is open. The devices (dataplane/tun.ts,
 * memdev.ts) say so with `closed`, which the PacketDevice contract does not
 * carry; a device without it counts as open.
 */
function deviceUp(ri: RouterInterface): boolean {
  const d = ri.device as { closed?: unknown };
  return d.closed !== true;
}

/**
 * An interface as `ip link` / `ip addr` would show it. A TUN (and the host
 * interface, itself a TUN) is POINTOPOINT,MULTICAST,NOARP as Linux shows
 * tun devices; a TAP is BROADCAST,MULTICAST. An open device is UP with its
 * carrier (RUNNING, LOWER_UP): xtr holds the fd, which is what a tun's
 * carrier means.
 */
function ifaceFacts(ri: RouterInterface, up: boolean): IfaceFacts {
  const tap = ri.kind === 'tap';
  const flags: IfaceFlags = {
    up,
    running: up,
    lowerUp: up,
    broadcast: tap,
    multicast: true,
    pointopoint: !tap,
    loopback: false,
    noarp: !tap,
    promisc: false,
    dynamic: false,
    dormant: false,
  };
  return {
    ref: ri,
    name: ri.name,
    mtu: ri.mtu,
    kind: ri.kind,
    mac: ri.mac,
    addrs4: ri.v4.map((a) => a.addr),
    addrs6: ri.v6.map((a) => a.addr),
    prefixes4: ri.v4.map((a) => a.len),
    prefixes6: ri.v6.map((a) => a.len),
    flags,
  };
}
