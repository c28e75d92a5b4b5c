/**
 * IPv4 and IPv6 fragment reassembly the way netfilter's defragmentation
 * does it before connection tracking (nf_defrag_ipv4 -> ip_defrag,
 * nf_defrag_ipv6 -> nf_ct_frag6_gather), so that rules see whole datagrams.
 * The router runs it before PREROUTING (received packets) and OUTPUT
 * (locally generated ones) while conntrack is in use; router/forward.ts.
 *
 * Queues are keyed as the kernel keys them: IPv4 by (source, destination,
 * identification, protocol), IPv6 by (source, destination, identification),
 * both also by the "user" (DEFRAG_IN for PREROUTING, DEFRAG_OUT for OUTPUT:
 * the kernel's IP_DEFRAG_CONNTRACK_IN/OUT), so the two paths never mix.
 *
 * Rules, each as the kernel applies them (ip_frag_queue, nf_ct_frag6_queue,
 * inet_frag_queue_insert):
 *  - fragments are kept as "runs" of adjacent fragments; a fragment lying
 *    entirely inside one run is a duplicate and dropped, the queue kept;
 *    any other overlap discards the whole datagram (RFC 5722 for IPv6, and
 *    Linux does the same for IPv4);
 *  - a last fragment ending before data already seen, or a second last
 *    fragment with another end, is refused (IPv4: the datagram is discarded;
 *    IPv6: only the fragment); a non-last IPv4 fragment is cut down to a
 *    multiple of 8; a non-last IPv6 fragment that is not a multiple of 8
 *    ends its queue and goes on unreassembled (PASS), as does an IPv6 first
 *    fragment without its whole TCP/UDP/ICMPv6 header (RFC 8200 4.5);
 *  - the datagram takes the header (IPv4) or unfragmentable part (IPv6) of
 *    the fragment at offset 0, whatever order the fragments came in; it may
 *    not exceed 65535 bytes (IPv4 total length / IPv6 payload length);
 *    ECN codepoints are combined per RFC 3168 5.3 (a mix of not-ECT and ECT
 *    discards the datagram); an IPv4 datagram keeps DF only when its largest
 *    fragment had DF;
 *  - a queue lives 30 s from its first fragment (ipfrag_time,
 *    nf_conntrack_frag6_timeout); expired queues are freed lazily by add();
 *  - memory is bounded (4 MiB, ipfrag_high_thresh): when a fragment does not
 *    fit, the oldest queues are evicted. (Linux since 4.17 instead drops new
 *    fragments until timeouts free memory; see docs/compat.md.)
 *
 * For re-fragmentation on output a completed datagram reports what the
 * kernel remembers: frag_max_size (the largest fragment: IPv4 header plus
 * data, IPv6 40 + payload length) and the fragments' boundaries, which the
 * kernel's fast path (ip_do_fragment / ip6_fragment over the frag_list)
 * sends again as they came.
 *
 * Memory: one arena of BLOCK-byte blocks (allocated on the first fragment),
 * queues and fragments as struct-of-arrays records in typed arrays, free
 * lists for all three. Nothing is allocated per fragment beyond short-lived
 * subarray views when bytes are copied. Unfragmented packets never come here.
 */
import { type Bytes, getU16, getU32, setU16 } from './bytes.js';
import { checksum } from './checksum.js';

/** What add() did with a fragment. */
export const enum ReasmResult {
  /** Not for reassembly: process the packet as it is. */
  PASS = 0,
  /** Kept in its queue; nothing more to do with it now. */
  QUEUED = 1,
  /** Dropped (see stats for why). */
  DROPPED = 2,
  /** The datagram is complete: datagramLength bytes, written by emit(). */
  COMPLETE = 3,
}

/** Which path a fragment is on (the kernel's IP_DEFRAG_CONNTRACK_IN / _OUT). */
export const DEFRAG_IN = 0;
export const DEFRAG_OUT = 1;

