/**
 * Addresses and masks of `-s`/`-d` as iptables parses and prints them
 * (xtables_ipparse_multiple / xtables_ip6parse_multiple): numbers inside,
 * strings only here at the edge. Hostnames are not resolved (xtr has no
 * resolver in the rule path); a name is refused as iptables refuses an
 * unknown host.
 */
import type { Family } from '../../xt/packet.js';
import { DottedQuad, ipv4ToString, ipv6FromText, ipv6ToInetNtop, maskPrefixLength, prefixMaskWord } from '../../dataplane/addr.js';
import { NfError } from './errors.js';

/** An IPv4 or IPv6 address with mask: v4 uses words[0] only. Already masked; never written (masks are shared). */
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

/** inet_pton(AF_INET6) into four words, or null; a dotted tail may have leading zeros, as -s/-d have always taken it. */
function parseIpv6Words(s: string): Uint32Array | null {
  return ipv6FromText(s, DottedQuad.LEADING_ZEROS);
}

/**
 * Prefix masks, one array per family and length shared by every rule that
 * has it (an AddrMask is never written after parsing): a small typed array
 * costs ~150 bytes with its buffer object, and most rules' -s/-d carry one.
 */
const PREFIX_MASKS: Record<Family, (Uint32Array | undefined)[]> = { 4: [], 6: [] };

function prefixMask(family: Family, bits: number): Uint32Array {
  const cached = PREFIX_MASKS[family][bits];
  if (cached) return cached;
  const m = new Uint32Array(family === 4 ? 1 : 4);
  for (let i = 0; i < m.length; i++) m[i] = prefixMaskWord(bits, i);
  PREFIX_MASKS[family][bits] = m;
  return m;
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
  return a.family === 4 ? ipv4ToString(a.addr[0]) : ipv6ToInetNtop(a.addr);
}

/** iptables-save form: always with a mask, "/N" when contiguous else dotted/colon mask. */
export function saveAddr(a: AddrMask): string {
  const n = maskPrefixLength(a.mask);
  const m = n >= 0 ? String(n) : a.family === 4 ? ipv4ToString(a.mask[0]) : ipv6ToInetNtop(a.mask);
  return `${formatAddr(a)}/${m}`;
}

/** `iptables -L` form: "anywhere" (or 0.0.0.0/0 with -n), hosts without mask. */
export function listAddr(a: AddrMask, numeric: boolean): string {
  const n = maskPrefixLength(a.mask);
  if (n === 0 && !numeric) return 'anywhere';
  if (n === (a.family === 4 ? 32 : 128)) return formatAddr(a);
  const m = n >= 0 ? String(n) : a.family === 4 ? ipv4ToString(a.mask[0]) : ipv6ToInetNtop(a.mask);
  return `${formatAddr(a)}/${m}`;
}
