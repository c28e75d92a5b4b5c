/**
 * The connection table (the kernel's nf_conntrack_core): the hash of
 * tuples, nf_conntrack_in (look the packet up, hand it to its protocol's
 * tracker, or start a new unconfirmed entry), confirm, expiry and early
 * drop. The per-protocol trackers (tcp.ts, icmp.ts), the fragment memory
 * (fragments.ts) and the NAT seam (nat.ts: setBinding, nat) are called
 * from here and never reach into the hash themselves.
 *
 * Both tuples of a confirmed entry are in the hash, so a packet finds its
 * entry from either direction with one lookup, and the tuple found says the
 * direction. An unconfirmed entry is in no bucket: it belongs to the one
 * packet carrying it until confirm() inserts it (or the packet dies and it
 * is garbage).
 *
 * Expiry is lazy: an entry found past its deadline is treated as absent and
 * freed; each `in` also moves a cursor over two entries of the age list and
 * frees them if dead, so the table does not fill with dead flows.
 * Time is pkt.now (monotonic milliseconds, one clock read per batch).
 */
import { Verdict, CtState, type Family, type Hook, type PacketContext } from '../../xt/packet.js';
import { ConnStatus } from '../../xt/conn.js';
import { ConnEntry, CtKey, type CtTuple, P_ICMP, P_ICMPV6, P_TCP, P_UDP, P_UDPLITE, P_SCTP, P_DCCP } from './entry.js';
import { TcpResult, TcpTracker, tcpMalformed, tcpOpensFlow } from './tcp.js';
import { icmp4IsError, icmp6IsError, icmp6Untracked, icmpReplyType, quotedKey } from './icmp.js';
import { FragmentMemory } from './fragments.js';
import { formatEntry } from './list.js';
import { NAT_MASK, NO_NAT, NatBind, hookManip, natStatusBit, boundReply, type NatHook, NatManip } from './nat.js';

/** The kernel's default timeouts, in seconds (nf_conntrack_*_timeout_* sysctls). */
export const DEFAULT_TIMEOUTS = {
  tcp: [120, 120, 60, 432000, 120, 60, 30, 120, 10, 120] as readonly number[],
  /** Cap for a TCP flow that never saw a reply or has data in flight (the kernel's "unacknowledged" timeout). */
  tcpUnacknowledged: 300,
  /** Cap once the same ACK was seen more than tcp_max_retrans times, or after a zero window. */
  tcpRetrans: 300,
  udp: 30,
  udpStream: 120,
  icmp: 30,
  icmpv6: 30,
  generic: 600,
};
export type Timeouts = typeof DEFAULT_TIMEOUTS;

export interface ConntrackOptions {
  /** Maximum confirmed entries (nf_conntrack_max); default 65536. */
  max?: number;
  /** Hash buckets (rounded up to a power of two); default max / 4. */
  buckets?: number;
  /** Override timeouts (seconds), same shape as DEFAULT_TIMEOUTS. */
  timeouts?: Partial<Timeouts>;
}

/** How many entries one packet may examine from the oldest end (expiry sweep / early drop). */
const SWEEP_PER_PACKET = 2;
const EARLY_DROP_SCAN = 64;
const UDP_STREAM_AFTER_MS = 2000;

/**
 * The tuple hash, kept to 30 bits so it is always a small integer (Smi):
 * a wider value returned from a call V8 does not inline is boxed, one heap
 * number per packet (conntrack-window's heap check caught it after the split).
 */
function hashKey(family: number, proto: number, s: Uint32Array, d: Uint32Array, sport: number, dport: number): number {
  let h = Math.imul(family ^ (proto << 8), 0x01000193);
  for (let i = 0; i < 4; i++) {
    h = Math.imul(h ^ s[i], 0x9e3779b1);
    h = Math.imul(h ^ d[i], 0x85ebca6b);
  }
  h = Math.imul(h ^ ((sport << 16) | dport), 0xc2b2ae35);
  return (h ^ (h >>> 15)) & 0x3fffffff;
}

