/**
 * ICMP and ICMPv6 type names and the --icmp-type/--icmpv6-type option parser
 * shared by the icmp and icmp6 matches (libipt_icmp / libip6t_icmp6 tables).
 */
import { type FieldRange, type ParsedOption, XtError } from '../../xt/extension.js';

/** [name, type, code min, code max]; aliases are separate rows. */
export type IcmpName = readonly [string, number, number, number];

export const ANY = 0xff;

export const ICMP_NAMES: readonly IcmpName[] = [
  ['any', ANY, 0, 0xff],
  ['echo-reply', 0, 0, 0xff],
  ['pong', 0, 0, 0xff],
  ['destination-unreachable', 3, 0, 0xff],
  ['network-unreachable', 3, 0, 0],
  ['host-unreachable', 3, 1, 1],
  ['protocol-unreachable', 3, 2, 2],
  ['port-unreachable', 3, 3, 3],
  ['fragmentation-needed', 3, 4, 4],
  ['source-route-failed', 3, 5, 5],
  ['network-unknown', 3, 6, 6],
  ['host-unknown', 3, 7, 7],
  ['network-prohibited', 3, 9, 9],
  ['host-prohibited', 3, 10, 10],
  ['TOS-network-unreachable', 3, 11, 11],
  ['TOS-host-unreachable', 3, 12, 12],
  ['communication-prohibited', 3, 13, 13],
  ['host-precedence-violation', 3, 14, 14],
  ['precedence-cutoff', 3, 15, 15],
  ['source-quench', 4, 0, 0xff],
  ['redirect', 5, 0, 0xff],
  ['network-redirect', 5, 0, 0],
  ['host-redirect', 5, 1, 1],
  ['TOS-network-redirect', 5, 2, 2],
  ['TOS-host-redirect', 5, 3, 3],
  ['echo-request', 8, 0, 0xff],
  ['ping', 8, 0, 0xff],
  ['router-advertisement', 9, 0, 0xff],
  ['router-solicitation', 10, 0, 0xff],
  ['time-exceeded', 11, 0, 0xff],
  ['ttl-exceeded', 11, 0, 0xff],
  ['ttl-zero-during-transit', 11, 0, 0],
  ['ttl-zero-during-reassembly', 11, 1, 1],
  ['parameter-problem', 12, 0, 0xff],
  ['ip-header-bad', 12, 0, 0],
  ['required-option-missing', 12, 1, 1],
  ['timestamp-request', 13, 0, 0xff],
  ['timestamp-reply', 14, 0, 0xff],
  ['address-mask-request', 17, 0, 0xff],
  ['address-mask-reply', 18, 0, 0xff],
];

/** `name`, `type` or `type/code` → [type, codeMin, codeMax]; `what` is "ICMP" or "ICMPv6". */
export function parseIcmpType(s: string, table: readonly IcmpName[], what: string): [number, number, number] {
  let found: IcmpName | null = null;
  for (const row of table) {
    if (s.length > 0 && row[0].toLowerCase().startsWith(s.toLowerCase())) {
      if (row[0].length === s.length) return [row[1], row[2], row[3]];
      if (found && (found[1] !== row[1] || found[2] !== row[2])) {
        throw new XtError(`Ambiguous ${what} type \`${s}': \`${found[0]}' or \`${row[0]}'?`);
      }
      found ??= row;
    }
  }
  if (found) return [found[1], found[2], found[3]];
  const m = /^([0-9]+)(?:\/([0-9]+))?$/.exec(s);
  if (!m || Number(m[1]) > 255) throw new XtError(`Unknown ${what} type \`${s}'`);
  if (m[2] === undefined) return [Number(m[1]), 0, 0xff];
  if (Number(m[2]) > 255) throw new XtError(`Unknown ${what} code \`${s}'`);
  return [Number(m[1]), Number(m[2]), Number(m[2])];
}

export interface IcmpParams {
  type: number;
  codeMin: number;
  codeMax: number;
  inv: boolean;
}

export function saveIcmpType(opt: string, p: IcmpParams, anyName: boolean): string {
  let v: string;
  if (anyName && p.type === ANY) v = 'any';
  else if (p.codeMin === 0 && p.codeMax === 0xff) v = `${p.type}`;
  else if (p.codeMin === p.codeMax) v = `${p.type}/${p.codeMin}`;
  else v = `${p.type}/${p.codeMin}-${p.codeMax}`;
  return `${p.inv ? ' !' : ''} --${opt} ${v}`;
}

export function parseOne(opts: readonly ParsedOption[], ext: string, opt: string, table: readonly IcmpName[], what: string): IcmpParams {
  let p: IcmpParams | null = null;
  for (const o of opts) {
    if (o.name !== opt) continue;
    if (p) throw new XtError(`${ext}: option "--${opt}" can only be used once.\n`);
    const [type, codeMin, codeMax] = parseIcmpType(o.value ?? '', table, what);
    p = { type, codeMin, codeMax, inv: o.inverted };
  }
  // The type option is XTOPT_MAND in libxt_icmp/libip6t_icmp6 (an explicit `-m icmp` needs it).
  if (p === null) throw new XtError(`${ext}: option "--${opt}" must be specified\n`);
  return p;
}

export { parseOne as parseIcmpOption };

/** print_icmptype: the table's name unless numeric (or none fits), else "type N [code C|codes A-B]". */
export function printIcmpType(label: string, p: IcmpParams, table: readonly IcmpName[], numeric: boolean): string {
  if (!numeric) {
    const row = table.find((r) => r[1] === p.type && r[2] === p.codeMin && r[3] === p.codeMax);
    if (row) return ` ${label} ${p.inv ? '!' : ''}${row[0]}`;
  }
  let s = ` ${label}${p.inv ? ' !' : ''}type ${p.type}`;
  if (p.codeMin === p.codeMax) s += ` code ${p.codeMin}`;
  else if (p.codeMin !== 0 || p.codeMax !== 0xff) s += ` codes ${p.codeMin}-${p.codeMax}`;
  return s;
}

/** Classifier hints: type (and code range) when they can be stated as plain ranges. */
export function describeIcmp(p: IcmpParams, anyType: number): FieldRange[] {
  if (p.type === anyType) return [];
  const fullCodes = p.codeMin === 0 && p.codeMax === 0xff;
  if (p.inv) return fullCodes ? [{ field: 'icmpType', min: p.type, max: p.type, inverted: true }] : [];
  const r: FieldRange[] = [{ field: 'icmpType', min: p.type, max: p.type, inverted: false }];
  if (!fullCodes) r.push({ field: 'icmpCode', min: p.codeMin, max: p.codeMax, inverted: false });
  return r;
}