/** ipfrag_time / nf_conntrack_frag6_timeout (seconds in the kernel). */
export const REASM_TIMEOUT_MS = 30_000;
/** ipfrag_high_thresh / nf_conntrack_frag6_high_thresh. */
export const REASM_MEMORY_BYTES = 4 * 1024 * 1024;

const BLOCK = 512;
const KEY_WORDS = 10;
const IP_MAX = 65535;

const FIRST_IN = 1;
const LAST_IN = 2;

const enum Place {
  OVERLAP = -2,
  DUP = -1,
  /** Appended to the last run (it starts where the tail ends). */
  APPEND = 0,
  /** A new run after the tail. */
  NEW_TAIL = 1,
  /** A new run before the tail. */
  MIDDLE = 2,
}

/**
 * RFC 3168 5.3 over the OR of (1 << ECN field) of every fragment
 * (ip_frag_ecn_table): the bits to OR into the datagram, or 0xff to discard it.
 */
const ECN_NOT_ECT = 1;
const ECN_ECT_1 = 2;
const ECN_ECT_0 = 4;
const ECN_CE = 8;
const ECN_TABLE = new Uint8Array(16);
ECN_TABLE[ECN_CE | ECN_ECT_0] = 3;
ECN_TABLE[ECN_CE | ECN_ECT_1] = 3;
ECN_TABLE[ECN_CE | ECN_ECT_0 | ECN_ECT_1] = 3;
for (let m = 0; m < 16; m++) if ((m & ECN_NOT_ECT) !== 0 && m !== ECN_NOT_ECT) ECN_TABLE[m] = 0xff;

/** Counters in the spirit of the kernel's Ip/Ip6 Reasm* statistics. */
export class ReasmStats {
  /** Fragments offered (ReasmReqds). */
  requests = 0;
  /** Datagrams reassembled (ReasmOKs). */
  completed = 0;
  /** Fragments or datagrams refused: bad end, oversize, ECN mix, no memory (ReasmFails). */
  failed = 0;
  /** Datagrams discarded for overlapping fragments (ReasmOverlaps). */
  overlaps = 0;
  /** Duplicate fragments dropped. */
  duplicates = 0;
  /** Queues freed after the timeout (ReasmTimeout). */
  timeouts = 0;
  /** Queues evicted to make room. */
  evicted = 0;
  /** Fragments passed on unreassembled. */
  passed = 0;
}

export interface ReassemblerOptions {
  /** Memory for fragment data and headers, bytes (default 4 MiB). */
  memoryBytes?: number;
  /** Queue lifetime, ms (default 30 s). */
  timeoutMs?: number;
}

export class Reassembler {
  readonly stats = new ReasmStats();
  readonly timeoutMs: number;
  readonly blockCount: number;

  // ---- result of the last COMPLETE, valid until the next add()
  /** Bytes emit() writes. */
  datagramLength = 0;
  /** The kernel's frag_max_size: the largest fragment (IPv4 header + data; IPv6 40 + payload length). */
  fragMaxSize = 0;
  /** IPv4 header length / IPv6 unfragmentable part, as the offset-0 fragment had them. */
  unfragmentableLength = 0;
  /** The fragments' identification (IPv4 16 bits, IPv6 32 bits). */
  ident = 0;
  /** Where each kept fragment's data ended, bytes after the unfragmentable part, ascending. */
  readonly pieceEnds: Uint32Array;
  pieceCount = 0;
  /**
   * False when the kernel would not resend the original fragments as they
   * were: an IPv4 TCP datagram whose first fragment is shorter than the TCP
   * header (the kernel pulls the header into its first buffer, which breaks
   * the fragment list's alignment; measured: such datagrams leave in
   * frag_max_size chunks).
   */
  geometryKept = false;

  private arena: Buffer | null = null;
  private readonly blockNext: Int32Array;
  private freeBlock = -1;
  private freeBlocks = 0;

  // fragments
  private readonly fOff: Int32Array;
  private readonly fEnd: Int32Array;
  private readonly fBlock: Int32Array;
  private readonly fNext: Int32Array;
  /** End of the run a fragment heads, or -1 for a fragment inside a run. */
  private readonly fRunEnd: Int32Array;
  private freeFrag = -1;