export class Conntrack {
  readonly max: number;
  private readonly timeouts: Timeouts;
  private readonly buckets: (CtTuple | null)[];
  private readonly bucketMask: number;
  private confirmedCount = 0;
  private oldest: ConnEntry | null = null;
  private newest: ConnEntry | null = null;
  /** Next entry the lazy expiry sweep looks at (null = start over at the oldest). */
  private sweepCursor: ConnEntry | null = null;
  /** Entries dropped because the table was full and nothing could be early-dropped. */
  tableFullDrops = 0;
  /** Entries removed by early drop. */
  earlyDrops = 0;
  /** New entries refused at confirm because their translated reply tuple was taken meanwhile (the kernel's insert_failed). */
  insertFailed = 0;
  /** Confirmed entries with a translated tuple: while 0, a null binding cannot clash and needs no lookup. */
  natConfirmed = 0;

  private readonly tcp: TcpTracker;
  private readonly fragments = new FragmentMemory();
  /** The lookup key being built for the current packet (reused; never escapes). */
  private readonly key = new CtKey();
  /** Applies bindings to packets (nat.ts); NO_NAT until a NAT implementation installs itself. */
  private natHook: NatHook = NO_NAT;

  constructor(opts: ConntrackOptions = {}) {
    this.max = opts.max ?? 65536;
    if (!Number.isInteger(this.max) || this.max < 1) throw new Error(`conntrack: max must be a positive integer, got ${opts.max}`);
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    this.tcp = new TcpTracker(this.timeouts);
    let n = 16;
    const want = opts.buckets ?? Math.ceil(this.max / 4);
    while (n < want) n <<= 1;
    this.buckets = new Array<CtTuple | null>(n).fill(null);
    this.bucketMask = n - 1;
  }

  /** Confirmed entries currently in the table (expired ones are dropped first). */
  count(now?: number): number {
    if (now !== undefined) this.reapAll(now);
    return this.confirmedCount;
  }

  /**
   * nf_conntrack_in: attaches the packet to its connection and sets
   * pkt.ctState. Returns DROP only when a new flow cannot get an entry
   * (table full and nothing early-droppable).
   *
   * A packet the router built as the answer to another (pkt.ctAttached with
   * an entry: services.emit with ctFrom, the router's ICMP errors; the
   * kernel's nf_ct_attach) keeps the entry, ctState (RELATED) and direction
   * it was given: it is not looked up, not tracked (REJECT's RST does not
   * close the flow it answers) and never confirmed, as the kernel ignores
   * an skb that already carries a conntrack. Attached without an entry (the
   * answered packet had none) it is tracked like any other packet, as
   * nf_ct_attach then attaches nothing.
   */
  in(pkt: PacketContext): number {
    if (pkt.ctAttached) {
      if (pkt.ct !== null) return Verdict.ACCEPT;
      pkt.ctAttached = false;
    }
    pkt.ct = null;
    if (pkt.notrack) {
      pkt.ctState = CtState.UNTRACKED;
      return Verdict.ACCEPT;
    }
    this.sweep(pkt.now);
    pkt.ctState = CtState.INVALID;
    // xtr does not reassemble: a later fragment has no ports, so it takes the
    // state its datagram's first fragment got (see docs/compat.md).
    if (pkt.fragmentOffset !== 0) {
      this.fragments.recall(pkt);
      return Verdict.ACCEPT;
    }
    const v = this.track(pkt);
    if (pkt.isFragment) this.fragments.remember(pkt);
    return v;
  }

