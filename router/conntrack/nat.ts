/**
 * The NAT seam: where address translation (issue 8: SNAT, DNAT, MASQUERADE,
 * REDIRECT, NETMAP) plugs into conntrack, after the kernel's nf_nat. Nothing
 * here translates a packet; it fixes where a translation is stored, how the
 * table learns about it, and where packets meet it, so NAT lands without
 * reshaping the table.
 *
 * 1. Where a binding lives: in the entry's two tuples, nowhere else.
 *    `orig` stays the tuple the first packet had before any translation;
 *    `repl` is the inverse of the *translated* original, i.e. exactly what
 *    replies carry on the wire. Without NAT, repl = inverse(orig). With
 *    SNAT 10.0.0.1:1000 -> 192.0.2.1:2000 towards 198.51.100.7:80:
 *      orig  src=10.0.0.1     dst=198.51.100.7 sport=1000 dport=80
 *      repl  src=198.51.100.7 dst=192.0.2.1    sport=80   dport=2000
 *    so a reply to the translated address is found by the ordinary lookup,
 *    and `conntrack -L` prints both tuples as conntrack-tools does.
 *    Status bits (xt/conn.ts ConnStatus, the kernel's IPS_*): SRC_NAT /
 *    DST_NAT when that manip changed the tuple, SRC_NAT_DONE / DST_NAT_DONE
 *    once it was decided (also for a null binding, which changes nothing).
 *
 * 2. When a binding is set: only on an unconfirmed entry, i.e. while its
 *    first packet walks the nat chains (PREROUTING/OUTPUT decide the
 *    destination, INPUT/POSTROUTING the source), through
 *    `Conntrack.setBinding(entry, manip, addr, port, now)` (the kernel's
 *    nf_nat_setup_info + nf_conntrack_alter_reply). It rewrites the side
 *    of `repl` that the manip owns and recomputes repl's hash. An
 *    unconfirmed entry is in no bucket, so nothing has to be moved: confirm
 *    inserts `repl` under its new key. A candidate whose reply tuple is
 *    already taken by a live entry (either direction) is refused with
 *    NatBind.CLASH and leaves the entry untouched: the target then tries
 *    the next address/port of its range, as the kernel's get_unique_tuple
 *    loops on nf_nat_used_tuple. Confirm checks a translated entry's reply
 *    tuple once more (another flow may have taken it meanwhile) and refuses
 *    the entry with DROP, as __nf_conntrack_confirm does (insertFailed).
 *
 * 3. Where packets are translated: `Conntrack.nat(hook, pkt)`, the
 *    kernel's nf_nat_inet_fn after the nat table: the engine calls it in
 *    each hook right after the nat table's slot, for every packet (only
 *    NEW ones walk the nat chains; every packet of a flow, both
 *    directions, is rewritten from its entry). Which manip a hook does is
 *    hookManip(); in the reply direction the status bit is swapped (a flow
 *    that was SNATed has its replies' destination rewritten in PREROUTING).
 *    When the entry has the bit, the installed NatHook rewrites the packet
 *    to the inverse of the other direction's tuple (nf_nat_manip_pkt; the
 *    rewriting itself is dataplane/mangle.ts). Without any binding the
 *    call is one status test and returns ACCEPT; the default hook is
 *    NO_NAT. The direction is the lookup's (pkt.ctReply, the kernel's
 *    IP_CT_IS_REPLY), not recomputed from addresses: once a packet has
 *    been rewritten its addresses no longer tell.
 *    Engine wiring (router/netfilter/engine.ts, owned elsewhere; issue 8):
 *      PREROUTING/OUTPUT after `nat` (-100), INPUT/POSTROUTING after `nat` (100):
 *        if (f.ctInUse && ct !== null && ct.nat(hook, pkt) === Verdict.DROP) return Verdict.DROP;
 *      and confirm's return value honoured (DROP on a reply-tuple clash).
 *
 * Non-goals here: choosing addresses and ports, the targets, rewriting
 * bytes, MASQUERADE's interface bookkeeping (the store's masq slab, an
 * interface name index per entry).
 */
import { Hook, Verdict, type PacketContext } from '../../xt/packet.js';
import { ConnStatus } from '../../xt/conn.js';
import { P_ICMP, P_ICMPV6, hasPorts, type ConnEntry, type CtTuple } from './entry.js';
import type { EntryStore } from './store.js';

/** Which side of a tuple a manip rewrites (the kernel's nf_nat_manip_type, same numbers). */
export const enum NatManip {
  SRC = 0,
  DST = 1,
}