  // queues
  private readonly queueCount: number;
  private readonly qKey: Uint32Array;
  private readonly qFamily: Uint8Array;
  private readonly qFlags: Uint8Array;
  private readonly qLen: Int32Array;
  private readonly qMeat: Int32Array;
  private readonly qMaxSize: Int32Array;
  private readonly qMaxDf: Int32Array;
  private readonly qEcn: Uint8Array;
  private readonly qExpires: Float64Array;
  private readonly qFirst: Int32Array;
  private readonly qTail: Int32Array;
  private readonly qLastRun: Int32Array;
  private readonly qHdrBlock: Int32Array;
  private readonly qHdrLen: Int32Array;
  /** IPv6: offset in the stored unfragmentable part of the byte that named the Fragment header. */
  private readonly qNhOff: Int32Array;
  /** IPv6: the Next Header of the offset-0 fragment's Fragment header. */
  private readonly qNextHdr: Uint8Array;
  private readonly qProto: Uint8Array;
  private readonly qHashNext: Int32Array;
  private readonly qOlder: Int32Array;
  private readonly qNewer: Int32Array;
  private freeQueue = -1;
  private oldest = -1;
  private newest = -1;
  private live = 0;

  private readonly buckets: Int32Array;
  private readonly bucketMask: number;
  private readonly key = new Uint32Array(KEY_WORDS);
  private keyHash = 0;

  /** A completed queue whose bytes emit() has not yet taken (-1 = none). */
  private pending = -1;
  private pendingEcn = 0;
  private pendingDf = false;

  // where locate() decided to put a fragment
  private placePrev = -1;

  constructor(opts: ReassemblerOptions = {}) {
    const mem = opts.memoryBytes ?? REASM_MEMORY_BYTES;
    if (!Number.isFinite(mem) || mem < 4 * BLOCK) throw new Error(`reassembly: memoryBytes must be at least ${4 * BLOCK}, got ${mem}`);
    this.timeoutMs = opts.timeoutMs ?? REASM_TIMEOUT_MS;
    const blocks = Math.floor(mem / BLOCK);
    this.blockCount = blocks;
    this.blockNext = new Int32Array(blocks);
    for (let i = 0; i < blocks; i++) this.blockNext[i] = i + 1 < blocks ? i + 1 : -1;
    this.freeBlock = 0;
    this.freeBlocks = blocks;

    // Every kept fragment holds at least one block, so blocks bound fragments too.
    this.fOff = new Int32Array(blocks);
    this.fEnd = new Int32Array(blocks);
    this.fBlock = new Int32Array(blocks);
    this.fNext = new Int32Array(blocks);
    this.fRunEnd = new Int32Array(blocks);
    for (let i = 0; i < blocks; i++) this.fNext[i] = i + 1 < blocks ? i + 1 : -1;
    this.freeFrag = 0;
    this.pieceEnds = new Uint32Array(blocks);

    const nq = blocks;
    this.queueCount = nq;
    this.qKey = new Uint32Array(nq * KEY_WORDS);
    this.qFamily = new Uint8Array(nq);
    this.qFlags = new Uint8Array(nq);
    this.qLen = new Int32Array(nq);
    this.qMeat = new Int32Array(nq);
    this.qMaxSize = new Int32Array(nq);
    this.qMaxDf = new Int32Array(nq);
    this.qEcn = new Uint8Array(nq);
    this.qExpires = new Float64Array(nq);
    this.qFirst = new Int32Array(nq);
    this.qTail = new Int32Array(nq);
    this.qLastRun = new Int32Array(nq);
    this.qHdrBlock = new Int32Array(nq);
    this.qHdrLen = new Int32Array(nq);
    this.qNhOff = new Int32Array(nq);
    this.qNextHdr = new Uint8Array(nq);
    this.qProto = new Uint8Array(nq);
    this.qHashNext = new Int32Array(nq);
    this.qOlder = new Int32Array(nq);
    this.qNewer = new Int32Array(nq);
    for (let i = 0; i < nq; i++) this.qHashNext[i] = i + 1 < nq ? i + 1 : -1;
    this.freeQueue = 0;
    let nb = 16;
    while (nb < nq) nb <<= 1;
    this.buckets = new Int32Array(nb).fill(-1);
    this.bucketMask = nb - 1;
  }

