/**
 * What the table stores, as extensions and tools see it: ConnEntry, the
 * handle of one slot of the entry store (store.ts; the kernel's struct
 * nf_conn), with its two tuples; and the lookup key a packet is turned into
 * before the table is searched.
 *
 * A handle is made once per slot and reused by every flow that slot holds,
 * so it is no per-flow allocation; its fields are getters over the slabs.
 * The packet path (table.ts, tcp.ts, nat-core.ts) works on slot numbers and
 * the slabs directly; the handle is what pkt.ct carries.
 *
 * Invariants: an unconfirmed entry's tuples are in no bucket, so they may
 * still be rewritten (the NAT seam, nat.ts, rewrites `repl` there and
 * nowhere else).
 */
import type { Family, PacketContext } from '../../xt/packet.js';
import { ConnStatus, type Conn, type ConnTuple } from '../../xt/conn.js';
import type { TcpCt } from './tcp.js';
import { getU16 } from '../../dataplane/bytes.js';
import { ADDR_WORDS, EntryStore, PSTATE_BYTES, PSTATE_WORDS } from './store.js';

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

/**
 * One direction of a connection as a ConnTuple: addresses (IPv4 in word 0),
 * and the protocol "ports" (TCP/UDP ports, or for ICMP the id in `sport`
 * and (type << 8 | code) in `dport`). A store has one view per direction,
 * re-pointed (its words copied in) each time an entry's `orig` or `repl` is
 * read: read what you need from it at once, copy what you keep.
 */
export class CtTuple implements ConnTuple {
  readonly src = new Uint32Array(4);
  readonly dst = new Uint32Array(4);
  sport = 0;
  dport = 0;

  /** Copies tuple t (2 * slot + dir) of the store in. */
  load(store: EntryStore, t: number): this {
    const a = store.addr;
    const o = t * 8;
    const s = this.src;
    const d = this.dst;
    s[0] = a[o];
    s[1] = a[o + 1];
    s[2] = a[o + 2];
    s[3] = a[o + 3];
    d[0] = a[o + 4];
    d[1] = a[o + 5];
    d[2] = a[o + 6];
    d[3] = a[o + 7];
    const p = store.ports[t];
    this.sport = p >>> 16;
    this.dport = p & 0xffff;
    return this;
  }
}

/** The views ConnEntry's orig/repl re-point (one pair per process is enough: they are copies). */
const ORIG_VIEW = new CtTuple();
const REPL_VIEW = new CtTuple();

/**
 * A tracked connection (the kernel's struct nf_conn): the handle of slot
 * `slot` of `store`. Handles are made by their store (a subclass per store
 * carries it on the prototype: one field per handle).
 */
export class ConnEntry implements Conn {
  declare readonly store: EntryStore;
  readonly slot: number;

  /** Without a slot: an entry of its own one-slot store, outside any table (tests, tools). */
  constructor(slot?: number) {
    this.slot = slot ?? 0;
    if (slot === undefined) {
      const store = EntryStore.detached();
      store.alloc();
      return store.handles[0];
    }
  }

