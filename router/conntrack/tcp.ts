/**
 * The TCP tracker (the kernel's nf_conntrack_proto_tcp), tracking as the
 * kernel does by default (tcp_be_liberal=0, tcp_loose=1,
 * tcp_max_retrans=3): the state table below plus sequence and
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
 *
 * The tracker owns no entries: the table (table.ts) hands it an entry and
 * a direction per packet and acts on the TcpResult it gets back (REOPEN and
 * CLOSED remove the entry there). Its per-entry state is the slot's words of
 * the store's per-protocol slab (store.ts pstate) in the Tw layout, so the
 * hot path reads and writes words of one typed array and allocates nothing.
 */
import type { PacketContext } from '../../xt/packet.js';
import { ConnStatus } from '../../xt/conn.js';
import { PSTATE_BYTES, PSTATE_WORDS, type EntryStore } from './store.js';
import type { Timeouts } from './table.js';

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
 * Layout of a slot's pstate words (store.ts), the window tracking state of a TCP flow (int32
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
  /** Words per direction. */
  DIR = 4,
  LAST_SEQ = 8,
  LAST_ACK = 9,
  LAST_END = 10,
  /** The window field as sent (unscaled). */
  LAST_WIN = 11,
  WORDS = 12,
}

/**
 * The small fields of the same state, one byte each in the store's pbytes
 * slab (a word apiece would cost 27 bytes more per entry). Per direction
 * DIR bytes, so a word offset `snd` (0 or Tw.DIR) is the byte offset
 * `snd >> 1`.
 */
const enum Tb {
  /** Shift applied to this side's window field outside SYNs. */
  SCALE = 0,
  /** TcpFlag bits of this side. */
  FLAGS = 1,
  /** Bytes per direction. */
  DIR = 2,
  LAST_DIR = 4,
  LAST_INDEX = 5,
  /** Window scale of an ignored SYN, kept in case its SYN/ACK proves it right. */
  LAST_WSCALE = 6,
  LAST_FLAGS = 7,
  /** The same ACK seen again this many times in a row (wraps at 256 as the kernel's u8). */
  RETRANS = 8,
  BYTES = 9,
}

// The store sizes its per-protocol slab for this layout.
if ((Tw.WORDS as number) !== PSTATE_WORDS || (Tb.BYTES as number) !== PSTATE_BYTES || (Tw.DIR as number) !== 2 * Tb.DIR) {
  throw new Error('conntrack: the TCP state layout and the store slabs differ');
}

/** Bits of Tb.FLAGS (per side) and Tb.LAST_FLAGS, numbered as the kernel's IP_CT_TCP_FLAG_*. */
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
export const enum TcpResult {
  /** In window: state, bounds and timeout updated. */
  TRACKED,
  /** Part of the flow, but nothing about it is believed (state and timeout unchanged). */
  IGNORED,
  INVALID,
  /** A SYN reopening a closed or aborted flow: the old entry goes, the SYN starts a new one. */
  REOPEN,
  /** Tracked, and the flow never existed (a reset before any reply): the table removes the entry at once. */
  CLOSED,
}

/** resetCheck's answer: bits, or RST_INVALID alone. */
const RST_KEEP_STATE = 1;
const RST_SKIP_WINDOW = 2;
const RST_INVALID = 4;

/** Outcome of the window check. */
const enum Win { ACCEPT, IGNORE, INVALID }

/** Words of TcpTracker.seg: the current segment as the window check reads it. */
const enum Seg { SEQ, ACK, SACK, END, WIN, WORDS }

/** Repeats of the same ACK after which ESTABLISHED is cut to tcpRetrans (the kernel's tcp_max_retrans). */
const TCP_MAX_RETRANS = 3;
/** Floor of the lower ack bound (IV): the kernel's MAXACKWINCONST. */
const MAX_ACK_WINDOW_MIN = 66000;
/** RFC 7323's largest window scale shift. */
const TCP_MAX_WSCALE = 14;

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

/** tcp_error: a header cut short or an impossible flag combination (the packet is then INVALID). */
export function tcpMalformed(pkt: PacketContext): boolean {
  if (pkt.l4len < 20 || TCP_VALID_FLAGS[pkt.tcpFlags & 0x37] === 0) return true;
  const doff = (pkt.buf[pkt.l4off + 12] >> 4) << 2;
  return doff < 20 || doff > pkt.l4len;
}

