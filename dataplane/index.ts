/**
 * The codec's public surface: wire views, representations, checksums,
 * packet validation and builders. Import from here unless a file needs only
 * one format.
 *
 * Invariants:
 *  - a view is re-pointed (`point(buf, off, len)`) at each packet; its
 *    `checkLen()`/`check()` must pass before its accessors are trusted on
 *    untrusted bytes (accessors never throw either way: out-of-range reads
 *    give garbage, not exceptions);
 *  - `parsePacket` never throws and never allocates; it returns a DropReason;
 *  - builders write into caller buffers and return a length (0/-1 = not sent);
 *  - addresses are numbers (IPv4, MAC) or Uint32Array(4) (IPv6), never strings
 *    on the packet path.
 *
 * Non-goals: 802.1Q VLAN tags; IPv6 jumbograms; DHCP option overload;
 * echoing IPv4 options in ICMP errors (Linux's ip_options_echo); answering
 * fragmented echo requests (builders see one packet; reassembly.ts puts
 * datagrams together only where netfilter would, before the rules); NDP
 * options other than link-layer addresses in NdpRepr (the view's cursor
 * still walks them).
 */
export * from './bytes.js';
export * from './addr.js';
export * from './checksum.js';
export * from './drop.js';
export * from './ethernet.js';
export * from './arp.js';
export * from './ipv4.js';
export * from './ipv6.js';
export * from './tcp.js';
export * from './udp.js';
export * from './icmp.js';
export * from './icmpv6.js';
export * from './parse.js';
export * from './dhcp.js';
export * from './build.js';
export * from './reassembly.js';
export * from './mangle.js';
