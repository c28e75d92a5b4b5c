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
 *   ct.confirm(pkt);
 *
 *   `in` sets pkt.ct (a ConnEntry or null) and pkt.ctState (CtState bits:
 *   NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED). Packets with
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
 *   CommandTable with `conntrack` (-L [-f ipv4|ipv6] [-p proto], -F, -C).
 *   isReplyDir(entry, pkt) tells a packet's direction (conntrack --ctdir).
 *
 * Expiry is lazy: an entry found past its deadline is treated as absent and
 * freed; each `in` also moves a cursor over two entries of the age list and
 * frees them if dead, so the table does not fill with dead flows.
 * Time is pkt.now (monotonic milliseconds, one clock read per batch).
 *
 * TCP flows are tracked as the kernel does by default (tcp_be_liberal=0,
 * tcp_loose=1, tcp_max_retrans=3): the state table below plus sequence and
 * window tracking after Guido van Rooij's "Real Stateful TCP Packet
 * Filtering in IP Filter", with RFC 793's relaxation that a segment need
 * only intersect the window. Per direction the entry keeps the highest
 * sequence end sent (END), the highest right window edge the other side
 * allowed (MAXEND), the largest window it advertised (MAXWIN), its highest
 * ack (MAXACK) and its window scale. A segment is in window when
 *   I.   seq <= sender.MAXEND
 *   II.  seq + len >= sender.END - receiver.MAXWIN
 *   III. sack <= receiver.END
 *   IV.  sack >= receiver.END - max(sender.MAXWIN, 66000)
 * (sack: the highest right edge of a SACK block when the receiver allowed
 * SACK, else the ack). Failing III, or I by more than a window, makes the
 * packet INVALID; failing II or IV (old data, a very late ack), or I by less
 * than a window, only leaves the entry untouched - the kernel lets such
 * packets pass as part of the flow. A flow picked up mid
 * stream has no window history: its checks are skipped (the kernel marks it
 * "be liberal"), but resets are still checked against the acks seen.
 */
import { Verdict, CtState, type Family, type PacketContext } from '../xt/packet.js';
import type { Conn } from '../xt/conn.js';
import type { CommandTable, CommandResult } from './commands.js';
import { ipv4ToString, ipv6ToString } from '../dataplane/addr.js';
import { getU16, getU32 } from '../dataplane/bytes.js';

const P_ICMP = 1;
const P_TCP = 6;
const P_UDP = 17;
const P_DCCP = 33;
const P_ICMPV6 = 58;
const P_SCTP = 132;
const P_UDPLITE = 136;

/** Connection status bits (the kernel's IPS_* subset that has meaning here). */
export const enum CtStatus {
  SEEN_REPLY = 1 << 1,
  ASSURED = 1 << 2,
  CONFIRMED = 1 << 3,
  /** Removed from the table; a packet still holding it must not confirm it again. */
  DYING = 1 << 9,
}

/** TCP conntrack states, numbered as the kernel numbers them. */
export const enum TcpCt {
  NONE = 0,
  SYN_SENT = 1,
  SYN_RECV = 2,
  ESTABLISHED = 3,
  FIN_WAIT = 4,
  CLOSE_WAIT = 5,
  LAST_ACK = 6,
  TIME_WAIT = 7,
  CLOSE = 8,
  SYN_SENT2 = 9,
}
export const TCP_STATE_NAMES = [
  'NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2',
] as const;

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

/*
 * The TCP state machine: for each direction, each event, the next state
 * given the current one (columns in TcpCt order NONE..SYN_SENT2).
 * IV = the packet does not fit (INVALID), IG = ignore it (no state change).
 * This follows the transition diagram of nf_conntrack_proto_tcp with loose
 * pickup enabled (a mid-stream ACK opens an ESTABLISHED entry, as with the
 * kernel's default nf_conntrack_tcp_loose=1).
 */
const IV = -1;
const IG = -2;
const N = TcpCt.NONE, SS = TcpCt.SYN_SENT, SR = TcpCt.SYN_RECV, ES = TcpCt.ESTABLISHED, FW = TcpCt.FIN_WAIT;
const CW = TcpCt.CLOSE_WAIT, LA = TcpCt.LAST_ACK, TW = TcpCt.TIME_WAIT, CL = TcpCt.CLOSE, S2 = TcpCt.SYN_SENT2;
void N;
const enum Ev { SYN = 0, SYNACK = 1, FIN = 2, ACK = 3, RST = 4, NONE = 5 }
//                       NONE SYN_SENT SYN_RECV ESTAB FIN_W CLOSE_W LAST_A TIME_W CLOSE SYN_S2
const TCP_ORIG: readonly (readonly number[])[] = [
  /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
  /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
  /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
  /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
  /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
  /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
];
const TCP_REPLY: readonly (readonly number[])[] = [
  /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
  /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
  /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
  /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
  /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
  /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
];

/** Flag combinations a TCP segment may carry (PSH, ECE, CWR ignored), as the kernel's tcp_error accepts. */
const TCP_VALID_FLAGS = new Uint8Array(64);
for (const f of [0x02, 0x22, 0x12, 0x04, 0x14, 0x11, 0x31, 0x10, 0x30]) TCP_VALID_FLAGS[f] = 1;

function tcpEvent(flags: number): Ev {
  if (flags & 0x04) return Ev.RST;
  if (flags & 0x02) return flags & 0x10 ? Ev.SYNACK : Ev.SYN;
  if (flags & 0x01) return Ev.FIN;
  if (flags & 0x10) return Ev.ACK;
  return Ev.NONE;
}

/**
 * Layout of ConnEntry.tcp, the window tracking state of a TCP flow (int32
 * words; sequence numbers wrap as the wire's do). The first DIR words are
 * the original direction's, the next DIR the reply direction's; then what
 * the last packet looked like, for retransmission counting and for getting
 * back in step with endpoints whose packets the table had to ignore.
 */
const enum Tw {
  /** Highest seq + len this side sent. */
  END = 0,
  /** Highest ack + window the other side allowed: this side's right edge. */
  MAXEND = 1,
  /** Largest window (scaled, plus the SACKed span) this side advertised; 0 = none seen yet. */
  MAXWIN = 2,
  /** Highest ack this side sent (valid once MAXACK_SET). */
  MAXACK = 3,
  /** Shift applied to this side's window field outside SYNs. */
  SCALE = 4,
  /** TcpFlag bits of this side. */
  FLAGS = 5,
  /** Words per direction. */
  DIR = 6,
  LAST_DIR = 12,
  LAST_INDEX = 13,
  LAST_SEQ = 14,
  LAST_ACK = 15,
  LAST_END = 16,
  /** The window field as sent (unscaled). */
  LAST_WIN = 17,
  /** Window scale of an ignored SYN, kept in case its SYN/ACK proves it right. */
  LAST_WSCALE = 18,
  LAST_FLAGS = 19,
  /** The same ACK seen again this many times in a row (wraps at 256 as the kernel's u8). */
  RETRANS = 20,
  WORDS = 21,
}

/** Bits of Tw.FLAGS (per side) and Tw.LAST_FLAGS, numbered as the kernel's IP_CT_TCP_FLAG_*. */
const enum TcpFlag {
  /** The side sent the window scale option in its SYN. */
  WINDOW_SCALE = 0x01,
  SACK_PERM = 0x02,
  /** The side sent the first FIN: a new SYN may reopen the flow. */
  CLOSE_INIT = 0x04,
  /** Picked up mid-stream: window checks never fail for this side. */
  BE_LIBERAL = 0x08,
  DATA_UNACKNOWLEDGED = 0x10,
  MAXACK_SET = 0x20,
  /** An ignored SYN in LAST_ACK may draw an RFC 5961 challenge ACK that must not end the flow. */
  CHALLENGE_ACK = 0x40,
  SIMULTANEOUS_OPEN = 0x80,
}