  private track(pkt: PacketContext): number {
    const now = pkt.now;
    const proto = pkt.proto;
    if (proto === P_TCP) {
      if (tcpMalformed(pkt)) return Verdict.ACCEPT;
    } else if (proto === P_UDP || proto === P_UDPLITE) {
      if (pkt.l4len < 8) return Verdict.ACCEPT;
    } else if (proto === P_SCTP || proto === P_DCCP) {
      if (pkt.l4len < 4) return Verdict.ACCEPT;
    } else if (proto === P_ICMP && pkt.family === 4) {
      if (pkt.l4len < 8) return Verdict.ACCEPT;
      if (icmp4IsError(pkt.icmpType)) return this.related(pkt);
    } else if (proto === P_ICMPV6 && pkt.family === 6) {
      if (pkt.l4len < 8) return Verdict.ACCEPT;
      const t = pkt.icmpType;
      if (icmp6IsError(t)) return this.related(pkt);
      if (icmp6Untracked(t)) {
        pkt.ctState = CtState.UNTRACKED;
        return Verdict.ACCEPT;
      }
    }
    this.key.fromPacket(pkt, pkt.buf, pkt.l4off);
    const t = this.lookup(now);
    if (t === null) return this.createNew(pkt, now);
    const e = t.entry;
    const reply = t.reply;
    if (proto === P_TCP) {
      const r = this.tcp.packet(e, reply ? 1 : 0, pkt, now);
      if (r === TcpResult.INVALID) return Verdict.ACCEPT;
      if (r === TcpResult.REOPEN) {
        this.kill(e);
        return this.createNew(pkt, now);
      }
      if (r === TcpResult.CLOSED) this.kill(e);
      if (reply) e.status |= ConnStatus.SEEN_REPLY;
    } else {
      if (reply) e.status |= ConnStatus.SEEN_REPLY;
      e.expires = now + 1000 * this.timeoutFor(e, now);
    }
    pkt.ct = e;
    pkt.ctReply = reply;
    pkt.ctState = reply || (e.status & ConnStatus.SEEN_REPLY) !== 0 ? CtState.ESTABLISHED : CtState.NEW;
    return Verdict.ACCEPT;
  }

  /**
   * Puts a new flow's entry into the table once its first packet has been
   * accepted (end of INPUT / POSTROUTING). A no-op for anything else,
   * including attached answers (see in()). Returns DROP only for a
   * translated entry whose reply tuple another flow took since its binding
   * was set (nat.ts); ACCEPT otherwise.
   */
  confirm(pkt: PacketContext): number {
    // An attached answer travels against the packet it answers (IP_CT_RELATED_REPLY): it never confirms a flow.
    if (pkt.ctAttached) return Verdict.ACCEPT;
    const e = pkt.ct as ConnEntry | null;
    if (e === null || !(e instanceof ConnEntry) || (e.status & (ConnStatus.CONFIRMED | ConnStatus.DYING)) !== 0) return Verdict.ACCEPT;
    // Another packet of the same new flow may have been confirmed first.
    this.key.fromTuple(e.family, e.proto, e.orig);
    const clash = this.lookup(pkt.now);
    if (clash !== null) {
      pkt.ct = clash.entry;
      pkt.ctReply = clash.reply;
      return Verdict.ACCEPT;
    }
    // Untranslated, repl is orig inverted: free whenever orig is. Translated, it must be checked too.
    if ((e.status & NAT_MASK) !== 0) {
      this.key.fromTuple(e.family, e.proto, e.repl);
      if (this.lookup(pkt.now) !== null) {
        this.insertFailed++;
        pkt.ct = null;
        return Verdict.DROP;
      }
    }
    if (this.confirmedCount >= this.max && !this.earlyDrop(pkt.now)) {
      this.tableFullDrops++;
      pkt.ct = null;
      return Verdict.ACCEPT;
    }
    e.status |= ConnStatus.CONFIRMED;
    if ((e.status & NAT_MASK) !== 0) this.natConfirmed++;
    this.insertTuple(e.orig);
    this.insertTuple(e.repl);
    e.older = this.newest;
    e.newer = null;
    if (this.newest) this.newest.newer = e;
    else this.oldest = e;
    this.newest = e;
    this.confirmedCount++;
    return Verdict.ACCEPT;
  }

