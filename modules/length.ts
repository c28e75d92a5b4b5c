/**
 * `-m length --length min[:max]` (mainline xt_length): the L3 length -
 * IPv4 total length, or 40 + IPv6 payload length. A reversed range is
 * accepted, as iptables does, and never matches.
 */
import type { PacketContext } from '../xt/packet.js';
import type { MatchExtension } from '../xt/extension.js';
import { parseUintRange } from './lib/numbers.js';
import { x6Check } from './lib/options.js';

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
    const [min, max] = parseUintRange('length', 'length', o.value ?? '', 65535);
    return { min, max: max ?? min, inv: o.inverted };
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
