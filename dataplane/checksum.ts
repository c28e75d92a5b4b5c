/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * Sums are carried as plain JS numbers and folded at the end: a packet of
 * 64 KiB adds at most 2^31, far below 2^53, so no intermediate folding is
 * needed. `sum16` returns an unfolded partial sum so ranges and
 * pseudo-headers can be added together before one final `finish`.
 *
 * Incremental updates follow RFC 1624 equation 3, HC' = ~(~HC + ~m + m'),
 * which (unlike equation 2 of RFC 1141) never turns a correct checksum into
 * the wrong representation of zero. UDP is the exception the caller must
 * name: a transmitted 0 means "no checksum" (never updated) and a computed 0
 * is sent as 0xffff (RFC 768).
 */
import { type Bytes, getU16 } from './bytes.js';

/** Adds the 16-bit big-endian words of buf[off, off+len) to `acc` (odd tail padded with 0). */
export function sum16(buf: Bytes, off: number, len: number, acc = 0): number {
  const end = off + len;
  let i = off;
  for (; i + 1 < end; i += 2) acc += (buf[i] << 8) | buf[i + 1];
  if (i < end) acc += buf[i] << 8;
  return acc;
}

/** Folds a partial sum to 16 bits with end-around carry. */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum field value for a partial sum: ~fold(sum). */
export function finish(sum: number): number {
  return ~fold(sum) & 0xffff;
}

/** Checksum of one range, as stored in a header (IPv4 header, ICMP). */
export function checksum(buf: Bytes, off: number, len: number): number {
  return finish(sum16(buf, off, len));
}

/** True if a range whose checksum field is included sums to all ones. */
export function verifies(buf: Bytes, off: number, len: number, acc = 0): boolean {
  return fold(sum16(buf, off, len, acc)) === 0xffff;
}

/** Partial sum of the IPv4 pseudo-header (RFC 793 / 768). */
export function pseudoSum4(src: number, dst: number, proto: number, l4len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + l4len;
}

/**
 * Partial sum of the IPv6 pseudo-header (RFC 8200 8.1) with the addresses
 * read from the packet (src at srcOff, dst at srcOff + 16, as in the IPv6 header).
 */
export function pseudoSum6(buf: Bytes, srcOff: number, proto: number, l4len: number): number {
  return sum16(buf, srcOff, 32) + (l4len >>> 16) + (l4len & 0xffff) + proto;
}

/** Same as pseudoSum6 with addresses given as four 32-bit words each. */
export function pseudoSum6Words(src: Uint32Array, dst: Uint32Array, proto: number, l4len: number): number {
  let s = proto + (l4len >>> 16) + (l4len & 0xffff);
  for (let i = 0; i < 4; i++) s += (src[i] >>> 16) + (src[i] & 0xffff) + (dst[i] >>> 16) + (dst[i] & 0xffff);
  return s;
}

/**
 * New checksum after one 16-bit word of the covered data changed from `from`
 * to `to` (RFC 1624 eqn 3). With `udp`, a 0 checksum stays 0 (none present)
 * and a result of 0 is written as 0xffff.
 */
export function csumReplace2(check: number, from: number, to: number, udp = false): number {
  if (udp && check === 0) return 0;
  const r = ~fold((~check & 0xffff) + (~from & 0xffff) + (to & 0xffff)) & 0xffff;
  return udp && r === 0 ? 0xffff : r;
}

/** As csumReplace2 for a 32-bit value (an IPv4 address, a TCP sequence number). */
export function csumReplace4(check: number, from: number, to: number, udp = false): number {
  if (udp && check === 0) return 0;
  const s =
    (~check & 0xffff) +
    (~(from >>> 16) & 0xffff) +
    (~from & 0xffff) +
    ((to >>> 16) & 0xffff) +
    (to & 0xffff);
  const r = ~fold(s) & 0xffff;
  return udp && r === 0 ? 0xffff : r;
}

/** As csumReplace2 for an IPv6 address given as four 32-bit words before and after. */
export function csumReplace16(check: number, from: Uint32Array, to: Uint32Array, udp = false): number {
  if (udp && check === 0) return 0;
  let s = ~check & 0xffff;
  for (let i = 0; i < 4; i++) {
    s += (~(from[i] >>> 16) & 0xffff) + (~from[i] & 0xffff) + ((to[i] >>> 16) & 0xffff) + (to[i] & 0xffff);
  }
  const r = ~fold(s) & 0xffff;
  return udp && r === 0 ? 0xffff : r;
}

/**
 * As csumReplace2 for an even-length byte range that is about to be
 * overwritten: `oldBuf[oldOff..+len)` is replaced by `newBuf[newOff..+len)`.
 * Used for addresses still in a buffer (IPv6 NAT, RAWNAT prefixes).
 */
export function csumReplaceBytes(
  check: number,
  oldBuf: Bytes,
  oldOff: number,
  newBuf: Bytes,
  newOff: number,
  len: number,
  udp = false,
): number {
  if (udp && check === 0) return 0;
  let s = ~check & 0xffff;
  for (let i = 0; i + 1 < len; i += 2) {
    s += (~getU16(oldBuf, oldOff + i) & 0xffff) + getU16(newBuf, newOff + i);
  }
  const r = ~fold(s) & 0xffff;
  return udp && r === 0 ? 0xffff : r;
}
