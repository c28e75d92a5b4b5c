/**
 * Why the codec refuses a packet. Views' `check()` and `parsePacket` return
 * one of these (0 = valid) instead of throwing, so the hot path can count
 * drops per reason the way the kernel's IPSTATS/SKB_DROP_REASON counters do.
 *
 * A plain (not const) enum: the numbers are part of the counter/stat API and
 * the names table below must stay in step with them.
 */
export enum DropReason {
  NONE = 0,
  /** Fewer bytes than the fixed L3 header (IPv4 20, IPv6 40) or none at all. */
  TRUNCATED_HEADER = 1,
  /** Version nibble is neither 4 nor 6, or does not match the family expected. */
  BAD_VERSION = 2,
  /** IPv4 IHL below 5, or the header it declares runs past the bytes available. */
  BAD_IHL = 3,
  /** IPv4 total length / IPv6 payload length larger than the bytes available, or smaller than the header. */
  BAD_TOTAL_LENGTH = 4,
  /** IPv4 header checksum does not verify. */
  BAD_IP_CHECKSUM = 5,
  /** An unfragmented packet or a first fragment too short for its transport header. */
  TRUNCATED_TRANSPORT = 6,
  /** TCP data offset below 5 or beyond the segment. */
  BAD_TCP_DATA_OFFSET = 7,
  /** UDP length field below 8 or beyond the datagram. */
  BAD_UDP_LENGTH = 8,
  /** The IPv6 extension-header chain runs past the end of the packet. */
  EXT_HEADER_OVERFLOW = 9,
  /** A Hop-by-Hop Options header anywhere but right after the IPv6 header (RFC 8200 4.1). */
  BAD_EXT_HEADER_ORDER = 10,
  /** A fragment that would end beyond 65535 bytes, or a non-last IPv6 fragment not a multiple of 8. */
  BAD_FRAGMENT = 11,
  /** Ethernet frame shorter than its 14-byte header. */
  TRUNCATED_FRAME = 12,
  /** ARP packet shorter than its header or not Ethernet/IPv4. */
  BAD_ARP = 13,
}

/** Stable lower-case names, indexed by DropReason, for counters and logs. */
export const DROP_REASON_NAMES: readonly string[] = [
  'none',
  'truncated_header',
  'bad_version',
  'bad_ihl',
  'bad_total_length',
  'bad_ip_checksum',
  'truncated_transport',
  'bad_tcp_data_offset',
  'bad_udp_length',
  'ext_header_overflow',
  'bad_ext_header_order',
  'bad_fragment',
  'truncated_frame',
  'bad_arp',
];

export const DROP_REASON_COUNT = DROP_REASON_NAMES.length;
