/**
 * `-m mark --mark value[/mask]`: the packet's nfmark, as libxt_mark +
 * xt_mark.
 *
 * The option helpers the other modules share live in lib/ (numbers.ts,
 * options.ts, marks.ts), a folder the registry does not scan.
 */
import type { PacketContext } from '../xt/packet.js';
import { XtError, type MatchExtension, type ParsedOption } from '../xt/extension.js';
import { MarkParams, markText, parseMarkOption, saveMarkOption } from './lib/marks.js';

const mark: MatchExtension<MarkParams> = {
  kind: 'match',
  name: 'mark',
  revision: 1,
  families: [4, 6],
  options: [{ name: 'mark', arg: 'required', invertible: true }],
  parse(opts) {
    return parseMarkOption('mark', opts);
  },
  check(p) {
    const { mark: value, mask, inv } = p;
    return { match: (pkt: PacketContext) => (((pkt.mark & mask) >>> 0) === value) !== inv };
  },
  save: saveMarkOption,
  print(p) {
    return ` mark match${p.inv ? ' !' : ''} ${markText(p)}`;
  },
  describe(p) {
    // Only an exact compare of the whole mark is a plain range.
    return p.mask === 0xffffffff ? [{ field: 'mark', min: p.mark, max: p.mark, inverted: p.inv }] : [];
  },
};

export default mark;
