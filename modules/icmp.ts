/**
 * `-m icmp --icmp-type` (IPv4), as libxt_icmp + the kernel's icmp_match.
 * Names are matched case-insensitively by prefix, as iptables does; a
 * prefix shared by two names is refused as ambiguous.
 *
 * The type tables and their parser (shared with icmp6) are in lib/icmp-types.ts.
 */
import type { PacketContext } from '../xt/packet.js';
import { XtError, type FieldRange, type MatchExtension, type ParsedOption } from '../xt/extension.js';
import { ANY, ICMP_NAMES, IcmpParams, describeIcmp, parseOne, printIcmpType, saveIcmpType } from './lib/icmp-types.js';

const IPPROTO_ICMP = 1;

const icmp: MatchExtension<IcmpParams> = {
  kind: 'match',
  name: 'icmp',
  families: [4],
  proto: IPPROTO_ICMP,
  options: [{ name: 'icmp-type', arg: 'required', invertible: true }],
  parse(opts) {
    return parseOne(opts, 'icmp', 'icmp-type', ICMP_NAMES, 'ICMP');
  },
  check(p) {
    const { type, codeMin, codeMax, inv } = p;
    return {
      match(pkt: PacketContext): boolean {
        if (pkt.fragmentOffset !== 0 || pkt.proto !== IPPROTO_ICMP || pkt.icmpType < 0) return false;
        const hit = type === ANY || (pkt.icmpType === type && pkt.icmpCode >= codeMin && pkt.icmpCode <= codeMax);
        return hit !== inv;
      },
    };
  },
  save(p) {
    return saveIcmpType('icmp-type', p, true);
  },
  print(p, numeric = false) {
    return printIcmpType('icmp', p, ICMP_NAMES, numeric);
  },
  describe(p) {
    return describeIcmp(p, ANY);
  },
};

export default icmp;