  /** Queues holding fragments now. */
  get queues(): number {
    return this.live;
  }

  /** Bytes of fragment data and headers held now. */
  get bytesHeld(): number {
    return (this.blockCount - this.freeBlocks) * BLOCK;
  }

  /**
   * Offers the fragment at buf[l3off, l3off + l3len) (an IPv4 packet with
   * MF or an offset, or an IPv6 packet with a Fragment header; validated by
   * parsePacket). `user` is DEFRAG_IN or DEFRAG_OUT; `now` monotonic ms.
   * The fragment's bytes are copied: buf may be reused right away.
   */
  add(buf: Bytes, l3off: number, l3len: number, user: number, now: number): ReasmResult {
    if (this.pending >= 0) this.discard();
    this.expire(now);
    this.stats.requests++;
    if (this.arena === null) this.arena = Buffer.alloc(this.blockCount * BLOCK);
    return buf[l3off] >> 4 === 4 ? this.add4(buf, l3off, l3len, user, now) : this.add6(buf, l3off, l3len, user, now);
  }

  /** Writes the completed datagram at out[off] and frees its queue; returns its length. */
  emit(out: Bytes, off: number): number {
    const q = this.pending;
    if (q < 0) return 0;
    const hl = this.qHdrLen[q];
    this.copyChain(this.qHdrBlock[q], hl, out, off);
    let p = off + hl;
    for (let f = this.qFirst[q]; f >= 0; f = this.fNext[f]) {
      const n = this.fEnd[f] - this.fOff[f];
      this.copyChain(this.fBlock[f], n, out, p);
      p += n;
    }
    if (this.qFamily[q] === 4) {
      setU16(out, off + 2, this.datagramLength);
      setU16(out, off + 6, this.pendingDf ? 0x4000 : 0);
      out[off + 1] |= this.pendingEcn;
      setU16(out, off + 10, 0);
      setU16(out, off + 10, checksum(out, off, hl));
    } else {
      out[off + this.qNhOff[q]] = this.qNextHdr[q];
      setU16(out, off + 4, this.datagramLength - 40);
      out[off + 1] |= this.pendingEcn << 4;
    }
    this.pending = -1;
    this.freeQueue_(q);
    return this.datagramLength;
  }

  /** Drops a completed datagram without emitting it (no room to put it). */
  discard(): void {
    const q = this.pending;
    if (q < 0) return;
    this.pending = -1;
    this.freeQueue_(q);
  }

  // ------------------------------------------------------------ IPv4

