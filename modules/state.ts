/**
 * `-m state --state LIST`: the packet's conntrack state, as iptables 1.8.9
 * (the state match implemented by libxt_conntrack) + xt_state.
 *
 * The state names (shared with conntrack's --ctstate) are in lib/ctstate.ts.
 */
import { CtState, type PacketContext } from '../xt/packet.js';
import { XtError, type MatchExtension } from '../xt/extension.js';
import { StateParams, parseStateList, printStateList } from './lib/ctstate.js';
import { x6Check } from './lib/options.js';

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
