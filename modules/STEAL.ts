/**
 * `-j STEAL` (IPv4 and IPv6), as xtables-addons' libxt_STEAL + xt_STEAL
 * (v1.14-v2.3, since removed upstream): like DROP, but the packet is consumed
 * (NF_STOLEN) rather than refused: no further rule or hook sees it, no ICMP
 * goes back, and a local sender is told nothing (where DROP in OUTPUT makes
 * the sender's system call fail with EPERM).
 *
 * Any table, any chain. Upstream also registers it for arptables and
 * ebtables; xtr has no arp or bridge tables, so only the IPv4 and IPv6
 * families exist here (docs/compat.md, STEAL).
 */
import { Verdict } from '../xt/packet.js';
import type { TargetExtension } from '../xt/extension.js';

const STOLEN = {
  target(): number {
    return Verdict.STOLEN;
  },
};

const STEAL: TargetExtension<null> = {
  kind: 'target',
  name: 'STEAL',
  families: [4, 6],
  options: [],
  swallowsUnknownOptions: true,
  parse() {
    return null;
  },
  check() {
    return STOLEN;
  },
  save() {
    return '';
  },
};

export default STEAL;