  private add4(b: Bytes, o: number, l3len: number, user: number, now: number): ReasmResult {
    const ihl = (b[o] & 0x0f) << 2;
    const ff = getU16(b, o + 6);
    const offset = (ff & 0x1fff) << 3;
    let end = offset + l3len - ihl;
    const proto = b[o + 9];
    const k = this.key;
    k[0] = 4 | (user << 4) | (proto << 8);
    k[1] = getU16(b, o + 4);
    k[2] = getU32(b, o + 12);
    k[3] = k[4] = k[5] = 0;
    k[6] = getU32(b, o + 16);
    k[7] = k[8] = k[9] = 0;
    const q = this.findOrCreate(4, now);
    if (q < 0) return this.fail();
    this.qProto[q] = proto;
    // ip_frag_queue
    if ((ff & 0x2000) === 0) {
      if (end < this.qLen[q] || ((this.qFlags[q] & LAST_IN) !== 0 && end !== this.qLen[q])) return this.kill(q);
      this.qFlags[q] |= LAST_IN;
      this.qLen[q] = end;
    } else {
      end &= ~7;
      if (end > this.qLen[q]) {
        if ((this.qFlags[q] & LAST_IN) !== 0) return this.kill(q);
        this.qLen[q] = end;
      }
    }
    if (end === offset) return this.kill(q);
    const place = this.locate(q, offset, end);
    if (place === Place.DUP) {
      this.stats.duplicates++;
      return ReasmResult.DROPPED;
    }
    if (place === Place.OVERLAP) {
      this.stats.overlaps++;
      return this.kill(q);
    }
    const n = end - offset;
    const first = offset === 0;
    if (!this.reserve(blocksFor(n) + (first ? 1 : 0), q)) return this.fail();
    this.link(q, place, offset, end, this.store(b, o + ihl, n));
    this.qMeat[q] += n;
    this.qEcn[q] |= 1 << (b[o + 1] & 3);
    if (first) {
      this.qFlags[q] |= FIRST_IN;
      this.qHdrBlock[q] = this.store(b, o, ihl);
      this.qHdrLen[q] = ihl;
    }
    const fragsize = n + ihl;
    if (fragsize > this.qMaxSize[q]) this.qMaxSize[q] = fragsize;
    if ((ff & 0x4000) !== 0 && fragsize > this.qMaxDf[q]) this.qMaxDf[q] = fragsize;
    if (this.qFlags[q] === (FIRST_IN | LAST_IN) && this.qMeat[q] === this.qLen[q]) return this.complete(q);
    return ReasmResult.QUEUED;
  }

  // ------------------------------------------------------------ IPv6

  private add6(b: Bytes, o: number, l3len: number, user: number, now: number): ReasmResult {
    const last = o + l3len;
    const payloadLen = getU16(b, o + 4);
    // Jumbo payload inhibits the Fragment header.
    if (payloadLen === 0) return this.pass();
    // find_prev_fhdr: walk to the first Fragment header.
    let nh = b[o + 6];
    let prevNh = o + 6;
    let pos = o + 40;
    while (nh !== 44) {
      if ((nh !== 0 && nh !== 43 && nh !== 60 && nh !== 51) || pos + 2 > last) return this.pass();
      const hl = nh === 51 ? (b[pos + 1] + 2) << 2 : (b[pos + 1] + 1) << 3;
      prevNh = pos;
      nh = b[pos];
      pos += hl;
    }
    if (pos > last) return this.pass();
    const fh = pos;
    // The Fragment header itself cut short: the kernel's pull fails and the packet is dropped.
    if (fh + 8 > last) return this.fail();
    const fo = getU16(b, fh + 2);
    const offset = fo & 0xfff8;
    if (offset === 0 && firstFragmentTruncated(b, fh, last)) return this.pass();
    const dataStart = fh + 8;
    const end = offset + (payloadLen - (dataStart - (o + 40)));
    if (end > IP_MAX) return this.fail();
    const k = this.key;
    k[0] = 6 | (user << 4);
    k[1] = getU32(b, fh + 4);
    for (let i = 0; i < 4; i++) {
      k[2 + i] = getU32(b, o + 8 + 4 * i);
      k[6 + i] = getU32(b, o + 24 + 4 * i);
    }
    const q = this.findOrCreate(6, now);
    if (q < 0) return this.fail();
    // nf_ct_frag6_queue: a refused fragment leaves its queue alone, except as noted.
    if ((fo & 1) === 0) {
      if (end < this.qLen[q] || ((this.qFlags[q] & LAST_IN) !== 0 && end !== this.qLen[q])) return this.fail();
      this.qFlags[q] |= LAST_IN;
      this.qLen[q] = end;
    } else {
      if ((end & 7) !== 0) {
        // RFC 8200: a non-last fragment is a multiple of 8; the kernel ends the queue and lets this one pass.
        this.kill(q);
        return this.pass();
      }
      if (end > this.qLen[q]) {
        if ((this.qFlags[q] & LAST_IN) !== 0) return this.fail();
        this.qLen[q] = end;
      }
    }
    if (end === offset) return this.fail();
    const place = this.locate(q, offset, end);
    if (place === Place.DUP) {
      this.stats.duplicates++;
      return ReasmResult.DROPPED;
    }
    if (place === Place.OVERLAP) {
      this.stats.overlaps++;
      return this.kill(q);
    }
    const n = end - offset;
    const first = offset === 0;
    const hdrLen = fh - o;
    if (!this.reserve(blocksFor(n) + (first ? blocksFor(hdrLen) : 0), q)) return this.fail();
    this.link(q, place, offset, end, this.store(b, dataStart, n));
    this.qMeat[q] += n;
    this.qEcn[q] |= 1 << ((b[o + 1] >> 4) & 3);
    if (payloadLen > this.qMaxSize[q]) this.qMaxSize[q] = payloadLen;
    if (first) {
      this.qFlags[q] |= FIRST_IN;
      this.qHdrBlock[q] = this.store(b, o, hdrLen);
      this.qHdrLen[q] = hdrLen;
      this.qNhOff[q] = prevNh - o;
      this.qNextHdr[q] = b[fh];
    }
    if (this.qFlags[q] === (FIRST_IN | LAST_IN) && this.qMeat[q] === this.qLen[q]) return this.complete(q);
    return ReasmResult.QUEUED;
  }

