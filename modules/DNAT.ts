/**
 * `-j DNAT --to-destination [addr[-addr]][:port[-port[/base]]] [--random]
 * [--persistent]` (IPv4 and IPv6; IPv6 with ports as `[addr]:port`), as
 * libxt_NAT revision 2 + xt_nat: binds the destination of a flow's first
 * packet in nat PREROUTING/OUTPUT (a port forward); conntrack rewrites every
 * later packet of the flow, both directions (router/conntrack/nat-core.ts).
 * `/base` maps the port range by offset (NF_NAT_RANGE_PROTO_OFFSET).
 */
import { Hook, Verdict } from '../xt/packet.js';
import type { TargetExtension } from '../xt/extension.js';
import { NatRangeFlag, NatSide } from '../xt/nat.js';
import { x6Check } from './lib/options.js';
import { once, emptyRangeParams, flagWords, parseTo, portsAllowed, rangeText, toNatRange, type NatRangeParams } from './lib/nat.js';

export interface DnatParams extends NatRangeParams {
  family: 4 | 6;
}

const DNAT: TargetExtension<DnatParams> = {
  kind: 'target',
  name: 'DNAT',
  families: [4, 6],
  tables: ['nat'],
  hooks: [Hook.PREROUTING, Hook.OUTPUT],
  options: [
    { name: 'to-destination', arg: 'required' },
    { name: 'random', arg: 'none' },
    { name: 'persistent', arg: 'none' },
  ],
  needsConntrack: () => true,
  parse(opts, rule) {
    const p: DnatParams = { ...emptyRangeParams(), family: rule.family };
    const seen = new Set<string>();
    for (const o of opts) {
      once('DNAT', seen, o.name);
      if (o.name === 'to-destination') parseTo(o.value ?? '', portsAllowed(rule), rule.family, p);
      else if (o.name === 'random') p.flags |= NatRangeFlag.PROTO_RANDOM;
      else if (o.name === 'persistent') p.flags |= NatRangeFlag.PERSISTENT;
    }
    x6Check('DNAT', opts, [{ name: 'to-destination', mand: true }, { name: 'random' }, { name: 'persistent' }]);
    return p;
  },
  check(p, env) {
    const nat = env.services.nat;
    const range = toNatRange(p);
    return {
      target(pkt) {
        return nat === undefined ? Verdict.DROP : nat.setup(pkt, NatSide.DST, range);
      },
    };
  },
  save: (p) => ` --to-destination ${rangeText(p, p.family, true)}${flagWords(p.flags, true)}`,
  print: (p) => ` to:${rangeText(p, p.family, true)}${flagWords(p.flags, false)}`,
};
export default DNAT;
