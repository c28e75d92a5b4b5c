/**
 * Where conntrack entries live: struct-of-arrays slabs indexed by a slot
 * number, so a tracked flow is a few words in typed arrays and the table's
 * memory is bounded by its capacity, not by what the JS heap did during a
 * flood. The table (table.ts), the trackers (tcp.ts) and NAT (nat-core.ts)
 * read and write slots; the only object a slot has is its ConnEntry handle
 * (entry.ts), made once when the slot is, which is what pkt.ct and
 * extensions see.
 *
 * Layout per slot s (t = 2s + dir is a tuple: dir 0 original, 1 reply):
 *   addr[16s .. 16s+15]  orig.src, orig.dst, repl.src, repl.dst (4 words each,
 *                        IPv4 in the first); tuple t's src/dst start at 8t
 *   ports[t]             (sport << 16) | dport of tuple t (ICMP: id, type<<8|code)
 *   next[t]              next tuple in t's hash bucket, -1 = end
 *   family, proto, tcpState, status, mark, expires, masq
 *   older/newer          the age list (confirmed entries, oldest first);
 *                        `newer` also links the free list
 *   pstate[12s ..]       per-protocol state (the kernel's union
 *   pbytes[9s ..]        nf_conntrack_proto): TCP window tracking (tcp.ts
 *                        Tw words, Tb bytes), UDP's creation time
 *   gen                  bumped whenever the slot is freed: a (slot, gen)
 *                        pair kept across packets (fragments.ts) tells a
 *                        recycled slot from its old flow
 *
 * Growth: the slabs are allocated once at full capacity, but only their
 * first `allocated` slots are ever written: zero-filled memory nobody has
 * touched is not resident (the allocator maps fresh zero pages), so an idle
 * table costs what its flows use. `allocated` starts at min(capacity, 4096)
 * and doubles whenever fewer than FREE_SLACK slots are free, up to
 * `capacity`; growing only makes handles and free-list links for the new
 * slots: nothing is copied, so no old and new slabs coexist (with copies,
 * the last doubling held 2x the full table until the next GC: the bench's
 * peak RSS). Slabs never shrink, as the kernel's table does not: a table
 * that was full once will be again, and no memory grows per flow after that.
 * One array per field keeps every access one index (chunks would add an
 * indirection per field on the packet path).
 *
 * Reuse is first-in first-out: a freed slot goes to the tail of the free
 * list, so it is handed out again only after at least FREE_SLACK other
 * allocations. What still points at a just-freed slot within a batch (the
 * packet that killed its flow, answers queued with ctFrom, a test reading a
 * dead entry) reads the dead flow's words, as the kernel's refcount keeps a
 * dying nf_conn readable; capacity = max + UNCONFIRMED_MAX + FREE_SLACK
 * keeps that distance even when the table is full.
 *
 * Unconfirmed entries (a new flow's first packet, not yet accepted) take a
 * slot too. Nothing tells the table when such a packet is dropped, so the
 * last UNCONFIRMED_MAX of them are kept in a ring: one pushed out of the
 * ring still unconfirmed belongs to a packet long gone, and is freed.
 */
import { ConnStatus } from '../../xt/conn.js';
import { ConnEntry } from './entry.js';

/** Words of per-protocol state per slot (tcp.ts Tw.WORDS). */
export const PSTATE_WORDS = 12;
/** Bytes of per-protocol state per slot (tcp.ts Tb.BYTES: the small TCP fields). */
export const PSTATE_BYTES = 9;
/** Address words per slot: four tuples' halves of four words. */
export const ADDR_WORDS = 16;
/** New flows whose first packet may still be in flight (> a batch plus the pending queue). */
export const UNCONFIRMED_MAX = 512;
/** Free slots kept ahead of any slot just freed before it is reused. */
export const FREE_SLACK = 512;
const FIRST_SLOTS = 4096;

export class EntryStore {
  /** Slots the slabs may grow to. */
  readonly capacity: number;
  /** Slots in use so far (written at least once; the slabs span `capacity`). */
  allocated = 0;
  // The slabs, each spanning `capacity` slots from construction on (see "Growth" above).
  readonly family: Uint8Array;
  readonly proto: Uint8Array;
  readonly tcpState: Uint8Array;
  readonly status: Uint16Array;
  readonly masq: Uint16Array;
  readonly mark: Uint32Array;
  readonly gen: Uint32Array;
  readonly expires: Float64Array;
  readonly addr: Uint32Array;
  readonly ports: Int32Array;
  readonly next: Int32Array;
  readonly older: Int32Array;
  readonly newer: Int32Array;
  readonly pstate: Int32Array;
  readonly pbytes: Uint8Array;
  /** One handle per slot in use (handles[s].slot === s); appended to when `allocated` grows. */
  handles: ConnEntry[] = [];
  /**
   * The handles' class: ConnEntry with this store on its prototype, so a
   * handle holds one field (its slot) and costs a small object per slot.
   */
  private readonly Handle: new (slot: number) => ConnEntry;
  /** MASQUERADE interface names; masq[s] is an index + 1 (0 = none). */
  private readonly masqNames: string[] = [];

  private freeHead = -1;
  private freeTail = -1;
  private freeCount = 0;
  private readonly ringSlot = new Int32Array(UNCONFIRMED_MAX);
  private readonly ringGen = new Uint32Array(UNCONFIRMED_MAX);
  private ringNext = 0;
  private ringLen = 0;

