/**
 * Mark and value/mask helpers shared by mark/connmark (match) and MARK/CONNMARK
 * (target), in libxt_mark / libxt_MARK words.
 */
import { hex, parseMarkMask, parseUintOption } from './numbers.js';
import { type ParsedOption } from '../../xt/extension.js';
import { x6Check } from './options.js';

export interface MarkParams {
  mark: number;
  mask: number;
  inv: boolean;
}

export function parseMarkOption(ext: string, opts: readonly ParsedOption[]): MarkParams {
  const given = x6Check(ext, opts, [{ name: 'mark', mand: true }]);
  const o = given.get('mark')!;
  const [mark, mask] = parseMarkMask(ext, 'mark', o.value ?? '');
  return { mark, mask, inv: o.inverted };
}

export function markText(p: MarkParams): string {
  return `${hex(p.mark)}${p.mask === 0xffffffff ? '' : `/${hex(p.mask)}`}`;
}

export function saveMarkOption(p: MarkParams): string {
  return `${p.inv ? ' !' : ''} --mark ${markText(p)}`;
}

/** libxt_connmark's print: "connmark match " then "!" or a space, then the mark. */
export function printConnmark(p: MarkParams): string {
  return ` connmark match ${p.inv ? '!' : ' '}${markText(p)}`;
}

export interface XmarkParams {
  value: number;
  mask: number;
}

export const XMARK_OPTIONS = ['set-xmark', 'set-mark', 'and-mark', 'or-mark', 'xor-mark'];

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

