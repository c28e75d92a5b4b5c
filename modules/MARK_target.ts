/**
 * `-j MARK` (revision 2): --set-xmark v/m, --set-mark v[/m], --and-mark,
 * --or-mark, --xor-mark, all reduced to "mark = (mark & ~mask) ^ value" and
 * saved as --set-xmark, as libxt_MARK + xt_mark do.
 *
 * File name: TypeScript 7 refuses two files whose names differ only in
 * case, so this target cannot be `MARK.ts` next to the `mark` match.
 */
import type { PacketContext } from '../xt/packet.js';
import { hex, parseMarkMask, parseUintOption, x6Check } from './mark.js';
import { XT_CONTINUE, XtError, type ParsedOption, type TargetExtension } from '../xt/extension.js';

export interface XmarkParams {
  value: number;
  mask: number;
}

const OPS = ['set-xmark', 'set-mark', 'and-mark', 'or-mark', 'xor-mark'];

/** Turns one of the five mark operations into value/mask (shared with CONNMARK). */
export function xmarkFrom(ext: string, o: ParsedOption): XmarkParams {
  const v = o.value ?? '';
  if (o.name === 'set-xmark' || o.name === 'set-mark') {
    const [value, mask] = parseMarkMask(ext, o.name, v);
    return o.name === 'set-xmark' ? { value, mask } : { value, mask: (value | mask) >>> 0 };
  }
  const n = parseUintOption(ext, o.name, v);
  if (o.name === 'and-mark') return { value: 0, mask: ~n >>> 0 };
  if (o.name === 'or-mark') return { value: n, mask: n };
  return { value: n, mask: 0 };
}

/** The shortest of and/or/xor/set/xset that says what value/mask do (libxt_MARK's print). */
export function printXmark(label: string, value: number, mask: number): string {
  if (value === 0) return ` ${label} and ${hex(~mask >>> 0)}`;
  if (value === mask) return ` ${label} or ${hex(value)}`;
  if (mask === 0) return ` ${label} xor ${hex(value)}`;
  if (mask === 0xffffffff) return ` ${label} set ${hex(value)}`;
  return ` ${label} xset ${hex(value)}/${hex(mask)}`;
}

const MARK: TargetExtension<XmarkParams> = {
  kind: 'target',
  name: 'MARK',
  revision: 2,
  families: [4, 6],
  options: OPS.map((name) => ({ name, arg: 'required' as const })),
  parse(opts) {
    const given = x6Check('MARK', opts, OPS.map((name) => ({ name, excl: OPS.filter((n) => n !== name) })));
    const o = OPS.map((n) => given.get(n)).find((x) => x !== undefined);
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