/** Whether a segment with these flags may open a flow (the state table's NONE column). */
export function tcpOpensFlow(flags: number): boolean {
  return TCP_ORIG[tcpEvent(flags)][TcpCt.NONE] >= 0;
}

/**
 * The tracker of one table: its timeouts, and the current segment as
 * scratch words (so sequence numbers never travel as boxed call arguments).
 */
export class TcpTracker {
  /** The TCP segment being tracked (Seg layout); reused for every packet. */
  private readonly seg = new Int32Array(Seg.WORDS);

  constructor(
    private readonly timeouts: Timeouts,
    private readonly store: EntryStore,
  ) {}

  /**
   * Window state of a new TCP flow from its first packet: a SYN gives the
   * client's sequence, window and options; anything else is a flow picked
   * up mid-stream (tcp_loose), whose history is unknown, so both sides are
   * taken as allowing SACK and their window checks are skipped.
   */
  newFlow(slot: number, pkt: PacketContext): void {
    const w = this.store.pstate;
    const wb = slot * Tw.WORDS;
    const f = this.store.pbytes;
    const fb = slot * Tb.BYTES;
    const b = pkt.buf;
    const l4 = pkt.l4off;
    const flags = pkt.tcpFlags;
    const doff = (b[l4 + 12] >> 4) << 2;
    const seq = (b[l4 + 4] << 24) | (b[l4 + 5] << 16) | (b[l4 + 6] << 8) | b[l4 + 7];
    const win = (b[l4 + 14] << 8) | b[l4 + 15];
    w[wb + Tw.END] = seq + (pkt.l4len - doff) + (flags & 0x02 ? 1 : 0) + (flags & 0x01);
    w[wb + Tw.MAXWIN] = win === 0 ? 1 : win;
    if (tcpEvent(flags) === Ev.SYN) {
      w[wb + Tw.MAXEND] = w[wb + Tw.END];
      this.takeSynOptions(w, wb, f, fb, 0, pkt, doff);
    } else {
      w[wb + Tw.MAXEND] = w[wb + Tw.END] + w[wb + Tw.MAXWIN];
      f[fb + Tb.FLAGS] = f[fb + Tb.DIR + Tb.FLAGS] = TcpFlag.SACK_PERM | TcpFlag.BE_LIBERAL;
    }
    f[fb + Tb.LAST_INDEX] = Ev.NONE;
  }

