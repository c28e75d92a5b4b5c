/**
 * Number parsing as libxtables does it: strtoul-style unsigned integers (base 0,
 * white space, sign), ranges (xtopt_parse_mint) and value/mask pairs, with its error words.
 */
import { XtError } from '../../xt/extension.js';

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
