/**
 * What a NAT target asks of conntrack (the kernel's nf_nat_setup_info with a
 * struct nf_nat_range2): "bind this packet's flow, for this manip, to an
 * address/port chosen from this range". SNAT, DNAT, MASQUERADE, REDIRECT and
 * NETMAP (modules/) build a range and call RouterServices.nat.setup();
 * router/conntrack (nat-core.ts) chooses a unique tuple inside it as the
 * kernel's get_unique_tuple does and stores the binding in the flow's entry.
 * Everything after the first packet (rewriting later packets and ICMP errors)
 * is conntrack's business, not the target's.
 */
import type { PacketContext } from './packet.js';

/** The kernel's NF_NAT_RANGE_* flags (same numbers). */
export const enum NatRangeFlag {
  MAP_IPS = 1 << 0,
  PROTO_SPECIFIED = 1 << 1,
  PROTO_RANDOM = 1 << 2,
  PERSISTENT = 1 << 3,
  PROTO_RANDOM_FULLY = 1 << 4,
  PROTO_OFFSET = 1 << 5,
  NETMAP = 1 << 6,
}

/** Which end of the flow the binding rewrites (NF_NAT_MANIP_SRC / _DST, same numbers as router/conntrack's NatManip). */
export const enum NatSide {
  SRC = 0,
  DST = 1,
}

/** struct nf_nat_range2: addresses (IPv4 in word 0) and ports, host order. */
export interface NatRange {
  flags: number;
  readonly minAddr: Uint32Array;
  readonly maxAddr: Uint32Array;
  minPort: number;
  maxPort: number;
  /** PROTO_OFFSET's base port (DNAT's `:a-b/base`). */
  basePort: number;
}

export function newNatRange(): NatRange {
  return { flags: 0, minAddr: new Uint32Array(4), maxAddr: new Uint32Array(4), minPort: 0, maxPort: 0, basePort: 0 };
}

export interface NatSetupOptions {
  /**
   * MASQUERADE: the interface (config name) whose address the binding uses;
   * the flow is forgotten when that interface goes down or its addresses
   * change (the kernel's nat->masq_index and masq_device_event/inet_event).
   */
  readonly masqIface?: string;
}

export interface NatService {
  /**
   * Binds `side` of pkt's flow (a flow's first packet, in the nat table) to a
   * tuple from `range`. Returns a Verdict: ACCEPT once bound (also when the
   * side was already decided), DROP when the packet has no flow to bind. A
   * range with no free tuple binds a taken one, as the kernel does: the flow
   * is then refused at confirm and counted as insert_failed.
   */
  setup(pkt: PacketContext, side: NatSide, range: NatRange, opts?: NatSetupOptions): number;
  /**
   * Forgets every flow a MASQUERADE binding tied to interface `name`
   * (NatSetupOptions.masqIface): its address changed or it went down.
   * Returns how many flows were removed.
   */
  forgetInterface?(name: string): number;
}
