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
 */
import { Verdict, CtState, type Family, type PacketContext } from './packet.js';
import type { CommandTable, CommandResult } from './commands.js';
import { ipv4ToString } from '../dataplane/ipv4.js';
import { ipv6ToString } from '../dataplane/ipv6.js';
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
  /** Cap for a TCP flow that never saw a reply (the kernel's "unacknowledged" timeout). */
  tcpUnacknowledged: 300,
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
export class ConnEntry {
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
      if (pkt.l4len < 20 || TCP_VALID_FLAGS[pkt.tcpFlags & 0x37] === 0) return Verdict.ACCEPT;
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
    let t = this.lookup(now);
    if (t !== null && proto === P_TCP && !t.reply && tcpEvent(pkt.tcpFlags) === Ev.SYN) {
      const st = t.entry.tcpState;
      // A new SYN for a closed or TIME_WAIT flow reopens it: the old entry goes and the SYN is a new flow.
      if (st === TcpCt.TIME_WAIT || st === TcpCt.CLOSE) {
        this.kill(t.entry);
        t = null;
      }
    }
    if (t === null) return this.createNew(pkt, now);
    const e = t.entry;
    const reply = t.reply;
    if (proto === P_TCP) {
      if (!this.tcpPacket(e, reply, pkt.tcpFlags, now)) return Verdict.ACCEPT;
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

  /** Runs the TCP state machine; false = the packet does not fit (INVALID, pkt left detached). */
  private tcpPacket(e: ConnEntry, reply: boolean, flags: number, now: number): boolean {
    const ev = tcpEvent(flags);
    const old = e.tcpState;
    const next = (reply ? TCP_REPLY : TCP_ORIG)[ev][old];
    if (next === IV) return false;
    if (next === IG) return true;
    const seenReply = (e.status & CtStatus.SEEN_REPLY) !== 0;
    if (!seenReply && ev === Ev.RST) {
      // A reset before any reply: the flow never existed (the kernel kills it at once).
      this.kill(e);
      e.tcpState = TcpCt.CLOSE;
      return true;
    }
    if (reply) e.status |= CtStatus.SEEN_REPLY;
    if ((e.status & CtStatus.SEEN_REPLY) !== 0 && seenReply && next === TcpCt.ESTABLISHED &&
        (old === TcpCt.SYN_RECV || old === TcpCt.ESTABLISHED)) {
      e.status |= CtStatus.ASSURED;
    }
    e.tcpState = next;
    let timeout = this.timeouts.tcp[next];
    if ((e.status & CtStatus.SEEN_REPLY) === 0 && timeout > this.timeouts.tcpUnacknowledged) timeout = this.timeouts.tcpUnacknowledged;
    e.expires = now + 1000 * timeout;
    return true;
  }

  private createNew(pkt: PacketContext, now: number): number {
    const proto = this.kProto;
    let tcpState = TcpCt.NONE;
    let replyDport = this.kDport;
    if (proto === P_TCP) {
      const next = TCP_ORIG[tcpEvent(pkt.tcpFlags)][TcpCt.NONE];
      if (next < 0) return Verdict.ACCEPT;
      tcpState = next;
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
    e.tcpState = tcpState;
    if (proto === P_TCP) {
      let timeout = this.timeouts.tcp[tcpState];
      if (timeout > this.timeouts.tcpUnacknowledged) timeout = this.timeouts.tcpUnacknowledged;
      e.expires = now + 1000 * timeout;
    } else {
      e.expires = now + 1000 * this.timeoutFor(e, now);
    }
    pkt.ct = e;
    pkt.ctState = CtState.NEW;
    return Verdict.ACCEPT;
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
