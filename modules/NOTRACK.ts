/**
 * `-t raw -j NOTRACK`: the packet bypasses connection tracking (its state
 * becomes UNTRACKED), as the kernel's NOTRACK alias of xt_CT.
 */
import type { PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, type TargetExtension } from '../xt/extension.js';

const NOTRACK: TargetExtension<null> = {
  kind: 'target',
  name: 'NOTRACK',
  families: [4, 6],
  tables: ['raw'],
  options: [],
  parse() {
    return null;
  },
  check() {
    return {
      target(pkt: PacketContext): number {
        // A packet that already has a connection (e.g. looped back) keeps it, as in the kernel.
        if (pkt.ct === null) pkt.notrack = true;
        return XT_CONTINUE;
      },
    };
  },
  save() {
    return '';
  },
  print() {
    return ' NOTRACK';
  },
};

export default NOTRACK;
