/**
 * libxtables' xtables_param_act checks as the old-style (non-x6) parsers of
 * xtables-addons call them (IPMARK, DHCPMAC, LOGMARK, dhcpmac): each option
 * in command-line order is refused if seen before, then if `!` preceded it,
 * then its value is read. The label is whatever the extension passes, so the
 * words differ between extensions ("addr" without dashes, "--shift" with).
 *
 * Options using these checks are declared `invertible` in the record so the
 * rule parser hands `!` through and the extension's own words report it.
 */
import { XtError, type ParsedOption } from '../../xt/extension.js';

/** XTF_ONLY_ONCE */
export function onlyOnceError(ext: string, label: string): XtError {
  return new XtError(`${ext}: "${label}" option may only be specified once`);
}

/** XTF_NO_INVERT */
export function noInvertError(ext: string, label: string): XtError {
  return new XtError(`${ext}: "${label}" option cannot be inverted`);
}

/** XTF_BAD_VALUE */
export function badValueError(ext: string, label: string, value: string): XtError {
  return new XtError(`${ext}: Bad value for "${label}" option: "${value}"`);
}

/**
 * Walks `opts` in order with the once / no-invert checks under each option's
 * label, calling `read(name, value)` for its value. Returns the names seen.
 */
export function paramAct(
  ext: string,
  opts: readonly ParsedOption[],
  labels: Readonly<Record<string, string>>,
  read: (name: string, value: string) => void,
): Set<string> {
  const seen = new Set<string>();
  for (const o of opts) {
    const label = labels[o.name] ?? `--${o.name}`;
    if (seen.has(o.name)) throw onlyOnceError(ext, label);
    if (o.inverted) throw noInvertError(ext, label);
    seen.add(o.name);
    read(o.name, o.value ?? '');
  }
  return seen;
}