  /**
   * The TCP tracker for one packet of flow e travelling in direction dir
   * (0 original, 1 reply): the state table, the kernel's special cases
   * around it, the window check, then state, bounds and timeout. SEEN_REPLY
   * is the caller's to set afterwards (the cases here read it as it was
   * before this packet).
   */
  packet(slot: number, dir: number, pkt: PacketContext, now: number): TcpResult {
    const st = this.store;
    const w = st.pstate;
    const wb = slot * Tw.WORDS;
    const f = this.store.pbytes;
    const fb = slot * Tb.BYTES;
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
    let old = st.tcpState[slot];
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
        if (((f[fb + (snd >> 1) + Tb.FLAGS] | f[fb + (rcv >> 1) + Tb.FLAGS]) & TcpFlag.CLOSE_INIT) !== 0 || (f[fb + Tb.LAST_DIR] === dir && f[fb + Tb.LAST_INDEX] === Ev.RST)) {
          return TcpResult.REOPEN;
        }
        ignore = true;
        break;
      case IG:
        if (index === Ev.SYNACK && f[fb + Tb.LAST_INDEX] === Ev.SYN && f[fb + Tb.LAST_DIR] !== dir && seg[Seg.ACK] === w[wb + Tw.LAST_END]) {
          // This SYN/ACK answers a SYN the table ignored: the endpoints are in step, the table was
          // not. Take the flow up from that SYN's recorded values, as a fresh SYN_SENT.
          old = TcpCt.SYN_SENT;
          next = TcpCt.SYN_RECV;
          const syn = f[fb + Tb.LAST_DIR] * Tw.DIR;
          w[wb + syn + Tw.END] = w[wb + syn + Tw.MAXEND] = w[wb + Tw.LAST_END];
          w[wb + syn + Tw.MAXWIN] = w[wb + Tw.LAST_WIN] === 0 ? 1 : w[wb + Tw.LAST_WIN];
          f[fb + (syn >> 1) + Tb.SCALE] = f[fb + Tb.LAST_WSCALE];
          f[fb + Tb.LAST_FLAGS] &= ~TcpFlag.CHALLENGE_ACK;
          f[fb + (syn >> 1) + Tb.FLAGS] = f[fb + Tb.LAST_FLAGS];
          w[wb + snd + Tw.END] = w[wb + snd + Tw.MAXEND] = w[wb + snd + Tw.MAXWIN] = w[wb + snd + Tw.MAXACK] = f[fb + (snd >> 1) + Tb.SCALE] = 0;
          f[fb + (snd >> 1) + Tb.FLAGS] &= TcpFlag.BE_LIBERAL;
          break;
        }
        ignore = true;
        break;
      case TcpCt.TIME_WAIT:
        // RFC 5961: a challenge ACK answering an ignored SYN in LAST_ACK is not the last ACK.
        if (old === TcpCt.LAST_ACK && index === Ev.ACK && f[fb + Tb.LAST_DIR] !== dir && f[fb + Tb.LAST_INDEX] === Ev.SYN &&
            (f[fb + Tb.LAST_FLAGS] & TcpFlag.CHALLENGE_ACK) !== 0) {
          f[fb + Tb.LAST_FLAGS] &= ~TcpFlag.CHALLENGE_ACK;
          return TcpResult.IGNORED;
        }
        break;
      case TcpCt.SYN_SENT2:
        // The table alone cannot follow a simultaneous open; remember it for the ACK that ends it.
        f[fb + Tb.LAST_FLAGS] |= TcpFlag.SIMULTANEOUS_OPEN;
        break;
      case TcpCt.SYN_RECV:
        if (dir === 1 && index === Ev.ACK && (f[fb + Tb.LAST_FLAGS] & TcpFlag.SIMULTANEOUS_OPEN) !== 0) next = TcpCt.ESTABLISHED;
        break;
      case TcpCt.CLOSE:
        if (index !== Ev.RST) break;
        {
          const r = this.resetCheck(slot, dir, old, seq);
          if (r === RST_INVALID) return TcpResult.INVALID;
          if ((r & RST_KEEP_STATE) !== 0) next = old;
          if ((r & RST_SKIP_WINDOW) !== 0) checkWindow = false;
        }
        break;
    }
    if (ignore) {
      this.recordIgnored(w, wb, f, fb, dir, index, old, pkt, doff);
      return TcpResult.IGNORED;
    }
    if (checkWindow) {
      const r = this.inWindow(slot, dir, index, pkt, doff);
      if (r === Win.IGNORE) return TcpResult.IGNORED;
      if (r === Win.INVALID) {
        this.shortenAfterInvalid(slot, dir, index, now);
        return TcpResult.INVALID;
      }
    }
    f[fb + Tb.LAST_INDEX] = index;
    f[fb + Tb.LAST_DIR] = dir;
    st.tcpState[slot] = next;
    if (old !== next && next === TcpCt.FIN_WAIT) f[fb + (snd >> 1) + Tb.FLAGS] |= TcpFlag.CLOSE_INIT;

    const to = this.timeouts;
    const stateTimeout = to.tcp[next];
    let timeout: number;
    if (f[fb + Tb.RETRANS] >= TCP_MAX_RETRANS && stateTimeout > to.tcpRetrans) timeout = to.tcpRetrans;
    else if (index === Ev.RST) timeout = to.tcp[TcpCt.CLOSE];
    else if (((f[fb + Tb.FLAGS] | f[fb + Tb.DIR + Tb.FLAGS]) & TcpFlag.DATA_UNACKNOWLEDGED) !== 0 && stateTimeout > to.tcpUnacknowledged) timeout = to.tcpUnacknowledged;
    else if (w[wb + Tw.LAST_WIN] === 0 && stateTimeout > to.tcpRetrans) timeout = to.tcpRetrans;
    else timeout = stateTimeout;

