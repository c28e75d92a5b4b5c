/**
 * `-m hl --hl-eq/--hl-lt/--hl-gt N` (IPv6 hop limit), as libip6t_hl +
 * ip6t_hl; `! --hl-eq` is "not equal".
 */
import type { MatchExtension } from '../xt/extension.js';
import { TtlParams, describeTtl, parseTtlLike, printTtlLike, saveTtlLike, ttlMatcher } from './lib/ttl-like.js';

const hl: MatchExtension<TtlParams> = {
  kind: 'match',
  name: 'hl',
  families: [6],
  options: [
    { name: 'hl-eq', arg: 'required', invertible: true },
    { name: 'hl-lt', arg: 'required' },
    { name: 'hl-gt', arg: 'required' },
  ],
  parse(opts) {
    return parseTtlLike('hl', 'hl', "HL match: You must specify one of `--hl-eq', `--hl-lt', `--hl-gt'", opts);
  },
  check(p) {
    return { match: ttlMatcher(p) };
  },
  save(p) {
    return saveTtlLike('hl', p);
  },
  print(p) {
    return printTtlLike('HL', p);
  },
  describe: describeTtl,
};

export default hl;
