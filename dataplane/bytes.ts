/**
 * Big-endian field access shared by every wire view, and the base class the
 * views extend.
 *
 * Plain byte indexing is used instead of DataView so a view can be pointed at
 * a Buffer or any Uint8Array without creating a DataView per packet; V8
 * compiles these small functions to direct loads.
 *
 * None of these functions check bounds: a view's `checkLen()`/`check()` is
 * what makes the offsets safe. Out-of-range reads on a Uint8Array yield
 * `undefined`, which the bit operators turn into 0, so even a missed check
 * cannot throw - it only produces garbage values.
 */

export type Bytes = Uint8Array;

export function getU16(b: Bytes, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

export function getU32(b: Bytes, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/** 48-bit big-endian value (a MAC address) as an exact integer. */
export function getU48(b: Bytes, o: number): number {
  return getU16(b, o) * 0x100000000 + getU32(b, o + 2);
}

export function setU16(b: Bytes, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}

export function setU32(b: Bytes, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

export function setU48(b: Bytes, o: number, v: number): void {
  setU16(b, o, Math.floor(v / 0x100000000) & 0xffff);
  setU32(b, o + 2, v >>> 0);
}

/**
 * Reads 16 bytes (an IPv6 address) into four big-endian words. The signed
 * 32-bit value goes straight into the Uint32Array (which wraps it): a word
 * >= 2^30 returned from a non-inlined getU32 would be a boxed heap number,
 * i.e. an allocation per packet.
 */
export function getWords128(b: Bytes, o: number, out: Uint32Array): void {
  for (let i = 0; i < 4; i++, o += 4) out[i] = (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
}

export function setWords128(b: Bytes, o: number, w: Uint32Array): void {
  setU32(b, o, w[0]);
  setU32(b, o + 4, w[1]);
  setU32(b, o + 8, w[2]);
  setU32(b, o + 12, w[3]);
}

const EMPTY = new Uint8Array(0);

/**
 * A window onto one header inside a packet buffer. The same instance is
 * re-pointed at every packet (`point`), so the hot path allocates nothing.
 * `off` is the absolute offset of the header, `len` the bytes that belong to
 * this header and everything after it (the rest of the packet).
 */
export class View {
  buf: Bytes = EMPTY;
  off = 0;
  len = 0;

  point(buf: Bytes, off: number, len: number): this {
    this.buf = buf;
    this.off = off;
    // A length running past the buffer is clipped so checkLen() sees the truth.
    this.len = Math.max(0, Math.min(len, buf.length - off));
    return this;
  }
}

/** "aa:bb:cc:dd:ee:ff" for a 48-bit MAC value. */
export function macToString(mac: number): string {
  let s = '';
  for (let i = 5; i >= 0; i--) {
    const byte = Math.floor(mac / 2 ** (8 * i)) & 0xff;
    s += byte.toString(16).padStart(2, '0') + (i ? ':' : '');
  }
  return s;
}

/** Parses "aa:bb:cc:dd:ee:ff" (or '-' separated); throws naming the input. */
export function parseMac(s: string): number {
  const parts = s.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new Error(`invalid MAC address "${s}": expected six hex bytes separated by ':'`);
  }
  let v = 0;
  for (const p of parts) v = v * 256 + parseInt(p, 16);
  return v;
}

/** Copies 6 bytes of a MAC given as a byte array into a 48-bit value. */
export function macFromBytes(b: Bytes, o = 0): number {
  return getU48(b, o);
}

/**
 * A copy of b[start, end) as a plain Uint8Array. (Buffer#slice would share
 * memory with the packet, which a Repr must not.)
 */
export function copyBytes(b: Bytes, start: number, end: number): Uint8Array {
  return new Uint8Array(b.subarray(start, end));
}
