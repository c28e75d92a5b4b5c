/**
 * The connection table (the kernel's nf_conntrack_core): the hash of
 * tuples, nf_conntrack_in (look the packet up, hand it to its protocol's
 * tracker, or start a new unconfirmed entry), confirm, expiry and early
 * drop. The per-protocol trackers (tcp.ts, icmp.ts), the fragment memory
 * (fragments.ts) and the NAT seam (nat.ts: setBinding, nat) are called
 * from here and never reach into the hash themselves.
 *
 * Entries live in the slabs of an EntryStore (store.ts): a slot number per
 * entry, a tuple number t = 2 * slot + dir, and the hash chains as tuple
 * numbers in typed arrays (`buckets` here, the store's `next`), so the
 * table allocates nothing per flow once its slabs have grown, and its
 * memory is bounded by max (bytes per entry: store.ts, docs/config.md).
 *
 * Both tuples of a confirmed entry are in the hash, so a packet finds its
 * entry from either direction with one lookup, and the tuple found says the
 * direction. An unconfirmed entry is in no bucket: it belongs to the one
 * packet carrying it until confirm() inserts it (or the packet dies and the
 * store's unconfirmed ring frees the slot).
 *
 * Expiry is lazy: an entry found past its deadline is treated as absent and
 * freed; each `in` also moves a cursor over two entries of the age list and
 * frees them if dead, so the table does not fill with dead flows.
 * Time is pkt.now (monotonic milliseconds, one clock read per batch).
 */
import { Verdict, CtState, type Family, type Hook, type PacketContext } from '../../xt/packet.js';
import { ConnStatus } from '../../xt/conn.js';
import { ConnEntry, CtKey, P_ICMP, P_ICMPV6, P_TCP, P_UDP, P_UDPLITE, P_SCTP, P_DCCP } from './entry.js';
import { TcpResult, TcpTracker, tcpBeLiberal, tcpMalformed, tcpOpensFlow } from './tcp.js';
import { icmp4IsError, icmp6IsError, icmp6Untracked, icmpReplyType, quotedKey } from './icmp.js';
import { FragmentMemory } from './fragments.js';
import { formatEntry } from './list.js';
import { NAT_MASK, NO_NAT, NatBind, hookManip, natStatusBit, boundReply, type NatHook, NatManip } from './nat.js';
import { ADDR_WORDS, EntryStore, FREE_SLACK, PSTATE_BYTES, PSTATE_WORDS, UNCONFIRMED_MAX } from './store.js';

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
  /** Hash buckets (nf_conntrack_buckets / hashsize, rounded up to a power of two); default max / 4. */
  buckets?: number;
  /** Override timeouts (seconds), same shape as DEFAULT_TIMEOUTS. */
  timeouts?: Partial<Timeouts>;
}

export const DEFAULT_CONNTRACK_MAX = 65536;

/**
 * Issue 15 (router/cluster/ct-sync.ts, docs/cluster.md "Conntrack failover"):
 * who is told of a confirmed entry's birth (confirm), of its changes that
 * matter to a standby (TCP state, ASSURED) and of its death (expiry, close,
 * flush), as the kernel's ctnetlink events are; never per packet. Called on
 * the packet path: a listener only queues. In destroyed() the slot's words
 * are still the dead flow's.
 */
export interface CtEvents {
  changed(slot: number): void;
  destroyed(slot: number): void;
}

/**
 * One entry as another gateway's table can take it (exportEntry /
 * importEntry): tuples (NAT mapping included: the reply tuple is the
 * translated one), status bits, TCP state and window words, mark, and the
 * time it had left. `w`/`b` are the store's per-protocol words and bytes
 * (store.ts pstate/pbytes, tcp.ts Tw/Tb layout): only meaningful between
 * gateways running the same build (their lengths are checked).
 */
export interface CtExport {
  /** Family, protocol. */
  f: 4 | 6;
  p: number;
  /** Original then reply tuple: 8 address words (src, dst) and (sport << 16 | dport) each. */
  o: number[];
  r: number[];
  /** Status bits without CONFIRMED / DYING. */
  s: number;
  /** TCP state (tcp.ts TcpCt). */
  ts: number;
  m: number;
  /** ms left before expiry when exported. */
  x: number;
  w: number[];
  b: number[];
  /** MASQUERADE interface or null. */
  q: string | null;
}
/** Bounds of max and buckets: a table of 4M entries is about 1 GB; more is a typo, not a configuration. */
export const CONNTRACK_MAX_LIMIT = 4_194_304;
export const CONNTRACK_BUCKETS_LIMIT = 4_194_304;

