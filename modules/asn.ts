/**
 * `-m asn`: match the source or destination address against the ranges of
 * one or more Autonomous System numbers, from per-ASN tables built by
 * xt_asn_build (same file format as geoip). Up to 15 numbers per rule.
 *
 * IPv6 compares 128-bit big-endian addresses, the intended semantics; the
 * upstream userspace garbles IPv6 tables on little-endian hosts (see
 * docs/compat.md).
 */
import { attachSets, databaseDir, rangeSetMatch, reloadDatabases } from './lib/geoip-match.js';
import { XtError, type MatchExtension, type ParsedOption } from '../xt/extension.js';

export const ASN_DEFAULT_DIR = '/usr/share/xt_asn';
export const ASN_MAX = 15;

export interface AsnParams {
  /** AS numbers (32-bit), 0 and duplicates removed, in the order given. */
  readonly numbers: readonly number[];
  /** The tokens as typed for those numbers: the database file names. */
  readonly files: readonly string[];
  readonly source: boolean;
  readonly invert: boolean;
}

/** strtoul-like: decimal digits, saturating at 2^64-1, then truncated to 32 bits as upstream stores it. */
function toAsn(tok: string): number {
  let v = BigInt(tok);
  const max = (1n << 64n) - 1n;
  if (v > max) v = max;
  return Number(v & 0xffffffffn);
}

function parseNumbers(value: string): { numbers: number[]; files: string[] } {
  const tokens = value.split(',');
  const numbers: number[] = [];
  const files: string[] = [];
  tokens.forEach((tok, i) => {
    if (i >= ASN_MAX) throw new XtError('asn: too many ASNs specified');
    if (tok === '') throw new XtError('asn: missing number code');
    if (!/^[0-9]+$/.test(tok)) throw new XtError(`asn:  invalid number code '${tok}'`);
    const n = toAsn(tok);
    if (n === 0 || numbers.includes(n)) return;
    numbers.push(n);
    files.push(tok);
  });
  if (numbers.length === 0) throw new XtError("asn: don't know what happened");
  return { numbers, files };
}

function save(p: AsnParams): string {
  return `${p.invert ? ' !' : ''} --${p.source ? 'src-asn' : 'dst-asn'} ${p.numbers.join(',')}`;
}

const asn: MatchExtension<AsnParams> = {
  kind: 'match',
  name: 'asn',
  revision: 1,
  families: [4, 6],
  options: [
    { name: 'src-asn', arg: 'required', invertible: true, aliases: ['source-number'] },
    { name: 'dst-asn', arg: 'required', invertible: true, aliases: ['destination-number'] },
  ],
  parse(opts: readonly ParsedOption[]): AsnParams {
    if (opts.length === 0) throw new XtError('asn: missing arguments');
    if (opts.length > 1) throw new XtError('asn: Only exactly one of --src-asn or --dst-asn must be specified!');
    const o = opts[0]!;
    return { ...parseNumbers(o.value ?? ''), source: o.name === 'src-asn', invert: o.inverted };
  },
  check(p, env) {
    const dir = databaseDir(env, 'asn', ASN_DEFAULT_DIR);
    const sets = attachSets(env, 'asn', dir, p.files, env.rule.family);
    return { match: rangeSetMatch(env.rule.family, p.source, p.invert, sets), destroy: sets.release };
  },
  save,
  print: (p) => ` -m asn${save(p)}`,
  // SIGHUP / `xtr reload-databases`: the directories this extension's rules use, each swapped at once.
  reload: (state) => reloadDatabases('asn', state),
};

export default asn;
