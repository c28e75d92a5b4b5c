/**
 * Software segmentation of a super-packet (a TCP or UDP packet read with a
 * GSO virtio header, dataplane/native/tun.c), for the egress paths that
 * cannot hand it to the kernel whole: a TAP link, a TUN without the virtio
 * header, a super-packet whose segments exceed the egress MTU (IPv4 without
 * DF: the segments are then fragmented as any packet).
 *
 * The segments are what the kernel's tcp_gso_segment / __udp_gso_segment
 * would cut:
 *   - TCP: the super-packet's IP and TCP headers (options included) copied
 *     in front of each gso_size slice of the payload; seq advanced by the
 *     payload before it; FIN and PSH kept on the last segment only, CWR on
 *     the first only; the checksum computed for each segment;
 *   - UDP (USO): each slice gets its own UDP header with its length and
 *     checksum (a computed 0 is sent as 0xffff);
 *   - IPv4: total length and header checksum per segment, the ID of segment
 *     k is the super-packet's ID + k (inet_gso_segment); IPv6: payload
 *     length per segment.
 * The super-packet must have no IPv6 extension headers (the native read
 * refuses those) and valid header lengths (it checked them).
 */
import { finish, pseudoSum4, pseudoSum6, sum16 } from './checksum.js';

/** The header length (IP + TCP/UDP) of a super-packet, or 0 if it is neither TCP nor UDP over a plain IP header. */
export function gsoHeaderLength(buf: Uint8Array, off: number, len: number): number {
  const v = buf[off] >> 4;
  const iphl = v === 4 ? (buf[off] & 15) * 4 : v === 6 ? 40 : 0;
  if (iphl === 0 || len < iphl + 8) return 0;
  const proto = v === 4 ? buf[off + 9] : buf[off + 6];
  if (proto === 17) return iphl + 8;
  if (proto !== 6 || len < iphl + 20) return 0;
  const hl = iphl + (buf[off + iphl + 12] >> 4) * 4;
  return hl <= len ? hl : 0;
}

/** How many segments a super-packet of `len` bytes with `hl` bytes of headers makes. */
export function gsoSegmentCount(len: number, hl: number, gsoSize: number): number {
  return Math.ceil((len - hl) / gsoSize);
}

/**
 * Cuts the super-packet src[off, off+len) into segments of gsoSize payload
 * bytes, written to `dst` from `dstOff` on with `room` free bytes in front
 * of each (an Ethernet header goes there); segment k is
 * dst[offs[k], offs[k] + lens[k]). Returns the segment count, or -1 when the
 * packet is not a TCP/UDP super-packet, more than offs.length segments
 * would be needed, or dst is too small.
 */
export function segmentSuperPacket(
  src: Uint8Array,
  off: number,
  len: number,
  gsoSize: number,
  dst: Uint8Array,
  dstOff: number,
  room: number,
  offs: Uint32Array,
  lens: Uint32Array,
): number {
  const hl = gsoHeaderLength(src, off, len);
  if (hl === 0 || gsoSize <= 0) return -1;
  const v4 = src[off] >> 4 === 4;
  const iphl = v4 ? (src[off] & 15) * 4 : 40;
  const tcp = (v4 ? src[off + 9] : src[off + 6]) === 6;
  const payload = len - hl;
  const count = Math.ceil(payload / gsoSize);
  if (count > offs.length || count > lens.length) return -1;
  let need = dstOff;
  for (let k = 0; k < count; k++) need += room + hl + Math.min(gsoSize, payload - k * gsoSize);
  if (need > dst.length) return -1;

  const id = v4 ? (src[off + 4] << 8) | src[off + 5] : 0;
  const seq = tcp ? readU32(src, off + iphl + 4) : 0;
  const flags = tcp ? src[off + iphl + 13] : 0;
  let p = dstOff;
  for (let k = 0; k < count; k++) {
    const plen = Math.min(gsoSize, payload - k * gsoSize);
    const o = p + room;
    const slen = hl + plen;
    dst.set(src.subarray(off, off + hl), o);
    dst.set(src.subarray(off + hl + k * gsoSize, off + hl + k * gsoSize + plen), o + hl);
    const l4 = o + iphl;
    const l4len = slen - iphl;
    if (v4) {
      writeU16(dst, o + 2, slen);
      writeU16(dst, o + 4, (id + k) & 0xffff);
      writeU16(dst, o + 10, 0);
      writeU16(dst, o + 10, finish(sum16(dst, o, iphl)));
    } else {
      writeU16(dst, o + 4, l4len);
    }
    let csumAt: number;
    if (tcp) {
      writeU32(dst, l4 + 4, (seq + k * gsoSize) >>> 0);
      let f = flags;
      if (k !== count - 1) f &= ~0x09; // FIN, PSH: last segment only
      if (k !== 0) f &= ~0x80; // CWR: first segment only
      dst[l4 + 13] = f;
      csumAt = l4 + 16;
    } else {
      writeU16(dst, l4 + 4, l4len);
      csumAt = l4 + 6;
    }
    writeU16(dst, csumAt, 0);
    const pseudo = v4
      ? pseudoSum4(readU32(dst, o + 12), readU32(dst, o + 16), tcp ? 6 : 17, l4len)
      : pseudoSum6(dst, o + 8, tcp ? 6 : 17, l4len);
    let c = finish(sum16(dst, l4, l4len, pseudo));
    if (!tcp && c === 0) c = 0xffff;
    writeU16(dst, csumAt, c);
    offs[k] = o;
    lens[k] = slen;
    p = o + slen;
  }
  return count;
}

function readU32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}

function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}
