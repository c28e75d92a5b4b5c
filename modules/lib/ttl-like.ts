/**
 * The ttl (IPv4) and hl (IPv6) matches' shared option syntax and comparison.
 */
import { type FieldRange, type ParsedOption, XtError } from '../../xt/extension.js';
import { type PacketContext } from '../../xt/packet.js';
import { x6Check } from './options.js';

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

