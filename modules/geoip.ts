/**
 * `-m geoip`: match the source or destination address against per-country
 * range tables built by xt_geoip_build (xtables-addons v3 format, revision 2:
 * up to 31 codes per rule). Tables live in geoip-db's GeoDatabase: one copy
 * per (family, country), and a reload swaps every table for all rules at once.
 */
import { attachSets, databaseDir, rangeSetMatch, reloadDatabases } from './lib/geoip-match.js';
import { XtError, type MatchExtension, type ParsedOption } from '../xt/extension.js';

export const GEOIP_DEFAULT_DIR = '/usr/share/xt_geoip';
/** Codes per rule since xtables-addons 3.24 (15 before). */
export const GEOIP_MAX_CODES = 31;

export interface GeoipParams {
  /** Upper-case codes, duplicates removed, in the order given. */
  readonly codes: readonly string[];
  /** --src-cc (true) or --dst-cc (false). */
  readonly source: boolean;
  readonly invert: boolean;
}

function parseCodes(value: string): string[] {
  const tokens = value.split(',');
  const codes: string[] = [];
  tokens.forEach((tok, i) => {
    if (i >= GEOIP_MAX_CODES) throw new XtError('geoip: too many countries specified');
    if (!/^[A-Za-z0-9]{2}$/.test(tok)) throw new XtError(`geoip: invalid country code '${tok}'`);
    const cc = tok.toUpperCase();
    if (!codes.includes(cc)) codes.push(cc);
  });
  return codes;
}

function save(p: GeoipParams): string {
  return `${p.invert ? ' !' : ''} --${p.source ? 'source-country' : 'destination-country'} ${p.codes.join(',')} `;
}

const geoip: MatchExtension<GeoipParams> = {
  kind: 'match',
  name: 'geoip',
  revision: 2,
  families: [4, 6],
  options: [
    { name: 'src-cc', arg: 'required', invertible: true, aliases: ['source-country'] },
    { name: 'dst-cc', arg: 'required', invertible: true, aliases: ['destination-country'] },
  ],
  parse(opts: readonly ParsedOption[]): GeoipParams {
    if (opts.length === 0) throw new XtError('geoip: missing arguments');
    if (opts.length > 1) {
      throw new XtError('geoip: Only exactly one of --source-country or --destination-country must be specified!');
    }
    const o = opts[0]!;
    return { codes: parseCodes(o.value ?? ''), source: o.name === 'src-cc', invert: o.inverted };
  },
  check(p, env) {
    const dir = databaseDir(env, 'geoip', GEOIP_DEFAULT_DIR);
    const sets = attachSets(env, 'geoip', dir, p.codes, env.rule.family);
    return { match: rangeSetMatch(env.rule.family, p.source, p.invert, sets), destroy: sets.release };
  },
  save,
  print: (p) => ` -m geoip${save(p)}`,
  // SIGHUP / `xtr reload-databases`: the directories this extension's rules use, each swapped at once.
  reload: (state) => reloadDatabases('geoip', state),
};

export default geoip;
