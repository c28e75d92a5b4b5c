/**
 * libxtables' x6 option checks (xt_option_entry): once-only, exclusions,
 * also-requires and mandatory options, with libxtables' error words.
 */
import { type ParsedOption, XtError } from '../../xt/extension.js';

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

