/**
 * `-m mark --mark value[/mask]`: the packet's nfmark, as libxt_mark +
 * xt_mark.
 *
 * Also home of the small option helpers the x6-style (libxtables
 * xt_option_entry) parsers of the other modules share: strtoul-style
 * unsigned integers, value/mask pairs, and the once/exclusion/mandatory
 * checks with libxtables' wording.
 */
import type { PacketContext } from '../xt/packet.js';
import { XtError, type MatchExtension, type ParsedOption } from '../xt/extension.js';

const C_SPACE = ' \t\n\v\f\r';
const UINTMAX = (1n << 64n) - 1n;

/**
 * C's strtoumax(s + from, &end, base) for base 0 or 10: leading white space,
 * an optional sign, then (base 0) `0x` hex, leading-`0` octal or decimal.
 * Returns the value (wrapped to 64 bits when negated, as C does), where the
 * number ended (`end === from` when there were no digits), and whether it
 * overflowed (ERANGE) or had a minus sign.
 */
export function strtoumax(s: string, from: number, base: 0 | 10): { value: bigint; end: number; overflow: boolean; minus: boolean } {
  let i = from;
  while (i < s.length && C_SPACE.includes(s[i])) i++;
  let minus = false;
  if (s[i] === '+' || s[i] === '-') minus = s[i++] === '-';
  let radix = 10;
  if (base === 0 && s[i] === '0') {
    if ((s[i + 1] === 'x' || s[i + 1] === 'X') && /[0-9a-fA-F]/.test(s[i + 2] ?? '')) {
      radix = 16;
      i += 2;
    } else radix = 8;
  }
  const start = i;
  let v = 0n;
  let overflow = false;
  for (; i < s.length; i++) {
    const d = parseInt(s[i], 16);
    if (Number.isNaN(d) || d >= radix) break;
    v = v * BigInt(radix) + BigInt(d);
    if (v > UINTMAX) overflow = true;
  }
  if (i === start) return { value: 0n, end: from, overflow: false, minus: false };
  if (overflow) v = UINTMAX;
  else if (minus) v = (-v) & UINTMAX;
  return { value: v, end: i, overflow, minus };
}

/**
 * libxtables' xtables_strtoul with an end pointer: the number at `from` if
 * it is 0..max (no minus sign, no overflow) and where it ended, else null.
 */
export function xtStrtoul(s: string, from: number, max: number): { value: number; end: number } | null {
  const r = strtoumax(s, from, 0);
  if (r.end === from || r.minus || r.overflow || r.value > BigInt(max)) return null;
  return { value: Number(r.value), end: r.end };
}

/** xtables_strtoui over the whole string (base 0: decimal, 0x hex, leading-0 octal; white space and `+` first allowed); -1 if bad or > max. */
export function parseUint(s: string, max = 0xffffffff): number {
  const r = xtStrtoul(s, 0, max);
  return r !== null && r.end === s.length ? r.value : -1;
}

/**
 * libxtables' XTTYPE_UINT*RC parser (xtopt_parse_mint): up to `maxiter`
 * numbers separated by `:`, an empty one meaning 0 (first) or `max`
 * (second), with its messages. Returns the numbers given (1 or more).
 */
export function parseUintRange(ext: string, opt: string, s: string, max: number, maxiter = 2): number[] {
  const vals: number[] = [];
  for (let at = 0; ; ) {
    if (vals.length === maxiter) throw new XtError(`${ext}: Too many components for option "--${opt}" (max: ${maxiter})\n`);
    let end = at;
    if (at === s.length || s[at] === ':') vals.push(vals.length === 1 ? max : 0);
    else {
      const r = xtStrtoul(s, at, max);
      if (r === null) throw new XtError(`${ext}: bad value for option "--${opt}" near "${s.slice(at)}", or out of range (0-${max}).\n`);
      end = r.end;
      if (end < s.length && s[end] !== ':') throw new XtError(`${ext}: Argument to "--${opt}" has unexpected characters near "${s.slice(end)}".\n`);
      vals.push(r.value);
    }
    if (end === s.length) return vals;
    at = end + 1;
  }
}

/**
 * libxtables' XTTYPE_MARKMASK32 (`value[/mask]`, mask default all ones),
 * with its messages for option `--opt` of extension `ext`.
 */
export function parseMarkMask(ext: string, opt: string, s: string): [number, number] {
  const bad = () => new XtError(`${ext}: bad integer value for option "--${opt}", or out of range.\n`);
  const v = xtStrtoul(s, 0, 0xffffffff);
  if (v === null) throw bad();
  let mask = 0xffffffff;
  let end = v.end;
  if (s[end] === '/') {
    const m = xtStrtoul(s, end + 1, 0xffffffff);
    if (m === null) throw bad();
    mask = m.value;
    end = m.end;
  }
  if (end !== s.length) throw new XtError(`${ext}: trailing garbage after value for option "--${opt}".\n`);
  return [v.value, mask];
}

/** libxtables' XTTYPE_UINT32 (and narrower with `max`), with its message. */
export function parseUintOption(ext: string, opt: string, s: string, max = 0xffffffff, min = 0): number {
  const n = parseUint(s, max);
  if (n < min) throw new XtError(`${ext}: bad value for option "--${opt}", or out of range (${min}-${max}).\n`);
  return n;
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
    if (given.has(o.name) && !row?.multi) throw new XtError(`${ext}: option "--${o.name}" can only be used once.\n`);
    given.set(o.name, o);
  }
  for (const row of table) {
    if (row.mand && !given.has(row.name)) throw new XtError(`${ext}: option "--${row.name}" must be specified\n`);
    if (!given.has(row.name)) continue;
    for (const other of table) {
      if (other === row) continue;
      if (row.excl?.includes(other.name) && given.has(other.name)) {
        throw new XtError(`${ext}: option "--${row.name}" cannot be used together with "--${other.name}".\n`);
      }
      if (row.also?.includes(other.name) && !given.has(other.name)) {
        throw new XtError(`${ext}: option "--${row.name}" also requires "--${other.name}".\n`);
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
  const [mark, mask] = parseMarkMask(ext, 'mark', o.value ?? '');
  return { mark, mask, inv: o.inverted };
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