/** HOOK2MANIP: PREROUTING and OUTPUT translate destinations, INPUT and POSTROUTING sources; FORWARD none (-1). */
export function hookManip(hook: Hook): number {
  switch (hook) {
    case Hook.PREROUTING:
    case Hook.OUTPUT:
      return NatManip.DST;
    case Hook.INPUT:
    case Hook.POSTROUTING:
      return NatManip.SRC;
    default:
      return -1;
  }
}

/** Either binding changed a tuple (IPS_NAT_MASK). */
export const NAT_MASK = ConnStatus.SRC_NAT | ConnStatus.DST_NAT;

/**
 * The status bit that says packets of direction `reply` at a hook doing
 * `manip` must be rewritten (nf_nat_packet: the bit of the manip, swapped
 * for the reply direction).
 */
export function natStatusBit(manip: NatManip, reply: boolean): number {
  const bit = manip === NatManip.SRC ? ConnStatus.SRC_NAT : ConnStatus.DST_NAT;
  return reply ? bit ^ NAT_MASK : bit;
}

/** What setBinding made of a candidate. */
export const enum NatBind {
  /** Bound (repl rewritten and re-keyed, status bits set). */
  OK = 0,
  /** The candidate's reply tuple belongs to a live entry: try another. */
  CLASH = 1,
  /** The entry is already in the table: bindings are set on a flow's first packet only. */
  CONFIRMED = 2,
  /** This manip was already decided for the entry (its *_NAT_DONE bit is set). */
  ALREADY = 3,
}

/**
 * Applies a flow's binding to one packet (the kernel's nf_nat_manip_pkt).
 * Called by Conntrack.nat only when the entry has the status bit for this
 * hook and direction. The packet must become the inverse of the other
 * direction's tuple (natTargetTuple): for SRC its source is set from that
 * tuple's destination (and port), for DST its destination from that
 * tuple's source. Returns a Verdict (DROP when the packet cannot be
 * rewritten, e.g. truncated).
 */
export interface NatHook {
  translate(pkt: PacketContext, entry: ConnEntry, manip: NatManip, reply: boolean): number;
  /**
   * The null binding of an unconfirmed entry whose first packet left the
   * nat chains of a hook doing `manip` unbound (alloc_null_binding): keeps
   * the tuple unless another flow's translation took it. Absent = just
   * mark the manip done.
   */
  nullBinding?(pkt: PacketContext, entry: ConnEntry, manip: NatManip): void;
}

/** The hook installed until NAT exists: bindings cannot be set by any target yet, so it is never reached in service. */
export const NO_NAT: NatHook = {
  translate(): number {
    return Verdict.ACCEPT;
  },
};

/** The tuple whose inverse a packet of direction `reply` is rewritten to. */
export function natTargetTuple(entry: ConnEntry, reply: boolean): CtTuple {
  return reply ? entry.orig : entry.repl;
}

/**
 * Writes into `out` (a lookup key: words = src then dst, sport, dport) the
 * reply tuple slot `s` of the store would have with `manip` bound to
 * addr/port, starting from its current repl (so a DST binding after an SRC
 * one keeps both). Returns whether that differs from the current repl.
 * `port` < 0 keeps the port; for ICMP the query id is the port of the SRC
 * manip only (it is in both tuples' sport), for protocols without ports it
 * is ignored.
 */
export function boundReply(st: EntryStore, s: number, manip: NatManip, addr: Uint32Array, port: number, out: { words: Uint32Array; sport: number; dport: number }): boolean {
  const a = st.addr;
  const o = (2 * s + 1) * 8;
  const w = out.words;
  for (let i = 0; i < 8; i++) w[i] = a[o + i];
  const p = st.ports[2 * s + 1];
  const rsport = p >>> 16;
  const rdport = p & 0xffff;
  out.sport = rsport;
  out.dport = rdport;
  const words = st.family[s] === 4 ? 1 : 4;
  const proto = st.proto[s];
  if (manip === NatManip.SRC) {
    // The new source of the original direction is where replies go.
    for (let i = 0; i < words; i++) w[4 + i] = addr[i];
    if (port >= 0) {
      if (hasPorts(proto)) out.dport = port;
      else if (proto === P_ICMP || proto === P_ICMPV6) out.sport = port;
    }
  } else {
    // The new destination of the original direction is where replies come from.
    for (let i = 0; i < words; i++) w[i] = addr[i];
    if (port >= 0 && hasPorts(proto)) out.sport = port;
  }
  for (let i = 0; i < 8; i++) if (w[i] !== a[o + i]) return true;
  return out.sport !== rsport || out.dport !== rdport;
}
