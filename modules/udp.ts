/**
 * `-m udp` (also implicit with `-p udp --dport ...`): source and destination
 * port ranges, as libxt_udp + xt_tcpudp.
 *
 * libxt_udp parses ports with libxtables' generic XTTYPE_PORTRC, not with
 * libxt_tcp's parser, so it differs from tcp: a reversed range (`5:3`) is
 * kept (the kernel's `min <= port <= max` then never holds, and `!` makes
 * the rule match every port), numbers are read by getaddrinfo (decimal
 * only, cut to 16 bits: `70000` is port 4464), and a name is any protocol's
 * service (`ssh` works although /etc/services lists it for tcp only).
 */
import type { PacketContext } from '../xt/packet.js';
import { XtError, type MatchExtension, type ParsedOption } from '../xt/extension.js';
import { describePorts, parsePortRangeRC, printPortRange, savePortRange, servicePort } from './lib/ports.js';
import { strtoumax } from './lib/numbers.js';

const IPPROTO_UDP = 17;

export interface UdpParams {
  spts: [number, number];
  dpts: [number, number];
  invSrc: boolean;
  invDst: boolean;
}

function matchUdp(p: UdpParams, pkt: PacketContext): boolean {
  if (pkt.fragmentOffset !== 0 || pkt.proto !== IPPROTO_UDP || pkt.l4len < 8) return false;
  if ((pkt.sport >= p.spts[0] && pkt.sport <= p.spts[1]) === p.invSrc) return false;
  return (pkt.dport >= p.dpts[0] && pkt.dport <= p.dpts[1]) !== p.invDst;
}

const udp: MatchExtension<UdpParams> = {
  kind: 'match',
  name: 'udp',
  families: [4, 6],
  proto: IPPROTO_UDP,
  options: [
    { name: 'source-port', arg: 'required', invertible: true, aliases: ['sport'] },
    { name: 'destination-port', arg: 'required', invertible: true, aliases: ['dport'] },
  ],
  parse(opts: readonly ParsedOption[]) {
    const p: UdpParams = { spts: [0, 65535], dpts: [0, 65535], invSrc: false, invDst: false };
    let haveS = false;
    let haveD = false;
    for (const o of opts) {
      if (o.name === 'source-port') {
        if (haveS) throw new XtError('udp: option "--source-port" can only be used once.\n');
        haveS = true;
        p.spts = parsePortRangeRC('udp', 'source-port', o.value ?? '');
        p.invSrc = o.inverted;
      } else if (o.name === 'destination-port') {
        if (haveD) throw new XtError('udp: option "--destination-port" can only be used once.\n');
        haveD = true;
        p.dpts = parsePortRangeRC('udp', 'destination-port', o.value ?? '');
        p.invDst = o.inverted;
      }
    }
    return p;
  },
  check(p) {
    return { match: (pkt) => matchUdp(p, pkt) };
  },
  save(p) {
    return savePortRange('sport', p.spts[0], p.spts[1], p.invSrc) + savePortRange('dport', p.dpts[0], p.dpts[1], p.invDst);
  },
  print(p, numeric = false) {
    return ' udp' + printPortRange('spt', p.spts[0], p.spts[1], p.invSrc, 'udp', numeric) + printPortRange('dpt', p.dpts[0], p.dpts[1], p.invDst, 'udp', numeric);
  },
  describe(p) {
    return describePorts(p.spts, p.invSrc, p.dpts, p.invDst);
  },
};

export default udp;
