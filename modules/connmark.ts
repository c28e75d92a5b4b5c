/**
 * `-m connmark --mark value[/mask]`: the connection's mark (set by
 * CONNMARK), as libxt_connmark + xt_connmark. No tracked connection = no
 * match, whatever the `!`.
 */
import type { PacketContext } from '../xt/packet.js';
import type { MatchExtension } from '../xt/extension.js';
import { MarkParams, parseMarkOption, printConnmark, saveMarkOption } from './lib/marks.js';

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
        const ct = pkt.ct;
        if (ct === null) return false;
        return (((ct.mark & mask) >>> 0) === value) !== inv;
      },
    };
  },
  save: saveMarkOption,
  print: printConnmark,
};

export default connmark;
