/**
 * The router's interfaces at run time: the config's TUN/TAP links plus the
 * host interface (local delivery), each with its device, addresses as
 * integers, neighbour cache (TAP), transmit queue and drop counters.
 *
 * A RouterInterface is the InterfaceRef the pipeline hands to netfilter
 * (`ctx.inIf`/`ctx.outIf`), so rules and the router look at the same object;
 * `index` is dense from 1 in config order, the host interface last.
 */
import type { PacketDevice } from '../dataplane/device.js';
import { DROP_REASON_NAMES } from '../dataplane/drop.js';
import { parseMac } from '../dataplane/bytes.js';
import type { InterfaceConfig } from './config.js';
import type { InterfaceRef } from '../xt/packet.js';
import type { LinkAddress4, LinkAddress6, NeighborCache } from './neighbor.js';
import { parsePrefix } from './routing.js';

/**
 * Why the router dropped a packet: the codec's reasons (dataplane/drop.ts,
 * below 64) keep their numbers; the router's own start at 64 so the codec
 * can add reasons without renumbering these.
 */
export const ROUTER_DROP_BASE = 64;
export const enum RouterDrop {
  /** No route to the destination (ICMP net unreachable sent). */
  NO_ROUTE = 64,
  /** TTL / hop limit exhausted (ICMP time exceeded sent). */
  TTL_EXCEEDED,
  /** Larger than the egress MTU and not fragmentable (frag-needed / packet-too-big sent). */
  TOO_BIG,
  /** A netfilter hook returned DROP. */
  NETFILTER,
  /** A TAP frame addressed to another station's MAC. */
  OTHER_HOST,
  /** A TAP frame of an ethertype the router does not handle (VLAN, LLDP, ...). */
  UNKNOWN_ETHERTYPE,
  /** An invalid ARP / NDP message. */
  BAD_NEIGHBOR_MSG,
  /** Multicast or broadcast destination: not forwarded (no multicast routing). */
  MULTICAST,
  /** IPv6 link-local source or destination: never forwarded (RFC 4291 2.5.6). */
  LINK_LOCAL,
  /** The next hop did not answer ARP / neighbour solicitation. */
  NEIGHBOR_FAILED,
  /** Local delivery with neither a host interface nor an ingress TUN to hand it to. */
  NO_LOCAL_DELIVERY,
  /** No room left in the scratch buffer for a packet xtr builds (fragments, ICMP). */
  SCRATCH_FULL,
  /** An IPv4 packet that would need fragments beyond what the scratch buffer or the header allows. */
  FRAGMENTATION_FAILED,
  /** Impossible source or destination from a link (0/8, 127/8, multicast source; ::1, multicast source). */
  MARTIAN,
  /** IPv4 loose/strict source route option (the kernel's accept_source_route=0). */
  SOURCE_ROUTE,
  /** An exception in a hook or extension while the packet was processed (logged). */
  INTERNAL_ERROR,
  /** A fragment reassembly refused: overlap, duplicate, inconsistent end, oversize datagram, no memory. */
  REASSEMBLY,
  /** A clone (TEE, services.dup) whose gateway is not on-link (as nf_dup's route lookup failing: lost silently). */
  DUP_NOT_ON_LINK,
  /** A pure TCP SYN shed while the router was overloaded (Router.synBudget in forward.ts). */
  NEW_FLOW_SHED,
}
const ROUTER_DROP_NAMES = [
  'no_route',
  'ttl_exceeded',
  'too_big',
  'netfilter',
  'other_host',
  'unknown_ethertype',
  'bad_neighbor_message',
  'multicast',
  'link_local',
  'neighbor_failed',
  'no_local_delivery',
  'scratch_full',
  'fragmentation_failed',
  'martian',
  'source_route',
  'internal_error',
  'reassembly',
  'dup_not_on_link',
  'new_flow_shed',
];
/** Counter names indexed by reason; unused numbers are empty strings. */
export const DROP_NAMES: readonly string[] = (() => {
  const names: string[] = new Array<string>(ROUTER_DROP_BASE).fill('');
  DROP_REASON_NAMES.forEach((n, i) => (names[i] = n));
  return [...names, ...ROUTER_DROP_NAMES];
})();
export const DROP_COUNT = DROP_NAMES.length;

/** Room before every packet xtr builds in scratch, for an Ethernet header. */
export const SCRATCH_HEADROOM = 16;

export class RouterInterface implements InterfaceRef {
  /** The MAC as a 48-bit number (TAP), -1 for TUN and host. */
  readonly macValue: number;
  readonly mac: Uint8Array | null;
  /** The router's IPv4 addresses on this link, as (address, prefix length). */
  readonly v4: LinkAddress4[] = [];
  readonly v6: LinkAddress6[] = [];
  /** Source for ICMP errors sent about packets that arrived here (0 = none); changed only by setAddresses. */
  icmpSource4: number;
  icmpSource6: Uint32Array | null;
  neighbors: NeighborCache | null = null;

  /** Transmit queue: packets (offset, length) in the router's one buffer, flushed once per batch. */
  readonly txOffsets: Uint32Array;
  readonly txLengths: Uint32Array;
  txCount = 0;

  /** Drops by reason (RouterDrop / DropReason); counted on the interface the packet came from. */
  readonly drops = new Float64Array(DROP_COUNT);
  /** Packets and bytes the router handed to the device (accepted by it). */
  txPackets = 0;
  txBytes = 0;

  constructor(
    readonly name: string,
    readonly index: number,
    readonly kind: 'tun' | 'tap' | 'host',
    readonly mtu: number,
    readonly device: PacketDevice,
    readonly config: InterfaceConfig | null,
    txCapacity: number,
  ) {
    this.macValue = config?.mac ? parseMac(config.mac) : -1;
    if (this.macValue >= 0) {
      const m = new Uint8Array(6);
      for (let i = 0; i < 6; i++) m[i] = Math.floor(this.macValue / 2 ** (8 * (5 - i))) & 0xff;
      this.mac = m;
    } else {
      this.mac = null;
    }
    this.icmpSource4 = 0;
    this.icmpSource6 = null;
    this.setAddresses(config?.addresses ?? []);
    this.txOffsets = new Uint32Array(txCapacity);
    this.txLengths = new Uint32Array(txCapacity);
  }

  /**
   * Replaces the router's addresses on this link (at construction, and on a config reload:
   * router/reload.ts). The lists are changed in place because the neighbour cache holds them.
   */
  setAddresses(addresses: readonly string[]): void {
    this.v4.length = 0;
    this.v6.length = 0;
    for (const a of addresses) {
      const p = parsePrefix(a, true)!;
      if (p.family === 4) this.v4.push({ addr: p.addr, len: p.len });
      else this.v6.push({ addr: p.addr, len: p.len });
    }
    this.icmpSource4 = this.v4.length ? this.v4[0].addr : 0;
    this.icmpSource6 = this.v6.length ? this.v6[0].addr : null;
  }

  /** Drop counters with names, zero entries left out. */
  dropsByName(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 1; i < DROP_COUNT; i++) if (this.drops[i] && DROP_NAMES[i]) out[DROP_NAMES[i]] = this.drops[i];
    return out;
  }
}
