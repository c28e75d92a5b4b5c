/**
 * Connection tracking, after the kernel's nf_conntrack.
 *
 * API for the pipeline (the rule engine calls exactly these):
 *
 *   const ct = new Conntrack({ max: 65536 });
 *   // PREROUTING and OUTPUT, after the raw table and before mangle (kernel
 *   // priority NF_IP_PRI_CONNTRACK = -200):
 *   if (ct.in(pkt) === Verdict.DROP) drop the packet;   // table full
 *   // ... rules run; they read pkt.ctState / pkt.ct ...
 *   // At the end of INPUT (local delivery) and POSTROUTING (everything
 *   // leaving), only for packets that were accepted:
 *   ct.confirm(pkt);   // DROP only for a translated flow whose reply tuple was taken
 *   // NAT (conntrack/nat.ts): the nat targets call ct.setBinding(entry, ...) on a
 *   // flow's first packet; the engine calls ct.nat(hook, pkt) after each nat slot.
 *
 *   `in` sets pkt.ct (a ConnEntry or null), pkt.ctState (CtState bits:
 *   NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED) and pkt.ctReply (the
 *   direction the lookup found). Packets with
 *   pkt.notrack set (NOTRACK / CT --notrack in raw) become UNTRACKED.
 *   A packet seen twice (OUTPUT of a packet that already passed PREROUTING
 *   is impossible, but a looped-back local packet is not) is simply looked
 *   up again.
 *   A new flow's entry is created unconfirmed and only enters the table
 *   when `confirm` runs, so a NEW packet dropped by the rules leaves no
 *   entry behind, as in the kernel.
 *
 *   ct.list(now, family?) -> `conntrack -L` text; ct.entries(now); ct.flush();
 *   ct.count(now?); conntrackCommands(ct, () => services.now()) -> a
 *   CommandTable with `conntrack` (-L [-f ipv4|ipv6] [-p proto], -F, -C, -S).
 *   entry.isReply(pkt) tells a packet's direction (conntrack --ctdir): the
 *   lookup's, pkt.ctReply; isReplyDir(entry, pkt) reads it from the wire.
 *
 * Where things live (the kernel's seams), in router/conntrack/:
 *   store.ts      the entries' slabs (struct of arrays by slot, free list, growth)
 *   entry.ts      ConnEntry (implements xt/conn.ts's Conn: a slot's handle), its tuple views, the lookup key
 *   table.ts      Conntrack: hash, in/confirm, expiry, early drop
 *   tcp.ts        the TCP state machine and window tracking
 *   icmp.ts       ICMP/ICMPv6 queries, errors RELATED by their quoted header
 *   fragments.ts  later fragments take their first fragment's state
 *   list.ts       `conntrack -L` text and the `conntrack` command
 *   nat.ts        the NAT seam: where a binding lives, how it is set, where packets meet it
 * This file is the public face: import conntrack from here.
 */
export {
  Conntrack,
  DEFAULT_TIMEOUTS,
  DEFAULT_CONNTRACK_MAX,
  CONNTRACK_MAX_LIMIT,
  CONNTRACK_BUCKETS_LIMIT,
  conntrackOptionsError,
  type ConntrackOptions,
  type Timeouts,
} from './conntrack/table.js';
export { ConnEntry, CtTuple, CtStatus, isReplyDir } from './conntrack/entry.js';
export { TcpCt, TCP_STATE_NAMES } from './conntrack/tcp.js';
export {
  formatEntry,
  conntrackCommands,
  statsLine,
  conntrackReport,
  conntrackStatusLines,
  type ConntrackStats,
  type ConntrackReport,
} from './conntrack/list.js';
export { EntryStore } from './conntrack/store.js';
export { NatManip, NatBind, NO_NAT, NAT_MASK, hookManip, natStatusBit, natTargetTuple, type NatHook } from './conntrack/nat.js';