  // ------------------------------------------------------------ queues

  /** ip_frag_reasm / nf_ct_frag6_reasm: checks the whole and reports it; emit() writes it. */
  private complete(q: number): ReasmResult {
    const v4 = this.qFamily[q] === 4;
    const total = this.qHdrLen[q] + this.qLen[q];
    const ecn = ECN_TABLE[this.qEcn[q]];
    if ((v4 ? total : total - 40) > IP_MAX || ecn === 0xff) return this.kill(q);
    this.unlinkQueue(q);
    this.pending = q;
    this.pendingEcn = ecn;
    this.pendingDf = v4 && this.qMaxDf[q] === this.qMaxSize[q];
    this.datagramLength = total;
    this.fragMaxSize = v4 ? this.qMaxSize[q] : 40 + this.qMaxSize[q];
    this.unfragmentableLength = this.qHdrLen[q];
    this.ident = this.qKey[q * KEY_WORDS + 1];
    let n = 0;
    for (let f = this.qFirst[q]; f >= 0; f = this.fNext[f]) this.pieceEnds[n++] = this.fEnd[f];
    this.pieceCount = n;
    this.geometryKept = !(v4 && this.qProto[q] === 6 && this.pieceEnds[0] < 20);
    this.stats.completed++;
    return ReasmResult.COMPLETE;
  }

  private pass(): ReasmResult {
    this.stats.passed++;
    return ReasmResult.PASS;
  }

  private fail(): ReasmResult {
    this.stats.failed++;
    return ReasmResult.DROPPED;
  }

  /** Discards a whole datagram (inet_frag_kill) and reports the fragment dropped. */
  private kill(q: number): ReasmResult {
    this.unlinkQueue(q);
    this.freeQueue_(q);
    return this.fail();
  }

  private hashKey(): number {
    const k = this.key;
    let h = 0x811c9dc5;
    for (let i = 0; i < KEY_WORDS; i++) h = Math.imul(h ^ k[i], 0x01000193);
    return (h ^ (h >>> 15)) >>> 0;
  }

  private findOrCreate(family: number, now: number): number {
    const h = this.hashKey();
    this.keyHash = h;
    const k = this.key;
    for (let q = this.buckets[h & this.bucketMask]; q >= 0; q = this.qHashNext[q]) {
      const base = q * KEY_WORDS;
      let i = 0;
      while (i < KEY_WORDS && this.qKey[base + i] === k[i]) i++;
      if (i === KEY_WORDS) return q;
    }
    if (this.freeQueue < 0 && !this.evictOldest(-1)) return -1;
    const q = this.freeQueue;
    this.freeQueue = this.qHashNext[q];
    this.qKey.set(k, q * KEY_WORDS);
    this.qFamily[q] = family;
    this.qFlags[q] = 0;
    this.qLen[q] = 0;
    this.qMeat[q] = 0;
    this.qMaxSize[q] = 0;
    this.qMaxDf[q] = 0;
    this.qEcn[q] = 0;
    this.qExpires[q] = now + this.timeoutMs;
    this.qFirst[q] = -1;
    this.qTail[q] = -1;
    this.qLastRun[q] = -1;
    this.qHdrBlock[q] = -1;
    this.qHdrLen[q] = 0;
    const bucket = this.keyHash & this.bucketMask;
    this.qHashNext[q] = this.buckets[bucket];
    this.buckets[bucket] = q;
    this.qOlder[q] = this.newest;
    this.qNewer[q] = -1;
    if (this.newest >= 0) this.qNewer[this.newest] = q;
    else this.oldest = q;
    this.newest = q;
    this.live++;
    return q;
  }

