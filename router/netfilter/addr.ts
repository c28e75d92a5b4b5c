/**
 * Addresses and masks of `-s`/`-d` as iptables parses and prints them
 * (xtables_ipparse_multiple / xtables_ip6parse_multiple): numbers inside,
 * strings only here at the edge. Hostnames are not resolved (xtr has no
 * resolver in the rule path); a name is refused as iptables refuses an
 * unknown host.
 */
import type { Family } from '../packet.js';
import { NfError } from './errors.js';

/** An IPv4 or IPv6 address with mask: v4 uses words[0] only. Already masked. */
export interface AddrMask {
  readonly family: Family;
  readonly addr: Uint32Array;
  readonly mask: Uint32Array;
}

/** iptables' own dotted parser: 1-4 decimal parts, missing trailing parts are 0 ("10.1" = 10.1.0.0). */
function parseDotted(s: string): number | null {
  if (!/^[0-9]+(\.[0-9]+){0,3}$/.test(s)) return null;
  const parts = s.split('.').map(Number);
  if (parts.some((p) => p > 255)) return null;
  while (parts.length < 4) parts.push(0);
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}

/** inet_pton(AF_INET6) into four words, or null. */
export function parseIpv6Words(s: string): Uint32Array | null {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || s.length < 2) return null;
  let head = s;
  let v4tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) >= 0) {
    const dotted = s.slice(lastColon + 1);
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(dotted)) return null;
    const v = dotted.split('.').map(Number);
    if (v.some((x) => x > 255)) return null;
    v4tail = [(v[0] << 8) | v[1], (v[2] << 8) | v[3]];
    head = s.slice(0, lastColon + 1);
    // "::1.2.3.4" keeps its "::"; "::ffff:1.2.3.4" loses the separator colon.
    if (!head.endsWith('::')) head = head.slice(0, -1);
  }
  const dbl = head.indexOf('::');
  if (dbl !== head.lastIndexOf('::')) return null;
  const groupsOf = (t: string): number[] | null => {
    if (t === '') return [];
    const out: number[] = [];
    for (const g of t.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  let groups: number[];
  if (dbl >= 0) {
    const a = groupsOf(head.slice(0, dbl));
    const b = groupsOf(head.slice(dbl + 2));
    if (!a || !b) return null;
    const fill = 8 - v4tail.length - a.length - b.length;
    if (fill < 1) return null;
    groups = [...a, ...new Array<number>(fill).fill(0), ...b, ...v4tail];
  } else {
    const a = groupsOf(head);
    if (!a) return null;
    groups = [...a, ...v4tail];
    if (groups.length !== 8) return null;
  }
  const w = new Uint32Array(4);
  for (let i = 0; i < 4; i++) w[i] = ((groups[2 * i] << 16) | groups[2 * i + 1]) >>> 0;
  return w;
}

/** inet_ntop(AF_INET6) as glibc prints it (longest zero run of 2+ groups compressed, IPv4-mapped tail). */
export function formatIpv6(w: Uint32Array): string {
  const g: number[] = [];
  for (let i = 0; i < 4; i++) g.push(w[i] >>> 16, w[i] & 0xffff);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  // glibc writes the last 32 bits dotted when the leading zero run is exactly 6 groups (::a.b.c.d)
  // or 5 groups followed by ffff (::ffff:a.b.c.d).
  if (bestStart === 0 && (bestLen === 6 || (bestLen === 5 && g[5] === 0xffff))) {
    const v4 = `${g[6] >> 8}.${g[6] & 255}.${g[7] >> 8}.${g[7] & 255}`;
    return bestLen === 6 ? `::${v4}` : `::ffff:${v4}`;
  }
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

export function formatIpv4(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

function prefixMask(family: Family, bits: number): Uint32Array {
  const m = new Uint32Array(family === 4 ? 1 : 4);
  for (let i = 0; i < m.length; i++) {
    const b = Math.max(0, Math.min(32, bits - 32 * i));
    m[i] = b === 0 ? 0 : (0xffffffff << (32 - b)) >>> 0;
  }
  return m;
}

/** Prefix length of a contiguous mask, or -1. */
export function maskPrefixLength(mask: Uint32Array): number {
  let bits = 0;
  let ended = false;
  for (let i = 0; i < mask.length; i++) {
    for (let b = 31; b >= 0; b--) {
      const set = ((mask[i] >>> b) & 1) === 1;
      if (set && ended) return -1;
      if (set) bits++;
      else ended = true;
    }
  }
  return bits;
}

/**
 * One `-s`/`-d` word (may be a comma list, as iptables allows) into masked
 * addresses, in order. Errors carry iptables' wording.
 */
export function parseAddressList(text: string, family: Family): AddrMask[] {
  return text.split(',').map((one) => parseOne(one, family));
}

function parseOne(text: string, family: Family): AddrMask {
  const slash = text.indexOf('/');
  const host = slash < 0 ? text : text.slice(0, slash);
  const maskText = slash < 0 ? null : text.slice(slash + 1);
  const width = family === 4 ? 32 : 128;
  let mask: Uint32Array;
  if (maskText === null) mask = prefixMask(family, width);
  else if (/^[0-9]+$/.test(maskText) && Number(maskText) <= width) mask = prefixMask(family, Number(maskText));
  else {
    const dotted = family === 4 ? (maskText.includes('.') ? parseDotted(maskText) : null) : maskText.includes(':') ? parseIpv6Words(maskText) : null;
    if (dotted === null) throw new NfError(`invalid mask \`${maskText}' specified`);
    mask = typeof dotted === 'number' ? Uint32Array.of(dotted) : dotted;
  }
  // Under a zero mask iptables does not look at the host part at all ("-s garbage/0" is "any").
  if (mask.every((w) => w === 0)) return { family, addr: new Uint32Array(mask.length), mask };
  let addr: Uint32Array | null;
  if (family === 4) {
    const a = parseDotted(host);
    addr = a === null ? null : Uint32Array.of(a);
  } else addr = parseIpv6Words(host);
  if (addr === null) throw new NfError(`host/network \`${host}' not found`);
  for (let i = 0; i < addr.length; i++) addr[i] = (addr[i] & mask[i]) >>> 0;
  return { family, addr, mask };
}

export function isAny(a: AddrMask): boolean {
  return a.mask.every((w) => w === 0) && a.addr.every((w) => w === 0);
}

function formatAddr(a: AddrMask): string {
  return a.family === 4 ? formatIpv4(a.addr[0]) : formatIpv6(a.addr);
}

/** iptables-save form: always with a mask, "/N" when contiguous else dotted/colon mask. */
export function saveAddr(a: AddrMask): string {
  const n = maskPrefixLength(a.mask);
  const m = n >= 0 ? String(n) : a.family === 4 ? formatIpv4(a.mask[0]) : formatIpv6(a.mask);
  return `${formatAddr(a)}/${m}`;
}

/** `iptables -L` form: "anywhere" (or 0.0.0.0/0 with -n), hosts without mask. */
export function listAddr(a: AddrMask, numeric: boolean): string {
  const n = maskPrefixLength(a.mask);
  if (n === 0 && !numeric) return 'anywhere';
  if (n === (a.family === 4 ? 32 : 128)) return formatAddr(a);
  const m = n >= 0 ? String(n) : a.family === 4 ? formatIpv4(a.mask[0]) : formatIpv6(a.mask);
  return `${formatAddr(a)}/${m}`;
}