  /**
   * Binds `manip` of an unconfirmed entry to addr/port (nat.ts, point 2):
   * its reply tuple becomes the inverse of the translated original and is
   * re-keyed; CLASH if that tuple belongs to a live entry (the entry is
   * then unchanged). addr: IPv4 in word 0, IPv6 as four words; port < 0
   * keeps the port.
   */
  setBinding(entry: ConnEntry, manip: NatManip, addr: Uint32Array, port: number, now: number, force = false): NatBind {
    if ((entry.status & (ConnStatus.CONFIRMED | ConnStatus.DYING)) !== 0) return NatBind.CONFIRMED;
    const done = manip === NatManip.SRC ? ConnStatus.SRC_NAT_DONE : ConnStatus.DST_NAT_DONE;
    if ((entry.status & done) !== 0) return NatBind.ALREADY;
    const k = this.key;
    if (boundReply(entry, manip, addr, port, k)) {
      k.family = entry.family;
      k.proto = entry.proto;
      // force: the kernel's nf_nat_setup_info binds whatever get_unique_tuple left when the range is exhausted; confirm then refuses it (insert_failed).
      if (!force && this.lookup(now) !== null) return NatBind.CLASH;
      const r = entry.repl;
      r.src.set(k.src);
      r.dst.set(k.dst);
      r.sport = k.sport;
      r.dport = k.dport;
      r.hash = hashKey(entry.family, entry.proto, r.src, r.dst, r.sport, r.dport);
      entry.status |= manip === NatManip.SRC ? ConnStatus.SRC_NAT : ConnStatus.DST_NAT;
    }
    entry.status |= done;
    return NatBind.OK;
  }

  /**
   * Whether the reply tuple the entry would have with `manip` bound to
   * addr/port belongs to a live entry (the kernel's nf_nat_used_tuple), also
   * when that is the entry's current, untranslated reply tuple.
   */
  natTaken(entry: ConnEntry, manip: NatManip, addr: Uint32Array, port: number, now: number): boolean {
    const k = this.key;
    const changed = boundReply(entry, manip, addr, port, k);
    // Untranslated and no translated flow in the table: nothing can hold the inverse of a new original tuple.
    if (!changed && (entry.status & NAT_MASK) === 0 && this.natConfirmed === 0) return false;
    k.family = entry.family;
    k.proto = entry.proto;
    return this.lookup(now) !== null;
  }

  /**
   * Forgets every MASQUERADE flow bound through interface `name` (the
   * kernel's masq_device_event / masq_inet_event: the interface went down or
   * its addresses changed, so the bindings name an address it no longer has).
   * Returns how many were removed.
   */
  forgetMasquerade(name: string): number {
    let n = 0;
    for (let e = this.oldest; e !== null; ) {
      const next = e.newer;
      if (e.masqIface === name) {
        this.kill(e);
        n++;
      }
      e = next;
    }
    return n;
  }

  /** Installs the packet rewriter NAT uses (nat.ts, point 3). */
  setNatHook(hook: NatHook | null): void {
    this.natHook = hook ?? NO_NAT;
  }

  /**
   * nf_nat_inet_fn after the nat table (nat.ts, point 3): rewrites pkt by
   * its flow's binding for this hook and direction. ACCEPT at once for a
   * packet without a translated flow.
   */
  nat(hook: Hook, pkt: PacketContext): number {
    const c = pkt.ct;
    if (c === null || !(c instanceof ConnEntry)) return Verdict.ACCEPT;
    if ((c.status & ConnStatus.CONFIRMED) === 0 && !pkt.ctAttached) {
      // The first packet left this hook's nat chains without a binding for its manip: the null binding (nf_nat_inet_fn's alloc_null_binding).
      const m = hookManip(hook);
      if (m >= 0 && (c.status & (m === NatManip.SRC ? ConnStatus.SRC_NAT_DONE : ConnStatus.DST_NAT_DONE)) === 0) {
        if (this.natHook.nullBinding !== undefined) this.natHook.nullBinding(pkt, c, m);
        else c.status |= m === NatManip.SRC ? ConnStatus.SRC_NAT_DONE : ConnStatus.DST_NAT_DONE;
      }
    }
    if ((c.status & NAT_MASK) === 0) return Verdict.ACCEPT;
    const manip = hookManip(hook);
    if (manip < 0 || (c.status & natStatusBit(manip, pkt.ctReply)) === 0) return Verdict.ACCEPT;
    return this.natHook.translate(pkt, c, manip, pkt.ctReply);
  }

