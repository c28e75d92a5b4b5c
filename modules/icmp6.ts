/**
 * `-m icmp6 --icmpv6-type` (IPv6), as libip6t_icmp6 + the kernel's
 * icmp6_match. Unlike IPv4 there is no "any"; saves print numbers.
 */
import type { PacketContext } from '../xt/packet.js';
import type { MatchExtension } from '../xt/extension.js';
import { IcmpName, IcmpParams, describeIcmp, parseIcmpOption, printIcmpType, saveIcmpType } from './lib/icmp-types.js';

const ICMPV6_NAMES: readonly IcmpName[] = [
  ['destination-unreachable', 1, 0, 0xff],
  ['no-route', 1, 0, 0],
  ['communication-prohibited', 1, 1, 1],
  ['beyond-scope', 1, 2, 2],
  ['address-unreachable', 1, 3, 3],
  ['port-unreachable', 1, 4, 4],
  ['failed-policy', 1, 5, 5],
  ['reject-route', 1, 6, 6],
  ['packet-too-big', 2, 0, 0xff],
  ['time-exceeded', 3, 0, 0xff],
  ['ttl-exceeded', 3, 0, 0xff],
  ['ttl-zero-during-transit', 3, 0, 0],
  ['ttl-zero-during-reassembly', 3, 1, 1],
  ['parameter-problem', 4, 0, 0xff],
  ['bad-header', 4, 0, 0],
  ['unknown-header-type', 4, 1, 1],
  ['unknown-option', 4, 2, 2],
  ['echo-request', 128, 0, 0xff],
  ['ping', 128, 0, 0xff],
  ['echo-reply', 129, 0, 0xff],
  ['pong', 129, 0, 0xff],
  ['router-solicitation', 133, 0, 0xff],
  ['router-advertisement', 134, 0, 0xff],
  ['neighbour-solicitation', 135, 0, 0xff],
  ['neighbor-solicitation', 135, 0, 0xff],
  ['neighbour-advertisement', 136, 0, 0xff],
  ['neighbor-advertisement', 136, 0, 0xff],
  ['redirect', 137, 0, 0xff],
];

const IPPROTO_ICMPV6 = 58;

const icmp6: MatchExtension<IcmpParams> = {
  kind: 'match',
  name: 'icmp6',
  families: [6],
  proto: IPPROTO_ICMPV6,
  options: [{ name: 'icmpv6-type', arg: 'required', invertible: true }],
  parse(opts) {
    return parseIcmpOption(opts, 'icmp6', 'icmpv6-type', ICMPV6_NAMES, 'ICMPv6');
  },
  check(p) {
    const { type, codeMin, codeMax, inv } = p;
    return {
      match(pkt: PacketContext): boolean {
        if (pkt.fragmentOffset !== 0 || pkt.proto !== IPPROTO_ICMPV6 || pkt.icmpType < 0) return false;
        return (pkt.icmpType === type && pkt.icmpCode >= codeMin && pkt.icmpCode <= codeMax) !== inv;
      },
    };
  },
  save(p) {
    return saveIcmpType('icmpv6-type', p, false);
  },
  print(p, numeric = false) {
    return printIcmpType('ipv6-icmp', p, ICMPV6_NAMES, numeric);
  },
  describe(p) {
    return describeIcmp(p, -1);
  },
};

export default icmp6;