  get family(): Family {
    return this.store.family[this.slot] === 6 ? 6 : 4;
  }
  set family(v: Family) {
    this.store.family[this.slot] = v;
  }
  get proto(): number {
    return this.store.proto[this.slot];
  }
  set proto(v: number) {
    this.store.proto[this.slot] = v;
  }
  get status(): number {
    return this.store.status[this.slot];
  }
  set status(v: number) {
    this.store.status[this.slot] = v;
  }
  get tcpState(): TcpCt {
    return this.store.tcpState[this.slot] as TcpCt;
  }
  set tcpState(v: TcpCt) {
    this.store.tcpState[this.slot] = v;
  }
  /** Absolute deadline (ms, same clock as pkt.now). */
  get expires(): number {
    return this.store.expires[this.slot];
  }
  set expires(v: number) {
    this.store.expires[this.slot] = v;
  }
  /** ctmark (CONNMARK). */
  get mark(): number {
    return this.store.mark[this.slot];
  }
  set mark(v: number) {
    this.store.mark[this.slot] = v >>> 0;
  }
  /** MASQUERADE: the interface the source binding took its address from (nat->masq_index), else null. */
  get masqIface(): string | null {
    return this.store.masqName(this.slot);
  }
  set masqIface(v: string | null) {
    this.store.setMasqName(this.slot, v);
  }
  /** The original tuple (a re-pointed view: see CtTuple). */
  get orig(): CtTuple {
    return ORIG_VIEW.load(this.store, 2 * this.slot);
  }
  /** The reply tuple (a re-pointed view: see CtTuple). */
  get repl(): CtTuple {
    return REPL_VIEW.load(this.store, 2 * this.slot + 1);
  }
  /** TCP window tracking (tcp.ts: the Tw words, then the Tb bytes), a copy: for tests and tools. */
  get tcp(): Int32Array {
    const w = this.slot * PSTATE_WORDS;
    const b = this.slot * PSTATE_BYTES;
    const out = new Int32Array(PSTATE_WORDS + PSTATE_BYTES);
    out.set(this.store.pstate.subarray(w, w + PSTATE_WORDS));
    out.set(this.store.pbytes.subarray(b, b + PSTATE_BYTES), PSTATE_WORDS);
    return out;
  }
  get confirmed(): boolean {
    return (this.store.status[this.slot] & ConnStatus.CONFIRMED) !== 0;
  }
  /** Seconds until expiry at `now`, as conntrack -L prints it. */
  remaining(now: number): number {
    return Math.max(0, Math.floor((this.store.expires[this.slot] - now) / 1000));
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
  const st = entry.store;
  const s = entry.slot;
  if (hasPorts(st.proto[s]) && pkt.sport !== st.ports[2 * s] >>> 16) return true;
  const a = st.addr;
  const o = s * ADDR_WORDS;
  if (pkt.family === 4) return pkt.src4 !== a[o] || pkt.dst4 !== a[o + 4];
  for (let i = 0; i < 4; i++) if (pkt.src6[i] !== a[o + i] || pkt.dst6[i] !== a[o + 4 + i]) return true;
  return false;
}

/**
 * The lookup key being built for the current packet: a tuple with its
 * family and protocol, not attached to an entry. The table owns one and
 * reuses it for every packet, so it never escapes. `words` holds src then
 * dst, the layout of a tuple in the store's addr slab, so both hash alike.
 */
export class CtKey {
  family: Family = 4;
  proto = 0;
  readonly words = new Uint32Array(8);
  readonly src = this.words.subarray(0, 4);
  readonly dst = this.words.subarray(4, 8);
  sport = 0;
  dport = 0;

  /** The packet's own tuple (its transport header starts at l4 in b). */
  fromPacket(pkt: PacketContext, b: Uint8Array, l4: number): void {
    this.family = pkt.family;
    const proto = pkt.proto;
    this.proto = proto;
    const w = this.words;
    if (pkt.family === 4) {
      w[0] = pkt.src4;
      w[4] = pkt.dst4;
      w[1] = w[2] = w[3] = w[5] = w[6] = w[7] = 0;
    } else {
      const s = pkt.src6;
      const d = pkt.dst6;
      w[0] = s[0];
      w[1] = s[1];
      w[2] = s[2];
      w[3] = s[3];
      w[4] = d[0];
      w[5] = d[1];
      w[6] = d[2];
      w[7] = d[3];
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

  /** Tuple t (2 * slot + dir) of the store, to look it up again. */
  fromTuple(store: EntryStore, t: number): void {
    const s = t >> 1;
    this.family = store.family[s] === 6 ? 6 : 4;
    this.proto = store.proto[s];
    const a = store.addr;
    const o = t * 8;
    const w = this.words;
    for (let i = 0; i < 8; i++) w[i] = a[o + i];
    const p = store.ports[t];
    this.sport = p >>> 16;
    this.dport = p & 0xffff;
  }
}
