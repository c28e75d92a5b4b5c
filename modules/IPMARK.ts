/**
 * `-j IPMARK --addr src|dst [--and-mask M] [--or-mask M] [--shift N]`
 * (xtables-addons, IPv4 and IPv6, mangle table): the packet mark computed
 * from one of its addresses, so one rule replaces a MARK rule per host for a
 * classifier keyed on the mark.
 *
 *   mark = ((address >> shift) & and-mask) | or-mask
 *
 * in that order, replacing the whole mark. IPv4 takes the address as one
 * big-endian 32-bit number; IPv6 the 128-bit address, keeping the 32 bits
 * `shift` bits from the right (shift >= 128 gives 0).
 *
 * An IPv4 shift of 32 or more is undefined in C; the kernel on x86 shifts by
 * the count modulo 32, and so does JavaScript's `>>>`: shift 32 acts as 0.
 * (docs/compat.md: IPMARK.)
 *
 * Option words and errors are libxt_IPMARK's (old-style parser: "addr",
 * "and-mask", "or-mask" without dashes, "--shift" with them).
 */
import type { PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type TargetExtension } from '../xt/extension.js';
import { hex, parseUint } from './lib/numbers.js';
import { badValueError, paramAct } from './lib/param-act.js';

export interface IpmarkParams {
  /** Which address: the source (true) or the destination. */
  src: boolean;
  andMask: number;
  orMask: number;
  /** 0..128 */
  shift: number;
}

const LABELS = { addr: 'addr', 'and-mask': 'and-mask', 'or-mask': 'or-mask', shift: '--shift' };

/** The 32 bits of a 128-bit address (four big-endian words) `shift` bits from the right. */
export function ipv6Bits(a: Uint32Array, shift: number): number {
  if (shift >= 128) return 0;
  const q = shift >>> 5;
  const r = shift & 31;
  const low = a[3 - q];
  const high = q + 1 <= 3 ? a[2 - q] : 0;
  return r === 0 ? low >>> 0 : ((low >>> r) | (high << (32 - r))) >>> 0;
}

const IPMARK: TargetExtension<IpmarkParams> = {
  kind: 'target',
  name: 'IPMARK',
  families: [4, 6],
  tables: ['mangle'],
  options: [
    { name: 'addr', arg: 'required', invertible: true },
    { name: 'and-mask', arg: 'required', invertible: true },
    { name: 'or-mask', arg: 'required', invertible: true },
    { name: 'shift', arg: 'required', invertible: true },
  ],
  parse(opts) {
    const p: IpmarkParams = { src: true, andMask: 0xffffffff, orMask: 0, shift: 0 };
    const seen = paramAct('IPMARK', opts, LABELS, (name, v) => {
      if (name === 'addr') {
        if (v !== 'src' && v !== 'dst') throw new XtError(`Bad addr value \`${v}' - should be \`src' or \`dst'`);
        p.src = v === 'src';
        return;
      }
      const n = parseUint(v, name === 'shift' ? 128 : 0xffffffff);
      if (n < 0) throw badValueError('IPMARK', LABELS[name as keyof typeof LABELS], v);
      if (name === 'and-mask') p.andMask = n;
      else if (name === 'or-mask') p.orMask = n;
      else p.shift = n;
    });
    if (!seen.has('addr')) throw new XtError('IPMARK target: Parameter --addr is required');
    return p;
  },
  check(p, env) {
    const { src, andMask, orMask, shift } = p;
    if (env.rule.family === 4) {
      return {
        target(pkt: PacketContext): number {
          pkt.mark = ((((src ? pkt.src4 : pkt.dst4) >>> shift) & andMask) | orMask) >>> 0;
          return XT_CONTINUE;
        },
      };
    }
    return {
      target(pkt: PacketContext): number {
        pkt.mark = ((ipv6Bits(src ? pkt.src6 : pkt.dst6, shift) & andMask) | orMask) >>> 0;
        return XT_CONTINUE;
      },
    };
  },
  save(p) {
    let s = ` --addr ${p.src ? 'src' : 'dst'} `;
    if (p.shift !== 0) s += ` --shift ${p.shift} `;
    if (p.andMask !== 0xffffffff) s += ` --and-mask ${hex(p.andMask)} `;
    if (p.orMask !== 0) s += ` --or-mask ${hex(p.orMask)} `;
    return s;
  },
  print(p) {
    return ` -j IPMARK${IPMARK.save(p)}`;
  },
};

export default IPMARK;