  /** Removes every entry (conntrack -F). */
  flush(): void {
    this.buckets.fill(null);
    for (let e = this.oldest; e !== null; e = e.newer) e.status = (e.status & ~ConnStatus.CONFIRMED) | ConnStatus.DYING;
    this.oldest = this.newest = this.sweepCursor = null;
    this.confirmedCount = 0;
    this.natConfirmed = 0;
  }

  /** Live entries, oldest first (expired ones are removed first). */
  entries(now: number): ConnEntry[] {
    this.reapAll(now);
    const out: ConnEntry[] = [];
    for (let e = this.oldest; e !== null; e = e.newer) out.push(e);
    return out;
  }

  /** `conntrack -L` lines (one per entry, each ending in "\n"). */
  list(now: number, family?: Family): string {
    let s = '';
    for (const e of this.entries(now)) if (family === undefined || e.family === family) s += formatEntry(e, now) + '\n';
    return s;
  }

  // ---- internals ----

  private timeoutFor(e: ConnEntry, now: number): number {
    const to = this.timeouts;
    switch (e.proto) {
      case P_UDP:
      case P_UDPLITE:
        if ((e.status & ConnStatus.SEEN_REPLY) !== 0 && now - e.created > UDP_STREAM_AFTER_MS) {
          e.status |= ConnStatus.ASSURED;
          return to.udpStream;
        }
        return to.udp;
      case P_ICMP:
        return e.family === 4 ? to.icmp : to.generic;
      case P_ICMPV6:
        return e.family === 6 ? to.icmpv6 : to.generic;
      default:
        return to.generic;
    }
  }

  private createNew(pkt: PacketContext, now: number): number {
    const k = this.key;
    const proto = k.proto;
    let replyDport = k.dport;
    if (proto === P_TCP) {
      if (!tcpOpensFlow(pkt.tcpFlags)) return Verdict.ACCEPT;
    } else if (proto === P_ICMP || proto === P_ICMPV6) {
      const isIcmpOfFamily = (proto === P_ICMP) === (pkt.family === 4);
      if (isIcmpOfFamily) {
        const r = icmpReplyType(pkt.family, pkt.icmpType);
        if (r < 0) return Verdict.ACCEPT;
        replyDport = (r << 8) | (pkt.icmpCode & 0xff);
      }
    }
    if (this.confirmedCount >= this.max && !this.earlyDrop(now)) {
      this.tableFullDrops++;
      return Verdict.DROP;
    }
    const e = new ConnEntry();
    e.family = k.family;
    e.proto = proto;
    e.orig.src.set(k.src);
    e.orig.dst.set(k.dst);
    e.orig.sport = k.sport;
    e.orig.dport = k.dport;
    e.repl.src.set(k.dst);
    e.repl.dst.set(k.src);
    if (proto === P_ICMP || proto === P_ICMPV6) {
      e.repl.sport = k.sport;
      e.repl.dport = replyDport;
    } else {
      e.repl.sport = k.dport;
      e.repl.dport = k.sport;
    }
    e.created = now;
    if (proto === P_TCP) {
      this.tcp.newFlow(e, pkt);
      // The first packet goes through the tracker like any other (it sets the state and timeout).
      if (this.tcp.packet(e, 0, pkt, now) === TcpResult.INVALID) return Verdict.ACCEPT;
    } else {
      e.expires = now + 1000 * this.timeoutFor(e, now);
    }
    pkt.ct = e;
    pkt.ctReply = false;
    pkt.ctState = CtState.NEW;
    return Verdict.ACCEPT;
  }

