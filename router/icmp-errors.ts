/**
 * ICMP/ICMPv6 errors the router sends (time exceeded, unreachable, too big)
 * and the one rate limiter every error goes through, as the kernel's
 * icmp_send / icmpv6_send and their icmp{v4,v6}_xrlim_allow +
 * icmp_global_allow: a global token bucket (icmp_msgs_per_sec /
 * icmp_msgs_burst) and a per-destination one (inet_peer_xrlim_allow), which
 * path-MTU messages skip.
 *
 * The error is built into the scratch arena and queued as pending, so it runs
 * through the OUTPUT path right after the packet it is about.
 */
import { buildIcmp4Error, buildIcmp6Error, mayReplyWithIcmpError } from '../dataplane/build.js';
import type { Family, PacketContext } from '../xt/packet.js';
import type { RouterInterface } from './interfaces.js';
import type { ScratchArena } from './scratch.js';

/** The kernel's icmp_msgs_per_sec / icmp_msgs_burst defaults. */
const ICMP_RATE_PER_MS = 1000 / 1000;
const ICMP_BURST = 50;
/**
 * Per-destination limit (inet_peer_xrlim_allow): icmp_ratelimit 1000 ms,
 * burst XRLIM_BURST_FACTOR 6. Peers share buckets by hash (a fixed table, no
 * allocation); a collision only makes two peers share one allowance.
 */
const PEER_INTERVAL_MS = 1000;
const PEER_BURST_MS = 6 * PEER_INTERVAL_MS;
const PEER_BUCKETS = 1024;

/** The router's one ICMP error rate limiter (allocation-free). */
export class IcmpRateLimiter {
  private tokens = ICMP_BURST;
  private last = 0;
  private readonly peerTokens = new Float64Array(PEER_BUCKETS).fill(PEER_BURST_MS);
  private readonly peerLast = new Float64Array(PEER_BUCKETS);
  /** Errors refused by either bucket. */
  limited = 0;

  /**
   * Whether an ICMP error of (type, code) to `dst` (the offending packet's
   * source) may go at `now`: icmpv4_xrlim_allow / icmpv6_xrlim_allow.
   * Path-MTU messages (frag-needed, packet-too-big) skip the per-peer limit;
   * every error passes the global bucket.
   */
  allow(family: Family, dst4: number, dst6: Uint32Array, type: number, code: number, now: number): boolean {
    const v4 = family === 4;
    const perPeer = v4 ? (type === 3 && code !== 4) || type === 4 || type === 11 || type === 12 : type !== 2;
    let bucket = -1;
    if (perPeer) {
      const h = v4 ? Math.imul(dst4 ^ 0x9e3779b9, 0x85ebca6b) : Math.imul(dst6[0] ^ dst6[1] ^ dst6[2] ^ dst6[3] ^ 0x7f4a7c15, 0x85ebca6b);
      bucket = (h ^ (h >>> 15)) & (PEER_BUCKETS - 1);
      const tokens = Math.min(PEER_BURST_MS, this.peerTokens[bucket] + (now - this.peerLast[bucket]));
      this.peerTokens[bucket] = tokens;
      this.peerLast[bucket] = now;
      if (tokens < PEER_INTERVAL_MS) {
        this.limited++;
        return false;
      }
    }
    this.tokens = Math.min(ICMP_BURST, this.tokens + (now - this.last) * ICMP_RATE_PER_MS);
    this.last = now;
    if (this.tokens < 1) {
      this.limited++;
      return false;
    }
    this.tokens -= 1;
    if (bucket >= 0) this.peerTokens[bucket] -= PEER_INTERVAL_MS;
    return true;
  }
}

/** Builds ICMP errors into scratch and queues them for the OUTPUT path. */
export class IcmpErrors {
  readonly limiter = new IcmpRateLimiter();
  /** Errors queued for sending. */
  sent = 0;
  /** Source when the interface in question has no address: the first address of any link. */
  anySource4 = 0;
  anySource6: Uint32Array | null = null;

  constructor(private readonly scratch: ScratchArena) {}

  /** The address an error about a packet that came in on (or goes back out of) `via` comes from; 0 = none. */
  source4(via: RouterInterface | null): number {
    return via !== null && via.icmpSource4 !== 0 ? via.icmpSource4 : this.anySource4;
  }

  source6(via: RouterInterface | null): Uint32Array | null {
    return via !== null && via.icmpSource6 !== null ? via.icmpSource6 : this.anySource6;
  }

  /**
   * An ICMP/ICMPv6 error about `pkt` from `via`'s address (the interface it
   * came in on, so traceroute shows that hop), queued as pending. Returns
   * the pending slot it took, or -1 when none was sent.
   */
  send(pkt: PacketContext, via: RouterInterface | null, type: number, code: number, info: number, now: number): number {
    if (pkt.family === 4) return this.sendFrom(pkt, type, code, info, now, this.source4(via), null);
    return this.sendFrom(pkt, type, code, info, now, 0, this.source6(via));
  }

  /** As send(), from an explicit source address (IPv4 `src4`, IPv6 `src6`). */
  sendFrom(pkt: PacketContext, type: number, code: number, info: number, now: number, src4: number, src6: Uint32Array | null): number {
    if (!mayReplyWithIcmpError(pkt, type, code)) return -1;
    if (!this.limiter.allow(pkt.family, pkt.src4, pkt.src6, type, code, now)) return -1;
    const scratch = this.scratch;
    let n: number;
    let p: number;
    if (pkt.family === 4) {
      if (src4 === 0) return -1;
      p = scratch.alloc(576);
      if (p < 0) return -1;
      n = buildIcmp4Error(scratch.buf, p, pkt, type, code, info, src4);
    } else {
      if (src6 === null) return -1;
      p = scratch.alloc(1280);
      if (p < 0) return -1;
      n = buildIcmp6Error(scratch.buf, p, pkt, type, code, info, src6);
    }
    if (n === 0) return -1;
    scratch.pos = p + n;
    const slot = scratch.pushPending(p, n);
    if (slot < 0) return -1;
    this.sent++;
    return slot;
  }
}
