/**
 * Address text at the edges of the GeoIP/ASN tools: strict parsing of the
 * addresses found in CSV inputs and printing in the form glibc's inet_ntop
 * gives (so the query tools print exactly what the upstream Perl tools print).
 *
 * Inside xtr an IPv4 address is one unsigned 32-bit number and an IPv6
 * address four big-endian 32-bit words; the builders use a bigint for IPv6
 * because they add one to range ends when merging. The text itself is
 * dataplane/addr.ts's (strict, as inet_pton); these names give it the
 * builders' bigint form.
 */
import { DottedQuad, ipv4FromText, ipv6ToInetNtop, scanIpv6 } from '../dataplane/addr.js';

/**
 * Parses dotted-quad IPv4 text; returns the unsigned 32-bit value or -1.
 * As strict as the upstream builder's range library: exactly four decimal
 * parts of 1-3 digits, no leading zeros, each <= 255.
 */
export function parseIPv4(text: string): number {
  return ipv4FromText(text, DottedQuad.STRICT);
}

/** Words of the address being parsed or printed. */
const scratch = new Uint32Array(4);

/** Parses IPv6 text (with `::` and an optional dotted IPv4 tail); returns a bigint or null. */
export function parseIPv6(text: string): bigint | null {
  if (scanIpv6(text, scratch, DottedQuad.STRICT) !== '') return null;
  return (BigInt(scratch[0]) << 96n) | (BigInt(scratch[1]) << 64n) | (BigInt(scratch[2]) << 32n) | BigInt(scratch[3]);
}

/** inet_ntop(AF_INET) text of an unsigned 32-bit value. */
export { ipv4ToString as formatIPv4 } from '../dataplane/addr.js';

/** inet_ntop(AF_INET6) text as glibc writes it (dotted tail for ::a.b.c.d and ::ffff:a.b.c.d), as the upstream Perl tools print. */
export function formatIPv6(value: bigint): string {
  return ipv6ToInetNtop(v6Words(value, scratch));
}

export const V6_MAX = (1n << 128n) - 1n;

/** Writes a 128-bit value big-endian into 16 bytes at offset. */
export function writeV6(value: bigint, out: Buffer, offset: number): void {
  out.writeBigUInt64BE(value >> 64n, offset);
  out.writeBigUInt64BE(value & 0xffffffffffffffffn, offset + 8);
}

/** Reads a big-endian 128-bit value. */
export function readV6(buf: Uint8Array, offset: number): bigint {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return (b.readBigUInt64BE(offset) << 64n) | b.readBigUInt64BE(offset + 8);
}

/** The four big-endian 32-bit words of an IPv6 value (the PacketContext form). */
export function v6Words(value: bigint, out: Uint32Array = new Uint32Array(4)): Uint32Array {
  out[0] = Number((value >> 96n) & 0xffffffffn);
  out[1] = Number((value >> 64n) & 0xffffffffn);
  out[2] = Number((value >> 32n) & 0xffffffffn);
  out[3] = Number(value & 0xffffffffn);
  return out;
}
