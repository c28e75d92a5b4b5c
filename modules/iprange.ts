/**
 * `-m iprange --src-range a-b --dst-range a-b` (revision 1), as
 * libxt_iprange + xt_iprange. A reversed range is accepted (iptables only
 * warns) and never matches.
 *
 * Also exports the address helpers conntrack and recent share: addresses
 * are four 32-bit words (IPv4 in word 0), compared as integers.
 */
import type { Family, PacketContext } from '../xt/packet.js';
import { ipv4ToString, ipv6ToString, maskPrefixLength, parseIpv4, parseIpv6, prefixMaskWord } from '../dataplane/addr.js';
import { XtError, type MatchExtension } from '../xt/extension.js';

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
function cmp128(a: Uint32Array, b: Uint32Array): number {
  for (let i = 0; i < 4; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

export interface IprangeParams {
  family: Family;
  src: { lo: Uint32Array; hi: Uint32Array; inv: boolean } | null;
  dst: { lo: Uint32Array; hi: Uint32Array; inv: boolean } | null;
}

const iprange: MatchExtension<IprangeParams> = {
  kind: 'match',
  name: 'iprange',
  revision: 1,
  families: [4, 6],
  options: [
    { name: 'src-range', arg: 'required', invertible: true },
    { name: 'dst-range', arg: 'required', invertible: true },
  ],
  parse(opts, rule) {
    const p: IprangeParams = { family: rule.family, src: null, dst: null };
    for (const o of opts) {
      const v = o.value ?? '';
      const dash = v.indexOf('-');
      const lo = parseAddr(dash < 0 ? v : v.slice(0, dash), rule.family);
      const hi = dash < 0 ? lo : parseAddr(v.slice(dash + 1), rule.family);
      if (!lo || !hi) throw new XtError(`iprange: Bad value for "--${o.name}" option: "${v}"`);
      const r = { lo, hi, inv: o.inverted };
      if (o.name === 'src-range') {
        if (p.src) throw new XtError('iprange: option "--src-range" can only be used once.\n');
        p.src = r;
      } else {
        if (p.dst) throw new XtError('iprange: option "--dst-range" can only be used once.\n');
        p.dst = r;
      }
    }
    if (!p.src && !p.dst) throw new XtError('iprange match: You must specify `--src-range\' or `--dst-range\'');
    return p;
  },
  check(p) {
    const { src, dst } = p;
    if (p.family === 4) {
      const sLo = src ? src.lo[0] : 0, sHi = src ? src.hi[0] : 0xffffffff, sInv = src ? src.inv : false;
      const dLo = dst ? dst.lo[0] : 0, dHi = dst ? dst.hi[0] : 0xffffffff, dInv = dst ? dst.inv : false;
      return {
        match: (pkt: PacketContext) =>
          (!src || (pkt.src4 >= sLo && pkt.src4 <= sHi) !== sInv) && (!dst || (pkt.dst4 >= dLo && pkt.dst4 <= dHi) !== dInv),
      };
    }
    return {
      match: (pkt: PacketContext) =>
        (!src || (cmp128(pkt.src6, src.lo) >= 0 && cmp128(pkt.src6, src.hi) <= 0) !== src.inv) &&
        (!dst || (cmp128(pkt.dst6, dst.lo) >= 0 && cmp128(pkt.dst6, dst.hi) <= 0) !== dst.inv),
    };
  },
  save(p) {
    let s = '';
    if (p.src) s += `${p.src.inv ? ' !' : ''} --src-range ${addrToString(p.src.lo, p.family)}-${addrToString(p.src.hi, p.family)}`;
    if (p.dst) s += `${p.dst.inv ? ' !' : ''} --dst-range ${addrToString(p.dst.lo, p.family)}-${addrToString(p.dst.hi, p.family)}`;
    return s;
  },
  print(p) {
    let s = '';
    if (p.src) s += ` source IP range${p.src.inv ? ' !' : ''} ${addrToString(p.src.lo, p.family)}-${addrToString(p.src.hi, p.family)}`;
    if (p.dst) s += ` destination IP range${p.dst.inv ? ' !' : ''} ${addrToString(p.dst.lo, p.family)}-${addrToString(p.dst.hi, p.family)}`;
    return s;
  },
};

export default iprange;
