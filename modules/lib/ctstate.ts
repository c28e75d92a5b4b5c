/**
 * Connection-state names for -m state and -m conntrack --ctstate (libxt_state/libxt_conntrack words).
 */
import { CtState } from '../../xt/packet.js';
import { XtError } from '../../xt/extension.js';

/** conntrack-only pseudo-states (no NAT here: they never match but parse and save). */
export const CT_SNAT = 1 << 8;
export const CT_DNAT = 1 << 9;

/** Names in the order iptables-save prints them. */
export const STATE_NAMES: readonly (readonly [string, number])[] = [
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

