/**
 * `-m state --state LIST`: the packet's conntrack state, as iptables 1.8.9
 * (the state match implemented by libxt_conntrack) + xt_state.
 *
 * Also exports the state-list parser and printer conntrack's --ctstate uses.
 */
import { CtState, type PacketContext } from '../xt/packet.js';
import { x6Check } from './mark.js';
import { XtError, type MatchExtension } from '../xt/extension.js';

/** conntrack-only pseudo-states (no NAT here: they never match but parse and save). */
export const CT_SNAT = 1 << 8;
export const CT_DNAT = 1 << 9;

/** Names in the order iptables-save prints them. */
const STATE_NAMES: readonly (readonly [string, number])[] = [
  ['INVALID', CtState.INVALID],
  ['NEW', CtState.NEW],
  ['RELATED', CtState.RELATED],
  ['ESTABLISHED', CtState.ESTABLISHED],
  ['UNTRACKED', CtState.UNTRACKED],
  ['SNAT', CT_SNAT],
  ['DNAT', CT_DNAT],
];

/** Comma list → bit mask; `withNat` admits SNAT/DNAT (conntrack --ctstate). */
export function parseStateList(s: string, withNat: boolean, what: string): number {
  let m = 0;
  for (const w of s.split(',')) {
    const row = STATE_NAMES.find(([n, bit]) => n.toLowerCase() === w.toLowerCase() && (withNat || bit < CT_SNAT));
    if (!row) throw new XtError(`Bad ${what} "${w}"`);
    m |= row[1];
  }
  return m;
}

export function printStateList(m: number): string {
  return STATE_NAMES.filter(([, bit]) => (m & bit) !== 0).map(([n]) => n).join(',');
}

export interface StateParams {
  mask: number;
  inv: boolean;
}

const state: MatchExtension<StateParams> = {
  kind: 'match',
  name: 'state',
  families: [4, 6],
  // xt_state's checkentry takes conntrack: a state rule turns tracking and defragmentation on.
  needsConntrack: () => true,
  options: [{ name: 'state', arg: 'required', invertible: true }],
  parse(opts) {
    const o = x6Check('state', opts, [{ name: 'state', mand: true }]).get('state')!;
    return { mask: parseStateList(o.value ?? '', false, 'state'), inv: o.inverted };
  },
  check(p) {
    const { mask, inv } = p;
    return { match: (pkt: PacketContext) => ((pkt.ctState & mask) !== 0) !== inv };
  },
  save(p) {
    return `${p.inv ? ' !' : ''} --state ${printStateList(p.mask)}`;
  },
  print(p) {
    return `${p.inv ? ' !' : ''} state ${printStateList(p.mask)}`;
  },
};

export default state;
