/**
 * The per-packet context passed through the netfilter pipeline.
 *
 * One PacketContext object per processing loop is allocated at start-up and
 * re-pointed at each packet (no object per packet). The router fills the
 * parsed fields once after validating the packet; matches and targets read
 * them instead of re-parsing the headers.
 */
import type { Conn } from './conn.js';

/** Netfilter hooks, numbered as the kernel numbers them (NF_INET_*). */
export const enum Hook {
  PREROUTING = 0,
  INPUT = 1,
  FORWARD = 2,
  OUTPUT = 3,
  POSTROUTING = 4,
}
export const HOOK_NAMES = ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'] as const;

/** Verdicts, numbered as the kernel's NF_* values. */
export const enum Verdict {
  DROP = 0,
  ACCEPT = 1,
  /** A target took the packet over (it was consumed or queued elsewhere). */
  STOLEN = 2,
}

export type Family = 4 | 6;
export type TableName = 'raw' | 'mangle' | 'nat' | 'filter' | 'rawpost' | 'security';

/** What the pipeline needs to know about an interface. */
export interface InterfaceRef {
  /** The name used in rules (`-i eth0`), i.e. xtr's config name. */
  readonly name: string;
  /** Small dense integer, stable for the process lifetime (0 = none). */
  readonly index: number;
  readonly kind: 'tun' | 'tap' | 'host';
  readonly mtu: number;
  /** The interface's own MAC (TAP only; 6 bytes), else null. */
  readonly mac: Uint8Array | null;
}

/** Connection-tracking information attached to a packet (ctinfo). */
export const enum CtState {
  INVALID = 1,
  NEW = 2,
  ESTABLISHED = 4,
  RELATED = 8,
  UNTRACKED = 16,
}

export class PacketContext {
  /** Buffer holding the packet. */
  buf: Buffer = Buffer.alloc(0);
  /** Offset of the Ethernet header (TAP ingress) or -1 (TUN, locally generated). */
  l2off = -1;
  /** Offset of the IPv4/IPv6 header. */
  l3off = 0;
  /** L3 length: IPv4 total length / 40 + IPv6 payload length. */
  l3len = 0;
  family: Family = 4;

  /** Upper-layer protocol (after IPv6 extension headers); 0..255. */
  proto = 0;
  /** Absolute offset of the transport header in buf (valid only if !fragmentOffset). */
  l4off = 0;
  /** Bytes from l4off to the end of the packet. */
  l4len = 0;
  /**
   * Bytes the packet may grow by in place after l3off + l3len (the kernel's
   * skb_tailroom): a target that lengthens the packet (TCPMSS adding an MSS
   * option) stays within it and updates l3len/l4len. Set by the router for
   * each packet it reads; 0 (none) unless the buffer's owner says otherwise.
   */
  tailroom = 0;
  /** Fragment offset in 8-byte units (0 for the first fragment / unfragmented). */
  fragmentOffset = 0;
  /** True if this is a fragment (any: more-fragments set or offset != 0). */
  isFragment = false;
  /**
   * Absolute offset of the IPv6 Fragment header, or -1 (none; always -1 for
   * IPv4). An atomic fragment (offset 0, no more fragments) has one without
   * being a fragment; the kernel's nf_defrag_ipv6 still takes it.
   */
  fragHdrOff = -1;

  /** IPv4 addresses as unsigned 32-bit numbers (family 4). */
  src4 = 0;
  dst4 = 0;
  /** IPv6 addresses as four big-endian 32-bit words (family 6); preallocated, never replaced. */
  readonly src6 = new Uint32Array(4);
  readonly dst6 = new Uint32Array(4);

  /** Transport ports (TCP/UDP/SCTP/DCCP/UDPLITE), 0 otherwise. */
  sport = 0;
  dport = 0;
  /** TCP flags byte (FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128) or 0. */
  tcpFlags = 0;
  /** ICMP / ICMPv6 type and code, or -1. */
  icmpType = -1;
  icmpCode = -1;
  /** TTL (IPv4) or hop limit (IPv6) as in the header now. */
  ttl = 0;
  /**
   * For a datagram reassembled from fragments, the largest of them (the
   * kernel's IPCB/IP6CB frag_max_size): egress fragments it again no larger
   * than this. 0 for anything else.
   */
  fragMaxSize = 0;

  /** Hook the packet is traversing now. */
  hook: Hook = Hook.PREROUTING;
  inIf: InterfaceRef | null = null;
  outIf: InterfaceRef | null = null;
  /** True for packets from the local stack or built by xtr itself. */
  locallyGenerated = false;

  /** nfmark (skb->mark), 32-bit unsigned. */
  mark = 0;
  /** The packet's tracked connection (router/conntrack's entry, seen through the Conn view) and state bits. */
  ct: Conn | null = null;
  ctState: CtState = CtState.UNTRACKED;
  /**
   * The packet travels in its flow's reply direction (the kernel's
   * IP_CT_IS_REPLY in ctinfo), as conntrack found it; meaningful while ct
   * is set. Kept on the packet because NAT rewrites addresses, after which
   * they no longer tell the direction (router/conntrack/nat.ts).
   */
  ctReply = false;
  /** Set by NOTRACK / CT --notrack in raw before conntrack sees the packet. */
  notrack = false;
  /**
   * ct/ctState were set by whoever built the packet: an answer attached to
   * the flow of the packet it answers (the kernel's nf_ct_attach, used by
   * REJECT, TARPIT, icmp_send). Conntrack then neither looks the packet up
   * nor confirms it, as nf_conntrack_in ignores an skb that already has an
   * entry. The router clears it for every packet.
   */
  ctAttached = false;
  /**
   * Set by a match to drop the packet at once whatever the rule's verdict
   * (the kernel's xt_action_param.hotdrop): a malformed header a match cannot
   * judge. The engine clears it before each hook and drops when it is set.
   */
  hotdrop = false;

  /**
   * The L4 checksum field holds only the pseudo-header sum (the kernel's
   * CHECKSUM_PARTIAL): a TCP/UDP super-packet read with TSO/USO offloads.
   * Its segments' checksums are computed on egress (the kernel for a GSO
   * write, the software segmenter otherwise), so a rewrite may leave the
   * field as it likes; a check of the checksum counts it as good, as the
   * kernel's skb_csum_unnecessary does.
   */
  csumPartial = false;

  /** Milliseconds (monotonic) at the start of the current batch; one clock read per batch. */
  now = 0;
}