  /** Takes a queue out of its hash chain and the age list (it stays allocated). */
  private unlinkQueue(q: number): void {
    const base = q * KEY_WORDS;
    const k = this.key;
    for (let i = 0; i < KEY_WORDS; i++) k[i] = this.qKey[base + i];
    const bucket = this.hashKey() & this.bucketMask;
    let p = this.buckets[bucket];
    if (p === q) this.buckets[bucket] = this.qHashNext[q];
    else {
      while (p >= 0 && this.qHashNext[p] !== q) p = this.qHashNext[p];
      if (p >= 0) this.qHashNext[p] = this.qHashNext[q];
    }
    const older = this.qOlder[q];
    const newer = this.qNewer[q];
    if (older >= 0) this.qNewer[older] = newer;
    else this.oldest = newer;
    if (newer >= 0) this.qOlder[newer] = older;
    else this.newest = older;
    this.live--;
  }

  /** Returns an unlinked queue's fragments, blocks and slot to their free lists. */
  private freeQueue_(q: number): void {
    for (let f = this.qFirst[q]; f >= 0; ) {
      const next = this.fNext[f];
      this.freeChain(this.fBlock[f]);
      this.fNext[f] = this.freeFrag;
      this.freeFrag = f;
      f = next;
    }
    this.qFirst[q] = -1;
    this.freeChain(this.qHdrBlock[q]);
    this.qHdrBlock[q] = -1;
    this.qHashNext[q] = this.freeQueue;
    this.freeQueue = q;
  }

  /** Frees queues whose 30 s are over (the age list is also the expiry order). */
  private expire(now: number): void {
    while (this.oldest >= 0 && this.qExpires[this.oldest] <= now) {
      const q = this.oldest;
      this.unlinkQueue(q);
      this.freeQueue_(q);
      this.stats.timeouts++;
    }
  }

  private evictOldest(keep: number): boolean {
    let q = this.oldest;
    if (q === keep) q = this.qNewer[q];
    if (q < 0) return false;
    this.unlinkQueue(q);
    this.freeQueue_(q);
    this.stats.evicted++;
    return true;
  }

  /** Makes `n` blocks (and one fragment record) free, evicting other queues oldest first. */
  private reserve(n: number, keep: number): boolean {
    while (this.freeBlocks < n || this.freeFrag < 0) {
      if (!this.evictOldest(keep)) return false;
    }
    return true;
  }

  // ------------------------------------------------------------ fragments in a queue

  /**
   * inet_frag_queue_insert's decision for [offset, end): after the tail
   * (appended to the last run when adjacent), before it as a new run, a
   * duplicate (inside one run) or an overlap. Sets placePrev.
   */
  private locate(q: number, offset: number, end: number): Place {
    const tail = this.qTail[q];
    if (tail < 0) {
      this.placePrev = -1;
      return Place.NEW_TAIL;
    }
    const tailEnd = this.fEnd[tail];
    if (tailEnd < end) {
      if (offset < tailEnd) return Place.OVERLAP;
      this.placePrev = tail;
      return offset === tailEnd ? Place.APPEND : Place.NEW_TAIL;
    }
    let prev = -1;
    for (let f = this.qFirst[q]; f >= 0; f = this.fNext[f]) {
      const runEnd = this.fRunEnd[f];
      if (runEnd >= 0) {
        const runStart = this.fOff[f];
        if (end <= runStart) {
          this.placePrev = prev;
          return Place.MIDDLE;
        }
        if (offset < runEnd) return offset >= runStart && end <= runEnd ? Place.DUP : Place.OVERLAP;
      }
      prev = f;
    }
    return Place.OVERLAP;
  }