  constructor(capacity: number, first = FIRST_SLOTS) {
    this.capacity = capacity;
    const Handle = class extends ConnEntry {};
    Object.defineProperty(Handle.prototype, 'store', { value: this });
    this.Handle = Handle;
    const n = capacity;
    this.family = new Uint8Array(n);
    this.proto = new Uint8Array(n);
    this.tcpState = new Uint8Array(n);
    this.status = new Uint16Array(n);
    this.masq = new Uint16Array(n);
    this.mark = new Uint32Array(n);
    this.gen = new Uint32Array(n);
    this.expires = new Float64Array(n);
    this.addr = new Uint32Array(n * ADDR_WORDS);
    this.ports = new Int32Array(n * 2);
    this.next = new Int32Array(n * 2);
    this.older = new Int32Array(n);
    this.newer = new Int32Array(n);
    this.pstate = new Int32Array(n * PSTATE_WORDS);
    this.pbytes = new Uint8Array(n * PSTATE_BYTES);
    this.grow(Math.min(capacity, first));
  }

  /** A store of one slot for an entry made outside any table (tests, tools). */
  static detached(): EntryStore {
    return new EntryStore(1, 1);
  }

  /** Bytes of the slabs' slots in use (what the table costs beyond its buckets; the rest is reserved, not resident). */
  bytes(): number {
    let n = 0;
    for (const a of [this.family, this.proto, this.tcpState, this.status, this.masq, this.mark, this.gen, this.expires, this.addr, this.ports, this.next, this.older, this.newer, this.pstate, this.pbytes]) {
      n += a.byteLength;
    }
    return (n / this.capacity) * this.allocated;
  }

  /**
   * A fresh slot (all words zero, links -1), or -1 if none is free (cannot
   * happen while confirmed entries stay within max: capacity leaves room).
   */
  alloc(): number {
    if (this.freeCount < FREE_SLACK && this.allocated < this.capacity) this.grow(Math.min(this.capacity, this.allocated * 2));
    const s = this.freeHead;
    if (s < 0) return -1;
    this.freeHead = this.newer[s];
    if (this.freeHead < 0) this.freeTail = -1;
    this.freeCount--;
    this.family[s] = 0;
    this.proto[s] = 0;
    this.tcpState[s] = 0;
    this.status[s] = 0;
    this.masq[s] = 0;
    this.mark[s] = 0;
    this.expires[s] = 0;
    this.ports[2 * s] = this.ports[2 * s + 1] = 0;
    this.next[2 * s] = this.next[2 * s + 1] = -1;
    this.older[s] = this.newer[s] = -1;
    this.addr.fill(0, s * ADDR_WORDS, (s + 1) * ADDR_WORDS);
    this.pstate.fill(0, s * PSTATE_WORDS, (s + 1) * PSTATE_WORDS);
    this.pbytes.fill(0, s * PSTATE_BYTES, (s + 1) * PSTATE_BYTES);
    return s;
  }

  /** Returns a slot to the tail of the free list (its words stay readable until reused). */
  free(s: number): void {
    this.gen[s]++;
    this.newer[s] = -1;
    if (this.freeTail < 0) this.freeHead = s;
    else this.newer[this.freeTail] = s;
    this.freeTail = s;
    this.freeCount++;
  }

  /**
   * Records a new unconfirmed slot; frees the one it pushes out of the ring
   * if that was never confirmed (its packet is gone).
   */
  trackUnconfirmed(s: number): void {
    const i = this.ringNext;
    if (this.ringLen === UNCONFIRMED_MAX) {
      const old = this.ringSlot[i];
      if (this.gen[old] === this.ringGen[i] && (this.status[old] & (ConnStatus.CONFIRMED | ConnStatus.DYING)) === 0) {
        this.status[old] |= ConnStatus.DYING;
        this.free(old);
      }
    } else {
      this.ringLen++;
    }
    this.ringSlot[i] = s;
    this.ringGen[i] = this.gen[s];
    this.ringNext = i + 1 === UNCONFIRMED_MAX ? 0 : i + 1;
  }

  /** Test aid: the free list's slots in order, or a description of what is wrong with it. */
  freeSlots(): number[] | string {
    const out: number[] = [];
    const seen = new Uint8Array(this.allocated);
    for (let s = this.freeHead; s >= 0; s = this.newer[s]) {
      if (s >= this.allocated || seen[s] === 1) return `free list revisits or leaves the slabs at slot ${s}`;
      seen[s] = 1;
      out.push(s);
      if (this.newer[s] < 0 && s !== this.freeTail) return `free list ends at ${s}, tail is ${this.freeTail}`;
    }
    if (out.length !== this.freeCount) return `free list holds ${out.length} slots, count says ${this.freeCount}`;
    return out;
  }

  masqName(s: number): string | null {
    const i = this.masq[s];
    return i === 0 ? null : this.masqNames[i - 1];
  }

  setMasqName(s: number, name: string | null): void {
    this.masq[s] = name === null ? 0 : this.masqIndex(name, true);
  }

  /** The masq[] value of interface `name` (0 if no flow was ever bound through it). */
  masqIndex(name: string, add = false): number {
    let i = this.masqNames.indexOf(name);
    if (i < 0) {
      if (!add) return 0;
      // Interface names are few; past 65535 distinct ones the oldest index is reused (a stale name only makes forgetMasquerade miss).
      if (this.masqNames.length < 0xffff) this.masqNames.push(name);
      else this.masqNames[0xfffe] = name;
      i = this.masqNames.indexOf(name);
    }
    return i + 1;
  }

  /** Put slots [allocated, to) in use: their handles and free-list links (the slabs already span them). */
  private grow(to: number): void {
    const from = this.allocated;
    if (to <= from) return;
    this.allocated = to;
    for (let s = from; s < to; s++) this.handles.push(new this.Handle(s));
    for (let s = from; s < to; s++) {
      this.free(s);
      this.gen[s] = 0;
    }
  }
}
