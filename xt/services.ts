/**
 * What the router offers extensions at packet time: emitting packets it
 * builds (REJECT, TARPIT, DELUDE, ECHO), cloning (TEE), facts about routes
 * and interfaces, ICMP errors through the router's one rate limiter,
 * randomness and the clock, and the log.
 *
 * These are the kernel's helpers as x_tables modules call them
 * (nf_ct_attach + ip_local_out, nf_dup_ipv4/6, ip_route_output, dev_get_by_name,
 * icmp_send, get_random_u32); an extension never reaches into the router.
 */
import type { Family, InterfaceRef, PacketContext } from './packet.js';
import type { NatService } from './nat.js';

/** How an emitted packet enters the router. */
export interface EmitOptions {
  readonly family: Family;
  /**
   * The packet this one answers: the emitted packet is attached to that
   * packet's flow as the kernel's nf_ct_attach does (REJECT, TARPIT), so it
   * traverses OUTPUT/POSTROUTING as part of the flow (ESTABLISHED/RELATED in
   * the reply direction) instead of as a new one.
   */
  readonly ctFrom?: PacketContext;
  /** Leave the packet untracked (as a raw-table NOTRACK would). */
  readonly untracked?: boolean;
  /**
   * Send to this next hop (IPv4 as word 0) instead of routing on the
   * destination; the packet still goes through OUTPUT/POSTROUTING unless
   * `duplicate` is set.
   */
  readonly gateway?: Uint32Array;
  /** Leave through this interface (config name). */
  readonly oif?: string;
  /**
   * The packet is a clone (TEE): it skips every hook and is never cloned
   * again (the kernel's nf_skb_duplicated).
   */
  readonly duplicate?: boolean;
  /** nfmark the packet starts with. */
  readonly mark?: number;
}

/** How a clone is sent (nf_dup_ipv4 / nf_dup_ipv6). */
export interface DupOptions {
  /** Next hop the clone is sent to (IPv4 as word 0). */
  readonly gateway: Uint32Array;
  /** Interface the clone must leave by (config name); absent = the route to the gateway decides. */
  readonly oif?: string;
}

export const enum RouteKind {
  /** Reached through a next hop or directly on a link. */
  UNICAST = 0,
  /** One of xtr's own addresses (delivered locally). */
  LOCAL = 1,
  BROADCAST = 2,
  MULTICAST = 3,
  UNREACHABLE = 4,
}

/** Flags of an interface, as `ip link` shows them (IFF_*). */
export interface IfaceFlags {
  readonly up: boolean;
  readonly running: boolean;
  readonly lowerUp: boolean;
  readonly broadcast: boolean;
  readonly multicast: boolean;
  readonly pointopoint: boolean;
  readonly loopback: boolean;
  readonly noarp: boolean;
  readonly promisc: boolean;
  readonly dynamic: boolean;
  readonly dormant: boolean;
}

/** An interface as an extension may know it (iface, TCPMSS, MASQUERADE, REDIRECT). */
export interface IfaceFacts {
  readonly ref: InterfaceRef;
  readonly name: string;
  readonly mtu: number;
  readonly kind: 'tun' | 'tap' | 'host';
  readonly mac: Uint8Array | null;
  /** The interface's own addresses, primary first (IPv4 as word 0). */
  readonly addrs4: readonly number[];
  readonly addrs6: readonly Uint32Array[];
  /** Prefix length of each address, in the same order. */
  readonly prefixes4: readonly number[];
  readonly prefixes6: readonly number[];
  readonly flags: IfaceFlags;
}

/** Where a destination is sent (ip_route_output's answer). */
export interface RouteFacts {
  readonly kind: RouteKind;
  /** The interface the route leaves by (null for LOCAL and UNREACHABLE). */
  readonly oif: IfaceFacts | null;
  /** Next hop, or the destination itself when on-link (IPv4 as word 0). */
  readonly gateway: Uint32Array | null;
  /** Path MTU towards the destination (the interface MTU unless a lower one was learnt). */
  readonly mtu: number;
  /** The TTL / hop limit a locally generated packet gets (ip_default_ttl / hop_limit). */
  readonly hopLimit: number;
}

/**
 * Something an extension may ask the appliance to do to itself (SYSRQ's keys:
 * in an appliance the "machine" a remote SysRq acts on is xtr). The router
 * answers whether the action is offered where it runs; the action happens
 * after the packet that asked for it has been handled, never inside it, and
 * actions run one after another in the order asked (a `save` has reached the
 * disk before the action asked after it starts).
 *
 *  - `save`: write the rule set and extension state now;
 *  - `restart`: save, stop and start xtr again;
 *  - `stop`: save and stop xtr;
 *  - `flush-conntrack`: forget every tracked connection (`xtr conntrack -F`);
 *  - `status`: write `xtr status` to the log.
 */
