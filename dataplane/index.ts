/**
 * The codec's public surface: wire views, representations, checksums,
 * packet validation and builders. Import from here unless a file needs only
 * one format.
 */
export * from './bytes.js';
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
