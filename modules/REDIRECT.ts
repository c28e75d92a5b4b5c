/**
 * `-j REDIRECT [--to-ports port[-port]] [--random]` (IPv4 and IPv6), as
 * libxt_REDIRECT + nf_nat_redirect: DNAT of a flow's first packet (nat
 * PREROUTING/OUTPUT) to the router itself - in PREROUTING the in-interface's
 * primary address (none: the packet is dropped, as the kernel does), in
 * OUTPUT the loopback address - so it is delivered to the local services
 * behind the host interface (xtr0). A port base (`a-b/N`) is refused with
 * iptables' "Shifted portmap ranges not supported with this kernel".
 */
import { Hook, Verdict } from '../xt/packet.js';
import { XtError, type TargetExtension } from '../xt/extension.js';
import { NatRangeFlag, NatSide } from '../xt/nat.js';
import { x6Check } from './lib/options.js';
import { emptyRangeParams, flagWords, once, parsePorts, portsAllowed, portsText, toNatRange, type NatRangeParams } from './lib/nat.js';

export interface RedirectParams extends NatRangeParams {
  family: 4 | 6;
}

const REDIRECT: TargetExtension<RedirectParams> = {
  kind: 'target',
  name: 'REDIRECT',
  families: [4, 6],
  tables: ['nat'],
  hooks: [Hook.PREROUTING, Hook.OUTPUT],
  options: [
    { name: 'to-ports', arg: 'required' },
    { name: 'random', arg: 'none' },
  ],
  needsConntrack: () => true,
  parse(opts, rule) {
    const p: RedirectParams = { ...emptyRangeParams(), family: rule.family };
    const seen = new Set<string>();
    for (const o of opts) {
      once('REDIRECT', seen, o.name);
      if (o.name === 'to-ports') {
        parsePorts(o.value ?? '', portsAllowed(rule), p);
        if ((p.flags & NatRangeFlag.PROTO_OFFSET) !== 0) throw new XtError('Shifted portmap ranges not supported with this kernel');
      } else if (o.name === 'random') p.flags |= NatRangeFlag.PROTO_RANDOM;
    }
    x6Check('REDIRECT', opts, [{ name: 'to-ports' }, { name: 'random' }]);
    return p;
  },
  check(p, env) {
    const services = env.services;
    const range = toNatRange(p);
    range.flags |= NatRangeFlag.MAP_IPS;
    const loop = new Uint32Array(4);
    if (p.family === 4) loop[0] = 0x7f000001;
    else loop[3] = 1;
    return {
      target(pkt) {
        const nat = services.nat;
        if (nat === undefined) return Verdict.DROP;
        if (pkt.hook === Hook.OUTPUT || pkt.inIf === null) {
          range.minAddr.set(loop);
        } else {
          const f = services.iface(pkt.inIf.name);
          if (f === null) return Verdict.DROP;
          if (p.family === 4) {
            if (f.addrs4.length === 0) return Verdict.DROP;
            range.minAddr[0] = f.addrs4[0];
          } else {
            if (f.addrs6.length === 0) return Verdict.DROP;
            range.minAddr.set(f.addrs6[0]);
          }
        }
        range.maxAddr.set(range.minAddr);
        return nat.setup(pkt, NatSide.DST, range);
      },
    };
  },
  save: (p) => `${(p.flags & NatRangeFlag.PROTO_SPECIFIED) !== 0 ? ` --to-ports ${portsText(p, false)}` : ''}${flagWords(p.flags, true)}`,
  print: (p) => `${(p.flags & NatRangeFlag.PROTO_SPECIFIED) !== 0 ? ` redir ports ${portsText(p, false)}` : ''}${flagWords(p.flags, false)}`,
};
export default REDIRECT;
