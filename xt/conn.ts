/**
 * What an extension may see of a tracked connection (the kernel's struct
 * nf_conn as x_tables modules read it). router/conntrack's entry implements
 * this; modules never import the router's entry type, so conntrack's table,
 * trackers and NAT can change shape without touching an extension.
 */
import type { Family, PacketContext } from './packet.js';

/**
 * One direction of a flow: addresses (IPv4 in word 0) and ports (ICMP: id in
 * sport, type<<8|code in dport). The router's table keeps entries in slabs
 * (router/conntrack/store.ts): a tuple is a view copied out on each read of
 * `orig`/`repl`, shared by all entries, so read what you need at once and
 * copy what you keep.
 */
export interface ConnTuple {
  readonly src: Uint32Array;
  readonly dst: Uint32Array;
  readonly sport: number;
  readonly dport: number;
}

/** Status bits, numbered as the kernel's IPS_* (conntrack --ctstatus names them). */
export const enum ConnStatus {
  EXPECTED = 1 << 0,
  SEEN_REPLY = 1 << 1,
  ASSURED = 1 << 2,
  CONFIRMED = 1 << 3,
  SRC_NAT = 1 << 4,
  DST_NAT = 1 << 5,
  SEQ_ADJUST = 1 << 6,
  SRC_NAT_DONE = 1 << 7,
  DST_NAT_DONE = 1 << 8,
  DYING = 1 << 9,
}

export interface Conn {
  readonly family: Family;
  readonly proto: number;
  /** The tuple as the first packet had it, and the tuple replies carry. */
  readonly orig: ConnTuple;
  readonly repl: ConnTuple;
  readonly status: number;
  /** ctmark (CONNMARK / connmark); writable. */
  mark: number;
  /** Seconds until expiry at `now` (ms, the packet clock), as conntrack -L prints it. */
  remaining(now: number): number;
  /** True if `pkt` travels in this flow's reply direction. */
  isReply(pkt: PacketContext): boolean;
}
