/**
 * `-m length --length min[:max]` (mainline xt_length): the L3 length -
 * IPv4 total length, or 40 + IPv6 payload length. A reversed range is
 * accepted, as iptables does, and never matches.
 */
import type { PacketContext } from '../router/packet.js';
import { parseUint, x6Check } from './mark.js';
import { XtError, type MatchExtension } from './types.js';

export interface LengthParams {
  min: number;
  max: number;
  inv: boolean;
}

const length: MatchExtension<LengthParams> = {
  kind: 'match',
  name: 'length',
  families: [4, 6],
  options: [{ name: 'length', arg: 'required', invertible: true }],
  parse(opts) {
    const o = x6Check('length', opts, [{ name: 'length', mand: true }]).get('length')!;
    const v = o.value ?? '';
    const colon = v.indexOf(':');
    const part = (s: string, dflt: number): number => {
      if (s === '') return dflt;
      const n = parseUint(s, 65535);
      if (n < 0) throw new XtError(`length: bad value for option "--length" near "${s}", or out of range (0-65535).`);
      return n;
    };
    if (colon < 0) {
      const n = part(v === '' ? 'x' : v, 0);
      return { min: n, max: n, inv: o.inverted };
    }
    return { min: part(v.slice(0, colon), 0), max: part(v.slice(colon + 1), 65535), inv: o.inverted };
  },
  check(p) {
    const { min, max, inv } = p;
    return { match: (pkt: PacketContext) => (pkt.l3len >= min && pkt.l3len <= max) !== inv };
  },
  save(p) {
    return `${p.inv ? ' !' : ''} --length ${p.min === p.max ? p.min : `${p.min}:${p.max}`}`;
  },
  print(p) {
    return ` length ${p.inv ? '!' : ''}${p.min === p.max ? p.min : `${p.min}:${p.max}`}`;
  },
};

export default length;
