/**
 * `-m connmark --mark value[/mask]`: the connection's mark (set by
 * CONNMARK), as libxt_connmark + xt_connmark. No tracked connection = no
 * match, whatever the `!`.
 */
import type { PacketContext } from '../router/packet.js';
import type { ConnEntry } from '../router/conntrack.js';
import { parseMarkOption, printConnmark, saveMarkOption, type MarkParams } from './mark.js';
import type { MatchExtension } from './types.js';

const connmark: MatchExtension<MarkParams> = {
  kind: 'match',
  name: 'connmark',
  revision: 1,
  families: [4, 6],
  needsConntrack: () => true,
  options: [{ name: 'mark', arg: 'required', invertible: true }],
  parse(opts) {
    return parseMarkOption('connmark', opts);
  },
  check(p) {
    const { mark: value, mask, inv } = p;
    return {
      match(pkt: PacketContext): boolean {
        const ct = pkt.ct as ConnEntry | null;
        if (ct === null) return false;
        return (((ct.mark & mask) >>> 0) === value) !== inv;
      },
    };
  },
  save: saveMarkOption,
  print: printConnmark,
};

export default connmark;
