/**
 * `-m mark --mark value[/mask]`: the packet's nfmark, as libxt_mark +
 * xt_mark.
 *
 * Also home of the small option helpers the x6-style (libxtables
 * xt_option_entry) parsers of the other modules share: strtoul-style
 * unsigned integers, value/mask pairs, and the once/exclusion/mandatory
 * checks with libxtables' wording.
 */
import type { PacketContext } from '../router/packet.js';
import { XtError, type MatchExtension, type ParsedOption } from './types.js';

/** strtoul(base 0) over the whole string: decimal, 0x hex, leading-0 octal; -1 if bad or > max. */
export function parseUint(s: string, max = 0xffffffff): number {
  let v: number;
  if (/^0[xX][0-9a-fA-F]+$/.test(s)) v = parseInt(s.slice(2), 16);
  else if (/^0[0-7]*$/.test(s)) v = parseInt(s, 8);
  else if (/^[1-9][0-9]*$/.test(s)) v = Number(s);
  else return -1;
  return v <= max ? v : -1;
}

/** `value[/mask]` (mask default all ones); null if malformed. */
export function parseValueMask(s: string): [number, number] | null {
  const slash = s.indexOf('/');
  const v = parseUint(slash < 0 ? s : s.slice(0, slash));
  const m = slash < 0 ? 0xffffffff : parseUint(s.slice(slash + 1));
  if (v < 0 || m < 0) return null;
  return [v, m];
}

export function hex(v: number): string {
  return `0x${(v >>> 0).toString(16)}`;
}

/** One row of an x6 option table: exclusions, dependencies and "must be given". */
export interface X6Rule {
  readonly name: string;
  readonly excl?: readonly string[];
  readonly also?: readonly string[];
  readonly mand?: boolean;
  /** May be given more than once (XTOPT_MULTI). */
  readonly multi?: boolean;
}

/**
 * libxtables' generic checks, in its order: "can only be used once" while
 * parsing, then for each table row in order "must be specified", "cannot
 * be used together with" and "also requires". Returns the options by name.
 */
export function x6Check(ext: string, opts: readonly ParsedOption[], table: readonly X6Rule[]): Map<string, ParsedOption> {
  const given = new Map<string, ParsedOption>();
  for (const o of opts) {
    const row = table.find((r) => r.name === o.name);
    if (given.has(o.name) && !row?.multi) throw new XtError(`${ext}: option "--${o.name}" can only be used once.`);
    given.set(o.name, o);
  }
  for (const row of table) {
    if (row.mand && !given.has(row.name)) throw new XtError(`${ext}: option "--${row.name}" must be specified`);
    if (!given.has(row.name)) continue;
    for (const other of table) {
      if (other === row) continue;
      if (row.excl?.includes(other.name) && given.has(other.name)) {
        throw new XtError(`${ext}: option "--${row.name}" cannot be used together with "--${other.name}".`);
      }
      if (row.also?.includes(other.name) && !given.has(other.name)) {
        throw new XtError(`${ext}: option "--${row.name}" also requires "--${other.name}".`);
      }
    }
  }
  return given;
}

export interface MarkParams {
  mark: number;
  mask: number;
  inv: boolean;
}

export function parseMarkOption(ext: string, opts: readonly ParsedOption[]): MarkParams {
  const given = x6Check(ext, opts, [{ name: 'mark', mand: true }]);
  const o = given.get('mark')!;
  const vm = parseValueMask(o.value ?? '');
  if (!vm) throw new XtError(`${ext}: bad integer value for option "--mark", or out of range.`);
  return { mark: vm[0], mask: vm[1], inv: o.inverted };
}

function markText(p: MarkParams): string {
  return `${hex(p.mark)}${p.mask === 0xffffffff ? '' : `/${hex(p.mask)}`}`;
}

export function saveMarkOption(p: MarkParams): string {
  return `${p.inv ? ' !' : ''} --mark ${markText(p)}`;
}

/** libxt_connmark's print: "connmark match " then "!" or a space, then the mark. */
export function printConnmark(p: MarkParams): string {
  return ` connmark match ${p.inv ? '!' : ' '}${markText(p)}`;
}

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