/** How many entries one packet may examine from the oldest end (expiry sweep / early drop). */
const SWEEP_PER_PACKET = 2;
const EARLY_DROP_SCAN = 64;
const UDP_STREAM_AFTER_MS = 2000;

/**
 * The hash of a tuple: family, protocol, 8 address words from w[o] (src
 * then dst) and the ports word ((sport << 16) | dport), kept to 30 bits so
 * it is always a small integer (Smi): a wider value returned from a call V8
 * does not inline is boxed, one heap number per packet (conntrack-window's
 * heap check caught it after the split).
 */
function hashWords(family: number, proto: number, w: Uint32Array, o: number, ports: number): number {
  let h = Math.imul(family ^ (proto << 8), 0x01000193);
  for (let i = 0; i < 4; i++) {
    h = Math.imul(h ^ w[o + i], 0x9e3779b1);
    h = Math.imul(h ^ w[o + 4 + i], 0x85ebca6b);
  }
  h = Math.imul(h ^ ports, 0xc2b2ae35);
  return (h ^ (h >>> 15)) & 0x3fffffff;
}

/** Checks max / buckets as the config gives them; returns the error text, or null. */
export function conntrackOptionsError(opts: ConntrackOptions): string | null {
  if (opts.max !== undefined && (!Number.isInteger(opts.max) || opts.max < 1 || opts.max > CONNTRACK_MAX_LIMIT)) {
    return `max must be an integer from 1 to ${CONNTRACK_MAX_LIMIT}, got ${String(opts.max)}`;
  }
  if (opts.buckets !== undefined && (!Number.isInteger(opts.buckets) || opts.buckets < 1 || opts.buckets > CONNTRACK_BUCKETS_LIMIT)) {
    return `buckets must be an integer from 1 to ${CONNTRACK_BUCKETS_LIMIT}, got ${String(opts.buckets)}`;
  }
  return null;
}

export class Conntrack {
  readonly max: number;
  /** Hash buckets in use (a power of two). */
  readonly buckets: number;
  /** The entries' slabs (store.ts). */
  readonly store: EntryStore;
  private readonly timeouts: Timeouts;
  /** First tuple of each bucket, -1 = empty; a tuple's successor is store.next[t]. */
  private readonly heads: Int32Array;
  private readonly bucketMask: number;
  private confirmedCount = 0;
  /** Age list ends (slots), -1 = none. */
  private oldest = -1;
  private newest = -1;
  /** Next entry the lazy expiry sweep looks at (-1 = start over at the oldest). */
  private sweepCursor = -1;

  // Statistics, as `conntrack -S` names them (list.ts prints them).
  /** Packets that found their flow in the table (conntrack -S found). */
  found = 0;
  /** Packets conntrack left INVALID (invalid). */
  invalid = 0;
  /** Packets too short or malformed to be tracked, ICMP errors whose quote could not be read (error). */
  errors = 0;
  /** Entries put into the table (insert). */
  inserted = 0;
  /** Two packets of one new flow both unconfirmed, the second confirm joining the first's entry (clash_resolve). */
  clashResolved = 0;
  /** Entries dropped because the table was full and nothing could be early-dropped. */
  tableFullDrops = 0;
  /** Entries removed by early drop. */
  earlyDrops = 0;
  /** New entries refused at confirm because their translated reply tuple was taken meanwhile (the kernel's insert_failed). */
  insertFailed = 0;
  /** Confirmed entries with a translated tuple: while 0, a null binding cannot clash and needs no lookup. */
  natConfirmed = 0;

  private readonly tcp: TcpTracker;
  private readonly fragments: FragmentMemory;
  /** The lookup key being built for the current packet (reused; never escapes). */
  private readonly key = new CtKey();
  /** Applies bindings to packets (nat.ts); NO_NAT until a NAT implementation installs itself. */
  private natHook: NatHook = NO_NAT;
  /** Issue 15: the cluster's conntrack sync (CtEvents); null = nobody listens. */
  events: CtEvents | null = null;