export type ApplianceAction = 'save' | 'restart' | 'stop' | 'flush-conntrack' | 'status';

/**
 * A structured event field: what an extension reports about something that
 * happened (an address, a port, a rule name, a count). Strings at the edge,
 * as the log line and the `xtr events` stream carry them.
 */
export type EventFields = Readonly<Record<string, string | number | boolean>>;

export interface RouterServices {
  /**
   * Sends a complete IP packet (bytes copied) into the OUTPUT path as locally
   * generated, shaped by `how`. Returns false when it could not be queued.
   */
  emit(bytes: Uint8Array, offset: number, length: number, how: EmitOptions): boolean;
  /** Old form of emit(): a locally generated packet with no flow attached. */
  emitLocal(bytes: Uint8Array, offset: number, length: number, family: Family): void;
  /**
   * Clones the packet in `pkt` (as it is now) and sends the clone to the
   * gateway without any hook, untracked, never cloned again; TTL/hop limit
   * decremented when taken before routing (PREROUTING/INPUT), as the kernel's
   * nf_dup does. A gateway that is not on-link loses the clone silently.
   * Returns whether the clone was sent.
   */
  dup(pkt: PacketContext, how: DupOptions): boolean;
  /**
   * The route a locally generated packet to `dst` would take (IPv4 as word 0),
   * or null if none. Asked per packet (ECHO, TCPMSS, MASQUERADE), so the
   * answer is the services' one scratch record, like a codec view: valid
   * until the next route() call; copy what must outlive it.
   */
  route(family: Family, dst: Uint32Array): RouteFacts | null;
  /** The interface with this config name, or null. */
  iface(name: string): IfaceFacts | null;
  /**
   * Sends an ICMP/ICMPv6 error about `pkt` (type, code, info = the pointer,
   * MTU or 0) through the router's one rate limiter, as the kernel's
   * icmp_send / icmpv6_send; never about an ICMP error, a fragment other
   * than the first, or a non-unicast packet. The error is attached to the
   * packet's flow (RELATED). Returns whether one was sent.
   */
  icmpError(pkt: PacketContext, type: number, code: number, info: number): boolean;
  /** 32 random bits (get_random_u32); deterministic under the test harness. */
  random(): number;
  /** Writes a kernel-style log line (LOG, LOGMARK, ...). level: syslog 0..7. */
  log(level: number, line: string): void;
  /** Monotonic milliseconds (the packet clock: pkt.now comes from it). */
  now(): number;
  /** Wall-clock milliseconds since the epoch (SPA minutes, saved state). */
  wallNow(): number;
  /**
   * Asks the appliance to act on itself (see ApplianceAction), queued to run
   * after the current packet. Returns false when the appliance does not offer
   * the action where it runs (an embedded router without a process to stop).
   */
  applianceAction(action: ApplianceAction): boolean;
  /**
   * Reports something that happened (pknock's open/close/failed/refused
   * knocks, ...) as a structured event: one log line and one JSON line to
   * every `xtr events` subscriber of the control socket. `kind` is
   * "<extension>.<what>" ("pknock.open"). Never blocks the packet path: a
   * subscriber that does not keep up loses events (counted), the packet does
   * not wait.
   */
  event(kind: string, fields: EventFields): void;
  /**
   * Hands `pkt` to the packet log's listeners of `group` (NFLOG; the
   * kernel's nfnetlink_log): the first `caplen` bytes of the IP packet
   * (l3off onward) with its original length, `prefix`, hook, in/out
   * interfaces, mark and the time (`xtr nflog -g N` writes them as pcap,
   * `xtr events` shows one `nflog.packet` line each). Without a listener it
   * costs one check and copies nothing, as the kernel drops a message no one
   * listens for. Never blocks the packet path.
   */
  nflog(pkt: PacketContext, group: number, prefix: string, caplen: number): void;
  /**
   * Conntrack NAT for the nat targets (SNAT, DNAT, MASQUERADE, REDIRECT,
   * NETMAP; xt/nat.ts): set by whoever owns conntrack (router/appliance.ts
   * installs router/conntrack's NatCore). Absent where there is no
   * connection tracking (a target then drops what it cannot bind).
   */
  nat?: NatService;
}