    if ((st.status[slot] & ConnStatus.SEEN_REPLY) === 0) {
      if (index === Ev.RST) {
        // A reset before any reply: the flow never existed (the kernel kills it at once).
        return TcpResult.CLOSED;
      }
      // A retransmitted SYN does not extend the entry, so a reused port cannot keep it alive.
      if (index === Ev.SYN && old === TcpCt.SYN_SENT) return TcpResult.TRACKED;
      // Picked up mid-stream and never answered: not the 5-day ESTABLISHED timeout.
      if (next === TcpCt.ESTABLISHED && timeout > to.tcpUnacknowledged) timeout = to.tcpUnacknowledged;
    } else if ((st.status[slot] & ConnStatus.ASSURED) === 0 && (old === TcpCt.SYN_RECV || old === TcpCt.ESTABLISHED) && next === TcpCt.ESTABLISHED) {
      st.status[slot] |= ConnStatus.ASSURED;
    }
    st.expires[slot] = now + 1000 * timeout;
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
  private resetCheck(slot: number, dir: number, old: TcpCt, seq: number): number {
    const st = this.store;
    // Closing states: the ports may have been reused already, the recorded values mean nothing.
    if (old === TcpCt.FIN_WAIT || old === TcpCt.CLOSE_WAIT || old === TcpCt.LAST_ACK || old === TcpCt.TIME_WAIT || old === TcpCt.CLOSE) {
      return RST_SKIP_WINDOW;
    }
    const w = st.pstate;
    const wb = slot * Tw.WORDS;
    const f = this.store.pbytes;
    const fb = slot * Tb.BYTES;
    const other = Tw.DIR - dir * Tw.DIR;
    let r = 0;
    if ((f[fb + (other >> 1) + Tb.FLAGS] & TcpFlag.MAXACK_SET) !== 0 && f[fb + Tb.LAST_INDEX] !== Ev.SYN) {
      const established = old === TcpCt.ESTABLISHED && (st.status[slot] & ConnStatus.ASSURED) !== 0;
      // seq 0 before the flow is established: most likely the answer to a SYN let through.
      if (seq === 0 && !established) return 0;
      if (before(seq, w[wb + other + Tw.MAXACK])) return RST_INVALID;
      if (!established || seq === w[wb + other + Tw.MAXACK]) return 0;
      // A reset right after this side's last data segment ends a train; anything else keeps the state.
      if (f[fb + Tb.LAST_INDEX] === Ev.ACK && f[fb + Tb.LAST_DIR] === dir && seq === w[wb + Tw.LAST_END]) return 0;
      r = RST_KEEP_STATE;
    }
    const ack = this.seg[Seg.ACK];
    const seenReply = (st.status[slot] & ConnStatus.SEEN_REPLY) !== 0;
    const assured = (st.status[slot] & ConnStatus.ASSURED) !== 0;
    if (((seenReply && f[fb + Tb.LAST_INDEX] === Ev.SYN) || (!assured && f[fb + Tb.LAST_INDEX] === Ev.ACK)) && ack === w[wb + Tw.LAST_END]) {
      return r | RST_SKIP_WINDOW;
    }
    // The reset answering a challenge ACK let through in SYN_SENT.
    if (old === TcpCt.SYN_SENT && f[fb + Tb.LAST_INDEX] === Ev.ACK && f[fb + Tb.LAST_DIR] === 1 && seq === w[wb + Tw.LAST_ACK]) return r | RST_SKIP_WINDOW;
    return r;
  }