  /** ICMP/ICMPv6 error: RELATED to the flow its quoted header belongs to, else INVALID. */
  private related(pkt: PacketContext): number {
    if (!quotedKey(pkt, this.key)) return Verdict.ACCEPT;
    const t = this.lookup(pkt.now);
    if (t === null) return Verdict.ACCEPT;
    pkt.ct = t.entry;
    pkt.ctReply = t.reply;
    pkt.ctState = CtState.RELATED;
    return Verdict.ACCEPT;
  }

  /** Finds the live tuple equal to the key; an expired entry met on the way is removed. */
  private lookup(now: number): CtTuple | null {
    const k = this.key;
    const h = hashKey(k.family, k.proto, k.src, k.dst, k.sport, k.dport);
    const s = k.src;
    const d = k.dst;
    const proto = k.proto;
    const family = k.family;
    const sport = k.sport;
    const dport = k.dport;
    for (let t = this.buckets[h & this.bucketMask]; t !== null; t = t.next) {
      const e = t.entry;
      if (t.hash !== h || e.proto !== proto || e.family !== family || t.sport !== sport || t.dport !== dport) continue;
      const ts = t.src;
      const td = t.dst;
      if (ts[0] !== s[0] || td[0] !== d[0] || ts[1] !== s[1] || ts[2] !== s[2] || ts[3] !== s[3] || td[1] !== d[1] || td[2] !== d[2] || td[3] !== d[3]) continue;
      if (e.expires <= now) {
        this.kill(e);
        return null;
      }
      return t;
    }
    return null;
  }

  private insertTuple(t: CtTuple): void {
    t.hash = hashKey(t.entry.family, t.entry.proto, t.src, t.dst, t.sport, t.dport);
    const i = t.hash & this.bucketMask;
    t.next = this.buckets[i];
    this.buckets[i] = t;
  }

  private removeTuple(t: CtTuple): void {
    const i = t.hash & this.bucketMask;
    let p = this.buckets[i];
    if (p === t) {
      this.buckets[i] = t.next;
    } else {
      while (p !== null && p.next !== t) p = p.next;
      if (p !== null) p.next = t.next;
    }
    t.next = null;
  }

  /** Removes a confirmed entry from the table (no-op for an unconfirmed one). */
  private kill(e: ConnEntry): void {
    if (!e.confirmed) return;
    e.status = (e.status & ~ConnStatus.CONFIRMED) | ConnStatus.DYING;
    if ((e.status & NAT_MASK) !== 0) this.natConfirmed--;
    this.removeTuple(e.orig);
    this.removeTuple(e.repl);
    if (e.older) e.older.newer = e.newer;
    else this.oldest = e.newer;
    if (e.newer) e.newer.older = e.older;
    else this.newest = e.older;
    if (this.sweepCursor === e) this.sweepCursor = e.newer;
    e.older = e.newer = null;
    this.confirmedCount--;
  }

  /**
   * Frees expired entries lazily: each packet moves a cursor over up to
   * SWEEP_PER_PACKET entries of the age list (wrapping), removing dead ones.
   */
  private sweep(now: number): void {
    for (let i = 0; i < SWEEP_PER_PACKET; i++) {
      const e = this.sweepCursor ?? this.oldest;
      if (e === null) return;
      this.sweepCursor = e.newer;
      if (e.expires <= now) this.kill(e);
    }
  }

  private reapAll(now: number): void {
    for (let e = this.oldest; e !== null; ) {
      const next = e.newer;
      if (e.expires <= now) this.kill(e);
      e = next;
    }
  }

  /**
   * The kernel's early_drop: when the table is full, evict one entry that
   * is not ASSURED (or already expired), looking at a bounded number of
   * entries. False if none qualifies - the new flow is then refused.
   */
  private earlyDrop(now: number): boolean {
    let e = this.oldest;
    for (let i = 0; i < EARLY_DROP_SCAN && e !== null; i++, e = e.newer) {
      if (e.expires <= now || (e.status & ConnStatus.ASSURED) === 0) {
        this.kill(e);
        this.earlyDrops++;
        return true;
      }
    }
    return false;
  }
}
