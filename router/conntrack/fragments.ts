/**
 * First-fragment memory. Without reassembly a later fragment has no ports,
 * so it cannot be looked up; it takes the connection and state its
 * datagram's first fragment got, if that passed recently (else INVALID).
 * See docs/compat.md.
 *
 * Direct-mapped: a slot per hash of (family, proto, id, src, dst); a newer
 * first fragment overwrites an older one in the same slot.
 */
import type { CtState, PacketContext } from '../../xt/packet.js';
import { ConnStatus } from '../../xt/conn.js';
import { getU16, getU32 } from '../../dataplane/bytes.js';
import { ConnEntry } from './entry.js';
import type { EntryStore } from './store.js';

/** First fragments remembered (direct-mapped) and for how long (the kernel's ipfrag_time, 30 s). */
const FRAG_SLOTS = 256;
const FRAG_KEY_WORDS = 11;
const FRAG_TIMEOUT_MS = 30_000;

export class FragmentMemory {
  constructor(private readonly store: EntryStore) {}

  // First fragments seen recently: key words, connection (store slot and its generation, -1 = none), state, direction, deadline.
  private readonly fragKeys = new Uint32Array(FRAG_SLOTS * FRAG_KEY_WORDS);
  private readonly fragProbe = new Uint32Array(FRAG_KEY_WORDS);
  private readonly fragCt = new Int32Array(FRAG_SLOTS).fill(-1);
  private readonly fragGen = new Uint32Array(FRAG_SLOTS);
  private readonly fragState = new Uint8Array(FRAG_SLOTS);
  private readonly fragReply = new Uint8Array(FRAG_SLOTS);
  private readonly fragExpires = new Float64Array(FRAG_SLOTS);

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
  remember(pkt: PacketContext): void {
    const id = this.fragmentId(pkt);
    if (id < 0) return;
    const slot = this.fragSlot(pkt, id);
    this.fragKeys.set(this.fragProbe, slot * FRAG_KEY_WORDS);
    const c = pkt.ct;
    const s = c instanceof ConnEntry && c.store === this.store ? c.slot : -1;
    this.fragCt[slot] = s;
    if (s >= 0) this.fragGen[slot] = this.store.gen[s];
    this.fragState[slot] = pkt.ctState;
    this.fragReply[slot] = pkt.ctReply ? 1 : 0;
    this.fragExpires[slot] = pkt.now + FRAG_TIMEOUT_MS;
  }

  /** A later fragment: the state of its first fragment if that passed recently, else INVALID. */
  recall(pkt: PacketContext): void {
    const id = this.fragmentId(pkt);
    if (id < 0) return;
    const slot = this.fragSlot(pkt, id);
    if (this.fragExpires[slot] <= pkt.now) return;
    const base = slot * FRAG_KEY_WORDS;
    for (let i = 0; i < FRAG_KEY_WORDS; i++) if (this.fragKeys[base + i] !== this.fragProbe[i]) return;
    const s = this.fragCt[slot];
    // The flow ended (or its slot now holds another flow): the rest of the datagram is INVALID.
    if (s >= 0 && (this.store.gen[s] !== this.fragGen[slot] || (this.store.status[s] & ConnStatus.DYING) !== 0)) return;
    pkt.ct = s >= 0 ? this.store.handles[s] : null;
    pkt.ctState = this.fragState[slot] as CtState;
    pkt.ctReply = this.fragReply[slot] === 1;
  }
}