  /**
   * A packet let through without being believed: what it was is kept, so a
   * SYN/ACK answering an ignored SYN (or a reset answering an ignored
   * segment) can bring the table back in step.
   */
  private recordIgnored(w: Int32Array, wb: number, f: Uint8Array, fb: number, dir: number, index: Ev, old: TcpCt, pkt: PacketContext, doff: number): void {
    const seg = this.seg;
    f[fb + Tb.LAST_INDEX] = index;
    f[fb + Tb.LAST_DIR] = dir;
    w[wb + Tw.LAST_SEQ] = seg[Seg.SEQ];
    w[wb + Tw.LAST_END] = seg[Seg.END];
    w[wb + Tw.LAST_WIN] = seg[Seg.WIN];
    if (index === Ev.SYN && dir === 0) {
      const l4 = pkt.l4off;
      const opt = synOptions(pkt.buf, l4 + 20, l4 + doff);
      f[fb + Tb.LAST_FLAGS] = (opt & (TcpFlag.WINDOW_SCALE | TcpFlag.SACK_PERM)) | (old === TcpCt.LAST_ACK ? TcpFlag.CHALLENGE_ACK : 0);
      f[fb + Tb.LAST_WSCALE] = (opt & TcpFlag.WINDOW_SCALE) !== 0 ? opt >> 8 : 0;
    }
    // A reply ACK in SYN_SENT may be a challenge ACK; the client's reset to it carries this seq.
    if (old === TcpCt.SYN_SENT && index === Ev.ACK && dir === 1) w[wb + Tw.LAST_ACK] = seg[Seg.ACK];
  }

  /**
   * A FIN or RST found INVALID on an assured flow, answering a FIN or RST
   * from the other side: the endpoints think the flow is over while the
   * table does not, so a long timeout is cut to the unacknowledged one.
   */
  private shortenAfterInvalid(slot: number, dir: number, index: Ev, now: number): void {
    const st = this.store;
    if ((st.status[slot] & ConnStatus.ASSURED) === 0 || (index !== Ev.RST && index !== Ev.FIN)) return;
    const w = st.pstate;
    const wb = slot * Tw.WORDS;
    const f = this.store.pbytes;
    const fb = slot * Tb.BYTES;
    if (f[fb + Tb.LAST_DIR] !== dir && (f[fb + Tb.LAST_INDEX] === Ev.FIN || f[fb + Tb.LAST_INDEX] === Ev.RST)) {
      const left = st.expires[slot] - now;
      const cap = 1000 * this.timeouts.tcpUnacknowledged;
      if (left >= 120_000 && left > cap) st.expires[slot] = now + cap;
    } else {
      f[fb + Tb.LAST_INDEX] = index;
      f[fb + Tb.LAST_DIR] = dir;
    }
  }

  /** A SYN or SYN/ACK (re)starts its sender's window state from its own values and options. */
  private initSender(w: Int32Array, wb: number, f: Uint8Array, fb: number, dir: number, pkt: PacketContext, doff: number): void {
    const seg = this.seg;
    const snd = dir * Tw.DIR;
    const rcv = Tw.DIR - snd;
    w[wb + snd + Tw.END] = w[wb + snd + Tw.MAXEND] = seg[Seg.END];
    w[wb + snd + Tw.MAXWIN] = seg[Seg.WIN] === 0 ? 1 : seg[Seg.WIN];
    this.takeSynOptions(w, wb, f, fb, snd, pkt, doff);
    // RFC 7323: scaling is on only if both SYNs offered it.
    if (dir === 1 && ((f[fb + (snd >> 1) + Tb.FLAGS] & f[fb + (rcv >> 1) + Tb.FLAGS]) & TcpFlag.WINDOW_SCALE) === 0) {
      f[fb + (snd >> 1) + Tb.SCALE] = 0;
      f[fb + (rcv >> 1) + Tb.SCALE] = 0;
    }
  }