  private link(q: number, place: Place, offset: number, end: number, block: number): void {
    const f = this.freeFrag;
    this.freeFrag = this.fNext[f];
    this.fOff[f] = offset;
    this.fEnd[f] = end;
    this.fBlock[f] = block;
    const prev = this.placePrev;
    if (prev < 0) {
      this.fNext[f] = this.qFirst[q];
      this.qFirst[q] = f;
    } else {
      this.fNext[f] = this.fNext[prev];
      this.fNext[prev] = f;
    }
    if (place === Place.APPEND) {
      this.fRunEnd[f] = -1;
      this.fRunEnd[this.qLastRun[q]] = end;
      this.qTail[q] = f;
    } else {
      this.fRunEnd[f] = end;
      if (place === Place.NEW_TAIL) {
        this.qTail[q] = f;
        this.qLastRun[q] = f;
      }
    }
  }

  // ------------------------------------------------------------ blocks

  /** Copies n bytes into a chain of reserved blocks; returns its first block (-1 for 0 bytes). */
  private store(src: Bytes, off: number, n: number): number {
    const arena = this.arena!;
    let head = -1;
    let prev = -1;
    for (let done = 0; done < n; done += BLOCK) {
      const blk = this.freeBlock;
      this.freeBlock = this.blockNext[blk];
      this.freeBlocks--;
      this.blockNext[blk] = -1;
      if (prev < 0) head = blk;
      else this.blockNext[prev] = blk;
      prev = blk;
      copy(src, off + done, arena, blk * BLOCK, Math.min(BLOCK, n - done));
    }
    return head;
  }

  private copyChain(blk: number, n: number, out: Bytes, off: number): void {
    const arena = this.arena!;
    for (let done = 0; done < n && blk >= 0; done += BLOCK, blk = this.blockNext[blk]) {
      copy(arena, blk * BLOCK, out, off + done, Math.min(BLOCK, n - done));
    }
  }

  private freeChain(blk: number): void {
    while (blk >= 0) {
      const next = this.blockNext[blk];
      this.blockNext[blk] = this.freeBlock;
      this.freeBlock = blk;
      this.freeBlocks++;
      blk = next;
    }
  }
}

function blocksFor(n: number): number {
  return Math.ceil(n / BLOCK);
}

function copy(src: Bytes, from: number, dst: Bytes, to: number, n: number): void {
  if (n < 64) {
    for (let i = 0; i < n; i++) dst[to + i] = src[from + i];
  } else {
    dst.set(src.subarray(from, from + n), to);
  }
}

/**
 * ipv6frag_thdr_truncated: an offset-0 fragment whose TCP, UDP or ICMPv6
 * header (after any extension headers following the Fragment header) is
 * not all there. The kernel leaves such a fragment unreassembled.
 */
function firstFragmentTruncated(b: Bytes, fh: number, last: number): boolean {
  let nh = b[fh];
  let pos = fh + 8;
  for (let hops = 0; hops < 64; hops++) {
    if (nh === 0 || nh === 43 || nh === 60 || nh === 51 || nh === 44) {
      if (pos + 8 > last) return false;
      if (nh === 44) {
        if ((getU16(b, pos + 2) & 0xfff8) !== 0) return false;
        nh = b[pos];
        pos += 8;
      } else {
        const hl = nh === 51 ? (b[pos + 1] + 2) << 2 : (b[pos + 1] + 1) << 3;
        nh = b[pos];
        pos += hl;
      }
      continue;
    }
    const need = nh === 6 ? 20 : nh === 17 || nh === 58 ? 8 : 0;
    return pos + need > last;
  }
  return false;
}
