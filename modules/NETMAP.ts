/**
 * `-j NETMAP --to addr[/mask]` (IPv4 and IPv6), as libxt_NETMAP + xt_NETMAP:
 * a 1:1 map of one prefix onto another. In nat PREROUTING/OUTPUT the
 * destination's network part is replaced, in POSTROUTING/INPUT the source's;
 * the host part is kept. The binding is conntrack's, as for SNAT/DNAT (the
 * flow's later packets and replies follow it).
 */
import { Hook, Verdict } from '../xt/packet.js';
import { XtError, type TargetExtension } from '../xt/extension.js';
import { NatRangeFlag, NatSide, newNatRange } from '../xt/nat.js';
import { x6Check } from './lib/options.js';
import { addrToString, maskLength, parseAddrMask } from './lib/addresses.js';
import { once } from './lib/nat.js';

export interface NetmapParams {
  family: 4 | 6;
  addr: number[];
  mask: number[];
}

function text(p: NetmapParams): string {
  const len = maskLength(Uint32Array.from(p.mask), p.family);
  return `${addrToString(Uint32Array.from(p.addr), p.family)}/${len >= 0 ? len : addrToString(Uint32Array.from(p.mask), p.family)}`;
}

const NETMAP: TargetExtension<NetmapParams> = {
  kind: 'target',
  name: 'NETMAP',
  families: [4, 6],
  tables: ['nat'],
  hooks: [Hook.PREROUTING, Hook.POSTROUTING, Hook.OUTPUT, Hook.INPUT],
  options: [{ name: 'to', arg: 'required' }],
  needsConntrack: () => true,
  parse(opts, rule) {
    const p: NetmapParams = { family: rule.family, addr: [0, 0, 0, 0], mask: [0, 0, 0, 0] };
    const seen = new Set<string>();
    for (const o of opts) {
      once('NETMAP', seen, o.name);
      const v = o.value ?? '';
      const r = parseAddrMask(v, rule.family);
      if (r === null) throw new XtError(`host/network \`${v}' not found`);
      p.addr = Array.from(r.addr);
      p.mask = Array.from(r.mask);
    }
    x6Check('NETMAP', opts, [{ name: 'to', mand: true }]);
    return p;
  },
  check(p, env) {
    const services = env.services;
    const range = newNatRange();
    range.flags = NatRangeFlag.MAP_IPS;
    const n = p.family === 4 ? 1 : 4;
    return {
      target(pkt) {
        const nat = services.nat;
        if (nat === undefined) return Verdict.DROP;
        const dstSide = pkt.hook === Hook.PREROUTING || pkt.hook === Hook.OUTPUT;
        const a = range.minAddr;
        if (p.family === 4) a[0] = dstSide ? pkt.dst4 : pkt.src4;
        else a.set(dstSide ? pkt.dst6 : pkt.src6);
        for (let i = 0; i < n; i++) a[i] = ((a[i] & ~p.mask[i]) | p.addr[i]) >>> 0;
        range.maxAddr.set(a);
        return nat.setup(pkt, dstSide ? NatSide.DST : NatSide.SRC, range);
      },
    };
  },
  save: (p) => ` --to ${text(p)}`,
  print: (p) => ` to:${text(p)}`,
};
export default NETMAP;