  /** The SYN's options become the side's scale and flags (a SYN without options changes neither). */
  private takeSynOptions(w: Int32Array, wb: number, f: Uint8Array, fb: number, side: number, pkt: PacketContext, doff: number): void {
    if (doff === 20) return;
    const l4 = pkt.l4off;
    const opt = synOptions(pkt.buf, l4 + 20, l4 + doff);
    f[fb + (side >> 1) + Tb.SCALE] = opt >> 8;
    f[fb + (side >> 1) + Tb.FLAGS] = (f[fb + (side >> 1) + Tb.FLAGS] & TcpFlag.BE_LIBERAL) | (opt & 0xff);
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
  private inWindow(slot: number, dir: number, index: Ev, pkt: PacketContext, doff: number): Win {
    const st = this.store;
    const w = st.pstate;
    const wb = slot * Tw.WORDS;
    const f = this.store.pbytes;
    const fb = slot * Tb.BYTES;
    const seg = this.seg;
    const flags = pkt.tcpFlags;
    const snd = dir * Tw.DIR;
    const rcv = Tw.DIR - snd;
    let seq = seg[Seg.SEQ];
    let ack = seg[Seg.ACK];
    let end = seg[Seg.END];
    const rawWin = seg[Seg.WIN];
    seg[Seg.SACK] = ack;
    if ((f[fb + (rcv >> 1) + Tb.FLAGS] & TcpFlag.SACK_PERM) !== 0 && doff > 20) this.readSack(pkt.buf, pkt.l4off + 20, pkt.l4off + doff);
    let sack = seg[Seg.SACK];

    if (w[wb + snd + Tw.MAXWIN] === 0) {
      if ((flags & 0x02) !== 0) {
        // The SYN/ACK (or the reply side's SYN of a simultaneous open) starts the sender's state.
        this.initSender(w, wb, f, fb, dir, pkt, doff);
        if ((flags & 0x10) === 0) return Win.ACCEPT;
      } else {
        // Nothing seen from this side yet: take what this packet says.
        w[wb + snd + Tw.END] = end;
        const swin = rawWin << f[fb + (snd >> 1) + Tb.SCALE];
        w[wb + snd + Tw.MAXWIN] = swin === 0 ? 1 : swin;
        w[wb + snd + Tw.MAXEND] = end + w[wb + snd + Tw.MAXWIN];
        if (w[wb + rcv + Tw.MAXWIN] === 0) {
          // Neither side seen: let III and IV pass until the other side speaks.
          w[wb + rcv + Tw.END] = w[wb + rcv + Tw.MAXEND] = sack;
        } else if (sack === ((w[wb + rcv + Tw.END] + 1) | 0)) {
          // Most likely the answer to a keepalive (one byte below the sent data).
          w[wb + rcv + Tw.END] = sack;
        }
      }
    } else if ((flags & 0x02) !== 0 && after(end, w[wb + snd + Tw.END]) && (st.tcpState[slot] === TcpCt.SYN_SENT || st.tcpState[slot] === TcpCt.SYN_RECV)) {
      // RFC 793: a reinitialised TCP may reopen with higher sequence numbers; start this side over.
      this.initSender(w, wb, f, fb, dir, pkt, doff);
      if (dir === 1 && (flags & 0x10) === 0) return Win.ACCEPT;
    }

    if ((flags & 0x10) === 0 || ((flags & 0x04) !== 0 && ack === 0)) {
      // No ACK (or a reset from a stack that sets ACK with a zero ack): pretend it acks everything seen.
      ack = sack = w[wb + rcv + Tw.END];
    }
    if ((flags & 0x04) !== 0 && seq === 0 && st.tcpState[slot] === TcpCt.SYN_SENT) {
      // The reset refusing a SYN.
      seq = end = w[wb + snd + Tw.END];
    }
    const liberal = (f[fb + (snd >> 1) + Tb.FLAGS] & TcpFlag.BE_LIBERAL) !== 0;
    const maxAckWin = (w[wb + snd + Tw.MAXWIN] >>> 0) > MAX_ACK_WINDOW_MIN ? w[wb + snd + Tw.MAXWIN] >>> 0 : MAX_ACK_WINDOW_MIN;

    if (!before(seq, (w[wb + snd + Tw.MAXEND] + 1) | 0)) {
      // I fails: beyond the receiver's window.
      const overshot = (end - w[wb + snd + Tw.MAXEND] + 1) >>> 0;
      const ackOk = after(sack, (w[wb + rcv + Tw.END] - maxAckWin - 1) | 0);
      const inRecvWin = w[wb + rcv + Tw.MAXWIN] !== 0 && after(end, (w[wb + snd + Tw.END] - w[wb + rcv + Tw.MAXWIN] - 1) | 0);
      if (inRecvWin && ackOk && overshot <= w[wb + rcv + Tw.MAXWIN] >>> 0 && before(sack, (w[wb + rcv + Tw.END] + 1) | 0)) {
        // A sender overrunning the window by less than a window: the data may still be acked, so its
        // end is believed, but the segment itself is not.
        w[wb + snd + Tw.END] = end;
        f[fb + (snd >> 1) + Tb.FLAGS] |= TcpFlag.DATA_UNACKNOWLEDGED;
        return liberal ? Win.ACCEPT : Win.IGNORE;
      }
      return liberal ? Win.ACCEPT : Win.INVALID;
    }
    // III: acks data never sent.
    if (!before(sack, (w[wb + rcv + Tw.END] + 1) | 0)) return liberal ? Win.ACCEPT : Win.INVALID;
    // II: data the receiver acked long ago (a late retransmission).
    if (w[wb + rcv + Tw.MAXWIN] !== 0 && !after(end, (w[wb + snd + Tw.END] - w[wb + rcv + Tw.MAXWIN] - 1) | 0)) return liberal ? Win.ACCEPT : Win.IGNORE;
    // IV: an ack far behind (an overly delayed packet).
    if (!after(sack, (w[wb + rcv + Tw.END] - maxAckWin - 1) | 0)) return liberal ? Win.ACCEPT : Win.IGNORE;

    const win = (flags & 0x02) === 0 ? rawWin << f[fb + (snd >> 1) + Tb.SCALE] : rawWin;
    const swin = (win + (sack - ack)) >>> 0;
    if ((w[wb + snd + Tw.MAXWIN] >>> 0) < swin) w[wb + snd + Tw.MAXWIN] = swin;
    if (after(end, w[wb + snd + Tw.END])) {
      w[wb + snd + Tw.END] = end;
      f[fb + (snd >> 1) + Tb.FLAGS] |= TcpFlag.DATA_UNACKNOWLEDGED;
    }
    if ((flags & 0x10) !== 0) {
      if ((f[fb + (snd >> 1) + Tb.FLAGS] & TcpFlag.MAXACK_SET) === 0) {
        w[wb + snd + Tw.MAXACK] = ack;
        f[fb + (snd >> 1) + Tb.FLAGS] |= TcpFlag.MAXACK_SET;
      } else if (after(ack, w[wb + snd + Tw.MAXACK])) {
        w[wb + snd + Tw.MAXACK] = ack;
      }
    }
    // The receiver may take more than its window was: data beyond the old edge widens it.
    if (w[wb + rcv + Tw.MAXWIN] !== 0 && after(end, w[wb + snd + Tw.MAXEND])) w[wb + rcv + Tw.MAXWIN] += end - w[wb + snd + Tw.MAXEND];
    if (after((sack + win) | 0, (w[wb + rcv + Tw.MAXEND] - 1) | 0)) {
      w[wb + rcv + Tw.MAXEND] = sack + win + (win === 0 ? 1 : 0);
    }
    if (ack === w[wb + rcv + Tw.END]) f[fb + (rcv >> 1) + Tb.FLAGS] &= ~TcpFlag.DATA_UNACKNOWLEDGED;

    if (index === Ev.ACK) {
      if (f[fb + Tb.LAST_DIR] === dir && w[wb + Tw.LAST_SEQ] === seq && w[wb + Tw.LAST_ACK] === ack && w[wb + Tw.LAST_END] === end && w[wb + Tw.LAST_WIN] === rawWin) {
        f[fb + Tb.RETRANS] = (f[fb + Tb.RETRANS] + 1) & 0xff;
      } else {
        f[fb + Tb.LAST_DIR] = dir;
        w[wb + Tw.LAST_SEQ] = seq;
        w[wb + Tw.LAST_ACK] = ack;
        w[wb + Tw.LAST_END] = end;
        w[wb + Tw.LAST_WIN] = rawWin;
        f[fb + Tb.RETRANS] = 0;
      }
    }
    return Win.ACCEPT;
  }
}

/**
 * Issue 15 (router/cluster/ct-sync.ts): a flow imported from another
 * gateway's table carries window bounds as they were when it was exported,
 * possibly many megabytes behind the endpoints. Like the kernel entries
 * conntrackd injects with TCPWindowTracking off, both sides are marked
 * "be liberal" (nf_conntrack_tcp_be_liberal for this flow only): sequence
 * and window checks pass; states, flags and resets are still tracked.
 */
export function tcpBeLiberal(store: EntryStore, slot: number): void {
  const f = store.pbytes;
  const fb = slot * Tb.BYTES;
  f[fb + Tb.FLAGS] |= TcpFlag.BE_LIBERAL;
  f[fb + Tb.DIR + Tb.FLAGS] |= TcpFlag.BE_LIBERAL;
}