/** What the TCP tracker made of a packet. */
const enum TcpResult {
  /** In window: state, bounds and timeout updated. */
  TRACKED,
  /** Part of the flow, but nothing about it is believed (state and timeout unchanged). */
  IGNORED,
  INVALID,
  /** A SYN reopening a closed or aborted flow: the old entry goes, the SYN starts a new one. */
  REOPEN,
}

/** resetCheck's answer: bits, or RST_INVALID alone. */
const RST_KEEP_STATE = 1;
const RST_SKIP_WINDOW = 2;
const RST_INVALID = 4;

/** Outcome of the window check. */
const enum Win { ACCEPT, IGNORE, INVALID }

/** Words of Conntrack.seg: the current segment as the window check reads it. */
const enum Seg { SEQ, ACK, SACK, END, WIN, WORDS }

/** Repeats of the same ACK after which ESTABLISHED is cut to tcpRetrans (the kernel's tcp_max_retrans). */
const TCP_MAX_RETRANS = 3;
/** Floor of the lower ack bound (IV): the kernel's MAXACKWINCONST. */
const MAX_ACK_WINDOW_MIN = 66000;
/** RFC 7323's largest window scale shift. */
const TCP_MAX_WSCALE = 14;
/** Window tracking of entries that are not TCP. */
const NO_TCP = new Int32Array(0);

/** a comes before b in sequence space (RFC 1982 style, as the kernel's before()). */
function before(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}
function after(a: number, b: number): boolean {
  return ((b - a) | 0) < 0;
}

/**
 * The window scale and SACK-permitted options of a SYN, as
 * (scale << 8) | TcpFlag bits; parsing stops at the end-of-list option or
 * at a malformed length, keeping what was read before it.
 */
function synOptions(b: Uint8Array, o: number, end: number): number {
  let flags = 0;
  let scale = 0;
  while (o < end) {
    const kind = b[o];
    if (kind === 0) break;
    if (kind === 1) {
      o++;
      continue;
    }
    if (end - o < 2) break;
    const size = b[o + 1];
    if (size < 2 || size > end - o) break;
    if (kind === 4 && size === 2) flags |= TcpFlag.SACK_PERM;
    else if (kind === 3 && size === 3) {
      scale = b[o + 2] > TCP_MAX_WSCALE ? TCP_MAX_WSCALE : b[o + 2];
      flags |= TcpFlag.WINDOW_SCALE;
    }
    o += size;
  }
  return (scale << 8) | flags;
}

/** ICMP request type → reply type (v4 and v6); also tells which types may open a flow. */
const ICMP4_REPLY = new Int16Array(256).fill(-1);
ICMP4_REPLY[8] = 0;
ICMP4_REPLY[13] = 14;
ICMP4_REPLY[15] = 16;
ICMP4_REPLY[17] = 18;
const ICMP6_REPLY = new Int16Array(256).fill(-1);
ICMP6_REPLY[128] = 129;
ICMP6_REPLY[139] = 140;
/** ICMPv4 query/reply types (the ones a quoted packet may be for an error to be RELATED). */
const ICMP4_QUERY = new Uint8Array(256);
for (const t of [0, 8, 13, 14, 15, 16, 17, 18]) ICMP4_QUERY[t] = 1;
/** ICMPv6 neighbour discovery and MLD: never tracked (the kernel marks them UNTRACKED). */
const ICMP6_NOTRACK = new Uint8Array(256);
for (const t of [130, 131, 132, 133, 134, 135, 136, 137, 143]) ICMP6_NOTRACK[t] = 1;

function hasPorts(proto: number): boolean {
  return proto === P_TCP || proto === P_UDP || proto === P_UDPLITE || proto === P_SCTP || proto === P_DCCP;
}

/**
 * One direction of a connection: addresses (IPv4 in word 0), and the
 * protocol "ports" — TCP/UDP ports, or for ICMP the id in `sport` and
 * (type << 8 | code) in `dport`.
 */
export class CtTuple {
  readonly src = new Uint32Array(4);
  readonly dst = new Uint32Array(4);
  sport = 0;
  dport = 0;
  hash = 0;
  /** Next tuple in the same hash bucket. */
  next: CtTuple | null = null;
  constructor(readonly entry: ConnEntry, readonly reply: boolean) {}
}

/** A tracked connection (the kernel's struct nf_conn). */
export class ConnEntry implements Conn {
  family: Family = 4;
  proto = 0;
  readonly orig = new CtTuple(this, false);
  readonly repl = new CtTuple(this, true);
  status = 0;
  tcpState: TcpCt = TcpCt.NONE;
  /** Absolute deadline (ms, same clock as pkt.now). */
  expires = 0;
  /** Creation time, for UDP's "still active after 2 s" stream rule. */
  created = 0;
  /** ctmark (CONNMARK). */
  mark = 0;
  /** TCP window tracking (Tw layout), allocated with a TCP entry; empty for other protocols. */
  tcp: Int32Array = NO_TCP;
  /** Age list (oldest first) for expiry sweeps and early drop. */
  older: ConnEntry | null = null;
  newer: ConnEntry | null = null;

  get confirmed(): boolean {
    return (this.status & CtStatus.CONFIRMED) !== 0;
  }
  /** Seconds until expiry at `now`, as conntrack -L prints it. */
  remaining(now: number): number {
    return Math.max(0, Math.floor((this.expires - now) / 1000));
  }
  isReply(pkt: PacketContext): boolean {
    return isReplyDir(this, pkt);
  }
}

/** True if pkt travels in the reply direction of its (tracked) connection. */
export function isReplyDir(entry: ConnEntry, pkt: PacketContext): boolean {
  const t = entry.orig;
  if (hasPorts(entry.proto) && pkt.sport !== t.sport) return true;
  if (pkt.family === 4) return pkt.src4 !== t.src[0] || pkt.dst4 !== t.dst[0];
  for (let i = 0; i < 4; i++) if (pkt.src6[i] !== t.src[i] || pkt.dst6[i] !== t.dst[i]) return true;
  return false;
}

export interface ConntrackOptions {
  /** Maximum confirmed entries (nf_conntrack_max); default 65536. */
  max?: number;
  /** Hash buckets (rounded up to a power of two); default max / 4. */
  buckets?: number;
  /** Override timeouts (seconds), same shape as DEFAULT_TIMEOUTS. */
  timeouts?: Partial<typeof DEFAULT_TIMEOUTS>;
}

/** How many entries one packet may examine from the oldest end (expiry sweep / early drop). */
const SWEEP_PER_PACKET = 2;
const EARLY_DROP_SCAN = 64;
const UDP_STREAM_AFTER_MS = 2000;
/** First fragments remembered (direct-mapped) and for how long (the kernel's ipfrag_time, 30 s). */
const FRAG_SLOTS = 256;
const FRAG_KEY_WORDS = 11;
const FRAG_TIMEOUT_MS = 30_000;

function hashKey(family: number, proto: number, s: Uint32Array, d: Uint32Array, sport: number, dport: number): number {
  let h = Math.imul(family ^ (proto << 8), 0x01000193);
  for (let i = 0; i < 4; i++) {
    h = Math.imul(h ^ s[i], 0x9e3779b1);
    h = Math.imul(h ^ d[i], 0x85ebca6b);
  }
  h = Math.imul(h ^ ((sport << 16) | dport), 0xc2b2ae35);
  return (h ^ (h >>> 15)) >>> 0;
}

