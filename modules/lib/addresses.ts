/**
 * Address helpers shared by extensions (iprange, conntrack, recent): addresses as
 * four 32-bit words (IPv4 in word 0), parsed and printed as libxtables does.
 */
import { ipv4ToString, ipv6ToString, maskPrefixLength, parseIpv4, parseIpv6, prefixMaskWord } from '../../dataplane/addr.js';
import { type Family } from '../../xt/packet.js';

/** Parses an address of `family` into 4 words, or null. */
export function parseAddr(s: string, family: Family): Uint32Array | null {
  const out = new Uint32Array(4);
  try {
    if (family === 4) out[0] = parseIpv4(s);
    else parseIpv6(s, out);
  } catch {
    return null;
  }
  return out;
}

export function addrToString(w: Uint32Array, family: Family): string {
  return family === 4 ? ipv4ToString(w[0]) : ipv6ToString(w);
}

/** A prefix length as a mask of `family` (IPv4 uses word 0 only). */
export function prefixMask(len: number, family: Family): Uint32Array {
  const m = new Uint32Array(4);
  for (let i = 0; i < (family === 4 ? 1 : 4); i++) m[i] = prefixMaskWord(len, i);
  return m;
}

/** The prefix length of a contiguous mask, or -1. */
export function maskLength(m: Uint32Array, family: Family): number {
  return maskPrefixLength(m, family === 4 ? 1 : 4);
}

/** `addr[/len|/mask]` as iptables takes -s; null if malformed. */
export function parseAddrMask(s: string, family: Family): { addr: Uint32Array; mask: Uint32Array } | null {
  const slash = s.indexOf('/');
  const addr = parseAddr(slash < 0 ? s : s.slice(0, slash), family);
  if (!addr) return null;
  let mask = prefixMask(family === 4 ? 32 : 128, family);
  if (slash >= 0) {
    const m = s.slice(slash + 1);
    if (/^[0-9]+$/.test(m)) {
      if (Number(m) > (family === 4 ? 32 : 128)) return null;
      mask = prefixMask(Number(m), family);
    } else {
      const mm = parseAddr(m, family);
      if (!mm) return null;
      mask = mm;
    }
  }
  for (let i = 0; i < 4; i++) addr[i] = (addr[i] & mask[i]) >>> 0;
  return { addr, mask };
}

/** `addr` or `addr/len` (or `addr/mask` if not contiguous), as iptables-save prints. */
export function formatAddrMask(addr: Uint32Array, mask: Uint32Array, family: Family): string {
  const full = family === 4 ? 32 : 128;
  const len = maskLength(mask, family);
  if (len === full) return addrToString(addr, family);
  return `${addrToString(addr, family)}/${len >= 0 ? len : addrToString(mask, family)}`;
}

/** -1, 0, 1 comparing two 128-bit word arrays. */
export function cmp128(a: Uint32Array, b: Uint32Array): number {
  for (let i = 0; i < 4; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

