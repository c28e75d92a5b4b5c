/**
 * `-m iprange --src-range a-b --dst-range a-b` (revision 1), as
 * libxt_iprange + xt_iprange. A reversed range is accepted (iptables only
 * warns) and never matches.
 *
 * The address helpers it shares with conntrack and recent are in
 * lib/addresses.ts.
 */
import type { Family, PacketContext } from '../xt/packet.js';
import { ipv4ToString, ipv6ToString, maskPrefixLength, parseIpv4, parseIpv6, prefixMaskWord } from '../dataplane/addr.js';
import { XtError, type MatchExtension } from '../xt/extension.js';
import { addrToString, cmp128, parseAddr } from './lib/addresses.js';

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