export class Conntrack {
  readonly max: number;
  private readonly timeouts: typeof DEFAULT_TIMEOUTS;
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

  // First fragments seen recently: key words, connection, state, deadline (direct-mapped).
  private readonly fragKeys = new Uint32Array(FRAG_SLOTS * FRAG_KEY_WORDS);
  private readonly fragProbe = new Uint32Array(FRAG_KEY_WORDS);
  private readonly fragCt: (ConnEntry | null)[] = new Array<ConnEntry | null>(FRAG_SLOTS).fill(null);
  private readonly fragState = new Uint8Array(FRAG_SLOTS);
  private readonly fragExpires = new Float64Array(FRAG_SLOTS);

  // The lookup key being built for the current packet (reused; never escapes).
  private kFamily: Family = 4;
  private kProto = 0;
  private readonly kSrc = new Uint32Array(4);
  private readonly kDst = new Uint32Array(4);
  private kSport = 0;
  private kDport = 0;
  /** The TCP segment being tracked (Seg layout); reused, so sequence numbers never travel as boxed call arguments. */
  private readonly seg = new Int32Array(Seg.WORDS);

  constructor(opts: ConntrackOptions = {}) {
    this.max = opts.max ?? 65536;
    if (!Number.isInteger(this.max) || this.max < 1) throw new Error(`conntrack: max must be a positive integer, got ${opts.max}`);
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
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
   */
  in(pkt: PacketContext): number {
    pkt.ct = null;
    if (pkt.notrack) {
      pkt.ctState = CtState.UNTRACKED;
      return Verdict.ACCEPT;
    }
    this.sweep(pkt.now);
    pkt.ctState = CtState.INVALID;
    // xtr does not reassemble: a later fragment has no ports, so it takes the
    // state its datagram's first fragment got (see docs/compat.md).
    if (pkt.fragmentOffset !== 0) return this.laterFragment(pkt);
    const v = this.track(pkt);
    if (pkt.isFragment) this.rememberFragment(pkt);
    return v;
  }

  private track(pkt: PacketContext): number {
    const now = pkt.now;
    const proto = pkt.proto;
    const b = pkt.buf;
    const l4 = pkt.l4off;
    if (proto === P_TCP) {
      // tcp_error: a header cut short or an impossible flag combination is INVALID.
      if (pkt.l4len < 20 || TCP_VALID_FLAGS[pkt.tcpFlags & 0x37] === 0) return Verdict.ACCEPT;
      const doff = (b[l4 + 12] >> 4) << 2;
      if (doff < 20 || doff > pkt.l4len) return Verdict.ACCEPT;
    } else if (proto === P_UDP || proto === P_UDPLITE) {
      if (pkt.l4len < 8) return Verdict.ACCEPT;
    } else if (proto === P_SCTP || proto === P_DCCP) {
      if (pkt.l4len < 4) return Verdict.ACCEPT;
    } else if (proto === P_ICMP && pkt.family === 4) {
      if (pkt.l4len < 8) return Verdict.ACCEPT;
      const t = pkt.icmpType;
      if (t === 3 || t === 4 || t === 5 || t === 11 || t === 12) return this.related(pkt);
    } else if (proto === P_ICMPV6 && pkt.family === 6) {
      if (pkt.l4len < 8) return Verdict.ACCEPT;
      const t = pkt.icmpType;
      if (t < 128) return this.related(pkt);
      if (ICMP6_NOTRACK[t] === 1) {
        pkt.ctState = CtState.UNTRACKED;
        return Verdict.ACCEPT;
      }
    }
    this.keyFromPacket(pkt, b, l4);
    const t = this.lookup(now);
    if (t === null) return this.createNew(pkt, now);
    const e = t.entry;
    const reply = t.reply;
    if (proto === P_TCP) {
      const r = this.tcpPacket(e, reply ? 1 : 0, pkt, now);
      if (r === TcpResult.INVALID) return Verdict.ACCEPT;
      if (r === TcpResult.REOPEN) {
        this.kill(e);
        return this.createNew(pkt, now);
      }
      if (reply) e.status |= CtStatus.SEEN_REPLY;
    } else {
      if (reply) e.status |= CtStatus.SEEN_REPLY;
      e.expires = now + 1000 * this.timeoutFor(e, now);
    }
    pkt.ct = e;
    pkt.ctState = reply || (e.status & CtStatus.SEEN_REPLY) !== 0 ? CtState.ESTABLISHED : CtState.NEW;
    return Verdict.ACCEPT;
  }

  /**
   * Puts a new flow's entry into the table once its first packet has been
   * accepted (end of INPUT / POSTROUTING). A no-op for anything else.
   */
  confirm(pkt: PacketContext): void {
    const e = pkt.ct as ConnEntry | null;
    if (e === null || !(e instanceof ConnEntry) || (e.status & (CtStatus.CONFIRMED | CtStatus.DYING)) !== 0) return;
    // Another packet of the same new flow may have been confirmed first.
    this.setKey(e.family, e.proto, e.orig);
    const clash = this.lookup(pkt.now);
    if (clash !== null) {
      pkt.ct = clash.entry;
      return;
    }
    if (this.confirmedCount >= this.max && !this.earlyDrop(pkt.now)) {
      this.tableFullDrops++;
      pkt.ct = null;
      return;
    }
    e.status |= CtStatus.CONFIRMED;
    this.insertTuple(e.orig);
    this.insertTuple(e.repl);
    e.older = this.newest;
    e.newer = null;
    if (this.newest) this.newest.newer = e;
    else this.oldest = e;
    this.newest = e;
    this.confirmedCount++;
  }

  /** Removes every entry (conntrack -F). */
  flush(): void {
    this.buckets.fill(null);
    for (let e = this.oldest; e !== null; e = e.newer) e.status = (e.status & ~CtStatus.CONFIRMED) | CtStatus.DYING;
    this.oldest = this.newest = this.sweepCursor = null;
    this.confirmedCount = 0;
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
        if ((e.status & CtStatus.SEEN_REPLY) !== 0 && now - e.created > UDP_STREAM_AFTER_MS) {
          e.status |= CtStatus.ASSURED;
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

  /**
   * The TCP tracker for one packet of flow e travelling in direction dir
   * (0 original, 1 reply): the state table, the kernel's special cases
   * around it, the window check, then state, bounds and timeout. SEEN_REPLY
   * is the caller's to set afterwards (the cases here read it as it was
   * before this packet).
   */
  private tcpPacket(e: ConnEntry, dir: number, pkt: PacketContext, now: number): TcpResult {
    const w = e.tcp;
    const b = pkt.buf;
    const l4 = pkt.l4off;
    const flags = pkt.tcpFlags;
    const index = tcpEvent(flags);
    const seg = this.seg;
    const seq = (b[l4 + 4] << 24) | (b[l4 + 5] << 16) | (b[l4 + 6] << 8) | b[l4 + 7];
    const doff = (b[l4 + 12] >> 4) << 2;
    seg[Seg.SEQ] = seq;
    seg[Seg.ACK] = (b[l4 + 8] << 24) | (b[l4 + 9] << 16) | (b[l4 + 10] << 8) | b[l4 + 11];
    seg[Seg.END] = seq + (pkt.l4len - doff) + (flags & 0x02 ? 1 : 0) + (flags & 0x01);
    seg[Seg.WIN] = (b[l4 + 14] << 8) | b[l4 + 15];
    const snd = dir * Tw.DIR;
    const rcv = Tw.DIR - snd;
    let old = e.tcpState;
    let next = (dir === 0 ? TCP_ORIG : TCP_REPLY)[index][old];
    let checkWindow = true;
    let ignore = false;
    switch (next) {
      case IV:
        return TcpResult.INVALID;
      case TcpCt.SYN_SENT:
        if (old < TcpCt.TIME_WAIT) break;
        // A SYN in TIME_WAIT or CLOSE starts over if the flow was closed by a FIN or aborted
        // by this side's reset; otherwise the endpoints may still hold it, so it is ignored.
        if (((w[snd + Tw.FLAGS] | w[rcv + Tw.FLAGS]) & TcpFlag.CLOSE_INIT) !== 0 || (w[Tw.LAST_DIR] === dir && w[Tw.LAST_INDEX] === Ev.RST)) {
          return TcpResult.REOPEN;
        }
        ignore = true;
        break;
      case IG:
        if (index === Ev.SYNACK && w[Tw.LAST_INDEX] === Ev.SYN && w[Tw.LAST_DIR] !== dir && seg[Seg.ACK] === w[Tw.LAST_END]) {
          // This SYN/ACK answers a SYN the table ignored: the endpoints are in step, the table was
          // not. Take the flow up from that SYN's recorded values, as a fresh SYN_SENT.
          old = TcpCt.SYN_SENT;
          next = TcpCt.SYN_RECV;
          const syn = w[Tw.LAST_DIR] * Tw.DIR;
          w[syn + Tw.END] = w[syn + Tw.MAXEND] = w[Tw.LAST_END];
          w[syn + Tw.MAXWIN] = w[Tw.LAST_WIN] === 0 ? 1 : w[Tw.LAST_WIN];
          w[syn + Tw.SCALE] = w[Tw.LAST_WSCALE];
          w[Tw.LAST_FLAGS] &= ~TcpFlag.CHALLENGE_ACK;
          w[syn + Tw.FLAGS] = w[Tw.LAST_FLAGS];
          w[snd + Tw.END] = w[snd + Tw.MAXEND] = w[snd + Tw.MAXWIN] = w[snd + Tw.MAXACK] = w[snd + Tw.SCALE] = 0;
          w[snd + Tw.FLAGS] &= TcpFlag.BE_LIBERAL;
          break;
        }
        ignore = true;
        break;
      case TcpCt.TIME_WAIT:
        // RFC 5961: a challenge ACK answering an ignored SYN in LAST_ACK is not the last ACK.
        if (old === TcpCt.LAST_ACK && index === Ev.ACK && w[Tw.LAST_DIR] !== dir && w[Tw.LAST_INDEX] === Ev.SYN &&
            (w[Tw.LAST_FLAGS] & TcpFlag.CHALLENGE_ACK) !== 0) {
          w[Tw.LAST_FLAGS] &= ~TcpFlag.CHALLENGE_ACK;
          return TcpResult.IGNORED;
        }
        break;
      case TcpCt.SYN_SENT2:
        // The table alone cannot follow a simultaneous open; remember it for the ACK that ends it.
        w[Tw.LAST_FLAGS] |= TcpFlag.SIMULTANEOUS_OPEN;
        break;
      case TcpCt.SYN_RECV:
        if (dir === 1 && index === Ev.ACK && (w[Tw.LAST_FLAGS] & TcpFlag.SIMULTANEOUS_OPEN) !== 0) next = TcpCt.ESTABLISHED;
        break;
      case TcpCt.CLOSE:
        if (index !== Ev.RST) break;
        {
          const r = this.resetCheck(e, dir, old, seq);
          if (r === RST_INVALID) return TcpResult.INVALID;
          if ((r & RST_KEEP_STATE) !== 0) next = old;
          if ((r & RST_SKIP_WINDOW) !== 0) checkWindow = false;
        }
        break;
    }
    if (ignore) {
      this.recordIgnored(w, dir, index, old, pkt, doff);
      return TcpResult.IGNORED;
    }
    if (checkWindow) {
      const r = this.inWindow(e, dir, index, pkt, doff);
      if (r === Win.IGNORE) return TcpResult.IGNORED;
      if (r === Win.INVALID) {
        this.shortenAfterInvalid(e, dir, index, now);
        return TcpResult.INVALID;
      }
    }
    w[Tw.LAST_INDEX] = index;
    w[Tw.LAST_DIR] = dir;
    e.tcpState = next;
    if (old !== next && next === TcpCt.FIN_WAIT) w[snd + Tw.FLAGS] |= TcpFlag.CLOSE_INIT;

    const to = this.timeouts;
    const stateTimeout = to.tcp[next];
    let timeout: number;
    if (w[Tw.RETRANS] >= TCP_MAX_RETRANS && stateTimeout > to.tcpRetrans) timeout = to.tcpRetrans;
    else if (index === Ev.RST) timeout = to.tcp[TcpCt.CLOSE];
    else if (((w[Tw.FLAGS] | w[Tw.DIR + Tw.FLAGS]) & TcpFlag.DATA_UNACKNOWLEDGED) !== 0 && stateTimeout > to.tcpUnacknowledged) timeout = to.tcpUnacknowledged;
    else if (w[Tw.LAST_WIN] === 0 && stateTimeout > to.tcpRetrans) timeout = to.tcpRetrans;
    else timeout = stateTimeout;

    if ((e.status & CtStatus.SEEN_REPLY) === 0) {
      if (index === Ev.RST) {
        // A reset before any reply: the flow never existed (the kernel kills it at once).
        this.kill(e);
        return TcpResult.TRACKED;
      }
      // A retransmitted SYN does not extend the entry, so a reused port cannot keep it alive.
      if (index === Ev.SYN && old === TcpCt.SYN_SENT) return TcpResult.TRACKED;
      // Picked up mid-stream and never answered: not the 5-day ESTABLISHED timeout.
      if (next === TcpCt.ESTABLISHED && timeout > to.tcpUnacknowledged) timeout = to.tcpUnacknowledged;
    } else if ((e.status & CtStatus.ASSURED) === 0 && (old === TcpCt.SYN_RECV || old === TcpCt.ESTABLISHED) && next === TcpCt.ESTABLISHED) {
      e.status |= CtStatus.ASSURED;
    }
    e.expires = now + 1000 * timeout;
    return TcpResult.TRACKED;
  }

  /**
   * A reset moving the flow to CLOSE: checked against the highest ack the
   * other side sent (a reset behind it is INVALID). On an assured
   * ESTABLISHED flow a reset that is not exactly at that ack (nor right
   * after this side's last segment) leaves the state as it was, so an RFC
   * 5961 challenge ACK can follow. Resets answering a SYN or ACK the table
   * let through without believing it skip the window check.
   */
  private resetCheck(e: ConnEntry, dir: number, old: TcpCt, seq: number): number {
    // Closing states: the ports may have been reused already, the recorded values mean nothing.
    if (old === TcpCt.FIN_WAIT || old === TcpCt.CLOSE_WAIT || old === TcpCt.LAST_ACK || old === TcpCt.TIME_WAIT || old === TcpCt.CLOSE) {
      return RST_SKIP_WINDOW;
    }
    const w = e.tcp;
    const other = Tw.DIR - dir * Tw.DIR;
    let r = 0;
    if ((w[other + Tw.FLAGS] & TcpFlag.MAXACK_SET) !== 0 && w[Tw.LAST_INDEX] !== Ev.SYN) {
      const established = old === TcpCt.ESTABLISHED && (e.status & CtStatus.ASSURED) !== 0;
      // seq 0 before the flow is established: most likely the answer to a SYN let through.
      if (seq === 0 && !established) return 0;
      if (before(seq, w[other + Tw.MAXACK])) return RST_INVALID;
      if (!established || seq === w[other + Tw.MAXACK]) return 0;
      // A reset right after this side's last data segment ends a train; anything else keeps the state.
      if (w[Tw.LAST_INDEX] === Ev.ACK && w[Tw.LAST_DIR] === dir && seq === w[Tw.LAST_END]) return 0;
      r = RST_KEEP_STATE;
    }
    const ack = this.seg[Seg.ACK];
    const seenReply = (e.status & CtStatus.SEEN_REPLY) !== 0;
    const assured = (e.status & CtStatus.ASSURED) !== 0;
    if (((seenReply && w[Tw.LAST_INDEX] === Ev.SYN) || (!assured && w[Tw.LAST_INDEX] === Ev.ACK)) && ack === w[Tw.LAST_END]) {
      return r | RST_SKIP_WINDOW;
    }
    // The reset answering a challenge ACK let through in SYN_SENT.
    if (old === TcpCt.SYN_SENT && w[Tw.LAST_INDEX] === Ev.ACK && w[Tw.LAST_DIR] === 1 && seq === w[Tw.LAST_ACK]) return r | RST_SKIP_WINDOW;
    return r;
  }

  /**
   * A packet let through without being believed: what it was is kept, so a
   * SYN/ACK answering an ignored SYN (or a reset answering an ignored
   * segment) can bring the table back in step.
   */
  private recordIgnored(w: Int32Array, dir: number, index: Ev, old: TcpCt, pkt: PacketContext, doff: number): void {
    const seg = this.seg;
    w[Tw.LAST_INDEX] = index;
    w[Tw.LAST_DIR] = dir;
    w[Tw.LAST_SEQ] = seg[Seg.SEQ];
    w[Tw.LAST_END] = seg[Seg.END];
    w[Tw.LAST_WIN] = seg[Seg.WIN];
    if (index === Ev.SYN && dir === 0) {
      const l4 = pkt.l4off;
      const opt = synOptions(pkt.buf, l4 + 20, l4 + doff);
      w[Tw.LAST_FLAGS] = (opt & (TcpFlag.WINDOW_SCALE | TcpFlag.SACK_PERM)) | (old === TcpCt.LAST_ACK ? TcpFlag.CHALLENGE_ACK : 0);
      w[Tw.LAST_WSCALE] = (opt & TcpFlag.WINDOW_SCALE) !== 0 ? opt >> 8 : 0;
    }
    // A reply ACK in SYN_SENT may be a challenge ACK; the client's reset to it carries this seq.
    if (old === TcpCt.SYN_SENT && index === Ev.ACK && dir === 1) w[Tw.LAST_ACK] = seg[Seg.ACK];
  }

  /**
   * A FIN or RST found INVALID on an assured flow, answering a FIN or RST
   * from the other side: the endpoints think the flow is over while the
   * table does not, so a long timeout is cut to the unacknowledged one.
   */
  private shortenAfterInvalid(e: ConnEntry, dir: number, index: Ev, now: number): void {
    if ((e.status & CtStatus.ASSURED) === 0 || (index !== Ev.RST && index !== Ev.FIN)) return;
    const w = e.tcp;
    if (w[Tw.LAST_DIR] !== dir && (w[Tw.LAST_INDEX] === Ev.FIN || w[Tw.LAST_INDEX] === Ev.RST)) {
      const left = e.expires - now;
      const cap = 1000 * this.timeouts.tcpUnacknowledged;
      if (left >= 120_000 && left > cap) e.expires = now + cap;
    } else {
      w[Tw.LAST_INDEX] = index;
      w[Tw.LAST_DIR] = dir;
    }
  }

  /** A SYN or SYN/ACK (re)starts its sender's window state from its own values and options. */
  private initSender(w: Int32Array, dir: number, pkt: PacketContext, doff: number): void {
    const seg = this.seg;
    const snd = dir * Tw.DIR;
    const rcv = Tw.DIR - snd;
    w[snd + Tw.END] = w[snd + Tw.MAXEND] = seg[Seg.END];
    w[snd + Tw.MAXWIN] = seg[Seg.WIN] === 0 ? 1 : seg[Seg.WIN];
    this.takeSynOptions(w, snd, pkt, doff);
    // RFC 7323: scaling is on only if both SYNs offered it.
    if (dir === 1 && ((w[snd + Tw.FLAGS] & w[rcv + Tw.FLAGS]) & TcpFlag.WINDOW_SCALE) === 0) {
      w[snd + Tw.SCALE] = 0;
      w[rcv + Tw.SCALE] = 0;
    }
  }

  /** The SYN's options become the side's scale and flags (a SYN without options changes neither). */
  private takeSynOptions(w: Int32Array, side: number, pkt: PacketContext, doff: number): void {
    if (doff === 20) return;
    const l4 = pkt.l4off;
    const opt = synOptions(pkt.buf, l4 + 20, l4 + doff);
    w[side + Tw.SCALE] = opt >> 8;
    w[side + Tw.FLAGS] = (w[side + Tw.FLAGS] & TcpFlag.BE_LIBERAL) | (opt & 0xff);
  }

  /** Raises seg[SACK] to the highest right edge of the first SACK option's blocks. */
  private readSack(b: Uint8Array, o: number, end: number): void {
    // The usual options of a data segment, NOP NOP timestamp, carry no SACK.
    if (end - o === 12 && b[o] === 1 && b[o + 1] === 1 && b[o + 2] === 8 && b[o + 3] === 10) return;
    const seg = this.seg;
    while (o < end) {
      const kind = b[o];
      if (kind === 0) return;
      if (kind === 1) {
        o++;
        continue;
      }
      if (end - o < 2) return;
      const size = b[o + 1];
      if (size < 2 || size > end - o) return;
      if (kind === 5 && size >= 10 && (size - 2) % 8 === 0) {
        for (let i = o + 2; i < o + size; i += 8) {
          const edge = (b[i + 4] << 24) | (b[i + 5] << 16) | (b[i + 6] << 8) | b[i + 7];
          if (after(edge, seg[Seg.SACK])) seg[Seg.SACK] = edge;
        }
        return;
      }
      o += size;
    }
  }

  /**
   * The window check (I-IV in the header comment) and the bound updates of
   * an in-window segment. A side picked up mid-stream (BE_LIBERAL) passes
   * every check, without its bounds moving when a check would have failed.
   */
  private inWindow(e: ConnEntry, dir: number, index: Ev, pkt: PacketContext, doff: number): Win {
    const w = e.tcp;
    const seg = this.seg;
    const flags = pkt.tcpFlags;
    const snd = dir * Tw.DIR;
    const rcv = Tw.DIR - snd;
    let seq = seg[Seg.SEQ];
    let ack = seg[Seg.ACK];
    let end = seg[Seg.END];
    const rawWin = seg[Seg.WIN];
    seg[Seg.SACK] = ack;
    if ((w[rcv + Tw.FLAGS] & TcpFlag.SACK_PERM) !== 0 && doff > 20) this.readSack(pkt.buf, pkt.l4off + 20, pkt.l4off + doff);
    let sack = seg[Seg.SACK];

    if (w[snd + Tw.MAXWIN] === 0) {
      if ((flags & 0x02) !== 0) {
        // The SYN/ACK (or the reply side's SYN of a simultaneous open) starts the sender's state.
        this.initSender(w, dir, pkt, doff);
        if ((flags & 0x10) === 0) return Win.ACCEPT;
      } else {
        // Nothing seen from this side yet: take what this packet says.
        w[snd + Tw.END] = end;
        const swin = rawWin << w[snd + Tw.SCALE];
        w[snd + Tw.MAXWIN] = swin === 0 ? 1 : swin;
        w[snd + Tw.MAXEND] = end + w[snd + Tw.MAXWIN];
        if (w[rcv + Tw.MAXWIN] === 0) {
          // Neither side seen: let III and IV pass until the other side speaks.
          w[rcv + Tw.END] = w[rcv + Tw.MAXEND] = sack;
        } else if (sack === ((w[rcv + Tw.END] + 1) | 0)) {
          // Most likely the answer to a keepalive (one byte below the sent data).
          w[rcv + Tw.END] = sack;
        }
      }
    } else if ((flags & 0x02) !== 0 && after(end, w[snd + Tw.END]) && (e.tcpState === TcpCt.SYN_SENT || e.tcpState === TcpCt.SYN_RECV)) {
      // RFC 793: a reinitialised TCP may reopen with higher sequence numbers; start this side over.
      this.initSender(w, dir, pkt, doff);
      if (dir === 1 && (flags & 0x10) === 0) return Win.ACCEPT;
    }

    if ((flags & 0x10) === 0 || ((flags & 0x04) !== 0 && ack === 0)) {
      // No ACK (or a reset from a stack that sets ACK with a zero ack): pretend it acks everything seen.
      ack = sack = w[rcv + Tw.END];
    }
    if ((flags & 0x04) !== 0 && seq === 0 && e.tcpState === TcpCt.SYN_SENT) {
      // The reset refusing a SYN.
      seq = end = w[snd + Tw.END];
    }
    const liberal = (w[snd + Tw.FLAGS] & TcpFlag.BE_LIBERAL) !== 0;
    const maxAckWin = (w[snd + Tw.MAXWIN] >>> 0) > MAX_ACK_WINDOW_MIN ? w[snd + Tw.MAXWIN] >>> 0 : MAX_ACK_WINDOW_MIN;

    if (!before(seq, (w[snd + Tw.MAXEND] + 1) | 0)) {
      // I fails: beyond the receiver's window.
      const overshot = (end - w[snd + Tw.MAXEND] + 1) >>> 0;
      const ackOk = after(sack, (w[rcv + Tw.END] - maxAckWin - 1) | 0);
      const inRecvWin = w[rcv + Tw.MAXWIN] !== 0 && after(end, (w[snd + Tw.END] - w[rcv + Tw.MAXWIN] - 1) | 0);
      if (inRecvWin && ackOk && overshot <= w[rcv + Tw.MAXWIN] >>> 0 && before(sack, (w[rcv + Tw.END] + 1) | 0)) {
        // A sender overrunning the window by less than a window: the data may still be acked, so its
        // end is believed, but the segment itself is not.
        w[snd + Tw.END] = end;
        w[snd + Tw.FLAGS] |= TcpFlag.DATA_UNACKNOWLEDGED;
        return liberal ? Win.ACCEPT : Win.IGNORE;
      }
      return liberal ? Win.ACCEPT : Win.INVALID;
    }
    // III: acks data never sent.
    if (!before(sack, (w[rcv + Tw.END] + 1) | 0)) return liberal ? Win.ACCEPT : Win.INVALID;
    // II: data the receiver acked long ago (a late retransmission).
    if (w[rcv + Tw.MAXWIN] !== 0 && !after(end, (w[snd + Tw.END] - w[rcv + Tw.MAXWIN] - 1) | 0)) return liberal ? Win.ACCEPT : Win.IGNORE;
    // IV: an ack far behind (an overly delayed packet).
    if (!after(sack, (w[rcv + Tw.END] - maxAckWin - 1) | 0)) return liberal ? Win.ACCEPT : Win.IGNORE;

    const win = (flags & 0x02) === 0 ? rawWin << w[snd + Tw.SCALE] : rawWin;
    const swin = (win + (sack - ack)) >>> 0;
    if ((w[snd + Tw.MAXWIN] >>> 0) < swin) w[snd + Tw.MAXWIN] = swin;
    if (after(end, w[snd + Tw.END])) {
      w[snd + Tw.END] = end;
      w[snd + Tw.FLAGS] |= TcpFlag.DATA_UNACKNOWLEDGED;
    }
    if ((flags & 0x10) !== 0) {
      if ((w[snd + Tw.FLAGS] & TcpFlag.MAXACK_SET) === 0) {
        w[snd + Tw.MAXACK] = ack;
        w[snd + Tw.FLAGS] |= TcpFlag.MAXACK_SET;
      } else if (after(ack, w[snd + Tw.MAXACK])) {
        w[snd + Tw.MAXACK] = ack;
      }
    }
    // The receiver may take more than its window was: data beyond the old edge widens it.
    if (w[rcv + Tw.MAXWIN] !== 0 && after(end, w[snd + Tw.MAXEND])) w[rcv + Tw.MAXWIN] += end - w[snd + Tw.MAXEND];
    if (after((sack + win) | 0, (w[rcv + Tw.MAXEND] - 1) | 0)) {
      w[rcv + Tw.MAXEND] = sack + win + (win === 0 ? 1 : 0);
    }
    if (ack === w[rcv + Tw.END]) w[rcv + Tw.FLAGS] &= ~TcpFlag.DATA_UNACKNOWLEDGED;

    if (index === Ev.ACK) {
      if (w[Tw.LAST_DIR] === dir && w[Tw.LAST_SEQ] === seq && w[Tw.LAST_ACK] === ack && w[Tw.LAST_END] === end && w[Tw.LAST_WIN] === rawWin) {
        w[Tw.RETRANS] = (w[Tw.RETRANS] + 1) & 0xff;
      } else {
        w[Tw.LAST_DIR] = dir;
        w[Tw.LAST_SEQ] = seq;
        w[Tw.LAST_ACK] = ack;
        w[Tw.LAST_END] = end;
        w[Tw.LAST_WIN] = rawWin;
        w[Tw.RETRANS] = 0;
      }
    }
    return Win.ACCEPT;
  }

  private createNew(pkt: PacketContext, now: number): number {
    const proto = this.kProto;
    let replyDport = this.kDport;
    if (proto === P_TCP) {
      if (TCP_ORIG[tcpEvent(pkt.tcpFlags)][TcpCt.NONE] < 0) return Verdict.ACCEPT;
    } else if (proto === P_ICMP || proto === P_ICMPV6) {
      const map = pkt.family === 4 ? ICMP4_REPLY : ICMP6_REPLY;
      const isIcmpOfFamily = (proto === P_ICMP) === (pkt.family === 4);
      if (isIcmpOfFamily) {
        const r = map[pkt.icmpType];
        if (r < 0) return Verdict.ACCEPT;
        replyDport = (r << 8) | (pkt.icmpCode & 0xff);
      }
    }
    if (this.confirmedCount >= this.max && !this.earlyDrop(now)) {
      this.tableFullDrops++;
      return Verdict.DROP;
    }
    const e = new ConnEntry();
    e.family = this.kFamily;
    e.proto = proto;
    e.orig.src.set(this.kSrc);
    e.orig.dst.set(this.kDst);
    e.orig.sport = this.kSport;
    e.orig.dport = this.kDport;
    e.repl.src.set(this.kDst);
    e.repl.dst.set(this.kSrc);
    if (proto === P_ICMP || proto === P_ICMPV6) {
      e.repl.sport = this.kSport;
      e.repl.dport = replyDport;
    } else {
      e.repl.sport = this.kDport;
      e.repl.dport = this.kSport;
    }
    e.created = now;
    if (proto === P_TCP) {
      this.tcpNew(e, pkt);
      // The first packet goes through the tracker like any other (it sets the state and timeout).
      if (this.tcpPacket(e, 0, pkt, now) === TcpResult.INVALID) return Verdict.ACCEPT;
    } else {
      e.expires = now + 1000 * this.timeoutFor(e, now);
    }
    pkt.ct = e;
    pkt.ctState = CtState.NEW;
    return Verdict.ACCEPT;
  }

  /**
   * Window state of a new TCP flow from its first packet: a SYN gives the
   * client's sequence, window and options; anything else is a flow picked
   * up mid-stream (tcp_loose), whose history is unknown, so both sides are
   * taken as allowing SACK and their window checks are skipped.
   */
  private tcpNew(e: ConnEntry, pkt: PacketContext): void {
    const w = new Int32Array(Tw.WORDS);
    e.tcp = w;
    const b = pkt.buf;
    const l4 = pkt.l4off;
    const flags = pkt.tcpFlags;
    const doff = (b[l4 + 12] >> 4) << 2;
    const seq = (b[l4 + 4] << 24) | (b[l4 + 5] << 16) | (b[l4 + 6] << 8) | b[l4 + 7];
    const win = (b[l4 + 14] << 8) | b[l4 + 15];
    w[Tw.END] = seq + (pkt.l4len - doff) + (flags & 0x02 ? 1 : 0) + (flags & 0x01);
    w[Tw.MAXWIN] = win === 0 ? 1 : win;
    if (tcpEvent(flags) === Ev.SYN) {
      w[Tw.MAXEND] = w[Tw.END];
      this.takeSynOptions(w, 0, pkt, doff);
    } else {
      w[Tw.MAXEND] = w[Tw.END] + w[Tw.MAXWIN];
      w[Tw.FLAGS] = w[Tw.DIR + Tw.FLAGS] = TcpFlag.SACK_PERM | TcpFlag.BE_LIBERAL;
    }
    w[Tw.LAST_INDEX] = Ev.NONE;
  }

  /** ICMP/ICMPv6 error: RELATED to the flow its quoted header belongs to, else INVALID. */
  private related(pkt: PacketContext): number {
    const b = pkt.buf;
    const inner = pkt.l4off + 8;
    const end = pkt.l4off + pkt.l4len;
    let il4: number;
    let iproto: number;
    this.kFamily = pkt.family;
    if (pkt.family === 4) {
      if (end - inner < 20 || b[inner] >> 4 !== 4) return Verdict.ACCEPT;
      const ihl = (b[inner] & 15) * 4;
      if (ihl < 20) return Verdict.ACCEPT;
      iproto = b[inner + 9];
      this.kSrc.fill(0);
      this.kDst.fill(0);
      this.kSrc[0] = getU32(b, inner + 12);
      this.kDst[0] = getU32(b, inner + 16);
      if ((getU16(b, inner + 6) & 0x1fff) !== 0) return Verdict.ACCEPT;
      il4 = inner + ihl;
    } else {
      if (end - inner < 40 || b[inner] >> 4 !== 6) return Verdict.ACCEPT;
      for (let i = 0; i < 4; i++) {
        this.kSrc[i] = getU32(b, inner + 8 + 4 * i);
        this.kDst[i] = getU32(b, inner + 24 + 4 * i);
      }
      iproto = b[inner + 6];
      il4 = inner + 40;
      // Skip the quoted packet's extension headers to reach its ports.
      for (let hops = 0; hops < 8; hops++) {
        if (iproto === 0 || iproto === 43 || iproto === 60) {
          if (end - il4 < 8) return Verdict.ACCEPT;
          iproto = b[il4];
          il4 += (b[il4 + 1] + 1) * 8;
        } else if (iproto === 44) {
          if (end - il4 < 8 || (getU16(b, il4 + 2) & 0xfff8) !== 0) return Verdict.ACCEPT;
          iproto = b[il4];
          il4 += 8;
        } else if (iproto === 51) {
          if (end - il4 < 8) return Verdict.ACCEPT;
          iproto = b[il4];
          il4 += (b[il4 + 1] + 2) * 4;
        } else break;
      }
    }
    this.kProto = iproto;
    const avail = end - il4;
    if (hasPorts(iproto)) {
      if (avail < 4) return Verdict.ACCEPT;
      this.kSport = getU16(b, il4);
      this.kDport = getU16(b, il4 + 2);
    } else if ((iproto === P_ICMP && pkt.family === 4) || (iproto === P_ICMPV6 && pkt.family === 6)) {
      if (avail < 8) return Verdict.ACCEPT;
      const type = b[il4];
      // An error about an error is never related to anything.
      if (pkt.family === 4 ? ICMP4_QUERY[type] === 0 : type < 128) return Verdict.ACCEPT;
      this.kSport = getU16(b, il4 + 4);
      this.kDport = (type << 8) | b[il4 + 1];
    } else {
      this.kSport = 0;
      this.kDport = 0;
    }
    const t = this.lookup(pkt.now);
    if (t === null) return Verdict.ACCEPT;
    pkt.ct = t.entry;
    pkt.ctState = CtState.RELATED;
    return Verdict.ACCEPT;
  }

  /** The fragment identification of pkt (IPv4 ID, IPv6 fragment header ID), or -1. */
  private fragmentId(pkt: PacketContext): number {
    const b = pkt.buf;
    const o = pkt.l3off;
    if (pkt.family === 4) return getU16(b, o + 4);
    const end = o + pkt.l3len;
    let nh = b[o + 6];
    let i = o + 40;
    for (let hops = 0; hops < 8 && i + 8 <= end; hops++) {
      if (nh === 44) return getU32(b, i + 4);
      if (nh === 0 || nh === 43 || nh === 60) {
        nh = b[i];
        i += (b[i + 1] + 1) * 8;
      } else if (nh === 51) {
        nh = b[i];
        i += (b[i + 1] + 2) * 4;
      } else return -1;
    }
    return -1;
  }

  /** Slot of the fragment cache for (family, proto, id, src, dst); fills fragProbe. */
  private fragSlot(pkt: PacketContext, id: number): number {
    const k = this.fragProbe;
    k[0] = pkt.family;
    k[1] = pkt.proto;
    k[2] = id >>> 0;
    if (pkt.family === 4) {
      k[3] = pkt.src4;
      k[4] = k[5] = k[6] = 0;
      k[7] = pkt.dst4;
      k[8] = k[9] = k[10] = 0;
    } else {
      for (let i = 0; i < 4; i++) {
        k[3 + i] = pkt.src6[i];
        k[7 + i] = pkt.dst6[i];
      }
    }
    let h = 0x811c9dc5;
    for (let i = 0; i < FRAG_KEY_WORDS; i++) h = Math.imul(h ^ k[i], 0x01000193);
    return ((h ^ (h >>> 16)) >>> 0) & (FRAG_SLOTS - 1);
  }

  /** A first fragment: remember the state it got for the rest of its datagram. */
  private rememberFragment(pkt: PacketContext): void {
    const id = this.fragmentId(pkt);
    if (id < 0) return;
    const slot = this.fragSlot(pkt, id);
    this.fragKeys.set(this.fragProbe, slot * FRAG_KEY_WORDS);
    this.fragCt[slot] = pkt.ct as ConnEntry | null;
    this.fragState[slot] = pkt.ctState;
    this.fragExpires[slot] = pkt.now + FRAG_TIMEOUT_MS;
  }

  /** A later fragment: the state of its first fragment if that passed recently, else INVALID. */
  private laterFragment(pkt: PacketContext): number {
    const id = this.fragmentId(pkt);
    if (id < 0) return Verdict.ACCEPT;
    const slot = this.fragSlot(pkt, id);
    if (this.fragExpires[slot] <= pkt.now) return Verdict.ACCEPT;
    const base = slot * FRAG_KEY_WORDS;
    for (let i = 0; i < FRAG_KEY_WORDS; i++) if (this.fragKeys[base + i] !== this.fragProbe[i]) return Verdict.ACCEPT;
    const e = this.fragCt[slot];
    if (e !== null && (e.status & CtStatus.DYING) !== 0) return Verdict.ACCEPT;
    pkt.ct = e;
    pkt.ctState = this.fragState[slot] as CtState;
    return Verdict.ACCEPT;
  }

  private keyFromPacket(pkt: PacketContext, b: Uint8Array, l4: number): void {
    this.kFamily = pkt.family;
    const proto = pkt.proto;
    this.kProto = proto;
    if (pkt.family === 4) {
      const s = this.kSrc;
      const d = this.kDst;
      s[0] = pkt.src4;
      d[0] = pkt.dst4;
      s[1] = s[2] = s[3] = d[1] = d[2] = d[3] = 0;
    } else {
      this.kSrc.set(pkt.src6);
      this.kDst.set(pkt.dst6);
    }
    if (hasPorts(proto)) {
      this.kSport = pkt.sport;
      this.kDport = pkt.dport;
    } else if ((proto === P_ICMP && pkt.family === 4) || (proto === P_ICMPV6 && pkt.family === 6)) {
      this.kSport = getU16(b, l4 + 4);
      this.kDport = ((pkt.icmpType & 0xff) << 8) | (pkt.icmpCode & 0xff);
    } else {
      this.kSport = 0;
      this.kDport = 0;
    }
  }

  private setKey(family: Family, proto: number, t: CtTuple): void {
    this.kFamily = family;
    this.kProto = proto;
    this.kSrc.set(t.src);
    this.kDst.set(t.dst);
    this.kSport = t.sport;
    this.kDport = t.dport;
  }

  /** Finds the live tuple equal to the key; an expired entry met on the way is removed. */
  private lookup(now: number): CtTuple | null {
    const h = hashKey(this.kFamily, this.kProto, this.kSrc, this.kDst, this.kSport, this.kDport);
    const s = this.kSrc;
    const d = this.kDst;
    for (let t = this.buckets[h & this.bucketMask]; t !== null; t = t.next) {
      const e = t.entry;
      if (t.hash !== h || e.proto !== this.kProto || e.family !== this.kFamily || t.sport !== this.kSport || t.dport !== this.kDport) continue;
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
    e.status = (e.status & ~CtStatus.CONFIRMED) | CtStatus.DYING;
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
      if (e.expires <= now || (e.status & CtStatus.ASSURED) === 0) {
        this.kill(e);
        this.earlyDrops++;
        return true;
      }
    }
    return false;
  }
}

function addr(family: Family, w: Uint32Array): string {
  return family === 4 ? ipv4ToString(w[0]) : ipv6ToString(w);
}

const PROTO_LABEL: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 33: 'dccp', 58: 'icmpv6', 132: 'sctp', 136: 'udplite' };

function tupleText(e: ConnEntry, t: CtTuple): string {
  let s = `src=${addr(e.family, t.src)} dst=${addr(e.family, t.dst)}`;
  if (hasPorts(e.proto)) s += ` sport=${t.sport} dport=${t.dport}`;
  else if ((e.proto === P_ICMP && e.family === 4) || (e.proto === P_ICMPV6 && e.family === 6)) {
    s += ` type=${t.dport >> 8} code=${t.dport & 0xff} id=${t.sport}`;
  }
  return s;
}

/** One `conntrack -L` line (without newline). */
export function formatEntry(e: ConnEntry, now: number): string {
  const known = hasPorts(e.proto) || (e.proto === P_ICMP && e.family === 4) || (e.proto === P_ICMPV6 && e.family === 6);
  const label = known ? PROTO_LABEL[e.proto] : 'unknown';
  let s = `${label.padEnd(8)} ${e.proto} ${e.remaining(now)} `;
  if (e.proto === P_TCP) s += `${TCP_STATE_NAMES[e.tcpState]} `;
  s += tupleText(e, e.orig);
  if ((e.status & CtStatus.SEEN_REPLY) === 0) s += ' [UNREPLIED]';
  s += ' ' + tupleText(e, e.repl);
  if ((e.status & CtStatus.ASSURED) !== 0) s += ' [ASSURED]';
  s += ` mark=${e.mark >>> 0} use=1`;
  return s;
}

const CONNTRACK_VERSION = 'conntrack v1.4.7 (conntrack-tools)';

/**
 * `xtr conntrack -L [-f ipv4|ipv6] [-p PROTO]`, `-F`, `-C`: the subset of
 * conntrack-tools users reach for, with its output and exit codes.
 */
export function conntrackCommands(ct: Conntrack, now: () => number): CommandTable {
  const handler = (args: string[]): CommandResult => {
    let cmd = '';
    let family: Family | undefined;
    let proto = -1;
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a === '-L' || a === '--dump' || a === '-F' || a === '--flush' || a === '-C' || a === '--count') {
        if (cmd) return { status: 2, stdout: '', stderr: `${CONNTRACK_VERSION}: Invalid parameters\n` };
        cmd = a.length === 2 ? a[1] : a === '--dump' ? 'L' : a === '--flush' ? 'F' : 'C';
      } else if (a === '-f' || a === '--family') {
        const v = args[++i];
        if (v === 'ipv4') family = 4;
        else if (v === 'ipv6') family = 6;
        else return { status: 2, stdout: '', stderr: `${CONNTRACK_VERSION}: \`${v ?? ''}' unsupported protocol\n` };
      } else if (a === '-p' || a === '--proto') {
        const v = (args[++i] ?? '').toLowerCase();
        const found = Object.entries(PROTO_LABEL).find(([, n]) => n === v);
        proto = found ? Number(found[0]) : /^[0-9]+$/.test(v) ? Number(v) : -2;
        if (proto === -2 || proto > 255) return { status: 2, stdout: '', stderr: `${CONNTRACK_VERSION}: \`${v}' unsupported protocol\n` };
      } else {
        return { status: 2, stdout: '', stderr: `${CONNTRACK_VERSION}: Unknown option \`${a}'\n` };
      }
    }
    const t = now();
    if (cmd === 'F') {
      ct.flush();
      return { status: 0, stdout: '', stderr: `${CONNTRACK_VERSION}: connection tracking table has been emptied.\n` };
    }
    if (cmd === 'C') return { status: 0, stdout: `${ct.count(t)}\n`, stderr: '' };
    if (cmd === 'L') {
      const rows = ct.entries(t).filter((e) => (family === undefined || e.family === family) && (proto < 0 || e.proto === proto));
      const out = rows.map((e) => formatEntry(e, t) + '\n').join('');
      return { status: 0, stdout: out, stderr: `${CONNTRACK_VERSION}: ${rows.length} flow entries have been shown.\n` };
    }
    return { status: 2, stdout: '', stderr: `${CONNTRACK_VERSION}: no command specified\n` };
  };
  return { conntrack: handler };
}
