/**
 * Address text and prefix masks, in one place for the whole tree (as Go's
 * net/netip): an IPv4 address is one unsigned 32-bit number, an IPv6 address
 * four big-endian 32-bit words (Uint32Array(4)); strings exist only at the
 * edges (config, rules, control socket, the GeoIP tools), never on the packet
 * path.
 *
 * Parsing follows inet_pton: IPv4 is exactly four decimal parts; IPv6 is up
 * to eight 1-4 digit hex groups with at most one `::` standing for one or
 * more zero groups, and may end in a dotted quad (the last 32 bits, after
 * the last ':'). The one knob is how a dotted quad's parts may be spelled
 * (DottedQuad): inet_pton refuses leading zeros; the rule options and the
 * host-interface plan have always taken them as decimal ("010" is 10).
 *
 * Printing comes in the two forms callers print: RFC 5952 (ipv6ToString) and
 * glibc's inet_ntop (ipv6ToInetNtop), which differ only in the dotted tail of
 * IPv4-compatible and IPv4-mapped addresses; iptables and the upstream GeoIP
 * tools print the latter.
 *
 * Non-goals: zone ids (`fe80::1%eth0`), hostnames, inet_aton's short and
 * octal/hex IPv4 forms (iptables' own `-s 10.1` form lives with the rule
 * parser, router/netfilter/addr.ts).
 */

/** How the parts of a dotted quad may be spelled. */
export const enum DottedQuad {
  /** inet_pton: 1-3 decimal digits, no leading zeros ("01" is refused). */
  STRICT = 0,
  /** 1-3 decimal digits, leading zeros read as decimal ("010" is 10). */
  LEADING_ZEROS = 1,
}

/** The dotted quad s[start, end) as an unsigned 32-bit value, or -1. */
function scanDottedQuad(s: string, start: number, end: number, dotted: DottedQuad): number {
  let value = 0;
  let parts = 0;
  let i = start;
  for (;;) {
    const first = i;
    let part = 0;
    while (i < end) {
      const c = s.charCodeAt(i);
      if (c < 0x30 || c > 0x39) break;
      part = part * 10 + (c - 0x30);
      i++;
    }
    const digits = i - first;
    if (digits === 0 || digits > 3 || part > 255) return -1;
    if (digits > 1 && dotted === DottedQuad.STRICT && s.charCodeAt(first) === 0x30) return -1;
    value = value * 256 + part;
    if (++parts === 4) return i === end ? value : -1;
    if (i >= end || s.charCodeAt(i) !== 0x2e /* . */) return -1;
    i++;
  }
}

/** `s` as an unsigned 32-bit IPv4 address, or -1 if it is not exactly a dotted quad. */
export function ipv4FromText(s: string, dotted: DottedQuad): number {
  return scanDottedQuad(s, 0, s.length, dotted);
}

