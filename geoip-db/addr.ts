/**
 * Address text at the edges of the GeoIP/ASN tools: strict parsing of the
 * addresses found in CSV inputs and printing in the form glibc's inet_ntop
 * gives (so the query tools print exactly what the upstream Perl tools print).
 *
 * Inside xtr an IPv4 address is one unsigned 32-bit number and an IPv6
 * address four big-endian 32-bit words; the builders use a bigint for IPv6
 * because they add one to range ends when merging.
 */

/**
 * Parses dotted-quad IPv4 text; returns the unsigned 32-bit value or -1.
 * As strict as the upstream builder's range library: exactly four decimal
 * parts of 1-3 digits, no leading zeros, each <= 255.
 */
export function parseIPv4(text: string): number {
  let value = 0;
  let parts = 0;
  let i = 0;
  const n = text.length;
  while (parts < 4) {
    const start = i;
    let part = 0;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c < 48 || c > 57) break;
      part = part * 10 + (c - 48);
      i++;
    }
    const digits = i - start;
    if (digits === 0 || digits > 3 || part > 255) return -1;
    if (digits > 1 && text.charCodeAt(start) === 48) return -1;
    value = value * 256 + part;
    parts++;
    if (parts < 4) {
      if (i >= n || text.charCodeAt(i) !== 46) return -1;
      i++;
    }
  }
  return i === n ? value : -1;
}

/** Parses IPv6 text (with `::` and an optional dotted IPv4 tail); returns a bigint or null. */
export function parseIPv6(text: string): bigint | null {
  if (text.length < 2 || text.length > 45) return null;
  const dbl = text.indexOf('::');
  if (dbl >= 0 && text.indexOf('::', dbl + 1) >= 0) return null;
  const head = dbl >= 0 ? text.slice(0, dbl) : text;
  const tail = dbl >= 0 ? text.slice(dbl + 2) : '';
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  const words: number[] = [];
  const tailWords: number[] = [];
  const all = [...headGroups.map((g) => [g, words] as const), ...tailGroups.map((g) => [g, tailWords] as const)];
  for (let k = 0; k < all.length; k++) {
    const [g, into] = all[k]!;
    if (k === all.length - 1 && g.includes('.')) {
      const v4 = parseIPv4(g);
      if (v4 < 0) return null;
      into.push(v4 >>> 16, v4 & 0xffff);
      continue;
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    into.push(parseInt(g, 16));
  }
  const total = words.length + tailWords.length;
  if (dbl >= 0) {
    if (total > 7) return null;
    while (words.length + tailWords.length < 8) words.push(0);
  } else if (total !== 8) {
    return null;
  }
  let value = 0n;
  for (const w of [...words, ...tailWords]) value = (value << 16n) | BigInt(w);
  return value;
}

/** inet_ntop(AF_INET) text of an unsigned 32-bit value. */
export function formatIPv4(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

/**
 * inet_ntop(AF_INET6) text as glibc writes it: lower case, the longest run
 * (first on ties) of two or more zero groups as `::`, and the dotted tail for
 * IPv4-compatible (::a.b.c.d when the zero run is exactly six groups) and
 * IPv4-mapped (::ffff:a.b.c.d) addresses.
 */
export function formatIPv6(value: bigint): string {
  const w: number[] = [];
  for (let i = 7; i >= 0; i--) w.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  let bestBase = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestBase = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestBase = -1;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase >= 0 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    if (
      i === 6 &&
      bestBase === 0 &&
      (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))
    ) {
      out += formatIPv4(Number(value & 0xffffffffn));
      break;
    }
    out += w[i]!.toString(16);
  }
  if (bestBase >= 0 && bestBase + bestLen === 8) out += ':';
  return out;
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
