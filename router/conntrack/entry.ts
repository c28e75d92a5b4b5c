/**
 * What the table stores: a connection entry (the kernel's struct nf_conn)
 * with its two tuples (struct nf_conntrack_tuple_hash), and the lookup key
 * a packet is turned into before the table is searched.
 *
 * Invariants: a tuple's `hash` is the hash of its own fields and is only
 * meaningful while the entry is confirmed (in the table); an unconfirmed
 * entry's tuples are in no bucket, so they may still be rewritten (the NAT
 * seam, nat.ts, rewrites `repl` there and nowhere else).
 */
import type { Family, PacketContext } from '../../xt/packet.js';
import { ConnStatus, type Conn } from '../../xt/conn.js';
import { TcpCt } from './tcp.js';
import { getU16 } from '../../dataplane/bytes.js';

export const P_ICMP = 1;
export const P_TCP = 6;
export const P_UDP = 17;
export const P_DCCP = 33;
export const P_ICMPV6 = 58;
export const P_SCTP = 132;
export const P_UDPLITE = 136;

/** Protocols whose tuples carry real ports (the others: ICMP id/type/code, or nothing). */
export function hasPorts(proto: number): boolean {
  return proto === P_TCP || proto === P_UDP || proto === P_UDPLITE || proto === P_SCTP || proto === P_DCCP;
}

/**
 * Connection status bits: the Conn view's ConnStatus (numbered as the
 * kernel's IPS_*), under the name the router has always used. One
 * numbering, so what the table sets is what modules and NAT read.
 */
export { ConnStatus as CtStatus };

/** Window tracking of entries that are not TCP. */
const NO_TCP = new Int32Array(0);

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
  /** TCP window tracking (Tw layout, tcp.ts), allocated with a TCP entry; empty for other protocols. */
  tcp: Int32Array = NO_TCP;
  /** MASQUERADE: the interface the source binding took its address from (nat->masq_index), else null. */
  masqIface: string | null = null;
  /** Age list (oldest first) for expiry sweeps and early drop. */
  older: ConnEntry | null = null;
  newer: ConnEntry | null = null;

  get confirmed(): boolean {
    return (this.status & ConnStatus.CONFIRMED) !== 0;
  }
  /** Seconds until expiry at `now`, as conntrack -L prints it. */
  remaining(now: number): number {
    return Math.max(0, Math.floor((this.expires - now) / 1000));
  }
  /**
   * The direction conntrack gave the packet (pkt.ctReply, the kernel's
   * CTINFO2DIR) when pkt belongs to this entry: exact also after NAT has
   * rewritten it and for answers the router attached. Asked about a packet
   * of another flow, the addresses decide (isReplyDir).
   */
  isReply(pkt: PacketContext): boolean {
    return pkt.ct === this ? pkt.ctReply : isReplyDir(this, pkt);
  }
}

/**
 * True if pkt's addresses and ports are not those of the entry's original
 * direction: the direction of an untranslated packet, read from the wire.
 */
export function isReplyDir(entry: ConnEntry, pkt: PacketContext): boolean {
  const t = entry.orig;
  if (hasPorts(entry.proto) && pkt.sport !== t.sport) return true;
  if (pkt.family === 4) return pkt.src4 !== t.src[0] || pkt.dst4 !== t.dst[0];
  for (let i = 0; i < 4; i++) if (pkt.src6[i] !== t.src[i] || pkt.dst6[i] !== t.dst[i]) return true;
  return false;
}

/**
 * The lookup key being built for the current packet: a tuple with its
 * family and protocol, not attached to an entry. The table owns one and
 * reuses it for every packet, so it never escapes.
 */
export class CtKey {
  family: Family = 4;
  proto = 0;
  readonly src = new Uint32Array(4);
  readonly dst = new Uint32Array(4);
  sport = 0;
  dport = 0;

  /** The packet's own tuple (its transport header starts at l4 in b). */
  fromPacket(pkt: PacketContext, b: Uint8Array, l4: number): void {
    this.family = pkt.family;
    const proto = pkt.proto;
    this.proto = proto;
    if (pkt.family === 4) {
      const s = this.src;
      const d = this.dst;
      s[0] = pkt.src4;
      d[0] = pkt.dst4;
      s[1] = s[2] = s[3] = d[1] = d[2] = d[3] = 0;
    } else {
      this.src.set(pkt.src6);
      this.dst.set(pkt.dst6);
    }
    if (hasPorts(proto)) {
      this.sport = pkt.sport;
      this.dport = pkt.dport;
    } else if ((proto === P_ICMP && pkt.family === 4) || (proto === P_ICMPV6 && pkt.family === 6)) {
      this.sport = getU16(b, l4 + 4);
      this.dport = ((pkt.icmpType & 0xff) << 8) | (pkt.icmpCode & 0xff);
    } else {
      this.sport = 0;
      this.dport = 0;
    }
  }

  /** An entry's tuple, to look it up again. */
  fromTuple(family: Family, proto: number, t: CtTuple): void {
    this.family = family;
    this.proto = proto;
    this.src.set(t.src);
    this.dst.set(t.dst);
    this.sport = t.sport;
    this.dport = t.dport;
  }
}