/** Parses a dotted quad (leading zeros allowed); throws naming the input and what is wrong. */
export function parseIpv4(s: string): number {
  const a = ipv4FromText(s, DottedQuad.LEADING_ZEROS);
  if (a >= 0) return a;
  const parts = s.split('.');
  if (parts.length !== 4) throw new Error(`invalid IPv4 address "${s}": expected four dot-separated numbers`);
  const bad = parts.find((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255);
  throw new Error(`invalid IPv4 address "${s}": "${bad}" is not 0..255`);
}

/** "192.0.2.1" for an unsigned 32-bit address (inet_ntop(AF_INET)). */
export function ipv4ToString(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** The group starting at `start` as written (up to the next ':'), for messages. */
function groupText(s: string, start: number): string {
  const colon = s.indexOf(':', start);
  return s.slice(start, colon < 0 ? s.length : colon);
}

/** Why the dotted tail from `start` was refused: out of range if it has the shape of a dotted quad, else its group is bad. */
function dottedTailReason(s: string, start: number): string {
  if (/^\d+(\.\d+){3}$/.test(s.slice(start))) return 'embedded IPv4 part out of range';
  return `"${groupText(s, start)}" is not a 16-bit hex group`;
}

/** Too many groups: with a `::` nothing is left for it to stand for, without one there are more than eight. */
function tooManyGroups(s: string): string {
  return s.includes('::') ? 'too many groups' : 'expected 8 groups';
}

/** The eight 16-bit groups of the address being scanned (scanning is never re-entered). */
const scanGroups = new Uint16Array(8);

/**
 * Reads IPv6 text into `out` (written only on success). Returns '' when `s`
 * is an address, else what is wrong with it, naming the first fault from the
 * left (e.g. `"12345" is not a 16-bit hex group`).
 */
export function scanIpv6(s: string, out: Uint32Array, dotted: DottedQuad): string {
  const g = scanGroups;
  const n = s.length;
  let count = 0;
  /** Where the `::` stands, counted in groups; -1 without one. */
  let gap = -1;
  let i = 0;
  const firstGap = s.indexOf('::');
  if (firstGap >= 0 && s.indexOf('::', firstGap + 2) >= 0) return 'more than one "::"';
  if (n >= 2 && s.charCodeAt(0) === 0x3a && s.charCodeAt(1) === 0x3a) {
    gap = 0;
    i = 2;
  }
  while (i < n) {
    const start = i;
    let v = 0;
    for (; i < n; i++) {
      const h = hexDigit(s.charCodeAt(i));
      if (h < 0) break;
      v = v * 16 + h;
    }
    if (i < n && s.charCodeAt(i) === 0x2e) {
      // A dotted quad: the last 32 bits, running to the end of the text.
      const v4 = scanDottedQuad(s, start, n, dotted);
      if (v4 < 0) return dottedTailReason(s, start);
      if (count > 6) return tooManyGroups(s);
      g[count++] = v4 >>> 16;
      g[count++] = v4 & 0xffff;
      break;
    }
    if (i === start || i - start > 4) return `"${groupText(s, start)}" is not a 16-bit hex group`;
    if (count === 8) return tooManyGroups(s);
    g[count++] = v;
    if (i === n) break;
    if (s.charCodeAt(i) !== 0x3a) return `"${groupText(s, start)}" is not a 16-bit hex group`;
    i++;
    if (i === n) return '"" is not a 16-bit hex group';
    if (s.charCodeAt(i) === 0x3a) {
      if (gap >= 0) return 'more than one "::"';
      gap = count;
      i++;
    }
  }
  if (gap >= 0) {
    if (count > 7) return 'too many groups';
    // Move the groups after the `::` to the end and zero what it stands for.
    const after = count - gap;
    for (let k = 1; k <= after; k++) g[8 - k] = g[count - k];
    g.fill(0, gap, 8 - after);
  } else if (count !== 8) {
    return 'expected 8 groups';
  }
  for (let k = 0; k < 4; k++) out[k] = ((g[2 * k] << 16) | g[2 * k + 1]) >>> 0;
  return '';
}

/** IPv6 text as four words, or null. */
export function ipv6FromText(s: string, dotted: DottedQuad): Uint32Array | null {
  const w = new Uint32Array(4);
  return scanIpv6(s, w, dotted) === '' ? w : null;
}

/** Parses an IPv6 address into four words (dotted tail with leading zeros allowed); throws naming the input. */
export function parseIpv6(s: string, out = new Uint32Array(4)): Uint32Array {
  const why = scanIpv6(s, out, DottedQuad.LEADING_ZEROS);
  if (why !== '') throw new Error(`invalid IPv6 address "${s}": ${why}`);
  return out;
}

/** RFC 5952 text form (lower case, the longest run of two or more zero groups compressed, first on ties). */
export function ipv6ToString(w: ArrayLike<number>): string {
  return ipv6Text(w, false);
}

/**
 * inet_ntop(AF_INET6) as glibc writes it: RFC 5952's form, except that the
 * last 32 bits are dotted when the leading zero run is exactly six groups
 * (IPv4-compatible, ::a.b.c.d) or five followed by ffff (IPv4-mapped,
 * ::ffff:a.b.c.d).
 */
export function ipv6ToInetNtop(w: ArrayLike<number>): string {
  return ipv6Text(w, true);
}

/** The eight 16-bit groups of the address being printed. */
const printGroups = new Uint16Array(8);

function ipv6Text(w: ArrayLike<number>, dottedTail: boolean): string {
  const g = printGroups;
  for (let i = 0; i < 4; i++) {
    g[2 * i] = w[i] >>> 16;
    g[2 * i + 1] = w[i] & 0xffff;
  }
  let runStart = -1;
  // A lone zero group is never compressed.
  let runLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > runLen) {
      runStart = i;
      runLen = j - i;
    }
    i = j;
  }
  if (dottedTail && runStart === 0 && (runLen === 6 || (runLen === 5 && g[5] === 0xffff))) {
    const v4 = ipv4ToString(((g[6] << 16) | g[7]) >>> 0);
    return runLen === 6 ? `::${v4}` : `::ffff:${v4}`;
  }
  let s = '';
  let colon = false;
  for (let i = 0; i < 8; i++) {
    if (i === runStart) {
      s += '::';
      colon = false;
      i += runLen - 1;
      continue;
    }
    if (colon) s += ':';
    s += g[i].toString(16);
    colon = true;
  }
  return s;
}

/** Word `i` (0-based, big-endian) of the mask of a `len`-bit prefix; IPv4 is word 0 with len <= 32. */
export function prefixMaskWord(len: number, i: number): number {
  const bits = len - 32 * i;
  if (bits <= 0) return 0;
  if (bits >= 32) return 0xffffffff;
  return (0xffffffff << (32 - bits)) >>> 0;
}

/** Prefix length of a contiguous mask over its first `words` words, or -1 if the mask is not contiguous. */
export function maskPrefixLength(mask: ArrayLike<number>, words = mask.length): number {
  let bits = 0;
  let ended = false;
  for (let i = 0; i < words; i++) {
    for (let b = 31; b >= 0; b--) {
      const set = ((mask[i] >>> b) & 1) === 1;
      if (set && ended) return -1;
      if (set) bits++;
      else ended = true;
    }
  }
  return bits;
}
