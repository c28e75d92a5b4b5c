/**
 * `-m ttl --ttl-eq/--ttl-lt/--ttl-gt N` (IPv4), as libxt_ttl + xt_ttl;
 * `! --ttl-eq` is "not equal". Also exports the shared engine of `hl`.
 */
import type { Family, PacketContext } from '../xt/packet.js';
import { x6Check } from './mark.js';
import { XtError, type FieldRange, type MatchExtension, type ParsedOption } from '../xt/extension.js';

export const enum TtlMode {
  EQ = 0,
  NE = 1,
  LT = 2,
  GT = 3,
}

export interface TtlParams {
  mode: TtlMode;
  value: number;
}

/** Parses the eq/lt/gt trio for `ttl` (prefix "ttl") or `hl` (prefix "hl"). */
export function parseTtlLike(ext: string, prefix: string, missing: string, opts: readonly ParsedOption[]): TtlParams {
  const eq = `${prefix}-eq`;
  const lt = `${prefix}-lt`;
  const gt = `${prefix}-gt`;
  const given = x6Check(ext, opts, [{ name: eq }, { name: lt, excl: [eq, gt] }, { name: gt, excl: [eq, lt] }]);
  for (const [name, mode] of [[eq, TtlMode.EQ], [lt, TtlMode.LT], [gt, TtlMode.GT]] as const) {
    const o = given.get(name);
    if (!o) continue;
    const v = o.value ?? '';
    const n = /^[0-9]+$/.test(v) ? Number(v) : -1;
    if (n < 0 || n > 255) throw new XtError(`${ext}: bad value for option "--${name}", or out of range (0-255).\n`);
    return { mode: mode === TtlMode.EQ && o.inverted ? TtlMode.NE : mode, value: n };
  }
  throw new XtError(missing);
}

export function saveTtlLike(prefix: string, p: TtlParams): string {
  switch (p.mode) {
    case TtlMode.EQ:
      return ` --${prefix}-eq ${p.value}`;
    case TtlMode.NE:
      return ` ! --${prefix}-eq ${p.value}`;
    case TtlMode.LT:
      return ` --${prefix}-lt ${p.value}`;
    default:
      return ` --${prefix}-gt ${p.value}`;
  }
}

const OPS = ['==', '!=', '<', '>'];

export function printTtlLike(label: string, p: TtlParams): string {
  return ` ${label} match ${label} ${OPS[p.mode]} ${p.value}`;
}

/** Classifier hints: the TTL values the match can accept. */
export function describeTtl(p: TtlParams): FieldRange[] {
  const v = p.value;
  switch (p.mode) {
    case TtlMode.EQ:
      return [{ field: 'ttl', min: v, max: v, inverted: false }];
    case TtlMode.NE:
      return [{ field: 'ttl', min: v, max: v, inverted: true }];
    case TtlMode.LT:
      return v === 0 ? [{ field: 'ttl', min: 0, max: 255, inverted: true }] : [{ field: 'ttl', min: 0, max: v - 1, inverted: false }];
    default:
      return v === 255 ? [{ field: 'ttl', min: 0, max: 255, inverted: true }] : [{ field: 'ttl', min: v + 1, max: 255, inverted: false }];
  }
}

export function ttlMatcher(p: TtlParams): (pkt: PacketContext) => boolean {
  const v = p.value;
  switch (p.mode) {
    case TtlMode.EQ:
      return (pkt) => pkt.ttl === v;
    case TtlMode.NE:
      return (pkt) => pkt.ttl !== v;
    case TtlMode.LT:
      return (pkt) => pkt.ttl < v;
    default:
      return (pkt) => pkt.ttl > v;
  }
}

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
