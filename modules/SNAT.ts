/**
 * `-j SNAT --to-source [addr[-addr]][:port[-port]] [--random] [--random-fully]
 * [--persistent]` (IPv4 and IPv6), as libxt_NAT + xt_nat: binds the source
 * of a flow's first packet in nat POSTROUTING/INPUT; conntrack rewrites
 * every later packet of the flow, both directions (router/conntrack/nat-core.ts).
 * Parse errors and save/print text as iptables 1.8.9 (a port base `/N` is
 * accepted and kept as `/0`, as iptables-legacy shows it).
 */
import { Hook, Verdict } from '../xt/packet.js';
import type { TargetExtension } from '../xt/extension.js';
import { NatRangeFlag, NatSide } from '../xt/nat.js';
import { x6Check } from './lib/options.js';
import { once, emptyRangeParams, flagWords, parseTo, portsAllowed, rangeText, toNatRange, type NatRangeParams } from './lib/nat.js';

export interface SnatParams extends NatRangeParams {
  family: 4 | 6;
}

const SNAT: TargetExtension<SnatParams> = {
  kind: 'target',
  name: 'SNAT',
  families: [4, 6],
  tables: ['nat'],
  hooks: [Hook.POSTROUTING, Hook.INPUT],
  options: [
    { name: 'to-source', arg: 'required' },
    { name: 'random', arg: 'none' },
    { name: 'random-fully', arg: 'none' },
    { name: 'persistent', arg: 'none' },
  ],
  needsConntrack: () => true,
  parse(opts, rule) {
    const p: SnatParams = { ...emptyRangeParams(), family: rule.family };
    const seen = new Set<string>();
    for (const o of opts) {
      once('SNAT', seen, o.name);
      if (o.name === 'to-source') parseTo(o.value ?? '', portsAllowed(rule), rule.family, p);
      else if (o.name === 'random') p.flags |= NatRangeFlag.PROTO_RANDOM;
      else if (o.name === 'random-fully') p.flags |= NatRangeFlag.PROTO_RANDOM_FULLY;
      else if (o.name === 'persistent') p.flags |= NatRangeFlag.PERSISTENT;
    }
    x6Check('SNAT', opts, [{ name: 'to-source', mand: true }, { name: 'random' }, { name: 'random-fully' }, { name: 'persistent' }]);
    return p;
  },
  check(p, env) {
    const nat = env.services.nat;
    const range = toNatRange(p);
    return {
      target(pkt) {
        return nat === undefined ? Verdict.DROP : nat.setup(pkt, NatSide.SRC, range);
      },
    };
  },
  save: (p) => ` --to-source ${rangeText(p, p.family, false)}${flagWords(p.flags, true)}`,
  print: (p) => ` to:${rangeText(p, p.family, false)}${flagWords(p.flags, false)}`,
};
export default SNAT;