  constructor(opts: ConntrackOptions = {}) {
    const err = conntrackOptionsError(opts);
    if (err !== null) throw new Error(`conntrack: ${err}`);
    this.max = opts.max ?? DEFAULT_CONNTRACK_MAX;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    // Room for max confirmed entries, the unconfirmed ones in flight, and the slack that delays reuse (store.ts).
    this.store = new EntryStore(this.max + UNCONFIRMED_MAX + FREE_SLACK);
    this.tcp = new TcpTracker(this.timeouts, this.store);
    this.fragments = new FragmentMemory(this.store);
    let n = 16;
    const want = opts.buckets ?? Math.ceil(this.max / 4);
    while (n < want) n <<= 1;
    this.heads = new Int32Array(n).fill(-1);
    this.bucketMask = n - 1;
    this.buckets = n;
  }

  /** Confirmed entries currently in the table (expired ones are dropped first). */
  count(now?: number): number {
    if (now !== undefined) this.reapAll(now);
    return this.confirmedCount;
  }

  /** Bytes the table holds: slabs (grown so far) and buckets. */
  bytes(): number {
    return this.store.bytes() + this.heads.byteLength;
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
      if (pkt.ctState === CtState.INVALID) this.invalid++;
      return Verdict.ACCEPT;
    }
    const v = this.track(pkt);
    // A new flow refused at a full table counts as drop, not invalid (nf_conntrack_in's resolve_normal_ct failing).
    if (pkt.ctState === CtState.INVALID && v === Verdict.ACCEPT) this.invalid++;
    if (pkt.isFragment) this.fragments.remember(pkt);
    return v;
  }

  private track(pkt: PacketContext): number {
    const now = pkt.now;
    const proto = pkt.proto;
    if (proto === P_TCP) {
      if (tcpMalformed(pkt)) return this.error();
    } else if (proto === P_UDP || proto === P_UDPLITE) {
      if (pkt.l4len < 8) return this.error();
    } else if (proto === P_SCTP || proto === P_DCCP) {
      if (pkt.l4len < 4) return this.error();
    } else if (proto === P_ICMP && pkt.family === 4) {
      if (pkt.l4len < 8) return this.error();
      if (icmp4IsError(pkt.icmpType)) return this.related(pkt);
    } else if (proto === P_ICMPV6 && pkt.family === 6) {
      if (pkt.l4len < 8) return this.error();
      const t = pkt.icmpType;
      if (icmp6IsError(t)) return this.related(pkt);
      if (icmp6Untracked(t)) {
        pkt.ctState = CtState.UNTRACKED;
        return Verdict.ACCEPT;
      }
    }
    this.key.fromPacket(pkt, pkt.buf, pkt.l4off);
    const t = this.lookup(now);
    if (t < 0) return this.createNew(pkt, now);
    this.found++;
    const s = t >> 1;
    const reply = (t & 1) === 1;
    const st = this.store;
    const tcpBefore = st.tcpState[s];
    const statusBefore = st.status[s];
    if (proto === P_TCP) {
      const r = this.tcp.packet(s, reply ? 1 : 0, pkt, now);
      if (r === TcpResult.INVALID) return Verdict.ACCEPT;
      if (r === TcpResult.REOPEN) {
        this.kill(s);
        return this.createNew(pkt, now);
      }
      if (r === TcpResult.CLOSED) this.kill(s);
      if (reply) st.status[s] |= ConnStatus.SEEN_REPLY;
    } else {
      if (reply) st.status[s] |= ConnStatus.SEEN_REPLY;
      st.expires[s] = now + 1000 * this.timeoutFor(s, now);
    }
    // Issue 15: a state change or a newly ASSURED flow is an event (not every packet).
    if (this.events !== null && (st.status[s] & ConnStatus.CONFIRMED) !== 0 && (st.tcpState[s] !== tcpBefore || ((st.status[s] ^ statusBefore) & ConnStatus.ASSURED) !== 0)) {
      this.events.changed(s);
    }
    pkt.ct = st.handles[s];
    pkt.ctReply = reply;
    pkt.ctState = reply || (st.status[s] & ConnStatus.SEEN_REPLY) !== 0 ? CtState.ESTABLISHED : CtState.NEW;
    return Verdict.ACCEPT;
  }

  /** A packet conntrack cannot read (the kernel's error counter); it stays INVALID. */
  private error(): number {
    this.errors++;
    return Verdict.ACCEPT;
  }

  /** The slot of pkt.ct if it is an entry of this table, else -1. */
  private slotOf(c: unknown): number {
    return c instanceof ConnEntry && c.store === this.store ? c.slot : -1;
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
    const s = this.slotOf(pkt.ct);
    const st = this.store;
    if (s < 0 || (st.status[s] & (ConnStatus.CONFIRMED | ConnStatus.DYING)) !== 0) return Verdict.ACCEPT;
    // Another packet of the same new flow may have been confirmed first.
    this.key.fromTuple(st, 2 * s);
    const clash = this.lookup(pkt.now);
    if (clash >= 0) {
      this.clashResolved++;
      pkt.ct = st.handles[clash >> 1];
      pkt.ctReply = (clash & 1) === 1;
      return Verdict.ACCEPT;
    }
    // Untranslated, repl is orig inverted: free whenever orig is. Translated, it must be checked too.
    if ((st.status[s] & NAT_MASK) !== 0) {
      this.key.fromTuple(st, 2 * s + 1);
      if (this.lookup(pkt.now) >= 0) {
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
    st.status[s] |= ConnStatus.CONFIRMED;
    this.link(s);
    return Verdict.ACCEPT;
  }

  /** Issue 15: entry `slot` as another gateway's importEntry takes it (null if it is not a live confirmed entry). */
  exportEntry(slot: number, now: number): CtExport | null {
    const st = this.store;
    if (slot < 0 || slot >= st.allocated || (st.status[slot] & ConnStatus.CONFIRMED) === 0) return null;
    const tuple = (t: number): number[] => [...st.addr.subarray(t * 8, t * 8 + 8), st.ports[t] >>> 0];
    return {
      f: st.family[slot] === 6 ? 6 : 4,
      p: st.proto[slot],
      o: tuple(2 * slot),
      r: tuple(2 * slot + 1),
      s: st.status[slot] & ~(ConnStatus.CONFIRMED | ConnStatus.DYING),
      ts: st.tcpState[slot],
      m: st.mark[slot],
      x: Math.max(0, Math.round(st.expires[slot] - now)),
      w: [...st.pstate.subarray(slot * PSTATE_WORDS, (slot + 1) * PSTATE_WORDS)],
      b: [...st.pbytes.subarray(slot * PSTATE_BYTES, (slot + 1) * PSTATE_BYTES)],
      q: st.masqName(slot),
    };
  }

  /**
   * Issue 15: puts an entry exported by another gateway into this table as
   * a confirmed entry expiring `x` ms from now (the caller subtracts the
   * record's age). TCP flows are marked "be liberal" (tcp.ts tcpBeLiberal):
   * their window words are those of the export, behind the endpoints, so the
   * next segments are accepted without window checks while the state
   * machine keeps running. Refused ('exists') when either tuple is already
   * in the table (the same flow, or a clash with a local one: the local one
   * wins), 'full' at max, 'malformed' for a record this build cannot read.
   * Fires `changed` like a confirm: the importer now carries the flow, so
   * its own sync publishes it (a later failback finds it in the bucket).
   */
  importEntry(e: CtExport, now: number): 'ok' | 'exists' | 'full' | 'malformed' {
    const words = (a: unknown, n: number) => Array.isArray(a) && a.length === n && a.every((v) => Number.isInteger(v) && v >= -0x80000000 && v <= 0xffffffff);
    if (typeof e !== 'object' || e === null || (e.f !== 4 && e.f !== 6) || !Number.isInteger(e.p) || e.p < 0 || e.p > 255 || !words(e.o, 9) || !words(e.r, 9) ||
        !words(e.w, PSTATE_WORDS) || !words(e.b, PSTATE_BYTES) || !Number.isInteger(e.s) || !Number.isInteger(e.ts) || e.ts < 0 || e.ts > 9 ||
        typeof e.x !== 'number' || !(e.x > 0) || !Number.isInteger(e.m)) {
      return 'malformed';
    }
    const st = this.store;
    const k = this.key;
    for (const t of [e.o, e.r]) {
      k.family = e.f;
      k.proto = e.p;
      for (let i = 0; i < 8; i++) k.words[i] = t[i];
      k.sport = t[8] >>> 16;
      k.dport = t[8] & 0xffff;
      if (this.lookup(now) >= 0) return 'exists';
    }
    if (this.confirmedCount >= this.max && !this.earlyDrop(now)) return 'full';
    const s = st.alloc();
    if (s < 0) return 'full';
    st.family[s] = e.f;
    st.proto[s] = e.p;
    for (let i = 0; i < 8; i++) {
      st.addr[s * ADDR_WORDS + i] = e.o[i];
      st.addr[s * ADDR_WORDS + 8 + i] = e.r[i];
    }
    st.ports[2 * s] = e.o[8] | 0;
    st.ports[2 * s + 1] = e.r[8] | 0;
    st.status[s] = (e.s & ~(ConnStatus.CONFIRMED | ConnStatus.DYING)) | ConnStatus.CONFIRMED;
    st.tcpState[s] = e.ts;
    st.mark[s] = e.m >>> 0;
    st.expires[s] = now + e.x;
    st.pstate.set(e.w, s * PSTATE_WORDS);
    st.pbytes.set(e.b, s * PSTATE_BYTES);
    st.setMasqName(s, typeof e.q === 'string' ? e.q : null);
    if (e.p === P_TCP) tcpBeLiberal(st, s);
    this.link(s);
    return 'ok';
  }

  /**
   * Binds `manip` of an unconfirmed entry to addr/port (nat.ts, point 2):
   * its reply tuple becomes the inverse of the translated original and is
   * re-keyed; CLASH if that tuple belongs to a live entry (the entry is
   * then unchanged). addr: IPv4 in word 0, IPv6 as four words; port < 0
   * keeps the port.
   */
  setBinding(entry: ConnEntry, manip: NatManip, addr: Uint32Array, port: number, now: number, force = false): NatBind {
    const s = this.slotOf(entry);
    const st = this.store;
    if (s < 0 || (st.status[s] & (ConnStatus.CONFIRMED | ConnStatus.DYING)) !== 0) return NatBind.CONFIRMED;
    const done = manip === NatManip.SRC ? ConnStatus.SRC_NAT_DONE : ConnStatus.DST_NAT_DONE;
    if ((st.status[s] & done) !== 0) return NatBind.ALREADY;
    const k = this.key;
    if (boundReply(st, s, manip, addr, port, k)) {
      k.family = st.family[s] === 6 ? 6 : 4;
      k.proto = st.proto[s];
      // force: the kernel's nf_nat_setup_info binds whatever get_unique_tuple left when the range is exhausted; confirm then refuses it (insert_failed).
      if (!force && this.lookup(now) >= 0) return NatBind.CLASH;
      const o = (2 * s + 1) * 8;
      const a = st.addr;
      const w = k.words;
      for (let i = 0; i < 8; i++) a[o + i] = w[i];
      st.ports[2 * s + 1] = (k.sport << 16) | k.dport;
      st.status[s] |= manip === NatManip.SRC ? ConnStatus.SRC_NAT : ConnStatus.DST_NAT;
    }
    st.status[s] |= done;
    return NatBind.OK;
  }

  /**
   * Whether the reply tuple the entry would have with `manip` bound to
   * addr/port belongs to a live entry (the kernel's nf_nat_used_tuple), also
   * when that is the entry's current, untranslated reply tuple.
   */
  natTaken(entry: ConnEntry, manip: NatManip, addr: Uint32Array, port: number, now: number): boolean {
    const s = this.slotOf(entry);
    if (s < 0) return false;
    const st = this.store;
    const k = this.key;
    const changed = boundReply(st, s, manip, addr, port, k);
    // Untranslated and no translated flow in the table: nothing can hold the inverse of a new original tuple.
    if (!changed && (st.status[s] & NAT_MASK) === 0 && this.natConfirmed === 0) return false;
    k.family = st.family[s] === 6 ? 6 : 4;
    k.proto = st.proto[s];
    return this.lookup(now) >= 0;
  }

  /**
   * Forgets every MASQUERADE flow bound through interface `name` (the
   * kernel's masq_device_event / masq_inet_event: the interface went down or
   * its addresses changed, so the bindings name an address it no longer has).
   * Returns how many were removed.
   */
  forgetMasquerade(name: string): number {
    const st = this.store;
    const idx = st.masqIndex(name);
    if (idx === 0) return 0;
    let n = 0;
    for (let s = this.oldest; s >= 0; ) {
      const next = st.newer[s];
      if (st.masq[s] === idx) {
        this.kill(s);
        n++;
      }
      s = next;
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
    const s = this.slotOf(c);
    if (s < 0) return Verdict.ACCEPT;
    const e = c as ConnEntry;
    const st = this.store;
    if ((st.status[s] & ConnStatus.CONFIRMED) === 0 && !pkt.ctAttached) {
      // The first packet left this hook's nat chains without a binding for its manip: the null binding (nf_nat_inet_fn's alloc_null_binding).
      const m = hookManip(hook);
      if (m >= 0 && (st.status[s] & (m === NatManip.SRC ? ConnStatus.SRC_NAT_DONE : ConnStatus.DST_NAT_DONE)) === 0) {
        if (this.natHook.nullBinding !== undefined) this.natHook.nullBinding(pkt, e, m);
        else st.status[s] |= m === NatManip.SRC ? ConnStatus.SRC_NAT_DONE : ConnStatus.DST_NAT_DONE;
      }
    }
    const status = st.status[s];
    if ((status & NAT_MASK) === 0) return Verdict.ACCEPT;
    const manip = hookManip(hook);
    if (manip < 0 || (status & natStatusBit(manip, pkt.ctReply)) === 0) return Verdict.ACCEPT;
    return this.natHook.translate(pkt, e, manip, pkt.ctReply);
  }

  /** Removes every entry (conntrack -F). */
  flush(): void {
    const st = this.store;
    this.heads.fill(-1);
    for (let s = this.oldest; s >= 0; ) {
      const next = st.newer[s];
      if (this.events !== null) this.events.destroyed(s);
      st.status[s] = (st.status[s] & ~ConnStatus.CONFIRMED) | ConnStatus.DYING;
      st.next[2 * s] = st.next[2 * s + 1] = -1;
      st.free(s);
      s = next;
    }
    this.oldest = this.newest = this.sweepCursor = -1;
    this.confirmedCount = 0;
    this.natConfirmed = 0;
  }

  /** Live entries, oldest first (expired ones are removed first). */
  entries(now: number): ConnEntry[] {
    this.reapAll(now);
    const st = this.store;
    const out: ConnEntry[] = [];
    for (let s = this.oldest; s >= 0; s = st.newer[s]) out.push(st.handles[s]);
    return out;
  }

  /** `conntrack -L` lines (one per entry, each ending in "\n"). */
  list(now: number, family?: Family): string {
    let s = '';
    for (const e of this.entries(now)) if (family === undefined || e.family === family) s += formatEntry(e, now) + '\n';
    return s;
  }

  /**
   * Test aid (test/conntrack-slab.test.ts): walks the age list, the hash
   * chains and the free list and returns what is inconsistent, or null.
   * Not on the packet path.
   */
  selfCheck(): string | null {
    const st = this.store;
    const n = st.allocated;
    const inAge = new Uint8Array(n);
    let count = 0;
    let prev = -1;
    for (let s = this.oldest; s >= 0; s = st.newer[s]) {
      if (s >= n || inAge[s] === 1) return `age list revisits or leaves the slabs at slot ${s}`;
      inAge[s] = 1;
      if ((st.status[s] & (ConnStatus.CONFIRMED | ConnStatus.DYING)) !== ConnStatus.CONFIRMED) return `slot ${s} in the age list has status ${st.status[s]}`;
      if (st.older[s] !== prev) return `slot ${s}: older ${st.older[s]}, expected ${prev}`;
      prev = s;
      count++;
    }
    if (prev !== this.newest) return `age list ends at ${prev}, newest is ${this.newest}`;
    if (count !== this.confirmedCount) return `age list holds ${count}, count says ${this.confirmedCount}`;
    let chained = 0;
    for (let b = 0; b < this.buckets; b++) {
      let steps = 0;
      for (let t = this.heads[b]; t >= 0; t = st.next[t]) {
        if (++steps > 2 * n) return `bucket ${b} loops`;
        if (inAge[t >> 1] !== 1) return `tuple ${t} in bucket ${b} belongs to slot ${t >> 1}, not in the table`;
        if (this.bucketOf(t) !== b) return `tuple ${t} in bucket ${b}, hashes to ${this.bucketOf(t)}`;
        chained++;
      }
    }
    if (chained !== 2 * count) return `${chained} tuples chained for ${count} entries`;
    const free = st.freeSlots();
    if (typeof free === 'string') return free;
    for (const s of free) if (inAge[s] === 1) return `slot ${s} is both free and in the table`;
    return null;
  }

  // ---- internals ----

  private timeoutFor(s: number, now: number): number {
    const to = this.timeouts;
    const st = this.store;
    switch (st.proto[s]) {
      case P_UDP:
      case P_UDPLITE: {
        const status = st.status[s];
        // Still active 2 s after creation with a reply seen: a stream (the kernel's stream_ts). The
        // creation time is the slot's first per-protocol word, in ms modulo 2^32.
        if ((status & ConnStatus.SEEN_REPLY) !== 0 && ((status & ConnStatus.ASSURED) !== 0 || (((now | 0) - st.pstate[s * PSTATE_WORDS]) | 0) > UDP_STREAM_AFTER_MS)) {
          st.status[s] = status | ConnStatus.ASSURED;
          return to.udpStream;
        }
        return to.udp;
      }
      case P_ICMP:
        return st.family[s] === 4 ? to.icmp : to.generic;
      case P_ICMPV6:
        return st.family[s] === 6 ? to.icmpv6 : to.generic;
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
    const st = this.store;
    const s = st.alloc();
    if (s < 0) {
      this.tableFullDrops++;
      return Verdict.DROP;
    }
    st.trackUnconfirmed(s);
    st.family[s] = k.family;
    st.proto[s] = proto;
    // orig = the key; repl = its inverse (src <-> dst).
    const a = st.addr;
    const w = k.words;
    const o = s * ADDR_WORDS;
    for (let i = 0; i < 4; i++) {
      a[o + i] = w[i];
      a[o + 4 + i] = w[4 + i];
      a[o + 8 + i] = w[4 + i];
      a[o + 12 + i] = w[i];
    }
    st.ports[2 * s] = (k.sport << 16) | k.dport;
    st.ports[2 * s + 1] = proto === P_ICMP || proto === P_ICMPV6 ? (k.sport << 16) | replyDport : (k.dport << 16) | k.sport;
    if (proto === P_TCP) {
      this.tcp.newFlow(s, pkt);
      // The first packet goes through the tracker like any other (it sets the state and timeout).
      if (this.tcp.packet(s, 0, pkt, now) === TcpResult.INVALID) {
        // Never shown to anyone: the slot goes back at once.
        st.status[s] |= ConnStatus.DYING;
        st.free(s);
        return Verdict.ACCEPT;
      }
    } else {
      st.pstate[s * PSTATE_WORDS] = now | 0;
      st.expires[s] = now + 1000 * this.timeoutFor(s, now);
    }
    pkt.ct = st.handles[s];
    pkt.ctReply = false;
    pkt.ctState = CtState.NEW;
    return Verdict.ACCEPT;
  }

  /** ICMP/ICMPv6 error: RELATED to the flow its quoted header belongs to, else INVALID. */
  private related(pkt: PacketContext): number {
    if (!quotedKey(pkt, this.key)) return this.error();
    const t = this.lookup(pkt.now);
    if (t < 0) return Verdict.ACCEPT;
    pkt.ct = this.store.handles[t >> 1];
    pkt.ctReply = (t & 1) === 1;
    pkt.ctState = CtState.RELATED;
    return Verdict.ACCEPT;
  }

  /** Finds the live tuple equal to the key (its number, 2 * slot + dir, or -1); an expired entry met on the way is removed. */
  private lookup(now: number): number {
    const k = this.key;
    const w = k.words;
    const kp = (k.sport << 16) | k.dport;
    const h = hashWords(k.family, k.proto, w, 0, kp);
    const st = this.store;
    const a = st.addr;
    const ports = st.ports;
    const next = st.next;
    const protos = st.proto;
    const families = st.family;
    const proto = k.proto;
    const family = k.family;
    const s0 = w[0];
    const d0 = w[4];
    for (let t = this.heads[h & this.bucketMask]; t >= 0; t = next[t]) {
      if (ports[t] !== kp) continue;
      const o = t << 3;
      if (a[o] !== s0 || a[o + 4] !== d0) continue;
      const s = t >> 1;
      if (protos[s] !== proto || families[s] !== family) continue;
      if (a[o + 1] !== w[1] || a[o + 2] !== w[2] || a[o + 3] !== w[3] || a[o + 5] !== w[5] || a[o + 6] !== w[6] || a[o + 7] !== w[7]) continue;
      if (st.expires[s] <= now) {
        this.kill(s);
        return -1;
      }
      return t;
    }
    return -1;
  }

  private bucketOf(t: number): number {
    const st = this.store;
    const s = t >> 1;
    return hashWords(st.family[s], st.proto[s], st.addr, t << 3, st.ports[t]) & this.bucketMask;
  }

  /**
   * A confirmed slot enters the table (__nf_conntrack_confirm's hash insert):
   * both tuples into their buckets, the newest end of the age list, the
   * counts, and the cluster's event sink. Its status already says CONFIRMED.
   */
  private link(s: number): void {
    const st = this.store;
    if ((st.status[s] & NAT_MASK) !== 0) this.natConfirmed++;
    this.insertTuple(2 * s);
    this.insertTuple(2 * s + 1);
    st.older[s] = this.newest;
    st.newer[s] = -1;
    if (this.newest >= 0) st.newer[this.newest] = s;
    else this.oldest = s;
    this.newest = s;
    this.confirmedCount++;
    this.inserted++;
    if (this.events !== null) this.events.changed(s);
  }

  private insertTuple(t: number): void {
    const i = this.bucketOf(t);
    this.store.next[t] = this.heads[i];
    this.heads[i] = t;
  }

  private removeTuple(t: number): void {
    const i = this.bucketOf(t);
    const next = this.store.next;
    let p = this.heads[i];
    if (p === t) {
      this.heads[i] = next[t];
    } else {
      while (p >= 0 && next[p] !== t) p = next[p];
      if (p >= 0) next[p] = next[t];
    }
    next[t] = -1;
  }

  /** Removes a confirmed entry from the table and frees its slot (no-op for an unconfirmed one). */
  private kill(s: number): void {
    const st = this.store;
    const status = st.status[s];
    if ((status & ConnStatus.CONFIRMED) === 0) return;
    if (this.events !== null) this.events.destroyed(s);
    st.status[s] = (status & ~ConnStatus.CONFIRMED) | ConnStatus.DYING;
    if ((status & NAT_MASK) !== 0) this.natConfirmed--;
    this.removeTuple(2 * s);
    this.removeTuple(2 * s + 1);
    const older = st.older[s];
    const newer = st.newer[s];
    if (older >= 0) st.newer[older] = newer;
    else this.oldest = newer;
    if (newer >= 0) st.older[newer] = older;
    else this.newest = older;
    if (this.sweepCursor === s) this.sweepCursor = newer;
    st.older[s] = -1;
    this.confirmedCount--;
    st.free(s);
  }

  /**
   * Frees expired entries lazily: each packet moves a cursor over up to
   * SWEEP_PER_PACKET entries of the age list (wrapping), removing dead ones.
   */
  private sweep(now: number): void {
    const st = this.store;
    for (let i = 0; i < SWEEP_PER_PACKET; i++) {
      const s = this.sweepCursor >= 0 ? this.sweepCursor : this.oldest;
      if (s < 0) return;
      this.sweepCursor = st.newer[s];
      if (st.expires[s] <= now) this.kill(s);
    }
  }

  private reapAll(now: number): void {
    const st = this.store;
    for (let s = this.oldest; s >= 0; ) {
      const next = st.newer[s];
      if (st.expires[s] <= now) this.kill(s);
      s = next;
    }
  }

  /**
   * The kernel's early_drop: when the table is full, evict one entry that
   * is not ASSURED (or already expired), looking at a bounded number of
   * entries. False if none qualifies - the new flow is then refused.
   */
  private earlyDrop(now: number): boolean {
    const st = this.store;
    let s = this.oldest;
    for (let i = 0; i < EARLY_DROP_SCAN && s >= 0; i++, s = st.newer[s]) {
      if (st.expires[s] <= now || (st.status[s] & ConnStatus.ASSURED) === 0) {
        this.kill(s);
        this.earlyDrops++;
        return true;
      }
    }
    return false;
  }
}
