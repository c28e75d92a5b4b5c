/**
 * `-m ttl --ttl-eq/--ttl-lt/--ttl-gt N` (IPv4), as libxt_ttl + xt_ttl;
 * `! --ttl-eq` is "not equal". The engine it shares with `hl` is in lib/ttl-like.ts.
 */
import type { Family, PacketContext } from '../xt/packet.js';
import { XtError, type FieldRange, type MatchExtension, type ParsedOption } from '../xt/extension.js';
import { TtlParams, describeTtl, parseTtlLike, printTtlLike, saveTtlLike, ttlMatcher } from './lib/ttl-like.js';
import { x6Check } from './lib/options.js';

const FAMILY: readonly Family[] = [4];

const ttl: MatchExtension<TtlParams> = {
  kind: 'match',
  name: 'ttl',
  families: FAMILY,
  options: [
    { name: 'ttl-eq', arg: 'required', invertible: true },
    { name: 'ttl-lt', arg: 'required' },
    { name: 'ttl-gt', arg: 'required' },
  ],
  parse(opts) {
    return parseTtlLike('ttl', 'ttl', "TTL match: You must specify one of `--ttl-eq', `--ttl-lt', `--ttl-gt", opts);
  },
  check(p) {
    return { match: ttlMatcher(p) };
  },
  save(p) {
    return saveTtlLike('ttl', p);
  },
  print(p) {
    return printTtlLike('TTL', p);
  },
  describe: describeTtl,
};

export default ttl;
