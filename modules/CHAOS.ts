/**
 * `-j CHAOS [--delude | --tarpit]` (IPv4, and IPv6 which upstream lacks), as
 * xtables-addons' libxt_CHAOS + xt_CHAOS: make a port scan non-deterministic.
 * Each packet draws a random number: at or below the reject threshold it is
 * rejected (ICMP host-unreachable / ICMPv6 address-unreachable through
 * REJECT); otherwise a TCP packet outside OUTPUT, with the variant set and a
 * sane TCP header, draws again and at or below the delude threshold is handed
 * to DELUDE (`--delude`) or TARPIT (`--tarpit`), which answer it themselves.
 * The verdict is always DROP.
 *
 * The thresholds are upstream's module parameters, raw 32-bit numbers (the
 * event fires when random <= threshold): settings `extensions.CHAOS.
 * reject_percentage` (default 42949672, 1 %) and `delude_percentage`
 * (default 43379169, 1.01 % of what was not rejected), read at rule check.
 *
 * DELUDE, TARPIT and REJECT are the registry's targets, checked through
 * CheckEnv.subTarget as the kernel finds them with xt_request_find_target,
 * without their placement checks: CHAOS itself only hands them TCP packets
 * from INPUT/FORWARD. `--tarpit` runs TARPIT in its default tarpit mode, as
 * the man page says; upstream's passes its own variant byte, which TARPIT
 * reads as honeypot (docs/compat.md, CHAOS).
 */
import { Hook, Verdict, type PacketContext } from '../xt/packet.js';
import { XtError, type CheckEnv, type TargetExtension } from '../xt/extension.js';

export const enum ChaosVariant {
  NORMAL = 0,
  TARPIT = 1,
  DELUDE = 2,
}

export interface ChaosParams {
  variant: ChaosVariant;
}

/** Upstream's module parameter defaults (xt_CHAOS: ~0U / 100 and ~0U / 99). */
export const CHAOS_DEFAULTS = { reject_percentage: 42949672, delude_percentage: 43379169 } as const;

/** The two thresholds from settings.CHAOS, each an integer 0..2^32-1. */
function thresholds(env: CheckEnv): { reject: number; delude: number } {
  const s = (env.settings.CHAOS ?? {}) as Record<string, unknown>;
  if (typeof s !== 'object' || s === null) throw new XtError('settings.CHAOS: must be an object', 1);
  for (const k of Object.keys(s)) {
    if (!(k in CHAOS_DEFAULTS)) throw new XtError(`settings.CHAOS.${k}: unknown setting (known: reject_percentage, delude_percentage)`, 1);
  }
  const get = (k: keyof typeof CHAOS_DEFAULTS): number => {
    const v = s[k] ?? CHAOS_DEFAULTS[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new XtError(`settings.CHAOS.${k}: ${JSON.stringify(v)}: must be an integer 0..4294967295 (a raw threshold: probability (v+1)/2^32)`, 1);
    }
    return v;
  };
  return { reject: get('reject_percentage'), delude: get('delude_percentage') };
}

const CHAOS: TargetExtension<ChaosParams> = {
  kind: 'target',
  name: 'CHAOS',
  families: [4, 6],
  tables: ['filter'],
  hooks: [Hook.INPUT, Hook.FORWARD, Hook.OUTPUT],
  // libxt_CHAOS's old-style parser ignores `!` and repeats of one option.
  options: [
    { name: 'delude', arg: 'none', invertible: true },
    { name: 'tarpit', arg: 'none', invertible: true },
  ],
  parse(opts) {
    let variant = ChaosVariant.NORMAL;
    for (const o of opts) {
      const v = o.name === 'delude' ? ChaosVariant.DELUDE : ChaosVariant.TARPIT;
      if (variant !== ChaosVariant.NORMAL && variant !== v) throw new XtError('CHAOS: only one of --tarpit or --delude may be specified');
      variant = v;
    }
    return { variant };
  },
  check(p, env) {
    const { reject: rejectAt, delude: deludeAt } = thresholds(env);
    const services = env.services;
    const reject = env.subTarget('REJECT', ['--reject-with', env.rule.family === 4 ? 'icmp-host-unreachable' : 'icmp6-addr-unreachable']);
    const variant = p.variant;
    const deceive = variant === ChaosVariant.NORMAL ? null : variant === ChaosVariant.DELUDE ? env.subTarget('DELUDE', [], { placement: false }) : env.subTarget('TARPIT', ['--tarpit'], { placement: false });
    return {
      target(pkt: PacketContext): number {
        if (services.random() >>> 0 <= rejectAt) {
          reject.target(pkt);
          return Verdict.DROP;
        }
        if (deceive === null || pkt.proto !== 6 || pkt.hook === Hook.OUTPUT) return Verdict.DROP;
        // What `-p tcp` would accept: a first fragment (or none) with a whole header of sane length.
        if (pkt.fragmentOffset !== 0 || pkt.l4len < 20 || pkt.buf[pkt.l4off + 12] >> 4 < 5) return Verdict.DROP;
        if (services.random() >>> 0 <= deludeAt) deceive.target(pkt);
        return Verdict.DROP;
      },
    };
  },
  save(p) {
    return p.variant === ChaosVariant.DELUDE ? ' --delude ' : p.variant === ChaosVariant.TARPIT ? ' --tarpit ' : '';
  },
  print(p) {
    return ` -j CHAOS${CHAOS.save(p)}`;
  },
};

export default CHAOS;
