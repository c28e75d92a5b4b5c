/**
 * `-j MARK` (revision 2): --set-xmark v/m, --set-mark v[/m], --and-mark,
 * --or-mark, --xor-mark, all reduced to "mark = (mark & ~mask) ^ value" and
 * saved as --set-xmark, as libxt_MARK + xt_mark do.
 *
 * File name: TypeScript 7 refuses two files whose names differ only in
 * case, so this target cannot be `MARK.ts` next to the `mark` match.
 */
import type { PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type ParsedOption, type TargetExtension } from '../xt/extension.js';
import { XMARK_OPTIONS } from './lib/marks.js';
import { XmarkParams, printXmark, xmarkFrom } from './lib/marks.js';
import { hex, parseMarkMask, parseUintOption } from './lib/numbers.js';
import { x6Check } from './lib/options.js';

const MARK: TargetExtension<XmarkParams> = {
  kind: 'target',
  name: 'MARK',
  revision: 2,
  families: [4, 6],
  options: XMARK_OPTIONS.map((name) => ({ name, arg: 'required' as const })),
  parse(opts) {
    const given = x6Check('MARK', opts, XMARK_OPTIONS.map((name) => ({ name, excl: XMARK_OPTIONS.filter((n) => n !== name) })));
    const o = XMARK_OPTIONS.map((n) => given.get(n)).find((x) => x !== undefined);
    if (!o) throw new XtError('MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required');
    return xmarkFrom('MARK', o);
  },
  check(p) {
    const keep = ~p.mask >>> 0;
    const value = p.value;
    return {
      target(pkt: PacketContext): number {
        pkt.mark = ((pkt.mark & keep) ^ value) >>> 0;
        return XT_CONTINUE;
      },
    };
  },
  save(p) {
    return ` --set-xmark ${hex(p.value)}/${hex(p.mask)}`;
  },
  print(p) {
    return printXmark('MARK', p.value, p.mask);
  },
};

export default MARK;
